//! The only room with `unsafe` and raw syscalls: namespaces, mounts, pivot_root, cgroups, capabilities, seccomp. Every unsafe block carries a `// SAFETY:` comment.

pub mod cgroup;
pub mod container;
pub mod exe;
pub mod exec;
pub mod init;
pub mod netlo;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod zygote;

use std::os::fd::RawFd;

/// `fork()` for the single-threaded shim. Callers check that the process has one thread.
pub(crate) fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: the callers (`container::spawn` and the shim's detach) first check that this
    // process has exactly one thread, so the child cannot inherit a lock held by another
    // thread; after the fork the child only makes syscalls, allocates and then either executes,
    // exits, or (the detached shim) goes on as the same single-threaded program.
    unsafe { nix::unistd::fork() }
}

/// Marks every fd from `first` on close-on-exec, so the container's process inherits only its
/// standard streams.
pub(crate) fn close_range_cloexec(first: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets the
    // close-on-exec flag, so no fd owned elsewhere in this process becomes invalid.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
}
