//! The watch loop (it runs in the CLI, like Compose's, and reaches the daemon through the API).
//! One notify watcher (inotify: no polling, nothing to do while nothing changes) on the rules'
//! roots (recursive) and on the directories of the stack files (editors replace files by
//! renaming, so files are watched through their directory). Events are batched: a batch closes
//! once [`QUIET`] passed without a new event, or [`MAX_BATCH`] after it opened. Each path of a
//! batch is compared with what was seen ([`Tree`]: content hashes), so a save that changes
//! nothing does nothing; then
//! - a stack file, `.env` or env file changed: the stack is loaded again; a stack that does not
//!   load is reported (located) and nothing changes; a good one goes to the reconciler (`up`),
//!   which recreates only what differs; the rules follow the new stack;
//! - per service, one action for all its files: `sync` (one `POST /v1/projects/{name}/sync`
//!   with every file and deletion), `sync+restart`/`restart` (the same request restarts the
//!   replicas), `sync+exec` (then `exec.command` in each replica), `rebuild` (an `up` of the service
//!   alone with the `build` pull policy: its image built again with the cache, its containers
//!   recreated when the image changed).
//!
//! Every action is one line: which file(s), which service, which action, how long it took.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::rules::{Action, Rules};
use super::tree::{Observed, Tree};
use crate::api::client::Client;
use crate::api::sync::{ProjectSync, SyncFile};
use crate::api::types::ProjectUp;
use crate::plan::labels;
use crate::spec::load::Loaded;
use crate::spec::model::Project;

/// A batch closes once this passed without a new event.
pub const QUIET: Duration = Duration::from_millis(50);
/// A batch closes at the latest this long after it opened (a tree that never stops changing).
pub const MAX_BATCH: Duration = Duration::from_secs(1);
/// Content per sync request (the daemon reads at most 64 MiB; base64 adds a third).
const MAX_REQUEST: usize = 24 << 20;
/// File names listed in an event line before `(+N more)`.
const SHOWN: usize = 3;

/// What the session needs from the command that runs it.
pub trait Host {
    /// Loads the stack again (all problems, located, in the error).
    fn load(&self) -> Result<Loaded, String>;
    /// The `up` request that converges the project to `loaded`.
    fn up_request(&self, loaded: &Loaded) -> ProjectUp;
    /// Prints one watch event (a line, or a line and the located errors under it).
    fn line(&self, text: &str);
    /// Called after each batch's actions (attached `up` follows new containers then).
    fn acted(&self) {}
}

/// What one service gets from a batch.
#[derive(Default)]
struct Work {
    rules: BTreeSet<usize>,
    files: Vec<SyncFile>,
    shown: Vec<String>,
}

struct Session<H: Host> {
    host: H,
    client: Client,
    project: String,
    services: Vec<String>,
    project_dir: PathBuf,
    stack_files: HashSet<PathBuf>,
    rules: Rules,
    tree: Tree,
    watcher: Option<RecommendedWatcher>,
    watched: Vec<(PathBuf, RecursiveMode)>,
    tx: mpsc::UnboundedSender<PathBuf>,
}

/// Watches until `stop` completes. `services`: only their rules (all when empty).
pub async fn run<H: Host>(
    host: H,
    client: Client,
    loaded: Loaded,
    services: Vec<String>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut s = Session {
        host,
        client,
        project: loaded.name.clone(),
        services,
        project_dir: loaded.project_dir.clone(),
        stack_files: HashSet::new(),
        rules: Rules::default(),
        tree: Tree::default(),
        watcher: None,
        watched: Vec::new(),
        tx,
    };
    s.configure(&loaded)?;
    s.initial_sync().await;
    s.host.line(&format!(
        "watch: watching {} stack file(s) and {} rule(s) of project {} ({} files)",
        s.stack_files.len(),
        s.rules.all().len(),
        s.project,
        s.tree.len()
    ));
    tokio::pin!(stop);
    let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
    let mut opened: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        let deadline = opened.map(|o| (last + QUIET).min(o + MAX_BATCH));
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            p = rx.recv() => {
                let Some(p) = p else {
                    return Err("watch: the file watcher stopped".into());
                };
                pending.insert(p);
                last = Instant::now();
                opened.get_or_insert(last);
            }
            _ = timer => {
                let batch = std::mem::take(&mut pending);
                let started = opened.take().unwrap_or(last);
                s.flush(batch, started).await;
            }
        }
    }
}

/// `n ms` or `n.n s`.
fn took(since: Instant) -> String {
    let ms = since.elapsed().as_millis();
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `a, b, c (+N more)`.
fn listed(names: &[String]) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    let mut s = unique
        .iter()
        .take(SHOWN)
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if unique.len() > SHOWN {
        s.push_str(&format!(" (+{} more)", unique.len() - SHOWN));
    }
    s
}

impl<H: Host> Session<H> {
    /// `path` as shown: relative to the project directory when under it.
    fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.project_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Rules, stack files and watches for `loaded`; new trees are scanned.
    fn configure(&mut self, loaded: &Loaded) -> Result<(), String> {
        let project: Project = serde_json::from_value(loaded.config.clone())
            .map_err(|e| format!("watch: read the stack: {e}"))?;
        let rules = Rules::new(&project, &self.services);
        let mut stack_files: HashSet<PathBuf> = loaded.files.iter().cloned().collect();
        stack_files.insert(loaded.project_dir.join(".env"));
        let mut wanted: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        for f in &stack_files {
            if let Some(dir) = f.parent() {
                let w = (dir.to_path_buf(), RecursiveMode::NonRecursive);
                if !wanted.contains(&w) {
                    wanted.push(w);
                }
            }
        }
        for root in rules.roots() {
            let w = if root.is_dir() {
                (root.clone(), RecursiveMode::Recursive)
            } else {
                match root.parent() {
                    Some(dir) => (dir.to_path_buf(), RecursiveMode::NonRecursive),
                    None => continue,
                }
            };
            if !wanted.contains(&w) {
                wanted.push(w);
            }
        }
        // What is no longer a root is forgotten; new roots and stack files are scanned.
        for old in self.rules.roots() {
            if !rules.roots().contains(&old) {
                self.tree.forget(&old);
            }
        }
        for (i, r) in rules.all().iter().enumerate() {
            if self.tree.contains(&r.root) {
                continue;
            }
            let root = r.root.clone();
            let prune = |p: &Path| {
                let rel = p.strip_prefix(&root).unwrap_or(p).to_string_lossy();
                rules.prunes(i, &rel)
            };
            self.tree.scan(&r.root, &prune);
        }
        for f in &stack_files {
            if !self.tree.contains(f) {
                self.tree.scan(f, &|_| false);
            }
        }
        if wanted != self.watched || self.watcher.is_none() {
            let tx = self.tx.clone();
            let mut watcher =
                notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                    let Ok(ev) = res else { return };
                    if ev.need_rescan() {
                        // Events were lost (the kernel's queue overflowed): look at everything.
                        let _ = tx.send(PathBuf::new());
                    }
                    if matches!(ev.kind, EventKind::Access(_)) {
                        return;
                    }
                    for p in ev.paths {
                        let _ = tx.send(p);
                    }
                })
                .map_err(|e| format!("watch: start the file watcher: {e}"))?;
            for (path, mode) in &wanted {
                if let Err(e) = watcher.watch(path, *mode) {
                    self.host
                        .line(&format!("watch: cannot watch {}: {e}", self.show(path)));
                }
            }
            self.watcher = Some(watcher);
            self.watched = wanted;
        }
        self.stack_files = stack_files;
        self.rules = rules;
        Ok(())
    }

    /// `initial_sync: true` rules: their whole trees, once, at start.
    async fn initial_sync(&mut self) {
        let mut work: BTreeMap<String, Work> = BTreeMap::new();
        for (i, r) in self.rules.all().iter().enumerate() {
            if !r.initial_sync || !r.action.syncs() {
                continue;
            }
            let mut stack = vec![r.root.clone()];
            while let Some(p) = stack.pop() {
                let Ok(meta) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                let hits = self.rules.route(&p);
                let Some(hit) = hits.iter().find(|h| h.rule == i) else {
                    continue;
                };
                if meta.is_dir() {
                    if let Ok(rd) = std::fs::read_dir(&p) {
                        stack.extend(rd.flatten().map(|e| e.path()));
                    }
                } else if meta.is_file()
                    && let (Ok(content), Some(target)) = (std::fs::read(&p), &hit.target)
                {
                    use std::os::unix::fs::PermissionsExt;
                    let w = work.entry(r.service.clone()).or_default();
                    w.rules.insert(i);
                    w.files.push(SyncFile::write(
                        target,
                        &content,
                        meta.permissions().mode() & 0o7777,
                    ));
                    w.shown.push(self.show(&p));
                }
            }
        }
        for (service, w) in work {
            self.act(&service, w, true).await;
        }
    }

    async fn flush(&mut self, mut batch: BTreeSet<PathBuf>, started: Instant) {
        let mut stack_changed: Vec<String> = Vec::new();
        let mut work: BTreeMap<String, Work> = BTreeMap::new();
        if batch.remove(Path::new("")) {
            // A rescan: every path seen and every path there now is compared.
            batch.extend(self.stack_files.iter().cloned());
            for root in self.rules.roots() {
                batch.extend(self.tree.paths_under(&root));
                let mut dirs = vec![root];
                while let Some(d) = dirs.pop() {
                    let Ok(rd) = std::fs::read_dir(&d) else {
                        continue;
                    };
                    for e in rd.flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            dirs.push(e.path());
                        }
                        batch.insert(e.path());
                    }
                }
            }
        }
        let mut queue: Vec<PathBuf> = batch.into_iter().rev().collect();
        let mut seen: HashSet<PathBuf> = HashSet::new();
        while let Some(p) = queue.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            let is_stack = self.stack_files.contains(&p);
            let hits = self.rules.route(&p);
            if !is_stack && hits.is_empty() {
                continue;
            }
            let (content, deleted) = match self.tree.observe(&p) {
                Observed::Same => continue,
                Observed::NewDir => {
                    // Its files may have been written before the watch on it existed.
                    if let Ok(rd) = std::fs::read_dir(&p) {
                        queue.extend(rd.flatten().map(|e| e.path()));
                    }
                    continue;
                }
                Observed::File { content, mode } => (Some((content, mode)), false),
                Observed::Gone => (None, true),
            };
            if is_stack {
                stack_changed.push(self.show(&p));
            }
            for h in hits {
                let rule = &self.rules.all()[h.rule];
                let w = work.entry(rule.service.clone()).or_default();
                w.rules.insert(h.rule);
                w.shown.push(if deleted {
                    format!("{} (deleted)", self.show(&p))
                } else {
                    self.show(&p)
                });
                if let (true, Some(target)) = (rule.action.syncs(), &h.target) {
                    w.files.push(match &content {
                        Some((data, mode)) => SyncFile::write(target, data, *mode),
                        None => SyncFile::delete(target),
                    });
                }
            }
        }
        if stack_changed.is_empty() && work.is_empty() {
            return;
        }
        if !stack_changed.is_empty() {
            self.redeploy(&stack_changed, started).await;
        }
        for (service, w) in work {
            self.act(&service, w, false).await;
        }
        self.host.acted();
    }

    /// Sends `req` to the reconciler: the containers changed, the errors, whether it ended ok.
    async fn converge(&mut self, req: &ProjectUp) -> (Vec<String>, Vec<String>, bool) {
        let mut changes: Vec<String> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut ok = false;
        match self.client.project_up(&self.project, req).await {
            Err(e) => errors.push(e.to_string()),
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let p = match item {
                        Ok(p) => p,
                        Err(e) => {
                            errors.push(e.to_string());
                            break;
                        }
                    };
                    match (p.kind.as_str(), p.status.as_str()) {
                        ("done", "ok") => ok = true,
                        ("done", _) => errors.push(p.detail.unwrap_or_else(|| "failed".into())),
                        (_, "Error") => {
                            errors.push(format!("{}: {}", p.name, p.detail.unwrap_or_default()))
                        }
                        ("container", s @ ("Recreated" | "Created" | "Removed" | "Stopped")) => {
                            changes.push(format!("{} {}", p.name, s.to_lowercase()))
                        }
                        _ => {}
                    }
                }
            }
        }
        (changes, errors, ok)
    }

    /// `rebuild`: the service's image built again (with the cache) and its containers recreated
    /// when the image changed — an `up` of that service alone with the `build` pull policy.
    async fn rebuild(&mut self, service: &str, files: &str, started: Instant) {
        let loaded = match self.host.load() {
            Ok(l) => l,
            Err(e) => {
                self.host.line(&format!(
                    "watch: {service}: rebuild {files}: not done, the stack does not load                      ({}):\n{e}",
                    took(started)
                ));
                return;
            }
        };
        let mut req = self.host.up_request(&loaded);
        req.services = vec![service.to_string()];
        req.no_deps = true;
        req.pull = Some("build".to_string());
        let (changes, mut errors, ok) = self.converge(&req).await;
        if ok && errors.is_empty() {
            let what = if changes.is_empty() {
                "image unchanged".to_string()
            } else {
                changes.join(", ")
            };
            self.host.line(&format!(
                "watch: {service}: rebuild {files}: rebuilt: {what} ({})",
                took(started)
            ));
        } else {
            if errors.is_empty() {
                errors.push("the daemon ended the stream early".into());
            }
            self.host.line(&format!(
                "watch: {service}: rebuild {files}: failed ({}): {}",
                took(started),
                errors.join("; ")
            ));
        }
    }

    /// Loads the stack again and converges the project to it.
    async fn redeploy(&mut self, changed: &[String], started: Instant) {
        let files = listed(changed);
        let loaded = match self.host.load() {
            Ok(l) => l,
            Err(e) => {
                self.host.line(&format!(
                    "watch: {files} changed: not applied, the stack keeps running as it was \
                     ({}):\n{e}",
                    took(started)
                ));
                return;
            }
        };
        let req = self.host.up_request(&loaded);
        let (changes, mut errors, ok) = self.converge(&req).await;
        if ok && errors.is_empty() {
            let what = if changes.is_empty() {
                "nothing to change".to_string()
            } else {
                changes.join(", ")
            };
            self.host.line(&format!(
                "watch: {files} changed: redeployed: {what} ({})",
                took(started)
            ));
        } else {
            if errors.is_empty() {
                errors.push("the daemon ended the stream early".into());
            }
            self.host.line(&format!(
                "watch: {files} changed: redeploy failed ({}): {}",
                took(started),
                errors.join("; ")
            ));
        }
        if let Err(e) = self.configure(&loaded) {
            self.host.line(&e);
        }
    }

    /// One service's action for a batch; `initial`: the initial sync (copies only: restarts
    /// and runs nothing).
    async fn act(&mut self, service: &str, w: Work, initial: bool) {
        let t0 = Instant::now();
        let rules: Vec<_> = w
            .rules
            .iter()
            .map(|i| self.rules.all()[*i].clone())
            .collect();
        let Some(action) = rules.iter().map(|r| r.action).max() else {
            return;
        };
        let name = if initial {
            "initial sync"
        } else {
            action.name()
        };
        let files = listed(&w.shown);
        if action == Action::Rebuild {
            if !initial {
                self.rebuild(service, &files, t0).await;
            }
            return;
        }
        let restart = !initial && rules.iter().any(|r| r.action.restarts());
        let mut chunks: Vec<Vec<SyncFile>> = vec![Vec::new()];
        let mut size = 0;
        for f in w.files {
            let n = f.content.as_ref().map_or(0, String::len);
            if size + n > MAX_REQUEST
                && let Some(last) = chunks.last()
                && !last.is_empty()
            {
                chunks.push(Vec::new());
                size = 0;
            }
            size += n;
            if let Some(last) = chunks.last_mut() {
                last.push(f);
            }
        }
        let count = chunks.len();
        let mut synced = None;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let req = ProjectSync {
                service: service.to_string(),
                files: chunk,
                restart: restart && i + 1 == count,
                timeout: None,
            };
            match self.client.project_sync(&self.project, &req).await {
                Ok(r) => synced = Some(r),
                Err(e) => {
                    self.host.line(&format!(
                        "watch: {service}: {name} {files}: failed: {e} ({})",
                        took(t0)
                    ));
                    return;
                }
            }
        }
        let Some(synced) = synced else { return };
        let mut notes = Vec::new();
        for r in rules
            .iter()
            .filter(|r| !initial && r.action == Action::SyncExec)
        {
            let Some(hook) = &r.exec else { continue };
            match self.exec_all(service, hook).await {
                Ok(failed) if failed.is_empty() => {}
                Ok(failed) => notes.push(format!("exec failed in {}", failed.join(", "))),
                Err(e) => notes.push(format!("exec: {e}")),
            }
        }
        let n = synced.containers.len();
        let mut line = format!(
            "watch: {service}: {name} {files} → {n} container{}{}",
            if n == 1 { "" } else { "s" },
            if synced.restarted { " restarted" } else { "" }
        );
        if !notes.is_empty() {
            line.push_str(&format!(" ({})", notes.join("; ")));
        }
        line.push_str(&format!(" ({})", took(t0)));
        self.host.line(&line);
    }

    /// Runs `hook` in every running replica of `service`; those where it failed.
    async fn exec_all(
        &mut self,
        service: &str,
        hook: &crate::spec::model::Hook,
    ) -> Result<Vec<String>, String> {
        let list = self
            .client
            .list_containers_with(false, &format!("{}={}", labels::PROJECT, self.project))
            .await
            .map_err(|e| e.to_string())?;
        let mut failed = Vec::new();
        for c in list {
            if c.labels.get(labels::SERVICE).map(String::as_str) != Some(service)
                || c.labels.get(labels::ONEOFF).map(String::as_str) == Some(labels::TRUE)
            {
                continue;
            }
            match super::exec::run(&self.client, &c.id, hook).await {
                Ok(0) => {}
                Ok(code) => failed.push(format!("{} (exit code {code})", c.name)),
                Err(e) => failed.push(format!("{} ({e})", c.name)),
            }
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_a_few_names() {
        let names: Vec<String> = ["a", "b", "a", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(listed(&names), "a, b, c (+2 more)");
        assert_eq!(listed(&names[..2]), "a, b");
    }
}
