//! The read-only container commands: `ls`/`ps` (Docker's columns and status words, `-a`, `-q`,
//! `--format json`), `inspect` (Docker-shaped JSON from the container's meta, state and runtime
//! spec), `top` (a `ps -ef`-like listing of the processes in the container's cgroup, read from
//! `/proc`) and `stats` (cpu %, memory usage / limit and pids from the cgroup's counters).

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::{Failure, fail};
use crate::cli::{human, out};
use crate::runtime::bundle;
use crate::runtime::config::{ANNOTATION_INIT, ANNOTATION_USER, DEFAULT_CAPABILITIES};
use crate::runtime::lifecycle::{Container, Runtime};
use crate::runtime::state::Status;
use crate::runtime::sys::cgroup::{Cgroup, Stats};

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
        Status::Created => "Created".to_string(),
        Status::Running | Status::Paused => {
            let started = seconds(st.started_at.as_deref()).unwrap_or(now);
            let up = human::duration(u64::try_from(now - started).unwrap_or(0));
            if st.status == Status::Paused {
                format!("Up {up} (Paused)")
            } else {
                format!("Up {up}")
            }
        }
        Status::Exited => {
            let finished = seconds(st.finished_at.as_deref()).unwrap_or(now);
            format!(
                "Exited ({}) {}",
                st.exit_code.unwrap_or(-1),
                human::ago(finished, now)
            )
        }
        Status::Dead => "Dead".to_string(),
    }
}

fn command_text(c: &Container, no_trunc: bool) -> String {
    let text = c.meta.command.join(" ");
    if no_trunc || text.chars().count() <= 20 {
        format!("\"{text}\"")
    } else {
        let cut: String = text.chars().take(19).collect();
        format!("\"{cut}…\"")
    }
}

pub fn ls(rt: &Runtime, args: &LsArgs) -> Result<u8, Failure> {
    let now = human::now();
    let mut containers = rt.list().map_err(fail)?;
    containers.retain(|c| args.all || matches!(c.state.status, Status::Running | Status::Paused));
    // Newest first, as Docker lists them.
    containers.reverse();
    let id = |c: &Container| {
        if args.no_trunc {
            c.meta.id.clone()
        } else {
            c.meta.id.chars().take(12).collect()
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
            let created = seconds(Some(&c.meta.created)).unwrap_or(now);
            let labels: Vec<String> = c
                .meta
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let row = json!({
                "ID": id(c),
                "Image": c.meta.image.clone().unwrap_or_default(),
                "Command": command_text(c, args.no_trunc),
                "CreatedAt": human::utc(created),
                "RunningFor": human::ago(created, now),
                "Status": status_text(c, now),
                "State": c.state.status.to_string(),
                "Names": c.meta.name,
                "Labels": labels.join(","),
                "Ports": "",
            });
            text.push_str(&row.to_string());
            text.push('\n');
        }
    } else {
        let rows: Vec<Vec<String>> = containers
            .iter()
            .map(|c| {
                let created = seconds(Some(&c.meta.created)).unwrap_or(now);
                vec![
                    id(c),
                    c.meta.image.clone().unwrap_or_default(),
                    command_text(c, args.no_trunc),
                    human::ago(created, now),
                    status_text(c, now),
                    c.meta.name.clone(),
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
                "NAMES",
            ],
            &rows,
        );
    }
    out(&text).map_err(fail)?;
    Ok(0)
}

// --- inspect --------------------------------------------------------------------------------

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a String> {
    spec.annotations().as_ref().and_then(|a| a.get(key))
}

/// Docker's `inspect` document of a container.
pub fn document(rt: &Runtime, c: &Container) -> Value {
    let spec = Spec::load(rt.dir(&c.meta.id).join("config.json")).ok();
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let st = &c.state;
    let running = matches!(st.status, Status::Running | Status::Paused);
    let env = process
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let cwd = process
        .as_ref()
        .map(|p| p.cwd().to_string_lossy().into_owned())
        .unwrap_or_default();
    let limits = spec.as_ref().map(bundle::limits).unwrap_or_default();
    let caps: Vec<String> = process
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .map(|set| set.iter().map(|c| format!("CAP_{c}")).collect())
        .unwrap_or_default();
    let cap_add: Vec<&String> = caps
        .iter()
        .filter(|c| !DEFAULT_CAPABILITIES.contains(&c.as_str()))
        .collect();
    let cap_drop: Vec<&str> = DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .filter(|d| !caps.iter().any(|c| c == d))
        .collect();
    let mounts = spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default();
    let binds: Vec<Value> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter(|m| {
            // Only the user's binds, not the runtime's /etc files.
            m.source()
                .as_ref()
                .is_some_and(|s| !s.starts_with(rt.dir(&c.meta.id)))
        })
        .map(|m| {
            let ro = m
                .options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "ro"));
            json!({
                "Type": "bind",
                "Source": m.source(),
                "Destination": m.destination(),
                "Mode": if ro { "ro" } else { "" },
                "RW": !ro,
                "Propagation": "rprivate",
            })
        })
        .collect();
    let tmpfs: BTreeMap<String, String> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .filter(|m| !m.destination().starts_with("/dev"))
        .map(|m| {
            (
                m.destination().to_string_lossy().into_owned(),
                m.options().clone().unwrap_or_default().join(","),
            )
        })
        .collect();
    let network_mode = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .find(|n| format!("{:?}", n.typ()).eq_ignore_ascii_case("network"))
        .and_then(|n| n.path().clone())
        .map(|p| {
            if p.as_os_str() == "/proc/self/ns/net" {
                "host".to_string()
            } else {
                p.to_string_lossy().into_owned()
            }
        })
        .unwrap_or_else(|| "none".to_string());
    let nano_cpus = match (limits.cpu_quota, limits.cpu_period) {
        (Some(q), Some(p)) if q > 0 && p > 0 => q * 1_000_000_000 / p as i64,
        _ => 0,
    };
    let args = &c.meta.command;
    json!({
        "Id": c.meta.id,
        "Created": c.meta.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.to_string(),
            "Running": running,
            "Paused": st.status == Status::Paused,
            "Restarting": false,
            "OOMKilled": st.oom_killed,
            "Dead": st.status == Status::Dead,
            "Pid": if running { st.pid.unwrap_or(0) } else { 0 },
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": c.meta.image_id.clone().unwrap_or_default(),
        "Name": format!("/{}", c.meta.name),
        "LogPath": rt.dir(&c.meta.id).join("container.log"),
        "Config": {
            "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
            "User": spec.as_ref().and_then(|s| annotation(s, ANNOTATION_USER).cloned()).unwrap_or_default(),
            "Tty": c.meta.tty,
            "OpenStdin": c.meta.open_stdin,
            "Env": env,
            "Cmd": args,
            "Image": c.meta.image.clone().unwrap_or_default(),
            "WorkingDir": cwd,
            "Labels": c.meta.labels,
            "StopSignal": c.meta.stop_signal,
            "StopTimeout": c.meta.stop_timeout_ms / 1000,
        },
        "HostConfig": {
            "Memory": limits.memory.unwrap_or(0),
            "MemoryReservation": limits.memory_reservation.unwrap_or(0),
            "MemorySwap": limits.memory_swap.unwrap_or(0),
            "NanoCpus": nano_cpus,
            "CpuQuota": limits.cpu_quota.unwrap_or(0),
            "CpuPeriod": limits.cpu_period.unwrap_or(0),
            "CpuShares": limits.cpu_shares.unwrap_or(0),
            "PidsLimit": limits.pids_limit,
            "ReadonlyRootfs": spec.as_ref().and_then(|s| s.root().as_ref()).and_then(|r| r.readonly()).unwrap_or(false),
            "CapAdd": cap_add,
            "CapDrop": cap_drop,
            "Init": spec.as_ref().and_then(|s| annotation(s, ANNOTATION_INIT)).is_some_and(|v| v == "true"),
            "Tmpfs": tmpfs,
            "NetworkMode": network_mode,
        },
        "Mounts": binds,
    })
}

pub fn inspect(rt: &Runtime, args: &InspectArgs) -> Result<u8, Failure> {
    let mut docs = Vec::new();
    let mut failed = false;
    for name in &args.containers {
        match rt.resolve(name).and_then(|id| rt.inspect(&id)) {
            Ok(c) => docs.push(document(rt, &c)),
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

// --- top ------------------------------------------------------------------------------------

/// Clock ticks per second of `/proc/<pid>/stat` times (Linux's USER_HZ).
const TICKS: u64 = 100;

fn boot_time() -> i64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn user_names() -> BTreeMap<u32, String> {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// One `ps -ef` row for `pid`, none when it is gone.
fn ps_row(pid: i32, users: &BTreeMap<u32, String>, boot: i64, now: i64) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let comm = stat.get(stat.find('(')? + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // Fields after the name: 0 state, 1 ppid, 4 tty_nr, 11 utime, 12 stime, 19 starttime.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ppid = num(1);
    let tty = num(4);
    let cpu = (num(11) + num(12)) / TICKS;
    let start = boot + i64::try_from(num(19) / TICKS).unwrap_or(0);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ")
    };
    let elapsed = u64::try_from(now - start).unwrap_or(0).max(1);
    let tty_text = match (tty >> 8) & 0xfff {
        0 => "?".to_string(),
        136..=143 => format!("pts/{}", (tty & 0xff) | ((tty >> 12) & 0xfff00)),
        _ => format!("tty{}", tty & 0xff),
    };
    let stime = human::utc(start);
    Some(vec![
        users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
        pid.to_string(),
        ppid.to_string(),
        (cpu * 100 / elapsed).to_string(),
        stime.get(11..16).unwrap_or("").to_string(),
        tty_text,
        hms(cpu),
        cmd,
    ])
}

fn cgroup_of(c: &Container) -> Result<Cgroup, Failure> {
    let path = c
        .meta
        .cgroup
        .as_ref()
        .ok_or_else(|| fail(format!("container {}: has no cgroup", c.meta.id)))?;
    Cgroup::open(path).map_err(|e| fail(format!("container {}: open the cgroup: {e}", c.meta.id)))
}

pub fn top(rt: &Runtime, args: &TopArgs) -> Result<u8, Failure> {
    let id = rt.resolve(&args.container).map_err(fail)?;
    let c = rt.inspect(&id).map_err(fail)?;
    if !matches!(c.state.status, Status::Running | Status::Paused) {
        return Err(fail(format!(
            "container {id} is {}: top needs a running container",
            c.state.status
        )));
    }
    let pids = cgroup_of(&c)?
        .pids()
        .map_err(|e| fail(format!("container {id}: list the processes: {e}")))?;
    let users = user_names();
    let (boot, now) = (boot_time(), human::now());
    let rows: Vec<Vec<String>> = pids
        .iter()
        .filter_map(|pid| ps_row(*pid, &users, boot, now))
        .collect();
    let text = human::table(
        &["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        &rows,
    );
    out(&text).map_err(fail)?;
    Ok(0)
}

// --- stats ----------------------------------------------------------------------------------

/// Docker's binary sizes: `1.5MiB`, `512MiB`, `2GiB`.
fn binary_size(bytes: u64) -> String {
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

fn host_memory() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

struct Sample {
    container: Container,
    cgroup: Option<Cgroup>,
    first: Option<(Stats, Instant)>,
}

fn sample_rows(samples: &mut [Sample]) -> Vec<Vec<String>> {
    let host = host_memory();
    samples
        .iter_mut()
        .map(|s| {
            let now = s
                .cgroup
                .as_ref()
                .and_then(|cg| cg.stats().ok())
                .map(|st| (st, Instant::now()));
            let cpu = match (&s.first, &now) {
                (Some((a, ta)), Some((b, tb))) => {
                    let wall = tb.duration_since(*ta).as_nanos() as f64;
                    let used = b.cpu_usage_ns.saturating_sub(a.cpu_usage_ns) as f64;
                    if wall > 0.0 { used / wall * 100.0 } else { 0.0 }
                }
                _ => 0.0,
            };
            let (usage, limit, pids) = match &now {
                Some((st, _)) => (
                    st.memory_usage,
                    st.memory_limit
                        .filter(|l| *l < host || host == 0)
                        .unwrap_or(host),
                    st.pids_current,
                ),
                None => (0, host, 0),
            };
            let mem_pct = if limit > 0 {
                usage as f64 / limit as f64 * 100.0
            } else {
                0.0
            };
            if now.is_some() {
                s.first = now;
            }
            vec![
                s.container.meta.id.chars().take(12).collect(),
                s.container.meta.name.clone(),
                format!("{cpu:.2}%"),
                format!("{} / {}", binary_size(usage), binary_size(limit)),
                format!("{mem_pct:.2}%"),
                pids.to_string(),
            ]
        })
        .collect()
}

pub fn stats(rt: &Runtime, args: &StatsArgs) -> Result<u8, Failure> {
    let containers: Vec<Container> = if args.containers.is_empty() {
        rt.list()
            .map_err(fail)?
            .into_iter()
            .filter(|c| args.all || matches!(c.state.status, Status::Running | Status::Paused))
            .collect()
    } else {
        args.containers
            .iter()
            .map(|n| rt.resolve(n).and_then(|id| rt.inspect(&id)))
            .collect::<Result<_, _>>()
            .map_err(fail)?
    };
    let mut samples: Vec<Sample> = containers
        .into_iter()
        .map(|c| {
            let cgroup = c.meta.cgroup.as_ref().and_then(|p| Cgroup::open(p).ok());
            let first = cgroup
                .as_ref()
                .and_then(|cg| cg.stats().ok())
                .map(|st| (st, Instant::now()));
            Sample {
                container: c,
                cgroup,
                first,
            }
        })
        .collect();
    let header = [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
    ];
    loop {
        // cpu % needs two samples: the first is taken above or in the last round.
        std::thread::sleep(Duration::from_millis(if args.no_stream {
            500
        } else {
            1000
        }));
        let rows = sample_rows(&mut samples);
        let table = human::table(&header, &rows);
        if args.no_stream {
            out(&table).map_err(fail)?;
            return Ok(0);
        }
        out(&format!("\x1b[2J\x1b[H{table}")).map_err(fail)?;
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
        assert_eq!(hms(3723), "01:02:03");
    }
}
