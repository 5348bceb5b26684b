//! `create` (the containers of `up`, not started) and `flotilla compose pull` (the stack's
//! images through the daemon, shown in the `--progress` mode: one line per image in plain, the
//! bytes pulled so far in the live tty view).

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;

use super::progress::{Mode, Renderer};
use super::{UpArgs, check_service, declared_services, load_stack};
use crate::api::client::block_on;
use crate::api::types::{ImagePull, ProjectProgress};
use crate::cli::human::size;
use crate::cli::system::{HostArgs, engine_client};
use crate::cli::{EngineArgs, ProjectArgs};

#[derive(Args, Debug, Clone, Default)]
pub struct CreateArgs {
    /// Recreate containers even when nothing changed
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// Keep existing containers even when their configuration changed
    #[arg(long)]
    pub no_recreate: bool,
    /// Pull images: always, missing, never (default: each service's pull_policy)
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    /// Remove containers of services the stack file no longer has
    #[arg(long)]
    pub remove_orphans: bool,
    /// `SERVICE=N`: N replicas of SERVICE (repeatable)
    #[arg(long, value_name = "SERVICE=N")]
    pub scale: Vec<String>,
    /// Only these services (and their dependencies)
    pub services: Vec<String>,
}

/// `create`: `up --no-start`.
pub fn create(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &CreateArgs,
) -> Result<u8, String> {
    let up = UpArgs {
        detach: true,
        no_start: true,
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        pull: args.pull.clone(),
        remove_orphans: args.remove_orphans,
        scale: args.scale.clone(),
        services: args.services.clone(),
        ..UpArgs::default()
    };
    super::up(engine, hosts, project, &up)
}

#[derive(Args, Debug, Clone, Default)]
pub struct PullArgs {
    /// Print nothing but errors
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Go on when an image cannot be pulled (the exit code stays 0)
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Only these services' images
    pub services: Vec<String>,
}

/// `compose pull`: every image of the (selected) services, each once.
pub fn pull(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &PullArgs,
) -> Result<u8, String> {
    let (name, images) = selected_images("pull", project, &args.services)?;
    let client = engine_client(engine, hosts)?;
    let mode = if args.quiet {
        Some(Mode::Quiet)
    } else {
        project.progress
    };
    let mut renderer = Renderer::new(mode, false);
    let tty = renderer.is_tty();
    let started = std::time::Instant::now();
    let mut say = |image: &str, status: &str, detail: Option<String>| {
        let _ = renderer.event(&ProjectProgress {
            kind: "image".into(),
            name: image.to_string(),
            service: None,
            status: status.into(),
            detail,
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
    };
    let mut failed = Vec::new();
    block_on(async {
        for image in &images {
            say(image, "Pulling", None);
            let req = ImagePull {
                reference: image.clone(),
                platform: None,
            };
            let mut last = None;
            // The live view shows the bytes pulled so far, over every layer.
            let mut layers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            match client.pull_image(&req).await {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(p) => {
                                if tty
                                    && p.status == "downloading"
                                    && let (Some(id), Some(cur), Some(total)) =
                                        (&p.id, p.current, p.total)
                                {
                                    layers.insert(id.clone(), (cur, total));
                                    let (c, t) = layers
                                        .values()
                                        .fold((0, 0), |(c, t), (a, b)| (c + a, t + b));
                                    let bytes = format!("{} / {}", size(c), size(t));
                                    say(image, "Pulling", Some(bytes));
                                }
                                last = Some(p);
                            }
                            Err(e) => {
                                last = None;
                                failed.push(format!("{image}: {e}"));
                                break;
                            }
                        }
                    }
                }
                Err(e) => failed.push(format!("{image}: {e}")),
            }
            match last {
                Some(p) if p.status == "done" => say(image, "Pulled", None),
                Some(p) => {
                    let why = p.message.unwrap_or_else(|| p.status.clone());
                    say(image, "Error", Some(why.clone()));
                    failed.push(format!("{image}: {why}"));
                }
                None => {}
            }
        }
    })
    .map_err(|e| format!("start a runtime: {e}"))?;
    if failed.is_empty() || args.ignore_pull_failures {
        Ok(0)
    } else {
        Err(format!(
            "pull: project {}: {} image(s) could not be pulled: {}",
            name,
            failed.len(),
            failed.join("; ")
        ))
    }
}

/// The project's name and the distinct `image:`s of the named services (all when none is named), after checking every
/// name against the stack (`command` names the command in the error).
pub(super) fn selected_images(
    command: &str,
    project: &ProjectArgs,
    services: &[String],
) -> Result<(String, BTreeSet<String>), String> {
    let loaded = load_stack(project)?;
    let declared = declared_services(&loaded);
    for s in services {
        check_service(command, &loaded.name, &declared, s)?;
    }
    let images = loaded
        .config
        .get("services")
        .and_then(|s| s.as_object())
        .into_iter()
        .flatten()
        .filter(|(name, _)| services.is_empty() || services.contains(name))
        .filter_map(|(_, svc)| svc.get("image").and_then(|i| i.as_str()).map(String::from))
        .collect();
    Ok((loaded.name, images))
}
