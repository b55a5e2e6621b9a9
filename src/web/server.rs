//! The listener and its connections: one thread accepts, each connection gets a thread
//! of its own (within the caps of `conns`), reads one request, hands it to the handler,
//! writes the answer and closes. TLS, when configured, is rustls on the same connection:
//! the client's own address stays known, which the sign-in rate limit and the caps per
//! address need. (tiny_http's TLS is tied to an old rustls and hides the stream, so the
//! few lines of connection handling live here.)

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::conns::{Conns, Deadline};
use super::request::{Request, read_request};
use super::response::{Response, reason, write_response};

/// How long one read or write may wait.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its whole request, head and body, however its
/// bytes trickle in (one header line every 9 s once held a connection for minutes).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long writing the answer may take once the handler is done.
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("TLS certificate {path}: {message}")]
    Cert { path: String, message: String },
    #[error("TLS key {path}: {message}")]
    Key { path: String, message: String },
    #[error("TLS certificate and key do not go together: {0}")]
    Tls(rustls::Error),
}

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Reads a PEM certificate chain and private key into a TLS configuration.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| ServeError::Cert {
            path: cert.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ServeError::Cert {
            path: cert.display().to_string(),
            message: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::Key {
        path: key.display().to_string(),
        message: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ServeError::Tls)?;
    Ok(Arc::new(config))
}

impl Server {
    pub fn bind(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Server, ServeError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Server { listener, tls })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves forever: one thread accepts, and each connection gets a thread of its own,
    /// at most `max_connections` at once and a quarter of them from one address. Past
    /// either cap the oldest connection still sending its request is closed to make
    /// room (of the same address, or of the one holding the most), so slow clients
    /// cannot keep others out; a new connection is refused only when every one is at
    /// work on a request. Returns once the acceptor runs.
    pub fn spawn(
        self,
        name: &str,
        max_connections: usize,
        handler: impl Fn(Request) -> Response + Send + Sync + 'static,
    ) -> io::Result<()> {
        let handler = Arc::new(handler);
        let conns = Arc::new(Conns::new(max_connections, max_connections / 4));
        let tls = self.tls;
        let listener = self.listener;
        let name = name.to_string();
        std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                loop {
                    let (stream, peer) = match listener.accept() {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of descriptors, say: wait rather than spin.
                            log::warn!("HTTP accept: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    };
                    let accepted = Instant::now();
                    let Ok(id) = conns.open(peer.ip(), &stream) else {
                        log::warn!("HTTP: every connection is at work; closing one from {peer}");
                        continue;
                    };
                    let (tls, handler, conns) =
                        (tls.clone(), Arc::clone(&handler), Arc::clone(&conns));
                    let on_thread = Arc::clone(&conns);
                    let spawned = std::thread::Builder::new()
                        .name(format!("{name}-conn"))
                        .spawn(move || {
                            let read = || on_thread.answering(id);
                            if let Err(e) =
                                connection(stream, peer, accepted, tls.as_ref(), &*handler, &read)
                            {
                                log::debug!("HTTP connection from {peer}: {e}");
                            }
                            on_thread.close(id);
                        });
                    if let Err(e) = spawned {
                        log::warn!("HTTP: no thread for a connection from {peer}: {e}");
                        conns.close(id);
                    }
                }
            })?;
        Ok(())
    }
}

fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    tls: Option<&Arc<rustls::ServerConfig>>,
    handler: &dyn Fn(Request) -> Response,
    read: &dyn Fn(),
) -> io::Result<()> {
    let stream = Deadline::new(stream, IO_TIMEOUT, accepted + REQUEST_DEADLINE);
    let until = std::rc::Rc::clone(&stream.until);
    // Once the request is in, the answer gets its own time.
    let answering = || {
        until.set(Instant::now() + ANSWER_DEADLINE);
        read();
    };
    match tls {
        None => exchange(stream, peer.ip(), false, handler, &answering),
        Some(config) => {
            let conn =
                rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
            exchange(
                rustls::StreamOwned::new(conn, stream),
                peer.ip(),
                true,
                handler,
                &answering,
            )
        }
    }
}

/// Reads one request from `stream`, answers it, and lets the connection close.
fn exchange(
    mut stream: impl Read + Write,
    peer: IpAddr,
    tls: bool,
    handler: &dyn Fn(Request) -> Response,
    answering: &dyn Fn(),
) -> io::Result<()> {
    let response = match read_request(&mut stream, peer, tls) {
        Ok(Some(request)) => {
            answering();
            let head = request.method == "HEAD";
            let mut response = handler(request);
            if head {
                response.body.clear();
            }
            response
        }
        Ok(None) => return Ok(()),
        Err(status) => {
            answering();
            Response::text(status, format!("{}\n", reason(status)))
        }
    };
    write_response(&mut stream, &response)?;
    stream.flush()
}
