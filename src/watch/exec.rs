//! `sync+exec`'s command in a container: today through the runtime's exec library in this
//! process (as `flotilla compose exec` does, on the daemon's data root), one function so that it
//! can move onto the API's exec stream when that exists.

use std::path::Path;

use crate::runtime::exec::{self, ExecOptions};
use crate::runtime::lifecycle::Runtime;
use crate::spec::model::Hook;

/// Runs `hook.command` in container `id` of data root `data_root`; its exit code.
pub fn run(data_root: &Path, id: &str, hook: &Hook) -> Result<i32, String> {
    let rt = Runtime::new(data_root).map_err(|e| e.to_string())?;
    let options = ExecOptions {
        args: hook.command.clone().unwrap_or_default(),
        env: hook
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
            .collect(),
        user: hook.user.clone(),
        working_dir: hook.working_dir.clone(),
        tty: false,
        exe: None,
    };
    let mut cmd = exec::command(&rt.dir(id), &options).map_err(|e| e.to_string())?;
    cmd.stdin(std::process::Stdio::null());
    let status = cmd
        .status()
        .map_err(|e| format!("container {id}: exec: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 125,
    })
}
