//! cgroup v2: one directory in the unified hierarchy; controllers are enabled in every parent's
//! `cgroup.subtree_control`; the freezer is `cgroup.freeze` confirmed by `cgroup.events`.

use std::fs;
use std::io;
use std::path::Path;

use super::{Cgroup, Dir, Error, Limits, Stats, Write, keyed_value, shares_to_weight, write_file};

/// Controllers a container's cgroup gets when the parent offers them.
const WANTED: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];

/// The v2 writes for `limits`. Memory+swap becomes `memory.swap.max` = swap − memory; shares
/// become `cpu.weight`; unlimited is `max`. A period without a quota is refused (`cpu.max` holds
/// both, and rewriting the quota to change the period would drop a quota set earlier).
pub fn render(limits: &Limits) -> Result<Vec<Write>, Error> {
    limits.validate()?;
    let mut writes = Vec::new();
    if let Some(cpus) = limits.cpuset_cpus.as_deref().filter(|c| !c.is_empty()) {
        writes.push(Write::new("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = limits.cpuset_mems.as_deref().filter(|m| !m.is_empty()) {
        writes.push(Write::new("cpuset", "cpuset.mems", mems));
    }
    if let Some(memory) = limits.memory {
        writes.push(Write::new("memory", "memory.max", or_max(memory)));
    }
    if let Some(swap) = limits.memory_swap {
        let value = match limits.memory.filter(|m| *m > 0) {
            _ if swap <= 0 => "max".to_owned(),
            // validate() has checked that memory is set and not above swap.
            Some(memory) => (swap - memory).to_string(),
            None => {
                return Err(Error::InvalidLimits(
                    "memory_swap needs a memory limit too".into(),
                ));
            }
        };
        writes.push(Write::new("memory", "memory.swap.max", value));
    }
    if let Some(reservation) = limits.memory_reservation {
        writes.push(Write::new("memory", "memory.low", reservation.max(0)));
    }
    if let Some(shares) = limits.cpu_shares.filter(|s| *s > 0) {
        writes.push(Write::new("cpu", "cpu.weight", shares_to_weight(shares)));
    }
    match (limits.cpu_quota, limits.cpu_period) {
        (Some(quota), period) => {
            let mut value = or_max(quota);
            if let Some(period) = period {
                value = format!("{value} {period}");
            }
            writes.push(Write::new("cpu", "cpu.max", value));
        }
        (None, Some(_)) => {
            return Err(Error::InvalidLimits(
                "cpu_period needs cpu_quota on cgroup v2".into(),
            ));
        }
        (None, None) => {}
    }
    if let Some(pids) = limits.pids_limit {
        writes.push(Write::new("pids", "pids.max", or_max(pids)));
    }
    Ok(writes)
}

fn or_max(v: i64) -> String {
    if v <= 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

/// Creates the cgroup's directory level by level, enabling the wanted controllers in each
/// parent's `cgroup.subtree_control` first. A controller the limits need that cannot be enabled
/// is an error; others are best effort.
pub(super) fn create_dir(path: &str, dir: &Dir, writes: &[Write]) -> Result<(), Error> {
    let depth = path.split('/').count();
    let Some(root) = dir.path.ancestors().nth(depth) else {
        return Err(Error::Create {
            controller: dir.label.clone(),
            path: path.to_owned(),
            source: io::ErrorKind::NotFound.into(),
        });
    };
    let needed: Vec<&str> = writes.iter().map(|w| w.controller).collect();
    let mut level = root.to_path_buf();
    let mut rel = String::new();
    for component in path.split('/') {
        enable_controllers(&level, &rel, &needed)?;
        level.push(component);
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(component);
        match fs::create_dir(&level) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Create {
                    controller: dir.label.clone(),
                    path: rel,
                    source: e,
                });
            }
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path, rel: &str, needed: &[&str]) -> Result<(), Error> {
    let shown = if rel.is_empty() { "." } else { rel };
    let read = |file: &str| {
        fs::read_to_string(dir.join(file)).map_err(|source| Error::Read {
            controller: "cgroup".into(),
            path: shown.to_owned(),
            file: file.to_owned(),
            source,
        })
    };
    let available = read("cgroup.controllers")?;
    let enabled = read("cgroup.subtree_control")?;
    let has = |list: &str, c: &str| list.split_whitespace().any(|x| x == c);
    for controller in WANTED {
        let need = needed.contains(controller);
        if !has(&available, controller) {
            if need {
                return Err(Error::NoController {
                    controller: (*controller).to_owned(),
                    detail: ": the parent cgroup does not offer it",
                });
            }
            continue;
        }
        if has(&enabled, controller) {
            continue;
        }
        let value = format!("+{controller}");
        if let Err(source) = write_file(&dir.join("cgroup.subtree_control"), &value)
            && need
        {
            return Err(Error::Write {
                controller: "cgroup".into(),
                path: shown.to_owned(),
                file: "cgroup.subtree_control".into(),
                value,
                source,
            });
        }
    }
    Ok(())
}

/// Writes `cgroup.freeze` and waits until `cgroup.events` says `frozen 1` (or `0`).
pub(super) fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<(), Error> {
    let dir = &cg.dirs[0];
    let (value, want, state) = if frozen {
        ("1", 1, "frozen")
    } else {
        ("0", 0, "thawed")
    };
    cg.write_dir(dir, "cgroup", "cgroup.freeze", value)?;
    let result = cg.wait_until("cgroup", state, || {
        let events = cg.read_dir(dir, "cgroup", "cgroup.events")?;
        Ok(keyed_value(&events, "frozen") == Some(want))
    });
    if result.is_err() && frozen {
        let _ = cg.write_dir(dir, "cgroup", "cgroup.freeze", "0");
    }
    result
}

pub(super) fn is_frozen(cg: &Cgroup) -> Result<bool, Error> {
    match cg.read_dir_opt(&cg.dirs[0], "cgroup", "cgroup.freeze")? {
        Some(state) => Ok(state.trim() == "1"),
        None => Ok(false),
    }
}

/// SIGKILLs everything through `cgroup.kill` (Linux 5.14+); `false` when the kernel lacks it.
pub(super) fn kill(cg: &Cgroup) -> Result<bool, Error> {
    match cg.write_dir(&cg.dirs[0], "cgroup", "cgroup.kill", "1") {
        Ok(()) => Ok(true),
        Err(Error::Write { ref source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

pub(super) fn stats(cg: &Cgroup) -> Result<Stats, Error> {
    let cpu_usage_ns = match cg.read_opt("cpu", "cpu.stat")? {
        Some(text) => keyed_value(&text, "usage_usec").unwrap_or(0) * 1000,
        None => 0,
    };
    Ok(Stats {
        cpu_usage_ns,
        memory_usage: cg.read_u64("memory", "memory.current")?,
        memory_limit: cg.read_limit("memory", "memory.max")?,
        pids_current: cg.read_u64("pids", "pids.current")?,
        pids_limit: cg.read_limit("pids", "pids.max")?,
    })
}

/// `memory.events` counts OOM kills of the group and its descendants in `oom_kill`.
pub(super) fn oom_killed(cg: &Cgroup) -> Result<bool, Error> {
    let Some(text) = cg.read_opt("memory", "memory.events")? else {
        return Ok(false);
    };
    Ok(keyed_value(&text, "oom_kill").unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::runtime::sys::cgroup::limits::fixtures::{full, lines};

    #[test]
    fn full_limits_render() {
        assert_eq!(
            lines(&render(&full()).unwrap()),
            [
                "cpuset/cpuset.cpus = 0-1",
                "cpuset/cpuset.mems = 0",
                "memory/memory.max = 536870912",
                "memory/memory.swap.max = 536870912",
                "memory/memory.low = 268435456",
                "cpu/cpu.weight = 20",
                "cpu/cpu.max = 150000 100000",
                "pids/pids.max = 100",
            ]
        );
    }

    #[test]
    fn unlimited_and_unset_values() {
        assert!(render(&Limits::default()).unwrap().is_empty());
        let limits = Limits {
            memory: Some(-1),
            memory_swap: Some(-1),
            memory_reservation: Some(-1),
            cpu_quota: Some(-1),
            pids_limit: Some(-1),
            ..Limits::default()
        };
        assert_eq!(
            lines(&render(&limits).unwrap()),
            [
                "memory/memory.max = max",
                "memory/memory.swap.max = max",
                "memory/memory.low = 0",
                "cpu/cpu.max = max",
                "pids/pids.max = max",
            ]
        );
        let no_swap = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(64 << 20),
            cpu_quota: Some(50_000),
            ..Limits::default()
        };
        assert_eq!(
            lines(&render(&no_swap).unwrap()),
            [
                "memory/memory.max = 67108864",
                "memory/memory.swap.max = 0",
                "cpu/cpu.max = 50000",
            ]
        );
    }

    #[test]
    fn invalid_limits_are_refused() {
        let period_only = Limits {
            cpu_period: Some(50_000),
            ..Limits::default()
        };
        assert!(
            render(&period_only)
                .unwrap_err()
                .to_string()
                .contains("cpu_period needs cpu_quota")
        );
        let swap_only = Limits {
            memory_swap: Some(1 << 30),
            ..Limits::default()
        };
        assert!(render(&swap_only).is_err());
    }
}
