//! The loopback interface of a container's fresh network namespace: a new network namespace
//! starts with `lo` down, so `127.0.0.1` and `localhost` would not answer. [`loopback_up`] sets
//! `IFF_UP` on `lo` with `ioctl(SIOCSIFFLAGS)` on a datagram socket created inside the namespace
//! (the socket's namespace is the one the ioctl acts on). Small on purpose: links, addresses and
//! routes of real networks go through rtnetlink in the network module.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sched::CloneFlags;

use super::container::ContainerError;

/// Sets `lo` up in the calling thread's network namespace (a no-op when it already is).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is a plain C struct (a name array and a union of integers and
    // addresses) for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes `ifru_flags` inside `req`,
    // a live, correctly sized `struct ifreq`; the socket fd is open for the whole call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    if flags & up == up {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | up;
    // SAFETY: as above; SIOCSIFFLAGS only reads the name and the flags from `req`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The container-setup hook: after the container's process unshared `flags`, brings `lo` up
/// when a new network namespace was among them.
pub(crate) fn after_unshare(flags: CloneFlags) -> Result<(), ContainerError> {
    if !flags.contains(CloneFlags::CLONE_NEWNET) {
        return Ok(());
    }
    loopback_up().map_err(|source| ContainerError::Credentials {
        step: "bring the loopback interface up in the new network namespace",
        source,
    })
}
