//! `flotilla image …` (and Docker's top-level aliases `pull`, `push`, `images`, `rmi`, `tag`):
//! pull with per-layer progress, push, ls, inspect, rm, prune, tag and history, every one a
//! client of the daemon's API ([`crate::api::client`]; a daemon is started on the default socket
//! when none answers). Registry credentials are the client's: read from this user's Docker
//! config (credential helpers included) and sent as `X-Registry-Auth`; the daemon's config
//! (registries, mirrors, insecure) is the daemon's. Ctrl-C of a pull or push drops the
//! connection, which cancels the daemon's work, and exits 130.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::system::{HostArgs, engine_client};
use super::{EngineArgs, human, out};
use crate::api::client::{Client, ClientError, block_on};
use crate::api::types::{
    ErrorCode, Image, ImagePull, ImageRemoved, PullProgress, PushProgress, RegistryAuth,
};
use crate::image::credentials;
use crate::image::pull::{Progress, PullEvent};
use crate::image::record::Platform;
use crate::image::reference::Reference;
use crate::image::registry;
use crate::image::store::Digest;

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
    /// Show the steps that made an image
    History(HistoryArgs),
    /// Build an image from a Dockerfile (for now: check it and show the plan)
    Build(super::build::ImageBuildArgs),
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

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// The image, by name or id
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Do not shorten ids and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// Print only the image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = LsFormat::Table)]
    pub format: LsFormat,
}

/// Runs `flotilla image …` through the daemon at `host` (or the default one).
pub fn run(engine: &EngineArgs, host: &HostArgs, command: &ImageCommand) -> Result<(), String> {
    // Bad input caught here needs no daemon.
    match command {
        ImageCommand::Pull(args) => {
            parse_reference(&args.reference)?;
            if let Some(p) = &args.platform {
                parse_platform(p)?;
            }
        }
        ImageCommand::Push(args) => {
            parse_reference(&args.reference)?;
        }
        ImageCommand::Tag(args) => {
            parse_reference(&args.target)?;
        }
        // Dispatched to cli/build.rs before this (it needs the global --progress).
        ImageCommand::Build(_) => {
            return Err("error: image build: internal dispatch error".to_string());
        }
        _ => {}
    }
    let client = engine_client(engine, host).map_err(|e| format!("error: {e}"))?;
    match command {
        ImageCommand::Pull(args) => pull(&client, args),
        ImageCommand::Push(args) => push(&client, args),
        ImageCommand::Ls(args) => ls(&client, args),
        ImageCommand::Inspect(args) => inspect(&client, args),
        ImageCommand::Rm(args) => rm(&client, args),
        ImageCommand::Prune(args) => prune(&client, args),
        ImageCommand::Tag(args) => tag(&client, args),
        ImageCommand::History(args) => history(&client, args),
        ImageCommand::Build(_) => Ok(()),
        ImageCommand::Save(args) => archive::save(&client, args),
        ImageCommand::Load(args) => archive::load(&client, args),
        ImageCommand::Import(args) => archive::import(&client, args),
    }
}

fn parse_reference(text: &str) -> Result<Reference, String> {
    Reference::parse(text).map_err(|e| format!("error: {e}"))
}

/// Runs `work` on the CLI's runtime until it ends (`Some`) or Ctrl-C (SIGINT) comes (`None`:
/// `work` is dropped, and with it its connection to the daemon, which cancels the operation).
fn interruptible<F: std::future::Future>(work: F) -> Result<Option<F::Output>, String> {
    block_on(async {
        // Registered before the work starts, so an early Ctrl-C is not lost.
        let mut interrupts =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| format!("error: watch for Ctrl-C: {e}"))?;
        tokio::select! {
            r = work => Ok(Some(r)),
            _ = interrupts.recv() => Ok(None),
        }
    })
    .map_err(|e| format!("error: start the async runtime: {e}"))?
}

/// Runs one client call to its end.
fn call<F: std::future::Future>(work: F) -> Result<F::Output, String> {
    block_on(work).map_err(|e| format!("error: start the async runtime: {e}"))
}

/// This user's credentials for the registry of `reference` (Docker's config file and its
/// credential helpers), sent to the daemon with a pull or push.
pub(crate) fn registry_auth(reference: &Reference) -> Result<Option<RegistryAuth>, String> {
    let Ok(path) = credentials::docker_config_path() else {
        return Ok(None);
    };
    let auth = registry::docker_config_auth(&path, &reference.registry)
        .map_err(|e| format!("error: {e}"))?;
    Ok(auth.map(|(username, password)| RegistryAuth { username, password }))
}

/// Ends the process as a Ctrl-C'd `docker pull` does: one line on stderr, exit code 130.
fn interrupted(what: &str) -> ! {
    eprintln!("{what}: cancelled");
    std::process::exit(INTERRUPTED)
}

/// Whether the daemon said there is no such object.
fn is_not_found(e: &ClientError) -> bool {
    e.code() == Some(ErrorCode::NotFound)
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

/// The pull event a progress line of the daemon stands for.
fn event_of(p: &PullProgress) -> Option<PullEvent> {
    let digest = Digest::parse(p.id.as_deref()?).ok()?;
    Some(match p.status.as_str() {
        "resolved" => PullEvent::Resolved {
            manifest: digest,
            layers: p.total.unwrap_or(0) as usize,
        },
        "exists" => PullEvent::LayerExists { blob: digest },
        "downloading" => PullEvent::Downloading {
            blob: digest,
            received: p.current.unwrap_or(0),
            total: p.total.unwrap_or(0),
        },
        "downloaded" => PullEvent::Downloaded { blob: digest },
        "unpacking" => PullEvent::Unpacking { blob: digest },
        "unpacked" => PullEvent::Unpacked { blob: digest },
        _ => return None,
    })
}

fn pull(client: &Client, args: &PullArgs) -> Result<(), String> {
    let reference = parse_reference(&args.reference)?;
    let auth = registry_auth(&reference)?;
    let name = reference.to_string();
    let failed = |e: String| format!("error: pull {}: {e}", args.reference);
    let before = match call(client.inspect_image(&name))? {
        Ok(image) => Some(image.manifest_digest),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(failed(e.to_string())),
    };
    let display = Display::new(args.quiet, &reference);
    let progress = display.progress();
    let req = ImagePull {
        reference: name.clone(),
        platform: args.platform.clone(),
    };
    // Ctrl-C drops the connection: the daemon stops the pull, deletes partial blobs and
    // half-unpacked layers and keeps complete ones, so the next pull resumes from them; the
    // process exits with 130 (128 + SIGINT, what a shell reports for a Ctrl-C'd `docker pull`)
    // after one line on standard error.
    let result = interruptible(async {
        let mut stream = client.pull_image_with(&req, auth.as_ref()).await?;
        while let Some(line) = stream.next().await {
            let line = line?;
            match line.status.as_str() {
                "done" | "error" => return Ok(Some(line)),
                _ => {
                    if let (Some(Progress(f)), Some(event)) = (&progress, event_of(&line)) {
                        f(&event);
                    }
                }
            }
        }
        Ok::<_, ClientError>(None)
    })?;
    display.finish();
    let last = match result {
        None => interrupted(&format!("pull {}", args.reference)),
        Some(Err(e)) => return Err(failed(e.to_string())),
        Some(Ok(None)) => return Err(failed("the daemon ended the stream early".to_string())),
        Some(Ok(Some(last))) => last,
    };
    let Some(image) = last.image.filter(|_| last.status == "done") else {
        return Err(failed(last.message.unwrap_or_else(|| "failed".to_string())));
    };
    if args.quiet {
        return write(&format!("{name}\n"));
    }
    let up_to_date = before.is_some_and(|b| b == image.manifest_digest);
    let status = if up_to_date {
        "Image is up to date for"
    } else {
        "Downloaded newer image for"
    };
    write(&format!(
        "Digest: {}\nStatus: {status} {}\n{name}\n",
        image.manifest_digest,
        reference.familiar()
    ))
}

// --- push ------------------------------------------------------------------------------------

fn push(client: &Client, args: &PushArgs) -> Result<(), String> {
    let reference = parse_reference(&args.reference)?;
    let auth = registry_auth(&reference)?;
    let failed = |e: String| format!("error: push {}: {e}", args.reference);
    let name = reference.to_string();
    let quiet = args.quiet;
    let result = interruptible(async {
        let mut stream = client.push_image(&name, auth.as_ref()).await?;
        if !quiet {
            let _ = write(&format!(
                "The push refers to repository [{}]\n",
                reference.name()
            ));
        }
        while let Some(line) = stream.next().await {
            let line: PushProgress = line?;
            if matches!(line.status.as_str(), "done" | "error") {
                return Ok(Some(line));
            }
        }
        Ok::<_, ClientError>(None)
    })?;
    let last = match result {
        None => interrupted(&format!("push {}", args.reference)),
        Some(Err(e)) if is_not_found(&e) => return Err(failed("no such image".to_string())),
        Some(Err(e)) => return Err(failed(e.to_string())),
        Some(Ok(None)) => return Err(failed("the daemon ended the stream early".to_string())),
        Some(Ok(Some(last))) => last,
    };
    let Some(report) = last.pushed.filter(|_| last.status == "done") else {
        return Err(failed(last.message.unwrap_or_else(|| "failed".to_string())));
    };
    if args.quiet {
        return write(&format!("{}\n", report.manifest_digest));
    }
    write(&format!(
        "pushed {} blob(s) ({}), {} already present\n{}: digest: {} size: {}\n",
        report.pushed_blobs,
        human::size(report.pushed_bytes),
        report.skipped_blobs,
        reference.tag_or_digest(),
        report.manifest_digest,
        report.manifest_size,
    ))
}

// --- ls --------------------------------------------------------------------------------------

/// The 12 hex digits of an image id that `docker images` shows.
fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

/// One row of `image ls`.
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: String,
    created: Option<i64>,
    size: u64,
}

fn rows(images: &[Image], no_trunc: bool) -> Vec<Row> {
    let mut rows: Vec<Row> = images
        .iter()
        .map(|image| {
            let reference = Reference::parse(&image.name).ok();
            Row {
                repository: reference
                    .as_ref()
                    .map_or_else(|| image.name.clone(), Reference::familiar_name),
                tag: reference
                    .as_ref()
                    .and_then(|r| r.tag.clone())
                    .unwrap_or_else(|| "<none>".to_string()),
                id: if no_trunc {
                    image.id.clone()
                } else {
                    short_id(&image.id)
                },
                digest: image.manifest_digest.clone(),
                created: image.created.as_deref().and_then(human::parse_rfc3339),
                size: image.size,
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
fn matches_filter(image: &Image, filter: &str) -> bool {
    let Ok(reference) = Reference::parse(&image.name) else {
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

fn ls(client: &Client, args: &LsArgs) -> Result<(), String> {
    let mut images = call(client.list_images())?.map_err(|e| format!("error: list images: {e}"))?;
    if let Some(filter) = &args.repository {
        images.retain(|image| matches_filter(image, filter));
    }
    let rows = rows(&images, args.no_trunc);
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

/// Docker's `image inspect` object for `image` (inspected: with its config); `all` gives its
/// other names.
fn inspect_json(image: &Image, all: &[Image]) -> serde_json::Value {
    let mut repo_tags = Vec::new();
    let mut repo_digests = Vec::new();
    let same = all.iter().filter(|other| other.id == image.id);
    for other in same.chain(std::iter::once(image)) {
        let Ok(reference) = Reference::parse(&other.name) else {
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
    let mut platform = image.platform.splitn(3, '/');
    let os = platform.next().unwrap_or_default();
    let architecture = platform.next().unwrap_or_default();
    let variant = platform.next();
    let mut value = serde_json::json!({
        "Id": image.id,
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": image.created.clone().unwrap_or_default(),
        "Architecture": architecture,
        "Os": os,
        "Config": image.config.clone().unwrap_or_else(|| serde_json::json!({})),
        "RootFS": {
            "Type": "layers",
            "Layers": image.diff_ids,
        },
        "Size": image.size,
        "Descriptor": {
            "mediaType": image.manifest_media_type.clone().unwrap_or_default(),
            "digest": image.manifest_digest,
            "size": image.manifest_size.unwrap_or(0),
        },
    });
    if let (Some(variant), Some(object)) = (variant, value.as_object_mut()) {
        object.insert("Variant".to_string(), serde_json::json!(variant));
    }
    value
}

fn inspect(client: &Client, args: &InspectArgs) -> Result<(), String> {
    let (all, found) = call(async {
        let all = client.list_images().await;
        let mut found = Vec::new();
        for arg in &args.references {
            found.push((arg, client.inspect_image(arg).await));
        }
        (all, found)
    })?;
    let all = all.map_err(|e| format!("error: list images: {e}"))?;
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (arg, result) in found {
        match result {
            Ok(image) => values.push(inspect_json(&image, &all)),
            Err(e) if is_not_found(&e) => errors.push(format!("error: no such image: {arg}")),
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

// --- rm, prune, tag, history -----------------------------------------------------------------

fn familiar(name: &str) -> String {
    Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar())
}

fn removed_lines(removed: &ImageRemoved) -> String {
    let mut text = String::new();
    for name in &removed.untagged {
        text.push_str(&format!("Untagged: {}\n", familiar(name)));
    }
    for id in &removed.deleted {
        text.push_str(&format!("Deleted: {id}\n"));
    }
    text
}

fn rm(client: &Client, args: &RmArgs) -> Result<(), String> {
    let mut errors = Vec::new();
    for arg in &args.references {
        match call(client.remove_image(arg, args.force))? {
            Ok(removed) => write(&removed_lines(&removed))?,
            Err(e) if is_not_found(&e) => {
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

fn prune(client: &Client, args: &PruneArgs) -> Result<(), String> {
    let removed = call(client.prune_images(args.all))?.map_err(|e| format!("error: prune: {e}"))?;
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

fn tag(client: &Client, args: &TagArgs) -> Result<(), String> {
    call(client.tag_image(&args.source, &args.target))?.map_err(|e| {
        if is_not_found(&e) {
            format!("error: tag {}: no such image", args.source)
        } else {
            format!("error: tag {} {}: {e}", args.source, args.target)
        }
    })?;
    Ok(())
}

/// Docker's shortening of long cells: 45 characters, the last one `…`.
fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

fn history(client: &Client, args: &HistoryArgs) -> Result<(), String> {
    let steps = call(client.image_history(&args.reference))?.map_err(|e| {
        if is_not_found(&e) {
            format!("error: history {}: no such image", args.reference)
        } else {
            format!("error: history {}: {e}", args.reference)
        }
    })?;
    let id = |step: &crate::api::types::ImageHistory| match &step.id {
        Some(id) if args.no_trunc => id.clone(),
        Some(id) => short_id(id),
        None => "<missing>".to_string(),
    };
    if args.quiet {
        let text: String = steps.iter().map(|s| format!("{}\n", id(s))).collect();
        return write(&text);
    }
    let now = human::now();
    let created = |step: &crate::api::types::ImageHistory| {
        step.created
            .as_deref()
            .and_then(human::parse_rfc3339)
            .map_or_else(|| "N/A".to_string(), |t| human::ago(t, now))
    };
    let command = |step: &crate::api::types::ImageHistory| {
        let text = step.created_by.replace('\t', " ");
        if args.no_trunc {
            text
        } else {
            ellipsis(&text, 45)
        }
    };
    match args.format {
        LsFormat::Json => {
            let mut text = String::new();
            for step in &steps {
                let value = serde_json::json!({
                    "ID": id(step),
                    "CreatedAt": step.created.clone().unwrap_or_default(),
                    "CreatedSince": created(step),
                    "CreatedBy": command(step),
                    "Size": human::size(step.size),
                    "Comment": step.comment,
                });
                text.push_str(&value.to_string());
                text.push('\n');
            }
            write(&text)
        }
        LsFormat::Table => {
            let table: Vec<Vec<String>> = steps
                .iter()
                .map(|step| {
                    vec![
                        id(step),
                        created(step),
                        command(step),
                        human::size(step.size),
                        step.comment.clone(),
                    ]
                })
                .collect();
            write(&human::table(
                &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                &table,
            ))
        }
    }
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
