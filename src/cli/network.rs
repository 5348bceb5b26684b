//! `flotilla network create|ls|inspect|rm|prune|connect|disconnect` through the daemon
//! (Docker's flags, tables and exit codes). Helpers shared with `volume` (filters,
//! confirmation, the call to the daemon) live here.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand, ValueEnum};

use super::system::{HostArgs, engine_client};
use super::{EngineArgs, human, out};
use crate::api::client::{ClientError, NetworkFilter, block_on};
use crate::api::types::{
    ErrorCode, Network, NetworkConnect, NetworkCreate, NetworkDisconnect, NetworkIpam,
};

#[derive(Args, Debug)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show networks in detail (JSON)
    Inspect(InspectArgs),
    /// Remove networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove every network no container is attached to
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The network, by name or id
    pub network: String,
    /// The container, by name or id
    pub container: String,
    /// Another name the network's DNS answers for the container (repeatable)
    #[arg(long = "alias", value_name = "ALIAS")]
    pub aliases: Vec<String>,
    /// The container's IPv4 address on the network
    #[arg(long = "ip", value_name = "IP")]
    pub ip: Option<String>,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// The network, by name or id
    pub network: String,
    /// The container, by name or id
    pub container: String,
    /// A container not connected is not an error (`-f` after the command)
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The network's name
    pub name: String,
    /// Driver (only `bridge`)
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR form (`10.99.0.0/24`)
    #[arg(long)]
    pub subnet: Option<String>,
    /// The gateway's address inside the subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Give containers addresses from this range (CIDR inside the subnet)
    #[arg(long)]
    pub ip_range: Option<String>,
    /// No route out of the network
    #[arg(long)]
    pub internal: bool,
    /// A label `key=value` (repeatable)
    #[arg(short, long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
}

/// `--format` of the ls commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LsFormat {
    #[default]
    Table,
    /// One JSON object per line, with Docker's field names
    Json,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only the ids
    #[arg(short, long)]
    pub quiet: bool,
    /// `label=KEY[=VALUE]`, `name=TEXT`, `id=PREFIX`, `driver=bridge` (repeatable, all must
    /// match; `-f` after the command)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: LsFormat,
    /// Full ids
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Networks, by name or id
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Networks, by name or id
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// A missing network is not an error (`-f` after the command)
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// `label=KEY[=VALUE]`: only networks with this label
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not ask for confirmation (`-f` after the command)
    #[arg(long)]
    pub force: bool,
}

/// Runs `flotilla network …`.
pub fn run(engine: &EngineArgs, hosts: &HostArgs, args: &NetworkArgs) -> Result<(), String> {
    match &args.command {
        NetworkCommand::Create(a) => create(engine, hosts, a),
        NetworkCommand::Ls(a) => ls(engine, hosts, a),
        NetworkCommand::Inspect(a) => inspect(engine, hosts, a),
        NetworkCommand::Rm(a) => rm(engine, hosts, a),
        NetworkCommand::Prune(a) => prune(engine, hosts, a),
        NetworkCommand::Connect(a) => connect(engine, hosts, a),
        NetworkCommand::Disconnect(a) => disconnect(engine, hosts, a),
    }
}

/// Runs one client call to its end.
pub(super) fn call<T, F>(f: F) -> Result<Result<T, ClientError>, String>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    block_on(f).map_err(|e| format!("start a runtime: {e}"))
}

fn write(text: &str) -> Result<(), String> {
    out(text).map_err(|e| e.to_string())
}

/// `KEY=VALUE` labels (a bare `KEY` has an empty value, like Docker).
pub(super) fn parse_labels(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// `key=value` filters, checked against the keys a command knows.
pub(super) fn parse_filters(
    list: &[String],
    known: &[&str],
) -> Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) if known.contains(&k) => Ok((k.to_string(), v.to_string())),
            Some((k, _)) => Err(format!(
                "error: invalid filter {k:?} (expected {})",
                known.join(", ")
            )),
            None => Err(format!(
                "error: bad format of filter {f:?} (expected name=value)"
            )),
        })
        .collect()
}

/// Whether `labels` has the label of a `label=` filter's value (`KEY` or `KEY=VALUE`).
pub(super) fn has_label(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

/// Labels as Docker prints them: `k=v,k2=v2`.
pub(super) fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Asks `question [y/N]` on the terminal; anything but y/yes is no. Without a terminal on
/// standard input the answer is no (pass `--force`).
pub(super) fn confirm(warning: &str) -> bool {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!("{warning}\nnot confirmed: standard input is not a terminal (use --force)");
        return false;
    }
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if stdin.lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn short(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

fn create(engine: &EngineArgs, hosts: &HostArgs, args: &CreateArgs) -> Result<(), String> {
    let ipam =
        (args.subnet.is_some() || args.gateway.is_some() || args.ip_range.is_some()).then(|| {
            NetworkIpam {
                subnet: args.subnet.clone(),
                gateway: args.gateway.clone(),
                ip_range: args.ip_range.clone(),
            }
        });
    let req = NetworkCreate {
        name: args.name.clone(),
        driver: Some(args.driver.clone()),
        internal: args.internal,
        labels: parse_labels(&args.labels),
        ipam,
    };
    let client = engine_client(engine, hosts)?;
    let net = call(client.create_network(&req))?.map_err(|e| format!("error: {e}"))?;
    write(&format!("{}\n", net.id))
}

fn ls(engine: &EngineArgs, hosts: &HostArgs, args: &LsArgs) -> Result<(), String> {
    let filters = parse_filters(&args.filters, &["label", "name", "id", "driver"])?;
    let client = engine_client(engine, hosts)?;
    let first = |key: &str| {
        filters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let server = NetworkFilter {
        label: first("label"),
        name: first("name"),
    };
    let nets: Vec<Network> = call(client.list_networks(&server))?
        .map_err(|e| format!("error: network ls: {e}"))?
        .into_iter()
        .filter(|n| {
            filters.iter().all(|(k, v)| match k.as_str() {
                "label" => has_label(&n.labels, v),
                "name" => n.name.contains(v.as_str()),
                "id" => n.id.starts_with(v.as_str()),
                _ => n.driver == *v,
            })
        })
        .collect();
    if args.quiet {
        let text: String = nets
            .iter()
            .map(|n| format!("{}\n", short(&n.id, args.no_trunc)))
            .collect();
        return write(&text);
    }
    match args.format {
        LsFormat::Json => {
            let text: String = nets
                .iter()
                .map(|n| {
                    let v = serde_json::json!({
                        "CreatedAt": human::utc(i64::try_from(n.created / 1000).unwrap_or(0)),
                        "Driver": n.driver,
                        "ID": short(&n.id, args.no_trunc),
                        "IPv6": "false",
                        "Internal": n.internal.to_string(),
                        "Labels": labels_text(&n.labels),
                        "Name": n.name,
                        "Scope": n.scope,
                        "Subnet": n.subnet,
                    });
                    format!("{v}\n")
                })
                .collect();
            write(&text)
        }
        LsFormat::Table => {
            let rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| {
                    vec![
                        short(&n.id, args.no_trunc),
                        n.name.clone(),
                        n.driver.clone(),
                        n.scope.clone(),
                    ]
                })
                .collect();
            write(&human::table(
                &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                &rows,
            ))
        }
    }
}

fn inspect(engine: &EngineArgs, hosts: &HostArgs, args: &InspectArgs) -> Result<(), String> {
    let client = engine_client(engine, hosts)?;
    inspect_each("network", &args.networks, |n| client.inspect_network(n))
}

fn rm(engine: &EngineArgs, hosts: &HostArgs, args: &RmArgs) -> Result<(), String> {
    let client = engine_client(engine, hosts)?;
    remove_each(&args.networks, args.force, |n| client.remove_network(n))
}

/// `KIND inspect NAME…`: the found objects as one JSON array, then an error line per name that
/// failed (Docker's shape).
pub(super) fn inspect_each<'a, T, F, Fut>(
    kind: &str,
    names: &'a [String],
    get: F,
) -> Result<(), String>
where
    T: serde::Serialize,
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match call(get(name))? {
            Ok(v) => found.push(v),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                errors.push(format!("error: no such {kind}: {name}"))
            }
            Err(e) => errors.push(format!("error: {kind} inspect {name}: {e}")),
        }
    }
    let text = serde_json::to_string_pretty(&found).map_err(|e| e.to_string())?;
    write(&format!("{text}\n"))?;
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("\n")),
    }
}

/// `KIND rm NAME…`: each removed name printed, an error line per failure (`force`: an unknown
/// name is not one).
pub(super) fn remove_each<'a, F, Fut>(
    names: &'a [String],
    force: bool,
    remove: F,
) -> Result<(), String>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let mut errors = Vec::new();
    for name in names {
        match call(remove(name))? {
            Ok(()) => write(&format!("{name}\n"))?,
            Err(e) if force && e.code() == Some(ErrorCode::NotFound) => {}
            Err(e) => errors.push(format!("error: {e}")),
        }
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("\n")),
    }
}

fn prune(engine: &EngineArgs, hosts: &HostArgs, args: &PruneArgs) -> Result<(), String> {
    let filters = parse_filters(&args.filters, &["label"])?;
    if filters.len() > 1 {
        return Err("error: network prune: one label filter at most".to_string());
    }
    if !args.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return Err("network prune has been cancelled".to_string());
    }
    let client = engine_client(engine, hosts)?;
    let label = filters.first().map(|(_, v)| v.as_str());
    let pruned =
        call(client.prune_networks(label))?.map_err(|e| format!("error: network prune: {e}"))?;
    if pruned.networks.is_empty() {
        return Ok(());
    }
    let mut text = String::from("Deleted Networks:\n");
    for n in &pruned.networks {
        text.push_str(n);
        text.push('\n');
    }
    write(&text)
}

fn connect(engine: &EngineArgs, hosts: &HostArgs, args: &ConnectArgs) -> Result<(), String> {
    let req = NetworkConnect {
        container: args.container.clone(),
        aliases: args.aliases.clone(),
        ipv4_address: args.ip.clone(),
    };
    let client = engine_client(engine, hosts)?;
    call(client.connect_network(&args.network, &req))?
        .map(|_| ())
        .map_err(|e| format!("error: network connect: {e}"))
}

fn disconnect(engine: &EngineArgs, hosts: &HostArgs, args: &DisconnectArgs) -> Result<(), String> {
    let req = NetworkDisconnect {
        container: args.container.clone(),
        force: args.force,
    };
    let client = engine_client(engine, hosts)?;
    call(client.disconnect_network(&args.network, &req))?
        .map_err(|e| format!("error: network disconnect: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        crate::cli::flags::docker_short_flags(args.iter().map(std::ffi::OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn docker_short_flags_after_network_and_volume_commands() {
        assert_eq!(
            rewrite(&["flotilla", "network", "prune", "-f"]),
            ["flotilla", "network", "prune", "--force"]
        );
        assert_eq!(
            rewrite(&["flotilla", "-H", "unix:///s", "volume", "rm", "-f", "x"]),
            [
                "flotilla",
                "-H",
                "unix:///s",
                "volume",
                "rm",
                "--force",
                "x"
            ]
        );
        assert_eq!(
            rewrite(&["flotilla", "volume", "ls", "-f", "label=a"]),
            ["flotilla", "volume", "ls", "--filter", "label=a"]
        );
        assert_eq!(
            rewrite(&["flotilla", "network", "ls", "-q", "-f", "name=x"]),
            ["flotilla", "network", "ls", "-q", "--filter", "name=x"]
        );
        assert_eq!(
            rewrite(&["flotilla", "network", "disconnect", "-f", "n", "c"]),
            ["flotilla", "network", "disconnect", "--force", "n", "c"]
        );
        // The global -f before the command stays the stack file.
        assert_eq!(
            rewrite(&["flotilla", "-f", "c.yaml", "network", "ls"]),
            ["flotilla", "-f", "c.yaml", "network", "ls"]
        );
    }

    #[test]
    fn filters_and_labels() {
        let f = parse_filters(&["label=a=b".into(), "name=x".into()], &["label", "name"]).unwrap();
        assert_eq!(
            f,
            [
                ("label".to_string(), "a=b".to_string()),
                ("name".to_string(), "x".to_string())
            ]
        );
        assert!(parse_filters(&["dangling=true".into()], &["label"]).is_err());
        assert!(parse_filters(&["label".into()], &["label"]).is_err());
        let labels = parse_labels(&["a=b".into(), "c".into()]);
        assert!(has_label(&labels, "a=b") && has_label(&labels, "c") && !has_label(&labels, "a=c"));
        assert_eq!(labels_text(&labels), "a=b,c=");
    }
}
