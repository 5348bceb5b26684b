//! The stack as the dependency graph sees it: the typed [`Project`] turned into
//! [`graph::StackInput`], so the planner reuses [`graph::StackGraph`] for order and cycles.

use crate::spec::model::Project;

use super::graph::{self, StackGraph};

/// The graph input of a typed project: `depends_on` (long form), `volumes_from` (`container:`
/// sources left out, `:ro`/`:rw` stripped), `network_mode: service:x`, networks and named volumes.
pub fn stack_input(project: &Project) -> graph::StackInput {
    let services = project
        .services
        .iter()
        .map(|(name, s)| graph::ServiceInput {
            name: name.clone(),
            depends_on: s
                .depends_on
                .iter()
                .map(|(dep, d)| graph::DependsOn {
                    service: dep.clone(),
                    condition: d.condition.clone(),
                    required: d.required,
                    restart: d.restart,
                })
                .collect(),
            volumes_from: s
                .volumes_from
                .iter()
                .filter(|v| !v.starts_with("container:"))
                .map(|v| v.split(':').next().unwrap_or_default().to_owned())
                .collect(),
            network_mode_service: s
                .network_mode
                .as_deref()
                .and_then(|m| m.strip_prefix("service:"))
                .map(str::to_owned),
            networks: s.networks.keys().cloned().collect(),
            volumes: s
                .volumes
                .iter()
                .filter(|m| m.kind == "volume")
                .filter_map(|m| m.source.clone())
                .collect(),
        })
        .collect();
    graph::StackInput {
        services,
        networks: project.networks.keys().cloned().collect(),
        volumes: project.volumes.keys().cloned().collect(),
    }
}

/// The checked dependency graph of a typed project.
pub fn stack_graph(project: &Project) -> Result<StackGraph, graph::GraphError> {
    StackGraph::build(&stack_input(project))
}

/// The engine name of a top-level network: its `name`, else `<project>_<key>` (external: `key`).
pub fn network_name(project: &Project, key: &str) -> String {
    match project.networks.get(key) {
        Some(n) => n.name.clone().unwrap_or_else(|| {
            if n.external {
                key.to_owned()
            } else {
                format!("{}_{key}", project.name)
            }
        }),
        None => format!("{}_{key}", project.name),
    }
}

/// The engine name of a top-level volume: its `name`, else `<project>_<key>` (external: `key`).
pub fn volume_name(project: &Project, key: &str) -> String {
    match project.volumes.get(key) {
        Some(v) => v.name.clone().unwrap_or_else(|| {
            if v.external {
                key.to_owned()
            } else {
                format!("{}_{key}", project.name)
            }
        }),
        None => format!("{}_{key}", project.name),
    }
}
