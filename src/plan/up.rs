//! The plan of `up`: the stack (desired) against the engine's objects (actual) → the steps that
//! converge one to the other. Networks and volumes the stack needs are created, images pulled or
//! built per `pull_policy` (or `--pull`), each service's replicas created, started, recreated when
//! their configuration hash differs (with the changed fields as reasons), extra replicas stopped
//! and removed highest number first, orphans removed with `remove_orphans` (a warning otherwise),
//! and running dependents restarted when a dependency they declare `restart: true` on is
//! recreated. An unchanged, running stack plans nothing.
//!
//! Image digests are an input: the plan hashes with the digest the engine knows now. A pull step
//! may bring a new digest; the executor then plans again for the services it concerns (already
//! converged objects plan to nothing, so re-planning is cheap) — that is how a newly pulled tag
//! recreates.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::spec::model::{Project, Service};

use super::action::{Action, Condition, Plan, PullPolicy, ServiceCondition, StepId};
use super::actual::{Actual, ActualContainer, ContainerStatus};
use super::error::PlanError;
use super::graph::{EdgeKind, StackGraph};
use super::hash::{ServiceConfig, changed_fields};
use super::stack::{network_name, stack_graph, volume_name};

/// The flags of `up` (and `create`, `start`, `scale`) that shape the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// Only these services (and, without `no_deps`, what they depend on); empty means all.
    pub services: Vec<String>,
    /// `--no-deps`: do not bring up the selected services' dependencies.
    pub no_deps: bool,
    /// `--force-recreate`: recreate every planned container.
    pub force_recreate: bool,
    /// `--no-recreate`: keep existing containers even when their configuration changed.
    pub no_recreate: bool,
    /// `--scale svc=N`, winning over `scale:` and `deploy.replicas`.
    pub scale: BTreeMap<String, u32>,
    /// `--remove-orphans`: remove containers of services the stack no longer has.
    pub remove_orphans: bool,
    /// `--pull`: overrides every service's `pull_policy`.
    pub pull: Option<PullPolicy>,
    /// `--no-start` (`create`): create, never start or restart.
    pub no_start: bool,
}

/// The digest of the image each service's reference resolves to locally; a missing entry or
/// `None` means the image is not present (or not known yet).
pub type ImageDigests = HashMap<String, Option<String>>;

/// The name of replica `number` of a service: `container_name`, else `<project>-<service>-<n>`.
pub fn container_name(project: &str, service_name: &str, service: &Service, number: u32) -> String {
    match &service.container_name {
        Some(name) => name.clone(),
        None => format!("{project}-{service_name}-{number}"),
    }
}

/// The image reference a service's containers run: `image`, else Compose's default name of a
/// built image, `<project>-<service>`.
pub fn image_ref(project: &str, service_name: &str, service: &Service) -> Option<String> {
    service.image.clone().or_else(|| {
        service
            .build
            .as_ref()
            .map(|_| format!("{project}-{service_name}"))
    })
}

/// How many replicas a service gets: `--scale`, else `scale:`, else `deploy.replicas`, else 1.
pub fn replicas(options: &UpOptions, service_name: &str, service: &Service) -> u32 {
    options
        .scale
        .get(service_name)
        .copied()
        .unwrap_or_else(|| service.replicas())
}

/// What this plan does to one service, for the services planned after it.
#[derive(Default)]
struct Progress {
    /// Create and recreate steps.
    created: Vec<StepId>,
    /// Start and restart steps.
    started: Vec<StepId>,
    recreated: bool,
}

/// Plans `up`: see the module documentation.
pub fn plan_up(
    project: &Project,
    actual: &Actual,
    digests: &ImageDigests,
    options: &UpOptions,
) -> Result<Plan, PlanError> {
    let graph = stack_graph(project)?;
    let mut unknown: Vec<String> = options
        .services
        .iter()
        .chain(options.scale.keys())
        .filter(|s| !project.services.contains_key(*s))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        return Err(PlanError::UnknownServices(unknown));
    }
    let planned: BTreeSet<String> = if options.services.is_empty() {
        project.services.keys().cloned().collect()
    } else if options.no_deps {
        options.services.iter().cloned().collect()
    } else {
        graph
            .with_dependencies(&options.services)
            .into_iter()
            .collect()
    };
    // One-shot jobs: services another one waits on to complete successfully. Once such a
    // container exited 0 with an unchanged configuration it has done its work, and a second
    // `up` leaves it alone (Compose would run it again).
    let jobs: HashSet<&str> = project
        .services
        .values()
        .flat_map(|s| s.depends_on.iter())
        .filter(|(_, dep)| dep.condition == "service_completed_successfully")
        .map(|(name, _)| name.as_str())
        .collect();
    let order: Vec<String> = graph.start_waves().into_iter().flatten().collect();
    let counts: HashMap<&str, u32> = project
        .services
        .iter()
        .map(|(name, s)| (name.as_str(), replicas(options, name, s)))
        .collect();

    let mut plan = Plan {
        project: project.name.clone(),
        ..Plan::default()
    };
    let containers: Vec<&ActualContainer> = actual
        .project_containers(&project.name)
        .filter(|c| !c.oneoff)
        .collect();

    orphans(project, &containers, options, &mut plan);
    let (networks, volumes) = resources(project, actual, &graph, &planned, options, &mut plan)?;
    let images = images(
        project, &order, &planned, &counts, digests, options, &mut plan,
    )?;

    let mut progress: HashMap<String, Progress> = HashMap::new();
    for name in &order {
        let Some(service) = project.services.get(name) else {
            continue;
        };
        let mine: Vec<&ActualContainer> = containers
            .iter()
            .copied()
            .filter(|c| &c.service == name)
            .collect();
        let deps = graph.dependencies(name);
        if !planned.contains(name) {
            restart_unchanged(name, &mine, &deps, &progress, options, &mut plan);
            continue;
        }
        let count = counts.get(name.as_str()).copied().unwrap_or(1);
        if count > 1
            && let Some(fixed) = &service.container_name
        {
            return Err(PlanError::ContainerNameWithReplicas {
                service: name.clone(),
                container_name: fixed.clone(),
                replicas: count,
            });
        }
        let digest = digests.get(name).cloned().flatten();
        let desired = ServiceConfig::new(name, service, digest.as_deref())?;

        // What creating a container of this service waits for, and what starting one needs.
        let mut create_after: Vec<StepId> = images.get(name).copied().into_iter().collect();
        let mut start_after: Vec<StepId> = Vec::new();
        let mut conditions: Vec<ServiceCondition> = Vec::new();
        let mut cascade: Vec<String> = Vec::new();
        for (dep, kind) in &deps {
            match kind {
                EdgeKind::UsesNetwork => create_after.extend(networks.get(dep).copied()),
                EdgeKind::UsesVolume => create_after.extend(volumes.get(dep).copied()),
                EdgeKind::DependsOn { .. } | EdgeKind::VolumesFrom | EdgeKind::NetworkMode => {
                    if !planned.contains(dep) {
                        continue;
                    }
                    let p = progress.get(dep);
                    start_after.extend(p.map(|p| p.started.clone()).unwrap_or_default());
                    if !matches!(kind, EdgeKind::DependsOn { .. }) {
                        // Sharing a namespace or volumes needs the other container in place.
                        create_after.extend(p.map(|p| p.created.clone()).unwrap_or_default());
                        create_after.extend(p.map(|p| p.started.clone()).unwrap_or_default());
                        if p.is_some_and(|p| p.recreated) {
                            cascade.push(match kind {
                                EdgeKind::NetworkMode => {
                                    format!("network_mode service:{dep} recreated")
                                }
                                _ => format!("volumes_from {dep} recreated"),
                            });
                        }
                    }
                    if counts.get(dep.as_str()).copied().unwrap_or(1) == 0 {
                        continue;
                    }
                    let condition = match kind {
                        EdgeKind::DependsOn {
                            condition,
                            required,
                            ..
                        } => ServiceCondition {
                            service: dep.clone(),
                            condition: Condition::parse(condition).ok_or_else(|| {
                                PlanError::UnknownCondition {
                                    service: name.clone(),
                                    dependency: dep.clone(),
                                    condition: condition.clone(),
                                }
                            })?,
                            required: *required,
                        },
                        _ => ServiceCondition {
                            service: dep.clone(),
                            condition: Condition::Started,
                            required: true,
                        },
                    };
                    if !conditions.iter().any(|c| c.service == condition.service) {
                        conditions.push(condition);
                    } else if matches!(kind, EdgeKind::DependsOn { .. }) {
                        conditions.retain(|c| c.service != condition.service);
                        conditions.push(condition);
                    }
                }
            }
        }
        conditions.sort_by(|a, b| a.service.cmp(&b.service));
        let restart_reasons = restart_reasons(&deps, &progress);

        let (kept, extra) = split_replicas(mine, count, &desired.hash);
        let mut done = Progress::default();
        for c in &extra {
            let stop = c.status.is_up().then(|| {
                plan.push(
                    Action::StopContainer {
                        service: name.clone(),
                        id: c.id.clone(),
                        name: c.name.clone(),
                    },
                    Vec::new(),
                    Vec::new(),
                )
            });
            plan.push(
                Action::RemoveContainer {
                    service: name.clone(),
                    id: c.id.clone(),
                    name: c.name.clone(),
                    volumes: false,
                },
                stop.into_iter().collect(),
                Vec::new(),
            );
        }

        let used: HashSet<u32> = kept.iter().map(|c| c.number).collect();
        let mut fresh = (1..).filter(|n| !used.contains(n));
        let missing = (count as usize).saturating_sub(kept.len());
        let mut slots: Vec<(u32, Option<&ActualContainer>)> =
            kept.iter().map(|c| (c.number, Some(*c))).collect();
        for _ in 0..missing {
            if let Some(n) = fresh.next() {
                slots.push((n, None));
            }
        }
        slots.sort_by_key(|(n, _)| *n);

        for (number, existing) in slots {
            let cname = container_name(&project.name, name, service, number);
            let created = match existing {
                None => Some(plan.push(
                    Action::CreateContainer {
                        service: name.clone(),
                        number,
                        name: cname.clone(),
                    },
                    create_after.clone(),
                    Vec::new(),
                )),
                Some(c) => {
                    let reasons = recreate_reasons(c, &desired, options, &cascade);
                    let completed = jobs.contains(name.as_str())
                        && c.status == ContainerStatus::Exited
                        && c.exit_code == Some(0);
                    if reasons.is_empty() {
                        if !options.no_start && !c.status.is_up() && !completed {
                            done.started.push(plan.push(
                                Action::StartContainer {
                                    service: name.clone(),
                                    number,
                                    name: c.name.clone(),
                                    id: Some(c.id.clone()),
                                },
                                start_after.clone(),
                                conditions.clone(),
                            ));
                        } else if !options.no_start && !restart_reasons.is_empty() {
                            done.started.push(push_restart(
                                &mut plan,
                                name,
                                c,
                                &restart_reasons,
                                &progress,
                            ));
                        }
                        None
                    } else {
                        done.recreated = true;
                        Some(plan.push(
                            Action::Recreate {
                                service: name.clone(),
                                number,
                                old_id: c.id.clone(),
                                old_name: c.name.clone(),
                                name: cname.clone(),
                                reasons,
                            },
                            create_after.clone(),
                            Vec::new(),
                        ))
                    }
                }
            };
            if let Some(step) = created {
                done.created.push(step);
                if !options.no_start {
                    let mut after = start_after.clone();
                    after.push(step);
                    done.started.push(plan.push(
                        Action::StartContainer {
                            service: name.clone(),
                            number,
                            name: cname,
                            id: None,
                        },
                        after,
                        conditions.clone(),
                    ));
                }
            }
        }
        progress.insert(name.clone(), done);
    }
    Ok(plan)
}

/// Orphans: containers of the project whose service the stack no longer has.
fn orphans(
    project: &Project,
    containers: &[&ActualContainer],
    options: &UpOptions,
    plan: &mut Plan,
) {
    let mut orphans: Vec<&ActualContainer> = containers
        .iter()
        .copied()
        .filter(|c| !project.services.contains_key(&c.service))
        .collect();
    orphans.sort_by(|a, b| a.service.cmp(&b.service).then(b.number.cmp(&a.number)));
    for c in orphans {
        if !options.remove_orphans {
            plan.warnings.push(format!(
                "orphan container {} (service \"{}\") is not in the stack; --remove-orphans removes it",
                c.name, c.service
            ));
            continue;
        }
        let stop = c.status.is_up().then(|| {
            plan.push(
                Action::StopContainer {
                    service: c.service.clone(),
                    id: c.id.clone(),
                    name: c.name.clone(),
                },
                Vec::new(),
                Vec::new(),
            )
        });
        plan.push(
            Action::RemoveContainer {
                service: c.service.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
                volumes: false,
            },
            stop.into_iter().collect(),
            Vec::new(),
        );
    }
}

type ResourceSteps = HashMap<String, StepId>;

/// Networks and volumes the planned services need (all the stack's when no service is
/// selected): created when missing; external ones must exist.
fn resources(
    project: &Project,
    actual: &Actual,
    graph: &StackGraph,
    planned: &BTreeSet<String>,
    options: &UpOptions,
    plan: &mut Plan,
) -> Result<(ResourceSteps, ResourceSteps), PlanError> {
    let mut used_networks = HashSet::new();
    let mut used_volumes = HashSet::new();
    for service in planned {
        for (dep, kind) in graph.dependencies(service) {
            match kind {
                EdgeKind::UsesNetwork => used_networks.insert(dep),
                EdgeKind::UsesVolume => used_volumes.insert(dep),
                _ => false,
            };
        }
    }
    let all = options.services.is_empty();
    let mut networks = HashMap::new();
    for (key, network) in &project.networks {
        if !all && !used_networks.contains(key) {
            continue;
        }
        let name = network_name(project, key);
        match actual.network(&name) {
            None if network.external => {
                return Err(PlanError::MissingExternalNetwork {
                    key: key.clone(),
                    name,
                });
            }
            None => {
                let step = plan.push(
                    Action::CreateNetwork {
                        key: key.clone(),
                        name,
                    },
                    Vec::new(),
                    Vec::new(),
                );
                networks.insert(key.clone(), step);
            }
            Some(found) => {
                if !network.external && found.project() != Some(project.name.as_str()) {
                    plan.warnings.push(format!(
                        "network {name} exists but was not created by project \"{}\"; using it",
                        project.name
                    ));
                }
            }
        }
    }
    let mut volumes = HashMap::new();
    for (key, volume) in &project.volumes {
        if !all && !used_volumes.contains(key) {
            continue;
        }
        let name = volume_name(project, key);
        match actual.volume(&name) {
            None if volume.external => {
                return Err(PlanError::MissingExternalVolume {
                    key: key.clone(),
                    name,
                });
            }
            None => {
                let step = plan.push(
                    Action::CreateVolume {
                        key: key.clone(),
                        name,
                    },
                    Vec::new(),
                    Vec::new(),
                );
                volumes.insert(key.clone(), step);
            }
            Some(found) => {
                if !volume.external && found.project() != Some(project.name.as_str()) {
                    plan.warnings.push(format!(
                        "volume {name} exists but was not created by project \"{}\"; using it",
                        project.name
                    ));
                }
            }
        }
    }
    Ok((networks, volumes))
}

/// Pull and build steps, one per image reference, mapped from each service that waits for one.
fn images(
    project: &Project,
    order: &[String],
    planned: &BTreeSet<String>,
    counts: &HashMap<&str, u32>,
    digests: &ImageDigests,
    options: &UpOptions,
    plan: &mut Plan,
) -> Result<HashMap<String, StepId>, PlanError> {
    let mut by_image: HashMap<String, StepId> = HashMap::new();
    let mut by_service = HashMap::new();
    for name in order {
        let Some(service) = project.services.get(name) else {
            continue;
        };
        if !planned.contains(name) || counts.get(name.as_str()).copied() == Some(0) {
            continue;
        }
        let image = image_ref(&project.name, name, service).ok_or_else(|| PlanError::NoImage {
            service: name.clone(),
        })?;
        let policy = match (options.pull, &service.pull_policy) {
            (Some(p), _) => p,
            (None, Some(text)) => {
                PullPolicy::parse(text).ok_or_else(|| PlanError::UnknownPullPolicy {
                    service: name.clone(),
                    policy: text.clone(),
                })?
            }
            (None, None) => PullPolicy::Missing,
        };
        let present = digests.get(name).is_some_and(Option::is_some);
        let can_build = service.build.is_some();
        let can_pull = service.image.is_some();
        // Build when asked to, or when the image is missing and there is no registry to ask.
        let build = can_build
            && (policy == PullPolicy::Build
                || (!present && (!can_pull || policy != PullPolicy::Always)));
        let pull = !build
            && match policy {
                PullPolicy::Always => true,
                PullPolicy::Missing | PullPolicy::Build => !present,
                PullPolicy::Never if !present => {
                    return Err(PlanError::ImageNotPresent {
                        service: name.clone(),
                        image,
                    });
                }
                PullPolicy::Never => false,
            };
        if !build && !pull {
            continue;
        }
        let step = match by_image.get(&image) {
            Some(&step) => {
                if let Some(s) = plan.steps.get_mut(step) {
                    match &mut s.action {
                        Action::PullImage { services, .. }
                        | Action::BuildImage { services, .. } => services.push(name.clone()),
                        _ => {}
                    }
                }
                step
            }
            None => {
                let action = if build {
                    Action::BuildImage {
                        image: image.clone(),
                        services: vec![name.clone()],
                    }
                } else {
                    Action::PullImage {
                        image: image.clone(),
                        services: vec![name.clone()],
                        policy,
                    }
                };
                let step = plan.push(action, Vec::new(), Vec::new());
                by_image.insert(image, step);
                step
            }
        };
        by_service.insert(name.clone(), step);
    }
    Ok(by_service)
}

/// Keeps up to `count` containers, one per number, lowest numbers first; the rest are extra,
/// highest number first. Of two containers with one number, the up-to-date running one stays.
fn split_replicas<'a>(
    mut mine: Vec<&'a ActualContainer>,
    count: u32,
    hash: &str,
) -> (Vec<&'a ActualContainer>, Vec<&'a ActualContainer>) {
    mine.sort_by(|a, b| {
        let rank = |c: &ActualContainer| {
            (
                c.config_hash.as_deref() != Some(hash),
                !c.status.is_up(),
                c.name.clone(),
            )
        };
        a.number.cmp(&b.number).then_with(|| rank(a).cmp(&rank(b)))
    });
    let mut kept: Vec<&ActualContainer> = Vec::new();
    let mut extra: Vec<&ActualContainer> = Vec::new();
    for c in mine {
        let duplicate = kept.last().is_some_and(|k| k.number == c.number);
        if duplicate || kept.len() >= count as usize {
            extra.push(c);
        } else {
            kept.push(c);
        }
    }
    extra.sort_by(|a, b| b.number.cmp(&a.number).then_with(|| a.name.cmp(&b.name)));
    (kept, extra)
}

/// Why an existing container must be replaced; empty when it can stay.
fn recreate_reasons(
    c: &ActualContainer,
    desired: &ServiceConfig,
    options: &UpOptions,
    cascade: &[String],
) -> Vec<String> {
    if c.status == ContainerStatus::Dead {
        return vec!["container is dead".to_owned()];
    }
    if options.force_recreate {
        return vec!["forced".to_owned()];
    }
    if options.no_recreate {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    if c.config_hash.as_deref() != Some(desired.hash.as_str()) {
        let fields = c
            .config
            .as_ref()
            .map(|old| changed_fields(old, &desired.config))
            .unwrap_or_default();
        if fields.is_empty() {
            reasons.push("configuration changed".to_owned());
        } else {
            reasons.extend(fields.into_iter().map(|f| format!("{f} changed")));
        }
    }
    reasons.extend(cascade.iter().cloned());
    reasons
}

/// The dependencies declared with `restart: true` that this plan recreates, with their
/// conditions.
fn restart_reasons(
    deps: &[(String, EdgeKind)],
    progress: &HashMap<String, Progress>,
) -> Vec<(String, ServiceCondition)> {
    deps.iter()
        .filter_map(|(dep, kind)| match kind {
            EdgeKind::DependsOn {
                condition,
                required,
                restart: true,
            } if progress.get(dep).is_some_and(|p| p.recreated) => Some((
                dep.clone(),
                ServiceCondition {
                    service: dep.clone(),
                    condition: Condition::parse(condition).unwrap_or(Condition::Started),
                    required: *required,
                },
            )),
            _ => None,
        })
        .collect()
}

fn push_restart(
    plan: &mut Plan,
    service: &str,
    c: &ActualContainer,
    reasons: &[(String, ServiceCondition)],
    progress: &HashMap<String, Progress>,
) -> StepId {
    let after: Vec<StepId> = reasons
        .iter()
        .flat_map(|(dep, _)| {
            progress
                .get(dep)
                .map(|p| p.started.clone())
                .unwrap_or_default()
        })
        .collect();
    let names: Vec<&str> = reasons.iter().map(|(d, _)| d.as_str()).collect();
    plan.push(
        Action::RestartContainer {
            service: service.to_owned(),
            id: c.id.clone(),
            name: c.name.clone(),
            reason: format!("{} recreated", names.join(", ")),
        },
        after,
        reasons.iter().map(|(_, c)| c.clone()).collect(),
    )
}

/// A service outside the selection: its running containers restart when a `restart: true`
/// dependency was recreated.
fn restart_unchanged(
    name: &str,
    mine: &[&ActualContainer],
    deps: &[(String, EdgeKind)],
    progress: &HashMap<String, Progress>,
    options: &UpOptions,
    plan: &mut Plan,
) {
    if options.no_start {
        return;
    }
    let reasons = restart_reasons(deps, progress);
    if reasons.is_empty() {
        return;
    }
    let mut running: Vec<&&ActualContainer> = mine.iter().filter(|c| c.status.is_up()).collect();
    running.sort_by_key(|c| c.number);
    for c in running {
        push_restart(plan, name, c, &reasons, progress);
    }
}

#[cfg(test)]
mod tests;
