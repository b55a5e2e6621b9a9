//! An HTTP/1.1 request: read whole from a connection (head parsed by `httparse`, body by
//! `Content-Length`, each within its size cap), and what the handlers ask of it.

use std::io::{self, Read};
use std::net::IpAddr;

/// The most a request's head may weigh.
const MAX_HEAD: usize = 16 * 1024;
/// The most a request's body may weigh: forms are small.
const MAX_BODY: usize = 64 * 1024;

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

/// `Ok(None)`: the client closed without sending anything. `Err(status)`: a request
/// this server refuses, answered with that status.
pub(super) fn read_request(
    stream: &mut impl Read,
    peer: IpAddr,
    tls: bool,
) -> Result<Option<Request>, u16> {
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
}
