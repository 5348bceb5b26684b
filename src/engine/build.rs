//! The image build executor (issue 9): a Dockerfile and a build context directory → an image in
//! the store, step by step like Docker's classic builder. Entry point: [`build`], a plain async
//! function shared by `POST /v1/build` and compose.
//!
//! Per stage the target needs (in waves: the stages whose dependencies are built run
//! concurrently), each step:
//! its cache key ([`crate::image::build::cache`]) is looked up in the persistent cache
//! (`<root>/build/cache/<key hex>.json` → an intermediate image, untagged in the sense that it is
//! only named `flotilla.build/cache:<key hex>`; entries survive daemon restarts) and a hit is
//! `CACHED`; otherwise `RUN` runs in a real flotilla container on the current image (shell form
//! through the `SHELL` in effect, build args and `ENV` in its environment, `WORKDIR`, `USER`, the
//! daemon's network namespace by default or an empty one with `network: none`), its output
//! streamed, and its upper dir becomes the next layer ([`crate::image::commit::derive`]); `COPY`
//! and `ADD` stage only the files they name ([`crate::image::build::copy`]) as a layer; the other
//! instructions change only the config (history entries with `empty_layer`). A failing step is
//! an error naming the step, its Dockerfile line, the exit code and the last output; its
//! container (with mounts and cgroup) is removed and no image is recorded for it. The result is
//! tagged with every `tags` reference. [`prune`] removes the cache entries and their images.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::types::{BuildOptions, BuildProgress, BuildPruned};
use crate::engine::config::DaemonConfig;
use crate::engine::containers::Containers;
use crate::image::build::cache::{self, Context};
use crate::image::build::copy::{self, RemoteFile, Sources};
use crate::image::build::dockerfile::{self, BuildError, Command, Form, Pos};
use crate::image::build::meta;
use crate::image::build::rootfs::Rootfs;
use crate::image::build::stages::{self, Base, Source, Step};
use crate::image::commit::{self, Derived};
use crate::image::pull::{Cancel, PullOptions};
use crate::image::record::{self, ImageRecord};
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::runtime::config::ContainerConfig;
use crate::runtime::lifecycle::{CreateOptions, LogsOptions};
use crate::runtime::time;

/// The repository intermediate images are named in (`flotilla.build/cache:<key hex>`).
pub const CACHE_REPOSITORY: &str = "flotilla.build/cache";

/// The repository an untagged build result is listed under (by digest: `<none>`).
pub const RESULT_REPOSITORY: &str = "flotilla.build/result";

/// The label on the containers of `RUN` steps (its value: the step's cache key).
pub const BUILD_LABEL: &str = "io.flotilla.build";

/// What a build needs of the daemon.
#[derive(Clone)]
pub struct Builder {
    pub data_root: PathBuf,
    pub containers: Arc<Containers>,
    pub config: Arc<DaemonConfig>,
}

/// One build: the context directory (on the daemon's host) and the options.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub context: PathBuf,
    pub options: BuildOptions,
    /// Set to stop the build: a running step's container is killed and removed.
    pub cancel: Cancel,
}

/// A finished build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    /// The image id (config digest).
    pub id: String,
    /// The record the result is known by (the last intermediate image, or the base image).
    pub name: String,
    pub tags: Vec<String>,
}

/// Why a build failed; a failed step carries its number, name, line and exit code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildFailure {
    pub message: String,
    pub step: Option<u32>,
    pub name: Option<String>,
    pub line: Option<usize>,
    pub exit_code: Option<i32>,
}

impl std::fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl BuildFailure {
    fn new(message: impl Into<String>) -> Self {
        BuildFailure {
            message: message.into(),
            ..Default::default()
        }
    }

    /// The `error` line of the progress stream.
    pub fn progress(&self) -> BuildProgress {
        BuildProgress {
            step: self.step,
            name: self.name.clone(),
            line: self.line,
            message: Some(self.message.clone()),
            exit_code: self.exit_code,
            ..BuildProgress::of("error")
        }
    }
}

fn located(e: BuildError) -> BuildFailure {
    BuildFailure {
        line: Some(e.pos.line),
        ..BuildFailure::new(e.to_string())
    }
}

/// The running step, for errors and progress lines.
#[derive(Debug, Clone)]
struct At {
    n: u32,
    name: String,
    file: String,
    pos: Pos,
}

impl At {
    fn fail(&self, message: impl std::fmt::Display) -> BuildFailure {
        BuildFailure {
            step: Some(self.n),
            name: Some(self.name.clone()),
            line: Some(self.pos.line),
            ..BuildFailure::new(format!(
                "{}:{}: {}: {message}",
                self.file, self.pos.line, self.name
            ))
        }
    }

    fn event(&self, kind: &str) -> BuildProgress {
        BuildProgress {
            step: Some(self.n),
            name: Some(self.name.clone()),
            line: Some(self.pos.line),
            ..BuildProgress::of(kind)
        }
    }
}

fn cache_dir(root: &Path) -> PathBuf {
    root.join("build").join("cache")
}

fn key_hex(key: &str) -> &str {
    key.strip_prefix("sha256:").unwrap_or(key)
}

/// The name of the intermediate image of cache key `key`.
pub fn intermediate_name(key: &str) -> String {
    format!("{CACHE_REPOSITORY}:{}", key_hex(key))
}

/// Whether an image name is an intermediate image of the build cache.
pub fn is_intermediate(name: &str) -> bool {
    name.starts_with(&format!("{CACHE_REPOSITORY}:"))
}

/// The cached image of `key`, if its entry and its image are both there.
fn cache_lookup(root: &Path, store: &Store, key: &str) -> Option<ImageRecord> {
    let path = cache_dir(root).join(format!("{}.json", key_hex(key)));
    let entry: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let name = entry["image"].as_str()?;
    let id = entry["id"].as_str()?;
    let image = record::load(store, name).ok()?;
    (image.config_digest.to_string() == id).then_some(image)
}

/// Records `image` as the cache entry of `key` (temp file + rename).
fn cache_save(root: &Path, key: &str, image: &ImageRecord) -> std::io::Result<()> {
    let dir = cache_dir(root);
    std::fs::create_dir_all(&dir)?;
    let entry = json!({
        "image": image.name,
        "id": image.config_digest.to_string(),
        "created": time::now(),
    });
    let tmp = dir.join(format!(".tmp-{}-{}", key_hex(key), std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&entry).unwrap_or_default())?;
    std::fs::rename(&tmp, dir.join(format!("{}.json", key_hex(key))))
}

/// A new intermediate image for cache key `key` from `parent`: its config changed by `change`,
/// plus the layer in `layer` when there is one.
fn derive_step(
    store: &Store,
    parent: Option<&ImageRecord>,
    key: &str,
    created_by: &str,
    layer: Option<&Path>,
    exclude: &[String],
    change: impl FnOnce(&mut Value),
) -> Result<ImageRecord, String> {
    let mut config = match parent {
        Some(p) => {
            let data = store
                .read_blob(&p.config_digest)
                .map_err(|e| format!("the config of {}: {e}", p.name))?;
            serde_json::from_slice(&data).map_err(|e| format!("the config of {}: {e}", p.name))?
        }
        None => commit::scratch_config(),
    };
    // Docker: the ONBUILD triggers of a base image run in the stage built on it and are not
    // passed on (the first step on a base image, not on an intermediate, drops them).
    if parent.is_some_and(|p| !is_intermediate(&p.name))
        && let Some(c) = config.get_mut("config").and_then(Value::as_object_mut)
    {
        c.remove("OnBuild");
    }
    change(&mut config);
    let reference = Reference::parse(&intermediate_name(key)).map_err(|e| e.to_string())?;
    commit::derive(
        store,
        parent,
        config,
        &Derived {
            layer,
            exclude,
            history: json!({"created_by": created_by, "comment": "flotilla build"}),
            created: time::now(),
        },
        &reference,
    )
    .map_err(|e| e.to_string())
}

/// The config document of `image` (scratch's when `None`).
fn config_of(store: &Store, image: Option<&ImageRecord>) -> Value {
    image
        .and_then(|i| store.read_blob(&i.config_digest).ok())
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_else(commit::scratch_config)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("worker task: {e}"))?
}

/// The first line of a step's text, for its name.
fn headline(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut s: String = first.chars().take(200).collect();
    if first.chars().count() > 200 || text.lines().count() > 1 {
        s.push_str(" …");
    }
    s
}

/// Builds. `progress` is told every step, its output and its end; the last line (`done` or
/// `error`) is the caller's to send from the result.
pub async fn build(
    builder: &Builder,
    req: BuildRequest,
    progress: &mut (dyn FnMut(BuildProgress) + Send),
) -> Result<BuildOutcome, BuildFailure> {
    let opts = req.options.clone();
    let root = builder.data_root.clone();
    let file = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| "Dockerfile".to_string());
    let text = match &opts.dockerfile_inline {
        Some(t) => t.clone(),
        None => {
            let rel = cache::clean_source(&file).map_err(|_| {
                BuildFailure::new(format!("dockerfile {file:?}: outside the context"))
            })?;
            std::fs::read_to_string(req.context.join(rel)).map_err(|e| {
                BuildFailure::new(format!(
                    "cannot read the Dockerfile {file:?} in the context: {e}"
                ))
            })?
        }
    };
    let df = dockerfile::parse(&file, &text).map_err(located)?;
    let mut so = stages::Options::for_host();
    so.build_args = opts.build_args.clone();
    so.target = opts.target.clone();
    if let Some(p) = &opts.platform {
        if *p != stages::host_platform() {
            return Err(BuildFailure::new(format!(
                "platform {p}: only this machine's platform ({}) can be built",
                stages::host_platform()
            )));
        }
        so.platform = p.clone();
    }
    let plan = stages::plan(&df, &so).map_err(located)?;
    for a in &plan.unused_build_args {
        progress(BuildProgress {
            message: Some(format!("build arg {a} is not declared by any ARG")),
            ..BuildProgress::of("warning")
        });
    }
    let mut tags = Vec::new();
    for t in &opts.tags {
        let r = Reference::parse(t)
            .map_err(|e| BuildFailure::new(format!("invalid tag {t:?}: {e}")))?;
        if r.digest.is_some() {
            return Err(BuildFailure::new(format!(
                "invalid tag {t:?}: a tag, not a digest"
            )));
        }
        tags.push(r);
    }
    let netns = match opts.network.as_deref() {
        None | Some("host") | Some("default") => Some(PathBuf::from(format!(
            "/proc/{}/ns/net",
            std::process::id()
        ))),
        Some("none") => None,
        Some(other) => {
            return Err(BuildFailure::new(format!(
                "network {other:?}: a build's RUN steps use host (the default) or none"
            )));
        }
    };
    if opts.shm_size == Some(0) {
        return Err(BuildFailure::new("shm_size: must be more than 0"));
    }
    crate::engine::compose_build::check_extra_hosts(&opts.extra_hosts)
        .map_err(BuildFailure::new)?;
    let store = {
        let root = root.clone();
        Arc::new(
            blocking(move || Store::open(&root).map_err(|e| format!("open the image store: {e}")))
                .await
                .map_err(BuildFailure::new)?,
        )
    };

    // Base images (and `--from` images), pulled when missing or asked to; then the ONBUILD
    // triggers of the base images inserted after their FROM and the plan made again (a second
    // pass resolves what the triggers name with --from).
    let mut n: u32 = 0;
    let mut images: BTreeMap<String, ImageRecord> = BTreeMap::new();
    let mut plan = plan;
    let mut triggers: BTreeMap<usize, (String, Vec<String>)> = BTreeMap::new();
    for pass in 0..2 {
        for &s in &plan.order {
            let stage = &plan.stages[s];
            let mut refs: Vec<String> = Vec::new();
            if let Base::Image(r) = &stage.base {
                refs.push(r.clone());
            }
            refs.extend(stage.images.iter().cloned());
            for r in refs {
                if images.contains_key(&r) {
                    continue;
                }
                n += 1;
                let at = At {
                    n,
                    name: format!("[internal] load metadata for {r}"),
                    file: file.clone(),
                    pos: stage.pos,
                };
                progress(at.event("step"));
                let t0 = Instant::now();
                let image = resolve_image(builder, &store, &r, opts.pull, &req.cancel)
                    .await
                    .map_err(|e| at.fail(format!("FROM {r}: {e}")))?;
                progress(BuildProgress {
                    seconds: Some(t0.elapsed().as_secs_f64()),
                    ..at.event("step_done")
                });
                images.insert(r, image);
            }
        }
        if pass == 1 {
            break;
        }
        for &s in &plan.order {
            if let Base::Image(r) = &plan.stages[s].base
                && let Some(image) = images.get(r)
            {
                let (st, i) = (store.clone(), image.clone());
                let config = blocking(move || Ok(config_of(&st, Some(&i))))
                    .await
                    .map_err(BuildFailure::new)?;
                let list = onbuild_triggers(&config);
                if !list.is_empty() {
                    triggers.insert(s, (r.clone(), list));
                }
            }
        }
        if triggers.is_empty() {
            break;
        }
        let df = with_triggers(&df, &triggers)?;
        plan = stages::plan(&df, &so).map_err(|e| {
            let mut f = located(e);
            f.message = format!("{} (in an ONBUILD trigger of the base image)", f.message);
            f
        })?;
    }
    // Cache keys (hashes what the COPY steps read).
    let ids: BTreeMap<String, String> = images
        .iter()
        .map(|(r, i)| (r.clone(), i.config_digest.to_string()))
        .collect();
    let (keys, ctx) = {
        let plan = plan.clone();
        let dir = req.context.clone();
        let file = file.clone();
        let ids = ids.clone();
        let triggers = triggers.clone();
        // The RUN containers' /dev/shm and /etc/hosts are inputs of their steps (as in
        // BuildKit): non-default ones give every step of the build other keys.
        let run_env = match (opts.shm_size, opts.extra_hosts.is_empty()) {
            (None, true) => String::new(),
            (shm, _) => format!(
                "\0shm={}\0hosts={}",
                shm.unwrap_or(64 << 20),
                opts.extra_hosts.join(",")
            ),
        };
        tokio::task::spawn_blocking(move || -> Result<_, BuildFailure> {
            let mut ctx = Context::open(&dir)
                .map_err(|e| BuildFailure::new(format!("build context: {e}")))?;
            let keys = cache::plan_keys(&plan, &mut ctx, &|r: &str| {
                let id = ids.get(r).cloned().unwrap_or_else(|| format!("ref:{r}"));
                format!("{id}{run_env}")
            })
            .map_err(|e| {
                let step = &plan.stages[e.stage].steps[e.step];
                let what = match triggers.get(&e.stage) {
                    Some((base, list)) if e.step < list.len() => {
                        format!(" (ONBUILD trigger {:?} of FROM {base})", list[e.step])
                    }
                    _ => String::new(),
                };
                located(BuildError::new(
                    &file,
                    step.pos,
                    format!("{} {}{what}", step.keyword, e.error),
                ))
            })?;
            Ok((keys, ctx))
        })
        .await
        .map_err(|e| BuildFailure::new(format!("worker task: {e}")))??
    };
    // Stages in waves: every stage whose dependencies are built runs, concurrently with the
    // others of its wave; their step numbers are fixed in advance (plan order).
    let mut first: BTreeMap<usize, u32> = BTreeMap::new();
    for &s in &plan.order {
        first.insert(s, n + 1);
        n += 1 + plan.stages[s].steps.len() as u32;
    }
    let run = StageRun {
        builder,
        store: store.clone(),
        root: root.clone(),
        file: file.clone(),
        opts: &opts,
        plan: &plan,
        keys: &keys,
        triggers: &triggers,
        images: &images,
        ids: &ids,
        netns,
        ctx: Arc::new(std::sync::Mutex::new(ctx)),
        cancel: &req.cancel,
        progress: std::sync::Mutex::new(progress),
    };
    let mut finals: BTreeMap<usize, (Option<ImageRecord>, String)> = BTreeMap::new();
    let mut remaining: Vec<usize> = plan.order.clone();
    while !remaining.is_empty() {
        let ready: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|s| plan.stages[*s].needs.iter().all(|d| finals.contains_key(d)))
            .collect();
        if ready.is_empty() {
            return Err(BuildFailure::new("internal: stages wait for each other"));
        }
        // All of a wave run to their end (a failed stage does not cut a sibling's RUN short:
        // its container is removed by its own step).
        let results = futures_util::future::join_all(
            ready
                .iter()
                .map(|&s| run.stage(s, first.get(&s).copied().unwrap_or(0), &finals)),
        )
        .await;
        let mut failure = None;
        for (s, r) in ready.iter().zip(results) {
            match r {
                Ok(done) => {
                    finals.insert(*s, done);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        remaining.retain(|s| !ready.contains(s));
    }
    drop(run);

    let (last, last_key) = finals.remove(&plan.target).unwrap_or((None, String::new()));
    let Some(mut image) = last else {
        return Err(BuildFailure::new(
            "the target stage is empty (FROM scratch without any step): no image to record",
        ));
    };
    if !opts.labels.is_empty() {
        let text = format!(
            "LABEL {}",
            opts.labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let key = cache::step_key(&last_key, &text, &BTreeMap::new(), None);
        let labels = opts.labels.clone();
        let (r, st) = (root.clone(), store.clone());
        let parent = image.clone();
        image = blocking(move || {
            if let Some(hit) = cache_lookup(&r, &st, &key) {
                return Ok(hit);
            }
            let made = derive_step(&st, Some(&parent), &key, &text, None, &[], |c| {
                meta::add_labels(c, &labels)
            })?;
            cache_save(&r, &key, &made).map_err(|e| format!("save the cache entry: {e}"))?;
            Ok(made)
        })
        .await
        .map_err(BuildFailure::new)?;
    }
    let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    {
        let (st, source, tags) = (store.clone(), image.name.clone(), tags.clone());
        let untagged = image.clone();
        blocking(move || {
            if tags.is_empty() {
                // Listed as `<none>` like Docker's untagged build results (a prune removes it).
                let name = format!("{RESULT_REPOSITORY}@{}", untagged.manifest_digest);
                let name = Reference::parse(&name)
                    .map_err(|e| e.to_string())?
                    .to_string();
                let _lock =
                    crate::image::manage::StoreLock::shared(&st).map_err(|e| e.to_string())?;
                record::save(&st, &ImageRecord { name, ..untagged }).map_err(|e| e.to_string())?;
            }
            for t in &tags {
                crate::image::manage::tag(&st, &source, t).map_err(|e| format!("tag {t}: {e}"))?;
            }
            Ok(())
        })
        .await
        .map_err(BuildFailure::new)?;
    }
    Ok(BuildOutcome {
        id: image.config_digest.to_string(),
        name: image.name,
        tags: names,
    })
}

/// What the stages of one build share.
struct StageRun<'a> {
    builder: &'a Builder,
    store: Arc<Store>,
    root: PathBuf,
    file: String,
    opts: &'a BuildOptions,
    plan: &'a stages::Plan,
    keys: &'a BTreeMap<usize, Vec<String>>,
    /// Per stage: its base image and the ONBUILD triggers run as its first steps.
    triggers: &'a BTreeMap<usize, (String, Vec<String>)>,
    images: &'a BTreeMap<String, ImageRecord>,
    ids: &'a BTreeMap<String, String>,
    netns: Option<PathBuf>,
    ctx: Arc<std::sync::Mutex<Context>>,
    cancel: &'a Cancel,
    progress: std::sync::Mutex<&'a mut (dyn FnMut(BuildProgress) + Send)>,
}

impl<'a> StageRun<'a> {
    fn emit(&self, p: BuildProgress) {
        let mut f = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        (*f)(p);
    }

    /// The key the plan gave the base of stage `s`.
    fn planned_base(&self, s: usize) -> String {
        match &self.plan.stages[s].base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => self.ids.get(r).cloned().unwrap_or_default(),
            Base::Stage(i) => self.planned_last(*i),
        }
    }

    /// The key the plan gave the last step of stage `s` (its base's when it has none).
    fn planned_last(&self, s: usize) -> String {
        match self.keys.get(&s).and_then(|k| k.last()) {
            Some(k) => k.clone(),
            None => self.planned_base(s),
        }
    }

    /// Builds stage `s` (its steps numbered from `first`) on the stages built before it: its
    /// last image and cache key.
    async fn stage(
        &self,
        s: usize,
        first: u32,
        finals: &BTreeMap<usize, (Option<ImageRecord>, String)>,
    ) -> Result<(Option<ImageRecord>, String), BuildFailure> {
        let (plan, keys, images, ids) = (self.plan, self.keys, self.images, self.ids);
        let (store, root, file, opts) = (&self.store, &self.root, &self.file, self.opts);
        let netns = &self.netns;
        let mut n = first - 1;
        {
            let stage = &plan.stages[s];
            let count = stage.steps.len() + 1;
            // BuildKit's names: `[2/5]` with one stage, `[name 2/5]` / `[stage-1 2/5]` with several.
            let label = match (&stage.name, plan.stages.len()) {
                (_, 1) => String::new(),
                (Some(name), _) => format!("{name} "),
                (None, _) => format!("stage-{} ", stage.index),
            };
            n += 1;
            let base_name = match &stage.base {
                Base::Scratch => "scratch".to_string(),
                Base::Image(r) => r.clone(),
                Base::Stage(i) => plan.stages[*i].label(),
            };
            let at = At {
                n,
                name: format!("[{label}1/{count}] FROM {base_name}"),
                file: file.clone(),
                pos: stage.pos,
            };
            self.emit(at.event("step"));
            let (mut cur, mut parent_key) = match &stage.base {
                Base::Scratch => (None, "scratch".to_string()),
                Base::Image(r) => (
                    images.get(r).cloned(),
                    ids.get(r).cloned().unwrap_or_default(),
                ),
                Base::Stage(i) => finals.get(i).cloned().unwrap_or((None, String::new())),
            };
            self.emit(BuildProgress {
                seconds: Some(0.0),
                ..at.event("step_done")
            });
            let mut cmd_set = false;
            let mut deviated = parent_key != self.planned_base(s);
            let stage_keys = keys.get(&s).cloned().unwrap_or_default();
            for (k, step) in stage.steps.iter().enumerate() {
                if self.cancel.is_cancelled() {
                    return Err(BuildFailure::new("the build was cancelled"));
                }
                n += 1;
                let Some(key) = stage_keys.get(k).cloned() else {
                    return Err(BuildFailure::new("internal: a step without a cache key"));
                };
                let name = match self.triggers.get(&s) {
                    Some((base, list)) if k < list.len() => format!(
                        "[{label}{}/{count}] ONBUILD {} (trigger of FROM {base})",
                        k + 2,
                        headline(&step.text)
                    ),
                    _ => format!("[{label}{}/{count}] {}", k + 2, headline(&step.text)),
                };
                let at = At {
                    n,
                    name,
                    file: file.clone(),
                    pos: step.pos,
                };
                self.emit(at.event("step"));
                let t0 = Instant::now();
                // The planned key holds when everything before went as planned; a download's
                // content (ADD of a URL), or a stage whose key changed that way, is hashed in
                // and chains on from the actual parent.
                let mut key = key;
                let mut extra = String::new();
                if let Some(Source::Stage(i)) = step.copy.as_ref().and_then(|c| c.from.as_ref())
                    && let Some((_, k)) = finals.get(i)
                    && *k != self.planned_last(*i)
                {
                    extra.push_str(k);
                }
                // The download's staging lives until the step is done (dropped at the loop's end).
                let (_download, remote) = match remote_sources(step) {
                    Some((urls, checksum)) => {
                        let (staging, files, digest) =
                            fetch_remote(root, &urls, checksum.as_deref(), self.cancel)
                                .await
                                .map_err(|e| at.fail(e))?;
                        extra.push_str(&digest);
                        (Some(staging), files)
                    }
                    None => (None, Vec::new()),
                };
                if deviated || !extra.is_empty() {
                    key = cache::step_key(
                        &parent_key,
                        &step.text,
                        &step.args,
                        Some(&format!("{key}\0{extra}")),
                    );
                    deviated = true;
                }
                let sets_cmd = matches!(step.instruction.command, Command::Cmd(_));
                if !opts.no_cache {
                    let (r, st, key2) = (root.clone(), store.clone(), key.clone());
                    if let Ok(Some(hit)) = blocking(move || Ok(cache_lookup(&r, &st, &key2))).await
                    {
                        self.emit(at.event("cached"));
                        cur = Some(hit);
                        parent_key = key;
                        cmd_set |= sets_cmd;
                        continue;
                    }
                }
                let made = match &step.instruction.command {
                    Command::Run {
                        form,
                        mounts,
                        network,
                        ..
                    } => {
                        for m in mounts {
                            if m.kind == "cache" || m.kind == "tmpfs" {
                                // The step still runs right, only without the persistent dir.
                                self.emit(BuildProgress {
                                message: Some(format!(
                                    "{}:{}: RUN --mount=type={} is not supported: the step runs \
                                     without it",
                                    file, step.pos.line, m.kind
                                )),
                                ..BuildProgress::of("warning")
                            });
                            } else {
                                return Err(at.fail(format!(
                                    "RUN --mount=type={} is not supported (only cache and tmpfs \
                                 mounts are accepted, and run without the mount)",
                                    m.kind
                                )));
                            }
                        }
                        let netns = match network.as_deref() {
                            None => netns.clone(),
                            Some("none") => None,
                            Some("host" | "default") => Some(PathBuf::from(format!(
                                "/proc/{}/ns/net",
                                std::process::id()
                            ))),
                            Some(other) => {
                                return Err(at.fail(format!(
                                    "RUN --network={other}: only default, host or none"
                                )));
                            }
                        };
                        let Some(image) = cur.as_ref() else {
                            return Err(at.fail(
                            "RUN needs an image to run in (this stage is still an empty scratch)",
                        ));
                        };
                        run_step(
                            self.builder,
                            &self.store,
                            image,
                            step,
                            form,
                            &key,
                            netns,
                            opts,
                            &at,
                            &|p| self.emit(p),
                            self.cancel,
                        )
                        .await?
                    }
                    Command::Copy(_) | Command::Add(_) => copy_step(
                        &self.root,
                        &self.store,
                        cur.clone(),
                        step.clone(),
                        &key,
                        self.ctx.clone(),
                        finals,
                        self.images,
                        remote,
                    )
                    .await
                    .map_err(|e| at.fail(e))?,
                    Command::Workdir(_) => {
                        workdir_step(store, cur.clone(), step.clone(), &key, root)
                            .await
                            .map_err(|e| at.fail(e))?
                    }
                    _ => {
                        let (st, parent, step2, key2) =
                            (store.clone(), cur.clone(), step.clone(), key.clone());
                        blocking(move || {
                            derive_step(&st, parent.as_ref(), &key2, &step2.text, None, &[], |c| {
                                meta::apply(c, &step2, cmd_set);
                            })
                        })
                        .await
                        .map_err(|e| at.fail(e))?
                    }
                };
                cmd_set |= sets_cmd;
                {
                    let (r, key2, made2) = (root.clone(), key.clone(), made.clone());
                    blocking(move || {
                        cache_save(&r, &key2, &made2)
                            .map_err(|e| format!("save the cache entry: {e}"))
                    })
                    .await
                    .map_err(|e| at.fail(e))?;
                }
                cur = Some(made);
                parent_key = key;
                self.emit(BuildProgress {
                    seconds: Some(t0.elapsed().as_secs_f64()),
                    ..at.event("step_done")
                });
            }
            Ok((cur, parent_key))
        }
    }
}

/// The `OnBuild` triggers of an image config (instruction texts, in order).
fn onbuild_triggers(config: &Value) -> Vec<String> {
    config["config"]["OnBuild"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str())
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `df` with each stage's triggers (stage index → base reference and trigger texts) inserted
/// right after its `FROM`, located at the `FROM`'s line. A trigger that does not parse, or is
/// one Docker refuses there (`FROM`, `ONBUILD`, `MAINTAINER`), is an error naming it and the line.
fn with_triggers(
    df: &dockerfile::Dockerfile,
    triggers: &BTreeMap<usize, (String, Vec<String>)>,
) -> Result<dockerfile::Dockerfile, BuildFailure> {
    let mut out = df.clone();
    out.instructions.clear();
    let mut stage = 0usize;
    for i in &df.instructions {
        out.instructions.push(i.clone());
        if !matches!(i.command, Command::From { .. }) {
            continue;
        }
        let s = stage;
        stage += 1;
        let Some((base, list)) = triggers.get(&s) else {
            continue;
        };
        for t in list {
            let fail = |m: &str| BuildFailure {
                line: Some(i.pos.line),
                ..BuildFailure::new(format!(
                    "{}:{}: FROM {base}: ONBUILD trigger {t:?}: {m}",
                    df.file, i.pos.line
                ))
            };
            // Leading newlines put the trigger's positions on the FROM's line.
            let text = format!("{}{t}\n", "\n".repeat(i.pos.line.saturating_sub(1)));
            let parsed = dockerfile::parse(&df.file, &text).map_err(|e| fail(&e.message))?;
            for inner in parsed.instructions {
                if matches!(inner.keyword.as_str(), "FROM" | "ONBUILD" | "MAINTAINER") {
                    return Err(fail(&format!(
                        "{} is not allowed as an ONBUILD trigger",
                        inner.keyword
                    )));
                }
                out.instructions.push(dockerfile::Instruction {
                    pos: i.pos,
                    ..inner
                });
            }
        }
    }
    Ok(out)
}

/// The record of image `r`: from the store, or pulled (always with `pull`).
async fn resolve_image(
    builder: &Builder,
    store: &Arc<Store>,
    r: &str,
    pull: bool,
    cancel: &Cancel,
) -> Result<ImageRecord, String> {
    let reference = Reference::parse(r).map_err(|e| format!("invalid reference: {e}"))?;
    if !pull {
        let (st, name) = (store.clone(), reference.to_string());
        if let Ok(Some(image)) = blocking(move || Ok(record::load(&st, &name).ok())).await {
            return Ok(image);
        }
    }
    let root = builder.data_root.clone();
    let options = PullOptions {
        registry: crate::engine::images::registry_options(&builder.config, &reference),
        cancel: Some(cancel.clone()),
        ..PullOptions::default()
    };
    blocking(move || {
        crate::engine::images::pull_blocking(&root, &reference, &options)
            .map(|(_, report)| report.record)
            .map_err(|e| format!("pull: {e}"))
    })
    .await
}

async fn cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `RUN`: a container on `image`, its output streamed, its upper dir committed.
#[allow(clippy::too_many_arguments)]
async fn run_step(
    builder: &Builder,
    store: &Arc<Store>,
    image: &ImageRecord,
    step: &Step,
    form: &Form,
    key: &str,
    netns: Option<PathBuf>,
    opts: &BuildOptions,
    at: &At,
    progress: &(dyn Fn(BuildProgress) + Sync),
    cancel: &Cancel,
) -> Result<ImageRecord, BuildFailure> {
    let config = {
        let (st, i) = (store.clone(), image.clone());
        blocking(move || Ok(config_of(&st, Some(&i))))
            .await
            .map_err(|e| at.fail(e))?
    };
    let argv = match form {
        Form::Shell(t)
            if !step.instruction.heredocs.is_empty() && t.trim_start().starts_with("<<") =>
        {
            let mut a = meta::shell(&config);
            let script: String = step
                .instruction
                .heredocs
                .iter()
                .map(|h| h.content.as_str())
                .collect();
            a.push(script);
            a
        }
        f => meta::argv(f, &config),
    };
    let image_env: Vec<String> = meta::env(&config).into_iter().map(|(k, _)| k).collect();
    let env: Vec<String> = step
        .args
        .iter()
        .filter(|(k, _)| !image_env.contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let user = config["config"]["User"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let options = CreateOptions {
        image: Some(image.name.clone()),
        config: ContainerConfig {
            command: Some(argv.clone()),
            entrypoint: Some(Vec::new()),
            env,
            working_dir: Some(meta::workdir(&config)),
            user,
            netns,
            shm_size: opts.shm_size,
            extra_hosts: opts.extra_hosts.clone(),
            ..ContainerConfig::default()
        },
        labels: BTreeMap::from([(BUILD_LABEL.to_string(), key.to_string())]),
        ..CreateOptions::default()
    };
    let containers = &builder.containers;
    let c = containers
        .create(options)
        .await
        .map_err(|e| at.fail(format!("create the step's container: {e}")))?;
    let id = c.meta.id.clone();
    let result = run_container(
        builder, store, image, step, &argv, key, &id, at, progress, cancel,
    )
    .await;
    if let Err(e) = containers.remove(&id, true, true).await {
        tracing::warn!(id, error = %e, "remove a build step's container");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_container(
    builder: &Builder,
    store: &Arc<Store>,
    image: &ImageRecord,
    step: &Step,
    argv: &[String],
    key: &str,
    id: &str,
    at: &At,
    progress: &(dyn Fn(BuildProgress) + Sync),
    cancel: &Cancel,
) -> Result<ImageRecord, BuildFailure> {
    let containers = &builder.containers;
    containers
        .start(id)
        .await
        .map_err(|e| at.fail(format!("start the step's container: {e}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let follower = {
        let rt = containers.runtime().clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let options = LogsOptions {
                follow: true,
                ..LogsOptions::default()
            };
            let _ = rt.logs(&id, &options, &mut |e| tx.send(e.log.clone()).is_ok());
        })
    };
    let mut tail: VecDeque<String> = VecDeque::new();
    let show = |line: String, tail: &mut VecDeque<String>| {
        let line = line.trim_end_matches('\n').to_string();
        tail.push_back(line.clone());
        if tail.len() > 10 {
            tail.pop_front();
        }
        progress(BuildProgress {
            message: Some(line),
            ..at.event("log")
        });
    };
    let waited = {
        let wait = containers.wait(id);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                Some(line) = rx.recv() => show(line, &mut tail),
                st = &mut wait => break Some(st),
                _ = cancelled(cancel) => break None,
            }
        }
    };
    let Some(state) = waited else {
        let _ = containers.remove(id, true, true).await;
        follower.abort();
        return Err(at.fail("cancelled: the step's container was killed"));
    };
    let _ = follower.await;
    while let Ok(line) = rx.try_recv() {
        show(line, &mut tail);
    }
    let state = state.map_err(|e| at.fail(format!("wait for the step's container: {e}")))?;
    let code = state.exit_code.unwrap_or(-1);
    if code != 0 {
        let last: Vec<String> = tail.into_iter().collect();
        let mut f = at.fail(format!(
            "process {:?} did not complete successfully: exit code: {code}{}",
            argv.join(" "),
            if last.is_empty() {
                String::new()
            } else {
                format!("\n{}", last.join("\n"))
            }
        ));
        f.exit_code = Some(code);
        return Err(f);
    }
    let dir = containers.dir(id);
    let (st, parent, key, text) = (
        store.clone(),
        image.clone(),
        key.to_string(),
        step.text.clone(),
    );
    blocking(move || {
        let mut exclude: Vec<String> = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Ok(spec) = oci_spec::runtime::Spec::load(dir.join("config.json")) {
            for m in spec.mounts().clone().unwrap_or_default() {
                exclude.push(m.destination().to_string_lossy().into_owned());
            }
        }
        derive_step(
            &st,
            Some(&parent),
            &key,
            &text,
            Some(&dir.join("upper")),
            &exclude,
            |_| {},
        )
    })
    .await
    .map_err(|e| at.fail(format!("commit the step's layer: {e}")))
}

/// A scratch directory for a layer being staged, removed on drop.
struct Staging(PathBuf);

impl Staging {
    fn new(root: &Path) -> std::io::Result<Staging> {
        let base = root.join("build").join("tmp");
        std::fs::create_dir_all(&base)?;
        let mut bytes = [0u8; 8];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        let dir = base.join(hex::encode(bytes));
        std::fs::create_dir(&dir)?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    /// Removed in the background: unlinking thousands of fresh files can take seconds on a busy
    /// filesystem, and the step is done (a daemon stopped meanwhile leaves it to the next one's
    /// start, [`cleanup`]).
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.0);
        let _ = std::thread::Builder::new()
            .name("build-staging-rm".into())
            .spawn(move || std::fs::remove_dir_all(&dir));
    }
}

/// `COPY` / `ADD`: the named files staged as a layer. Hands the context back.
#[allow(clippy::too_many_arguments)]
async fn copy_step(
    root: &Path,
    store: &Arc<Store>,
    cur: Option<ImageRecord>,
    step: Step,
    key: &str,
    ctx: Arc<std::sync::Mutex<Context>>,
    finals: &BTreeMap<usize, (Option<ImageRecord>, String)>,
    images: &BTreeMap<String, ImageRecord>,
    remote: Vec<RemoteFile>,
) -> Result<ImageRecord, String> {
    let from: Option<Option<ImageRecord>> = match step.copy.as_ref().and_then(|c| c.from.as_ref()) {
        None => None,
        Some(Source::Stage(i)) => Some(finals.get(i).and_then(|(r, _)| r.clone())),
        Some(Source::Image(r)) => Some(images.get(r).cloned()),
    };
    let (root, st, key) = (root.to_path_buf(), store.clone(), key.to_string());
    let joined = tokio::task::spawn_blocking(move || {
        (|| -> Result<ImageRecord, String> {
            let Some(copy) = step.copy.as_ref() else {
                return Err("internal: COPY without its arguments".into());
            };
            let staging =
                Staging::new(&root).map_err(|e| format!("a directory to stage the layer: {e}"))?;
            let target = Rootfs::of(&st, cur.as_ref());
            let config = config_of(&st, cur.as_ref());
            let workdir = meta::workdir(&config);
            let add = step.keyword == "ADD";
            match &from {
                None => {
                    let mut c = ctx.lock().unwrap_or_else(|e| e.into_inner());
                    copy::stage(
                        &staging.0,
                        copy,
                        add,
                        &step.instruction.heredocs,
                        &remote,
                        Sources::Context(&mut c),
                        &target,
                        &workdir,
                    )?;
                }
                Some(image) => {
                    let fs = Rootfs::of(&st, image.as_ref());
                    copy::stage(
                        &staging.0,
                        copy,
                        add,
                        &step.instruction.heredocs,
                        &[],
                        Sources::Image(&fs),
                        &target,
                        &workdir,
                    )?;
                }
            }
            derive_step(
                &st,
                cur.as_ref(),
                &key,
                &step.text,
                Some(&staging.0),
                &[],
                |_| {},
            )
        })()
    })
    .await;
    joined.map_err(|e| format!("worker task: {e}"))?
}

/// The most `ADD` downloads of one URL (bytes).
const REMOTE_MAX: u64 = 4 << 30;

/// How long one `ADD` download may take, and its connection.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(600);
const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The URLs an `ADD` from the context fetches, and its `--checksum`; `None` for other steps.
fn remote_sources(step: &Step) -> Option<(Vec<String>, Option<String>)> {
    let Command::Add(args) = &step.instruction.command else {
        return None;
    };
    let c = step.copy.as_ref()?;
    if c.from.is_some() {
        return None;
    }
    let urls: Vec<String> = c
        .sources
        .iter()
        .filter(|s| copy::is_http(s))
        .cloned()
        .collect();
    let checksum = args.checksum.as_ref().map(|w| w.raw.clone());
    (!urls.is_empty() || checksum.is_some()).then_some((urls, checksum))
}

/// `Last-Modified` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) as seconds since the epoch.
fn http_date(text: &str) -> Option<i64> {
    let mut p = text.split_whitespace().skip(1);
    let day: i64 = p.next()?.parse().ok()?;
    let month = match p.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = p.next()?.parse().ok()?;
    let mut hms = p.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if p.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Downloads every URL of an `ADD` into a staging directory: the staging (removed on drop), the
/// files, and a digest of what was fetched (for the step's cache key). A non-2xx answer, a
/// connection error, a body over [`REMOTE_MAX`], a timeout or a `--checksum` mismatch is an
/// error naming the URL.
async fn fetch_remote(
    root: &Path,
    urls: &[String],
    checksum: Option<&str>,
    cancel: &Cancel,
) -> Result<(Staging, Vec<RemoteFile>, String), String> {
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncWriteExt;

    let expected = match checksum {
        None => None,
        Some(c) => {
            if urls.len() != 1 {
                return Err(format!(
                    "--checksum={c}: needs exactly one http(s) URL source"
                ));
            }
            let hex = c
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| format!("--checksum={c}: expected sha256:<64 hex digits>"))?;
            Some(hex.to_ascii_lowercase())
        }
    };
    let staging = {
        let root = root.to_path_buf();
        blocking(move || {
            Staging::new(&root).map_err(|e| format!("a directory for the download: {e}"))
        })
        .await?
    };
    let mut files = Vec::new();
    let mut all = Sha256::new();
    for (i, url) in urls.iter().enumerate() {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: invalid URL: {e}"))?;
        let mut client = reqwest::Client::builder()
            .timeout(REMOTE_TIMEOUT)
            .connect_timeout(REMOTE_CONNECT_TIMEOUT);
        let loopback = parsed.host_str().is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback())
        });
        if loopback {
            client = client.no_proxy();
        }
        let client = client
            .build()
            .map_err(|e| format!("{url}: an HTTP client: {e}"))?;
        let fetch = async {
            let mut resp = client
                .get(parsed.clone())
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("{url}: the server answered {status}"));
            }
            if resp.content_length().is_some_and(|n| n > REMOTE_MAX) {
                return Err(format!("{url}: larger than {REMOTE_MAX} bytes"));
            }
            let mtime = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(http_date);
            let path = staging.0.join(format!("download-{i}"));
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut h = Sha256::new();
            let mut size: u64 = 0;
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                size += chunk.len() as u64;
                if size > REMOTE_MAX {
                    return Err(format!("{url}: larger than {REMOTE_MAX} bytes"));
                }
                h.update(&chunk);
                out.write_all(&chunk)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            out.flush()
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((path, mtime, hex::encode(h.finalize())))
        };
        let (path, mtime, digest) = tokio::select! {
            r = fetch => r?,
            _ = cancelled(cancel) => return Err(format!("{url}: cancelled")),
        };
        if let Some(want) = &expected
            && *want != digest
        {
            return Err(format!(
                "{url}: checksum mismatch: expected sha256:{want}, the download is \
                 sha256:{digest}"
            ));
        }
        let name = parsed
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("")
            .to_string();
        all.update(format!("{url}\0{digest}\0{mtime:?}\0").as_bytes());
        files.push(RemoteFile {
            url: url.clone(),
            name,
            path,
            mtime,
        });
    }
    Ok((
        staging,
        files,
        format!("sha256:{}", hex::encode(all.finalize())),
    ))
}

/// `WORKDIR`: the config's working directory, and the directory made when the image lacks it.
async fn workdir_step(
    store: &Arc<Store>,
    cur: Option<ImageRecord>,
    step: Step,
    key: &str,
    root: &Path,
) -> Result<ImageRecord, String> {
    let (st, key, root) = (store.clone(), key.to_string(), root.to_path_buf());
    blocking(move || {
        let config = config_of(&st, cur.as_ref());
        let w = step.words.first().cloned().unwrap_or_default();
        let path = meta::absolute(&w, &meta::workdir(&config));
        let target = Rootfs::of(&st, cur.as_ref());
        if target.is_dir(&path) || path == "/" {
            return derive_step(&st, cur.as_ref(), &key, &step.text, None, &[], |c| {
                meta::apply(c, &step, false);
            });
        }
        let staging =
            Staging::new(&root).map_err(|e| format!("a directory to stage the layer: {e}"))?;
        let mut dir = staging.0.clone();
        let mut inside = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir = dir.join(part);
            inside = format!("{inside}/{part}");
            std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            if let Some(f) = target.lookup(&inside, false).filter(|f| f.meta.is_dir()) {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                let _ = std::fs::set_permissions(
                    &dir,
                    std::fs::Permissions::from_mode(f.meta.mode() & 0o7777),
                );
                let _ = std::os::unix::fs::lchown(&dir, Some(f.meta.uid()), Some(f.meta.gid()));
            }
        }
        derive_step(
            &st,
            cur.as_ref(),
            &key,
            &step.text,
            Some(&staging.0),
            &[],
            |c| {
                meta::apply(c, &step, false);
            },
        )
    })
    .await
}

/// At daemon start: the containers of `RUN` steps of builds a previous daemon did not finish
/// (killed and removed) and the staging and context directories (removed).
pub async fn cleanup(containers: &Arc<Containers>, root: &Path) {
    if let Ok(all) = containers.list().await {
        for c in all
            .iter()
            .filter(|c| c.meta.labels.contains_key(BUILD_LABEL))
        {
            if let Err(e) = containers.remove(&c.meta.id, true, true).await {
                tracing::warn!(id = %c.meta.id, error = %e, "remove an unfinished build's container");
            }
        }
    }
    let root = root.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        for sub in ["tmp", "contexts"] {
            let _ = std::fs::remove_dir_all(root.join("build").join(sub));
        }
    })
    .await;
}

/// `builder prune`: every cache entry and the intermediate images no container uses.
pub fn prune(root: &Path) -> Result<BuildPruned, String> {
    let store = Store::open(root).map_err(|e| format!("open the image store: {e}"))?;
    let mut out = BuildPruned::default();
    let dir = cache_dir(root);
    if let Ok(read) = std::fs::read_dir(&dir) {
        for e in read.flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                out.entries += 1;
            }
        }
    }
    let images = crate::image::manage::list(&store).map_err(|e| e.to_string())?;
    for image in images.iter().filter(|i| is_intermediate(&i.name)) {
        match crate::image::manage::remove(&store, &image.name, false) {
            Ok(removed) => {
                out.images += 1;
                out.reclaimed += removed.reclaimed;
            }
            Err(e) => tracing::info!(image = %image.name, error = %e, "builder prune: kept"),
        }
    }
    let _ = std::fs::remove_dir_all(root.join("build").join("tmp"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::http_date;

    #[test]
    fn last_modified_dates() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(http_date(""), None);
    }
}
