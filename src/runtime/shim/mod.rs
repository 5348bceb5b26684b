//! `flotilla shim` (hidden): the small single-threaded process that creates one container and
//! supervises it. It never starts a thread (no tokio): namespace and mount work after `fork` is
//! only sound in a single-threaded process. Before anything else it re-executes itself from a
//! sealed memfd copy of its binary ([`crate::runtime::sys::exe`]).
//!
//! Today: `flotilla shim run --bundle DIR --state DIR` creates the container from
//! `DIR/config.json` in the foreground, forwards signals to it, waits, and exits with its exit
//! status (128 + signal when killed; 127/126/125 when it could not be started).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use oci_spec::runtime::Spec;

use crate::runtime::sys::container::{self, ContainerError, EXIT_SETUP_FAILED};
use crate::runtime::sys::exe::{self, ExeError};

/// Why the shim failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("usage: flotilla shim run --bundle DIR --state DIR ({reason})")]
    Usage { reason: String },
    #[error("{source}")]
    Exe { source: ExeError },
    #[error("load the runtime spec {path}: {reason}")]
    LoadSpec { path: PathBuf, reason: String },
    #[error("create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source}")]
    Container { source: ContainerError },
}

impl ShimError {
    fn exit_status(&self) -> u8 {
        match self {
            ShimError::Usage { .. } => 2,
            ShimError::Container { source } => source.exit_status(),
            _ => EXIT_SETUP_FAILED,
        }
    }
}

struct RunArgs {
    bundle: PathBuf,
    state: PathBuf,
}

fn parse_run(args: &[OsString]) -> Result<RunArgs, ShimError> {
    let usage = |reason: &str| ShimError::Usage {
        reason: reason.to_string(),
    };
    let mut bundle = None;
    let mut state = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.to_str() {
            Some("--bundle") => &mut bundle,
            Some("--state") => &mut state,
            _ => return Err(usage(&format!("unexpected argument {a:?}"))),
        };
        let value = it
            .next()
            .ok_or_else(|| usage(&format!("{a:?} needs a value")))?;
        *slot = Some(PathBuf::from(value));
    }
    Ok(RunArgs {
        bundle: bundle.ok_or_else(|| usage("--bundle is required"))?,
        state: state.ok_or_else(|| usage("--state is required"))?,
    })
}

fn run(args: &[OsString]) -> Result<u8, ShimError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(ShimError::Usage {
            reason: "missing command".into(),
        });
    };
    if command != "run" {
        return Err(ShimError::Usage {
            reason: format!("unknown command {command:?}"),
        });
    }
    let args = parse_run(rest)?;
    exe::ensure_sealed().map_err(|source| ShimError::Exe { source })?;
    let path = args.bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|e| ShimError::LoadSpec {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::create_dir_all(&args.state).map_err(|source| ShimError::StateDir {
        path: args.state.clone(),
        source,
    })?;
    let exit = container::run(&spec, &args.bundle, &args.state)
        .map_err(|source| ShimError::Container { source })?;
    Ok(exit.status())
}

/// Entry point of `flotilla shim <args>` (`args` without `flotilla shim`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    match run(&args) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("flotilla: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}
