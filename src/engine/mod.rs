//! The daemon's engine: the process itself ([`daemon`]: listeners, lock, pid file, signals), the
//! event bus ([`events`]), the daemon configuration file ([`config`]: registries, mirrors); the
//! reconciler that executes plans, restart and health supervision
//! and per-project locks arrive with the reconciler issue.

pub mod config;
pub mod daemon;
pub mod events;
