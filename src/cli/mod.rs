//! The command line: clap commands and output rendering. Pure local commands (`config`) run here
//! without a daemon; engine commands go through the API client. Errors are rendered at this
//! edge, one located problem per line; exit code 1 for failures, 2 for usage errors, and a closed
//! pipe (`flotilla config | head`) is not an error.
//!
//! The image commands (`image …`, `pull`, `push`, `images`, `rmi`, `tag`) are clients of the
//! daemon; `login` and `logout` stay client-side, on this user's Docker config, as Docker's do.

mod build;
mod compose;
mod config;
mod container;
mod events;
mod flags;
mod human;
mod image;
mod login;
mod network;
mod system;
mod volume;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::spec::load::Options;

#[derive(Parser, Debug)]
#[command(name = "flotilla", version, about = "Containers and compose stacks, fast", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub host: system::HostArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Compose's global options: which stack, under which name, with which environment.
#[derive(Args, Debug, Clone, Default)]
pub struct ProjectArgs {
    /// Stack file(s) to use, in merge order (`-` reads standard input)
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        value_name = "FILE",
        help_heading = "Project"
    )]
    pub files: Vec<PathBuf>,
    /// Project name (default: `name:` in the stack file, else the directory name)
    #[arg(
        short = 'p',
        long = "project-name",
        global = true,
        help_heading = "Project"
    )]
    pub project_name: Option<String>,
    /// Enable services of this profile (repeatable; default: $COMPOSE_PROFILES)
    #[arg(
        long = "profile",
        global = true,
        value_name = "PROFILE",
        help_heading = "Project"
    )]
    pub profiles: Vec<String>,
    /// Environment file(s) to read instead of the project's `.env`
    #[arg(
        long = "env-file",
        global = true,
        value_name = "FILE",
        help_heading = "Project"
    )]
    pub env_files: Vec<PathBuf>,
    /// The project directory (default: the directory of the first stack file)
    #[arg(
        long = "project-directory",
        global = true,
        value_name = "DIR",
        help_heading = "Project"
    )]
    pub project_directory: Option<PathBuf>,
    /// How `up`, `down` and `pull` show progress: auto (tty on a terminal, else plain), tty,
    /// plain, quiet or json (default: $COMPOSE_PROGRESS)
    #[arg(
        long = "progress",
        global = true,
        value_enum,
        value_name = "TYPE",
        env = "COMPOSE_PROGRESS",
        help_heading = "Project"
    )]
    pub progress: Option<compose::progress::Mode>,
}

/// Where the engine keeps its state and reads its configuration.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// The engine's data directory (images, containers, volumes)
    #[arg(
        long = "data-root",
        env = "FLOTILLA_ROOT",
        global = true,
        value_name = "DIR",
        default_value = "/var/lib/flotilla",
        help_heading = "Engine"
    )]
    pub data_root: PathBuf,
    /// The daemon configuration file (registries, mirrors) [default: /etc/flotilla/daemon.toml]
    #[arg(
        id = "daemon_config",
        long = "config",
        env = "FLOTILLA_CONFIG",
        global = true,
        value_name = "FILE",
        help_heading = "Engine"
    )]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the stack and print it resolved, in canonical form
    Config(config::ConfigArgs),
    /// Manage containers
    Container(container::ContainerArgs),
    /// Manage images
    Image(image::ImageArgs),
    /// Download an image from a registry (`image pull`)
    Pull(image::PullArgs),
    /// Upload an image to a registry (`image push`)
    Push(image::PushArgs),
    /// List images (`image ls`)
    Images(image::LsArgs),
    /// Remove images (`image rm`)
    Rmi(image::RmArgs),
    /// Give an image another name (`image tag`)
    Tag(image::TagArgs),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Run the engine daemon in the foreground
    Daemon,
    /// Show the daemon, its data root and its host
    Info(system::FormatArgs),
    /// Show the version of the client and of the daemon
    Version(system::FormatArgs),
    /// Show the daemon's events, live or from --since
    Events(events::EventsArgs),
    /// Manage networks
    Network(network::NetworkArgs),
    /// Manage volumes
    Volume(volume::VolumeArgs),
    /// Manage the build cache (`builder prune`)
    Builder(build::BuilderArgs),
    /// Disk usage of the engine and its cleanup (`system df`, `system prune`)
    System(system::SystemArgs),
    #[command(flatten)]
    Project(compose::ProjectCommand),
    /// The Compose commands under their group (`compose up`, `compose logs`, …), with
    /// `compose events` and `compose images` for the project
    Compose(compose::ComposeArgs),
}

impl ProjectArgs {
    /// The loader options these flags describe, for the current directory and environment.
    pub fn options(&self, no_interpolate: bool) -> Options {
        let working_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let mut env_files = self.env_files.clone();
        if env_files.is_empty()
            && let Ok(v) = std::env::var("COMPOSE_ENV_FILES")
        {
            env_files = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        let mut files = self.files.clone();
        if files.is_empty()
            && let Ok(v) = std::env::var("COMPOSE_FILE")
        {
            let sep = std::env::var("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|_| ":".into());
            files = v
                .split(sep.as_str())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        let stdin = if files.iter().any(|f| f.as_os_str() == "-") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .ok()
                .map(|_| s)
        } else {
            None
        };
        Options {
            files,
            project_directory: self.project_directory.clone(),
            project_name: self.project_name.clone(),
            env_files,
            profiles: self.profiles.clone(),
            no_interpolate,
            working_dir,
            environ: std::env::vars().collect(),
            stdin,
        }
    }
}

/// Writes to standard output; a closed pipe ends the program quietly with success.
pub fn out(text: &str) -> Result<(), std::io::Error> {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

pub fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

pub fn main() -> ExitCode {
    let args = flags::docker_short_flags(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let result = match &cli.command {
        Command::Config(args) => config::run(&cli.project, args),
        Command::Container(args) => {
            return container::main(&cli.engine, &cli.host, &cli.project, args);
        }
        Command::Image(image::ImageArgs {
            command: image::ImageCommand::Build(args),
        }) => build::image_build(&cli.engine, &cli.host, cli.project.progress, args),
        Command::Image(args) => image::run(&cli.engine, &cli.host, &args.command),
        Command::Builder(args) => build::builder(&cli.engine, &cli.host, args),
        Command::Pull(args) => image::run(
            &cli.engine,
            &cli.host,
            &image::ImageCommand::Pull(args.clone()),
        ),
        Command::Push(args) => image::run(
            &cli.engine,
            &cli.host,
            &image::ImageCommand::Push(args.clone()),
        ),
        Command::Images(args) => image::run(
            &cli.engine,
            &cli.host,
            &image::ImageCommand::Ls(args.clone()),
        ),
        Command::Rmi(args) => image::run(
            &cli.engine,
            &cli.host,
            &image::ImageCommand::Rm(args.clone()),
        ),
        Command::Tag(args) => image::run(
            &cli.engine,
            &cli.host,
            &image::ImageCommand::Tag(args.clone()),
        ),
        Command::Login(args) => login::login(&cli.engine, args),
        Command::Logout(args) => login::logout(args),
        Command::Daemon => system::daemon(&cli.engine, &cli.host),
        Command::Info(args) => system::info(&cli.engine, &cli.host, args),
        Command::Version(args) => system::version(&cli.engine, &cli.host, args),
        Command::Events(args) => events::run(&cli.engine, &cli.host, args),
        Command::Network(args) => network::run(&cli.engine, &cli.host, args),
        Command::Volume(args) => volume::run(&cli.engine, &cli.host, args),
        Command::System(args) => system::system(&cli.engine, &cli.host, args),
        Command::Project(c) => return compose::run(&cli.engine, &cli.host, &cli.project, c),
        Command::Compose(a) => {
            return compose::run_group(&cli.engine, &cli.host, &cli.project, a);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
