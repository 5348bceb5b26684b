//! Healthchecks (reconciler issue, item 3): a container's check resolved from its service and
//! its image ([`resolve`]), run through exec by the daemon ([`monitor`]), its state
//! (`starting`, `healthy`, `unhealthy`, the failing streak and the last five probes, like
//! Docker's `State.Health`) kept in `<state dir>/health.json`, read by `ps` and inspect.
//!
//! Docker's rules: probes run every `interval` (every `start_interval` while the container is
//! still `starting` inside its `start_period`); a probe that exits 0 makes the container
//! healthy; failures count towards `retries` only once the start period is over; a probe that
//! outlives `timeout` is killed (the process in the container too) and counts as a failure with
//! exit code -1. The resolved check is stored at create time in `<state dir>/healthcheck.json`
//! so the daemon finds it again after a restart.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::image::record;
use crate::runtime::exec::{self, ExecOptions};
use crate::runtime::state::{self, Status};
use crate::runtime::time;
use crate::spec::model;
use crate::spec::units::parse_duration;

/// The file holding a container's resolved check, written at create.
pub const CONFIG_FILE: &str = "healthcheck.json";
/// The file holding a container's health.
pub const HEALTH_FILE: &str = "health.json";
/// How many probe results are kept (Docker's).
const KEEP: usize = 5;
/// How much of a probe's output is kept (Docker's 4 KiB).
const MAX_OUTPUT: usize = 4096;

/// A resolved healthcheck: what to run and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// The probe's argv (`CMD-SHELL x` is `["/bin/sh", "-c", "x"]`).
    pub command: Vec<String>,
    #[serde(with = "millis")]
    pub interval: Duration,
    #[serde(with = "millis")]
    pub timeout: Duration,
    #[serde(with = "millis")]
    pub start_period: Duration,
    #[serde(with = "millis")]
    pub start_interval: Duration,
    pub retries: u32,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;

/// Why a healthcheck cannot be resolved; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("healthcheck.{field}: {reason}")]
pub struct HealthError {
    pub field: &'static str,
    pub reason: String,
}

/// The check of a container: the service's fields over the image's (field by field, as Docker
/// merges them). `None` when neither has one, or the service disables it (`disable: true`,
/// `test: ["NONE"]`).
pub fn resolve(
    service: Option<&model::Healthcheck>,
    image: Option<&record::Healthcheck>,
) -> Result<Option<HealthConfig>, HealthError> {
    if service.is_some_and(|s| s.disable == Some(true)) {
        return Ok(None);
    }
    let duration = |field: &'static str, text: Option<&String>, image: Option<i64>| match text {
        Some(t) => parse_duration(t)
            .map(Some)
            .map_err(|reason| HealthError { field, reason }),
        None => Ok(image
            .filter(|n| *n > 0)
            .map(|n| Duration::from_nanos(n.unsigned_abs()))),
    };
    let test = service
        .and_then(|s| s.test.clone())
        .filter(|t| !t.is_empty())
        .or_else(|| image.and_then(|i| i.test.clone()).filter(|t| !t.is_empty()));
    let Some(test) = test else {
        return Ok(None);
    };
    let command = match test.split_first() {
        Some((kind, _)) if kind == "NONE" => return Ok(None),
        Some((kind, args)) if kind == "CMD" => args.to_vec(),
        Some((kind, args)) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".to_string(), "-c".to_string(), args.join(" ")]
        }
        // A list without a kind is taken as CMD (what the Compose loader leaves for a list).
        _ => test.clone(),
    };
    if command.is_empty() || command[0].is_empty() {
        return Err(HealthError {
            field: "test",
            reason: "names no command".into(),
        });
    }
    let interval = duration(
        "interval",
        service.and_then(|s| s.interval.as_ref()),
        image.and_then(|i| i.interval),
    )?;
    let timeout = duration(
        "timeout",
        service.and_then(|s| s.timeout.as_ref()),
        image.and_then(|i| i.timeout),
    )?;
    let start_period = duration(
        "start_period",
        service.and_then(|s| s.start_period.as_ref()),
        image.and_then(|i| i.start_period),
    )?;
    let start_interval = duration(
        "start_interval",
        service.and_then(|s| s.start_interval.as_ref()),
        image.and_then(|i| i.start_interval),
    )?;
    let retries = match service.and_then(|s| s.retries) {
        Some(r) => u32::try_from(r).map_err(|_| HealthError {
            field: "retries",
            reason: format!("{r} is too large"),
        })?,
        None => image
            .and_then(|i| i.retries)
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| *r > 0)
            .unwrap_or(DEFAULT_RETRIES),
    };
    let positive = |field, d: Option<Duration>, default| match d {
        Some(d) if d.is_zero() => Err(HealthError {
            field,
            reason: "must be more than 0".into(),
        }),
        Some(d) => Ok(d),
        None => Ok(default),
    };
    Ok(Some(HealthConfig {
        command,
        interval: positive("interval", interval, DEFAULT_INTERVAL)?,
        timeout: positive("timeout", timeout, DEFAULT_TIMEOUT)?,
        start_period: start_period.unwrap_or_default(),
        start_interval: positive("start_interval", start_interval, DEFAULT_START_INTERVAL)?,
        retries: retries.max(1),
    }))
}

/// A container's health status (Docker's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        })
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub start: String,
    pub end: String,
    /// The probe's exit code; -1 when it timed out or could not run.
    pub exit_code: i32,
    pub output: String,
}

/// A container's health (`health.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    pub log: VecDeque<Probe>,
}

impl Health {
    /// Takes a probe's result into account; returns whether the status changed.
    /// `in_start_period`: failures do not count yet.
    pub fn record(&mut self, probe: Probe, retries: u32, in_start_period: bool) -> bool {
        let before = self.status;
        if probe.exit_code == 0 {
            self.status = HealthStatus::Healthy;
            self.failing_streak = 0;
        } else if !(in_start_period && self.status == HealthStatus::Starting) {
            self.failing_streak = self.failing_streak.saturating_add(1);
            if self.failing_streak >= retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push_back(probe);
        while self.log.len() > KEEP {
            self.log.pop_front();
        }
        self.status != before
    }
}

/// The health of the container of state dir `dir`, when it has a check.
pub fn read(dir: &Path) -> Option<Health> {
    let text = std::fs::read(dir.join(HEALTH_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The stored check of the container of state dir `dir`.
pub fn read_config(dir: &Path) -> Option<HealthConfig> {
    let text = std::fs::read(dir.join(CONFIG_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Stores `config` as the container's check (at create).
pub fn write_config(dir: &Path, config: &HealthConfig) -> std::io::Result<()> {
    let data = serde_json::to_vec(config).map_err(std::io::Error::other)?;
    state::write_atomic(&dir.join(CONFIG_FILE), &data)
}

fn write(dir: &Path, health: &Health) {
    if let Ok(data) = serde_json::to_vec(health) {
        let _ = state::write_atomic(&dir.join(HEALTH_FILE), &data);
    }
}

/// Runs the check of the container of state dir `dir` while it runs: probes through exec
/// (`exe`: the flotilla binary to run `shim exec` from; none: this one), `health.json`
/// rewritten after each probe, `on_change` called with each new status. Returns when the
/// container no longer runs (its health file stays, showing the last state).
pub async fn monitor(
    dir: PathBuf,
    config: HealthConfig,
    exe: Option<PathBuf>,
    on_change: impl Fn(HealthStatus) + Send,
) {
    let started = Instant::now();
    // This run of the container: a later start gets its own monitor, this one ends.
    let run = state::read(&dir).ok().and_then(|s| s.started_at);
    let mut health = Health::default();
    write(&dir, &health);
    loop {
        let in_start_period = started.elapsed() < config.start_period;
        let pause = if in_start_period && health.status == HealthStatus::Starting {
            config.start_interval
        } else {
            config.interval
        };
        tokio::time::sleep(pause).await;
        let now = state::read(&dir).ok();
        if now.as_ref().and_then(|s| s.started_at.clone()) != run {
            return;
        }
        match now.map(|s| s.status) {
            Some(Status::Running) => {}
            // A paused container is not probed (nothing in it could answer).
            Some(Status::Paused) => continue,
            _ => return,
        }
        let probe = run_probe(&dir, &config, exe.clone()).await;
        if status(&dir) != Some(Status::Running) {
            continue;
        }
        let in_start_period = started.elapsed() < config.start_period;
        if health.record(probe, config.retries, in_start_period) {
            write(&dir, &health);
            on_change(health.status);
        } else {
            write(&dir, &health);
        }
    }
}

fn status(dir: &Path) -> Option<Status> {
    state::read(dir).ok().map(|s| s.status)
}

/// One probe: the check through `shim exec`, killed with what it started in the container
/// when it outlives the timeout.
pub async fn run_probe(dir: &Path, config: &HealthConfig, exe: Option<PathBuf>) -> Probe {
    let start = time::now();
    let options = ExecOptions {
        args: config.command.clone(),
        exe,
        ..Default::default()
    };
    let failed = |output: String| Probe {
        start: start.clone(),
        end: time::now(),
        exit_code: -1,
        output,
    };
    let mut cmd = match exec::command(dir, &options) {
        Ok(cmd) => tokio::process::Command::from(cmd),
        Err(e) => return failed(e.to_string()),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("run the probe: {e}")),
    };
    let collect = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut buf).await;
            }
            buf
        })
    };
    let stdout = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = collect(child.stderr.take().map(|p| Box::new(p) as _));
    let status = match tokio::time::timeout(config.timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return failed(format!("wait for the probe: {e}")),
        Err(_) => {
            // What the joiner started in the container is its child: killed by pid first,
            // while the joiner still lists it, then the joiner.
            if let Some(pid) = child.id() {
                kill_children(pid);
            }
            let _ = child.kill().await;
            stdout.abort();
            stderr.abort();
            return failed(format!(
                "Health check exceeded timeout ({})",
                crate::spec::units::format_duration(config.timeout)
            ));
        }
    };
    let mut output = String::from_utf8_lossy(&stdout.await.unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&stderr.await.unwrap_or_default()));
    Probe {
        start,
        end: time::now(),
        exit_code: status.code().unwrap_or(-1),
        output: tail(output),
    }
}

/// SIGKILLs the children of the live process `pid`.
pub(crate) fn kill_children(pid: u32) {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for child in text
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
    {
        if let Some(p) = rustix::process::Pid::from_raw(child) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

fn tail(mut text: String) -> String {
    if text.len() > MAX_OUTPUT {
        let mut cut = text.len() - MAX_OUTPUT;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(test: &[&str]) -> model::Healthcheck {
        model::Healthcheck {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn forms_of_test_and_defaults() {
        let c = resolve(Some(&service(&["CMD", "curl", "-f", "x"])), None)
            .unwrap()
            .unwrap();
        assert_eq!(c.command, ["curl", "-f", "x"]);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.retries, 3);
        assert_eq!(c.start_period, Duration::ZERO);
        let c = resolve(Some(&service(&["CMD-SHELL", "test -f /ok"])), None)
            .unwrap()
            .unwrap();
        assert_eq!(c.command, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(resolve(Some(&service(&["NONE"])), None).unwrap(), None);
        assert_eq!(resolve(None, None).unwrap(), None);
        let disabled = model::Healthcheck {
            disable: Some(true),
            ..service(&["CMD", "true"])
        };
        assert_eq!(resolve(Some(&disabled), None).unwrap(), None);
    }

    #[test]
    fn the_service_overrides_the_image_field_by_field() {
        let image = record::Healthcheck {
            test: Some(vec!["CMD".into(), "true".into()]),
            interval: Some(2_000_000_000),
            retries: Some(7),
            ..Default::default()
        };
        let only_interval = model::Healthcheck {
            interval: Some("500ms".into()),
            ..Default::default()
        };
        let c = resolve(Some(&only_interval), Some(&image))
            .unwrap()
            .unwrap();
        assert_eq!(c.command, ["true"]);
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.retries, 7);
        let c = resolve(None, Some(&image)).unwrap().unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        // The service's NONE disables the image's check.
        assert_eq!(
            resolve(Some(&service(&["NONE"])), Some(&image)).unwrap(),
            None
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = model::Healthcheck {
            interval: Some("soon".into()),
            ..service(&["CMD", "true"])
        };
        let e = resolve(Some(&bad), None).unwrap_err();
        assert_eq!(e.field, "interval");
        assert!(e.to_string().starts_with("healthcheck.interval: "), "{e}");
        let zero = model::Healthcheck {
            timeout: Some("0".into()),
            ..service(&["CMD", "true"])
        };
        assert_eq!(resolve(Some(&zero), None).unwrap_err().field, "timeout");
        assert_eq!(
            resolve(Some(&service(&["CMD"])), None).unwrap_err().field,
            "test"
        );
    }

    fn probe(code: i32) -> Probe {
        Probe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: format!("{code}"),
        }
    }

    #[test]
    fn transitions_follow_dockers_rules() {
        let mut h = Health::default();
        // Failures inside the start period do not count while starting.
        assert!(!h.record(probe(1), 2, true));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        // A success makes it healthy, even in the start period.
        assert!(h.record(probe(0), 2, true));
        assert_eq!(h.status, HealthStatus::Healthy);
        // Once healthy, failures count even inside the start period.
        assert!(!h.record(probe(1), 2, true));
        assert_eq!(h.failing_streak, 1);
        assert!(h.record(probe(1), 2, false));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        assert!(h.record(probe(0), 2, false));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        for _ in 0..10 {
            h.record(probe(0), 2, false);
        }
        assert_eq!(h.log.len(), KEEP);
    }

    #[test]
    fn config_round_trips_and_output_is_cut() {
        let c = resolve(Some(&service(&["CMD", "true"])), None)
            .unwrap()
            .unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<HealthConfig>(&text).unwrap(), c);
        let long = "é".repeat(MAX_OUTPUT);
        let cut = tail(long);
        assert!(cut.len() <= MAX_OUTPUT);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
