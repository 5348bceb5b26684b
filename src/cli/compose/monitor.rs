//! `top [SERVICE...]` and `stats [SERVICE...]` on the project's running containers, through the
//! container API (`/v1/containers/{id}/top|stats`). `top` prints, like Compose, each
//! container's name then its process table, a blank line between containers; `stats` prints
//! Docker's table (redrawn until Ctrl-C, or once with `--no-stream`) or, with `--format json`,
//! one JSON object per container and sample, with Docker's field names.

use std::time::Duration;

use clap::Args;

use super::super::container::show::{binary_size, row};
use super::super::human;
use super::super::system::{HostArgs, engine_client};
use super::super::{EngineArgs, ProjectArgs, out};
use super::Scope;
use crate::api::client::block_on;
use crate::api::types::{Container, ContainerStats, ContainerStatus};

#[derive(Args, Debug, Clone, Default)]
pub struct TopArgs {
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct StatsArgs {
    /// One sample, then exit
    #[arg(long)]
    pub no_stream: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Do not truncate the container ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

fn running(c: &Container) -> bool {
    matches!(c.state.status, ContainerStatus::Running)
}

/// `top`: each running container's processes.
pub fn top(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &TopArgs,
) -> Result<u8, String> {
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    block_on(async {
        let list = scope.select("top", &client, &args.services).await?;
        let mut text = String::new();
        for c in list.iter().filter(|c| running(c)) {
            let top = match client.top_container(&c.id).await {
                Ok(t) => t,
                // Stopped since it was listed.
                Err(e) if e.code() == Some(crate::api::types::ErrorCode::Conflict) => continue,
                Err(e) => return Err(format!("top: {}: {e}", c.name)),
            };
            if !text.is_empty() {
                text.push('\n');
            }
            let titles: Vec<&str> = top.titles.iter().map(String::as_str).collect();
            text.push_str(&format!("{}\n", c.name));
            text.push_str(&human::table(&titles, &top.processes));
        }
        out(&text).map_err(|e| format!("top: write: {e}"))?;
        Ok(0)
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}

/// One sample as `docker stats --format json` prints it.
fn json_line(s: &ContainerStats, no_trunc: bool) -> String {
    let mem_pct = if s.memory_limit > 0 {
        s.memory_usage as f64 / s.memory_limit as f64 * 100.0
    } else {
        0.0
    };
    let id: String = if no_trunc {
        s.id.clone()
    } else {
        s.id.chars().take(12).collect()
    };
    let v = serde_json::json!({
        "Container": id,
        "ID": id,
        "Name": s.name,
        "CPUPerc": format!("{:.2}%", s.cpu_percent),
        "MemUsage": format!("{} / {}", binary_size(s.memory_usage), binary_size(s.memory_limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "PIDs": s.pids.to_string(),
    });
    format!("{v}\n")
}

/// `stats`: the project's running containers' usage.
pub fn stats(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &StatsArgs,
) -> Result<u8, String> {
    let json = match args.format.as_str() {
        "table" => false,
        "json" => true,
        f => {
            return Err(format!(
                "stats: unknown format {f:?} (expected table or json)"
            ));
        }
    };
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    let header = [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
    ];
    block_on(async {
        loop {
            let list = scope.select("stats", &client, &args.services).await?;
            let ids: Vec<String> = list
                .iter()
                .filter(|c| running(c))
                .map(|c| c.id.clone())
                .collect();
            // One sample each, taken together (each measures cpu over a moment).
            let samples =
                futures_util::future::join_all(ids.iter().map(|id| client.container_stats(id)))
                    .await;
            // Containers that stopped meanwhile have no sample.
            let samples: Vec<ContainerStats> = samples.into_iter().flatten().collect();
            let text = if json {
                samples
                    .iter()
                    .map(|s| json_line(s, args.no_trunc))
                    .collect()
            } else {
                let rows: Vec<Vec<String>> = samples
                    .iter()
                    .map(|s| {
                        let mut r = row(s);
                        if args.no_trunc {
                            r[0] = s.id.clone();
                        }
                        r
                    })
                    .collect();
                human::table(&header, &rows)
            };
            if args.no_stream {
                out(&text).map_err(|e| format!("stats: write: {e}"))?;
                return Ok(0);
            }
            let redraw = if json { "" } else { "\x1b[2J\x1b[H" };
            out(&format!("{redraw}{text}")).map_err(|e| format!("stats: write: {e}"))?;
            tokio::time::sleep(Duration::from_millis(750)).await;
        }
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}
