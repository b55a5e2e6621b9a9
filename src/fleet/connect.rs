//! How a server reaches the fleet's Redis: the server the URL names, or the primary that
//! Redis Sentinel names, plain or over TLS.
//!
//! With sentinels, every new connection asks them where the primary is (the first
//! sentinel that answers is believed), so after a failover the next connection, for
//! writes as for the subscription, goes to the new primary. A connection still open to a
//! primary that was demoted answers writes with READONLY, which the store treats as a
//! lost connection: it drops it and asks again. With `rediss://`, Redis's certificate is
//! checked against `redis.tls_ca` when set (the fleet's own authority) or the public ones
//! built in, and `redis.tls_cert`/`tls_key` are shown to a Redis that asks for a client
//! certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::redis::{
    Client, ClientTlsConfig, Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisError, TlsCertificates,
};

use crate::config::{RedisConfig, redacted, sentinel_addr};

/// Why the fleet's Redis cannot even be tried: the settings themselves are wrong.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("`{url}` is not a Redis URL: {source}")]
    Url { url: String, source: RedisError },
    #[error("redis.{key}: cannot read {path}: {source}")]
    File {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("redis TLS settings refused: {0}")]
    Tls(RedisError),
}

/// Where the fleet's Redis is, and how to reach it.
pub struct Endpoint {
    /// The URL without its password, for messages.
    url: String,
    timeout: Duration,
    target: Target,
}

enum Target {
    /// The URL's own server.
    Direct(Client),
    /// The primary the sentinels name.
    Sentinel(Sentinels),
}

struct Sentinels {
    addrs: Vec<(String, u16)>,
    master: String,
    /// The URL's user, password and database, to which the primary's address is added.
    info: ConnectionInfo,
    tls: bool,
    certs: Option<TlsCertificates>,
    user: Option<String>,
    password: Option<String>,
}

/// What one sentinel says of the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelView {
    pub sentinel: String,
    /// `host:port` of the primary it names, or why it could not say.
    pub primary: Result<String, String>,
    /// `host:port` of the replicas it knows, with their flags when not plain `slave`.
    pub replicas: Vec<String>,
    /// Its answer to `SENTINEL CKQUORUM`.
    pub quorum: String,
}

impl Endpoint {
    /// Reads the settings (and the certificate files they name); connects to nothing yet.
    pub fn new(config: &RedisConfig) -> Result<Endpoint, EndpointError> {
        let url = redacted(&config.url);
        let bad_url = |source| EndpointError::Url {
            url: url.clone(),
            source,
        };
        let certs = certificates(config)?;
        let target = if config.uses_sentinel() {
            let info = config
                .url
                .as_str()
                .into_connection_info()
                .map_err(bad_url)?;
            Target::Sentinel(Sentinels {
                addrs: config
                    .sentinels
                    .iter()
                    .filter_map(|s| sentinel_addr(s))
                    .collect(),
                master: config.master.clone().unwrap_or_default(),
                tls: matches!(info.addr(), ConnectionAddr::TcpTls { .. }),
                info,
                certs,
                user: config.sentinel_user.clone(),
                password: config.sentinel_password.clone(),
            })
        } else {
            Target::Direct(match certs {
                Some(certs) => Client::build_with_tls(config.url.as_str(), certs)
                    .map_err(EndpointError::Tls)?,
                None => Client::open(config.url.as_str()).map_err(bad_url)?,
            })
        };
        Ok(Endpoint {
            url,
            timeout: config.timeout,
            target,
        })
    }

    /// The URL without its password (and the master's name with sentinels), for messages.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Direct(_) => self.url.clone(),
            Target::Sentinel(s) => {
                format!("{} (primary `{}` from the sentinels)", self.url, s.master)
            }
        }
    }

    /// A new connection to the primary, with read and write timeouts set.
    pub fn connect(&self) -> Result<Connection, RedisError> {
        let conn = match &self.target {
            Target::Direct(client) => client.get_connection_with_timeout(self.timeout)?,
            Target::Sentinel(s) => s.connect(self.timeout)?,
        };
        conn.set_read_timeout(Some(self.timeout * 5))?;
        conn.set_write_timeout(Some(self.timeout * 5))?;
        Ok(conn)
    }

    /// With sentinels, where the primary is now (`host:port`), as the first sentinel that
    /// answers says; `None` without sentinels.
    pub fn primary(&self) -> Option<Result<String, RedisError>> {
        match &self.target {
            Target::Direct(_) => None,
            Target::Sentinel(s) => Some(s.primary(self.timeout).map(|(h, p)| join(&h, p))),
        }
    }

    /// Each sentinel's view of the primary and its replicas; empty without sentinels.
    pub fn sentinel_views(&self) -> Vec<SentinelView> {
        match &self.target {
            Target::Direct(_) => Vec::new(),
            Target::Sentinel(s) => s.addrs.iter().map(|a| s.view(a, self.timeout)).collect(),
        }
    }
}

impl Sentinels {
    fn sentinel(
        &self,
        (host, port): &(String, u16),
        timeout: Duration,
    ) -> Result<Connection, RedisError> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        };
        let mut redis = ::redis::RedisConnectionInfo::default();
        if let Some(user) = &self.user {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        let info = self.info.clone().set_addr(addr).set_redis_settings(redis);
        let client = match &self.certs {
            Some(certs) => Client::build_with_tls(info, certs.clone())?,
            None => Client::open(info)?,
        };
        let conn = client.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        Ok(conn)
    }

    /// The primary's address as the first sentinel that knows it says.
    fn primary(&self, timeout: Duration) -> Result<(String, u16), RedisError> {
        let mut why = Vec::new();
        for addr in &self.addrs {
            let answer = self.sentinel(addr, timeout).and_then(|mut c| {
                ::redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query::<Option<(String, u16)>>(&mut c)
            });
            match answer {
                Ok(Some(primary)) => return Ok(primary),
                Ok(None) => why.push(format!(
                    "{}: knows no primary named `{}`",
                    join(&addr.0, addr.1),
                    self.master
                )),
                Err(e) => why.push(format!("{}: {e}", join(&addr.0, addr.1))),
            }
        }
        Err(unreachable(format!(
            "no sentinel named the primary `{}` ({})",
            self.master,
            why.join("; ")
        )))
    }

    fn connect(&self, timeout: Duration) -> Result<Connection, RedisError> {
        let (host, port) = self.primary(timeout)?;
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let info = self.info.clone().set_addr(addr);
        let client = match &self.certs {
            Some(certs) => Client::build_with_tls(info, certs.clone())?,
            None => Client::open(info)?,
        };
        client.get_connection_with_timeout(timeout)
    }

    fn view(&self, addr: &(String, u16), timeout: Duration) -> SentinelView {
        let sentinel = join(&addr.0, addr.1);
        let mut conn = match self.sentinel(addr, timeout) {
            Ok(c) => c,
            Err(e) => {
                return SentinelView {
                    sentinel,
                    primary: Err(e.to_string()),
                    replicas: Vec::new(),
                    quorum: String::new(),
                };
            }
        };
        let primary = ::redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query::<Option<(String, u16)>>(&mut conn)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                p.map(|(h, p)| join(&h, p))
                    .ok_or_else(|| format!("knows no primary named `{}`", self.master))
            });
        let replicas = ::redis::cmd("SENTINEL")
            .arg("replicas")
            .arg(&self.master)
            .query::<Vec<std::collections::HashMap<String, String>>>(&mut conn)
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let get = |k: &str| r.get(k).cloned().unwrap_or_default();
                let at = join(&get("ip"), get("port").parse().unwrap_or(0));
                match get("flags").as_str() {
                    "slave" => at,
                    flags => format!("{at} ({flags})"),
                }
            })
            .collect();
        let quorum = ::redis::cmd("SENTINEL")
            .arg("ckquorum")
            .arg(&self.master)
            .query::<String>(&mut conn)
            .unwrap_or_else(|e| e.to_string());
        SentinelView {
            sentinel,
            primary,
            replicas,
            quorum,
        }
    }
}

/// `host:port`, an IPv6 host in brackets.
fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An error the store and the sync thread treat as Redis being away for now.
fn unreachable(message: String) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        message,
    ))
}

/// The certificate authority and client certificate the settings name, read now so a
/// missing file is said at once.
fn certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>, EndpointError> {
    if config.tls_ca.is_none() && config.tls_cert.is_none() {
        return Ok(None);
    }
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| EndpointError::File {
            key,
            path: path.to_path_buf(),
            source,
        })
    };
    let root_cert = config
        .tls_ca
        .as_deref()
        .map(|p| read("tls_ca", p))
        .transpose()?;
    let client_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("tls_cert", cert)?,
            client_key: read("tls_key", key)?,
        }),
        _ => None,
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_certificate_file_is_named_with_its_key() {
        let config = RedisConfig {
            url: "rediss://127.0.0.1:6380/0".into(),
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..RedisConfig::default()
        };
        let e = Endpoint::new(&config).err().expect("refused");
        assert!(
            e.to_string()
                .starts_with("redis.tls_ca: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn no_sentinel_answering_is_an_outage_not_a_configuration_error() {
        let config = RedisConfig {
            url: "redis://pyfilter:secret@any/0".into(),
            sentinels: vec!["127.0.0.1:1".into()],
            master: Some("fleet".into()),
            timeout: Duration::from_millis(200),
            ..RedisConfig::default()
        };
        let endpoint = Endpoint::new(&config).unwrap();
        assert_eq!(
            endpoint.describe(),
            "redis://pyfilter:***@any/0 (primary `fleet` from the sentinels)"
        );
        let e = endpoint.connect().err().expect("nobody listens on port 1");
        assert!(e.is_io_error(), "{e}");
        assert!(
            e.to_string()
                .contains("no sentinel named the primary `fleet`"),
            "{e}"
        );
    }
}
