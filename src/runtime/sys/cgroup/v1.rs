//! cgroup v1 (and hybrid hosts): one directory per controller hierarchy; cpuset directories are
//! initialised from their parent like Docker does; memory and memory+swap are written in the order
//! the kernel accepts; the freezer is `freezer.state`.

use std::fs;
use std::io;
use std::path::Path;

use super::{Cgroup, Dir, Error, Limits, Stats, Write, keyed_value, write_file};

const MEMORY: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// The v1 writes for `limits`: cpuset first (it must be set before a task can join), then memory,
/// cpu and pids. Unlimited is `-1` (`max` for pids).
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
        writes.push(Write::new("memory", MEMORY, or_unlimited(memory)));
    }
    if let Some(swap) = limits.memory_swap {
        writes.push(Write::new("memory", MEMSW, or_unlimited(swap)));
    }
    if let Some(reservation) = limits.memory_reservation {
        writes.push(Write::new(
            "memory",
            "memory.soft_limit_in_bytes",
            or_unlimited(reservation),
        ));
    }
    if let Some(shares) = limits.cpu_shares.filter(|s| *s > 0) {
        writes.push(Write::new("cpu", "cpu.shares", shares));
    }
    if let Some(period) = limits.cpu_period {
        writes.push(Write::new("cpu", "cpu.cfs_period_us", period));
    }
    if let Some(quota) = limits.cpu_quota {
        writes.push(Write::new("cpu", "cpu.cfs_quota_us", or_unlimited(quota)));
    }
    if let Some(pids) = limits.pids_limit {
        let value = if pids <= 0 {
            "max".to_owned()
        } else {
            pids.to_string()
        };
        writes.push(Write::new("pids", "pids.max", value));
    }
    Ok(writes)
}

fn or_unlimited(v: i64) -> i64 {
    if v <= 0 { -1 } else { v }
}

fn as_bytes_limit(v: i64) -> i64 {
    if v <= 0 { i64::MAX } else { v }
}

/// The kernel keeps memory+swap >= memory at every step: when the new memory limit is above the
/// current memory+swap limit, memory+swap must be raised first; otherwise memory goes first.
pub(super) fn order_memory(mut writes: Vec<Write>, current_memsw: Option<i64>) -> Vec<Write> {
    let memory = writes.iter().position(|w| w.file == MEMORY);
    let memsw = writes.iter().position(|w| w.file == MEMSW);
    let (Some(mi), Some(si)) = (memory, memsw) else {
        return writes;
    };
    let new_memory = writes[mi]
        .value
        .parse::<i64>()
        .map_or(i64::MAX, as_bytes_limit);
    let current = current_memsw.map_or(i64::MAX, as_bytes_limit);
    let swap_first = new_memory > current;
    if swap_first == (si > mi) {
        writes.swap(mi, si);
    }
    writes
}

/// Creates the cgroup's directory in one hierarchy. In cpuset, every level is created in turn and
/// gets its parent's `cpuset.cpus` and `cpuset.mems` when empty (a new v1 cpuset starts with none,
/// and no task can join it then).
pub(super) fn create_dir(path: &str, dir: &Dir) -> Result<(), Error> {
    let create_error = |rel: &str, source| Error::Create {
        controller: dir.label.clone(),
        path: rel.to_owned(),
        source,
    };
    if !dir.has("cpuset") {
        return fs::create_dir_all(&dir.path).map_err(|e| create_error(path, e));
    }
    let depth = path.split('/').count();
    let Some(root) = dir.path.ancestors().nth(depth) else {
        return Err(create_error(path, io::ErrorKind::NotFound.into()));
    };
    let mut level = root.to_path_buf();
    let mut rel = String::new();
    for component in path.split('/') {
        let parent = level.clone();
        level.push(component);
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(component);
        match fs::create_dir(&level) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create_error(&rel, e)),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            inherit_cpuset(&dir.label, &rel, &parent, &level, file)?;
        }
    }
    Ok(())
}

fn inherit_cpuset(
    label: &str,
    rel: &str,
    parent: &Path,
    dir: &Path,
    file: &str,
) -> Result<(), Error> {
    let read = |p: &Path, shown: &str| {
        fs::read_to_string(p.join(file)).map_err(|source| Error::Read {
            controller: label.to_owned(),
            path: shown.to_owned(),
            file: file.to_owned(),
            source,
        })
    };
    if !read(dir, rel)?.trim().is_empty() {
        return Ok(());
    }
    let parent_rel = rel.rsplit_once('/').map_or("", |(p, _)| p);
    let value = read(parent, parent_rel)?;
    let value = value.trim();
    write_file(&dir.join(file), value).map_err(|source| Error::Write {
        controller: label.to_owned(),
        path: rel.to_owned(),
        file: file.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn freezer(cg: &Cgroup) -> Result<&Dir, Error> {
    cg.dir_for("freezer").ok_or_else(|| Error::NoController {
        controller: "freezer".into(),
        detail: ": its cgroup v1 hierarchy is not mounted",
    })
}

/// Writes `FROZEN` or `THAWED` to `freezer.state` and waits until the state reads back so
/// (`FREEZING` is transient; the write is repeated while waiting, as a stuck freeze may need a
/// nudge). A freeze that does not settle is undone.
pub(super) fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<(), Error> {
    let dir = freezer(cg)?;
    let (want, state) = if frozen {
        ("FROZEN", "frozen")
    } else {
        ("THAWED", "thawed")
    };
    cg.write_dir(dir, "freezer", "freezer.state", want)?;
    let result = cg.wait_until("freezer", state, || {
        let now = cg.read_dir(dir, "freezer", "freezer.state")?;
        if now.trim() == want {
            return Ok(true);
        }
        cg.write_dir(dir, "freezer", "freezer.state", want)?;
        Ok(false)
    });
    if result.is_err() && frozen {
        let _ = cg.write_dir(dir, "freezer", "freezer.state", "THAWED");
    }
    result
}

pub(super) fn is_frozen(cg: &Cgroup) -> Result<bool, Error> {
    match cg.read_opt("freezer", "freezer.state")? {
        Some(state) => Ok(state.trim() != "THAWED"),
        None => Ok(false),
    }
}

pub(super) fn stats(cg: &Cgroup) -> Result<Stats, Error> {
    Ok(Stats {
        cpu_usage_ns: cg.read_u64("cpuacct", "cpuacct.usage")?,
        memory_usage: cg.read_u64("memory", "memory.usage_in_bytes")?,
        memory_limit: cg.read_limit("memory", MEMORY)?,
        pids_current: cg.read_u64("pids", "pids.current")?,
        pids_limit: cg.read_limit("pids", "pids.max")?,
    })
}

/// `memory.oom_control` counts kills in `oom_kill` (Linux 4.13+); older kernels only say
/// `under_oom 1` while the group sits at its limit.
pub(super) fn oom_killed(cg: &Cgroup) -> Result<bool, Error> {
    let Some(text) = cg.read_opt("memory", "memory.oom_control")? else {
        return Ok(false);
    };
    Ok(oom_from_control(&text))
}

fn oom_from_control(text: &str) -> bool {
    match keyed_value(text, "oom_kill") {
        Some(kills) => kills > 0,
        None => keyed_value(text, "under_oom") == Some(1),
    }
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
                "memory/memory.limit_in_bytes = 536870912",
                "memory/memory.memsw.limit_in_bytes = 1073741824",
                "memory/memory.soft_limit_in_bytes = 268435456",
                "cpu/cpu.shares = 512",
                "cpu/cpu.cfs_period_us = 100000",
                "cpu/cpu.cfs_quota_us = 150000",
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
            memory_reservation: Some(0),
            cpu_quota: Some(-1),
            cpu_shares: Some(0),
            cpuset_cpus: Some(String::new()),
            pids_limit: Some(0),
            ..Limits::default()
        };
        assert_eq!(
            lines(&render(&limits).unwrap()),
            [
                "memory/memory.limit_in_bytes = -1",
                "memory/memory.memsw.limit_in_bytes = -1",
                "memory/memory.soft_limit_in_bytes = -1",
                "cpu/cpu.cfs_quota_us = -1",
                "pids/pids.max = max",
            ]
        );
    }

    #[test]
    fn invalid_limits_are_refused() {
        let limits = Limits {
            memory: Some(1 << 30),
            memory_swap: Some(1 << 20),
            ..Limits::default()
        };
        assert!(render(&limits).is_err());
    }

    #[test]
    fn memory_and_swap_are_ordered_for_the_kernel() {
        let files = |limits: &Limits, current| {
            order_memory(render(limits).unwrap(), current)
                .into_iter()
                .map(|w| w.file)
                .collect::<Vec<_>>()
        };
        let grow = Limits {
            memory: Some(128 << 20),
            memory_swap: Some(256 << 20),
            ..Limits::default()
        };
        // Fresh group (memsw unlimited): memory first.
        assert_eq!(files(&grow, None), [MEMORY, MEMSW]);
        assert_eq!(
            files(&grow, Some(9_223_372_036_854_771_712)),
            [MEMORY, MEMSW]
        );
        // Growing past the current memory+swap: memory+swap first.
        assert_eq!(files(&grow, Some(64 << 20)), [MEMSW, MEMORY]);
        // Shrinking: memory first.
        let shrink = Limits {
            memory: Some(32 << 20),
            memory_swap: Some(64 << 20),
            ..Limits::default()
        };
        assert_eq!(files(&shrink, Some(256 << 20)), [MEMORY, MEMSW]);
        // Back to unlimited: memory+swap first.
        let unlimited = Limits {
            memory: Some(-1),
            memory_swap: Some(-1),
            ..Limits::default()
        };
        assert_eq!(files(&unlimited, Some(64 << 20)), [MEMSW, MEMORY]);
        // Memory alone is left as it is.
        let alone = Limits {
            memory: Some(1 << 30),
            ..Limits::default()
        };
        assert_eq!(files(&alone, Some(64 << 20)), [MEMORY]);
    }

    #[test]
    fn oom_control_is_read() {
        assert!(oom_from_control(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
        ));
        assert!(!oom_from_control(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
        ));
        assert!(oom_from_control("oom_kill_disable 1\nunder_oom 1\n"));
        assert!(!oom_from_control("oom_kill_disable 0\nunder_oom 0\n"));
    }
}
