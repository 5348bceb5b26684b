//! Compose's lifecycle hooks (`post_start`, `pre_stop`): each hook is one command run by the
//! daemon inside the running container through `flotilla shim exec`
//! ([`crate::runtime::exec::command`], the path the exec endpoint and health probes take: no
//! namespace is joined in a daemon thread). The hooks of a list run in order; the first that
//! fails (cannot run, or exits non-zero) ends the list with an error naming it and the tail
//! of its output.
//!
//! `post_start` hooks come from the service of the stack being brought up; `pre_stop` hooks
//! from the configuration a container was created with (its `io.flotilla.config` label), so
//! that every stop of a Compose container (`stop`, `down`, a recreate) runs them; the API's
//! start and restart of a Compose container run its `post_start` hooks from that label too.
//! `privileged: true` is accepted, and the hook runs with the container's own privileges.
//!
//! A list of hooks has a time limit ([`run`]'s `limit`): `pre_stop` hooks the stop's grace
//! period (the stop's `-t`, else the container's `stop_grace_period`, default 10 s), so a hung
//! hook cannot hold a stop or a `down` forever; `post_start` hooks [`POST_START_LIMIT`]. A
//! hook still running at the limit is killed (with what it started in the container) and
//! fails with an error saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value as J;

use crate::plan::labels;
use crate::runtime::exec::{self, ExecOptions};
use crate::spec::model::Hook;

/// How much of a failed hook's output its error shows.
const OUTPUT_TAIL: usize = 400;

/// The time limit of a container's `post_start` hooks (all of them together).
pub const POST_START_LIMIT: Duration = Duration::from_secs(60);

/// The hooks `which` (`post_start` or `pre_stop`) of the configuration in `labels`
/// (`io.flotilla.config`); none when the label is missing or unreadable.
pub fn from_labels(labels: &BTreeMap<String, String>, which: &str) -> Vec<Hook> {
    let Some(config) = labels
        .get(labels::CONFIG)
        .and_then(|c| serde_json::from_str::<J>(c).ok())
    else {
        return Vec::new();
    };
    let Some(J::Array(list)) = config.get(which) else {
        return Vec::new();
    };
    list.iter().filter_map(hook_of).collect()
}

/// One hook of the canonical configuration (environment values `true` are keys without a
/// value there).
fn hook_of(v: &J) -> Option<Hook> {
    let text = |k: &str| v.get(k).and_then(J::as_str).map(str::to_owned);
    let command = match v.get("command") {
        Some(J::Array(a)) => Some(
            a.iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
        ),
        Some(J::String(s)) => Some(crate::spec::units::shell_split(s).ok()?),
        _ => None,
    };
    let mut hook = Hook {
        command,
        user: text("user"),
        privileged: v.get("privileged").and_then(J::as_bool),
        working_dir: text("working_dir"),
        ..Hook::default()
    };
    if let Some(J::Object(env)) = v.get("environment") {
        for (k, val) in env {
            let value = match val {
                J::String(s) => Some(s.clone()),
                J::Number(n) => Some(n.to_string()),
                J::Bool(b) if val != &J::Bool(true) => Some(b.to_string()),
                _ => None,
            };
            hook.environment.insert(k.clone(), value);
        }
    }
    Some(hook)
}

/// Runs `hooks` (named `which` in errors) in order in the running container of state dir
/// `dir`, `shim exec` taken from `exe`, all within `limit`.
pub async fn run(
    dir: &Path,
    exe: &Path,
    which: &str,
    hooks: &[Hook],
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    for (i, hook) in hooks.iter().enumerate() {
        run_one(dir, exe, hook, deadline)
            .await
            .map_err(|e| match e {
                HookError::Failed(e) => format!("{which} hook {}: {e}", i + 1),
                HookError::TimedOut => format!(
                    "{which} hook {}: still running after {} (the {which} hooks' time \
                     limit): killed",
                    i + 1,
                    crate::spec::units::format_duration(limit)
                ),
            })?;
    }
    Ok(())
}

enum HookError {
    Failed(String),
    TimedOut,
}

async fn run_one(dir: &Path, exe: &Path, hook: &Hook, deadline: Instant) -> Result<(), HookError> {
    let fail = HookError::Failed;
    let args = hook.command.clone().unwrap_or_default();
    let options = ExecOptions {
        args,
        env: hook
            .environment
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
        user: hook.user.clone(),
        working_dir: hook.working_dir.clone(),
        tty: false,
        exe: Some(PathBuf::from(exe)),
    };
    let d = dir.to_path_buf();
    let cmd = tokio::task::spawn_blocking(move || exec::command(&d, &options))
        .await
        .map_err(|e| fail(format!("exec task: {e}")))?
        .map_err(|e| fail(e.to_string()))?;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let child = cmd
        .spawn()
        .map_err(|e| fail(format!("run {program}: {e}")))?;
    let pid = child.id();
    let out = match tokio::time::timeout_at(deadline, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| fail(format!("run {program}: {e}")))?,
        Err(_) => {
            // What the joiner started in the container is its child: killed by pid (the
            // joiner itself is killed when its handle is dropped: kill_on_drop).
            if let Some(pid) = pid {
                crate::engine::health::kill_children(pid);
            }
            return Err(HookError::TimedOut);
        }
    };
    if out.status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let code = match (out.status.code(), out.status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => -1,
    };
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let text = text.trim();
    let tail: String = {
        let chars: Vec<char> = text.chars().collect();
        chars[chars.len().saturating_sub(OUTPUT_TAIL)..]
            .iter()
            .collect()
    };
    if tail.is_empty() {
        Err(fail(format!("exited with code {code}")))
    } else {
        Err(fail(format!("exited with code {code}: {tail}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_read_from_the_config_label() {
        let config = serde_json::json!({
            "image": "busybox",
            "pre_stop": [{"command": ["sh", "-c", "echo bye"], "user": "0",
                "environment": {"A": "1", "B": true}}]
        });
        let labels = BTreeMap::from([(labels::CONFIG.to_string(), config.to_string())]);
        let hooks = from_labels(&labels, "pre_stop");
        assert_eq!(hooks.len(), 1);
        assert_eq!(
            hooks[0].command.as_deref(),
            Some(&["sh".to_string(), "-c".into(), "echo bye".into()][..])
        );
        assert_eq!(hooks[0].user.as_deref(), Some("0"));
        assert_eq!(hooks[0].environment["A"].as_deref(), Some("1"));
        assert_eq!(hooks[0].environment["B"], None);
        assert!(from_labels(&labels, "post_start").is_empty());
        assert!(from_labels(&BTreeMap::new(), "pre_stop").is_empty());
    }
}
