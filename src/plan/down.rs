//! The plan of `down`: stop the project's containers in reverse dependency order (a dependent
//! stops before what it depends on), remove them, then remove the networks the project created
//! and, with `volumes`, its named volumes. External networks and volumes are never touched.
//! Containers of services the stack no longer has are orphans: removed with `remove_orphans`,
//! reported otherwise. With an empty stack (`down -p name`, no stack file) everything labelled
//! with the project goes, stopped in the order the containers' `depends_on` labels give.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::spec::model::{Dependency, Project, Service};

use super::action::{Action, Plan, StepId};
use super::actual::{Actual, ActualContainer, ActualResource};
use super::error::PlanError;
use super::labels;
use super::stack::{network_name, stack_graph, volume_name};

/// The flags of `down` that shape the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownOptions {
    /// `-v`: remove the stack's named (non-external) volumes and containers' anonymous volumes.
    pub volumes: bool,
    /// `--remove-orphans`: also remove containers of services the stack no longer has.
    pub remove_orphans: bool,
}

/// Plans `down`: see the module documentation.
pub fn plan_down(
    project: &Project,
    actual: &Actual,
    options: &DownOptions,
) -> Result<Plan, PlanError> {
    let headless = project.services.is_empty();
    let from_labels;
    let project = if headless {
        from_labels = project_from_labels(project, actual);
        &from_labels
    } else {
        project
    };
    let graph = stack_graph(project)?;
    let mut plan = Plan {
        project: project.name.clone(),
        ..Plan::default()
    };
    let containers: Vec<&ActualContainer> = actual.project_containers(&project.name).collect();
    let mut removed: Vec<StepId> = Vec::new();

    // Orphans first: nothing in the stack depends on them.
    let mut orphans: Vec<&ActualContainer> = containers
        .iter()
        .copied()
        .filter(|c| !project.services.contains_key(&c.service))
        .collect();
    orphans.sort_by(|a, b| a.service.cmp(&b.service).then(b.number.cmp(&a.number)));
    for c in orphans {
        if options.remove_orphans {
            let (_, remove) = stop_and_remove(&mut plan, c, Vec::new(), options.volumes);
            removed.push(remove);
        } else {
            plan.warnings.push(format!(
                "orphan container {} (service \"{}\") is not in the stack; --remove-orphans removes it",
                c.name, c.service
            ));
        }
    }

    // Services in stop order; each stop waits for its dependents' stops (transitively through
    // dependents that had nothing to stop).
    let mut barrier: HashMap<String, Vec<StepId>> = HashMap::new();
    for wave in graph.stop_waves() {
        for name in wave {
            let mut after: Vec<StepId> = graph
                .dependents(&name)
                .iter()
                .flat_map(|(d, _)| barrier.get(d).cloned().unwrap_or_default())
                .collect();
            after.sort_unstable();
            after.dedup();
            let mut mine: Vec<&ActualContainer> = containers
                .iter()
                .copied()
                .filter(|c| c.service == name)
                .collect();
            mine.sort_by(|a, b| {
                a.oneoff
                    .cmp(&b.oneoff)
                    .then(b.number.cmp(&a.number))
                    .then_with(|| a.name.cmp(&b.name))
            });
            let mut stops = Vec::new();
            for c in mine {
                let (stop, remove) = stop_and_remove(&mut plan, c, after.clone(), options.volumes);
                stops.extend(stop);
                removed.push(remove);
            }
            barrier.insert(name, if stops.is_empty() { after } else { stops });
        }
    }

    // Networks and volumes once every container is gone.
    let stack_networks: BTreeSet<String> = project
        .networks
        .iter()
        .filter(|(_, n)| !n.external)
        .map(|(k, _)| network_name(project, k))
        .collect();
    for network in owned(
        &actual.networks,
        project,
        labels::NETWORK,
        &stack_networks,
        headless,
    ) {
        plan.push(
            Action::RemoveNetwork {
                key: network.1,
                name: network.0,
            },
            removed.clone(),
            Vec::new(),
        );
    }
    if options.volumes {
        let stack_volumes: BTreeSet<String> = project
            .volumes
            .iter()
            .filter(|(_, v)| !v.external)
            .map(|(k, _)| volume_name(project, k))
            .collect();
        for volume in owned(
            &actual.volumes,
            project,
            labels::VOLUME,
            &stack_volumes,
            headless,
        ) {
            plan.push(
                Action::RemoveVolume {
                    key: volume.1,
                    name: volume.0,
                },
                removed.clone(),
                Vec::new(),
            );
        }
    }
    Ok(plan)
}

/// For a `down` without a stack file: the project's services as its containers' labels describe
/// them (name and `depends_on`, each dependency optional), so the stop order still holds.
fn project_from_labels(project: &Project, actual: &Actual) -> Project {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    for c in actual.project_containers(&project.name) {
        let service = services.entry(c.service.clone()).or_default();
        let deps = c.labels.get(labels::DEPENDS_ON).map(String::as_str);
        for dep in deps
            .unwrap_or_default()
            .split(',')
            .filter(|d| !d.is_empty())
        {
            let mut parts = dep.split(':');
            let name = parts.next().unwrap_or_default().to_owned();
            let condition = parts.next().unwrap_or("service_started").to_owned();
            service.depends_on.entry(name).or_insert(Dependency {
                condition,
                restart: false,
                required: false,
            });
        }
    }
    Project {
        name: project.name.clone(),
        services: services.into_iter().collect(),
        ..Project::default()
    }
}

/// Existing networks or volumes to remove, as (name, key), sorted by name: the stack's own
/// (`wanted` holds their engine names) that exist, or, for a headless `down`, every one labelled
/// with the project.
fn owned(
    found: &[ActualResource],
    project: &Project,
    key_label: &str,
    wanted: &BTreeSet<String>,
    headless: bool,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = found
        .iter()
        .filter(|r| {
            wanted.contains(&r.name) || (headless && r.project() == Some(project.name.as_str()))
        })
        .map(|r| {
            let key = r
                .labels
                .get(key_label)
                .cloned()
                .or_else(|| {
                    let prefix = format!("{}_", project.name);
                    r.name.strip_prefix(&prefix).map(str::to_owned)
                })
                .unwrap_or_else(|| r.name.clone());
            (r.name.clone(), key)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn stop_and_remove(
    plan: &mut Plan,
    c: &ActualContainer,
    after: Vec<StepId>,
    volumes: bool,
) -> (Option<StepId>, StepId) {
    let stop = c.status.is_up().then(|| {
        plan.push(
            Action::StopContainer {
                service: c.service.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
            },
            after.clone(),
            Vec::new(),
        )
    });
    let remove = plan.push(
        Action::RemoveContainer {
            service: c.service.clone(),
            id: c.id.clone(),
            name: c.name.clone(),
            volumes,
        },
        match stop {
            Some(s) => vec![s],
            None => after,
        },
        Vec::new(),
    );
    (stop, remove)
}

#[cfg(test)]
mod tests;
