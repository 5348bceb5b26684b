//! The labels flotilla puts on containers, networks and volumes. They follow Docker Compose's names
//! (`com.docker.compose.*`) so users' filters and habits carry over, plus our own `io.flotilla.*`.
//! The planner reads them back from the engine's objects (see [`super::actual`]); the engine uses
//! the builders here so that what it writes is what the planner expects to read.

use std::collections::BTreeMap;

use crate::spec::model::Service;

use super::hash::ServiceConfig;

/// The project a container, network or volume belongs to.
pub const PROJECT: &str = "com.docker.compose.project";
/// The service a container runs.
pub const SERVICE: &str = "com.docker.compose.service";
/// The replica number of a container within its service (1, 2, …).
pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// The sha256 of the service's container-relevant configuration (see [`super::hash`]).
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// `"True"` for one-off containers (`run`), `"False"` otherwise.
pub const ONEOFF: &str = "com.docker.compose.oneoff";
/// The stack files, comma separated.
pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
/// The project directory.
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
/// The service's dependencies: `service:condition:restart`, comma separated.
pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
/// The digest of the image the container was created from.
pub const IMAGE: &str = "com.docker.compose.image";
/// The version of the engine that created the object.
pub const VERSION: &str = "com.docker.compose.version";
/// A network's key in the stack file.
pub const NETWORK: &str = "com.docker.compose.network";
/// A volume's key in the stack file.
pub const VOLUME: &str = "com.docker.compose.volume";
/// The canonical JSON of the configuration the container was created from, so a later plan can
/// say which top-level fields changed.
pub const CONFIG: &str = "io.flotilla.config";

/// Compose's spelling of a true one-off label.
pub const TRUE: &str = "True";
/// Compose's spelling of a false one-off label.
pub const FALSE: &str = "False";

/// What the labels of a project's objects record about the project itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectMeta {
    pub name: String,
    /// The stack files as given (absolute paths).
    pub config_files: Vec<String>,
    pub working_dir: String,
}

/// The labels of one container of a service: the service's own `labels`, then flotilla's, which
/// win over user labels of the same name.
pub fn container_labels(
    project: &ProjectMeta,
    service_name: &str,
    service: &Service,
    number: u32,
    oneoff: bool,
    config: &ServiceConfig,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    let depends_on: Vec<String> = service
        .depends_on
        .iter()
        .map(|(name, dep)| format!("{name}:{}:{}", dep.condition, dep.restart))
        .collect();
    let mut put = |k: &str, v: String| {
        labels.insert(k.to_owned(), v);
    };
    put(PROJECT, project.name.clone());
    put(SERVICE, service_name.to_owned());
    put(CONTAINER_NUMBER, number.to_string());
    put(CONFIG_HASH, config.hash.clone());
    put(ONEOFF, if oneoff { TRUE } else { FALSE }.to_owned());
    put(CONFIG_FILES, project.config_files.join(","));
    put(WORKING_DIR, project.working_dir.clone());
    put(DEPENDS_ON, depends_on.join(","));
    if let Some(digest) = &config.image_digest {
        put(IMAGE, digest.clone());
    }
    put(VERSION, env!("CARGO_PKG_VERSION").to_owned());
    put(CONFIG, config.canonical_json());
    labels
}

/// The labels of a network the project creates: its user labels, then project and key.
pub fn network_labels(
    project: &str,
    key: &str,
    user: &indexmap::IndexMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    resource_labels(project, NETWORK, key, user)
}

/// The labels of a volume the project creates: its user labels, then project and key.
pub fn volume_labels(
    project: &str,
    key: &str,
    user: &indexmap::IndexMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    resource_labels(project, VOLUME, key, user)
}

fn resource_labels(
    project: &str,
    kind: &str,
    key: &str,
    user: &indexmap::IndexMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = user
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    labels.insert(PROJECT.to_owned(), project.to_owned());
    labels.insert(kind.to_owned(), key.to_owned());
    labels.insert(VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::actual::{ActualContainer, ContainerStatus};
    use crate::spec::model::Dependency;

    #[test]
    fn container_labels_read_back() {
        let mut service = Service {
            image: Some("busybox".into()),
            ..Service::default()
        };
        service
            .labels
            .insert(PROJECT.into(), Some("user-tries-to-override".into()));
        service.labels.insert("team".into(), None);
        service.depends_on.insert(
            "db".into(),
            Dependency {
                condition: "service_healthy".into(),
                restart: true,
                required: true,
            },
        );
        let config = ServiceConfig::new("web", &service, Some("sha256:abc")).unwrap();
        let meta = ProjectMeta {
            name: "demo".into(),
            config_files: vec!["/a/compose.yaml".into(), "/a/override.yaml".into()],
            working_dir: "/a".into(),
        };
        let labels = container_labels(&meta, "web", &service, 3, false, &config);
        assert_eq!(labels[PROJECT], "demo");
        assert_eq!(labels["team"], "");
        assert_eq!(labels[DEPENDS_ON], "db:service_healthy:true");
        assert_eq!(labels[CONFIG_FILES], "/a/compose.yaml,/a/override.yaml");
        assert_eq!(labels[ONEOFF], "False");
        let c = ActualContainer::from_labels(
            "id",
            "demo-web-3",
            labels,
            ContainerStatus::Running,
            None,
        );
        assert_eq!(c.project, "demo");
        assert_eq!(c.service, "web");
        assert_eq!(c.number, 3);
        assert!(!c.oneoff);
        assert_eq!(c.config_hash.as_deref(), Some(config.hash.as_str()));
        assert_eq!(c.image_digest.as_deref(), Some("sha256:abc"));
        assert_eq!(c.config.as_ref(), Some(&config.config));

        let oneoff = container_labels(&meta, "web", &service, 1, true, &config);
        let c = ActualContainer::from_labels("id", "x", oneoff, ContainerStatus::Exited, Some(1));
        assert!(c.oneoff);
        assert_eq!(c.exit_code, Some(1));
    }

    #[test]
    fn resource_labels() {
        let mut user = indexmap::IndexMap::new();
        user.insert("tier".to_owned(), Some("front".to_owned()));
        let n = network_labels("demo", "default", &user);
        assert_eq!(n[PROJECT], "demo");
        assert_eq!(n[NETWORK], "default");
        assert_eq!(n["tier"], "front");
        let v = volume_labels("demo", "data", &indexmap::IndexMap::new());
        assert_eq!(v[VOLUME], "data");
    }
}
