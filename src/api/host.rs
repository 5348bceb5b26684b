//! Daemon addresses, as `--host` and `FLOTILLA_HOST` spell them: `unix:///run/flotilla/flotilla.sock`
//! (the default) or `tcp://127.0.0.1:2375`. A bare absolute path is a unix socket.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The default socket.
pub const DEFAULT_SOCKET: &str = "/run/flotilla/flotilla.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("host {0:?}: expected unix:///path or tcp://host:port")]
    Scheme(String),
    #[error("host {0:?}: the socket path must be absolute")]
    RelativePath(String),
    #[error("host {0:?}: expected host:port after tcp://")]
    Port(String),
}

impl Default for Host {
    fn default() -> Self {
        Host::Unix(PathBuf::from(DEFAULT_SOCKET))
    }
}

impl FromStr for Host {
    type Err = HostError;

    fn from_str(s: &str) -> Result<Self, HostError> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(HostError::RelativePath(s.to_string()));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(s)));
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(HostError::Port(s.to_string()));
            }
            return Ok(Host::Tcp(addr.to_string()));
        }
        Err(HostError::Scheme(s.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let h: Host = "unix:///tmp/x.sock".parse().unwrap();
        assert_eq!(h, Host::Unix("/tmp/x.sock".into()));
        assert_eq!(h.to_string(), "unix:///tmp/x.sock");
        assert_eq!(
            "/tmp/y.sock".parse::<Host>().unwrap(),
            Host::Unix("/tmp/y.sock".into())
        );
        let t: Host = "tcp://127.0.0.1:2375".parse().unwrap();
        assert_eq!(t, Host::Tcp("127.0.0.1:2375".into()));
        assert_eq!(t.to_string(), "tcp://127.0.0.1:2375");
        assert_eq!(
            Host::default().to_string(),
            format!("unix://{DEFAULT_SOCKET}")
        );
        assert!(matches!(
            "http://x:1".parse::<Host>(),
            Err(HostError::Scheme(_))
        ));
        assert!(matches!("tcp://x".parse::<Host>(), Err(HostError::Port(_))));
        assert!(matches!(
            "tcp://:80".parse::<Host>(),
            Err(HostError::Port(_))
        ));
        assert!(matches!(
            "unix://x.sock".parse::<Host>(),
            Err(HostError::RelativePath(_))
        ));
    }
}
