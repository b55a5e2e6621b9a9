//! A `pyfilter admin` of the test's own on a loopback port, and a small HTTP client for
//! it: the shared part of tests/admin_security.rs and tests/admin_pages.rs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use crate::common::{BIN, Setup, stderr};

pub const PASSWORD: &str = "correct horse battery";

/// A running admin and the address it listens on.
pub struct Admin {
    child: Child,
    pub addr: String,
}

impl Admin {
    pub fn start(setup: &Setup, args: &[&str]) -> Admin {
        Admin::start_by(setup, Command::new(BIN), args)
    }

    /// `pyfilter admin` started by `command` (the binary, through `setpriv` as another
    /// user).
    pub fn start_by(setup: &Setup, mut command: Command, args: &[&str]) -> Admin {
        let mut child = command
            .arg("-c")
            .arg(setup.config())
            .arg("admin")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the admin stopped before it was ready")
                .unwrap();
            if let Some(rest) = line.split("admin ready on ").nth(1) {
                let url = rest.trim().trim_end_matches('/');
                break url.split("://").nth(1).unwrap().to_string();
            }
        };
        // Keep reading stderr so the admin never blocks on a full pipe; shown with a
        // failing test's output.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("admin: {line}");
            }
        });
        Admin { child, addr }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One request; returns the status, the headers (lower-case names, repeated ones
    /// joined by newlines) and the body.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if method == "POST" {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut headers: HashMap<String, String> = HashMap::new();
        for line in lines {
            let (n, v) = line.split_once(": ").unwrap();
            headers
                .entry(n.to_ascii_lowercase())
                .and_modify(|old| {
                    old.push('\n');
                    old.push_str(v);
                })
                .or_insert_with(|| v.to_string());
        }
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        match cookie {
            Some(c) => self.request("GET", path, &[("Cookie", c)], ""),
            None => self.request("GET", path, &[], ""),
        }
    }

    /// A POST as a browser on this site sends it.
    pub fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Reply {
        let origin = self.origin();
        self.request(
            "POST",
            path,
            &[("Cookie", cookie), ("Origin", &origin)],
            &encode(form),
        )
    }

    /// Signs in; returns the session cookie (`name=value`).
    pub fn sign_in(&self, user: &str, password: &str) -> Result<String, Reply> {
        let page = self.get("/login", None);
        let login_cookie = page.cookie("pyfilter_login").unwrap();
        let csrf = page.field("csrf");
        let reply = self.post(
            "/login",
            &login_cookie,
            &[("csrf", &csrf), ("user", user), ("password", password)],
        );
        match reply.cookie("pyfilter_session") {
            Some(c) if reply.status == 303 => Ok(c),
            _ => Err(reply),
        }
    }

    /// The CSRF token of a signed-in session (every form carries it).
    pub fn csrf(&self, cookie: &str) -> String {
        self.get("/ban", Some(cookie)).field("csrf")
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// A cookie the reply sets, as `name=value` for the next request's Cookie header.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.header("set-cookie")
            .lines()
            .map(|c| c.split(';').next().unwrap())
            .find(|c| c.starts_with(&format!("{name}=")) && c.len() > name.len() + 1)
            .map(str::to_string)
    }

    /// The value of the first hidden input `name` in the page.
    pub fn field(&self, name: &str) -> String {
        let marker = format!(r#"name="{name}" value=""#);
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

pub fn encode(form: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

/// A directory whose configuration has an admin log, no firewall, and `extra`.
pub fn setup(extra: &str) -> Setup {
    let s = Setup::new("");
    s.write_config(&format!(
        "firewall: {{ backend: none }}\nadmin:\n  log: {}\n{extra}",
        s.path("admin.log").display()
    ));
    s
}

pub fn add_user(setup: &Setup, user: &str, password: &str) {
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(setup.config())
        .args(["admin", "passwd", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

pub fn admin_with_user(extra: &str) -> (Setup, Admin) {
    let s = setup(extra);
    add_user(&s, "alice", PASSWORD);
    let a = Admin::start(&s, &[]);
    (s, a)
}
