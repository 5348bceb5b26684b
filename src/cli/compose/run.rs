//! `run SERVICE [COMMAND...]`: Compose's one-off container, without a terminal. The daemon
//! brings up the service's dependencies (unless `--no-deps`), creates the container from the
//! service with the overrides and starts it; attached, its output is printed as it comes and
//! the command exits with the container's exit code (`--rm`: the container is removed then);
//! with `-d` the container's name is printed.

use clap::Args;

use super::super::system::{HostArgs, engine_client};
use super::super::{EngineArgs, ProjectArgs, out};
use super::logs::Printer;
use super::{check_service, config_files, declared_services, load_stack};
use crate::api::client::{Client, LogsQuery, block_on};
use crate::api::types::ProjectRun;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Run the container in the background and print its name
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container once it has exited
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this one's)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Override the entrypoint (shell words; empty: none)
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Do not start the service's dependencies
    #[arg(long)]
    pub no_deps: bool,
    /// The container's name (default `<project>-<service>-run-<random>`)
    #[arg(long)]
    pub name: Option<String>,
    /// No pseudo-terminal (there never is one)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Publish the service's ports (none are by default)
    #[arg(long)]
    pub service_ports: bool,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// The service
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The command and its arguments (default: the service's)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `-e` entries as sent: `KEY=VALUE` as given, `KEY` with this process's value (left out when
/// it has none).
fn environment(entries: &[String]) -> Result<Vec<String>, String> {
    let mut env = Vec::new();
    for e in entries {
        match e.split_once('=') {
            Some(("", _)) => return Err(format!("run: -e {e:?}: expected KEY=VALUE")),
            Some(_) => env.push(e.clone()),
            None if e.is_empty() => return Err("run: -e: expected KEY=VALUE".into()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    env.push(format!("{e}={v}"));
                }
            }
        }
    }
    Ok(env)
}

/// The request of `args` on the loaded stack.
fn request(project: &ProjectArgs, args: &RunArgs) -> Result<(String, ProjectRun), String> {
    let loaded = load_stack(project)?;
    check_service(
        "run",
        &loaded.name,
        &declared_services(&loaded),
        &args.service,
    )?;
    let entrypoint = match &args.entrypoint {
        Some(text) => Some(
            crate::spec::units::shell_split(text)
                .map_err(|e| format!("run: --entrypoint {text:?}: {e}"))?,
        ),
        None => None,
    };
    let req = ProjectRun {
        project: loaded.config_with_values(),
        config_files: config_files(&loaded),
        working_dir: loaded.project_dir.display().to_string(),
        service: args.service.clone(),
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        entrypoint,
        env: environment(&args.env)?,
        name: args.name.clone(),
        no_deps: args.no_deps,
        service_ports: args.service_ports,
        user: args.user.clone(),
        working_dir_override: args.workdir.clone(),
    };
    Ok((loaded.name, req))
}

/// Prints the container's output until it exits; its exit code.
async fn attached(client: &Client, id: &str) -> Result<i32, String> {
    let printer = Printer::new(&[], false, false, false);
    let q = LogsQuery {
        follow: true,
        ..LogsQuery::default()
    };
    match client.container_logs(id, &q).await {
        Ok(mut stream) => {
            while let Some(line) = stream.next().await {
                match line {
                    Ok(l) => printer.print("", &l).map_err(|e| format!("run: {e}"))?,
                    Err(e) => {
                        eprintln!("run: logs: {e}");
                        break;
                    }
                }
            }
        }
        Err(e) => eprintln!("run: logs: {e}"),
    }
    let exit = client
        .wait_container(id)
        .await
        .map_err(|e| format!("run: wait: {e}"))?;
    if let Some(e) = exit.error {
        eprintln!("run: {e}");
    }
    Ok(exit.exit_code)
}

pub fn run(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &RunArgs,
) -> Result<u8, String> {
    let (name, req) = request(project, args)?;
    let client = engine_client(engine, hosts)?;
    block_on(async {
        let c = client
            .project_run(&name, &req)
            .await
            .map_err(|e| format!("run: {e}"))?;
        if args.detach {
            out(&format!("{}\n", c.name)).map_err(|e| format!("run: {e}"))?;
            return Ok(0);
        }
        let code = attached(&client, &c.id).await;
        if args.rm
            && let Err(e) = client.remove_container_with(&c.id, true, true).await
        {
            eprintln!("run: remove {}: {e}", c.name);
        }
        let code = code?;
        Ok(u8::try_from(code.rem_euclid(256)).unwrap_or(1))
    })
    .map_err(|e| format!("run: {e}"))?
}
