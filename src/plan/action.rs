//! The plan itself: actions with enough data for an executor, arranged as a DAG of steps. Each
//! step lists the steps it waits for and the `depends_on` conditions its dependencies must meet
//! before it runs, so an executor runs every step whose waits are over, concurrently, and decides
//! nothing. A plan renders as text, one line per action (`up --dry-run`, `--verbose`).

use std::fmt;

/// Index of a step in [`Plan::steps`].
pub type StepId = usize;

/// How an image is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time.
    Always,
    /// Pull when not present (Compose's default; also `if_not_present`, `daily`, `weekly`,
    /// `every_<duration>` until pull times are recorded).
    Missing,
    /// Never pull; a missing image is an error.
    Never,
    /// Build every time.
    Build,
}

impl PullPolicy {
    /// Compose's spelling (`always`, `missing`, `never`, `build`, and the aliases above).
    pub fn parse(text: &str) -> Option<PullPolicy> {
        match text {
            "always" => Some(PullPolicy::Always),
            "missing" | "if_not_present" | "daily" | "weekly" => Some(PullPolicy::Missing),
            "never" => Some(PullPolicy::Never),
            "build" => Some(PullPolicy::Build),
            t if t.starts_with("every_") => Some(PullPolicy::Missing),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::Missing => "missing",
            PullPolicy::Never => "never",
            PullPolicy::Build => "build",
        }
    }
}

/// A `depends_on` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `service_started`: the dependency's containers are running.
    Started,
    /// `service_healthy`: their healthcheck passes.
    Healthy,
    /// `service_completed_successfully`: they exited with code 0.
    CompletedSuccessfully,
}

impl Condition {
    /// Compose's spelling (`service_started`, `service_healthy`,
    /// `service_completed_successfully`).
    pub fn parse(text: &str) -> Option<Condition> {
        match text {
            "service_started" => Some(Condition::Started),
            "service_healthy" => Some(Condition::Healthy),
            "service_completed_successfully" => Some(Condition::CompletedSuccessfully),
            _ => None,
        }
    }

    /// A short word for renderings: `started`, `healthy`, `completed`.
    pub fn word(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::CompletedSuccessfully => "completed",
        }
    }
}

/// A condition a step needs from a dependency's containers before it runs. The executor checks it
/// against live state, whether or not the dependency had steps in this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCondition {
    pub service: String,
    pub condition: Condition,
    /// `required: false`: if the dependency fails or is absent, carry on with a warning.
    pub required: bool,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the network stack key `key`, engine name `name`.
    CreateNetwork { key: String, name: String },
    /// Create the named volume stack key `key`, engine name `name`.
    CreateVolume { key: String, name: String },
    /// Pull an image used by `services`.
    PullImage {
        image: String,
        services: Vec<String>,
        policy: PullPolicy,
    },
    /// Build an image for `services` from the first one's `build` section.
    BuildImage {
        image: String,
        services: Vec<String>,
    },
    /// Create (not start) replica `number` of `service`, named `name`.
    CreateContainer {
        service: String,
        number: u32,
        name: String,
    },
    /// Replace a container whose configuration changed: stop and remove `old_id`, create `name`
    /// (not started). `reasons` say why (`environment changed`, `forced`, …).
    Recreate {
        service: String,
        number: u32,
        old_id: String,
        old_name: String,
        name: String,
        reasons: Vec<String>,
    },
    /// Start a container; `id` is `None` when an earlier step of the plan creates it (find it by
    /// `name`).
    StartContainer {
        service: String,
        number: u32,
        name: String,
        id: Option<String>,
    },
    /// Stop a running or paused container.
    StopContainer {
        service: String,
        id: String,
        name: String,
    },
    /// Remove a stopped container; with `volumes`, its anonymous volumes too.
    RemoveContainer {
        service: String,
        id: String,
        name: String,
        volumes: bool,
    },
    /// Restart a running container because a dependency it declares `restart: true` on changed.
    RestartContainer {
        service: String,
        id: String,
        name: String,
        reason: String,
    },
    /// Remove a network the project created.
    RemoveNetwork { key: String, name: String },
    /// Remove a named volume the project created.
    RemoveVolume { key: String, name: String },
}

impl Action {
    /// The service the action concerns, if it concerns one container.
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::CreateContainer { service, .. }
            | Action::Recreate { service, .. }
            | Action::StartContainer { service, .. }
            | Action::StopContainer { service, .. }
            | Action::RemoveContainer { service, .. }
            | Action::RestartContainer { service, .. } => Some(service),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateNetwork { name, .. } => write!(f, "network {name}: create"),
            Action::CreateVolume { name, .. } => write!(f, "volume {name}: create"),
            Action::PullImage {
                image,
                services,
                policy,
            } => write!(
                f,
                "image {image}: pull for {} (pull policy {})",
                services.join(", "),
                policy.as_str()
            ),
            Action::BuildImage { image, services } => {
                write!(f, "image {image}: build for {}", services.join(", "))
            }
            Action::CreateContainer { service, name, .. } => {
                write!(f, "{service}: create {name}")
            }
            Action::Recreate {
                service,
                old_name,
                name,
                reasons,
                ..
            } => {
                write!(f, "{service}: recreate {old_name}")?;
                if name != old_name {
                    write!(f, " as {name}")?;
                }
                if !reasons.is_empty() {
                    write!(f, " ({})", reasons.join(", "))?;
                }
                Ok(())
            }
            Action::StartContainer { service, name, .. } => write!(f, "{service}: start {name}"),
            Action::StopContainer { service, name, .. } => write!(f, "{service}: stop {name}"),
            Action::RemoveContainer { service, name, .. } => {
                write!(f, "{service}: remove {name}")
            }
            Action::RestartContainer {
                service,
                name,
                reason,
                ..
            } => write!(f, "{service}: restart {name} ({reason})"),
            Action::RemoveNetwork { name, .. } => write!(f, "network {name}: remove"),
            Action::RemoveVolume { name, .. } => write!(f, "volume {name}: remove"),
        }
    }
}

/// One node of the plan's DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: StepId,
    pub action: Action,
    /// Steps that must have finished (successfully) first; always lower ids.
    pub after: Vec<StepId>,
    /// Conditions on dependencies checked once `after` is done, before the action runs.
    pub conditions: Vec<ServiceCondition>,
}

/// What to do, as a DAG of steps in a valid sequential order, plus warnings for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub project: String,
    pub steps: Vec<Step>,
    /// Things left alone that the user should know about (orphans without `--remove-orphans`,
    /// networks with someone else's labels).
    pub warnings: Vec<String>,
}

impl Plan {
    /// No action at all (warnings do not count).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The actions in step order.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.steps.iter().map(|s| &s.action)
    }

    /// The `--dry-run` text: warnings first, then one line per action with the conditions it
    /// waits for (`web: start demo-web-1 (after db healthy)`). Empty for an empty plan.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for warning in &self.warnings {
            out.push_str("warning: ");
            out.push_str(warning);
            out.push('\n');
        }
        for step in &self.steps {
            out.push_str(&step.action.to_string());
            if !step.conditions.is_empty() {
                let waits: Vec<String> = step
                    .conditions
                    .iter()
                    .map(|c| {
                        let optional = if c.required { "" } else { " if present" };
                        format!("{} {}{optional}", c.service, c.condition.word())
                    })
                    .collect();
                out.push_str(&format!(" (after {})", waits.join(", ")));
            }
            out.push('\n');
        }
        out
    }

    /// Appends a step and returns its id. `after` is sorted and deduplicated.
    pub(crate) fn push(
        &mut self,
        action: Action,
        mut after: Vec<StepId>,
        conditions: Vec<ServiceCondition>,
    ) -> StepId {
        after.sort_unstable();
        after.dedup();
        let id = self.steps.len();
        self.steps.push(Step {
            id,
            action,
            after,
            conditions,
        });
        id
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}
