//! `flotilla daemon`, `flotilla version` and `flotilla info`, and the global `--host` option
//! (`FLOTILLA_HOST`) that picks the daemon a command talks to. TCP daemons need a bearer token:
//! `FLOTILLA_TOKEN`, else the `[api] token` of the daemon config when it is readable. Engine
//! commands reach the daemon through [`engine_client`], which starts one in the background when
//! none answers on the default socket (never for an explicit `--host`); `version` does not.

use clap::{Args, ValueEnum};

use super::{EngineArgs, out};
use crate::api::client::{Autostart, Client, ClientError, block_on, connect_or_start};
use crate::api::host::Host;
use crate::api::types::{Info, Version};
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
    let autostart = hosts
        .hosts
        .is_empty()
        .then(|| Autostart::new(&engine.data_root, engine.config.as_deref()));
    let probe = client.clone();
    block_on(connect_or_start(client, autostart.as_ref()))
        .map_err(|e| format!("start a runtime: {e}"))?
        .map_err(|e| unreachable(&probe, &e))
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

fn unreachable(client: &Client, e: &ClientError) -> String {
    if e.is_not_running() {
        format!(
            "no daemon answers at {}: {e}\nstart one with `flotilla daemon`",
            client.host()
        )
    } else {
        e.to_string()
    }
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
        .map_err(|e| unreachable(&client, &e))?;
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
