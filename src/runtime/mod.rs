//! The container runtime: OCI runtime configs ([`config`], pure), user resolution ([`user`],
//! pure), what the lifecycle adds to a bundle ([`bundle`], pure), the per-container shim
//! ([`shim`]) with its state file ([`state`]), JSON-lines logs ([`logs`]) and control socket
//! ([`control`]), the lifecycle library over state dirs ([`lifecycle`]), and how short shim
//! commands are run (through a fork server, [`spawner`]). All raw syscalls live in [`sys`].

pub mod bundle;
pub mod config;
pub mod control;
pub mod copy;
pub mod etcfiles;
pub mod exec;
pub mod init;
pub mod lifecycle;
pub mod logs;
pub mod shim;
pub mod spawner;
pub mod state;
pub mod sync;
#[allow(unsafe_code)]
#[warn(clippy::undocumented_unsafe_blocks)]
pub mod sys;
pub mod time;
pub mod user;
