//! The configuration hash of a service: sha256 over a canonical JSON serialization of everything
//! about the service that shapes its containers, plus the digest of the image they run, so a
//! newly pulled tag recreates them. Fields that do not change a container (how many replicas, the
//! order things start in, profiles, `develop`, `pull_policy`, `x-` extensions, and `build` once the
//! image digest is known) are left out, so changing them recreates nothing.
//!
//! The canonical form sorts object keys at every level and drops nulls and empty maps and lists
//! (except `command` and `entrypoint`, where an empty list means "none" rather than "the image's"),
//! so the hash does not move when a field is added to the model or a map is written in another
//! order. In maps whose keys are data (`environment`, `labels`, `networks`, `sysctls`, build args
//! and labels, hook environments) a null value is kept as `true`, so `networks: {front: null}`
//! and `{back: null}` differ. The same canonical JSON is stored on the container ([`super::labels::CONFIG`]) so a
//! later plan can name which top-level fields changed.

use serde_json::{Map, Value as J};
use sha2::{Digest, Sha256};

use crate::spec::model::Service;

use super::error::PlanError;

/// The key under which the image digest joins the canonical configuration.
pub const IMAGE_DIGEST_KEY: &str = "image_digest";

/// Top-level fields whose empty list is meaningful and kept.
const KEEP_EMPTY: [&str; 2] = ["command", "entrypoint"];

/// Top-level maps whose keys matter even when their value is null (`networks: {front: null}`,
/// an `environment` variable without a value).
const KEYED_MAPS: [&str; 4] = ["environment", "labels", "networks", "sysctls"];

/// Top-level fields that never affect a container.
const IGNORED: [&str; 5] = ["scale", "depends_on", "profiles", "develop", "pull_policy"];

/// A service's container-relevant configuration in canonical form, and its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The canonical JSON object (sorted keys, no nulls or empties).
    pub config: J,
    /// Lower-case hex sha256 of [`ServiceConfig::canonical_json`].
    pub hash: String,
    /// The image digest the hash includes; `None` when the image is not present yet.
    pub image_digest: Option<String>,
}

impl ServiceConfig {
    /// The canonical configuration of `service` with the resolved image digest.
    pub fn new(
        name: &str,
        service: &Service,
        image_digest: Option<&str>,
    ) -> Result<ServiceConfig, PlanError> {
        let value = serde_json::to_value(service).map_err(|source| PlanError::Serialize {
            service: name.to_owned(),
            source,
        })?;
        let mut top = match value {
            J::Object(map) => map,
            _ => Map::new(),
        };
        for key in IGNORED {
            top.remove(key);
        }
        top.retain(|k, _| !k.starts_with("x-"));
        if image_digest.is_some() {
            top.remove("build");
        }
        if let Some(J::Object(deploy)) = top.get_mut("deploy") {
            deploy.remove("replicas");
        }
        for key in KEYED_MAPS {
            mark_null_values(top.get_mut(key));
        }
        if let Some(J::Object(build)) = top.get_mut("build") {
            mark_null_values(build.get_mut("args"));
            mark_null_values(build.get_mut("labels"));
        }
        for hooks in ["post_start", "pre_stop"] {
            if let Some(J::Array(list)) = top.get_mut(hooks) {
                for hook in list.iter_mut().filter_map(J::as_object_mut) {
                    mark_null_values(hook.get_mut("environment"));
                }
            }
        }
        if let Some(digest) = image_digest {
            top.insert(IMAGE_DIGEST_KEY.to_owned(), J::String(digest.to_owned()));
        }
        let mut sorted = Map::new();
        let mut keys: Vec<String> = top.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(v) = top.remove(&key) else { continue };
            let keep_empty = KEEP_EMPTY.contains(&key.as_str());
            if let Some(v) = canonical(v, keep_empty) {
                sorted.insert(key, v);
            }
        }
        let config = J::Object(sorted);
        let hash = hex::encode(Sha256::digest(config.to_string().as_bytes()));
        Ok(ServiceConfig {
            config,
            hash,
            image_digest: image_digest.map(str::to_owned),
        })
    }

    /// The canonical JSON text that is hashed.
    pub fn canonical_json(&self) -> String {
        self.config.to_string()
    }
}

/// In a map whose keys matter, a null value becomes `true` (never a value of such maps
/// otherwise: their values are strings or objects) so that canonicalization keeps the key.
fn mark_null_values(map: Option<&mut J>) {
    if let Some(J::Object(map)) = map {
        for value in map.values_mut().filter(|v| v.is_null()) {
            *value = J::Bool(true);
        }
    }
}

/// The canonical form of a value: keys sorted, nulls and empty objects dropped, empty lists
/// dropped unless `keep_empty_list`. `None` when nothing is left.
fn canonical(value: J, keep_empty_list: bool) -> Option<J> {
    match value {
        J::Null => None,
        J::Object(map) => {
            let mut entries: Vec<(String, J)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                if let Some(v) = canonical(v, false) {
                    out.insert(k, v);
                }
            }
            (!out.is_empty()).then_some(J::Object(out))
        }
        J::Array(items) => {
            // Items keep their place: an order change in a list is a real change.
            let out: Vec<J> = items
                .into_iter()
                .map(|v| canonical(v, false).unwrap_or(J::Null))
                .collect();
            (keep_empty_list || !out.is_empty()).then_some(J::Array(out))
        }
        other => Some(other),
    }
}

/// The top-level fields that differ between a container's previous canonical configuration and
/// the desired one, sorted; the image digest is reported as `image`.
pub fn changed_fields(previous: &J, desired: &J) -> Vec<String> {
    let empty = Map::new();
    let old = previous.as_object().unwrap_or(&empty);
    let new = desired.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut fields: Vec<String> = keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            if k == IMAGE_DIGEST_KEY {
                "image".to_owned()
            } else {
                k.clone()
            }
        })
        .collect();
    fields.dedup();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::{Build, Dependency, Deploy, Develop};

    fn web() -> Service {
        let mut s = Service {
            image: Some("busybox".into()),
            command: Some(vec!["httpd".into(), "-f".into()]),
            ..Service::default()
        };
        s.environment.insert("A".into(), Some("1".into()));
        s.environment.insert("B".into(), Some("2".into()));
        s
    }

    fn hash(s: &Service, digest: Option<&str>) -> String {
        ServiceConfig::new("web", s, digest).unwrap().hash
    }

    #[test]
    fn hash_is_stable_and_pinned() {
        let c = ServiceConfig::new("web", &web(), Some("sha256:abc")).unwrap();
        assert_eq!(
            c.canonical_json(),
            r#"{"command":["httpd","-f"],"environment":{"A":"1","B":"2"},"image":"busybox","image_digest":"sha256:abc"}"#
        );
        assert_eq!(c.hash.len(), 64);
        assert_eq!(c.hash, hash(&web(), Some("sha256:abc")));
        assert_eq!(
            c.hash,
            hex::encode(Sha256::digest(c.canonical_json().as_bytes()))
        );
    }

    #[test]
    fn map_order_does_not_matter() {
        let mut other = web();
        other.environment.clear();
        other.environment.insert("B".into(), Some("2".into()));
        other.environment.insert("A".into(), Some("1".into()));
        assert_eq!(hash(&web(), None), hash(&other, None));
    }

    #[test]
    fn container_fields_change_the_hash() {
        let base = hash(&web(), None);
        let mut env = web();
        env.environment.insert("A".into(), Some("changed".into()));
        assert_ne!(hash(&env, None), base);
        let mut cmd = web();
        cmd.command = Some(vec![]);
        assert_ne!(hash(&cmd, None), base);
        let mut no_cmd = web();
        no_cmd.command = None;
        assert_ne!(hash(&no_cmd, None), hash(&cmd, None));
        assert_ne!(
            hash(&web(), Some("sha256:1")),
            hash(&web(), Some("sha256:2"))
        );
        assert_ne!(hash(&web(), Some("sha256:1")), base);
    }

    #[test]
    fn ignored_fields_do_not_change_the_hash() {
        let base = hash(&web(), Some("sha256:1"));
        let mut s = web();
        s.scale = Some(3);
        s.deploy = Some(Deploy {
            replicas: Some(5),
            ..Deploy::default()
        });
        s.depends_on.insert(
            "db".into(),
            Dependency {
                condition: "service_healthy".into(),
                restart: true,
                required: true,
            },
        );
        s.profiles = vec!["debug".into()];
        s.develop = Some(Develop::default());
        s.pull_policy = Some("always".into());
        s.extra.insert("x-note".into(), J::from("hello"));
        s.build = Some(Build {
            context: Some("/src".into()),
            ..Build::default()
        });
        assert_eq!(hash(&s, Some("sha256:1")), base);
        // Without a digest the build configuration is all that says what the image is.
        assert_ne!(hash(&s, None), hash(&web(), None));
    }

    #[test]
    fn empty_collections_and_nulls_are_dropped() {
        let mut s = web();
        s.labels.clear();
        s.ports.clear();
        s.deploy = Some(Deploy::default());
        assert_eq!(hash(&s, None), hash(&web(), None));
    }

    #[test]
    fn keys_with_null_values_count() {
        let mut front = web();
        front.networks.insert("front".into(), None);
        let mut back = web();
        back.networks.insert("back".into(), None);
        assert_ne!(hash(&front, None), hash(&back, None));
        assert_ne!(hash(&front, None), hash(&web(), None));
        let mut unset = web();
        unset.environment.insert("C".into(), None);
        assert_ne!(hash(&unset, None), hash(&web(), None));
        let c = ServiceConfig::new("web", &front, None).unwrap();
        assert!(c.canonical_json().contains(r#""networks":{"front":true}"#));
    }

    #[test]
    fn changed_fields_names_top_level_keys() {
        let old = ServiceConfig::new("web", &web(), Some("sha256:1")).unwrap();
        let mut s = web();
        s.environment.insert("C".into(), Some("3".into()));
        s.user = Some("nobody".into());
        let new = ServiceConfig::new("web", &s, Some("sha256:2")).unwrap();
        assert_eq!(
            changed_fields(&old.config, &new.config),
            vec!["environment", "image", "user"]
        );
        assert!(changed_fields(&old.config, &old.config).is_empty());
    }
}
