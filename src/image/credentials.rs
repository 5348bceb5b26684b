//! Registry credentials in Docker's client config file (`$DOCKER_CONFIG/config.json`, by default
//! `~/.docker/config.json`), so `docker login` and `flotilla login` share them: finding the file,
//! the key a server is stored under (Docker Hub's is `https://index.docker.io/v1/`), checking a
//! user and password against the registry's `/v2/` the way `docker login` does (HTTP basic, or
//! the bearer-token realm the registry names), and saving or removing an `auths` entry. The file is
//! rewritten atomically (temporary file, mode 0600, synced, renamed) and keeps every other key.
//! Reading an entry for a pull is [`registry::docker_config_auth`](super::registry::docker_config_auth)
//! (credential helpers first, [`credential_helper`](super::credential_helper)).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;

use super::reference::{DEFAULT_REGISTRY, Reference};
use super::registry::RegistryOptions;

/// The key Docker stores Docker Hub credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Why a credentials operation failed; each variant names the file or the server.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot find the docker config: neither DOCKER_CONFIG nor HOME is set")]
    NoHome,
    #[error("docker config {path}: read: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("docker config {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("docker config {path}: write: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("invalid server address {server:?}: {reason}")]
    BadServer { server: String, reason: String },
    #[error("login to {server}: {reason}")]
    Verify { server: String, reason: String },
    #[error("login to {server}: the registry rejected the user name or password")]
    Rejected { server: String },
}

type Result<T, E = CredentialsError> = std::result::Result<T, E>;

/// The Docker client config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
        .ok_or(CredentialsError::NoHome)
}

/// A registry server as `login`/`logout` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The key of the `auths` entry (`https://index.docker.io/v1/`, `127.0.0.1:5000`).
    pub key: String,
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
}

impl Server {
    /// The server named on the command line (Docker Hub when `None`), normalized like Docker:
    /// a scheme and a trailing path are dropped, Docker Hub's aliases become its key.
    pub fn parse(server: Option<&str>) -> Result<Server> {
        let Some(text) = server else {
            return Ok(Server::docker_hub());
        };
        let bad = |reason: &str| CredentialsError::BadServer {
            server: text.to_string(),
            reason: reason.to_string(),
        };
        let host = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        let host = host.split('/').next().unwrap_or(host);
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace"));
        }
        if matches!(
            host,
            "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
        ) {
            return Ok(Server::docker_hub());
        }
        // The host must be a valid registry of a reference.
        Reference::parse(&format!("{host}/flotilla/login-check"))
            .ok()
            .filter(|r| r.registry == host)
            .ok_or_else(|| bad("not a registry host[:port]"))?;
        Ok(Server {
            key: host.to_string(),
            registry: host.to_string(),
        })
    }

    pub fn docker_hub() -> Server {
        Server {
            key: DOCKER_HUB_KEY.to_string(),
            registry: DEFAULT_REGISTRY.to_string(),
        }
    }

    /// `https://host/v2/`, or `http://` for loopback and insecure registries; Docker Hub is
    /// the configured hub endpoint ([`RegistryOptions::hub`]).
    fn api_base(&self, options: &RegistryOptions) -> String {
        let probe = options.endpoint(&Reference {
            registry: self.registry.clone(),
            repository: "flotilla/login-check".to_string(),
            tag: None,
            digest: None,
        });
        let scheme = if options.plain_http(&probe) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/", probe.registry)
    }
}

/// Checks `user`/`password` against the registry like `docker login`: `GET /v2/` with HTTP basic
/// auth; when the registry answers with a bearer challenge, a token is requested from its realm
/// with the same credentials.
pub async fn verify(
    server: &Server,
    options: &RegistryOptions,
    user: &str,
    password: &str,
) -> Result<()> {
    let failed = |reason: String| CredentialsError::Verify {
        server: server.key.clone(),
        reason,
    };
    let rejected = || CredentialsError::Rejected {
        server: server.key.clone(),
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| failed(error_chain(&e)))?;
    let url = server.api_base(options);
    let response = client
        .get(&url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|e| failed(format!("GET {url}: {}", error_chain(&e))))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status != reqwest::StatusCode::UNAUTHORIZED {
        return Err(failed(format!("GET {url}: HTTP status {status}")));
    }
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(params) = bearer_challenge(&challenge) else {
        // A basic challenge after sending basic credentials: they are wrong.
        return Err(rejected());
    };
    let Some(realm) = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v) else {
        return Err(failed(format!(
            "bearer challenge without a realm: {challenge}"
        )));
    };
    let mut query = vec![
        ("account", user.to_string()),
        ("client_id", "flotilla".to_string()),
    ];
    if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
        query.push(("service", service.clone()));
    }
    let token = client
        .get(realm.as_str())
        .query(&query)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|e| failed(format!("GET {realm}: {}", error_chain(&e))))?;
    match token.status() {
        s if s.is_success() => Ok(()),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => Err(rejected()),
        s => Err(failed(format!("GET {realm}: HTTP status {s}"))),
    }
}

/// The parameters of a `Bearer k="v",…` challenge; `None` for any other scheme.
fn bearer_challenge(header: &str) -> Option<Vec<(String, String)>> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.push((key, value.to_string()));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(params)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads the config file as a JSON object (`{}` when it does not exist).
fn read_config(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(serde_json::Map::new()),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let parse_error = |reason: String| CredentialsError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(&data).map_err(|e| parse_error(e.to_string()))? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(parse_error("not a JSON object".to_string())),
    }
}

/// Saves `user`/`password` for `server` (base64 `auth`, like Docker), keeping the rest of the
/// file. Returns whether the file names a credential helper (asked first on pulls, see
/// [`credential_helper`](super::credential_helper); flotilla never stores into helpers).
pub fn save(path: &Path, server: &Server, user: &str, password: &str) -> Result<bool> {
    let mut config = read_config(path)?;
    let helper = config.contains_key("credsStore") || config.contains_key("credHelpers");
    let auths = config
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    let serde_json::Value::Object(auths) = auths else {
        return Err(CredentialsError::Parse {
            path: path.to_path_buf(),
            reason: "auths: not a JSON object".to_string(),
        });
    };
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    auths.insert(server.key.clone(), serde_json::json!({ "auth": auth }));
    write_config(path, &config)?;
    Ok(helper)
}

/// Removes the credentials of `server` (under its key or an equivalent spelling); returns
/// whether there were any.
pub fn remove(path: &Path, server: &Server) -> Result<bool> {
    let mut config = read_config(path)?;
    let Some(serde_json::Value::Object(auths)) = config.get_mut("auths") else {
        return Ok(false);
    };
    let doomed: Vec<String> = auths
        .keys()
        .filter(|key| {
            key.as_str() == server.key
                || Server::parse(Some(key.as_str())).is_ok_and(|s| s.key == server.key)
        })
        .cloned()
        .collect();
    if doomed.is_empty() {
        return Ok(false);
    }
    for key in doomed {
        auths.remove(&key);
    }
    write_config(path, &config)?;
    Ok(true)
}

/// Writes the config atomically with mode 0600 (through a symlink to its target, like Docker).
fn write_config(path: &Path, config: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    };
    let write_error = |source: io::Error| CredentialsError::Write {
        path: target.clone(),
        source,
    };
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_error)?;
    let mut data =
        serde_json::to_vec_pretty(config).map_err(|e| write_error(io::Error::other(e)))?;
    data.push(b'\n');
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".config.json.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&data)?;
        file.sync_all()?;
        fs::rename(&tmp, &target)?;
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::image::registry::docker_config_auth;

    #[test]
    fn server_keys() {
        assert_eq!(Server::parse(None).unwrap(), Server::docker_hub());
        assert_eq!(
            Server::parse(Some("https://index.docker.io/v1/")).unwrap(),
            Server::docker_hub()
        );
        assert_eq!(
            Server::parse(Some("docker.io")).unwrap(),
            Server::docker_hub()
        );
        let local = Server::parse(Some("http://127.0.0.1:5000/")).unwrap();
        assert_eq!(local.key, "127.0.0.1:5000");
        assert_eq!(local.registry, "127.0.0.1:5000");
        assert!(Server::parse(Some("https:///x")).is_err());
        assert!(Server::parse(Some("bad host")).is_err());
        assert!(Server::parse(Some("Upper_Case:x")).is_err());
    }

    #[test]
    fn api_base_schemes() {
        let options = RegistryOptions {
            insecure: vec!["myhost:5000".to_string()],
            ..RegistryOptions::default()
        };
        let url = |s: &str| Server::parse(Some(s)).unwrap().api_base(&options);
        assert_eq!(url("127.0.0.1:5000"), "http://127.0.0.1:5000/v2/");
        assert_eq!(url("myhost:5000"), "http://myhost:5000/v2/");
        assert_eq!(url("ghcr.io"), "https://ghcr.io/v2/");
        assert_eq!(url("docker.io"), "https://registry-1.docker.io/v2/");
        let local_hub = RegistryOptions {
            hub: "127.0.0.1:5001".to_string(),
            ..RegistryOptions::default()
        };
        let hub = Server::parse(None).unwrap();
        assert_eq!(hub.api_base(&local_hub), "http://127.0.0.1:5001/v2/");
    }

    #[test]
    fn bearer_challenges() {
        let params = bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="a:b:pull""#,
        )
        .unwrap();
        assert_eq!(
            params[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(params[1], ("service".into(), "registry.docker.io".into()));
        assert_eq!(params.len(), 3);
        assert!(bearer_challenge(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn save_and_remove_keep_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        let local = Server::parse(Some("127.0.0.1:5000")).unwrap();
        assert!(!save(&path, &local, "bob", "p:w").unwrap());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            docker_config_auth(&path, "127.0.0.1:5000").unwrap(),
            Some(("bob".to_string(), "p:w".to_string()))
        );
        // Other content survives a save and a remove.
        let mut text = fs::read_to_string(&path).unwrap();
        text = text.replacen('{', "{\"psFormat\": \"table\",", 1);
        fs::write(&path, text).unwrap();
        save(&path, &Server::docker_hub(), "alice", "pw").unwrap();
        assert!(remove(&path, &local).unwrap());
        assert!(!remove(&path, &local).unwrap());
        let config: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(config["psFormat"], "table");
        assert!(config["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        assert!(config["auths"].get("127.0.0.1:5000").is_none());
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["config.json"]);
    }

    #[test]
    fn bad_config_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, "[1]").unwrap();
        let error = save(&path, &Server::docker_hub(), "a", "b")
            .unwrap_err()
            .to_string();
        assert!(error.contains("config.json"), "{error}");
    }
}
