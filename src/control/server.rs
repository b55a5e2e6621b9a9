//! The daemon's side of the control socket: a listening thread that reads each request
//! and hands it to the decision thread over a channel, with a channel for the answer.
//!
//! The decision loop selects this channel beside the attempts', so a request waits at
//! most for the batch being handled, never behind the attempts queued after it. Each
//! connection gets a short-lived thread (at most `MAX_CLIENTS` at once), so a client that
//! sends nothing holds up no other. The socket is created under a temporary name, made
//! 0600, then renamed into place: nobody else can connect even for a moment; and only the
//! daemon's own user (or root) is served, checked again with the peer's credentials.
//! Past `MAX_CLIENTS` connections at once, the next wait in the listen queue for a turn.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use super::ControlError;
use super::protocol::{Answer, MAX_LINE, RefusalKind, Request, parse_request};

/// Connections served at once; more wait their turn.
const MAX_CLIENTS: usize = 32;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may wait for the decision thread (a restore of many bans, a slow
/// firewall) before the client is told the daemon is busy.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A request and where its answer goes.
#[derive(Debug)]
pub struct Asked {
    pub request: Request,
    reply: Sender<Answer>,
}

impl Asked {
    /// Sends the answer (the client may have gone: then nobody hears it).
    pub fn answer(self, answer: Answer) {
        let _ = self.reply.send(answer);
    }
}

/// The listening socket; the file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `path` (replacing what a dead daemon left there: the caller holds the
/// state lock) and sends every request to `requests`.
pub fn listen(path: &Path, requests: Sender<Asked>) -> Result<ControlSocket, ControlError> {
    let err = |source| ControlError::Listen {
        path: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary).map_err(err)?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(err(e));
    }
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept(listener, requests))
        .map_err(err)?;
    Ok(ControlSocket {
        path: path.to_path_buf(),
    })
}

fn accept(listener: UnixListener, requests: Sender<Asked>) {
    // A turn is a message in this channel: taken before a client is served, given back
    // when it is done, so the accepting waits while all turns are out.
    let (take, give_back) = bounded::<()>(MAX_CLIENTS);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if !peer_is_trusted(&stream) {
            log::warn!("control socket: refused a client of another user");
            continue;
        }
        if take.send(()).is_err() {
            return;
        }
        let (requests, done) = (requests.clone(), give_back.clone());
        let spawned = std::thread::Builder::new()
            .name("control-client".into())
            .spawn(move || {
                serve(stream, &requests);
                let _ = done.recv();
            });
        if spawned.is_err() {
            log::warn!("control socket: cannot start a thread for a client");
            let _ = give_back.recv();
        }
    }
}

/// Answers each line of one connection until it closes.
fn serve(stream: UnixStream, requests: &Sender<Asked>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let answer = if line.len() > MAX_LINE {
            Answer::refused(
                RefusalKind::Usage,
                format!("request longer than {MAX_LINE} bytes"),
            )
        } else {
            match parse_request(&line) {
                Ok(request) => decide(request, requests),
                Err(message) => Answer::refused(RefusalKind::Usage, message),
            }
        };
        if write_answer(&mut writer, &answer).is_err() || line.len() > MAX_LINE {
            return;
        }
    }
}

/// Hands one request to the decision thread and waits for its answer.
fn decide(request: Request, requests: &Sender<Asked>) -> Answer {
    let (reply, answer) = bounded(1);
    let stopping = || Answer::refused(RefusalKind::Failure, "the daemon is stopping");
    match requests.send_timeout(Asked { request, reply }, ANSWER_TIMEOUT) {
        Ok(()) => {}
        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return stopping(),
        Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => {
            return Answer::refused(RefusalKind::Failure, "the daemon is busy; try again");
        }
    }
    match answer.recv_timeout(ANSWER_TIMEOUT) {
        Ok(a) => a,
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => stopping(),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Answer::refused(
            RefusalKind::Failure,
            "the daemon did not answer in time; the change may still be made (see `pyfilter list`)",
        ),
    }
}

fn write_answer(stream: &mut UnixStream, answer: &Answer) -> std::io::Result<()> {
    let mut text = serde_json::to_string(answer).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes())
}

/// The client runs as root or as the daemon's own user.
fn peer_is_trusted(stream: &UnixStream) -> bool {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the length given, on a socket `stream` owns.
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    // SAFETY: geteuid cannot fail.
    got == 0 && (cred.uid == 0 || cred.uid == unsafe { libc::geteuid() })
}
