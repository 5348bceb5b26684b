//! `flotilla image build -t REF [-f Dockerfile] CONTEXT`, `flotilla build [SERVICE…]` (the
//! stack's `build:` sections) and `flotilla builder prune`. The Dockerfile is read and checked
//! here (located errors need no daemon), then sent with the options to `POST /v1/build`, and
//! the context directory follows as a tar stream with the `.dockerignore`d files left out (they
//! never leave the machine's disk). The daemon's progress lines are shown like BuildKit's plain
//! progress (`#3 [2/5] RUN …`, `#3 CACHED`, `#3 DONE 0.4s`) on stderr; `--progress quiet`
//! prints only the image id, `json` the raw lines. Ctrl-C drops the connection: the daemon
//! cancels the build (kills the running step) and the command exits 130.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use clap::{Args, Subcommand};

use super::compose::progress::Mode;
use super::system::{HostArgs, engine_client};
use super::{EngineArgs, ProjectArgs, out};
use crate::api::client::{Client, block_on};
use crate::api::types::{BuildOptions, BuildProgress};
use crate::image::build::cache::Context;
use crate::image::build::dockerfile::{self, BuildError};
use crate::image::build::ignore::Patterns;
use crate::image::build::stages::{self, Options};
use crate::image::reference::Reference;

/// What both commands take.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Set a build-time variable (NAME=VALUE, or NAME to take it from the environment)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// Do not use the cache when building
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull newer versions of the base images
    #[arg(long)]
    pub pull: bool,
    /// Print only the image id(s) (as --progress quiet)
    #[arg(short, long)]
    pub quiet: bool,
    // `--progress` is the global flag (auto, tty, plain, quiet, json).
}

/// `flotilla image build`.
#[derive(Args, Debug, Clone)]
pub struct ImageBuildArgs {
    /// Name (and tag) of the image, repeatable
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-f` works too)
    #[arg(long = "dockerfile", value_name = "FILE")]
    pub dockerfile: Option<PathBuf>,
    /// The stage to build (default: the last one)
    #[arg(long)]
    pub target: Option<String>,
    /// The platform to build for (os/arch[/variant]; default: this machine's)
    #[arg(long)]
    pub platform: Option<String>,
    /// Set metadata on the image (KEY=VALUE), repeatable
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The network of RUN steps: host (default) or none
    #[arg(long)]
    pub network: Option<String>,
    /// Size of the RUN steps' /dev/shm (like 128m; default 64m)
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Add a line to the RUN steps' /etc/hosts (HOST:IP), repeatable
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// The build context: a directory
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// `flotilla build [SERVICE…]`.
#[derive(Args, Debug, Clone)]
pub struct ServiceBuildArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The services to build (default: every service with a `build:` section)
    pub services: Vec<String>,
}

/// `flotilla builder …`.
#[derive(Args, Debug, Clone)]
pub struct BuilderArgs {
    #[command(subcommand)]
    pub command: BuilderCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BuilderCommand {
    /// Remove the build cache (its entries and intermediate images)
    Prune {
        /// Do not ask for confirmation (`-f` too)
        #[arg(long)]
        force: bool,
        /// Remove all of the cache (the only mode: accepted for Docker's habit)
        #[arg(short, long)]
        all: bool,
    },
}

/// One build to send.
struct Job {
    label: String,
    context: PathBuf,
    /// Where the Dockerfile was read (for messages).
    file: String,
    options: BuildOptions,
    /// What of the context the build reads (paths relative to it, with everything under
    /// them); `None`: all of it (`COPY . …`).
    needed: Option<Vec<String>>,
    /// The images the target's stages start from (their ONBUILD triggers may read the context).
    bases: Vec<String>,
}

pub fn image_build(
    engine: &EngineArgs,
    host: &HostArgs,
    mode: Option<Mode>,
    args: &ImageBuildArgs,
) -> Result<(), String> {
    for t in &args.tags {
        Reference::parse(t).map_err(|e| format!("error: invalid tag {t:?}: {e}"))?;
    }
    let context = args.context.clone();
    let dockerfile = match &args.dockerfile {
        Some(f) if f.is_relative() && !f.exists() => context.join(f),
        Some(f) => f.clone(),
        None => context.join("Dockerfile"),
    };
    let mut options = BuildOptions {
        target: args.target.clone(),
        tags: args.tags.clone(),
        labels: pairs(&args.labels, "--label")?,
        no_cache: args.common.no_cache,
        pull: args.common.pull,
        network: args.network.clone(),
        build_args: build_args(&args.common.build_args)?,
        extra_hosts: args.add_hosts.clone(),
        ..BuildOptions::default()
    };
    crate::engine::compose_build::check_extra_hosts(&options.extra_hosts)
        .map_err(|e| format!("error: --add-host: {e}"))?;
    if let Some(s) = &args.shm_size {
        let bytes = crate::spec::units::parse_bytes(s)
            .map_err(|e| format!("error: --shm-size {s:?}: {e}"))?;
        if bytes == 0 {
            return Err(format!("error: --shm-size {s:?}: must be more than 0"));
        }
        options.shm_size = Some(bytes);
    }
    if let Some(p) = &args.platform {
        options.platform = Some(check_platform(p)?);
    }
    let job = prepare(
        args.tags
            .first()
            .cloned()
            .unwrap_or_else(|| "(untagged)".to_string()),
        context,
        &dockerfile,
        None,
        options,
    )?;
    let mode = if args.common.quiet {
        Some(Mode::Quiet)
    } else {
        mode
    };
    let client = engine_client(engine, host).map_err(|e| format!("error: {e}"))?;
    let id = run(&client, &job, mode)?;
    if matches!(mode, Some(Mode::Quiet)) {
        out(&format!("{id}\n")).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn service_build(
    engine: &EngineArgs,
    host: &HostArgs,
    project: &ProjectArgs,
    args: &ServiceBuildArgs,
) -> Result<u8, String> {
    let loaded = super::compose::load_stack(project)?;
    let services = loaded
        .config
        .get("services")
        .and_then(|s| s.as_object())
        .cloned()
        .unwrap_or_default();
    for s in &args.services {
        if !services.contains_key(s) {
            return Err(format!("error: no such service: {s}"));
        }
    }
    let cli_args = build_args(&args.common.build_args)?;
    let mut jobs = Vec::new();
    for (name, svc) in &services {
        if !args.services.is_empty() && !args.services.contains(name) {
            continue;
        }
        let Some(b) = svc.get("build") else {
            if args.services.contains(name) {
                eprintln!("{name}: no build section, skipped");
            }
            continue;
        };
        let image = svc
            .get("image")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}-{name}", loaded.name));
        let mut job = service_job(&loaded.project_dir, name, &image, b)?;
        job.options.build_args.extend(cli_args.clone());
        job.options.no_cache |= args.common.no_cache;
        job.options.pull |= args.common.pull;
        jobs.push(job);
    }
    if jobs.is_empty() {
        out("no service has a build section: nothing to build\n").map_err(|e| e.to_string())?;
        return Ok(0);
    }
    let mode = if args.common.quiet {
        Some(Mode::Quiet)
    } else {
        project.progress
    };
    let client = engine_client(engine, host).map_err(|e| format!("error: {e}"))?;
    for job in &jobs {
        if !matches!(mode, Some(Mode::Quiet | Mode::Json)) {
            eprintln!("building {}", job.label);
        }
        let id = run(&client, job, mode)?;
        if matches!(mode, Some(Mode::Quiet)) {
            out(&format!("{id}\n")).map_err(|e| e.to_string())?;
        }
    }
    Ok(0)
}

/// The build of a service's `build:` section (canonical JSON), its image named `image`.
fn service_job(
    project_dir: &Path,
    service: &str,
    image: &str,
    b: &serde_json::Value,
) -> Result<Job, String> {
    let str_of = |k: &str| b.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let context = PathBuf::from(str_of("context").unwrap_or_else(|| ".".into()));
    let context = if context.is_relative() {
        project_dir.join(context)
    } else {
        context
    };
    let dockerfile = str_of("dockerfile").unwrap_or_else(|| "Dockerfile".into());
    let dockerfile = if Path::new(&dockerfile).is_relative() {
        context.join(dockerfile)
    } else {
        PathBuf::from(dockerfile)
    };
    let mut options = BuildOptions {
        target: str_of("target"),
        network: str_of("network").filter(|n| n != "default"),
        ..BuildOptions::default()
    };
    if let Some(a) = b.get("args").and_then(|a| a.as_object()) {
        for (k, v) in a {
            match v.as_str() {
                Some(v) => {
                    options.build_args.insert(k.clone(), v.to_string());
                }
                None => {
                    if let Ok(v) = std::env::var(k) {
                        options.build_args.insert(k.clone(), v);
                    }
                }
            }
        }
    }
    if let Some(l) = b.get("labels").and_then(|l| l.as_object()) {
        for (k, v) in l {
            if let Some(v) = v.as_str() {
                options.labels.insert(k.clone(), v.to_string());
            }
        }
    }
    options.no_cache = b.get("no_cache").and_then(|v| v.as_bool()) == Some(true);
    options.pull = b.get("pull").and_then(|v| v.as_bool()) == Some(true);
    crate::engine::compose_build::run_options(
        service,
        b.get("shm_size"),
        b.get("extra_hosts"),
        &mut options,
    )
    .map_err(|e| format!("error: {e}"))?;
    const KNOWN: &[&str] = &[
        "context",
        "dockerfile",
        "dockerfile_inline",
        "args",
        "target",
        "labels",
        "tags",
        "network",
        "no_cache",
        "pull",
        "shm_size",
        "extra_hosts",
    ];
    for k in b.as_object().into_iter().flat_map(|o| o.keys()) {
        if !KNOWN.contains(&k.as_str()) {
            eprintln!(
                "warning: service {service}: build.{k} is not supported by flotilla's builder: ignored"
            );
        }
    }
    options.tags = vec![image.to_string()];
    if let Some(t) = b.get("tags").and_then(|t| t.as_array()) {
        options
            .tags
            .extend(t.iter().filter_map(|v| v.as_str()).map(str::to_string));
    }
    for t in &options.tags {
        Reference::parse(t)
            .map_err(|e| format!("error: service {service}: invalid image tag {t:?}: {e}"))?;
    }
    prepare(
        format!("service {service}"),
        context,
        &dockerfile,
        str_of("dockerfile_inline"),
        options,
    )
}

/// Checks the context and the Dockerfile (parsed and planned here: located errors without a
/// daemon), and puts the Dockerfile's text into the options.
fn prepare(
    label: String,
    context: PathBuf,
    dockerfile: &Path,
    inline: Option<String>,
    mut options: BuildOptions,
) -> Result<Job, String> {
    let meta = std::fs::metadata(&context).map_err(|e| {
        format!(
            "error: build context {}: {}",
            context.display(),
            if e.kind() == std::io::ErrorKind::NotFound {
                "not found".to_string()
            } else {
                e.to_string()
            }
        )
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "error: build context {} is not a directory",
            context.display()
        ));
    }
    let (file, text) = match inline {
        Some(t) => ("dockerfile_inline".to_string(), t),
        None => {
            let text = std::fs::read_to_string(dockerfile).map_err(|e| {
                format!(
                    "error: cannot read the Dockerfile {}: {}",
                    dockerfile.display(),
                    if e.kind() == std::io::ErrorKind::NotFound {
                        "not found (hint: -f names another file)".to_string()
                    } else {
                        e.to_string()
                    }
                )
            })?;
            (dockerfile.display().to_string(), text)
        }
    };
    let df = dockerfile::parse(&file, &text).map_err(|e| format!("error: {e}"))?;
    let mut so = Options::for_host();
    so.build_args = options.build_args.clone();
    so.target = options.target.clone();
    if let Some(p) = &options.platform {
        so.platform = p.clone();
    }
    let plan = stages::plan(&df, &so).map_err(|e| format!("error: {e}"))?;
    let needed = check_sources(&plan, &context, &file)?;
    let bases = plan
        .order
        .iter()
        .filter_map(|&s| match &plan.stages[s].base {
            stages::Base::Image(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    options.dockerfile = Some(file.clone());
    options.dockerfile_inline = Some(text);
    Ok(Job {
        label,
        context,
        file,
        options,
        needed,
        bases,
    })
}

/// Every `COPY`/`ADD` source the target needs from the context must be there (not ignored,
/// not outside): a located error now rather than after the upload. What they match is all
/// that is sent (`None`: the whole context, for a source naming its root).
fn check_sources(
    plan: &stages::Plan,
    context: &Path,
    file: &str,
) -> Result<Option<Vec<String>>, String> {
    let mut ctx = Context::open(context).map_err(|e| format!("error: {e}"))?;
    let mut needed = Some(Vec::new());
    for &s in &plan.order {
        for step in &plan.stages[s].steps {
            let Some(copy) = step.copy.as_ref().filter(|c| c.from.is_none()) else {
                continue;
            };
            for source in &copy.sources {
                let remote = source.starts_with("http://")
                    || source.starts_with("https://")
                    || source.starts_with("git@");
                if source.starts_with("<<") || remote {
                    continue;
                }
                let matched = ctx.matches(source).map_err(|e| {
                    format!(
                        "error: {}",
                        BuildError::new(file, step.pos, format!("{} {e}", step.keyword))
                    )
                })?;
                for (rel, _) in matched {
                    if rel.is_empty() {
                        needed = None;
                    } else if let Some(n) = needed.as_mut() {
                        n.push(rel);
                    }
                }
            }
        }
    }
    Ok(needed)
}

/// Whether a base image's ONBUILD triggers may read the context (a `COPY`/`ADD` trigger), or
/// it is not here yet (pulled by the daemon, triggers unknown): then the whole context is sent.
async fn triggers_may_read_context(client: &Client, bases: &[String]) -> bool {
    for base in bases {
        let Ok(image) = client.inspect_image(base).await else {
            return true;
        };
        let triggers = image
            .config
            .as_ref()
            .and_then(|c| c.get("OnBuild"))
            .and_then(|t| t.as_array())
            .cloned()
            .unwrap_or_default();
        if triggers.iter().filter_map(|t| t.as_str()).any(|t| {
            let word = t.split_whitespace().next().unwrap_or("");
            word.eq_ignore_ascii_case("COPY") || word.eq_ignore_ascii_case("ADD")
        }) {
            return true;
        }
    }
    false
}

/// Whether `child` (a context path) is sent: it is one of `needed`, under one, or a directory
/// on the way to one; `.dockerignore` always goes (the daemon applies it again).
fn wanted(needed: Option<&[String]>, child: &str) -> bool {
    let Some(needed) = needed else {
        return true;
    };
    child == ".dockerignore"
        || needed.iter().any(|m| {
            m == child
                || child
                    .strip_prefix(m.as_str())
                    .is_some_and(|r| r.starts_with('/'))
                || m.strip_prefix(child).is_some_and(|r| r.starts_with('/'))
        })
}

/// Sends one build and shows its progress; the image id.
fn run(client: &Client, job: &Job, mode: Option<Mode>) -> Result<String, String> {
    let _ = &job.file;
    let work = async {
        let (tx, answer) = client
            .build_image(&job.options)
            .map_err(|e| format!("error: {e}"))?;
        let context = job.context.clone();
        let needed = match job.needed.clone() {
            Some(_) if triggers_may_read_context(client, &job.bases).await => None,
            n => n,
        };
        let sender = std::thread::spawn(move || send_context(&context, needed.as_deref(), tx));
        let mut stream = answer.await.map_err(|e| format!("error: {e}"))?;
        let mut render = Render::new(mode);
        let mut last = None;
        while let Some(item) = stream.next().await {
            let p = item.map_err(|e| format!("error: {e}"))?;
            render.show(&p);
            if p.kind == "done" || p.kind == "error" {
                last = Some(p);
                break;
            }
        }
        // The context is sent by now (the daemon reads it all before building).
        let sent = sender
            .join()
            .unwrap_or_else(|_| Err("the sender failed".into()));
        match last {
            Some(p) if p.kind == "done" => Ok(p.image.unwrap_or_default()),
            Some(p) => Err(format!(
                "error: {}: {}",
                job.label,
                p.message.unwrap_or_else(|| "the build failed".into())
            )),
            None => Err(match sent {
                Err(e) => format!("error: {}: sending the build context: {e}", job.label),
                Ok(()) => format!(
                    "error: {}: the daemon ended the build stream early",
                    job.label
                ),
            }),
        }
    };
    let r = block_on(async {
        let mut interrupts =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| format!("error: watch for Ctrl-C: {e}"))?;
        tokio::select! {
            r = work => r.map(Some),
            _ = interrupts.recv() => Ok(None),
        }
    })
    .map_err(|e| format!("error: start the async runtime: {e}"))??;
    match r {
        Some(id) => Ok(id),
        None => {
            eprintln!("build: cancelled");
            std::process::exit(130)
        }
    }
}

/// Progress lines as BuildKit's plain mode shows them.
struct Render {
    mode: Option<Mode>,
    started: HashMap<u32, Instant>,
    last: u32,
}

impl Render {
    fn new(mode: Option<Mode>) -> Self {
        Render {
            mode,
            started: HashMap::new(),
            last: 0,
        }
    }

    fn show(&mut self, p: &BuildProgress) {
        let mut err = std::io::stderr().lock();
        match self.mode {
            Some(Mode::Quiet) => {
                if p.kind == "error" {
                    let _ = writeln!(err, "{}", p.message.as_deref().unwrap_or(""));
                }
                return;
            }
            Some(Mode::Json) => {
                if let Ok(line) = serde_json::to_string(p) {
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                }
                return;
            }
            _ => {}
        }
        let n = p.step.unwrap_or(0);
        self.last = self.last.max(n);
        let name = p.name.as_deref().unwrap_or("");
        let _ = match p.kind.as_str() {
            "step" => {
                self.started.insert(n, Instant::now());
                writeln!(err, "#{n} {name}")
            }
            "cached" => writeln!(err, "#{n} CACHED"),
            "log" => {
                let t = self
                    .started
                    .get(&n)
                    .map(|s| s.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                writeln!(err, "#{n} {t:.3} {}", p.message.as_deref().unwrap_or(""))
            }
            "step_done" => writeln!(err, "#{n} DONE {:.1}s", p.seconds.unwrap_or(0.0)),
            "warning" => writeln!(err, "WARNING: {}", p.message.as_deref().unwrap_or("")),
            "error" => match p.step {
                Some(n) => writeln!(
                    err,
                    "#{n} ERROR: {}",
                    p.message
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
                None => Ok(()),
            },
            "done" => {
                let n = self.last + 1;
                let mut s = format!(
                    "#{n} exporting to image\n#{n} writing image {} done\n",
                    p.image.as_deref().unwrap_or("")
                );
                for t in &p.tags {
                    s.push_str(&format!("#{n} naming to {t} done\n"));
                }
                s.push_str(&format!("#{n} DONE\n"));
                write!(err, "{s}")
            }
            _ => Ok(()),
        };
    }
}

/// A `Write` that sends its bytes in chunks on the request body's channel.
struct ChannelWriter {
    tx: crate::api::client::images::BodySender,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the daemon stopped reading")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes the context as a tar to the body: every file, directory and symlink that
/// `.dockerignore` lets through and the build reads ([`wanted`]; directories excluded whole, or
/// not needed, are not even walked).
fn send_context(
    context: &Path,
    needed: Option<&[String]>,
    tx: crate::api::client::images::BodySender,
) -> Result<(), String> {
    let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(t) => Patterns::parse(&t),
        Err(_) => Patterns::default(),
    };
    let writer = ChannelWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
    };
    let mut tar = tar::Builder::new(writer);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let result = walk(context, "", &ignore, needed, &mut tar)
        .and_then(|()| tar.finish().map_err(|e| e.to_string()))
        .and_then(|()| {
            tar.get_mut()
                .flush()
                .map_err(|e| format!("send the context: {e}"))
        });
    if let Err(e) = &result {
        let _ = tx.blocking_send(Err(std::io::Error::other(e.clone())));
    }
    result
}

fn walk(
    root: &Path,
    rel: &str,
    ignore: &Patterns,
    needed: Option<&[String]>,
    tar: &mut tar::Builder<ChannelWriter>,
) -> Result<(), String> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut items: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .collect();
    items.sort_by_key(|e| e.file_name());
    for item in items {
        let name = item.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if !wanted(needed, &child) {
            continue;
        }
        let ignored = ignore.matches(&child);
        let path = item.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            if ignored && !ignore.has_exceptions() {
                continue;
            }
            if !ignored {
                tar.append_path_with_name(&path, &child)
                    .map_err(|e| format!("send {}: {e}", path.display()))?;
            }
            walk(root, &child, ignore, needed, tar)?;
            continue;
        }
        if ignored || !(ft.is_file() || ft.is_symlink()) {
            continue;
        }
        tar.append_path_with_name(&path, &child)
            .map_err(|e| format!("send {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `flotilla builder prune`.
pub fn builder(engine: &EngineArgs, host: &HostArgs, args: &BuilderArgs) -> Result<(), String> {
    match &args.command {
        BuilderCommand::Prune { force, all: _ } => {
            if !force
                && !super::network::confirm(
                    "WARNING! This will remove all the build cache (its intermediate images).",
                )
            {
                return Ok(());
            }
            let client = engine_client(engine, host).map_err(|e| format!("error: {e}"))?;
            let pruned = block_on(client.prune_build())
                .map_err(|e| format!("error: start the async runtime: {e}"))?
                .map_err(|e| format!("error: {e}"))?;
            out(&format!(
                "Deleted build cache entries: {}, intermediate images: {}\nTotal reclaimed space: {}\n",
                pruned.entries,
                pruned.images,
                super::human::size(pruned.reclaimed)
            ))
            .map_err(|e| e.to_string())
        }
    }
}

fn check_platform(p: &str) -> Result<String, String> {
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(p.to_string()),
        _ => Err(format!(
            "error: invalid platform {p:?}: expected os/arch[/variant], like linux/amd64"
        )),
    }
}

fn pairs(raw: &[String], flag: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => return Err(format!("error: invalid {flag} {a:?}: expected KEY=VALUE")),
        }
    }
    Ok(out)
}

/// `--build-arg` values: `NAME=VALUE`, or `NAME` taken from the environment (left out when the
/// environment does not have it, as Docker does).
fn build_args(raw: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some(("", _)) => {
                return Err(format!(
                    "error: invalid --build-arg {a:?}: expected NAME=VALUE"
                ));
            }
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn only_what_the_build_reads_is_sent() {
        let needed = vec!["app/src".to_string(), "a.txt".to_string()];
        let n = Some(needed.as_slice());
        for yes in [
            "app",
            "app/src",
            "app/src/main.rs",
            "a.txt",
            ".dockerignore",
        ] {
            assert!(wanted(n, yes), "{yes}");
        }
        for no in ["big.bin", "app/srcx", "app/other", "a.txt.bak", "b"] {
            assert!(!wanted(n, no), "{no}");
        }
        assert!(wanted(None, "big.bin"));
    }
}
