//! The read-only container commands, through the daemon: `ls`/`ps` (Docker's columns and status
//! words, `-a`, `-q`, `--format json`), `inspect` (the Docker-shaped document the daemon builds
//! from the container's meta, state and runtime spec), `top` (the daemon's `ps -ef`-like table
//! of the processes in the container's cgroup) and `stats` (cpu %, memory usage / limit and
//! pids from the cgroup's counters, redrawn every second unless `--no-stream`).

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::{Failure, fail};
use crate::api::client::Client;
use crate::api::types::{Container, ContainerStats, ContainerStatus};
use crate::cli::{human, out};

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LsFormat {
    #[default]
    Table,
    /// One JSON object per line, with Docker's field names
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct LsArgs {
    /// Show every container (default: running and paused ones)
    #[arg(short, long)]
    pub all: bool,
    /// Print only the container ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = LsFormat::Table)]
    pub format: LsFormat,
    /// Do not truncate ids and commands
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// Containers, by name or id (prefix)
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    /// The container
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// Print one sample and exit
    #[arg(long)]
    pub no_stream: bool,
    /// Every container, not only running ones
    #[arg(short, long)]
    pub all: bool,
    /// Containers (default: every running one)
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

fn seconds(rfc3339: Option<&str>) -> Option<i64> {
    rfc3339.and_then(human::parse_rfc3339)
}

/// Docker's STATUS column: `Created`, `Up 3 seconds`, `Up 3 seconds (Paused)`,
/// `Exited (0) 2 minutes ago`, `Dead`.
pub fn status_text(c: &Container, now: i64) -> String {
    let st = &c.state;
    match st.status {
        ContainerStatus::Created => "Created".to_string(),
        ContainerStatus::Running | ContainerStatus::Paused => {
            let started = seconds(st.started_at.as_deref()).unwrap_or(now);
            let up = human::duration(u64::try_from(now - started).unwrap_or(0));
            if st.status == ContainerStatus::Paused {
                format!("Up {up} (Paused)")
            } else {
                format!("Up {up}")
            }
        }
        ContainerStatus::Exited => {
            let finished = seconds(st.finished_at.as_deref()).unwrap_or(now);
            format!(
                "Exited ({}) {}",
                st.exit_code.unwrap_or(-1),
                human::ago(finished, now)
            )
        }
        ContainerStatus::Dead => "Dead".to_string(),
        ContainerStatus::Unknown => "Unknown".to_string(),
    }
}

fn command_text(c: &Container, no_trunc: bool) -> String {
    let text = c.command.join(" ");
    if no_trunc || text.chars().count() <= 20 {
        format!("\"{text}\"")
    } else {
        let cut: String = text.chars().take(19).collect();
        format!("\"{cut}…\"")
    }
}

/// Docker's PORTS column: `0.0.0.0:8080->80/tcp, …`.
fn ports_text(c: &Container) -> String {
    c.ports
        .iter()
        .map(|p| {
            let ip = if p.host_ip.contains(':') {
                format!("[{}]", p.host_ip)
            } else {
                p.host_ip.clone()
            };
            format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ls(client: &Client, args: &LsArgs) -> Result<u8, Failure> {
    let now = human::now();
    let mut containers = client.list_containers(args.all).await.map_err(fail)?;
    // Newest first, as Docker lists them.
    containers.reverse();
    let id = |c: &Container| {
        if args.no_trunc {
            c.id.clone()
        } else {
            c.id.chars().take(12).collect()
        }
    };
    let mut text = String::new();
    if args.quiet {
        for c in &containers {
            text.push_str(&id(c));
            text.push('\n');
        }
    } else if matches!(args.format, LsFormat::Json) {
        for c in &containers {
            let created = seconds(Some(&c.created)).unwrap_or(now);
            let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let row = json!({
                "ID": id(c),
                "Image": c.image.clone().unwrap_or_default(),
                "Command": command_text(c, args.no_trunc),
                "CreatedAt": human::utc(created),
                "RunningFor": human::ago(created, now),
                "Status": status_text(c, now),
                "State": c.state.status.to_string(),
                "Names": c.name,
                "Labels": labels.join(","),
                "Ports": ports_text(c),
            });
            text.push_str(&row.to_string());
            text.push('\n');
        }
    } else {
        let rows: Vec<Vec<String>> = containers
            .iter()
            .map(|c| {
                let created = seconds(Some(&c.created)).unwrap_or(now);
                vec![
                    id(c),
                    c.image.clone().unwrap_or_default(),
                    command_text(c, args.no_trunc),
                    human::ago(created, now),
                    status_text(c, now),
                    ports_text(c),
                    c.name.clone(),
                ]
            })
            .collect();
        text = human::table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ],
            &rows,
        );
    }
    out(&text).map_err(fail)?;
    Ok(0)
}

/// Docker's `inspect` documents, as the daemon builds them.
pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<u8, Failure> {
    let mut docs = Vec::new();
    let mut failed = false;
    for name in &args.containers {
        match client.inspect_container(name).await {
            Ok(c) => docs.push(match c.details {
                Some(d) => d,
                // An older daemon: its own shape.
                None => serde_json::to_value(&c).map_err(fail)?,
            }),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    let text = serde_json::to_string_pretty(&docs).map_err(fail)?;
    out(&format!("{text}\n")).map_err(fail)?;
    Ok(u8::from(failed))
}

pub async fn top(client: &Client, args: &TopArgs) -> Result<u8, Failure> {
    let top = client.top_container(&args.container).await.map_err(fail)?;
    let titles: Vec<&str> = top.titles.iter().map(String::as_str).collect();
    out(&human::table(&titles, &top.processes)).map_err(fail)?;
    Ok(0)
}

/// Docker's binary sizes: `1.5MiB`, `512MiB`, `2GiB`.
pub(crate) fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", UNITS[unit])
}

pub(crate) fn row(s: &ContainerStats) -> Vec<String> {
    let mem_pct = if s.memory_limit > 0 {
        s.memory_usage as f64 / s.memory_limit as f64 * 100.0
    } else {
        0.0
    };
    vec![
        s.id.chars().take(12).collect(),
        s.name.clone(),
        format!("{:.2}%", s.cpu_percent),
        format!(
            "{} / {}",
            binary_size(s.memory_usage),
            binary_size(s.memory_limit)
        ),
        format!("{mem_pct:.2}%"),
        s.pids.to_string(),
    ]
}

pub async fn stats(client: &Client, args: &StatsArgs) -> Result<u8, Failure> {
    let header = [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
    ];
    loop {
        let names: Vec<String> = if args.containers.is_empty() {
            client
                .list_containers(args.all)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|c| c.id)
                .collect()
        } else {
            args.containers.clone()
        };
        // One sample each, taken together (each measures cpu over a quarter second).
        let samples =
            futures_util::future::join_all(names.iter().map(|n| client.container_stats(n))).await;
        let mut rows = Vec::new();
        for s in samples {
            match s {
                Ok(s) => rows.push(row(&s)),
                // Named containers must exist; listed ones may have gone meanwhile.
                Err(e) if !args.containers.is_empty() => return Err(fail(e)),
                Err(_) => {}
            }
        }
        let table = human::table(&header, &rows);
        if args.no_stream {
            out(&table).map_err(fail)?;
            return Ok(0);
        }
        out(&format!("\x1b[2J\x1b[H{table}")).map_err(fail)?;
        tokio::time::sleep(Duration::from_millis(750)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_like_docker() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(512 << 20), "512MiB");
        assert_eq!(binary_size(1536 * 1024), "1.5MiB");
    }
}
