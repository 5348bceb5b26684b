//! `flotilla compose push [SERVICE...]`: the image of each (selected) service with an `image`,
//! each once, pushed through the daemon (`/v1/images/{name}/push`, the user's registry
//! credentials as for `flotilla push`), one line per image like Compose's plain progress. A
//! failure makes the exit code 1 unless `--ignore-push-failures`; the others are pushed anyway.

use clap::Args;

use super::super::image::registry_auth;
use super::super::system::{HostArgs, engine_client};
use super::super::{EngineArgs, ProjectArgs, out};
use crate::api::client::block_on;
use crate::image::reference::Reference;

#[derive(Args, Debug, Clone, Default)]
pub struct PushArgs {
    /// Print nothing but errors
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Go on when an image cannot be pushed (the exit code stays 0)
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Only these services' images
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// `compose push`.
pub fn push(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &PushArgs,
) -> Result<u8, String> {
    let (project_name, images) = super::pull::selected_images("push", project, &args.services)?;
    let client = engine_client(engine, hosts)?;
    let say = |line: String| {
        if !args.quiet {
            let _ = out(&line);
        }
    };
    let mut failed = Vec::new();
    block_on(async {
        for image in &images {
            let reference = match Reference::parse(image) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!(" Image {image}  Error: {e}");
                    failed.push(format!("{image}: {e}"));
                    continue;
                }
            };
            let auth = match registry_auth(&reference) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!(" Image {image}  Error: {e}");
                    failed.push(format!("{image}: {e}"));
                    continue;
                }
            };
            say(format!(" Image {image}  Pushing\n"));
            let name = reference.to_string();
            let mut last = None;
            match client.push_image(&name, auth.as_ref()).await {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(p) => last = Some(p),
                            Err(e) => {
                                last = None;
                                eprintln!(" Image {image}  Error: {e}");
                                failed.push(format!("{image}: {e}"));
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    eprintln!(" Image {image}  Error: {e}");
                    failed.push(format!("{image}: {e}"));
                }
            }
            match last {
                Some(p) if p.status == "done" => say(format!(" Image {image}  Pushed\n")),
                Some(p) => {
                    let why = p.message.unwrap_or_else(|| p.status.clone());
                    eprintln!(" Image {image}  Error: {why}");
                    failed.push(format!("{image}: {why}"));
                }
                None => {}
            }
        }
    })
    .map_err(|e| format!("start a runtime: {e}"))?;
    if failed.is_empty() || args.ignore_push_failures {
        Ok(0)
    } else {
        Err(format!(
            "push: project {}: {} image(s) could not be pushed: {}",
            project_name,
            failed.len(),
            failed.join("; ")
        ))
    }
}
