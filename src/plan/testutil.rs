//! Test helpers for the planner: stacks loaded from YAML through the real spec pipeline, and a
//! toy executor that applies a plan to an [`Actual`] the way the engine would, so tests can plan,
//! apply and plan again.

use std::collections::BTreeMap;

use crate::spec::load::{Options, load};
use crate::spec::model::Project;

use super::action::{Action, Plan};
use super::actual::{Actual, ActualContainer, ActualResource, ContainerStatus};
use super::hash::ServiceConfig;
use super::labels::{self, ProjectMeta};
use super::up::ImageDigests;

/// The typed project of a stack file's text, project name `demo`.
pub fn project(yaml: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        files: vec!["-".into()],
        stdin: Some(yaml.into()),
        working_dir: dir.path().to_path_buf(),
        project_name: Some("demo".into()),
        ..Default::default()
    };
    let loaded = load(&opts).unwrap();
    Project::from_config(&loaded.config).unwrap()
}

/// Every service's image present with digest `sha256:<service>`.
pub fn digests(project: &Project) -> ImageDigests {
    project
        .services
        .keys()
        .map(|s| (s.clone(), Some(format!("sha256:{s}"))))
        .collect()
}

fn meta(project: &Project) -> ProjectMeta {
    ProjectMeta {
        name: project.name.clone(),
        config_files: vec!["/demo/compose.yaml".into()],
        working_dir: "/demo".into(),
    }
}

fn container(
    project: &Project,
    digests: &ImageDigests,
    service: &str,
    number: u32,
    name: &str,
    id: String,
) -> ActualContainer {
    let s = &project.services[service];
    let digest = digests.get(service).cloned().flatten();
    let config = ServiceConfig::new(service, s, digest.as_deref()).unwrap();
    let labels = labels::container_labels(&meta(project), service, s, number, false, &config);
    ActualContainer::from_labels(id, name, labels, ContainerStatus::Created, None)
}

/// Applies a plan as an executor would (every step succeeds; starts leave containers running).
pub fn apply(project: &Project, digests: &ImageDigests, actual: &Actual, plan: &Plan) -> Actual {
    let mut next = actual.clone();
    let mut counter = next.containers.len();
    let mut id = || {
        counter += 1;
        format!("id{counter}")
    };
    let resource = |kind: &str, key: &str, name: &str| ActualResource {
        name: name.to_owned(),
        labels: BTreeMap::from([
            (labels::PROJECT.to_owned(), project.name.clone()),
            (kind.to_owned(), key.to_owned()),
        ]),
    };
    for action in plan.actions() {
        match action {
            Action::CreateNetwork { key, name } => {
                next.networks.push(resource(labels::NETWORK, key, name))
            }
            Action::CreateVolume { key, name } => {
                next.volumes.push(resource(labels::VOLUME, key, name))
            }
            Action::PullImage { .. } | Action::BuildImage { .. } => {}
            Action::CreateContainer {
                service,
                number,
                name,
            } => {
                let c = container(project, digests, service, *number, name, id());
                next.containers.push(c);
            }
            Action::Recreate {
                service,
                number,
                old_id,
                name,
                ..
            } => {
                next.containers.retain(|c| &c.id != old_id);
                let c = container(project, digests, service, *number, name, id());
                next.containers.push(c);
            }
            Action::StartContainer { name, .. } | Action::RestartContainer { name, .. } => {
                for c in next.containers.iter_mut().filter(|c| &c.name == name) {
                    c.status = ContainerStatus::Running;
                }
            }
            Action::StopContainer { id, .. } => {
                for c in next.containers.iter_mut().filter(|c| &c.id == id) {
                    c.status = ContainerStatus::Exited;
                    c.exit_code = Some(0);
                }
            }
            Action::RemoveContainer { id, .. } => next.containers.retain(|c| &c.id != id),
            Action::RemoveNetwork { name, .. } => next.networks.retain(|n| &n.name != name),
            Action::RemoveVolume { name, .. } => next.volumes.retain(|v| &v.name != name),
        }
    }
    next
}

/// Checks the DAG's shape: ids are indexes and every step waits only for earlier ones.
pub fn assert_dag(plan: &Plan) {
    for (i, step) in plan.steps.iter().enumerate() {
        assert_eq!(step.id, i);
        assert!(step.after.iter().all(|a| *a < i), "step {i} waits forward");
    }
}
