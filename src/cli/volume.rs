//! `flotilla volume create|ls|inspect|rm|prune` through the daemon (Docker's flags, tables and
//! exit codes).

use clap::{Args, Subcommand};

use super::network::{
    LsFormat, call, confirm, has_label, inspect_each, labels_text, parse_filters, parse_labels,
    remove_each,
};
use super::system::{HostArgs, engine_client};
use super::{EngineArgs, human, out};
use crate::api::types::{Volume, VolumeCreate};

#[derive(Args, Debug)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes in detail (JSON)
    Inspect(InspectArgs),
    /// Remove volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (with --all every unused volume)
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The volume's name (default: 64 random hexadecimal digits)
    pub name: Option<String>,
    /// Driver (only `local`)
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// A driver option `key=value` (`type=none`, `o=bind`, `device=/dir`; repeatable)
    #[arg(short, long = "opt", value_name = "OPTION")]
    pub opts: Vec<String>,
    /// A label `key=value` (repeatable)
    #[arg(short, long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only the names
    #[arg(short, long)]
    pub quiet: bool,
    /// `label=KEY[=VALUE]`, `name=TEXT`, `driver=local` (repeatable, all must match; `-f`
    /// after the command)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: LsFormat,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Volumes, by name
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Volumes, by name
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
    /// A missing volume is not an error (`-f` after the command)
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Every unused volume, not only anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// `label=KEY[=VALUE]`: only volumes with this label
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not ask for confirmation (`-f` after the command)
    #[arg(long)]
    pub force: bool,
}

/// Runs `flotilla volume …`.
pub fn run(engine: &EngineArgs, hosts: &HostArgs, args: &VolumeArgs) -> Result<(), String> {
    match &args.command {
        VolumeCommand::Create(a) => create(engine, hosts, a),
        VolumeCommand::Ls(a) => ls(engine, hosts, a),
        VolumeCommand::Inspect(a) => inspect(engine, hosts, a),
        VolumeCommand::Rm(a) => rm(engine, hosts, a),
        VolumeCommand::Prune(a) => prune(engine, hosts, a),
    }
}

fn write(text: &str) -> Result<(), String> {
    out(text).map_err(|e| e.to_string())
}

fn create(engine: &EngineArgs, hosts: &HostArgs, args: &CreateArgs) -> Result<(), String> {
    let mut driver_opts = std::collections::BTreeMap::new();
    for o in &args.opts {
        let Some((k, v)) = o.split_once('=') else {
            return Err(format!(
                "error: volume create: option {o:?}: expected key=value"
            ));
        };
        driver_opts.insert(k.to_string(), v.to_string());
    }
    let req = VolumeCreate {
        name: args.name.clone(),
        labels: parse_labels(&args.labels),
        driver: Some(args.driver.clone()),
        driver_opts,
    };
    let client = engine_client(engine, hosts)?;
    let vol = call(client.create_volume(&req))?.map_err(|e| format!("error: {e}"))?;
    write(&format!("{}\n", vol.name))
}

fn ls(engine: &EngineArgs, hosts: &HostArgs, args: &LsArgs) -> Result<(), String> {
    let filters = parse_filters(&args.filters, &["label", "name", "driver"])?;
    let client = engine_client(engine, hosts)?;
    let label = filters
        .iter()
        .find(|(k, _)| k == "label")
        .map(|(_, v)| v.as_str());
    let vols: Vec<Volume> = call(client.list_volumes(label))?
        .map_err(|e| format!("error: volume ls: {e}"))?
        .into_iter()
        .filter(|v| {
            filters.iter().all(|(k, f)| match k.as_str() {
                "label" => has_label(&v.labels, f),
                "name" => v.name.contains(f.as_str()),
                _ => v.driver == *f,
            })
        })
        .collect();
    if args.quiet {
        let text: String = vols.iter().map(|v| format!("{}\n", v.name)).collect();
        return write(&text);
    }
    match args.format {
        LsFormat::Json => {
            let text: String = vols
                .iter()
                .map(|v| {
                    let j = serde_json::json!({
                        "Driver": v.driver,
                        "Labels": labels_text(&v.labels),
                        "Mountpoint": v.mountpoint,
                        "Name": v.name,
                        "Scope": "local",
                    });
                    format!("{j}\n")
                })
                .collect();
            write(&text)
        }
        LsFormat::Table => {
            let rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| vec![v.driver.clone(), v.name.clone()])
                .collect();
            write(&human::table(&["DRIVER", "VOLUME NAME"], &rows))
        }
    }
}

fn inspect(engine: &EngineArgs, hosts: &HostArgs, args: &InspectArgs) -> Result<(), String> {
    let client = engine_client(engine, hosts)?;
    inspect_each("volume", &args.volumes, |n| client.inspect_volume(n))
}

fn rm(engine: &EngineArgs, hosts: &HostArgs, args: &RmArgs) -> Result<(), String> {
    let client = engine_client(engine, hosts)?;
    remove_each(&args.volumes, args.force, |n| client.remove_volume(n))
}

fn prune(engine: &EngineArgs, hosts: &HostArgs, args: &PruneArgs) -> Result<(), String> {
    let filters = parse_filters(&args.filters, &["label"])?;
    if filters.len() > 1 {
        return Err("error: volume prune: one label filter at most".to_string());
    }
    let warning = if args.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !args.force && !confirm(warning) {
        return Err("volume prune has been cancelled".to_string());
    }
    let client = engine_client(engine, hosts)?;
    let label = filters.first().map(|(_, v)| v.as_str());
    let pruned = call(client.prune_volumes(args.all, label))?
        .map_err(|e| format!("error: volume prune: {e}"))?;
    let mut text = String::new();
    if !pruned.volumes.is_empty() {
        text.push_str("Deleted Volumes:\n");
        for v in &pruned.volumes {
            text.push_str(v);
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human::size(pruned.reclaimed)
    ));
    write(&text)
}
