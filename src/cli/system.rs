//! `flotilla daemon`, `flotilla version` and `flotilla info`, and the global `--host` option
//! (`FLOTILLA_HOST`) that picks the daemon a command talks to. TCP daemons need a bearer token:
//! `FLOTILLA_TOKEN`, else the `[api] token` of the daemon config when it is readable. Engine
//! commands reach the daemon through [`engine_client`], which starts one in the background when
//! none answers on the default socket (never for an explicit `--host`); `version` does not.

use clap::{Args, Subcommand, ValueEnum};

use super::{EngineArgs, human, out};
use crate::api::client::{Autostart, Client, ClientError, block_on, connect_or_start};
use crate::api::host::Host;
use crate::api::types::{ContainerStatus, DiskUsage, Info, UsageSummary, Version};
use crate::engine::config::DaemonConfig;
use crate::engine::daemon::{self, DaemonOptions};

/// Which daemon to talk to (the daemon itself listens on every one given).
#[derive(Args, Debug, Clone, Default)]
pub struct HostArgs {
    /// The daemon's address: unix:///path or tcp://host:port (repeatable for `daemon`)
    /// [default: unix:///run/flotilla/flotilla.sock]
    #[arg(
        short = 'H',
        long = "host",
        env = "FLOTILLA_HOST",
        global = true,
        value_name = "URL",
        help_heading = "Engine"
    )]
    pub hosts: Vec<String>,
}

impl HostArgs {
    fn parse(&self) -> Result<Vec<Host>, String> {
        self.hosts
            .iter()
            .map(|h| h.parse::<Host>().map_err(|e| e.to_string()))
            .collect()
    }

    /// The client of the daemon these options name (the first `--host`, else the default).
    fn client(&self, engine: &EngineArgs) -> Result<Client, String> {
        let host = self.parse()?.into_iter().next().unwrap_or_default();
        let token = match std::env::var("FLOTILLA_TOKEN") {
            Ok(t) if !t.is_empty() => Some(t),
            _ if matches!(host, Host::Tcp(_)) => DaemonConfig::load(engine.config.as_deref())
                .ok()
                .and_then(|c| c.api.token),
            _ => None,
        };
        Ok(Client::new(host, token))
    }
}

/// The client of the daemon an engine command talks to: the explicit `--host` (which must
/// answer), else the default socket, where a daemon is started when none answers.
pub(super) fn engine_client(engine: &EngineArgs, hosts: &HostArgs) -> Result<Client, String> {
    let client = hosts.client(engine)?;
    if !hosts.hosts.is_empty() {
        // An explicit daemon is never started here: its first request says whether it
        // answers (`no daemon answers at …`), with no probe before it.
        return Ok(client);
    }
    let autostart = Some(Autostart::new(&engine.data_root, engine.config.as_deref()));
    block_on(connect_or_start(client, autostart.as_ref()))
        .map_err(|e| format!("start a runtime: {e}"))?
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned text
    #[default]
    Text,
    /// JSON
    Json,
}

/// `flotilla version` and `flotilla info`.
#[derive(Args, Debug, Clone, Default)]
pub struct FormatArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `flotilla daemon`: runs the engine in the foreground.
pub fn daemon(engine: &EngineArgs, hosts: &HostArgs) -> Result<(), String> {
    let opts = DaemonOptions {
        data_root: engine.data_root.clone(),
        hosts: hosts.parse()?,
        config: engine.config.clone(),
    };
    daemon::run(&opts).map_err(|e| format!("daemon: {e}"))
}

/// `flotilla version`: this client, and the daemon if one answers.
pub fn version(engine: &EngineArgs, hosts: &HostArgs, args: &FormatArgs) -> Result<(), String> {
    let client = hosts.client(engine)?;
    let server = block_on(client.version()).map_err(|e| format!("start a runtime: {e}"))?;
    let server = match server {
        Ok(v) => Ok(v),
        Err(e) if e.is_not_running() => Err(None),
        Err(e) => Err(Some(e.to_string())),
    };
    let mine = Version::current();
    if args.format == Format::Json {
        let json = serde_json::json!({
            "client": mine,
            "server": match &server {
                Ok(v) => serde_json::to_value(v).unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            },
            "host": client.host().to_string(),
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        return out(&format!("{text}\n")).map_err(|e| e.to_string());
    }
    let mut text = format!(
        "Client:\n Version:     {}\n API version: {}\n OS/Arch:     {}/{}\n\nServer: {}\n",
        mine.version,
        mine.api_version,
        mine.os,
        mine.arch,
        client.host()
    );
    match &server {
        Ok(v) => text.push_str(&format!(
            " Version:     {}\n API version: {}\n OS/Arch:     {}/{}\n",
            v.version, v.api_version, v.os, v.arch
        )),
        Err(None) => text.push_str(" not running (start it with `flotilla daemon`)\n"),
        Err(Some(e)) => text.push_str(&format!(" error: {e}\n")),
    }
    out(&text).map_err(|e| e.to_string())
}

/// `flotilla info`: the daemon, its data root and its host.
pub fn info(engine: &EngineArgs, hosts: &HostArgs, args: &FormatArgs) -> Result<(), String> {
    let client = engine_client(engine, hosts)?;
    let info: Info = block_on(client.info())
        .map_err(|e| format!("start a runtime: {e}"))?
        .map_err(|e| e.to_string())?;
    if args.format == Format::Json {
        let text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
        return out(&format!("{text}\n")).map_err(|e| e.to_string());
    }
    let mine = Version::current();
    let text = format!(
        "Client:\n Version:        {}\n\nServer: {}\n Version:        {}\n API version:    {}\n \
         Data root:      {}\n Schema version: {}\n Containers:     {}\n Networks:       {}\n \
         Volumes:        {}\n Projects:       {}\n Images:         {}\n Running:        {}\n \
         Cgroup version: {}\n Kernel:         {}\n OS/Arch:        {}/{}\n Pid:            {}\n",
        mine.version,
        client.host(),
        info.version.version,
        info.version.api_version,
        info.data_root,
        info.schema_version,
        info.counts.containers,
        info.counts.networks,
        info.counts.volumes,
        info.counts.projects,
        info.counts.images,
        info.counts.running,
        info.cgroup_version,
        info.kernel,
        info.version.os,
        info.version.arch,
        info.pid,
    );
    out(&text).map_err(|e| e.to_string())
}

/// `flotilla system …`.
#[derive(Args, Debug)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show the disk space images, containers and volumes take
    Df(FormatArgs),
    /// Remove stopped containers, unused networks, dangling images and the build cache
    Prune(PruneArgs),
}

/// `flotilla system prune [-a] [--volumes] [-f]`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Also remove anonymous volumes no container uses
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask for confirmation (`-f` after the command)
    #[arg(long)]
    pub force: bool,
}

/// Runs `flotilla system …`.
pub fn system(engine: &EngineArgs, hosts: &HostArgs, args: &SystemArgs) -> Result<(), String> {
    match &args.command {
        SystemCommand::Df(a) => df(engine, hosts, a),
        SystemCommand::Prune(a) => prune(engine, hosts, a),
    }
}

/// Docker's warning before a `system prune`.
fn prune_warning(args: &PruneArgs) -> String {
    let mut text = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by \
         at least one container\n",
    );
    if args.volumes {
        text.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    text.push_str(if args.all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    text.push_str("  - all build cache\n");
    text
}

/// Appends `title` and one line per name when there are any.
fn section(text: &mut String, title: &str, names: &[String]) {
    if names.is_empty() {
        return;
    }
    text.push_str(title);
    text.push('\n');
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    text.push('\n');
}

/// `flotilla system prune`: the container, network, volume, image and build-cache prunes in
/// Docker's order, through the daemon's own endpoints (stopped containers one by one: the
/// daemon refuses to remove a running one without force, which is never asked for).
fn prune(engine: &EngineArgs, hosts: &HostArgs, args: &PruneArgs) -> Result<(), String> {
    if !args.force && !super::network::confirm(prune_warning(args).trim_end()) {
        return Err("system prune has been cancelled (use -f to prune without a terminal)".into());
    }
    let client = engine_client(engine, hosts)?;
    let call = |e: std::io::Error| format!("start a runtime: {e}");
    let mut text = String::new();
    let mut reclaimed: u64 = 0;

    let containers = block_on(client.list_containers(true))
        .map_err(call)?
        .map_err(|e| format!("error: system prune: list containers: {e}"))?;
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for c in containers {
        if !matches!(
            c.state.status,
            ContainerStatus::Created | ContainerStatus::Exited | ContainerStatus::Dead
        ) {
            continue;
        }
        match block_on(client.remove_container(&c.id, false)).map_err(call)? {
            Ok(()) => removed.push(c.id),
            Err(ClientError::Api { status: 404, .. }) => {}
            Err(e) => errors.push(format!("error: system prune: container {}: {e}", c.name)),
        }
    }
    section(&mut text, "Deleted Containers:", &removed);

    let networks = block_on(client.prune_networks(None))
        .map_err(call)?
        .map_err(|e| format!("error: system prune: networks: {e}"))?;
    section(&mut text, "Deleted Networks:", &networks.networks);

    if args.volumes {
        let volumes = block_on(client.prune_volumes(false, None))
            .map_err(call)?
            .map_err(|e| format!("error: system prune: volumes: {e}"))?;
        section(&mut text, "Deleted Volumes:", &volumes.volumes);
        reclaimed = reclaimed.saturating_add(volumes.reclaimed);
    }

    let images = block_on(client.prune_images(args.all))
        .map_err(call)?
        .map_err(|e| format!("error: system prune: images: {e}"))?;
    let mut lines: Vec<String> = images
        .untagged
        .iter()
        .map(|n| format!("Untagged: {n}"))
        .collect();
    lines.extend(images.deleted.iter().map(|d| format!("Deleted: {d}")));
    section(&mut text, "Deleted Images:", &lines);
    reclaimed = reclaimed.saturating_add(images.reclaimed);

    let cache = block_on(client.prune_build())
        .map_err(call)?
        .map_err(|e| format!("error: system prune: build cache: {e}"))?;
    if cache.entries > 0 || cache.images > 0 {
        text.push_str(&format!(
            "Deleted build cache entries: {}, intermediate images: {}\n\n",
            cache.entries, cache.images
        ));
    }
    reclaimed = reclaimed.saturating_add(cache.reclaimed);

    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human::size(reclaimed)
    ));
    out(&text).map_err(|e| e.to_string())?;
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("\n")),
    }
}

/// Docker's RECLAIMABLE cell: `1.2MB (40%)`, without the share when nothing is there.
fn reclaimable(u: &UsageSummary) -> String {
    let size = human::size(u.reclaimable);
    match u.reclaimable.saturating_mul(100).checked_div(u.size) {
        Some(pct) => format!("{size} ({pct}%)"),
        None => size,
    }
}

/// The rows of `system df`: (type, usage).
fn df_rows(du: &DiskUsage) -> [(&'static str, &UsageSummary); 3] {
    [
        ("Images", &du.images),
        ("Containers", &du.containers),
        ("Local Volumes", &du.volumes),
    ]
}

/// `flotilla system df`: Docker's table, or one JSON object per type.
fn df(engine: &EngineArgs, hosts: &HostArgs, args: &FormatArgs) -> Result<(), String> {
    let client = engine_client(engine, hosts)?;
    let du = block_on(client.system_df())
        .map_err(|e| format!("start a runtime: {e}"))?
        .map_err(|e| format!("error: system df: {e}"))?;
    let text = match args.format {
        Format::Json => df_rows(&du)
            .iter()
            .map(|(kind, u)| {
                let v = serde_json::json!({
                    "Type": kind,
                    "TotalCount": u.count,
                    "Active": u.active,
                    "Size": human::size(u.size),
                    "Reclaimable": reclaimable(u),
                    "SizeBytes": u.size,
                    "ReclaimableBytes": u.reclaimable,
                });
                format!("{v}\n")
            })
            .collect(),
        Format::Text => {
            let rows: Vec<Vec<String>> = df_rows(&du)
                .iter()
                .map(|(kind, u)| {
                    vec![
                        kind.to_string(),
                        u.count.to_string(),
                        u.active.to_string(),
                        human::size(u.size),
                        reclaimable(u),
                    ]
                })
                .collect();
            human::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
        }
    };
    out(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaimable_cells() {
        let u = UsageSummary {
            count: 2,
            active: 1,
            size: 1000,
            reclaimable: 400,
        };
        assert_eq!(reclaimable(&u), "400B (40%)");
        assert_eq!(reclaimable(&UsageSummary::default()), "0B");
    }
}
