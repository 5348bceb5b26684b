//! Request and response bodies of the network, volume-prune and disk-usage endpoints
//! (`/v1/networks`, `/v1/volumes/prune`, `/v1/system/df`), re-exported by [`super`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    /// Unique among networks (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
    pub name: String,
    /// Only `bridge` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// No route out: containers get no default route, nothing is forwarded in or out.
    #[serde(default)]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Addressing; none: a free /24 of the daemon's pool, its first address the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<NetworkIpam>,
}

/// The addressing of a new network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkIpam {
    /// An IPv4 network in CIDR form (`10.99.0.0/24`); it may overlap no other network and no
    /// route of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The bridge's address inside `subnet` (default: its first address); needs `subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// A CIDR inside `subnet` that containers' addresses are taken from; needs `subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// A network, as list, inspect and create return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Network {
    /// 64 hexadecimal digits.
    pub id: String,
    pub name: String,
    /// `bridge`.
    pub driver: String,
    /// `local`.
    pub scope: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created: u64,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// CIDR.
    pub subnet: String,
    pub gateway: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    /// The host's bridge interface.
    pub bridge: String,
    /// The containers attached to it.
    #[serde(default)]
    pub containers: Vec<NetworkContainer>,
}

/// A container's attachment to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkContainer {
    /// The container's id; empty when no container owns the namespace (being created or
    /// removed).
    #[serde(default)]
    pub id: String,
    /// The container's name; empty like `id`.
    #[serde(default)]
    pub name: String,
    /// Its address in CIDR form (`10.99.0.2/24`).
    pub ipv4_address: String,
    pub mac_address: String,
    /// Names the network's DNS answers for it besides its own.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// `POST /v1/networks/prune`: the networks removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworksPruned {
    pub networks: Vec<String>,
}

/// `POST /v1/volumes/prune`: the volumes removed and the bytes their content took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumesPruned {
    pub volumes: Vec<String>,
    pub reclaimed: u64,
}

/// `GET /v1/system/df`: what images, containers and volumes take on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiskUsage {
    pub images: UsageSummary,
    pub containers: UsageSummary,
    pub volumes: UsageSummary,
}

/// One row of `system df`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageSummary {
    /// How many there are.
    pub count: u64,
    /// Images some container was made from; running containers; volumes some container
    /// mounts.
    pub active: u64,
    /// Bytes: images' unpacked layers (each shared layer once), containers' writable layers,
    /// volumes' content (bind volumes' devices not counted), symlinks not followed and
    /// mounts not crossed.
    pub size: u64,
    /// Bytes a prune could free: layers no container's image uses, the writable layers of
    /// stopped containers, the content of volumes no container mounts.
    pub reclaimable: u64,
}

/// `POST /v1/networks/{name}/connect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConnect {
    /// The container's name, id or id prefix.
    pub container: String,
    /// More names the network's DNS answers for it (its own name always).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its address on the network (inside the subnet, free); none: the next free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

/// `POST /v1/networks/{name}/disconnect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkDisconnect {
    /// The container's name, id or id prefix.
    pub container: String,
    /// Succeed (doing nothing) when the container is not connected to the network.
    #[serde(default)]
    pub force: bool,
}
