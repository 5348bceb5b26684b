//! Docker credential helpers (`credsStore` and `credHelpers` in the Docker client config): the
//! `docker-credential-<name>` program found on `PATH` is run as `docker-credential-<name> get`,
//! with the server URL on its standard input, and answers one JSON object
//! (`{"ServerURL","Username","Secret"}`) on its standard output, as Docker runs it. A helper
//! that does not know the server says so (`credentials not found…`, non-zero exit): that is no
//! credentials, not an error. A helper that hangs is killed after [`HELPER_TIMEOUT`].

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a helper may take to answer.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The key Docker Hub credentials are stored and asked under.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// Why a credential helper gave no answer; names the helper program and the server.
#[derive(Debug, thiserror::Error)]
#[error("credential helper docker-credential-{helper} (get {server}): {reason}")]
pub struct HelperError {
    pub helper: String,
    pub server: String,
    pub reason: String,
}

/// The helper the Docker config names for `registry` (`credHelpers.<registry>`, else
/// `credsStore`) and the server URL to ask it about; `None` when there is none.
pub fn helper_for(config: &serde_json::Value, registry: &str) -> Option<(String, String)> {
    let hub = registry == super::reference::DEFAULT_REGISTRY;
    let server = if hub { DOCKER_HUB_SERVER } else { registry };
    let keys: &[&str] = if hub {
        &[
            DOCKER_HUB_SERVER,
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
        ]
    } else {
        &[registry]
    };
    let named = |name: &serde_json::Value| {
        name.as_str()
            .filter(|n| valid_helper_name(n))
            .map(str::to_string)
    };
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|helpers| keys.iter().find_map(|k| helpers.get(*k)))
        .and_then(named)
        .or_else(|| config.get("credsStore").and_then(named))?;
    Some((helper, server.to_string()))
}

/// A helper name is a program name suffix: no path separators, nothing that is not printable.
fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != ".."
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` for `server`: its user name and secret, or `None`
/// when it has no credentials for that server.
pub fn get(helper: &str, server: &str) -> Result<Option<(String, String)>, HelperError> {
    let fail = |reason: String| HelperError {
        helper: helper.to_string(),
        server: server.to_string(),
        reason,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(format!("{program} not found in PATH")),
            _ => fail(format!("start {program}: {e}")),
        })?;
    // The server URL, then end of input (a helper reads to the end or to the first newline).
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let readers = [
        child.stdout.take().map(|out| read_all(Box::new(out))),
        child.stderr.take().map(|err| read_all(Box::new(err))),
    ];
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no answer within {} s",
                    HELPER_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
    };
    let [stdout, stderr] =
        readers.map(|r| r.and_then(|handle| handle.join().ok()).unwrap_or_default());
    let stdout = String::from_utf8_lossy(&stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    if !status.success() {
        // Docker's helpers answer an unknown server with this text (on stdout).
        if stdout.contains("credentials not found") || stderr.contains("credentials not found") {
            return Ok(None);
        }
        let said = [stdout.as_str(), stderr.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        return Err(fail(format!(
            "{status}{}{said}",
            if said.is_empty() { "" } else { ": " }
        )));
    }
    let answer: Answer = serde_json::from_str(&stdout)
        .map_err(|e| fail(format!("not a credentials JSON object: {e}")))?;
    if answer.username == "<token>" {
        return Err(fail(
            "an identity token (Username \"<token>\") is not supported: log in with a user name \
             and password"
                .to_string(),
        ));
    }
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((answer.username, answer.secret)))
}

/// Reads a pipe to its end on a thread (so a chatty helper never blocks on a full pipe).
fn read_all(pipe: Box<dyn Read + Send>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut data = Vec::new();
        let _ = pipe.take(1 << 20).read_to_end(&mut data);
        data
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_for_prefers_cred_helpers_then_creds_store() {
        let config = serde_json::json!({
            "credsStore": "desktop",
            "credHelpers": {"127.0.0.1:5000": "pass", "index.docker.io": "hub", "bad": "../x"}
        });
        assert_eq!(
            helper_for(&config, "127.0.0.1:5000"),
            Some(("pass".to_string(), "127.0.0.1:5000".to_string()))
        );
        assert_eq!(
            helper_for(&config, "docker.io"),
            Some(("hub".to_string(), DOCKER_HUB_SERVER.to_string()))
        );
        assert_eq!(
            helper_for(&config, "ghcr.io"),
            Some(("desktop".to_string(), "ghcr.io".to_string()))
        );
        // A name that is not a program suffix is ignored (the store is used instead).
        assert_eq!(
            helper_for(&config, "bad").map(|(h, _)| h).as_deref(),
            Some("desktop")
        );
        assert_eq!(helper_for(&serde_json::json!({}), "ghcr.io"), None);
    }
}
