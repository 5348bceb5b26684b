//! The command line: clap commands and output rendering. Pure local commands (`config`) run here
//! without a daemon; engine commands will go through the API client. Errors are rendered at this
//! edge, one located problem per line; exit code 1 for failures, 2 for usage errors, and a closed
//! pipe (`flotilla config | head`) is not an error.

mod config;

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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the stack and print it resolved, in canonical form
    Config(config::ConfigArgs),
    /// Show the version
    Version,
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
    let cli = match Cli::try_parse() {
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
        Command::Version => {
            out(&format!("flotilla {}\n", env!("CARGO_PKG_VERSION"))).map_err(|e| e.to_string())
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
