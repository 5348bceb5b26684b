//! The container runtime: OCI runtime configs, the per-container shim, lifecycle, exec and logs
//! (arrives with the runtime issue). All raw syscalls live in [`sys`].

#[allow(unsafe_code)]
pub mod sys;
