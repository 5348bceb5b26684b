//! Live restore: what the daemon does with the data root it finds at start, before it listens.
//!
//! - **Half-created containers.** `Runtime::create` claims the name file
//!   (`containers/names/<name>`), makes the state dir, writes `config.json`, then `meta.json`,
//!   then `state.json` — last, so *a state dir is complete when it has both `meta.json` and
//!   `state.json`*. A dir without them was left by an interrupted create: its cgroup
//!   (`flotilla-<prefix>/<id>`), any mount under it, the name file pointing at it and the dir are
//!   removed. Name files whose container dir is not complete are removed too.
//! - **Running containers** (shim alive: pid and start time as `state.json` records them) are
//!   re-adopted: the caller starts watching them for their exit.
//! - **Containers whose shim died** while `state.json` says running or paused are marked exited
//!   with the exit code the shim recorded, or 255 when it recorded none; what is left of their
//!   processes is killed through their cgroup.
//! - The image store's `tmp/` (half-written blobs, half-unpacked layers) is emptied, and empty
//!   cgroups under this daemon's prefix are removed.
//!
//! Everything here is blocking and runs once, while no request can arrive.

use std::fs;
use std::path::Path;

use crate::runtime::lifecycle::{self, LifecycleError, Runtime};
use crate::runtime::state::{self, State, Status};
use crate::runtime::sys::cgroup::{self, Cgroup};
use crate::runtime::time;

/// The exit code of a container whose shim died without recording one.
pub const UNKNOWN_EXIT: i32 = 255;

/// What live restore found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Containers whose shim is alive: (id, name, image).
    pub running: Vec<(String, String, Option<String>)>,
    /// Containers whose shim had died, now marked exited, with their exit code.
    pub settled: Vec<(String, i32)>,
    /// Half-created container dirs removed.
    pub removed_partial: Vec<String>,
    /// Name claims without a complete container removed.
    pub removed_names: Vec<String>,
    /// Entries removed from the image store's `tmp/`.
    pub image_tmp: usize,
    /// Empty cgroups removed under the prefix.
    pub cgroups: usize,
}

fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the state dir `dir` is a complete container (see the module doc).
pub fn is_complete(dir: &Path) -> bool {
    dir.join("meta.json").is_file() && dir.join(state::STATE_FILE).is_file()
}

/// Marks a container whose shim died as exited (the recorded exit code, else 255) and kills
/// what is left of its processes. Returns the new state.
pub fn settle_dead(rt: &Runtime, id: &str) -> Result<State, LifecycleError> {
    let meta = rt.meta(id)?;
    let dir = rt.dir(id);
    let mut st = state::read(&dir).map_err(|source| LifecycleError::State {
        id: id.to_string(),
        source,
    })?;
    if !matches!(st.status, Status::Running | Status::Paused) {
        return Ok(st);
    }
    if let Some(path) = &meta.cgroup
        && let Ok(cg) = Cgroup::open(path)
    {
        let _ = cg.thaw();
        let _ = cg.kill_all(rustix::process::Signal::KILL);
    }
    st.status = Status::Exited;
    st.exit_code = Some(st.exit_code.unwrap_or(UNKNOWN_EXIT));
    st.finished_at = Some(time::now());
    st.error
        .get_or_insert_with(|| "the container's shim died; exit status unknown".to_string());
    state::write(&dir, &st).map_err(|source| LifecycleError::State {
        id: id.to_string(),
        source,
    })?;
    Ok(st)
}

/// Removes a half-created container dir and what it may hold.
fn remove_partial(rt: &Runtime, data_root: &Path, id: &str) {
    let dir = rt.dir(id);
    let path = format!("{}/{id}", cgroup::prefix_dir(rt.prefix()));
    if let Ok(cg) = Cgroup::open(&path)
        && let Err(e) = cg.destroy(true)
    {
        tracing::warn!(id, error = %e, "restore: remove the cgroup of a half-created container");
    }
    for m in lifecycle::mounts_under(&dir).iter().rev() {
        let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
    }
    let names = data_root.join("containers/names");
    for entry in fs::read_dir(&names).into_iter().flatten().flatten() {
        if fs::read_to_string(entry.path()).is_ok_and(|owner| owner.trim() == id) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Err(e) = fs::remove_dir_all(&dir) {
        tracing::warn!(id, error = %e, "restore: remove a half-created container");
    }
}

/// Runs live restore over `data_root` (see the module doc).
pub fn restore(rt: &Runtime, data_root: &Path) -> RestoreReport {
    let mut report = RestoreReport::default();
    let containers = data_root.join("containers");
    let mut complete = Vec::new();
    for entry in fs::read_dir(&containers).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_id(&name) {
            continue;
        }
        if is_complete(&entry.path()) {
            complete.push(name);
        } else {
            remove_partial(rt, data_root, &name);
            report.removed_partial.push(name);
        }
    }
    for entry in fs::read_dir(containers.join("names"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let owner = fs::read_to_string(entry.path()).unwrap_or_default();
        let owner = owner.trim();
        if !is_id(owner) || !is_complete(&containers.join(owner)) {
            let _ = fs::remove_file(entry.path());
            report
                .removed_names
                .push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    for id in complete {
        let c = match rt.inspect(&id) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(id, error = %e, "restore: read a container");
                continue;
            }
        };
        match c.state.status {
            Status::Running | Status::Paused => {
                report.running.push((id, c.meta.name, c.meta.image));
            }
            Status::Dead => match settle_dead(rt, &id) {
                Ok(st) => report
                    .settled
                    .push((id, st.exit_code.unwrap_or(UNKNOWN_EXIT))),
                Err(e) => tracing::warn!(id, error = %e, "restore: mark a dead container exited"),
            },
            Status::Created | Status::Exited => {}
        }
    }
    match crate::image::store::Store::open(data_root).and_then(|s| s.cleanup_tmp()) {
        Ok(n) => report.image_tmp = n,
        Err(e) => tracing::warn!(error = %e, "restore: clean the image store's tmp/"),
    }
    // Staging dirs of archive (cp) requests a previous daemon did not finish.
    if let Err(e) = std::fs::remove_dir_all(data_root.join(CP_STAGING))
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "restore: clean the cp staging dir");
    }
    match cgroup::cleanup_prefix(rt.prefix()) {
        Ok(n) => report.cgroups = n,
        Err(e) => tracing::debug!(error = %e, "restore: clean empty cgroups"),
    }
    report
}

/// The directory under the data root where archive (cp) requests stage files.
pub const CP_STAGING: &str = "cp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_created_dirs_and_orphan_names_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path())
            .unwrap()
            .with_prefix(&format!("restoretest-{}", std::process::id()));
        let containers = dir.path().join("containers");
        let partial = "a".repeat(64);
        let whole = "b".repeat(64);
        fs::create_dir_all(containers.join(&partial).join("upper")).unwrap();
        fs::write(containers.join(&partial).join("config.json"), "{}").unwrap();
        fs::create_dir_all(containers.join(&whole)).unwrap();
        fs::create_dir_all(containers.join("names")).unwrap();
        fs::write(containers.join("names/half"), &partial).unwrap();
        fs::write(containers.join("names/gone"), "c".repeat(64)).unwrap();
        let report = restore(&rt, dir.path());
        assert_eq!(report.removed_partial.len(), 2, "{report:?}");
        assert!(!containers.join(&partial).exists());
        assert!(!containers.join("names/half").exists());
        assert!(!containers.join("names/gone").exists());
    }
}
