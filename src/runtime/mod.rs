//! The container runtime: OCI runtime configs ([`config`], pure), user resolution ([`user`],
//! pure), the per-container shim ([`shim`]); lifecycle, exec and logs arrive with the runtime
//! issue. All raw syscalls live in [`sys`].

pub mod config;
pub mod shim;
#[allow(unsafe_code)]
#[warn(clippy::undocumented_unsafe_blocks)]
pub mod sys;
pub mod user;
