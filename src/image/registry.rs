//! The door to OCI distribution registries (through `oci-client`): one client per registry,
//! plain HTTP for loopback registries (like Docker) and HTTPS otherwise, anonymous access with
//! bearer tokens as the registry asks. [`pull`](super::pull) and [`push`](super::push) build on it.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use super::reference::Reference;
use super::store::Digest;

pub use oci_client::Reference as OciReference;

/// Default bound on concurrent blob transfers of one pull or push.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The manifest media types a pull accepts.
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    super::record::OCI_MANIFEST,
    super::record::OCI_INDEX,
    super::record::DOCKER_MANIFEST,
    super::record::DOCKER_MANIFEST_LIST,
];

/// Why reading registry credentials failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("docker config {path}: {source}")]
    ReadConfig {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("docker config {path}: {reason}")]
    BadConfig {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Helper(#[from] super::credential_helper::HelperError),
}

/// The Docker Hub key of `~/.docker/config.json`.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// The credentials for `registry` in a Docker `config.json`: first from the credential helper
/// it names for that registry (`credHelpers.<registry>`, else `credsStore`; run as Docker runs
/// it, [`credential_helper`](super::credential_helper)), then from `auths.<registry>` (`auth`,
/// base64 of `user:password`, or `username`/`password`); `None` when neither has any.
pub fn docker_config_auth(
    path: &std::path::Path,
    registry: &str,
) -> Result<Option<(String, String)>, RegistryError> {
    use base64::Engine as _;
    let bad = |reason: String| RegistryError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistryError::ReadConfig {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let config: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    if let Some((helper, server)) = super::credential_helper::helper_for(&config, registry)
        && let Some(found) = super::credential_helper::get(&helper, &server)?
    {
        return Ok(Some(found));
    }
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let wanted = |key: &str| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = key.split('/').next().unwrap_or(key);
        host == registry
            || (registry == super::reference::DEFAULT_REGISTRY
                && matches!(host, "index.docker.io" | "registry-1.docker.io"))
    };
    let Some((key, entry)) = auths
        .iter()
        .find(|(key, _)| key.as_str() == DOCKER_HUB_AUTH_KEY && wanted(key))
        .or_else(|| auths.iter().find(|(key, _)| wanted(key)))
    else {
        return Ok(None);
    };
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str())
        && !auth.is_empty()
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| bad(format!("auths.{key}.auth: {e}")))?;
        let text =
            String::from_utf8(decoded).map_err(|_| bad(format!("auths.{key}.auth: not utf-8")))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{key}.auth: not user:password")))?;
        return Ok(Some((user.to_string(), password.to_string())));
    }
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str());
    Ok(field("username")
        .zip(field("password"))
        .map(|(u, p)| (u.to_string(), p.to_string())))
}

/// The host that serves Docker Hub's registry API (`docker.io` references are fetched there).
pub const DEFAULT_HUB: &str = "registry-1.docker.io";

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Mirrors of Docker Hub (`host[:port]`), tried in order before `docker.io` itself.
    pub mirrors: Vec<String>,
    /// The endpoint (`host[:port]`) that serves `docker.io` images: [`DEFAULT_HUB`] unless the
    /// daemon config says otherwise. Every request for a `docker.io` reference that is not sent
    /// to a mirror goes here, never to any other Docker Hub host.
    pub hub: String,
    /// Connect and read timeouts towards every registry.
    pub timeouts: Timeouts,
    /// Credentials; anonymous (with bearer tokens when the registry asks) when `None`.
    pub auth: Option<(String, String)>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            hub: DEFAULT_HUB.to_string(),
            timeouts: Timeouts::default(),
            auth: None,
        }
    }
}

impl RegistryOptions {
    /// The `oci-client` credentials to use.
    pub fn registry_auth(&self) -> RegistryAuth {
        match &self.auth {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// `reference` with its registry replaced by the endpoint that serves it: `docker.io`
    /// references go to [`hub`](Self::hub), all others to their own registry.
    pub fn endpoint(&self, reference: &Reference) -> Reference {
        if reference.registry == super::reference::DEFAULT_REGISTRY {
            Reference {
                registry: strip_scheme(&self.hub).to_string(),
                ..reference.clone()
            }
        } else {
            reference.clone()
        }
    }

    /// Where to look for `reference`, as endpoints: its mirrors (Docker Hub images only), then
    /// its registry ([`endpoint`](Self::endpoint)).
    pub fn sources(&self, reference: &Reference) -> Vec<Reference> {
        let mut sources = Vec::new();
        if reference.registry == super::reference::DEFAULT_REGISTRY {
            for mirror in &self.mirrors {
                sources.push(Reference {
                    registry: strip_scheme(mirror).to_string(),
                    ..reference.clone()
                });
            }
        }
        sources.push(self.endpoint(reference));
        sources
    }

    /// Whether `reference`'s registry is spoken to over plain HTTP.
    pub fn plain_http(&self, reference: &Reference) -> bool {
        reference.registry_is_loopback() || self.insecure.contains(&reference.registry)
    }
}

/// `host[:port]` of a `http://host:port/` address.
fn strip_scheme(address: &str) -> &str {
    address
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
}

/// How long to wait for a registry before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// Each read: waiting for response headers, and any pause in a body.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            read: Duration::from_secs(120),
        }
    }
}

/// A client for the registry of `reference` (an endpoint: see [`RegistryOptions::endpoint`])
/// that gives up after the options' [`Timeouts`].
pub fn client_for(reference: &Reference, options: &RegistryOptions) -> oci_client::Client {
    let protocol = if options.plain_http(reference) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    oci_client::Client::new(ClientConfig {
        protocol,
        platform_resolver: None,
        connect_timeout: Some(options.timeouts.connect),
        read_timeout: Some(options.timeouts.read),
        ..ClientConfig::default()
    })
}

/// `reference` in `oci-client`'s form.
pub fn oci_reference(reference: &Reference) -> OciReference {
    let registry = reference.registry.clone();
    let repository = reference.repository.clone();
    match (&reference.tag, &reference.digest) {
        (Some(tag), Some(digest)) => {
            OciReference::with_tag_and_digest(registry, repository, tag.clone(), digest.clone())
        }
        (None, Some(digest)) => OciReference::with_digest(registry, repository, digest.clone()),
        (tag, None) => OciReference::with_tag(
            registry,
            repository,
            tag.clone()
                .unwrap_or(super::reference::DEFAULT_TAG.to_string()),
        ),
    }
}

/// The same repository as `reference`, at `digest`.
pub fn oci_reference_at(reference: &Reference, digest: &Digest) -> OciReference {
    OciReference::with_digest(
        reference.registry.clone(),
        reference.repository.clone(),
        digest.to_string(),
    )
}

/// Whether a registry error says the manifest, tag, blob or repository does not exist.
pub fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
            )
        }),
        _ => false,
    }
}

/// Whether the registry refused access (HTTP 401 or 403).
pub fn is_unauthorized(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RequestError(e) => {
            e.status().is_some_and(|s| matches!(s.as_u16(), 401 | 403))
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

/// A registry error rendered in one lower-case line.
pub fn describe(error: &OciDistributionError) -> String {
    let text = match error {
        OciDistributionError::RequestError(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
        other => other.to_string(),
    };
    lower_first(text)
}

/// `text` with its first letter in lower case (messages of other crates often start upper case).
pub fn lower_first(text: String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // Acronyms (`HTTP status …`) keep their case.
        Some(first)
            if first.is_uppercase() && !chars.clone().next().is_some_and(char::is_uppercase) =>
        {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http() {
        let options = RegistryOptions::default();
        let local = Reference::parse("127.0.0.1:5000/a/b:1").unwrap();
        assert!(options.plain_http(&local));
        let hub = Reference::parse("redis").unwrap();
        assert!(!options.plain_http(&hub));
        let r = oci_reference(&hub);
        assert_eq!(r.repository(), "library/redis");
        assert_eq!(r.tag(), Some("latest"));

        let mirrored = RegistryOptions {
            mirrors: vec!["http://127.0.0.1:5001/".to_string()],
            ..RegistryOptions::default()
        };
        let sources: Vec<String> = mirrored
            .sources(&hub)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            sources,
            [
                "127.0.0.1:5001/library/redis:latest",
                "registry-1.docker.io/library/redis:latest"
            ]
        );
        let local_hub = RegistryOptions {
            hub: "127.0.0.1:5002".to_string(),
            ..mirrored.clone()
        };
        let sources = local_hub.sources(&hub);
        assert_eq!(
            sources[1].to_string(),
            "127.0.0.1:5002/library/redis:latest"
        );
        assert!(
            sources.iter().all(|s| local_hub.plain_http(s)),
            "loopback mirror and hub: plain HTTP"
        );
        assert_eq!(local_hub.endpoint(&local), local);
        assert_eq!(
            mirrored.sources(&local).len(),
            1,
            "mirrors are for docker.io only"
        );
    }

    #[test]
    fn lower_first_keeps_acronyms() {
        assert_eq!(lower_first("Invalid digest".to_string()), "invalid digest");
        assert_eq!(lower_first("HTTP status".to_string()), "HTTP status");
    }

    #[test]
    fn reads_docker_config_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        // "alice:s3cret:x" — a password may contain colons.
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcmV0Ong="},
                "127.0.0.1:5000":{"username":"bob","password":"pw"}}}"#,
        )
        .unwrap();
        assert_eq!(
            docker_config_auth(&path, "docker.io").unwrap(),
            Some(("alice".to_string(), "s3cret:x".to_string()))
        );
        assert_eq!(
            docker_config_auth(&path, "127.0.0.1:5000").unwrap(),
            Some(("bob".to_string(), "pw".to_string()))
        );
        assert_eq!(docker_config_auth(&path, "ghcr.io").unwrap(), None);
        assert_eq!(
            docker_config_auth(&dir.path().join("missing.json"), "ghcr.io").unwrap(),
            None
        );
        std::fs::write(&path, r#"{"auths":{"ghcr.io":{"auth":"!!"}}}"#).unwrap();
        let error = docker_config_auth(&path, "ghcr.io")
            .unwrap_err()
            .to_string();
        assert!(error.contains("auths.ghcr.io.auth"), "{error}");
    }
}
