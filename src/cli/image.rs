//! `flotilla image …` (and Docker's top-level aliases `pull`, `push`, `images`, `rmi`, `tag`):
//! pull with per-layer progress, push, ls, inspect, rm, prune and tag. Until the daemon exists
//! (the engine-daemon issue) these commands run in-process against the data root (`--data-root`)
//! with the daemon configuration file (`--config`) and the credentials of Docker's config file;
//! then they become API calls and keep this output.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{EngineArgs, human, out};
use crate::engine::config::DaemonConfig;
use crate::image::credentials;
use crate::image::manage::{self, Removed};
use crate::image::pull::{self, Progress, PullError, PullEvent, PullOptions};
use crate::image::push::{self, PushOptions};
use crate::image::record::{self, ImageRecord, Platform, RecordError};
use crate::image::reference::Reference;
use crate::image::registry::{self, RegistryOptions};
use crate::image::store::{Digest, Store};

// save / load / import (tarballs): their own room, src/cli/image/archive.rs.
mod archive;

/// `flotilla image`.
#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// List images
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show images in detail (JSON)
    Inspect(InspectArgs),
    /// Remove images
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Give an image another name
    Tag(TagArgs),
    // --- tarballs (src/cli/image/archive.rs) ---
    /// Write images to a tar archive (docker-archive and OCI layout)
    Save(archive::SaveArgs),
    /// Load images from a tar archive (docker-archive or OCI layout, gzipped or not)
    Load(archive::LoadArgs),
    /// Make a one-layer image from a rootfs tarball
    Import(archive::ImportArgs),
}

#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    /// The image (`redis`, `redis:7`, `host:5000/app@sha256:…`)
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The platform to pull from a multi-platform image (`os/arch[/variant]`)
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Print only the image name when done
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    /// The image, named with the registry it goes to (`host:5000/app:1`)
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Print only the manifest digest when done
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LsFormat {
    #[default]
    Table,
    /// One JSON object per line, with Docker's field names
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct LsArgs {
    /// Only images of this repository (`busybox`, `host:5000/app`, or with `:tag`)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
    /// Print only the image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = LsFormat::Table)]
    pub format: LsFormat,
    /// Show full image ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Show the manifest digests
    #[arg(long)]
    pub digests: bool,
    /// Accepted for Docker compatibility (there are no intermediate images)
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Images, by name or id
    #[arg(value_name = "REF", required = true)]
    pub references: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RmArgs {
    /// Images, by name or id
    #[arg(value_name = "REF", required = true)]
    pub references: Vec<String>,
    /// Remove an image used by containers (it only loses its name), or every name of an id (`-f`
    /// after the command, as with Docker)
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation (flotilla never asks; accepted for Docker compatibility, also
    /// as `-f` after the command)
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TagArgs {
    /// The image, by name or id
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new name (`name[:tag]`)
    #[arg(value_name = "TARGET")]
    pub target: String,
}

/// Runs `flotilla image …`.
pub fn run(engine: &EngineArgs, command: &ImageCommand) -> Result<(), String> {
    match command {
        ImageCommand::Pull(args) => pull(engine, args),
        ImageCommand::Push(args) => push(engine, args),
        ImageCommand::Ls(args) => ls(engine, args),
        ImageCommand::Inspect(args) => inspect(engine, args),
        ImageCommand::Rm(args) => rm(engine, args),
        ImageCommand::Prune(args) => prune(engine, args),
        ImageCommand::Tag(args) => tag(engine, args),
        ImageCommand::Save(args) => archive::save(engine, args),
        ImageCommand::Load(args) => archive::load(engine, args),
        ImageCommand::Import(args) => archive::import(engine, args),
    }
}

fn open_store(engine: &EngineArgs) -> Result<Store, String> {
    Store::open(&engine.data_root).map_err(|e| {
        format!(
            "error: open the image store under {}: {e}",
            engine.data_root.display()
        )
    })
}

/// How to reach the registry of `reference`: the daemon config, and the Docker config's
/// credentials for that registry.
fn registry_options(engine: &EngineArgs, reference: &Reference) -> Result<RegistryOptions, String> {
    let config = DaemonConfig::load(engine.config.as_deref()).map_err(|e| format!("error: {e}"))?;
    let mut options = config.registry_options();
    if let Ok(path) = credentials::docker_config_path() {
        options.auth = registry::docker_config_auth(&path, &reference.registry)
            .map_err(|e| format!("error: {e}"))?;
    }
    Ok(options)
}

fn parse_reference(text: &str) -> Result<Reference, String> {
    Reference::parse(text).map_err(|e| format!("error: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("error: start the async runtime: {e}"))
}

fn write(text: &str) -> Result<(), String> {
    out(text).map_err(|e| format!("error: cannot write output: {e}"))
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts
                .get(2)
                .map(|v| v.to_string())
                .filter(|v| !v.is_empty()),
        }),
        _ => Err(format!(
            "error: invalid platform {text:?}: want os/arch or os/arch/variant (linux/amd64)"
        )),
    }
}

// --- pull ------------------------------------------------------------------------------------

/// The 12 hex digits `docker pull` names a layer by.
fn short(digest: &Digest) -> String {
    digest.hex().chars().take(12).collect()
}

/// Per-layer progress: bars updated in place on a terminal, one line per step otherwise.
enum Display {
    Quiet,
    Lines { tag: String, repository: String },
    Bars(Arc<Bars>),
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    /// Layers being unpacked (a layer fetched now unpacks while it downloads).
    extracting: Mutex<HashSet<Digest>>,
    header: String,
}

impl Bars {
    fn bar(&self, blob: &Digest) -> Option<ProgressBar> {
        let mut bars = self.bars.lock().ok()?;
        let bar = bars.entry(blob.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(Self::text_style());
            bar.set_prefix(short(blob));
            bar
        });
        Some(bar.clone())
    }

    fn text_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix}: {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn download_style() -> ProgressStyle {
        // Docker's units: `12.3MB/45.6MB  35.2MB/s`.
        ProgressStyle::with_template("{prefix}: Downloading  {transfer}  {speed}")
            .map(|style| {
                style
                    .with_key(
                        "transfer",
                        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let total = state.len().unwrap_or(0);
                            let _ =
                                write!(w, "{}/{}", human::size(state.pos()), human::size(total));
                        },
                    )
                    .with_key(
                        "speed",
                        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{}/s", human::size(state.per_sec() as u64));
                        },
                    )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn event(&self, event: &PullEvent) {
        match event {
            PullEvent::Resolved { .. } => {
                let _ = self.multi.println(&self.header);
            }
            PullEvent::LayerExists { blob } => {
                if let Some(bar) = self.bar(blob) {
                    bar.finish_with_message("Already exists");
                }
            }
            PullEvent::Downloading {
                blob,
                received,
                total,
            } => {
                if let Some(bar) = self.bar(blob) {
                    if bar.length() != Some(*total) {
                        bar.set_style(Self::download_style());
                        bar.set_length(*total);
                    }
                    bar.set_position(*received);
                }
            }
            PullEvent::Downloaded { blob } => {
                let extracting = self
                    .extracting
                    .lock()
                    .map(|e| e.contains(blob))
                    .unwrap_or(false);
                if let Some(bar) = self.bar(blob) {
                    bar.set_style(Self::text_style());
                    // The tail of the unpack (and its sync) is what is left.
                    bar.set_message(if extracting {
                        "Extracting"
                    } else {
                        "Download complete"
                    });
                }
            }
            PullEvent::Unpacking { blob } => {
                if let Ok(mut extracting) = self.extracting.lock() {
                    extracting.insert(blob.clone());
                }
                // While the bytes still arrive, the download bar stays.
                if let Some(bar) = self.bar(blob)
                    && bar.length().unwrap_or(0) == 0
                {
                    bar.set_style(Self::text_style());
                    bar.set_message("Extracting");
                }
            }
            PullEvent::Unpacked { blob } => {
                if let Some(bar) = self.bar(blob) {
                    bar.finish_with_message("Pull complete");
                }
            }
        }
    }
}

impl Display {
    fn new(quiet: bool, reference: &Reference) -> Display {
        let tag = reference.tag_or_digest().to_string();
        let repository = reference.familiar_name();
        if quiet {
            Display::Quiet
        } else if std::io::stdout().is_terminal() {
            Display::Bars(Arc::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: Mutex::new(HashMap::new()),
                extracting: Mutex::new(HashSet::new()),
                header: format!("{tag}: Pulling from {repository}"),
            }))
        } else {
            Display::Lines { tag, repository }
        }
    }

    /// The progress receiver; events before `Resolved` (the config blob) are not shown, as
    /// `docker pull` shows layers only.
    fn progress(&self) -> Option<Progress> {
        let resolved = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let layers_only = move |event: &PullEvent| {
            if matches!(event, PullEvent::Resolved { .. }) {
                resolved.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            resolved.load(std::sync::atomic::Ordering::SeqCst)
        };
        match self {
            Display::Quiet => None,
            Display::Lines { tag, repository } => {
                let header = format!("{tag}: Pulling from {repository}\n");
                Some(Progress(Arc::new(move |event: &PullEvent| {
                    if !layers_only(event) {
                        return;
                    }
                    let line = match event {
                        PullEvent::Resolved { .. } => header.clone(),
                        PullEvent::LayerExists { blob } => {
                            format!("{}: already exists\n", short(blob))
                        }
                        PullEvent::Downloaded { blob } => {
                            format!("{}: download complete\n", short(blob))
                        }
                        PullEvent::Unpacked { blob } => {
                            format!("{}: pull complete\n", short(blob))
                        }
                        PullEvent::Downloading { .. } | PullEvent::Unpacking { .. } => {
                            return;
                        }
                    };
                    let _ = out(&line);
                })))
            }
            Display::Bars(bars) => {
                let bars = bars.clone();
                Some(Progress(Arc::new(move |event: &PullEvent| {
                    if layers_only(event) {
                        bars.event(event);
                    }
                })))
            }
        }
    }

    fn finish(&self) {
        if let Display::Bars(bars) = self
            && let Ok(bars) = bars.bars.lock()
        {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

/// The exit code of a pull stopped by Ctrl-C (SIGINT): 128 + 2, as a shell reports it.
const INTERRUPTED: i32 = 130;

fn pull(engine: &EngineArgs, args: &PullArgs) -> Result<(), String> {
    let reference = parse_reference(&args.reference)?;
    let mut options = PullOptions {
        registry: registry_options(engine, &reference)?,
        ..PullOptions::default()
    };
    if let Some(platform) = &args.platform {
        options.platform = parse_platform(platform)?;
    }
    let store = open_store(engine)?;
    let name = reference.to_string();
    let before = record::load(&store, &name).ok();
    let display = Display::new(args.quiet, &reference);
    options.progress = display.progress();
    // Ctrl-C stops the pull cleanly: partial blobs and half-unpacked layers are deleted,
    // complete blobs and layers stay, so the next pull resumes from them; the process then
    // exits with 130 (128 + SIGINT, what a shell reports for a Ctrl-C'd `docker pull`) after
    // one line on standard error. A second Ctrl-C ends the process at once (also 130).
    let cancel = pull::Cancel::new();
    options.cancel = Some(cancel.clone());
    let result = runtime()?.block_on(async {
        // Registered before the pull starts, so an early Ctrl-C is not lost.
        let mut interrupts =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| format!("watch for Ctrl-C: {e}"))?;
        let watcher = tokio::spawn(async move {
            if interrupts.recv().await.is_some() {
                cancel.cancel();
                if interrupts.recv().await.is_some() {
                    std::process::exit(INTERRUPTED);
                }
            }
        });
        let _lock = manage::StoreLock::shared(&store).map_err(|e| e.to_string())?;
        let r = pull::pull(&store, &reference, &options).await;
        watcher.abort();
        Ok::<_, String>(r)
    });
    // The runtime is gone: its blocking writers and unpackers have finished and cleaned up.
    display.finish();
    let report = match result {
        Ok(Ok(report)) => report,
        Ok(Err(e))
            if matches!(e, PullError::Cancelled { .. })
                || options.cancel.as_ref().is_some_and(|c| c.is_cancelled()) =>
        {
            eprintln!("pull {}: cancelled", args.reference);
            std::process::exit(INTERRUPTED);
        }
        Ok(Err(e)) => return Err(format!("error: pull {}: {e}", args.reference)),
        Err(e) => return Err(format!("error: pull {}: {e}", args.reference)),
    };
    if args.quiet {
        return write(&format!("{name}\n"));
    }
    let up_to_date = before.is_some_and(|b| b.manifest_digest == report.record.manifest_digest);
    let status = if up_to_date {
        "Image is up to date for"
    } else {
        "Downloaded newer image for"
    };
    write(&format!(
        "Digest: {}\nStatus: {status} {}\n{name}\n",
        report.record.manifest_digest,
        reference.familiar()
    ))
}

// --- push ------------------------------------------------------------------------------------

fn push(engine: &EngineArgs, args: &PushArgs) -> Result<(), String> {
    let reference = parse_reference(&args.reference)?;
    let failed = |e: String| format!("error: push {}: {e}", args.reference);
    let options = PushOptions {
        registry: registry_options(engine, &reference)?,
        ..PushOptions::default()
    };
    let store = open_store(engine)?;
    let image = record::load(&store, &reference.to_string()).map_err(|e| failed(e.to_string()))?;
    if !args.quiet {
        write(&format!(
            "The push refers to repository [{}]\n",
            reference.name()
        ))?;
    }
    let report = runtime()?
        .block_on(push::push_record(&store, &image, &reference, &options))
        .map_err(|e| failed(e.to_string()))?;
    if args.quiet {
        return write(&format!("{}\n", report.manifest_digest));
    }
    let size = std::fs::metadata(store.blob_path(&report.manifest_digest))
        .map(|m| m.len())
        .unwrap_or(0);
    write(&format!(
        "pushed {} blob(s) ({}), {} already present\n{}: digest: {} size: {size}\n",
        report.pushed_blobs,
        human::size(report.pushed_bytes),
        report.skipped_blobs,
        reference.tag_or_digest(),
        report.manifest_digest,
    ))
}

// --- ls --------------------------------------------------------------------------------------

/// One row of `image ls`.
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: String,
    created: Option<i64>,
    size: u64,
}

fn rows(store: &Store, images: &[ImageRecord], no_trunc: bool) -> Vec<Row> {
    let mut rows: Vec<Row> = images
        .iter()
        .map(|image| {
            let reference = manage::reference_of(image);
            Row {
                repository: reference
                    .as_ref()
                    .map_or_else(|| image.name.clone(), Reference::familiar_name),
                tag: reference
                    .as_ref()
                    .and_then(|r| r.tag.clone())
                    .unwrap_or_else(|| "<none>".to_string()),
                id: if no_trunc {
                    image.config_digest.to_string()
                } else {
                    manage::short_id(image)
                },
                digest: image.manifest_digest.to_string(),
                created: image.created.as_deref().and_then(human::parse_rfc3339),
                size: manage::image_size(store, image),
            }
        })
        .collect();
    // Newest first, like Docker; then by name.
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    rows
}

/// Whether `image` is selected by `docker images REPOSITORY[:TAG]`.
fn matches_filter(image: &ImageRecord, filter: &str) -> bool {
    let Some(reference) = manage::reference_of(image) else {
        return false;
    };
    let (repository, tag) = match filter.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (filter, None),
    };
    let Ok(wanted) = Reference::parse(repository) else {
        return false;
    };
    wanted.name() == reference.name() && tag.is_none_or(|t| reference.tag.as_deref() == Some(t))
}

fn ls(engine: &EngineArgs, args: &LsArgs) -> Result<(), String> {
    let store = open_store(engine)?;
    let mut images = manage::list(&store).map_err(|e| format!("error: list images: {e}"))?;
    if let Some(filter) = &args.repository {
        images.retain(|image| matches_filter(image, filter));
    }
    let rows = rows(&store, &images, args.no_trunc);
    let now = human::now();
    let created = |row: &Row| {
        row.created
            .map_or_else(|| "N/A".to_string(), |t| human::ago(t, now))
    };
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        let mut text = String::new();
        for row in &rows {
            if seen.insert(row.id.clone()) {
                text.push_str(&row.id);
                text.push('\n');
            }
        }
        return write(&text);
    }
    match args.format {
        LsFormat::Json => {
            let mut text = String::new();
            for row in &rows {
                let value = serde_json::json!({
                    "Containers": "N/A",
                    "CreatedAt": row.created.map_or_else(String::new, human::utc),
                    "CreatedSince": created(row),
                    "Digest": row.digest,
                    "ID": row.id,
                    "Repository": row.repository,
                    "Tag": row.tag,
                    "Size": human::size(row.size),
                    "VirtualSize": human::size(row.size),
                });
                text.push_str(&value.to_string());
                text.push('\n');
            }
            write(&text)
        }
        LsFormat::Table => {
            let mut header = vec!["REPOSITORY", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    let mut cells = vec![row.repository.clone(), row.tag.clone()];
                    if args.digests {
                        cells.push(row.digest.clone());
                    }
                    cells.extend([row.id.clone(), created(row), human::size(row.size)]);
                    cells
                })
                .collect();
            write(&human::table(&header, &table))
        }
    }
}

// --- inspect ---------------------------------------------------------------------------------

/// Docker's `image inspect` object for `image`; `all` gives its other names.
fn inspect_json(store: &Store, image: &ImageRecord, all: &[ImageRecord]) -> serde_json::Value {
    let same: Vec<&ImageRecord> = all
        .iter()
        .filter(|other| other.config_digest == image.config_digest)
        .collect();
    let mut repo_tags = Vec::new();
    let mut repo_digests = Vec::new();
    for other in same.iter().copied().chain(std::iter::once(image)) {
        let Some(reference) = manage::reference_of(other) else {
            continue;
        };
        if reference.tag.is_some() {
            let mut tagged = reference.clone();
            tagged.digest = None;
            let text = tagged.familiar();
            if !repo_tags.contains(&text) {
                repo_tags.push(text);
            }
        }
        let digest = format!("{}@{}", reference.familiar_name(), other.manifest_digest);
        if !repo_digests.contains(&digest) {
            repo_digests.push(digest);
        }
    }
    let mut value = serde_json::json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": image.created.clone().unwrap_or_default(),
        "Architecture": image.platform.architecture,
        "Os": image.platform.os,
        "Config": image.config,
        "RootFS": {
            "Type": "layers",
            "Layers": image.diff_ids(),
        },
        "Size": manage::image_size(store, image),
        "Descriptor": {
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.to_string(),
            "size": std::fs::metadata(store.blob_path(&image.manifest_digest))
                .map(|m| m.len())
                .unwrap_or(0),
        },
    });
    if let (Some(variant), Some(object)) = (&image.platform.variant, value.as_object_mut()) {
        object.insert("Variant".to_string(), serde_json::json!(variant));
    }
    value
}

fn inspect(engine: &EngineArgs, args: &InspectArgs) -> Result<(), String> {
    let store = open_store(engine)?;
    let all = manage::list(&store).map_err(|e| format!("error: list images: {e}"))?;
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for arg in &args.references {
        match manage::find(&store, arg) {
            Ok(found) => {
                if let Some(image) = found.records.first() {
                    values.push(inspect_json(&store, image, &all));
                }
            }
            Err(manage::ManageError::NotFound { .. }) => {
                errors.push(format!("error: no such image: {arg}"));
            }
            Err(e) => errors.push(format!("error: inspect {arg}: {e}")),
        }
    }
    let text = serde_json::to_string_pretty(&values)
        .map_err(|e| format!("error: render the inspection: {e}"))?;
    write(&format!("{text}\n"))?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

// --- rm, prune, tag --------------------------------------------------------------------------

fn familiar(name: &str) -> String {
    Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar())
}

fn removed_lines(removed: &Removed) -> String {
    let mut text = String::new();
    for name in &removed.untagged {
        text.push_str(&format!("Untagged: {}\n", familiar(name)));
    }
    for id in &removed.deleted {
        text.push_str(&format!("Deleted: {id}\n"));
    }
    text
}

fn rm(engine: &EngineArgs, args: &RmArgs) -> Result<(), String> {
    let store = open_store(engine)?;
    let mut errors = Vec::new();
    for arg in &args.references {
        match manage::remove(&store, arg, args.force) {
            Ok(removed) => write(&removed_lines(&removed))?,
            Err(manage::ManageError::NotFound { .. }) => {
                errors.push(format!("error: remove {arg}: no such image"));
            }
            Err(e) => errors.push(format!("error: remove {arg}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

fn prune(engine: &EngineArgs, args: &PruneArgs) -> Result<(), String> {
    let store = open_store(engine)?;
    let removed = manage::prune(&store, args.all).map_err(|e| format!("error: prune: {e}"))?;
    let mut text = String::new();
    if !removed.untagged.is_empty() || !removed.deleted.is_empty() {
        text.push_str("Deleted Images:\n");
        text.push_str(&removed_lines(&removed));
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human::size(removed.reclaimed)
    ));
    write(&text)
}

fn tag(engine: &EngineArgs, args: &TagArgs) -> Result<(), String> {
    let target = parse_reference(&args.target)?;
    let store = open_store(engine)?;
    manage::tag(&store, &args.source, &target).map_err(|e| match e {
        manage::ManageError::NotFound { .. }
        | manage::ManageError::Record(RecordError::NotFound { .. }) => {
            format!("error: tag {}: no such image", args.source)
        }
        e => format!("error: tag {} {}: {e}", args.source, args.target),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        crate::cli::flags::docker_short_flags(args.iter().map(std::ffi::OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn docker_short_flags_after_image_commands() {
        assert_eq!(
            rewrite(&["flotilla", "image", "rm", "-f", "x"]),
            ["flotilla", "image", "rm", "--force", "x"]
        );
        assert_eq!(
            rewrite(&["flotilla", "--data-root", "/d", "rmi", "x", "-f"]),
            ["flotilla", "--data-root", "/d", "rmi", "x", "--force"]
        );
        assert_eq!(
            rewrite(&["flotilla", "-p", "x", "login", "-u", "u", "-p", "pw", "h"]),
            [
                "flotilla",
                "-p",
                "x",
                "login",
                "-u",
                "u",
                "--password",
                "pw",
                "h"
            ]
        );
        // Elsewhere -f stays the stack file.
        let config = ["flotilla", "-f", "a.yaml", "config", "-f", "b.yaml"];
        assert_eq!(rewrite(&config), config);
        let tag = ["flotilla", "image", "tag", "-f", "a", "b"];
        assert_eq!(rewrite(&tag), tag);
        let after = ["flotilla", "image", "rm", "--", "-f"];
        assert_eq!(rewrite(&after), after);
    }

    #[test]
    fn platforms() {
        assert_eq!(
            parse_platform("linux/amd64").unwrap(),
            Platform::linux_amd64()
        );
        let arm = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("/amd64").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
    }
}
