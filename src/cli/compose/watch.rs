//! `flotilla watch` and `flotilla up --watch`: the stack is brought up (unless `--no-up`), then
//! [`crate::watch::session`] applies each edit of the stack files and of the services'
//! `develop.watch` trees, one line per action. `watch` prints only those lines and runs until
//! Ctrl-C (the containers keep running). `up --watch` is attached: the containers' logs
//! (prefixed, as `up` prints them) interleaved with the watch lines; a container that a watch
//! action restarted or recreated is followed again (from where its log ended); Ctrl-C stops the
//! containers (a second one kills them) and exits 130.

use std::collections::HashMap;

use clap::Args;
use tokio::signal::unix::Signal;
use tokio::sync::mpsc;

use super::attach::{GRACEFUL, INTERRUPTED};
use super::logs::{Followed, Printer, colours, spawn_follow};
use super::ops::{kill_all, stop_all};
use super::{
    UpArgs, check_service, declared_services, load_stack, out, project_containers, short_name, up,
    up_request,
};
use crate::api::client::{Client, LogsQuery, block_on};
use crate::api::types::{ContainerStatus, ProjectUp};
use crate::cli::system::{HostArgs, engine_client};
use crate::cli::{EngineArgs, ProjectArgs};
use crate::spec::load::Loaded;
use crate::watch::session::{self, Host};

#[derive(Args, Debug, Clone, Default)]
pub struct WatchArgs {
    /// Do not bring the stack up first (watch what runs)
    #[arg(long)]
    pub no_up: bool,
    /// Only these services' `develop.watch` rules (and only them in the first `up`)
    pub services: Vec<String>,
}

/// The CLI side of a watch session: reloads with the command's options, prints lines.
struct CliHost<'a> {
    project: &'a ProjectArgs,
    up: UpArgs,
    /// Wakes the attached loop after actions (it follows new containers then).
    acted: Option<mpsc::UnboundedSender<()>>,
}

impl Host for CliHost<'_> {
    fn load(&self) -> Result<Loaded, String> {
        load_stack(self.project)
    }

    fn up_request(&self, loaded: &Loaded) -> ProjectUp {
        up_request(loaded, &self.up).unwrap_or_else(|_| ProjectUp {
            project: loaded.config.clone(),
            services: self.up.services.clone(),
            ..ProjectUp::default()
        })
    }

    fn line(&self, text: &str) {
        let _ = out(&format!("{text}\n"));
    }

    fn acted(&self) {
        if let Some(tx) = &self.acted {
            let _ = tx.send(());
        }
    }
}

/// The `up` options a watch redeploys with: detached, the services named.
fn redeploy_args(services: &[String]) -> UpArgs {
    UpArgs {
        detach: true,
        services: services.to_vec(),
        ..UpArgs::default()
    }
}

pub fn watch(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &WatchArgs,
) -> Result<u8, String> {
    {
        let loaded = load_stack(project).map_err(|e| format!("watch: {e}"))?;
        let declared = declared_services(&loaded);
        for s in &args.services {
            check_service("watch", &loaded.name, &declared, s)?;
        }
        let up_args = redeploy_args(&args.services);
        if !args.no_up {
            up(engine, hosts, project, &up_args).map_err(|e| match e.strip_prefix("up: ") {
                Some(rest) => format!("watch: {rest}"),
                None => e,
            })?;
        }
        let client = engine_client(engine, hosts)?;
        let host = CliHost {
            project,
            up: up_args,
            acted: None,
        };
        block_on(async {
            let mut sigint =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                    .map_err(|e| format!("watch: watch for Ctrl-C: {e}"))?;
            let stop = async move {
                sigint.recv().await;
            };
            session::run(host, client, loaded, args.services.clone(), stop).await
        })
        .map_err(|e| format!("start a runtime: {e}"))??;
    }
    Ok(0)
}

/// Attached `up --watch`, once the stack is up: logs and watch lines until Ctrl-C.
pub(super) async fn attached(
    client: &Client,
    project: &ProjectArgs,
    args: &UpArgs,
    loaded: Loaded,
    since: &str,
    sigint: &mut Signal,
    interrupted: bool,
) -> Result<u8, String> {
    let list = project_containers(client, &loaded.name, false)
        .await
        .map_err(|e| format!("up: {e}"))?;
    let names: Vec<String> = list.iter().map(short_name).collect();
    let printer = Printer::new(
        &names,
        !args.no_log_prefix,
        colours(args.no_color),
        args.timestamps,
    );
    if !names.is_empty() {
        out(&format!("Attaching to {}\n", names.join(", "))).map_err(|e| format!("up: {e}"))?;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Followed>();
    let (acted_tx, mut acted_rx) = mpsc::unbounded_channel::<()>();
    // Followed containers by short name → id; where each ended log stopped.
    let mut followed: HashMap<String, String> = HashMap::new();
    let mut ended: HashMap<String, String> = HashMap::new();
    let name = loaded.name.clone();
    // Redeploys keep the command's options (not a forced recreate of everything each time).
    let host = CliHost {
        project,
        up: UpArgs {
            detach: true,
            watch: false,
            force_recreate: false,
            ..args.clone()
        },
        acted: Some(acted_tx),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let session = session::run(host, client.clone(), loaded, args.services.clone(), async {
        let _ = stop_rx.await;
    });
    tokio::pin!(session);
    let mut session_done = false;
    let mut rescan = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut stopping: Option<tokio::task::JoinHandle<()>> = None;
    let mut interrupts = 0u32;
    let mut stop_tx = Some(stop_tx);
    let mut rescan_now = true;
    if interrupted {
        interrupts = 1;
    }
    loop {
        if interrupts > 0 && stopping.is_none() {
            eprintln!("{GRACEFUL}");
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
            let (c, n, t) = (client.clone(), name.clone(), args.timeout);
            stopping = Some(tokio::spawn(async move {
                if let Ok(list) = project_containers(&c, &n, false).await {
                    stop_all(&c, &list, t).await;
                }
            }));
        }
        tokio::select! {
            r = &mut session, if !session_done => {
                session_done = true;
                if let Err(e) = r {
                    eprintln!("up: {e}");
                }
            }
            msg = rx.recv() => match msg {
                Some(Followed::Line(n, l)) => printer.print(&n, &l).map_err(|e| format!("up: {e}"))?,
                Some(Followed::End(n, _)) => {
                    if let Some(id) = followed.remove(&n) {
                        ended.insert(id, crate::runtime::time::now());
                    }
                    let _ = out(&printer.status(&n, "exited"));
                }
                None => {}
            },
            Some(()) = acted_rx.recv() => rescan_now = true,
            _ = rescan.tick() => rescan_now = true,
            _ = async {
                match stopping.as_mut() {
                    Some(task) => {
                        let _ = task.await;
                    }
                    None => std::future::pending::<()>().await,
                }
            } => return Ok(INTERRUPTED),
            _ = sigint.recv() => {
                interrupts += 1;
                if interrupts == 2 {
                    let (c, n) = (client.clone(), name.clone());
                    tokio::spawn(async move {
                        if let Ok(list) = project_containers(&c, &n, false).await {
                            kill_all(&c, &list).await;
                        }
                    });
                } else if interrupts > 2 {
                    return Ok(INTERRUPTED);
                }
                continue;
            }
        }
        if stopping.is_some() || !std::mem::take(&mut rescan_now) {
            continue;
        }
        // Follow what runs and is not followed: new containers from their start, restarted
        // ones from where their log ended.
        let Ok(now) = project_containers(client, &name, false).await else {
            continue;
        };
        for c in now {
            let n = short_name(&c);
            if c.state.status != ContainerStatus::Running || followed.contains_key(&n) {
                continue;
            }
            // Restarted: from where its log ended; there at the start: since `up` began; new
            // (recreated, scaled): all of it.
            let from = match ended.get(&c.id) {
                Some(t) => Some(t.clone()),
                None if list.iter().any(|o| o.id == c.id) => Some(since.to_string()),
                None => None,
            };
            followed.insert(n, c.id.clone());
            let q = LogsQuery {
                follow: true,
                tail: None,
                since: from,
            };
            spawn_follow(client, &c, q, tx.clone());
        }
    }
}
