//! The daemon configuration file (`/etc/flotilla/daemon.toml`, overridable with `--config` or
//! `FLOTILLA_CONFIG`): engine-wide settings that are not part of any stack. Today it holds the
//! `[registries]` section (Docker Hub mirrors, plain-HTTP registries, the Docker Hub endpoint,
//! connect and read timeouts), `[api]` and `[dns]` (upstream resolvers); address pools and log sizes
//! join it with their issues. Unknown keys are errors naming the file, the line and the key, so a
//! typo never silently does nothing. A missing default file means "all defaults"; a missing file
//! the user named is an error.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::registry::{self, RegistryOptions, Timeouts};
use crate::spec::units::parse_duration;

/// Where the daemon configuration is read from when no path is given.
pub const DEFAULT_PATH: &str = "/etc/flotilla/daemon.toml";

/// Why the daemon configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("daemon config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("daemon config {path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("daemon config {path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// The whole daemon configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default)]
    pub registries: Registries,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub dns: Dns,
}

/// `[dns]`: the embedded DNS servers of the networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Resolvers (`ip` or `ip:port`) for names that are not services or containers; absent:
    /// the host's `/etc/resolv.conf` (loopback ones skipped); `[]`: such names are not found.
    #[serde(default)]
    pub upstreams: Option<Vec<String>>,
}

impl Dns {
    /// The upstream resolvers as socket addresses (port 53 unless given).
    pub fn upstream_addrs(&self) -> Result<Option<Vec<std::net::SocketAddr>>, String> {
        let Some(list) = &self.upstreams else {
            return Ok(None);
        };
        list.iter()
            .map(|u| {
                u.parse::<std::net::SocketAddr>()
                    .or_else(|_| {
                        u.parse::<std::net::IpAddr>()
                            .map(|ip| std::net::SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| format!("{u:?} is not an address (want ip or ip:port)"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// `[api]`: how the REST API is served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// The bearer token every TCP request must carry; a TCP `--host` without one is refused.
    #[serde(default)]
    pub token: Option<String>,
}

/// `[registries]`: how registries are reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Mirrors of Docker Hub, tried in order before `docker.io` (`http://host:port` or
    /// `https://host`; a plain-HTTP mirror is reached over plain HTTP).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Registries (`host[:port]`) reached over plain HTTP; loopback registries always are.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// The endpoint (`host[:port]`) that serves `docker.io` images when no mirror has them
    /// (default `registry-1.docker.io`); reached over plain HTTP when loopback or insecure.
    #[serde(default)]
    pub hub: Option<String>,
    /// How long to wait for a registry connection (`30s` by default; Go duration syntax).
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// How long any read from a registry may stall: response headers, or a pause in a body
    /// (`2m` by default).
    #[serde(default)]
    pub read_timeout: Option<String>,
}

impl DaemonConfig {
    /// Reads the configuration: `path` when the user named one (it must exist), else
    /// [`DEFAULT_PATH`] (missing means defaults).
    pub fn load(path: Option<&Path>) -> Result<DaemonConfig, ConfigError> {
        let (path, explicit) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => DaemonConfig::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(DaemonConfig::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and validates the text of a configuration file read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<DaemonConfig, ConfigError> {
        let config: DaemonConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        };
        self.dns
            .upstream_addrs()
            .map_err(|reason| invalid("dns.upstreams".into(), reason))?;
        for (i, mirror) in self.registries.mirrors.iter().enumerate() {
            let key = format!("registries.mirrors[{i}]");
            let rest = mirror
                .strip_prefix("http://")
                .or_else(|| mirror.strip_prefix("https://"))
                .unwrap_or(mirror);
            if rest.contains("://") {
                return Err(invalid(
                    key,
                    format!("{mirror:?}: only http:// and https:// mirrors are supported"),
                ));
            }
            check_host(rest.trim_end_matches('/')).map_err(|reason| {
                invalid(key, format!("{mirror:?}: {reason} (want http://host:port)"))
            })?;
        }
        if let Some(token) = &self.api.token
            && (token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(
                "api.token".to_string(),
                "at least 16 characters without whitespace".to_string(),
            ));
        }
        if let Some(hub) = &self.registries.hub {
            check_host(hub).map_err(|reason| {
                invalid(
                    "registries.hub".to_string(),
                    format!("{hub:?}: {reason} (want host or host:port)"),
                )
            })?;
        }
        self.timeouts()
            .map_err(|(key, reason)| invalid(key.to_string(), reason))?;
        for (i, host) in self.registries.insecure.iter().enumerate() {
            check_host(host).map_err(|reason| {
                invalid(
                    format!("registries.insecure[{i}]"),
                    format!("{host:?}: {reason} (want host or host:port)"),
                )
            })?;
        }
        Ok(())
    }

    /// The registry timeouts: the defaults, overridden by `registries.connect_timeout` and
    /// `registries.read_timeout`; an error names the key.
    fn timeouts(&self) -> Result<Timeouts, (&'static str, String)> {
        let mut timeouts = Timeouts::default();
        let fields = [
            (
                "registries.connect_timeout",
                &self.registries.connect_timeout,
                &mut timeouts.connect,
            ),
            (
                "registries.read_timeout",
                &self.registries.read_timeout,
                &mut timeouts.read,
            ),
        ];
        for (key, text, slot) in fields {
            let Some(text) = text else { continue };
            let duration = parse_duration(text).map_err(|reason| (key, reason))?;
            if duration.is_zero() {
                return Err((key, format!("{text:?}: must be more than zero")));
            }
            *slot = duration;
        }
        Ok(timeouts)
    }

    /// How the image code reaches registries under this configuration (no credentials: those
    /// come per registry from the Docker config file).
    pub fn registry_options(&self) -> RegistryOptions {
        let mut insecure = self.registries.insecure.clone();
        for mirror in &self.registries.mirrors {
            if let Some(host) = mirror.strip_prefix("http://") {
                let host = host.trim_end_matches('/').to_string();
                if !insecure.contains(&host) {
                    insecure.push(host);
                }
            }
        }
        RegistryOptions {
            insecure,
            mirrors: self.registries.mirrors.clone(),
            hub: self
                .registries
                .hub
                .clone()
                .unwrap_or_else(|| registry::DEFAULT_HUB.to_string()),
            // Checked by `validate` when the file was read; a config built in code that holds
            // a bad duration gets the defaults.
            timeouts: self.timeouts().unwrap_or_default(),
            auth: None,
        }
    }
}

/// Checks a `host[:port]` registry address (no scheme, no path).
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty address".to_string());
    }
    if host.contains("://") {
        return Err("a scheme is not allowed here".to_string());
    }
    if host.contains('/') {
        return Err("a path is not allowed".to_string());
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("whitespace is not allowed".to_string());
    }
    // `[::1]:5000` keeps its colons inside brackets; elsewhere one colon starts the port.
    let port = match host.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host.split_once(':').map(|(_, port)| port),
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("invalid port {port:?}"));
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(1, |l| l.chars().count() + 1);
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::parse(text, Path::new("/etc/flotilla/daemon.toml"))
    }

    #[test]
    fn parses_registries() {
        let config = parse(
            "[registries]\nmirrors = [\"http://127.0.0.1:5001\", \"https://mirror.example\"]\n\
             insecure = [\"myhost:5000\", \"[::1]:80\"]\n",
        )
        .unwrap();
        assert_eq!(config.registries.mirrors.len(), 2);
        let options = config.registry_options();
        assert_eq!(
            options.insecure,
            ["myhost:5000", "[::1]:80", "127.0.0.1:5001"],
            "a plain-HTTP mirror is insecure"
        );
        assert_eq!(options.mirrors, config.registries.mirrors);
    }

    #[test]
    fn hub_and_timeouts() {
        let config = parse(
            "[registries]\nhub = \"127.0.0.1:9\"\nconnect_timeout = \"1.5s\"\n\
             read_timeout = \"1m30s\"\n",
        )
        .unwrap();
        let options = config.registry_options();
        assert_eq!(options.hub, "127.0.0.1:9");
        assert_eq!(
            options.timeouts.connect,
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(options.timeouts.read, std::time::Duration::from_secs(90));
        let defaults = parse("").unwrap().registry_options();
        assert_eq!(defaults.hub, "registry-1.docker.io");
        assert_eq!(defaults.timeouts, Timeouts::default());

        let error = parse("[registries]\nread_timeout = \"2 minutes\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("/etc/flotilla/daemon.toml"), "{error}");
        assert!(error.contains("registries.read_timeout"), "{error}");
        assert!(error.contains("invalid duration"), "{error}");
        let error = parse("[registries]\nconnect_timeout = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("registries.connect_timeout"), "{error}");
        let error = parse("[registries]\nconnect_timeout = 30\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains(":2:"), "{error}");
        let error = parse("[registries]\nconect_timeout = \"30s\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("conect_timeout"), "{error}");
        assert!(error.contains("daemon.toml:2:1"), "{error}");
        let error = parse("[registries]\nhub = \"https://hub.example\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("registries.hub"), "{error}");
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse("").unwrap(), DaemonConfig::default());
        assert_eq!(parse("[registries]\n").unwrap(), DaemonConfig::default());
    }

    #[test]
    fn unknown_keys_are_named_with_file_and_line() {
        let error = parse("[registries]\nmirrors = []\nmirorrs = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("/etc/flotilla/daemon.toml:3:1"), "{error}");
        assert!(error.contains("mirorrs"), "{error}");
        let error = parse("[registry]\n").unwrap_err().to_string();
        assert!(error.contains("registry"), "{error}");
        assert!(error.contains(":1:"), "{error}");
    }

    #[test]
    fn bad_values_are_named() {
        let error = parse("[registries]\ninsecure = [\"http://myhost:5000\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("registries.insecure[0]"), "{error}");
        let error = parse("[registries]\nmirrors = [\"ftp://m\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("registries.mirrors[0]"), "{error}");
        let error = parse("[registries]\ninsecure = [\"h:99999\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid port"), "{error}");
        let error = parse("[registries]\ninsecure = \"h\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains(":2:"), "{error}");
    }

    #[test]
    fn api_token() {
        let config = parse("[api]\ntoken = \"0123456789abcdef0123\"\n").unwrap();
        assert_eq!(config.api.token.as_deref(), Some("0123456789abcdef0123"));
        let error = parse("[api]\ntoken = \"short\"\n").unwrap_err().to_string();
        assert!(error.contains("api.token"), "{error}");
        let error = parse("[api]\ntokn = \"x\"\n").unwrap_err().to_string();
        assert!(error.contains("tokn"), "{error}");
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("daemon.toml");
        let error = DaemonConfig::load(Some(&missing)).unwrap_err().to_string();
        assert!(error.contains("daemon.toml"), "{error}");
        std::fs::write(&missing, "[registries]\ninsecure = [\"h:5000\"]\n").unwrap();
        let config = DaemonConfig::load(Some(&missing)).unwrap();
        assert_eq!(config.registries.insecure, ["h:5000"]);
    }
}
