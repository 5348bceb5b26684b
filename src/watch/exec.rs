//! `sync+exec`'s command in a container, through the daemon's exec stream (the same API
//! `flotilla compose exec` uses): no stdin, no terminal, its output discarded, its exit code
//! returned (126/127 when it cannot be executed or found, like Docker).

use crate::api::client::Client;
use crate::api::types::ExecCreate;
use crate::spec::model::Hook;

/// Runs `hook.command` in container `id`; its exit code.
pub async fn run(client: &Client, id: &str, hook: &Hook) -> Result<i32, String> {
    let req = ExecCreate {
        cmd: hook.command.clone().unwrap_or_default(),
        env: hook
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
            .collect(),
        user: hook.user.clone(),
        working_dir: hook.working_dir.clone(),
        ..ExecCreate::default()
    };
    let session = client
        .exec(id, &req)
        .await
        .map_err(|e| format!("container {id}: exec: {e}"))?;
    let out = session
        .output()
        .await
        .map_err(|e| format!("container {id}: exec: {e}"))?;
    if let Some(e) = out.errors.first() {
        return Err(format!("container {id}: exec: {e}"));
    }
    out.exit_code
        .ok_or_else(|| format!("container {id}: exec: the stream ended without an exit code"))
}
