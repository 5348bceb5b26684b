//! The daemon's engine: the process itself ([`daemon`]: listeners, lock, pid file, signals), the
//! event bus and its log ([`events`]), the daemon configuration file ([`config`]: registries,
//! mirrors), the container service ([`containers`]: lifecycle calls off the async threads,
//! per-container locks, exit watchers), live restore at start ([`restore`]) and the lock table
//! ([`locks`]: one async mutex per object or project); the reconciler ([`reconcile`]) that
//! executes plans through the compose engine ([`project`]), health and restart supervision
//! ([`health`], [`restart`]), Compose's lifecycle hooks ([`hooks`]), per-network DNS and published ports ([`netsvc`]) and pulls
//! ([`images`]).

pub mod build;
pub mod compose_build;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod events;
pub mod health;
pub mod hooks;
pub mod images;
pub mod locks;
pub mod netsvc;
pub mod project;
pub mod reconcile;
pub mod restart;
pub mod restore;
