//! Redis servers of the test's own, every one with pyfilter's minimal ACL user (exactly
//! the README's rules): on a unix socket, or on a TLS port inside a network namespace with
//! certificates the test makes with the openssl CLI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Netns, wait_for};

/// pyfilter's user, as the README creates it; its password.
pub const PYFILTER_USER: &str = "pyfilter";
pub const PYFILTER_PASSWORD: &str = "fleet-secret-0123456789";
/// The README's ACL rules for pyfilter's user, word for word: every Redis-touching test
/// runs pyfilter as this user, so these are all it needs.
pub const ACL_RULES: &str =
    "~pyfilter:* &pyfilter:* +@read +@write +@scripting +@pubsub +ping +select";
/// The `default` user's password: the test's own redis-cli, replication and sentinels.
pub const ADMIN_PASSWORD: &str = "admin-secret-9876543210";

/// The users of every test Redis: `default` (everything, with a password) and pyfilter's.
pub fn acl_lines() -> String {
    format!(
        "user default on >{ADMIN_PASSWORD} ~* &* +@all\nuser {PYFILTER_USER} on >{PYFILTER_PASSWORD} {ACL_RULES}\n"
    )
}

/// Starts `redis-server CONF [extra]`, in `ns` when given; its output goes to `log`.
pub fn spawn_redis(ns: Option<&Netns>, conf: &Path, extra: &[&str], log: &Path) -> Child {
    let mut c = match ns {
        Some(ns) => ns.command("redis-server"),
        None => Command::new("redis-server"),
    };
    c.arg(conf)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test installs it)")
}

/// A `redis-server` of the test's own on a unix socket, without persistence (so a
/// restart loses everything, as a crashed cache would).
pub struct RedisServer {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL pyfilter is given: its own ACL user.
    pub fn url(&self) -> String {
        format!(
            "redis+unix://{}?user={PYFILTER_USER}&pass={PYFILTER_PASSWORD}",
            self.socket().display()
        )
    }

    /// The URL of the `default` user, for what is not pyfilter's (an old PyFilter's keys).
    pub fn admin_url(&self) -> String {
        format!(
            "redis+unix://{}?pass={ADMIN_PASSWORD}",
            self.socket().display()
        )
    }

    /// Starts it (again) and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\nunixsocket {}\nunixsocketperm 700\nsave \"\"\nappendonly no\ndir {}\n{}",
                self.socket().display(),
                self.dir.path().display(),
                acl_lines()
            ),
        )
        .unwrap();
        let log = self.dir.path().join("redis.log");
        self.child = Some(spawn_redis(None, &conf, &[], &log));
        wait_for(Duration::from_secs(10), "redis-server to answer", || {
            self.cli(&["PING"]).trim() == "PONG"
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// `redis-cli` against it as `default`; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(["--no-auth-warning", "-a", ADMIN_PASSWORD])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A certificate authority and the certificates it signed, made with the openssl CLI:
/// the server's (for `localhost` and 127.0.0.1) and a client's; and a second authority
/// that signed nothing here.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Certs {
        let certs = Certs {
            dir: tempfile::tempdir().unwrap(),
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "stranger-ca"] {
            certs.openssl(
                &[
                    &["req", "-x509"][..],
                    &ec,
                    &[
                        "-keyout",
                        &format!("{ca}.key"),
                        "-out",
                        &format!("{ca}.pem"),
                        "-days",
                        "2",
                        "-subj",
                        &format!("/CN=pyfilter test {ca}"),
                    ],
                ]
                .concat(),
            );
        }
        for (name, ext) in [
            (
                "server",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(certs.path(&format!("{name}.ext")), ext).unwrap();
            certs.openssl(
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.csr"),
                        "-subj",
                        &format!("/CN={name}"),
                    ],
                ]
                .concat(),
            );
            certs.openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        certs
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("openssl must be installed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A `redis-server` answering only TLS on 127.0.0.1:6380 inside `ns`, its certificate
/// signed by `certs`' authority; `clients: yes` asks every client for a certificate.
pub struct TlsRedis {
    pub dir: tempfile::TempDir,
    child: Child,
}

pub const TLS_PORT: u16 = 6380;

impl TlsRedis {
    pub fn start(ns: &Netns, certs: &Certs, client_certificates: bool) -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\nbind 127.0.0.1\ntls-port {TLS_PORT}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients {}\nsave \"\"\nappendonly no\ndir {}\n{}",
                certs.path("server.pem").display(),
                certs.path("server.key").display(),
                certs.path("ca.pem").display(),
                if client_certificates { "yes" } else { "no" },
                dir.path().display(),
                acl_lines()
            ),
        )
        .unwrap();
        let log = dir.path().join("redis.log");
        let child = spawn_redis(Some(ns), &conf, &[], &log);
        let r = TlsRedis { dir, child };
        wait_for(
            Duration::from_secs(10),
            "redis-server to answer over TLS",
            || r.cli(ns, certs, &["PING"]).trim() == "PONG",
        );
        r
    }

    /// pyfilter's URL: its ACL user, TLS to localhost.
    pub fn url() -> String {
        format!("rediss://{PYFILTER_USER}:{PYFILTER_PASSWORD}@localhost:{TLS_PORT}/0")
    }

    /// `redis-cli --tls` as `default`, with the client certificate.
    pub fn cli(&self, ns: &Netns, certs: &Certs, args: &[&str]) -> String {
        let port = TLS_PORT.to_string();
        let mut all = vec![
            "--tls",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--no-auth-warning",
            "-a",
            ADMIN_PASSWORD,
        ];
        let (ca, cert, key) = (
            certs.path("ca.pem").display().to_string(),
            certs.path("client.pem").display().to_string(),
            certs.path("client.key").display().to_string(),
        );
        all.extend(["--cacert", &ca, "--cert", &cert, "--key", &key]);
        all.extend(args);
        String::from_utf8_lossy(&ns.run("redis-cli", &all).stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
