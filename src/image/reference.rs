//! Image references (`redis:7`, `host:5000/a/b@sha256:…`): parsing, validation and normalization
//! the way Docker's `distribution/reference` does it, so users' `image:` lines mean what they mean
//! with Docker. This module owns the grammar and the defaults (`docker.io`, `library/`, `latest`);
//! it knows nothing about registries beyond telling whether one is on a loopback address.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The registry used when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The repository namespace of Docker Hub's official images (`redis` → `library/redis`).
pub const OFFICIAL_NAMESPACE: &str = "library";
/// The tag used when a reference has neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// Longest repository name (registry and path), as in distribution/reference.
const NAME_MAX: usize = 255;
/// Longest tag.
const TAG_MAX: usize = 128;

/// Why a string is not an image reference. Every message names the reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference: the reference is empty")]
    Empty,
    #[error("invalid image reference {reference:?}: it contains whitespace or control characters")]
    BadCharacters { reference: String },
    #[error("invalid image reference {reference:?}: the repository name is missing")]
    MissingRepository { reference: String },
    #[error(
        "invalid image reference {reference:?}: repository name {repository:?} must be lowercase"
    )]
    UppercaseRepository {
        reference: String,
        repository: String,
    },
    #[error(
        "invalid image reference {reference:?}: path component {component:?} must be lowercase letters, digits and single separators (. _ __ -) between them"
    )]
    InvalidPathComponent {
        reference: String,
        component: String,
    },
    #[error("invalid image reference {reference:?}: invalid registry {registry:?}: {reason}")]
    InvalidRegistry {
        reference: String,
        registry: String,
        reason: &'static str,
    },
    #[error(
        "invalid image reference {reference:?}: repository name is {length} characters long, at most {NAME_MAX} are allowed"
    )]
    NameTooLong { reference: String, length: usize },
    #[error(
        "invalid image reference {reference:?}: a repository name cannot be 64 hexadecimal characters (that is an image id)"
    )]
    HexName { reference: String },
    #[error("invalid image reference {reference:?}: the tag after ':' is empty")]
    EmptyTag { reference: String },
    #[error(
        "invalid image reference {reference:?}: invalid tag {tag:?}: a tag is letters, digits, '_', '.' and '-' and cannot begin with '.' or '-'"
    )]
    InvalidTag { reference: String, tag: String },
    #[error(
        "invalid image reference {reference:?}: tag is {length} characters long, at most {TAG_MAX} are allowed"
    )]
    TagTooLong { reference: String, length: usize },
    #[error("invalid image reference {reference:?}: invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        reference: String,
        digest: String,
        reason: String,
    },
}

/// A parsed, normalized image reference.
///
/// `registry` is the host (with port if any), `repository` the path inside it (`library/redis`).
/// `tag` is `Some("latest")` when the reference named neither a tag nor a digest; a digest-only
/// reference keeps `tag: None`. `digest` is `algorithm:hex`, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes a reference as Docker does (`redis` → `docker.io/library/redis:latest`).
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let reference = || input.to_string();
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReferenceError::BadCharacters {
                reference: reference(),
            });
        }

        // name [":" tag] ["@" digest]
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((before, after)) => (before, Some(after)),
            None => (input, None),
        };
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if !name_and_tag[colon..].contains('/') => {
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            _ => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::MissingRepository {
                reference: reference(),
            });
        }

        let digest = digest
            .map(|d| validate_digest(input, d).map(|()| d.to_string()))
            .transpose()?;
        let tag = match tag {
            Some(tag) => {
                validate_tag(input, tag)?;
                Some(tag.to_string())
            }
            None if digest.is_none() => Some(DEFAULT_TAG.to_string()),
            None => None,
        };

        let (registry, repository) = split_registry(name);
        if let Some(registry) = registry {
            validate_registry(input, registry)?;
        }
        if repository.is_empty() {
            return Err(ReferenceError::MissingRepository {
                reference: reference(),
            });
        }
        if repository.len() == 64 && repository.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexName {
                reference: reference(),
            });
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::UppercaseRepository {
                reference: reference(),
                repository: repository.to_string(),
            });
        }
        for component in repository.split('/') {
            if !is_path_component(component) {
                return Err(ReferenceError::InvalidPathComponent {
                    reference: reference(),
                    component: component.to_string(),
                });
            }
        }

        let registry = match registry {
            None | Some("index.docker.io") => DEFAULT_REGISTRY.to_string(),
            Some(other) => other.to_string(),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{repository}")
        } else {
            repository.to_string()
        };
        let length = registry.len() + 1 + repository.len();
        if length > NAME_MAX {
            return Err(ReferenceError::NameTooLong {
                reference: reference(),
                length,
            });
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository as `docker images` shows it: `redis`, `user/app`, `host:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form users type: `redis:7`, `user/app:latest`, `redis@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        self.push_suffix(&mut out);
        out
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// The registry's host without the port (`[::1]` keeps its brackets).
    pub fn registry_host(&self) -> &str {
        host_of(&self.registry)
    }

    /// Whether the registry is on this machine (`localhost`, 127.0.0.0/8, `[::1]`). Such registries
    /// are reached over plain HTTP with no configuration, like Docker does.
    pub fn registry_is_loopback(&self) -> bool {
        let host = self.registry_host();
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        if let Ok(v4) = host.parse::<Ipv4Addr>() {
            return v4.is_loopback();
        }
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
            .is_some_and(|v6| v6.is_loopback())
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Docker's rule: the first path component is a registry if it contains '.' or ':', is
/// `localhost`, or has an uppercase letter (a repository cannot); otherwise Docker Hub is meant.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// The host part of `host[:port]`, keeping the brackets of an IPv6 literal.
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

fn validate_registry(reference: &str, registry: &str) -> Result<(), ReferenceError> {
    let bad = |reason: &'static str| ReferenceError::InvalidRegistry {
        reference: reference.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let host = host_of(registry);
    let port = &registry[host.len()..];
    if let Some(port) = port.strip_prefix(':') {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the port must be digits"));
        }
        if port.parse::<u16>().is_err() {
            return Err(bad("the port is out of range"));
        }
    } else if !port.is_empty() {
        return Err(bad("unexpected characters after the host"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(bad("unclosed '['"))?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address"));
        }
        return Ok(());
    }
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    for label in host.split('.') {
        let bytes = label.as_bytes();
        let ok = !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
        if !ok {
            return Err(bad(
                "host labels are letters, digits and inner '-', separated by '.'",
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut need_alnum = true;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            need_alnum = false;
            i += 1;
            continue;
        }
        if need_alnum {
            return false;
        }
        // A separator: '.', '_', '__' or a run of '-'.
        let sep_len = match b {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|c| **c == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        need_alnum = true;
    }
    !need_alnum
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(reference: &str, tag: &str) -> Result<(), ReferenceError> {
    if tag.is_empty() {
        return Err(ReferenceError::EmptyTag {
            reference: reference.to_string(),
        });
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let valid = word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|b| word(*b) || *b == b'.' || *b == b'-');
    if !valid {
        return Err(ReferenceError::InvalidTag {
            reference: reference.to_string(),
            tag: tag.to_string(),
        });
    }
    if tag.len() > TAG_MAX {
        return Err(ReferenceError::TagTooLong {
            reference: reference.to_string(),
            length: tag.len(),
        });
    }
    Ok(())
}

/// `algorithm:hex`, with the lengths of the registered algorithms enforced.
fn validate_digest(reference: &str, digest: &str) -> Result<(), ReferenceError> {
    let bad = |reason: String| ReferenceError::InvalidDigest {
        reference: reference.to_string(),
        digest: digest.to_string(),
        reason,
    };
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad("expected algorithm:hex, as in sha256:<64 hex digits>".into()))?;
    let expected = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => return Err(bad(format!("unsupported algorithm {other:?}"))),
    };
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("the hex part must be lowercase hexadecimal".into()));
    }
    if hex.len() != expected {
        return Err(bad(format!(
            "{algorithm} needs {expected} hex digits, found {}",
            hex.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn full(s: &str) -> String {
        parse(s).to_string()
    }

    #[test]
    fn official_image_gets_registry_library_and_latest() {
        let r = parse("redis");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/redis");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.digest, None);
        assert_eq!(r.to_string(), "docker.io/library/redis:latest");
        assert_eq!(r.familiar(), "redis:latest");
    }

    #[test]
    fn normalization_table() {
        let cases = [
            ("redis:7", "docker.io/library/redis:7"),
            ("user/app", "docker.io/user/app:latest"),
            ("user/app:1.2.3", "docker.io/user/app:1.2.3"),
            ("docker.io/redis", "docker.io/library/redis:latest"),
            ("docker.io/library/redis:7", "docker.io/library/redis:7"),
            ("index.docker.io/redis", "docker.io/library/redis:latest"),
            ("index.docker.io/user/app:x", "docker.io/user/app:x"),
            ("host:5000/a/b:tag", "host:5000/a/b:tag"),
            ("host:5000/a", "host:5000/a:latest"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("127.0.0.1:5000/x/y:1", "127.0.0.1:5000/x/y:1"),
            ("ghcr.io/org/team/app:v1", "ghcr.io/org/team/app:v1"),
            ("quay.io/a/b", "quay.io/a/b:latest"),
            ("[::1]:5000/x", "[::1]:5000/x:latest"),
            ("a.b-c.d/x__y/z-w.q", "a.b-c.d/x__y/z-w.q:latest"),
            ("my---image", "docker.io/library/my---image:latest"),
            (
                "registry.example.com/a/b/c/d",
                "registry.example.com/a/b/c/d:latest",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(full(input), want, "{input}");
        }
    }

    #[test]
    fn familiar_forms() {
        let cases = [
            ("redis", "redis:latest"),
            ("redis:7", "redis:7"),
            ("docker.io/library/redis:7", "redis:7"),
            ("user/app:1", "user/app:1"),
            ("docker.io/library/a/b", "library/a/b:latest"),
            ("host:5000/a/b:tag", "host:5000/a/b:tag"),
            ("localhost/x", "localhost/x:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).familiar(), want, "{input}");
        }
        assert_eq!(parse("redis:7").familiar_name(), "redis");
        assert_eq!(parse("host:5000/a/b").familiar_name(), "host:5000/a/b");
    }

    #[test]
    fn localhost_with_port_alone_is_name_and_tag() {
        // Like Docker: without a '/', "localhost:5000" is the image "localhost" tagged "5000".
        let r = parse("localhost:5000");
        assert_eq!(r.to_string(), "docker.io/library/localhost:5000");
    }

    #[test]
    fn digest_only_has_no_tag() {
        let input = format!("redis@sha256:{HEX}");
        let r = parse(&input);
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(format!("sha256:{HEX}").as_str()));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/redis@sha256:{HEX}")
        );
        assert_eq!(r.familiar(), format!("redis@sha256:{HEX}"));
        assert_eq!(r.tag_or_digest(), format!("sha256:{HEX}"));
    }

    #[test]
    fn tag_and_digest_both_kept() {
        let input = format!("127.0.0.1:5000/x/y:1@sha256:{HEX}");
        let r = parse(&input);
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.to_string(), input);
        assert_eq!(r.familiar(), input);
        assert_eq!(r.tag_or_digest(), format!("sha256:{HEX}"));
        let r = parse(&format!("redis:7@sha256:{HEX}"));
        assert_eq!(r.familiar(), format!("redis:7@sha256:{HEX}"));
    }

    #[test]
    fn sha512_digest_accepted() {
        let hex = "a".repeat(128);
        let r = parse(&format!("x@sha512:{hex}"));
        assert_eq!(r.digest, Some(format!("sha512:{hex}")));
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "redis",
            "user/app:3",
            "host:5000/a/b:tag",
            "[::1]/a",
            &format!("x@sha256:{HEX}"),
            &format!("h.io/x:t@sha256:{HEX}"),
        ] {
            let r = parse(input);
            assert_eq!(parse(&r.to_string()), r, "{input}");
            assert_eq!(parse(&r.familiar()), r, "{input}");
        }
    }

    #[test]
    fn loopback_registries() {
        for input in [
            "localhost/x",
            "localhost:5000/x",
            "LOCALHOST:5000/x",
            "127.0.0.1/x",
            "127.0.0.1:5000/x/y:1",
            "127.1.2.3:80/x",
            "[::1]:5000/x",
            "[::1]/x",
        ] {
            assert!(parse(input).registry_is_loopback(), "{input}");
        }
        for input in [
            "redis",
            "host:5000/a",
            "128.0.0.1:5000/x",
            "10.0.0.1/x",
            "localhost.example.com/x",
            "[::2]:5000/x",
            "127.0.0.1.nip.io/x",
        ] {
            assert!(!parse(input).registry_is_loopback(), "{input}");
        }
        assert_eq!(parse("[::1]:5000/x").registry_host(), "[::1]");
        assert_eq!(parse("host:5000/x").registry_host(), "host");
    }

    #[test]
    fn empty_is_an_error() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(ReferenceError::Empty.to_string().contains("empty"));
    }

    #[test]
    fn tag_only_is_missing_repository() {
        for input in [":tag", ":", "@sha256:abc", "host:5000/:x"] {
            let err = Reference::parse(input).unwrap_err();
            assert!(
                matches!(
                    err,
                    ReferenceError::MissingRepository { .. }
                        | ReferenceError::InvalidDigest { .. }
                        | ReferenceError::InvalidPathComponent { .. }
                ),
                "{input}: {err}"
            );
        }
        let err = Reference::parse(":tag").unwrap_err();
        assert!(matches!(err, ReferenceError::MissingRepository { .. }));
        assert_eq!(
            err.to_string(),
            "invalid image reference \":tag\": the repository name is missing"
        );
    }

    #[test]
    fn uppercase_repository_is_an_error() {
        for input in [
            "Redis",
            "user/App",
            "docker.io/library/REDIS",
            "host:5000/A/b",
        ] {
            let err = Reference::parse(input).unwrap_err();
            assert!(
                matches!(err, ReferenceError::UppercaseRepository { .. }),
                "{input}: {err}"
            );
            assert!(err.to_string().contains("must be lowercase"), "{err}");
            assert!(err.to_string().contains(input), "{err}");
        }
    }

    #[test]
    fn uppercase_first_component_is_a_registry() {
        // Docker treats an uppercase first component as a registry host.
        let r = parse("Example/app");
        assert_eq!(r.registry, "Example");
        assert_eq!(r.repository, "app");
    }

    #[test]
    fn invalid_path_components() {
        for input in [
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "_a",
            "a/.b",
            "a/b/",
            "a+b",
            "a%b",
            "docker.io/",
        ] {
            let err = Reference::parse(input).unwrap_err();
            assert!(
                matches!(
                    err,
                    ReferenceError::InvalidPathComponent { .. }
                        | ReferenceError::MissingRepository { .. }
                ),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn invalid_tags() {
        for input in ["a:-x", "a:.x", "a:x y", "a:x!", "a:é"] {
            let err = Reference::parse(input).unwrap_err();
            assert!(
                matches!(
                    err,
                    ReferenceError::InvalidTag { .. }
                        | ReferenceError::BadCharacters { .. }
                        | ReferenceError::InvalidPathComponent { .. }
                ),
                "{input}: {err}"
            );
        }
        let err = Reference::parse("a:-x").unwrap_err();
        assert_eq!(
            err,
            ReferenceError::InvalidTag {
                reference: "a:-x".into(),
                tag: "-x".into()
            }
        );
        assert!(matches!(
            Reference::parse("a:").unwrap_err(),
            ReferenceError::EmptyTag { .. }
        ));
        assert!(parse("a:_x.Y-1").tag.as_deref() == Some("_x.Y-1"));
    }

    #[test]
    fn tag_length_limit() {
        let ok = format!("a:{}", "t".repeat(128));
        assert_eq!(parse(&ok).tag.map(|t| t.len()), Some(128));
        let long = format!("a:{}", "t".repeat(129));
        let err = Reference::parse(&long).unwrap_err();
        assert!(
            matches!(err, ReferenceError::TagTooLong { length: 129, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("at most 128"), "{err}");
    }

    #[test]
    fn bad_digests() {
        let cases = [
            format!("a@sha256:{}", &HEX[..63]),
            format!("a@sha256:{HEX}0"),
            format!("a@sha256:{}", HEX.to_uppercase()),
            "a@sha256".to_string(),
            "a@sha256:".to_string(),
            format!("a@md5:{HEX}"),
            format!("a@sha256:{}", "g".repeat(64)),
            format!("a@sha256:{HEX}@sha256:{HEX}"),
        ];
        for input in &cases {
            let err = Reference::parse(input).unwrap_err();
            assert!(
                matches!(err, ReferenceError::InvalidDigest { .. }),
                "{input}: {err}"
            );
            assert!(err.to_string().starts_with("invalid image reference"));
        }
        let err = Reference::parse(&format!("a@sha256:{}", &HEX[..10])).unwrap_err();
        assert!(
            err.to_string()
                .contains("sha256 needs 64 hex digits, found 10"),
            "{err}"
        );
    }

    #[test]
    fn bad_registries() {
        for input in [
            "host:/a",
            "host:abc/a",
            "host:99999/a",
            "-host.io/a",
            "host-.io/a",
            "ho_st.io/a",
            "[::1/a",
            "[zz]:5000/a",
            "a..io/a",
            "a:x/",
        ] {
            let err = Reference::parse(input).unwrap_err();
            assert!(
                matches!(err, ReferenceError::InvalidRegistry { .. }),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn whitespace_and_control_characters() {
        for input in [" redis", "redis ", "re dis", "redis\n", "redis\t:7"] {
            assert!(
                matches!(
                    Reference::parse(input),
                    Err(ReferenceError::BadCharacters { .. })
                ),
                "{input:?}"
            );
        }
    }

    #[test]
    fn hex_name_is_refused() {
        let err = Reference::parse(HEX).unwrap_err();
        assert!(matches!(err, ReferenceError::HexName { .. }), "{err}");
        // As a path component under a namespace it is fine.
        assert!(Reference::parse(&format!("user/{HEX}")).is_ok());
    }

    #[test]
    fn name_length_limit() {
        let long = format!("host.io/{}", "a".repeat(247));
        assert_eq!(parse(&long).name().len(), 255);
        let too_long = format!("host.io/{}", "a".repeat(248));
        let err = Reference::parse(&too_long).unwrap_err();
        assert!(
            matches!(err, ReferenceError::NameTooLong { length: 256, .. }),
            "{err}"
        );
    }

    #[test]
    fn from_str_works() {
        let r: Reference = "redis:7".parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("7"));
    }

    #[test]
    fn path_component_grammar() {
        for ok in [
            "a",
            "a1",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "0",
            "a.b_c__d-e",
        ] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in [
            "", ".", "a.", ".a", "a._b", "a___b", "a-_b", "A", "a/b", "a..b",
        ] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }
}
