//! A small synchronous HTTP/1.1 server, for the admin and for `run --metrics`.
//!
//! One thread accepts; each connection gets a thread of its own (up to a cap), reads one
//! request (head parsed by `httparse`, body by `Content-Length`), hands it to the
//! handler and closes the connection. Every read and write has a deadline and every size
//! a cap, so a slow or greedy client holds one thread for a few seconds at most. TLS, when configured, is
//! rustls on the same connection: the client's own address stays known, which the
//! sign-in rate limit needs. (tiny_http's TLS is tied to an old rustls and hides the
//! stream, so the few lines of connection handling live here.)

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The most a request's head may weigh.
const MAX_HEAD: usize = 16 * 1024;
/// The most a request's body may weigh: forms are small.
const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request, read whole.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The address the connection came from.
    pub peer: IpAddr,
    /// Whether it came over TLS.
    pub tls: bool,
}

impl Request {
    /// A header's value (the first, when repeated); names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query's parameters, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        param(self.query.as_bytes(), name)
    }

    /// A parameter of an `application/x-www-form-urlencoded` body, decoded.
    pub fn form(&self, name: &str) -> Option<String> {
        param(&self.body, name)
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// A request made up in tests.
    pub fn new(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            peer: IpAddr::from([127, 0, 0, 1]),
            tls: false,
        }
    }
}

fn param(encoded: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(encoded)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A response about to be sent.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn html(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "text/html; charset=utf-8", body)
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "application/json", body)
    }

    /// 303 See Other: after a POST, the browser GETs `location`.
    pub fn redirect(location: &str) -> Response {
        Response::text(303, "").with("Location", location)
    }

    pub fn with(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A header's value, for tests.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

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
    /// at most `max_connections` at once. A client that opens connections and sends
    /// nothing holds one thread each for the read deadline, so it cannot stall the
    /// server for others unless it holds them all; past the cap, new connections are
    /// closed at once. Returns once the acceptor runs.
    pub fn spawn(
        self,
        name: &str,
        max_connections: usize,
        handler: impl Fn(Request) -> Response + Send + Sync + 'static,
    ) -> io::Result<()> {
        let handler = Arc::new(handler);
        let open = Arc::new(AtomicUsize::new(0));
        let max = max_connections.max(1);
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
                    if open.fetch_add(1, Ordering::AcqRel) >= max {
                        open.fetch_sub(1, Ordering::AcqRel);
                        log::warn!("HTTP: {max} connections open already; closing one from {peer}");
                        continue;
                    }
                    let (tls, handler, open) =
                        (tls.clone(), Arc::clone(&handler), Arc::clone(&open));
                    let spawned = std::thread::Builder::new()
                        .name(format!("{name}-conn"))
                        .spawn(move || {
                            if let Err(e) = connection(stream, peer, tls.as_ref(), &*handler) {
                                log::debug!("HTTP connection from {peer}: {e}");
                            }
                            open.fetch_sub(1, Ordering::AcqRel);
                        });
                    if let Err(e) = spawned {
                        log::warn!("HTTP: no thread for a connection from {peer}: {e}");
                    }
                }
            })?;
        Ok(())
    }
}

fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&Arc<rustls::ServerConfig>>,
    handler: &dyn Fn(Request) -> Response,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match tls {
        None => exchange(stream, peer.ip(), false, handler),
        Some(config) => {
            let conn =
                rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
            exchange(
                rustls::StreamOwned::new(conn, stream),
                peer.ip(),
                true,
                handler,
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
) -> io::Result<()> {
    let response = match read_request(&mut stream, peer, tls) {
        Ok(Some(request)) => {
            let head = request.method == "HEAD";
            let mut response = handler(request);
            if head {
                response.body.clear();
            }
            response
        }
        Ok(None) => return Ok(()),
        Err(status) => Response::text(status, format!("{}\n", reason(status))),
    };
    write_response(&mut stream, &response)?;
    stream.flush()
}

/// `Ok(None)`: the client closed without sending anything. `Err(status)`: a request
/// this server refuses, answered with that status.
fn read_request(stream: &mut impl Read, peer: IpAddr, tls: bool) -> Result<Option<Request>, u16> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        let n = read_some(stream, &mut chunk)?;
        if n == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(400) };
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            if end + 4 > MAX_HEAD {
                return Err(431);
            }
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(400),
    }
    let method = parsed.method.ok_or(400u16)?.to_string();
    let target = parsed.path.ok_or(400u16)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if header("transfer-encoding").is_some() {
        // Forms and API calls have a length; chunked bodies are not needed.
        return Err(411);
    }
    let length: usize = match header("content-length") {
        None => 0,
        Some(v) => v.parse().map_err(|_| 400u16)?,
    };
    if length > MAX_BODY {
        return Err(413);
    }
    let mut body = buf[head_len..].to_vec();
    while body.len() < length {
        let n = read_some(stream, &mut chunk)?;
        if n == 0 {
            return Err(400);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
        peer,
        tls,
    }))
}

/// One read; a deadline passed (or a broken connection) is 408. A read interrupted by a
/// signal is read again: with a socket timeout set, Linux returns EINTR even for a mere
/// stop and continue of the process.
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> Result<usize, u16> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(408),
        }
    }
}

fn write_response(out: &mut impl Write, r: &Response) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.body.len()
    );
    for (name, value) in &r.headers {
        // Header values are built by this program, but a value carrying a line break
        // would split the response: drop such a header rather than send it.
        if value.contains(['\r', '\n']) {
            continue;
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(&r.body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8]) -> Result<Option<Request>, u16> {
        read_request(&mut &raw[..], IpAddr::from([192, 0, 2, 1]), false)
    }

    #[test]
    fn a_form_post_is_read_whole() {
        let r = read(b"POST /ban?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 19\r\nCookie: s=abc; t=d\r\n\r\nip=192.0.2.7&for=1h")
            .unwrap()
            .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/ban");
        assert_eq!(r.query_param("x").as_deref(), Some("1"));
        assert_eq!(r.form("ip").as_deref(), Some("192.0.2.7"));
        assert_eq!(r.form("for").as_deref(), Some("1h"));
        assert_eq!(r.cookie("t"), Some("d"));
        assert_eq!(r.header("HOST"), Some("a"));
        assert_eq!(r.peer, IpAddr::from([192, 0, 2, 1]));
    }

    #[test]
    fn oversized_and_malformed_requests_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(read(big.as_bytes()).unwrap_err(), 431);
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n").unwrap_err(),
            413
        );
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            411
        );
        assert_eq!(read(b"NOT HTTP\r\n\r\n").unwrap_err(), 400);
        assert!(read(b"").unwrap().is_none());
    }

    /// A reader whose first read is interrupted, as a socket with a timeout is when the
    /// process is stopped and continued.
    struct Interrupted<'a>(bool, &'a [u8]);

    impl Read for Interrupted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.0 {
                self.0 = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.1.read(buf)
        }
    }

    #[test]
    fn an_interrupted_read_is_read_again() {
        let mut r = Interrupted(false, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        let req = read_request(&mut r, IpAddr::from([192, 0, 2, 1]), false)
            .unwrap()
            .unwrap();
        assert_eq!(req.path, "/x");
    }

    #[test]
    fn a_header_value_with_a_line_break_is_not_sent() {
        let mut out = Vec::new();
        let r = Response::text(200, "ok").with("Location", "/x\r\nSet-Cookie: evil=1");
        write_response(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("evil"), "{text}");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    }
}
