//! The container operations beyond the lifecycle: `restart`, `top` (a `ps -ef`-like table of
//! the processes in the container's cgroup, read from `/proc`), `stats` (cpu, memory and pids
//! from the cgroup's counters, one sample or a stream), `archive` (cp out and in as tar
//! streams) and `commit` (the container's changes → a new image), plus Docker's inspect
//! document of a container ([`details`]).
//!
//! The archive routes stage files under `<data root>/cp/` on the host: a copy out is made by a
//! fresh single-threaded `flotilla shim cp` helper (a stopped container's overlay is mounted
//! in its own private mount namespace, see [`crate::runtime::copy`]), then sent as a tar; a
//! copy in unpacks the uploaded tar there, then the helper copies each top-level entry into
//! the container with cp's rules. Container paths are always resolved inside the container's
//! root (`openat2(RESOLVE_IN_ROOT)`), never by joining strings.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use oci_spec::runtime::Spec;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{ServerState, ndjson};
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{CommitResult, Container, ContainerCommit, ContainerStats, ContainerTop};
use crate::runtime::bundle;
use crate::runtime::config::{ANNOTATION_INIT, ANNOTATION_USER, DEFAULT_CAPABILITIES};
use crate::runtime::lifecycle;
use crate::runtime::state::Status;
use crate::runtime::sys::cgroup::{Cgroup, Stats};
use crate::runtime::time;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

// --- restart --------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RestartQuery {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's).
    timeout: Option<u64>,
}

/// Stops the container (if it runs) then starts it.
#[utoipa::path(post, path = "/v1/containers/{id}/restart", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), RestartQuery),
    responses((status = 200, body = Container), (status = 400, body = crate::api::types::ErrorBody),
        (status = 404, body = crate::api::types::ErrorBody),
        (status = 409, body = crate::api::types::ErrorBody),
        (status = 500, description = "a Compose post_start hook failed (the container runs)",
            body = crate::api::types::ErrorBody)))]
pub(super) async fn restart(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<RestartQuery>, QueryRejection>,
) -> Result<axum::Json<Container>, ApiError> {
    let q = query(q)?;
    let c = state
        .containers
        .restart(&id, q.timeout.map(Duration::from_secs))
        .await?;
    state
        .containers
        .post_start(&c)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(c.into()))
}

// --- inspect details ------------------------------------------------------------------------

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a String> {
    spec.annotations().as_ref().and_then(|a| a.get(key))
}

/// Docker's `inspect` document of container `c` whose state dir is `dir`.
pub(super) fn details(dir: &FsPath, c: &lifecycle::Container) -> Value {
    let spec = Spec::load(dir.join("config.json")).ok();
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
        // Only the user's binds, not the runtime's /etc files.
        .filter(|m| m.source().as_ref().is_some_and(|s| !s.starts_with(dir)))
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
        "LogPath": dir.join("container.log"),
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
            "AutoRemove": c.meta.labels.get(crate::engine::containers::AUTO_REMOVE_LABEL).is_some_and(|v| v == "true"),
        },
        "Mounts": binds,
    })
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

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
    let stime = time::format(
        std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(start).unwrap_or(0)),
    );
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

fn cgroup_of(c: &lifecycle::Container) -> Result<Cgroup, ApiError> {
    let path = c
        .meta
        .cgroup
        .as_ref()
        .ok_or_else(|| ApiError::internal(format!("container {}: has no cgroup", c.meta.id)))?;
    Cgroup::open(path)
        .map_err(|e| ApiError::internal(format!("container {}: open the cgroup: {e}", c.meta.id)))
}

/// The processes of a running container (the host's pids), as `ps -ef` shows them.
#[utoipa::path(get, path = "/v1/containers/{id}/top", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix")),
    responses((status = 200, body = ContainerTop),
        (status = 404, body = crate::api::types::ErrorBody),
        (status = 409, description = "not running", body = crate::api::types::ErrorBody)))]
pub(super) async fn top(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ContainerTop>, ApiError> {
    let c = state.containers.inspect(&id).await?;
    if !matches!(c.state.status, Status::Running | Status::Paused) {
        return Err(ApiError::conflict(format!(
            "container {} is {}: top needs a running container",
            c.meta.id, c.state.status
        )));
    }
    let top = tokio::task::spawn_blocking(move || {
        let pids = cgroup_of(&c)?.pids().map_err(|e| {
            ApiError::internal(format!("container {}: list the processes: {e}", c.meta.id))
        })?;
        let users = user_names();
        let (boot, now) = (boot_time(), unix_now());
        Ok::<_, ApiError>(ContainerTop {
            titles: ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
                .map(String::from)
                .to_vec(),
            processes: pids
                .iter()
                .filter_map(|pid| ps_row(*pid, &users, boot, now))
                .collect(),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("top: {e}")))??;
    Ok(axum::Json(top))
}

// --- stats ----------------------------------------------------------------------------------

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

/// A sample of `cgroup` (zeros when it is gone: a stopped container).
fn sample(cgroup: Option<&Cgroup>) -> (Stats, Instant) {
    let st = cgroup.and_then(|cg| cg.stats().ok()).unwrap_or(Stats {
        cpu_usage_ns: 0,
        memory_usage: 0,
        memory_limit: None,
        pids_current: 0,
        pids_limit: None,
    });
    (st, Instant::now())
}

fn stats_of(
    c: &lifecycle::Container,
    before: &(Stats, Instant),
    now: &(Stats, Instant),
    host: u64,
) -> ContainerStats {
    let wall = now.1.duration_since(before.1).as_nanos() as f64;
    let used = now.0.cpu_usage_ns.saturating_sub(before.0.cpu_usage_ns) as f64;
    ContainerStats {
        id: c.meta.id.clone(),
        name: c.meta.name.clone(),
        read: time::now(),
        cpu_usage_ns: now.0.cpu_usage_ns,
        cpu_percent: if wall > 0.0 { used / wall * 100.0 } else { 0.0 },
        memory_usage: now.0.memory_usage,
        memory_limit: now
            .0
            .memory_limit
            .filter(|l| *l < host || host == 0)
            .unwrap_or(host),
        pids: now.0.pids_current,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    /// A sample every second (newline-delimited JSON) until the container stops or the
    /// client goes away; default: one sample (cpu measured over a quarter second).
    #[serde(default)]
    stream: bool,
}

/// Cpu, memory and pids of a container, from its cgroup.
#[utoipa::path(get, path = "/v1/containers/{id}/stats", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), StatsQuery),
    responses((status = 200, description = "one sample, or with stream=true newline-delimited \
        samples", body = ContainerStats),
        (status = 404, body = crate::api::types::ErrorBody)))]
pub(super) async fn stats(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let c = state.containers.inspect(&id).await?;
    let running = matches!(c.state.status, Status::Running | Status::Paused);
    let cgroup = if running {
        c.meta.cgroup.as_ref().and_then(|p| Cgroup::open(p).ok())
    } else {
        None
    };
    let host = host_memory();
    if !q.stream {
        let first = sample(cgroup.as_ref());
        tokio::time::sleep(Duration::from_millis(250)).await;
        let second = sample(cgroup.as_ref());
        return Ok(axum::Json(stats_of(&c, &first, &second, host)).into_response());
    }
    let (tx, rx) = mpsc::channel::<ContainerStats>(4);
    let containers = state.containers.clone();
    tokio::spawn(async move {
        let mut before = sample(cgroup.as_ref());
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = sample(cgroup.as_ref());
            if tx.send(stats_of(&c, &before, &now, host)).await.is_err() {
                return;
            }
            before = now;
            let still = containers
                .inspect(&c.meta.id)
                .await
                .is_ok_and(|c| matches!(c.state.status, Status::Running | Status::Paused));
            if !still {
                return;
            }
        }
    });
    Ok(ndjson(rx, state.shutdown.clone()))
}

// --- archive --------------------------------------------------------------------------------

static STAGING: AtomicU64 = AtomicU64::new(0);

/// A fresh staging directory under `<data root>/cp/`, removed when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new(data_root: &FsPath) -> Result<Staging, ApiError> {
        let n = STAGING.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = data_root
            .join(crate::engine::restore::CP_STAGING)
            .join(format!("{}-{n}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| {
            ApiError::internal(format!("create the staging dir {}: {e}", dir.display()))
        })?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `flotilla shim cp DIRECTION STATE_DIR FROM TO`; its failure as an API error (exit 3:
/// the container path does not exist → 404).
fn cp_helper(exe: &FsPath, args: [&std::ffi::OsStr; 4]) -> Result<(), ApiError> {
    let out = std::process::Command::new(exe)
        .args(["shim", "cp"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| ApiError::internal(format!("run {} shim cp: {e}", exe.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&out.stderr)
        .trim()
        .trim_start_matches("flotilla: ")
        .to_string();
    Err(match out.status.code() {
        Some(crate::runtime::copy::EXIT_NOT_FOUND) => ApiError::not_found(message),
        Some(crate::runtime::copy::EXIT_BAD_PATH) => ApiError::bad_request(message),
        _ => ApiError::internal(message),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ArchiveQuery {
    /// A path in the container (resolved inside its root filesystem; symlinks never lead
    /// out of it).
    path: String,
}

/// A `std::io::Write` that sends what is written as body chunks.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    const CHUNK: usize = 64 * 1024;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A tar of `path` in the container: one top-level entry named as the path's last component
/// (`/` gives the whole root filesystem's entries).
#[utoipa::path(get, path = "/v1/containers/{id}/archive", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), ArchiveQuery),
    responses((status = 200, description = "a tar stream", content_type = "application/x-tar"),
        (status = 400, body = crate::api::types::ErrorBody),
        (status = 404, description = "no such container or path",
            body = crate::api::types::ErrorBody)))]
pub(super) async fn archive_get(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<ArchiveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let id = state.containers.resolve(&id).await?;
    let dir = state.containers.dir(&id);
    let exe = state.containers.runtime().exe().to_path_buf();
    let staging = Staging::new(&state.data_root)?;
    let out = staging.0.join("out");
    let path = if q.path.is_empty() {
        "/".to_string()
    } else {
        q.path
    };
    // No start, stop or removal meanwhile (a stopped container's overlay is mounted).
    let guard = state.containers.lock(&id).await;
    let staging = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || {
            fs::create_dir_all(&out).map_err(|e| {
                ApiError::internal(format!("create the staging dir {}: {e}", out.display()))
            })?;
            cp_helper(
                &exe,
                [
                    "out".as_ref(),
                    dir.as_os_str(),
                    path.as_ref(),
                    out.as_os_str(),
                ],
            )?;
            Ok::<_, ApiError>(staging)
        })
        .await
        .map_err(|e| ApiError::internal(format!("archive: {e}")))??
    };
    drop(guard);
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let _staging = staging;
        let mut writer = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let result = (|| {
            let mut tar = tar::Builder::new(&mut writer);
            tar.follow_symlinks(false);
            let mut names: Vec<_> = fs::read_dir(&out)?.flatten().collect();
            names.sort_by_key(|e| e.file_name());
            for entry in names {
                let name = entry.file_name();
                if entry.file_type()?.is_dir() {
                    tar.append_dir_all(&name, entry.path())?;
                } else {
                    tar.append_path_with_name(entry.path(), &name)?;
                }
            }
            tar.finish()?;
            drop(tar);
            writer.flush()
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Copies the uploaded tar's top-level entries to `path` in the container with cp's rules: an
/// existing directory receives each entry under its own name, anything else becomes the new
/// name of the (single) entry.
#[utoipa::path(put, path = "/v1/containers/{id}/archive", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), ArchiveQuery),
    request_body(content = Vec<u8>, description = "a tar stream",
        content_type = "application/x-tar"),
    responses((status = 204),
        (status = 400, description = "not a tar, or a bad path",
            body = crate::api::types::ErrorBody),
        (status = 404, description = "no such container or parent directory",
            body = crate::api::types::ErrorBody)))]
pub(super) async fn archive_put(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<ArchiveQuery>, QueryRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let q = query(q)?;
    if q.path.is_empty() {
        return Err(ApiError::bad_request("path: expected a container path"));
    }
    let id = state.containers.resolve(&id).await?;
    let dir = state.containers.dir(&id);
    let exe = state.containers.runtime().exe().to_path_buf();
    let staging = Staging::new(&state.data_root)?;
    // The upload goes to a file first: the client may send faster than the disk unpacks.
    let tar_path = staging.0.join("upload.tar");
    let mut file = tokio::fs::File::create(&tar_path)
        .await
        .map_err(|e| ApiError::internal(format!("create {}: {e}", tar_path.display())))?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            tokio::io::AsyncWriteExt::write_all(&mut file, &data)
                .await
                .map_err(|e| ApiError::internal(format!("write {}: {e}", tar_path.display())))?;
        }
    }
    // tokio writes in the background: everything must be in the file before it is read.
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(|e| ApiError::internal(format!("write {}: {e}", tar_path.display())))?;
    drop(file);
    let _guard = state.containers.lock(&id).await;
    tokio::task::spawn_blocking(move || {
        let input = staging.0.join("in");
        fs::create_dir_all(&input)
            .map_err(|e| ApiError::internal(format!("create {}: {e}", input.display())))?;
        let file = fs::File::open(&tar_path)
            .map_err(|e| ApiError::internal(format!("open {}: {e}", tar_path.display())))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive
            .unpack(&input)
            .map_err(|e| ApiError::bad_request(format!("the uploaded archive: {e}")))?;
        let mut entries: Vec<_> = fs::read_dir(&input)
            .map_err(|e| ApiError::internal(format!("read {}: {e}", input.display())))?
            .flatten()
            .collect();
        if entries.is_empty() {
            return Err(ApiError::bad_request("the uploaded archive is empty"));
        }
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let from = entry.path();
            cp_helper(
                &exe,
                [
                    "in".as_ref(),
                    dir.as_os_str(),
                    from.as_os_str(),
                    q.path.as_ref(),
                ],
            )?;
        }
        drop(staging);
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal(format!("archive: {e}")))??;
    Ok(StatusCode::NO_CONTENT)
}

// --- commit ---------------------------------------------------------------------------------

/// A new image from the container's changes (its upper dir as one more layer over its image);
/// a running container is paused meanwhile unless `pause` is false.
#[utoipa::path(post, path = "/v1/containers/{id}/commit", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix")),
    request_body = ContainerCommit,
    responses((status = 201, body = CommitResult),
        (status = 400, description = "bad reference or change", body = crate::api::types::ErrorBody),
        (status = 404, body = crate::api::types::ErrorBody)))]
pub(super) async fn commit(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ContainerCommit>,
) -> Result<(StatusCode, axum::Json<CommitResult>), ApiError> {
    use crate::image::commit::{self as image_commit, CommitOptions};
    use crate::image::reference::Reference;
    let reference = Reference::parse(&req.reference)
        .map_err(|e| ApiError::bad_request(format!("reference {:?}: {e}", req.reference)))?;
    let c = state.containers.inspect(&id).await?;
    let id = c.meta.id.clone();
    let dir = state.containers.dir(&id);
    let root = state.data_root.clone();
    let paused =
        req.pause && c.state.status == Status::Running && state.containers.pause(&id).await.is_ok();
    let meta = c.meta.clone();
    let made = tokio::task::spawn_blocking(move || {
        let store = crate::image::store::Store::open(&root)
            .map_err(|e| ApiError::internal(format!("open the image store: {e}")))?;
        let image_id = meta.image_id.clone().ok_or_else(|| {
            ApiError::bad_request(format!("container {}: commit: it has no image", meta.id))
        })?;
        let parent = crate::image::manage::find(&store, &image_id)
            .map_err(|e| {
                ApiError::internal(format!("container {}: commit: its image: {e}", meta.id))
            })?
            .records
            .into_iter()
            .next()
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "container {}: commit: its image {image_id} is gone",
                    meta.id
                ))
            })?;
        let mut exclude: Vec<String> = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Ok(spec) = Spec::load(dir.join("config.json")) {
            for m in spec.mounts().clone().unwrap_or_default() {
                exclude.push(m.destination().to_string_lossy().into_owned());
            }
        }
        let options = CommitOptions {
            changes: req.changes,
            comment: req.comment,
            author: req.author,
            created_by: meta.command.join(" "),
            exclude,
            created: time::now(),
        };
        image_commit::commit(&store, &parent, &dir.join("upper"), &reference, &options).map_err(
            |e| match e {
                image_commit::CommitError::Change { .. } => {
                    ApiError::bad_request(format!("container {}: {e}", meta.id))
                }
                e => ApiError::internal(format!("container {}: {e}", meta.id)),
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("commit: {e}")));
    if paused && let Err(e) = state.containers.unpause(&id).await {
        tracing::warn!(id, error = %e, "unpause after commit");
    }
    let image = made??;
    state.events.publish(
        crate::engine::events::Event::now("container", "commit", &id, &c.meta.name)
            .with("image", &image.name),
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(CommitResult {
            id: image.config_digest.to_string(),
            name: image.name,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_ps() {
        assert_eq!(hms(3723), "01:02:03");
    }
}
