//! Volumes: named volumes of the `local` driver under the data root (bind mounts and tmpfs
//! mounts of containers arrive with the compose wiring).
//!
//! [`Volumes`] (one per data root, blocking) creates, lists, inspects, removes and prunes named
//! volumes: a directory `<root>/volumes/<name>/_data` or, for a bind-type local volume
//! (`type=none,o=bind,device=/path`), that existing host directory; the record (driver,
//! mountpoint, options in its body) is written to the state database in one transaction.
//! Containers are not the volume library's business: removal and prune take a callback that
//! names the containers using a volume, and refuse a volume in use. [`copy_up`] fills a new,
//! still empty volume with the content the image has at the mount target (Docker's
//! behaviour), reading the image only through fds confined to its root. [`usage`] measures
//! trees on disk (`system df`).

mod copy_up;
mod local;
pub mod usage;

pub use copy_up::{CopyUp, copy_up};
pub use local::{DRIVER, Volume, VolumeError, Volumes, valid_name};
