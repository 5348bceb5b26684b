//! The reconciler (reconciler issue, items 1, 2 and 9): one snapshot of what exists
//! ([`ProjectEngine::actual`]), the pure planner ([`crate::plan`]) turns it and the stack into a
//! graph of steps, and this executor runs that graph concurrently along its edges, deciding
//! nothing: a step starts when the steps it waits on succeeded and its `depends_on` conditions
//! hold (`service_started`, `service_healthy`, `service_completed_successfully`); a failed step
//! fails what waits on it, and independent steps carry on. Each state change is one
//! [`ProjectProgress`] line for the client; the last line says whether everything succeeded.
//!
//! Pulls run first; the project is then planned again with the images' digests, so a newly
//! pulled tag recreates what it changed. One `up` or `down` at a time per project (the project
//! lock): a second one is refused at once, naming the project.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::api::types::{ProjectDown, ProjectProgress, ProjectRun, ProjectUp};
use crate::engine::config::DaemonConfig;
use crate::engine::containers::Containers;
use crate::engine::events::Event;
use crate::engine::health::{self, HealthStatus};
use crate::engine::project::{ProjectEngine, ServiceCreate};
use crate::engine::restart;
use crate::image::pull::PullOptions;
use crate::image::record;
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::plan::action::{Action, Condition, Plan, PullPolicy, ServiceCondition, Step};
use crate::plan::actual::Actual;
use crate::plan::down::{DownOptions, plan_down};
use crate::plan::hash::ServiceConfig;
use crate::plan::labels::{self, ProjectMeta};
use crate::plan::up::{ImageDigests, UpOptions, image_ref, plan_up};
use crate::runtime::state::Status;
use crate::spec::model::{Project, Service};

/// How often conditions and `--wait` look at the containers.
const POLL: Duration = Duration::from_millis(50);
/// Why a step did not run.
const DEPENDENCY_FAILED: &str = "a step it depends on failed";
/// How many pulls run at once.
const PULLS: usize = 3;

/// The reconciler of one daemon.
pub struct Reconciler {
    engine: Arc<ProjectEngine>,
    containers: Arc<Containers>,
    data_root: PathBuf,
    config: Arc<DaemonConfig>,
    /// Projects with an `up` or `down` under way.
    busy: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("data_root", &self.data_root)
            .finish()
    }
}

/// Marks a project busy while it lives.
struct Busy<'a> {
    set: &'a Mutex<std::collections::HashSet<String>>,
    name: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.name);
        }
    }
}

/// The client's end of the progress stream, and the clock of the operation.
#[derive(Clone)]
struct Report {
    tx: mpsc::Sender<ProjectProgress>,
    started: Instant,
    /// `--wait-timeout`: waits on dependencies end here too.
    deadline: Option<Instant>,
}

impl Report {
    fn send(
        &self,
        kind: &str,
        name: &str,
        service: Option<&str>,
        status: &str,
        detail: Option<String>,
    ) {
        let line = ProjectProgress {
            kind: kind.to_string(),
            name: name.to_string(),
            service: service.map(String::from),
            status: status.to_string(),
            detail,
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        // A client that went away does not stop the operation.
        let _ = self.tx.try_send(line);
    }

    fn done(&self, result: Result<(), String>) {
        let (status, detail) = match result {
            Ok(()) => ("ok", None),
            Err(e) => ("failed", Some(e)),
        };
        // The last line must arrive: wait for room.
        let tx = self.tx.clone();
        let line = ProjectProgress {
            kind: "done".into(),
            status: status.into(),
            detail,
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..ProjectProgress::default()
        };
        tokio::spawn(async move {
            let _ = tx.send(line).await;
        });
    }
}

async fn blocking<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, String> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("internal error: {e}"))?
}

impl Reconciler {
    pub fn new(
        engine: Arc<ProjectEngine>,
        containers: Arc<Containers>,
        data_root: PathBuf,
        config: Arc<DaemonConfig>,
    ) -> Arc<Reconciler> {
        Arc::new(Reconciler {
            engine,
            containers,
            data_root,
            config,
            busy: Mutex::new(Default::default()),
        })
    }

    pub fn engine(&self) -> &Arc<ProjectEngine> {
        &self.engine
    }

    fn claim(&self, name: &str) -> Result<Busy<'_>, String> {
        let mut set = self
            .busy
            .lock()
            .map_err(|_| "internal error: the project table is poisoned".to_string())?;
        if !set.insert(name.to_string()) {
            return Err(format!(
                "project {name}: another up or down is running on it; run this again when it \
                 has finished"
            ));
        }
        Ok(Busy {
            set: &self.busy,
            name: name.to_string(),
        })
    }

    /// Refuses at once when another `up`/`down` of `name` runs (before any stream starts).
    pub fn check_free(&self, name: &str) -> Result<(), String> {
        drop(self.claim(name)?);
        Ok(())
    }

    async fn actual(&self) -> Result<Actual, String> {
        let engine = self.engine.clone();
        blocking(move || engine.actual().map_err(|e| e.to_string())).await
    }

    /// Whether the image `image` of some service of `project` (named `pname`) is in the store.
    async fn image_present(&self, project: &Project, pname: &str, image: &str) -> bool {
        self.digests(project).await.iter().any(|(svc, d)| {
            d.is_some()
                && project
                    .services
                    .get(svc)
                    .and_then(|s| image_ref(pname, svc, s))
                    .as_deref()
                    == Some(image)
        })
    }

    /// The local image (config) digest of every service's image.
    async fn digests(&self, project: &Project) -> ImageDigests {
        let root = self.data_root.clone();
        let refs: Vec<(String, String)> = project
            .services
            .iter()
            .filter_map(|(name, svc)| Some((name.clone(), image_ref(&project.name, name, svc)?)))
            .collect();
        blocking(move || {
            let store = Store::open(&root).map_err(|e| e.to_string())?;
            Ok(refs
                .into_iter()
                .map(|(service, image)| {
                    let digest = Reference::parse(&image)
                        .ok()
                        .and_then(|r| record::load(&store, &r.to_string()).ok())
                        .map(|rec| rec.config_digest.to_string());
                    (service, digest)
                })
                .collect())
        })
        .await
        .unwrap_or_default()
    }

    async fn plan(&self, project: &Project, options: &UpOptions) -> Result<Plan, String> {
        let actual = self.actual().await?;
        let digests = self.digests(project).await;
        plan_up(project, &actual, &digests, options).map_err(|e| e.to_string())
    }

    /// `up`: converges the project; the stream's last line says how it went.
    pub async fn up(
        self: Arc<Self>,
        name: String,
        req: ProjectUp,
        tx: mpsc::Sender<ProjectProgress>,
    ) {
        let started = Instant::now();
        let deadline = req
            .wait_timeout
            .filter(|_| req.wait)
            .map(|t| started + Duration::from_secs(t));
        let report = Report {
            tx,
            started,
            deadline,
        };
        let result = match self.claim(&name) {
            Ok(_busy) => self.up_claimed(&name, req, &report).await,
            Err(e) => Err(e),
        };
        report.done(result);
    }

    async fn up_claimed(
        self: &Arc<Self>,
        name: &str,
        req: ProjectUp,
        report: &Report,
    ) -> Result<(), String> {
        let project = Project::from_config(&req.project)
            .map_err(|e| format!("the project sent is not a valid stack: {e}"))?;
        if project.name != name {
            return Err(format!(
                "the project sent is named {:?}, not {name:?}",
                project.name
            ));
        }
        let pull = match req.pull.as_deref() {
            Some(p) => Some(PullPolicy::parse(p).ok_or_else(|| {
                format!("pull: unknown policy {p:?} (expected always, missing, never or build)")
            })?),
            None => None,
        };
        let options = UpOptions {
            services: req.services.clone(),
            no_deps: req.no_deps,
            force_recreate: req.force_recreate,
            no_recreate: req.no_recreate,
            scale: req.scale.clone(),
            remove_orphans: req.remove_orphans,
            pull,
            no_start: req.no_start,
        };
        let meta = ProjectMeta {
            name: project.name.clone(),
            config_files: req.config_files.clone(),
            working_dir: req.working_dir.clone(),
        };
        let mut plan = self.plan(&project, &options).await?;
        if req.dry_run {
            for line in plan.render().lines() {
                report.send("plan", "", None, "", Some(line.to_string()));
            }
            return Ok(());
        }
        for step in &plan.steps {
            if let Some(s) = step.action.service()
                && let Some(svc) = project.services.get(s)
                && svc.pull_policy.as_deref() == Some("build")
                && svc.build.is_none()
            {
                return Err(format!(
                    "service {s}: pull_policy: build needs a build: section"
                ));
            }
        }
        for w in &plan.warnings {
            report.send("warning", "", None, "", Some(w.clone()));
        }
        // Builds first (from the contexts on this machine), then pulls, then a plan with the
        // images' digests.
        let builds: Vec<Step> = plan
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::BuildImage { .. }))
            .cloned()
            .collect();
        if req.no_build
            && let Some(Action::BuildImage { image, services }) = builds.first().map(|s| &s.action)
        {
            return Err(format!(
                "image {image} (service {}) must be built, and --no-build forbids it",
                services.join(", ")
            ));
        }
        if !builds.is_empty() {
            for step in &builds {
                let Action::BuildImage { image, services } = &step.action else {
                    continue;
                };
                self.build_image(&project, image, services, Some(report))
                    .await?;
            }
            plan = self.plan(&project, &options).await?;
        }
        // Pulls first, then a plan with the images' digests.
        let pulls: Vec<Step> = plan
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::PullImage { .. }))
            .cloned()
            .collect();
        if !pulls.is_empty() {
            self.pull_all(&pulls, report).await;
            plan = self.plan(&project, &options).await?;
        }
        let project = Arc::new(project);
        let failed = self.execute(&plan, &project, &meta, None, report).await;
        if !failed.is_empty() {
            return Err(format!("not everything is up: {}", failed.join(", ")));
        }
        if req.wait && !req.no_start {
            let timeout = req.wait_timeout.map(Duration::from_secs);
            self.wait_up(&project, &options, timeout, report).await?;
        }
        Ok(())
    }

    /// Builds `image` from the `build:` section of the first of `services` (the context read on
    /// this machine), reporting `Building` / `Built` and each step.
    async fn build_image(
        &self,
        project: &Project,
        image: &str,
        services: &[String],
        report: Option<&Report>,
    ) -> Result<(), String> {
        let Some((name, service)) = services
            .iter()
            .find_map(|s| project.services.get(s).map(|svc| (s, svc)))
        else {
            return Err(format!("image {image}: no service to build it from"));
        };
        let (req, warnings) = crate::engine::compose_build::request(name, service, image)?;
        if let Some(r) = report {
            for w in warnings {
                r.send("warning", "", None, "", Some(w));
            }
        }
        let builder = crate::engine::build::Builder {
            data_root: self.data_root.clone(),
            containers: self.containers.clone(),
            config: self.config.clone(),
        };
        if let Some(r) = report {
            r.send("image", image, Some(name), "Building", None);
        }
        let mut progress = |p: crate::api::types::BuildProgress| {
            if let Some(r) = report {
                let detail = match p.kind.as_str() {
                    "step" => p.name.clone(),
                    "cached" => p.name.clone().map(|n| format!("{n} CACHED")),
                    "log" => p.message.clone(),
                    _ => None,
                };
                if detail.is_some() {
                    r.send("image", image, Some(name), "Building", detail);
                }
            }
        };
        match crate::engine::build::build(&builder, req, &mut progress).await {
            Ok(_) => {
                if let Some(r) = report {
                    r.send("image", image, Some(name), "Built", None);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(r) = report {
                    r.send("image", image, Some(name), "Error", Some(e.message.clone()));
                }
                Err(format!("service {name}: build of {image} failed: {e}"))
            }
        }
    }

    async fn pull_all(&self, pulls: &[Step], report: &Report) {
        let gate = Arc::new(tokio::sync::Semaphore::new(PULLS));
        let mut tasks = Vec::new();
        for step in pulls {
            let Action::PullImage { image, .. } = &step.action else {
                continue;
            };
            let (image, gate, report) = (image.clone(), gate.clone(), report.clone());
            let root = self.data_root.clone();
            let config = self.config.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await;
                report.send("image", &image, None, "Pulling", None);
                let result = blocking({
                    let image = image.clone();
                    move || {
                        let reference = Reference::parse(&image).map_err(|e| e.to_string())?;
                        let options = PullOptions {
                            registry: super::images::registry_options(&config, &reference),
                            ..PullOptions::default()
                        };
                        super::images::pull_blocking(&root, &reference, &options)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                })
                .await;
                match result {
                    Ok(()) => report.send("image", &image, None, "Pulled", None),
                    Err(e) => report.send("image", &image, None, "Error", Some(e)),
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Runs the plan's steps concurrently along the graph; returns the failed objects.
    async fn execute(
        self: &Arc<Self>,
        plan: &Plan,
        project: &Arc<Project>,
        meta: &ProjectMeta,
        stop_timeout: Option<Duration>,
        report: &Report,
    ) -> Vec<String> {
        let mut done_tx = Vec::new();
        let mut done_rx = Vec::new();
        for _ in &plan.steps {
            let (tx, rx) = watch::channel(None::<bool>);
            done_tx.push(tx);
            done_rx.push(rx);
        }
        let created: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let reported: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut tasks = Vec::new();
        for (step, tx) in plan.steps.iter().cloned().zip(done_tx) {
            let waits: Vec<watch::Receiver<Option<bool>>> = step
                .after
                .iter()
                .filter_map(|i| done_rx.get(*i).cloned())
                .collect();
            let me = self.clone();
            let (project, meta, report) = (project.clone(), meta.clone(), report.clone());
            let (created, failed) = (created.clone(), failed.clone());
            let reported = reported.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = true;
                for mut rx in waits {
                    let value = match rx.wait_for(Option::is_some).await {
                        Ok(v) => *v,
                        Err(_) => Some(false),
                    };
                    ok &= value == Some(true);
                }
                let (kind, name) = subject(&step.action);
                let result = if !ok {
                    Err(DEPENDENCY_FAILED.to_string())
                } else {
                    match me
                        .conditions(&project.name, &step.conditions, &report)
                        .await
                    {
                        Ok(()) => {
                            me.run_action(
                                &step.action,
                                &project,
                                &meta,
                                &created,
                                stop_timeout,
                                &report,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    }
                };
                let repeat = result.as_ref().is_err_and(|e| e == DEPENDENCY_FAILED)
                    && !reported
                        .lock()
                        .map(|mut r| r.insert(name.clone()))
                        .unwrap_or(true);
                if let Err(e) = &result
                    && !repeat
                {
                    report.send(kind, &name, step.action.service(), "Error", Some(e.clone()));
                    if let Ok(mut f) = failed.lock() {
                        f.push(match step.action.service() {
                            Some(s) => format!("{name} (service {s}): {e}"),
                            None => format!("{kind} {name}: {e}"),
                        });
                    }
                }
                let _ = tx.send(Some(result.is_ok()));
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let failed = failed.lock().map(|f| f.clone()).unwrap_or_default();
        // Only the first failures matter: those whose cause is a failed step repeat them.
        let roots: Vec<String> = failed
            .iter()
            .filter(|f| !f.ends_with(DEPENDENCY_FAILED))
            .cloned()
            .collect();
        if roots.is_empty() { failed } else { roots }
    }

    /// Waits until every condition holds (a missing optional dependency is skipped).
    async fn conditions(
        &self,
        project: &str,
        conditions: &[ServiceCondition],
        report: &Report,
    ) -> Result<(), String> {
        for c in conditions {
            let mut announced = false;
            loop {
                match self.condition_state(project, c).await {
                    Ok(true) => break,
                    Ok(false) => {
                        if report.deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(format!(
                                "service {} is still not {} after the wait timeout",
                                c.service,
                                match c.condition {
                                    Condition::Started => "started",
                                    Condition::Healthy => "healthy",
                                    Condition::CompletedSuccessfully => "completed",
                                }
                            ));
                        }
                        if report.tx.is_closed() {
                            return Err(format!(
                                "the client went away while waiting for {}",
                                c.service
                            ));
                        }
                        if !announced {
                            announced = true;
                            report.send(
                                "service",
                                &c.service,
                                Some(&c.service),
                                "Waiting",
                                Some(condition_text(c.condition).to_string()),
                            );
                        }
                        tokio::time::sleep(POLL).await;
                    }
                    Err(e) if !c.required => {
                        report.send("warning", "", None, "", Some(format!("{e} (not required)")));
                        break;
                    }
                    Err(e) => return Err(format!("dependency failed to start: {e}")),
                }
            }
            if c.condition == Condition::Healthy && announced {
                report.send("service", &c.service, Some(&c.service), "Healthy", None);
            }
        }
        Ok(())
    }

    /// Whether `c` holds now; an error when it never will.
    async fn condition_state(&self, project: &str, c: &ServiceCondition) -> Result<bool, String> {
        let containers = self.service_containers(project, &c.service).await?;
        if containers.is_empty() {
            return Err(format!("service {} has no container", c.service));
        }
        for (id, name) in containers {
            let dir = self.containers.dir(&id);
            let st = match crate::runtime::state::read(&dir) {
                Ok(st) => st,
                // Listed while its create is still writing its first state (or while it is
                // being removed): not there yet.
                Err(crate::runtime::state::StateError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(e.to_string()),
            };
            let holds = match c.condition {
                Condition::Started => st.status != Status::Created,
                Condition::CompletedSuccessfully => match st.status {
                    Status::Exited | Status::Dead => {
                        let code = st.exit_code.unwrap_or(-1);
                        if code != 0 {
                            return Err(format!(
                                "service {} did not complete successfully: {name} exited with \
                                 code {code}",
                                c.service
                            ));
                        }
                        true
                    }
                    _ => false,
                },
                Condition::Healthy => {
                    if health::read_config(&dir).is_none() {
                        return Err(format!(
                            "container {name} has no healthcheck configured (service {} is \
                             waited for as service_healthy)",
                            c.service
                        ));
                    }
                    if matches!(st.status, Status::Exited | Status::Dead) {
                        return Err(format!(
                            "container {name} exited with code {}",
                            st.exit_code.unwrap_or(-1)
                        ));
                    }
                    match health::read(&dir) {
                        Some(h) if h.status == HealthStatus::Healthy => true,
                        Some(h) if h.status == HealthStatus::Unhealthy => {
                            let last = h.log.back().map(|p| p.output.trim().to_string());
                            return Err(format!(
                                "container {name} is unhealthy{}",
                                last.filter(|l| !l.is_empty())
                                    .map(|l| format!(" (last check: {l})"))
                                    .unwrap_or_default()
                            ));
                        }
                        _ => false,
                    }
                }
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The (id, name) of the service's containers (one-off ones aside).
    async fn service_containers(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let engine = self.engine.clone();
        let (project, service) = (project.to_string(), service.to_string());
        blocking(move || {
            let list = engine.list_project(&project).map_err(|e| e.to_string())?;
            Ok(list
                .into_iter()
                .filter(|c| c.meta.labels.get(labels::SERVICE) == Some(&service))
                .filter(|c| {
                    c.meta.labels.get(labels::ONEOFF).map(String::as_str) != Some(labels::TRUE)
                })
                .map(|c| (c.meta.id, c.meta.name))
                .collect())
        })
        .await
    }

    /// One action.
    async fn run_action(
        &self,
        action: &Action,
        project: &Arc<Project>,
        meta: &ProjectMeta,
        created: &Arc<Mutex<HashMap<String, String>>>,
        stop_timeout: Option<Duration>,
        report: &Report,
    ) -> Result<(), String> {
        let pname = project.name.clone();
        // One debug line per action with its duration (RUST_LOG=flotilla::engine::reconcile=debug):
        // the profile of an up or down (benches/README.md, `up`).
        let _timing = ActionTiming {
            started: Instant::now(),
            action,
        };
        match action {
            Action::CreateNetwork { key, name } => {
                let (net, key) = (network_of(project, key), key.clone());
                self.engine_step(
                    report,
                    ("network", name),
                    ("Creating", "Created"),
                    move |e| {
                        e.ensure_network(&pname, &key, &net)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    },
                )
                .await?;
            }
            Action::CreateVolume { key, name } => {
                let (vol, key) = (volume_of(project, key), key.clone());
                self.engine_step(
                    report,
                    ("volume", name),
                    ("Creating", "Created"),
                    move |e| {
                        e.ensure_volume(&pname, &key, &vol)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    },
                )
                .await?;
            }
            Action::PullImage { image, policy, .. } => {
                // Pulled before this plan was made; still missing means the pull failed.
                if !self.image_present(project, &pname, image).await {
                    return Err(match policy {
                        PullPolicy::Never => {
                            format!("image {image} is not present and pull_policy is never")
                        }
                        _ => format!("image {image} could not be pulled"),
                    });
                }
            }
            Action::BuildImage { image, .. } => {
                // Built before this plan was made (a `pull_policy: build` service is planned
                // to build every time): it must be there now.
                if !self.image_present(project, &pname, image).await {
                    return Err(format!("image {image} was not built"));
                }
            }
            Action::CreateContainer {
                service,
                number,
                name,
            } => {
                report.send("container", name, Some(service), "Creating", None);
                let id = self.create(project, meta, service, *number, false).await?;
                if let Ok(mut c) = created.lock() {
                    c.insert(name.clone(), id);
                }
                report.send("container", name, Some(service), "Created", None);
            }
            Action::Recreate {
                service,
                number,
                old_id,
                name,
                reasons,
                ..
            } => {
                report.send(
                    "container",
                    name,
                    Some(service),
                    "Recreate",
                    Some(reasons.join(", ")),
                );
                self.remove(old_id, false, None).await?;
                let id = self.create(project, meta, service, *number, false).await?;
                if let Ok(mut c) = created.lock() {
                    c.insert(name.clone(), id);
                }
                report.send("container", name, Some(service), "Recreated", None);
            }
            Action::StartContainer {
                service, name, id, ..
            } => {
                let id = match id {
                    Some(id) => id.clone(),
                    None => created
                        .lock()
                        .ok()
                        .and_then(|c| c.get(name).cloned())
                        .ok_or_else(|| format!("container {name} was not created"))?,
                };
                report.send("container", name, Some(service), "Starting", None);
                self.containers
                    .start(&id)
                    .await
                    .map_err(|e| e.to_string())?;
                self.post_start(project, service, &id).await?;
                report.send("container", name, Some(service), "Started", None);
            }
            Action::StopContainer { service, id, name } => {
                report.send("container", name, Some(service), "Stopping", None);
                self.containers
                    .stop(id, stop_timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                report.send("container", name, Some(service), "Stopped", None);
            }
            Action::RemoveContainer {
                service,
                id,
                name,
                volumes,
            } => {
                report.send("container", name, Some(service), "Removing", None);
                self.remove(id, *volumes, stop_timeout).await?;
                report.send("container", name, Some(service), "Removed", None);
            }
            Action::RestartContainer {
                service,
                id,
                name,
                reason,
            } => {
                report.send(
                    "container",
                    name,
                    Some(service),
                    "Restarting",
                    Some(reason.clone()),
                );
                self.containers
                    .stop(id, None)
                    .await
                    .map_err(|e| e.to_string())?;
                self.containers.start(id).await.map_err(|e| e.to_string())?;
                self.post_start(project, service, id).await?;
                report.send("container", name, Some(service), "Restarted", None);
            }
            Action::RemoveNetwork { key, name } => {
                self.containers.network_removed(name).await;
                let (net, key) = (network_of(project, key), key.clone());
                self.engine_step(
                    report,
                    ("network", name),
                    ("Removing", "Removed"),
                    move |e| {
                        e.remove_network(&pname, &key, &net)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    },
                )
                .await?;
            }
            Action::RemoveVolume { key, name } => {
                let (vol, key) = (volume_of(project, key), key.clone());
                self.engine_step(
                    report,
                    ("volume", name),
                    ("Removing", "Removed"),
                    move |e| {
                        e.remove_volume(&pname, &key, &vol)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Runs the `post_start` hooks of `service` in its just started container `id`.
    async fn post_start(&self, project: &Project, service: &str, id: &str) -> Result<(), String> {
        let Some(hooks) = project
            .services
            .get(service)
            .map(|s| &s.post_start)
            .filter(|h| !h.is_empty())
        else {
            return Ok(());
        };
        let dir = self.containers.dir(id);
        let exe = self.containers.runtime().exe().to_path_buf();
        crate::engine::hooks::run(
            &dir,
            &exe,
            "post_start",
            hooks,
            crate::engine::hooks::POST_START_LIMIT,
        )
        .await
    }

    /// Runs `op` on the compose engine off the async threads, between two progress lines
    /// (`before`, `after`) of the object (`kind`, `name`).
    async fn engine_step<F>(
        &self,
        report: &Report,
        (kind, name): (&str, &str),
        (before, after): (&str, &str),
        op: F,
    ) -> Result<(), String>
    where
        F: FnOnce(&ProjectEngine) -> Result<(), String> + Send + 'static,
    {
        report.send(kind, name, None, before, None);
        let engine = self.engine.clone();
        blocking(move || op(&engine)).await?;
        report.send(kind, name, None, after, None);
        Ok(())
    }

    /// Creates replica `number` of `service` (a one-off `run` container when `oneoff`) with
    /// the planner's labels, its healthcheck and its restart policy; returns its id.
    async fn create(
        &self,
        project: &Arc<Project>,
        meta: &ProjectMeta,
        service: &str,
        number: u32,
        oneoff: bool,
    ) -> Result<String, String> {
        let svc = project
            .services
            .get(service)
            .cloned()
            .ok_or_else(|| format!("no service {service}"))?;
        let policy =
            restart::Policy::of_service(&svc).map_err(|e| format!("services.{service}.{e}"))?;
        let digests = self.digests(project).await;
        let digest = digests.get(service).cloned().flatten();
        let config =
            ServiceConfig::new(service, &svc, digest.as_deref()).map_err(|e| e.to_string())?;
        let labels = labels::container_labels(meta, service, &svc, number, oneoff, &config);
        let create = ServiceCreate {
            replica: number,
            image: None,
            config_hash: Some(config.hash.clone()),
            labels,
        };
        let engine = self.engine.clone();
        let (project, service) = (project.clone(), service.to_string());
        let root = self.data_root.clone();
        let dir_of = {
            let containers = self.containers.clone();
            move |id: &str| containers.dir(id)
        };
        let ports = svc.ports.clone();
        let id = blocking(move || {
            let image = image_ref(&project.name, &service, &svc);
            let image_check = Store::open(&root)
                .ok()
                .and_then(|store| {
                    let r = Reference::parse(image.as_deref()?).ok()?;
                    record::load(&store, &r.to_string()).ok()
                })
                .and_then(|rec| rec.config.healthcheck.clone());
            let check = health::resolve(svc.healthcheck.as_ref(), image_check.as_ref())
                .map_err(|e| format!("services.{service}.{e}"))?;
            let id = engine
                .create_service_container(&project, &service, &create)
                .map_err(|e| e.to_string())?;
            let dir = dir_of(&id);
            let stored = (|| -> std::io::Result<()> {
                if let Some(check) = &check {
                    health::write_config(&dir, check)?;
                }
                super::netsvc::write_ports(&dir, &ports)?;
                restart::write(
                    &dir,
                    &restart::Record {
                        policy,
                        ..restart::Record::default()
                    },
                )
            })();
            if let Err(e) = stored {
                let _ = engine.remove(&id, true);
                return Err(format!("store the container's settings: {e}"));
            }
            Ok(id)
        })
        .await?;
        if let Ok(c) = self.containers.inspect(&id).await {
            self.containers.events().publish(
                Event::now("container", "create", &c.meta.id, &c.meta.name)
                    .with("image", c.meta.image.clone().unwrap_or_default()),
            );
        }
        Ok(id)
    }

    /// Stops (the user's way: no restart) and removes a container with its netns.
    async fn remove(
        &self,
        id: &str,
        volumes: bool,
        stop_timeout: Option<Duration>,
    ) -> Result<(), String> {
        let c = self
            .containers
            .inspect(id)
            .await
            .map_err(|e| e.to_string())?;
        if matches!(c.state.status, Status::Running | Status::Paused) {
            self.containers
                .stop(id, stop_timeout)
                .await
                .map_err(|e| e.to_string())?;
        }
        let _guard = self.containers.lock(id).await;
        self.containers.release(id).await;
        let engine = self.engine.clone();
        let i = id.to_string();
        blocking(move || engine.remove(&i, volumes).map_err(|e| e.to_string())).await?;
        self.containers.forget(id);
        self.containers.events().publish(Event::now(
            "container",
            "destroy",
            &c.meta.id,
            &c.meta.name,
        ));
        Ok(())
    }

    /// `--wait`: every started container of the selected services runs, and is healthy when
    /// it has a check.
    async fn wait_up(
        &self,
        project: &Project,
        options: &UpOptions,
        timeout: Option<Duration>,
        report: &Report,
    ) -> Result<(), String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let services: Vec<String> = if options.services.is_empty() {
            project.services.keys().cloned().collect()
        } else {
            options.services.clone()
        };
        for service in services {
            let containers = self.service_containers(&project.name, &service).await?;
            for (id, name) in containers {
                let dir = self.containers.dir(&id);
                loop {
                    let st = crate::runtime::state::read(&dir).map_err(|e| e.to_string())?;
                    let check = health::read_config(&dir);
                    let health = health::read(&dir);
                    let ok = match (st.status, &check, &health) {
                        (Status::Running, None, _) => true,
                        (Status::Running, Some(_), Some(h)) => h.status == HealthStatus::Healthy,
                        // A one-shot job that finished well is fine.
                        (Status::Exited, _, _) if st.exit_code == Some(0) => true,
                        (Status::Exited | Status::Dead, _, _) => {
                            return Err(format!(
                                "service {service}: container {name} exited with code {}",
                                st.exit_code.unwrap_or(-1)
                            ));
                        }
                        _ => false,
                    };
                    if ok {
                        if check.is_some() {
                            report.send("container", &name, Some(&service), "Healthy", None);
                        }
                        break;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let last = health
                            .as_ref()
                            .and_then(|h| h.log.back())
                            .map(|p| format!("; last health check output: {}", p.output.trim()))
                            .unwrap_or_default();
                        return Err(format!(
                            "service {service}: container {name} is not {} after the wait \
                             timeout (status {:?}{last})",
                            if check.is_some() {
                                "healthy"
                            } else {
                                "running"
                            },
                            health
                                .map(|h| h.status.to_string())
                                .unwrap_or_else(|| format!("{:?}", st.status).to_lowercase())
                        ));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        Ok(())
    }

    /// `run`: a one-off container of `req.service` (Compose's `run`). Unless `no_deps`, the
    /// service's dependencies are brought up first as `up` would (and its `depends_on`
    /// conditions waited for); the service's networks, volumes and image are made ready; then
    /// the container is created from the overridden service, labelled one-off (the planner
    /// ignores it), and started.
    pub async fn run(
        self: &Arc<Self>,
        name: &str,
        req: ProjectRun,
    ) -> Result<crate::runtime::lifecycle::Container, RunError> {
        let project = Project::from_config(&req.project).map_err(|e| {
            RunError::Invalid(format!("the project sent is not a valid stack: {e}"))
        })?;
        if project.name != name {
            return Err(RunError::Invalid(format!(
                "the project sent is named {:?}, not {name:?}",
                project.name
            )));
        }
        let service = req.service.clone();
        let original = project.services.get(&service).cloned().ok_or_else(|| {
            let known: Vec<&str> = project.services.keys().map(String::as_str).collect();
            RunError::Invalid(format!(
                "no such service: {service:?} (project {name} has {})",
                if known.is_empty() {
                    "no services".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        if let Some(image) = crate::engine::compose_build::needs_build(
            &self.data_root,
            &project.name,
            &service,
            &original,
        ) {
            self.build_image(&project, &image, std::slice::from_ref(&service), None)
                .await
                .map_err(RunError::Failed)?;
        }
        let suffix = crate::store::new_id()
            .map_err(|e| RunError::Failed(e.to_string()))?
            .chars()
            .take(12)
            .collect::<String>();
        let svc = oneoff_service(&project.name, &service, original, &req, &suffix)
            .map_err(RunError::Invalid)?;
        let mut conditions = Vec::new();
        if !req.no_deps {
            for (dep, d) in &svc.depends_on {
                if !project.services.contains_key(dep) {
                    continue;
                }
                let condition = Condition::parse(&d.condition).ok_or_else(|| {
                    RunError::Invalid(format!(
                        "services.{service}.depends_on.{dep}.condition: unknown condition {:?}",
                        d.condition
                    ))
                })?;
                conditions.push(ServiceCondition {
                    service: dep.clone(),
                    condition,
                    required: d.required,
                });
            }
        }
        let _busy = self.claim(name).map_err(RunError::Busy)?;
        // Nobody reads the progress; the receiver lives so that waits do not see a client gone.
        let (tx, _rx) = mpsc::channel(1024);
        let report = Report {
            tx,
            started: Instant::now(),
            deadline: None,
        };
        if !conditions.is_empty() {
            let up = ProjectUp {
                project: req.project.clone(),
                config_files: req.config_files.clone(),
                working_dir: req.working_dir.clone(),
                services: conditions.iter().map(|c| c.service.clone()).collect(),
                ..ProjectUp::default()
            };
            self.up_claimed(name, up, &report)
                .await
                .map_err(|e| RunError::Failed(format!("the dependencies of {service}: {e}")))?;
        }
        let meta = ProjectMeta {
            name: project.name.clone(),
            config_files: req.config_files.clone(),
            working_dir: req.working_dir.clone(),
        };
        let mut project = project;
        self.oneoff_resources(&Arc::new(project.clone()), &service, &meta, &report)
            .await
            .map_err(RunError::Failed)?;
        self.conditions(name, &conditions, &report)
            .await
            .map_err(RunError::Failed)?;
        project.services.insert(service.clone(), svc);
        let project = Arc::new(project);
        let id = self
            .create(&project, &meta, &service, 1, true)
            .await
            .map_err(RunError::Failed)?;
        match self.containers.start(&id).await {
            Ok(c) => Ok(c),
            Err(e) => {
                // A one-off container that never ran is of no use: nothing is left behind.
                let _ = self.remove(&id, true, None).await;
                Err(RunError::Failed(format!(
                    "start the {service} container: {e}"
                )))
            }
        }
    }

    /// The networks, named volumes and image of `service` (and nothing else of `up`'s plan for
    /// it): what its one-off container needs.
    async fn oneoff_resources(
        self: &Arc<Self>,
        project: &Arc<Project>,
        service: &str,
        meta: &ProjectMeta,
        report: &Report,
    ) -> Result<(), String> {
        let options = UpOptions {
            services: vec![service.to_string()],
            no_deps: true,
            ..UpOptions::default()
        };
        let mut plan = self.plan(project, &options).await?;
        let pulls: Vec<Step> = plan
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::PullImage { .. }))
            .cloned()
            .collect();
        if !pulls.is_empty() {
            self.pull_all(&pulls, report).await;
            plan = self.plan(project, &options).await?;
        }
        let plan = only_resources(plan);
        let failed = self.execute(&plan, project, meta, None, report).await;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("not ready: {}", failed.join(", ")))
        }
    }

    /// `down`: stops and removes the project's containers, then its networks (and with
    /// `volumes` its named volumes).
    pub async fn down(
        self: Arc<Self>,
        name: String,
        req: ProjectDown,
        tx: mpsc::Sender<ProjectProgress>,
    ) {
        let report = Report {
            tx,
            started: Instant::now(),
            deadline: None,
        };
        let result = match self.claim(&name) {
            Ok(_busy) => self.down_claimed(&name, req, &report).await,
            Err(e) => Err(e),
        };
        report.done(result);
    }

    async fn down_claimed(
        self: &Arc<Self>,
        name: &str,
        req: ProjectDown,
        report: &Report,
    ) -> Result<(), String> {
        let project = match &req.project {
            Some(p) => Project::from_config(p)
                .map_err(|e| format!("the project sent is not a valid stack: {e}"))?,
            None => Project {
                name: name.to_string(),
                ..Project::default()
            },
        };
        if project.name != name {
            return Err(format!(
                "the project sent is named {:?}, not {name:?}",
                project.name
            ));
        }
        let actual = self.actual().await?;
        let options = DownOptions {
            volumes: req.volumes,
            remove_orphans: req.remove_orphans,
        };
        let plan = plan_down(&project, &actual, &options).map_err(|e| e.to_string())?;
        if req.dry_run {
            for line in plan.render().lines() {
                report.send("plan", "", None, "", Some(line.to_string()));
            }
            return Ok(());
        }
        for w in &plan.warnings {
            report.send("warning", "", None, "", Some(w.clone()));
        }
        let meta = ProjectMeta {
            name: project.name.clone(),
            config_files: Vec::new(),
            working_dir: String::new(),
        };
        let project = Arc::new(project);
        let stop_timeout = req.timeout.map(Duration::from_secs);
        let failed = self
            .execute(&plan, &project, &meta, stop_timeout, report)
            .await;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("not everything was removed: {}", failed.join(", ")))
        }
    }
}

/// Why a `run` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The request: unknown service, bad override, invalid stack.
    Invalid(String),
    /// Another `up`, `down` or `run` is under way on the project.
    Busy(String),
    /// Dependencies, resources, create or start.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Invalid(m) | RunError::Busy(m) | RunError::Failed(m) => f.write_str(m),
        }
    }
}

/// The service as its one-off container runs it: `req`'s overrides, no published ports unless
/// `service_ports`, no restart policy, its own name (`<project>-<service>-run-<suffix>` unless
/// `req.name`).
fn oneoff_service(
    project: &str,
    name: &str,
    mut svc: Service,
    req: &ProjectRun,
    suffix: &str,
) -> Result<Service, String> {
    if let Some(command) = &req.command {
        svc.command = Some(command.clone());
    }
    if let Some(entrypoint) = &req.entrypoint {
        svc.entrypoint = Some(entrypoint.clone());
    }
    for e in &req.env {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                svc.environment.insert(k.to_string(), Some(v.to_string()));
            }
            _ => return Err(format!("env {e:?}: expected KEY=VALUE")),
        }
    }
    if let Some(user) = &req.user {
        svc.user = Some(user.clone());
    }
    if let Some(dir) = &req.working_dir_override {
        if !dir.starts_with('/') {
            return Err(format!(
                "working directory {dir:?}: must be an absolute path"
            ));
        }
        svc.working_dir = Some(dir.clone());
    }
    if !req.service_ports {
        svc.ports.clear();
    }
    svc.restart = None;
    svc.scale = None;
    if let Some(deploy) = &mut svc.deploy {
        deploy.restart_policy = None;
        deploy.replicas = None;
    }
    svc.container_name = Some(match &req.name {
        Some(n) if crate::runtime::lifecycle::valid_name(n) => n.clone(),
        Some(n) => {
            return Err(format!(
                "name {n:?}: not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, at most \
                 128 characters)"
            ));
        }
        None => format!("{project}-{name}-run-{suffix}"),
    });
    Ok(svc)
}

/// The plan's network, volume and pull steps alone (their waits renumbered).
fn only_resources(plan: Plan) -> Plan {
    let keep = |a: &Action| {
        matches!(
            a,
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } | Action::PullImage { .. }
        )
    };
    let mut new_id: HashMap<usize, usize> = HashMap::new();
    let mut steps = Vec::new();
    for step in plan.steps {
        if !keep(&step.action) {
            continue;
        }
        let id = steps.len();
        new_id.insert(step.id, id);
        steps.push(Step {
            id,
            after: step
                .after
                .iter()
                .filter_map(|a| new_id.get(a).copied())
                .collect(),
            ..step
        });
    }
    Plan { steps, ..plan }
}

/// A network of the stack (`default` and others the stack does not spell out: defaults).
fn network_of(project: &Project, key: &str) -> crate::spec::model::Network {
    project.networks.get(key).cloned().unwrap_or_default()
}

/// A named volume of the stack.
fn volume_of(project: &Project, key: &str) -> crate::spec::model::Volume {
    project.volumes.get(key).cloned().unwrap_or_default()
}

fn condition_text(c: Condition) -> &'static str {
    match c {
        Condition::Started => "to start",
        Condition::Healthy => "to be healthy",
        Condition::CompletedSuccessfully => "to complete successfully",
    }
}

/// The kind and name of the object an action concerns.
fn subject(action: &Action) -> (&'static str, String) {
    match action {
        Action::CreateNetwork { name, .. } | Action::RemoveNetwork { name, .. } => {
            ("network", name.clone())
        }
        Action::CreateVolume { name, .. } | Action::RemoveVolume { name, .. } => {
            ("volume", name.clone())
        }
        Action::PullImage { image, .. } | Action::BuildImage { image, .. } => {
            ("image", image.clone())
        }
        Action::CreateContainer { name, .. }
        | Action::Recreate { name, .. }
        | Action::StartContainer { name, .. }
        | Action::StopContainer { name, .. }
        | Action::RemoveContainer { name, .. }
        | Action::RestartContainer { name, .. } => ("container", name.clone()),
    }
}

/// Logs an action's duration when dropped (whatever way the action ended).
struct ActionTiming<'a> {
    started: Instant,
    action: &'a Action,
}

impl Drop for ActionTiming<'_> {
    fn drop(&mut self) {
        let (kind, name) = subject(self.action);
        tracing::debug!(
            kind,
            name = %name,
            action = action_name(self.action),
            ms = self.started.elapsed().as_secs_f64() * 1e3,
            "action finished"
        );
    }
}

/// The action's verb in the timing lines.
fn action_name(a: &Action) -> &'static str {
    match a {
        Action::CreateNetwork { .. } => "create-network",
        Action::RemoveNetwork { .. } => "remove-network",
        Action::CreateVolume { .. } => "create-volume",
        Action::RemoveVolume { .. } => "remove-volume",
        Action::PullImage { .. } => "pull",
        Action::BuildImage { .. } => "build",
        Action::CreateContainer { .. } => "create",
        Action::Recreate { .. } => "recreate",
        Action::StartContainer { .. } => "start",
        Action::StopContainer { .. } => "stop",
        Action::RemoveContainer { .. } => "remove",
        Action::RestartContainer { .. } => "restart",
    }
}
