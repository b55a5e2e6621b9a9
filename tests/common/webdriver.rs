//! A real browser for the tests: Debian's headless Chromium driven through chromedriver,
//! spoken to in the W3C WebDriver protocol (JSON over HTTP) by a minimal client.
//!
//! Chromedriver and Chromium run inside a test's network namespace, where the page under
//! test listens on 127.0.0.1. The test itself stays in the machine's namespace, so it
//! cannot reach the driver's 127.0.0.1 port by simply connecting. Instead every WebDriver
//! connection is opened by a short-lived thread that first joins the namespace
//! (`setns(CLONE_NEWNET)` changes the calling thread only, and is allowed in a threaded
//! process); a socket belongs for good to the namespace it was created in, so the test
//! thread then reads and writes it as any other. Nothing is exposed outside the
//! namespace (no veth address, no port on the machine), and nothing but the namespace
//! path is needed: no `curl` per call, no proxy process.
//!
//! Only what the tests use: sessions, navigation, CSS lookups, clicks, typing, texts,
//! the page source and screenshots.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromedriver's port inside the namespace (the namespace is the test's own, so the
/// port is free).
const DRIVER_PORT: u16 = 9515;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long lookups and waits poll before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Whether the browser is installed. Missing, the caller fails under CI (`CI=true`) and
/// may skip with a notice elsewhere: a developer without Chromium can still run the rest.
pub fn available(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: {} missing: install Debian's `chromium` and `chromium-driver` (scripts/test does)",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED {msg}");
    false
}

/// An error answer of the driver (`no such element`, …) or a transport failure.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

type WdResult<T> = Result<T, WdError>;

/// Opens a TCP connection to `127.0.0.1:port` inside the network namespace `ns`
/// (a `/proc/PID/ns/net` path): see the module's comment.
fn connect_in(ns: &str, port: u16) -> std::io::Result<TcpStream> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let file = File::open(&ns)?;
        // SAFETY: a valid descriptor of a network namespace; only this thread moves.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        TcpStream::connect(("127.0.0.1", port))
    })
    .join()
    .expect("the connecting thread panicked")
}

/// One HTTP/1.1 exchange: status and body. Chromedriver keeps connections open whatever
/// the request says, so the body is read by its length (or its chunks), not to the end.
fn http(
    ns: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect_in(ns, port)?;
    // Long enough for a page load (the driver answers a navigation when it is done).
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes())?;

    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // Reads more; false at the end of the stream. A signal to the test process (a child
    // exiting) may interrupt the read: it is then simply read again.
    let mut more = |raw: &mut Vec<u8>| -> std::io::Result<bool> {
        let n = loop {
            match stream.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        raw.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    };
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if !more(&mut raw)? {
            return Err(bad("the connection closed before the headers ended"));
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let start = end + 4;
    if let Some(length) = header("content-length:") {
        let length: usize = length.parse().map_err(|_| bad("bad content-length"))?;
        while raw.len() < start + length {
            if !more(&mut raw)? {
                return Err(bad("the connection closed within the body"));
            }
        }
        return Ok((status, raw[start..start + length].to_vec()));
    }
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        loop {
            if let Some(body) = dechunk(&raw[start..]) {
                return Ok((status, body));
            }
            if !more(&mut raw)? {
                return Err(bad("the connection closed within the chunks"));
            }
        }
    }
    while more(&mut raw)? {}
    Ok((status, raw[start..].to_vec()))
}

/// The body of a whole chunked message, or `None` while it is incomplete.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Chromedriver and one Chromium session inside a network namespace. Dropping it ends
/// the session (Chromium quits) and stops chromedriver and whatever it left running.
pub struct Browser {
    ns: String,
    driver: Child,
    session: String,
    /// Chromium's profile, HOME and chromedriver's log: nothing lands in the real HOME.
    pub dir: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver in the namespace `ns` (`/proc/PID/ns/net`, its loopback up) and
    /// opens a session; screenshots go to `shots`.
    pub fn start(ns: &str, shots: &Path) -> Browser {
        let dir = tempfile::tempdir().unwrap();
        let log = File::create(dir.path().join("chromedriver.log")).unwrap();
        let driver = Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .arg("--")
            .arg(CHROMEDRIVER)
            .arg(format!("--port={DRIVER_PORT}"))
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, which Chromium joins: `Drop` ends the group, and
            // only processes this test started are in it.
            .process_group(0)
            .spawn()
            .expect("nsenter (util-linux) must be installed");
        let mut b = Browser {
            ns: ns.to_string(),
            driver,
            session: String::new(),
            dir,
            shots: shots.to_path_buf(),
        };
        let start = Instant::now();
        loop {
            match http(&b.ns, DRIVER_PORT, "GET", "/status", None) {
                Ok((200, body)) if String::from_utf8_lossy(&body).contains("\"ready\":true") => {
                    break;
                }
                _ => {}
            }
            assert!(
                b.driver.try_wait().unwrap().is_none(),
                "chromedriver exited at start; its log:\n{}",
                b.driver_log()
            );
            assert!(
                start.elapsed() < WAIT,
                "chromedriver never became ready; its log:\n{}",
                b.driver_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = b.dir.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,1000",
                ],
            },
        }}});
        let value = match b.call("POST", "/session", Some(&caps)) {
            Ok(v) => v,
            Err(e) => panic!(
                "Chromium did not start ({e}); chromedriver's log:\n{}",
                b.driver_log()
            ),
        };
        b.session = value["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        b
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// A WebDriver command: its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> WdResult<Value> {
        let (status, body) =
            http(&self.ns, DRIVER_PORT, method, path, body).map_err(|e| WdError {
                error: "transport".into(),
                message: e.to_string(),
            })?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| WdError {
            error: "invalid answer".into(),
            message: format!("{e}: {}", String::from_utf8_lossy(&body)),
        })?;
        let value = json["value"].clone();
        if status != 200 {
            return Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown").to_string(),
                message: value["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(value)
    }

    /// A command of this session; panics on an error, saying what was asked.
    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.session_call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn title(&self) -> String {
        self.session_call("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn source(&self) -> String {
        self.session_call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching a CSS selector now (maybe none).
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self.session_call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str())
            .map(|id| Element {
                browser: self,
                id: id.to_string(),
            })
            .collect()
    }

    /// The first element matching a CSS selector, waited for up to `WAIT`.
    pub fn find(&self, css: &str) -> Element<'_> {
        let start = Instant::now();
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(
                start.elapsed() < WAIT,
                "no element `{css}` on {} after {WAIT:?}; the page:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the current URL satisfies `cond`; returns it.
    pub fn wait_url(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let url = self.url();
            if cond(&url) {
                return url;
            }
            assert!(
                start.elapsed() < WAIT,
                "the browser never reached {what}; it is on {url}:\n{}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The text of the open alert, if a script opened one.
    pub fn alert_text(&self) -> Option<String> {
        let path = format!("/session/{}/alert/text", self.session);
        self.call("GET", &path, None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.session_call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 text"))
            .expect("a base64 screenshot")
    }

    /// Saves a screenshot as `<shots>/<name>.png`; returns its path.
    pub fn shot(&self, name: &str) -> PathBuf {
        std::fs::create_dir_all(&self.shots).unwrap();
        let path = self.shots.join(format!("{name}.png"));
        let png = self.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.call("DELETE", &path, None);
        }
        // The group is chromedriver's own (it is not reaped yet, so its id cannot have
        // been reused): chromedriver and any Chromium process still in it.
        let group = self.driver.id() as i32;
        // SAFETY: signals a process group this value created.
        unsafe { libc::killpg(group, libc::SIGTERM) };
        let start = Instant::now();
        while self.driver.try_wait().ok().flatten().is_none()
            && start.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above. Linux hands out no process id still in use as a group id, so
        // even with chromedriver reaped this reaches only Chromium stragglers (or no one).
        unsafe { libc::killpg(group, libc::SIGKILL) };
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the page, by its WebDriver reference.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    fn call(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        self.browser
            .session_call(method, &format!("/element/{}{what}", self.id), body)
    }

    pub fn click(&self) {
        self.call("POST", "/click", Some(json!({})));
    }

    pub fn clear(&self) {
        self.call("POST", "/clear", Some(json!({})));
    }

    /// Types `text` into it (after what it holds).
    pub fn send_keys(&self, text: &str) {
        self.call("POST", "/value", Some(json!({ "text": text })));
    }

    /// Its rendered text.
    pub fn text(&self) -> String {
        self.call("GET", "/text", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn tag(&self) -> String {
        self.call("GET", "/name", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
