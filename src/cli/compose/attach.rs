//! Attached `up`: once the project is up, the logs of its service containers (those of the
//! services asked for, all when none; `--attach`/`--no-attach` narrow it) are printed with
//! Compose's prefixes, from the moment `up` began. `up` returns when every attached container
//! has exited. Ctrl-C stops the containers gracefully, all at once, through the API (a second
//! Ctrl-C kills them, a third returns at once), and the exit code is then 130.
//! `--abort-on-container-exit` stops them all when the first one exits; `--exit-code-from SVC`
//! (which implies it) exits with that service's container's exit code, else the first exited
//! container's code is the exit code. Containers created after `up` returned its plan, or
//! restarted by their restart policy after their log ended, are not followed.

use tokio::signal::unix::Signal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::logs::{Followed, Printer, colours, spawn_follow};
use super::ops::{exit_byte, kill_all, stop_all};
use super::{UpArgs, out, project_containers, service_of, short_name};
use crate::api::client::{Client, LogsQuery};
use crate::api::types::{Container, ContainerStatus};

/// What Compose says at the first Ctrl-C.
pub(super) const GRACEFUL: &str = "Gracefully stopping... (press Ctrl+C again to force)";
/// The exit code after a Ctrl-C (128 + SIGINT, what shells report).
pub(super) const INTERRUPTED: u8 = 130;

/// Follows the project's logs until its attached containers have exited; the exit code.
/// `interrupted`: a Ctrl-C came while the project was coming up (it is stopped at once).
pub(super) async fn attached(
    client: &Client,
    project: &str,
    args: &UpArgs,
    since: &str,
    sigint: &mut Signal,
    interrupted: bool,
) -> Result<u8, String> {
    let list = project_containers(client, project, true)
        .await
        .map_err(|e| format!("up: {e}"))?;
    let targets: Vec<Container> = list
        .into_iter()
        .filter(|c| args.services.is_empty() || args.services.contains(&service_of(c)))
        .collect();
    let watched: Vec<Container> = targets
        .iter()
        .filter(|c| {
            let s = service_of(c);
            args.exit_code_from.as_ref() == Some(&s)
                || ((args.attach.is_empty() || args.attach.contains(&s))
                    && !args.no_attach.contains(&s))
        })
        .cloned()
        .collect();
    let names: Vec<String> = watched.iter().map(short_name).collect();
    let printer = Printer::new(
        &names,
        !args.no_log_prefix,
        colours(args.no_color),
        args.timestamps,
    );
    let cascade = args.abort_on_container_exit || args.exit_code_from.is_some();
    let mut session = Session {
        client: client.clone(),
        targets,
        timeout: args.timeout,
        tasks: Vec::new(),
        stopping: false,
        killed: false,
        interrupts: 0,
    };
    if interrupted {
        session.interrupt();
    }
    if watched.is_empty() {
        return Ok(session.finish(0, sigint).await);
    }
    out(&format!("Attaching to {}\n", names.join(", "))).map_err(|e| format!("up: {e}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let service: std::collections::HashMap<String, String> = watched
        .iter()
        .map(|c| (short_name(c), service_of(c)))
        .collect();
    let q = LogsQuery {
        follow: true,
        tail: None,
        since: Some(since.to_string()),
    };
    for c in &watched {
        spawn_follow(client, c, q.clone(), tx.clone());
    }
    drop(tx);
    let mut left = watched.len();
    let mut code: Option<i32> = None;
    while left > 0 {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                match msg {
                    Followed::Line(name, l) => printer.print(&name, &l).map_err(|e| format!("up: {e}"))?,
                    Followed::End(name, error) => {
                        left -= 1;
                        let exit = match error {
                            Some(e) => {
                                eprintln!("up: {name}: {e}");
                                None
                            }
                            None => exit_code(client, &watched, &name).await,
                        };
                        let text = match exit {
                            Some(n) => format!("exited with code {n}"),
                            None => "exited".into(),
                        };
                        out(&printer.status(&name, &text)).map_err(|e| format!("up: {e}"))?;
                        if !cascade {
                            continue;
                        }
                        let svc = service.get(&name);
                        let from = args.exit_code_from.as_ref().or(svc);
                        if code.is_none() && from == svc {
                            code = exit;
                        }
                        if !session.stopping {
                            let _ = out("Aborting on container exit...\n");
                            session.stop();
                        }
                    }
                }
            }
            _ = sigint.recv() => {
                if session.interrupt() {
                    return Ok(INTERRUPTED);
                }
            }
        }
    }
    Ok(session.finish(code.map_or(0, exit_byte), sigint).await)
}

/// The exit code of the container whose short name is `name`.
async fn exit_code(client: &Client, watched: &[Container], name: &str) -> Option<i32> {
    let c = watched.iter().find(|c| short_name(c) == name)?;
    client.wait_container(&c.id).await.ok().map(|e| e.exit_code)
}

/// The stopping side of an attached `up`.
struct Session {
    client: Client,
    targets: Vec<Container>,
    timeout: Option<u64>,
    /// The stop (Ctrl-C or abort) and the kill (second Ctrl-C) under way.
    tasks: Vec<JoinHandle<()>>,
    stopping: bool,
    killed: bool,
    interrupts: u32,
}

impl Session {
    /// Starts stopping every target at once (progress lines as they stop).
    fn stop(&mut self) {
        let client = self.client.clone();
        let targets = self.targets.clone();
        let timeout = self.timeout;
        self.stopping = true;
        self.tasks.push(tokio::spawn(async move {
            stop_all(&client, &targets, timeout).await;
        }));
    }

    /// A Ctrl-C: the first stops (or kills when an abort is already stopping), the next one
    /// kills; true when the caller should return now (a Ctrl-C after the kill).
    fn interrupt(&mut self) -> bool {
        self.interrupts += 1;
        if !self.stopping {
            eprintln!("{GRACEFUL}");
            self.stop();
            false
        } else if !self.killed {
            self.kill();
            false
        } else {
            true
        }
    }

    fn kill(&mut self) {
        self.killed = true;
        let client = self.client.clone();
        let targets = self.targets.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut up = Vec::new();
            for c in &targets {
                if let Ok(now) = client.inspect_container(&c.id).await
                    && matches!(
                        now.state.status,
                        ContainerStatus::Running | ContainerStatus::Paused
                    )
                {
                    up.push(now);
                }
            }
            kill_all(&client, &up).await;
        }));
    }

    /// Waits until the stop and kill under way are done (a Ctrl-C meanwhile escalates); the
    /// exit code (130 after a Ctrl-C).
    async fn finish(mut self, code: u8, sigint: &mut Signal) -> u8 {
        while let Some(mut task) = self.tasks.pop() {
            loop {
                tokio::select! {
                    _ = &mut task => break,
                    _ = sigint.recv() => {
                        if self.interrupt() {
                            return INTERRUPTED;
                        }
                    }
                }
            }
        }
        if self.interrupts > 0 {
            INTERRUPTED
        } else {
            code
        }
    }
}
