//! `flotilla image build -t REF [-f Dockerfile] CONTEXT` and `flotilla build [SERVICE…]` (the
//! stack's `build:` sections). For now both read and check everything a build reads — the
//! Dockerfile (located errors), the stage graph for the target, the build args, the context
//! with its `.dockerignore` (every COPY/ADD source must be there) — print the resolved plan with
//! each step's cache key, and then say that executing builds is not available yet (exit 1).
//! Nothing is sent to the daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{ProjectArgs, out};
use crate::image::build::cache::{self, Context};
use crate::image::build::dockerfile::{self, BuildError, Pos};
use crate::image::build::stages::{self, Base, Options, Plan, Source};
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

const NOT_YET: &str = "error: executing builds is not available yet (issue 9): the Dockerfile and context were checked and the plan above is what would run; nothing was built";

/// One build to check and show.
struct Request {
    label: String,
    context: PathBuf,
    dockerfile: PathBuf,
    inline: Option<String>,
    tags: Vec<String>,
    options: Options,
}

pub fn image_build(args: &ImageBuildArgs) -> Result<(), String> {
    for t in &args.tags {
        Reference::parse(t).map_err(|e| format!("error: invalid tag {t:?}: {e}"))?;
    }
    let context = args.context.clone();
    let dockerfile = match &args.dockerfile {
        Some(f) if f.is_relative() && !f.exists() => context.join(f),
        Some(f) => f.clone(),
        None => context.join("Dockerfile"),
    };
    let mut options = Options::for_host();
    options.target = args.target.clone();
    if let Some(p) = &args.platform {
        options.platform = check_platform(p)?;
    }
    options.build_args = build_args(&args.common.build_args)?;
    let req = Request {
        label: args
            .tags
            .first()
            .cloned()
            .unwrap_or_else(|| "(untagged)".to_string()),
        context,
        dockerfile,
        inline: None,
        tags: args.tags.clone(),
        options,
    };
    let text = show(&req)?;
    out(&text).map_err(|e| e.to_string())?;
    Err(NOT_YET.to_string())
}

pub fn service_build(project: &ProjectArgs, args: &ServiceBuildArgs) -> Result<u8, String> {
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
    let mut text = String::new();
    let mut count = 0;
    for (name, svc) in &services {
        if !args.services.is_empty() && !args.services.contains(name) {
            continue;
        }
        let Some(b) = svc.get("build") else {
            if args.services.contains(name) {
                text.push_str(&format!("{name}: no build section, skipped\n"));
            }
            continue;
        };
        let str_of = |k: &str| b.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let context = PathBuf::from(str_of("context").unwrap_or_else(|| ".".into()));
        let context = if context.is_relative() {
            loaded.project_dir.join(context)
        } else {
            context
        };
        let dockerfile = str_of("dockerfile").unwrap_or_else(|| "Dockerfile".into());
        let dockerfile = if Path::new(&dockerfile).is_relative() {
            context.join(dockerfile)
        } else {
            PathBuf::from(dockerfile)
        };
        let mut options = Options::for_host();
        options.target = str_of("target");
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
        options.build_args.extend(cli_args.clone());
        let image = svc
            .get("image")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}-{name}", loaded.name));
        let mut tags = vec![image];
        if let Some(t) = b.get("tags").and_then(|t| t.as_array()) {
            tags.extend(t.iter().filter_map(|v| v.as_str()).map(str::to_string));
        }
        let req = Request {
            label: format!("service {name}"),
            context,
            dockerfile,
            inline: str_of("dockerfile_inline"),
            tags,
            options,
        };
        text.push_str(&show(&req)?);
        count += 1;
    }
    if count == 0 {
        text.push_str("no service has a build section: nothing to build\n");
        out(&text).map_err(|e| e.to_string())?;
        return Ok(0);
    }
    out(&text).map_err(|e| e.to_string())?;
    Err(NOT_YET.to_string())
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

/// Checks one build and renders its plan.
fn show(req: &Request) -> Result<String, String> {
    let meta = std::fs::metadata(&req.context).map_err(|e| {
        format!(
            "error: build context {}: {}",
            req.context.display(),
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
            req.context.display()
        ));
    }
    let (name, text) = match &req.inline {
        Some(t) => ("dockerfile_inline".to_string(), t.clone()),
        None => {
            let text = std::fs::read_to_string(&req.dockerfile).map_err(|e| {
                format!(
                    "error: cannot read the Dockerfile {}: {}",
                    req.dockerfile.display(),
                    if e.kind() == std::io::ErrorKind::NotFound {
                        "not found (hint: -f names another file)".to_string()
                    } else {
                        e.to_string()
                    }
                )
            })?;
            (req.dockerfile.display().to_string(), text)
        }
    };
    let located = |e: BuildError| format!("error: {e}");
    let df = dockerfile::parse(&name, &text).map_err(located)?;
    let plan = stages::plan(&df, &req.options).map_err(located)?;
    let mut ctx = Context::open(&req.context).map_err(|e| format!("error: {e}"))?;
    let keys = cache::plan_keys(&plan, &mut ctx, &|r: &str| format!("ref:{r}")).map_err(|e| {
        let step = &plan.stages[e.stage].steps[e.step];
        located(BuildError::new(
            &name,
            step.pos,
            format!("{} {}", step.keyword, e.error),
        ))
    })?;
    Ok(render(req, &name, &plan, &keys))
}

fn render(req: &Request, file: &str, plan: &Plan, keys: &BTreeMap<usize, Vec<String>>) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "{}: {} (context {})\n",
        req.label,
        file,
        req.context.display()
    ));
    if !req.tags.is_empty() {
        o.push_str(&format!("  tags: {}\n", req.tags.join(", ")));
    }
    let target = &plan.stages[plan.target];
    let built: Vec<String> = plan.order.iter().map(|s| plan.stages[*s].label()).collect();
    o.push_str(&format!(
        "  target: {} — builds {} of {} stage{}: {}\n",
        target.label(),
        plan.order.len(),
        plan.stages.len(),
        if plan.stages.len() == 1 { "" } else { "s" },
        built.join(", ")
    ));
    if !plan.unused_build_args.is_empty() {
        o.push_str(&format!(
            "  warning: build args no ARG declares: {}\n",
            plan.unused_build_args.join(", ")
        ));
    }
    for &s in &plan.order {
        let stage = &plan.stages[s];
        let base = match &stage.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => r.clone(),
            Base::Stage(i) => format!("stage {}", plan.stages[*i].label()),
        };
        let total = stage.steps.len() + 1;
        let at = |p: Pos| format!("{}:{}", p.line, p.col);
        o.push_str(&format!(
            "  [{} 1/{total}] FROM {base}{}  (line {})\n",
            stage.label(),
            stage
                .platform
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            at(stage.pos)
        ));
        let stage_keys = keys.get(&s).cloned().unwrap_or_default();
        for (n, step) in stage.steps.iter().enumerate() {
            let first_line = step.text.lines().next().unwrap_or("");
            let more = step.text.lines().count() > 1;
            let key = stage_keys
                .get(n)
                .map(|k| {
                    k.trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect::<String>()
                })
                .unwrap_or_default();
            let from = match step.copy.as_ref().and_then(|c| c.from.as_ref()) {
                Some(Source::Stage(i)) => format!("  ← stage {}", plan.stages[*i].label()),
                Some(Source::Image(r)) => format!("  ← image {r}"),
                None => String::new(),
            };
            o.push_str(&format!(
                "  [{} {}/{total}] {first_line}{}{from}  (line {}, key {key})\n",
                stage.label(),
                n + 2,
                if more { " …" } else { "" },
                at(step.pos)
            ));
        }
    }
    o
}
