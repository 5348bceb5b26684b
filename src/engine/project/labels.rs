//! The labels a project's containers, networks and volumes carry: Compose's
//! `com.docker.compose.*`, defined by the planner ([`crate::plan::labels`], re-exported here so
//! what the engine writes is what the planner reads), and the engine's own `io.flotilla.*`
//! bookkeeping of what a container owns (its network namespace, its volumes).

pub use crate::plan::labels::{
    CONFIG_HASH, CONTAINER_NUMBER, IMAGE, NETWORK, ONEOFF, PROJECT, SERVICE, VOLUME,
};

/// The id of the network namespace the container owns (`<root>/netns/<id>`); removed with it.
pub const NETNS: &str = "io.flotilla.netns";
/// Comma-separated names of every volume the container mounts (named and anonymous).
pub const VOLUMES: &str = "io.flotilla.volumes";
/// Comma-separated names of the anonymous volumes created for the container.
pub const ANONYMOUS_VOLUMES: &str = "io.flotilla.anonymous-volumes";
/// On an anonymous volume: the project it was made for.
pub const ANONYMOUS_PROJECT: &str = "io.flotilla.anonymous.project";
/// On an anonymous volume: the container it was made for.
pub const ANONYMOUS_CONTAINER: &str = "io.flotilla.anonymous.container";

/// The container's bind and volume mounts as a JSON list of `{source, target, read_only}`:
/// what `volumes_from` of another container shares.
pub const MOUNTS: &str = "io.flotilla.mounts";
/// The id of the directory holding the container's materialized secrets and configs
/// (`<root>/files/<id>`); removed with it.
pub const FILES: &str = "io.flotilla.files";

/// Splits a comma-separated list label.
pub fn list(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
