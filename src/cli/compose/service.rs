//! The Compose commands on one service: `port` (where a private port is published), `scale`
//! (an `up -d --no-recreate` with `--scale` for the services named) and `exec` (a command in
//! one of the service's containers through the daemon's exec stream, shared with `container
//! exec`, with the command's exit code).

use std::io::IsTerminal;

use clap::Args;

use super::super::container::{self, ExecArgs as ContainerExecArgs};
use super::super::system::{HostArgs, engine_client};
use super::super::{EngineArgs, ProjectArgs, out};
use super::{Scope, UpArgs, host_address, up};
use crate::api::client::{Client, block_on};
use crate::api::types::{Container, ContainerStatus};
use crate::plan::labels;

#[derive(Args, Debug, Clone)]
pub struct PortArgs {
    /// The port's protocol: tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Which of the service's containers (its replica number)
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// The service
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The container's port
    #[arg(value_name = "PRIVATE_PORT")]
    pub private_port: u16,
}

#[derive(Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Do not start the services' dependencies
    #[arg(long)]
    pub no_deps: bool,
    /// `SERVICE=N`: run N replicas of SERVICE
    #[arg(value_name = "SERVICE=N", required = true)]
    pub scales: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Run the command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this one's)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// No pseudo-terminal (the default when standard input is not a terminal)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Keep standard input open (Compose's default; accepted for `exec -it`)
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,
    /// A pseudo-terminal when standard input is one (Compose's default; accepted for `exec -it`)
    #[arg(short = 't', long, hide = true, conflicts_with = "no_tty")]
    pub tty: bool,
    /// Which of the service's containers (its replica number)
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// The service
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The command and its arguments
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

fn number(c: &Container) -> Option<u32> {
    c.labels
        .get(labels::CONTAINER_NUMBER)
        .and_then(|n| n.parse().ok())
}

/// The service's container of replica number `index`; unknown services and missing replicas
/// are errors naming them.
async fn replica(
    cmd: &str,
    scope: &Scope,
    client: &Client,
    service: &str,
    index: u32,
) -> Result<Container, String> {
    let list = scope
        .select(cmd, client, std::slice::from_ref(&service.to_string()))
        .await?;
    let name = &scope.name;
    if list.is_empty() {
        return Err(format!(
            "{cmd}: project {name}: service {service:?} has no container (is the project up?)"
        ));
    }
    list.into_iter()
        .find(|c| number(c) == Some(index))
        .ok_or_else(|| {
            format!(
                "{cmd}: project {name}: service {service:?} has no container with index {index}"
            )
        })
}

pub fn port(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &PortArgs,
) -> Result<(), String> {
    let protocol = args.protocol.to_ascii_lowercase();
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!(
            "port: --protocol {:?}: expected tcp or udp",
            args.protocol
        ));
    }
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    let c = block_on(replica("port", &scope, &client, &args.service, args.index))
        .map_err(|e| format!("start a runtime: {e}"))??;
    let bound = c
        .ports
        .iter()
        .find(|p| p.container_port == args.private_port && p.protocol == protocol)
        .ok_or_else(|| {
            let why = if c.state.status == ContainerStatus::Running {
                "is not published"
            } else {
                "is not bound: the container is not running"
            };
            format!(
                "port: container {}: port {}/{protocol} {why}",
                c.name, args.private_port
            )
        })?;
    out(&format!("{}\n", host_address(bound))).map_err(|e| format!("port: write: {e}"))
}

pub fn scale(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &ScaleArgs,
) -> Result<u8, String> {
    let mut services = Vec::new();
    for s in &args.scales {
        let (svc, _) = s
            .split_once('=')
            .ok_or_else(|| format!("scale: {s:?}: expected SERVICE=N"))?;
        services.push(svc.to_string());
    }
    let up_args = UpArgs {
        detach: true,
        no_recreate: true,
        no_deps: args.no_deps,
        scale: args.scales.clone(),
        services,
        ..UpArgs::default()
    };
    up(engine, hosts, project, &up_args).map_err(|e| match e.strip_prefix("up: ") {
        Some(rest) => format!("scale: {rest}"),
        None => e,
    })
}

pub fn exec(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &ExecArgs,
) -> Result<u8, String> {
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    let c = block_on(replica("exec", &scope, &client, &args.service, args.index))
        .map_err(|e| format!("start a runtime: {e}"))??;
    match c.state.status {
        ContainerStatus::Running => {}
        ContainerStatus::Paused => {
            return Err(format!(
                "exec: container {} is paused: unpause it before exec",
                c.name
            ));
        }
        _ => {
            return Err(format!(
                "exec: service {:?} is not running (container {})",
                args.service, c.name
            ));
        }
    }
    let exec_args = ContainerExecArgs {
        interactive: !args.detach,
        tty: !args.no_tty && !args.detach && std::io::stdin().is_terminal(),
        env: args.env.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        detach: args.detach,
        container: c.id.clone(),
        command: args.command.clone(),
    };
    container::attach_api::exec(&client, &c.id, &exec_args).map_err(|e| {
        let e = e.strip_prefix("error: ").unwrap_or(&e).to_string();
        format!("exec: service {:?}: {e}", args.service)
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use crate::cli::compose::ProjectCommand;
    use clap::Parser;

    fn exec_args(words: &[&str]) -> super::ExecArgs {
        let mut all = vec!["flotilla"];
        all.extend_from_slice(words);
        match Cli::try_parse_from(all).map(|c| c.command) {
            Ok(crate::cli::Command::Project(ProjectCommand::Exec(a))) => a,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    #[test]
    fn exec_words_after_the_service_are_the_command() {
        let a = exec_args(&["exec", "-it", "--index", "2", "web", "ls", "-f", "-p", "/"]);
        assert_eq!((a.service.as_str(), a.index), ("web", 2));
        assert_eq!(a.command, ["ls", "-f", "-p", "/"]);
        let a = exec_args(&[
            "-p", "proj", "exec", "-T", "-e", "A=1", "-u", "1:1", "db", "id",
        ]);
        assert!(a.no_tty);
        assert_eq!(
            (a.env.as_slice(), a.user.as_deref()),
            (&["A=1".to_string()][..], Some("1:1"))
        );
        assert_eq!(a.command, ["id"]);
    }
}
