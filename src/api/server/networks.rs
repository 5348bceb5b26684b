//! `/v1/networks`: create, list, inspect, remove and prune bridge networks through the
//! daemon's [`crate::network::Networks`] (bridge, subnet, nftables rules); a network with
//! containers attached is never removed, and its containers are named in the refusal.
//! Connect and disconnect add or remove an endpoint of a container's own network namespace
//! (recorded in the network's record, one store transaction, so it survives a restart and the
//! container's removal releases it) and follow it in the network's DNS.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ServerState;
use super::volumes::with_engine;
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{
    ErrorBody, Event, Network, NetworkConnect, NetworkContainer, NetworkCreate, NetworkDisconnect,
    NetworksPruned,
};
use crate::engine::project::ProjectEngine;
use crate::engine::project::labels as plabels;
use crate::network::ipam::IpamError;
use crate::network::{self, NetworkError, NetworkOptions};
use crate::store::StoreError;

pub(super) fn network_error(e: NetworkError) -> ApiError {
    match &e {
        NetworkError::InvalidName { .. }
        | NetworkError::NeedsSubnet { .. }
        | NetworkError::InvalidGateway { .. } => ApiError::bad_request(e.to_string()),
        NetworkError::Ipam { source, .. } => match source {
            IpamError::Overlap { .. }
            | IpamError::PoolExhausted { .. }
            | IpamError::InUse { .. }
            | IpamError::SubnetExhausted { .. }
            | IpamError::RangeExhausted { .. } => ApiError::conflict(e.to_string()),
            _ => ApiError::bad_request(e.to_string()),
        },
        NetworkError::NotFound { .. } => ApiError::not_found(e.to_string()),
        NetworkError::InUse { .. }
        | NetworkError::AlreadyConnected { .. }
        | NetworkError::NotConnected { .. } => ApiError::conflict(e.to_string()),
        NetworkError::Store(StoreError::NameConflict { name, .. }) => {
            ApiError::conflict(format!("network {name:?} already exists"))
        }
        _ => {
            tracing::error!(error = %e, "network operation");
            ApiError::internal(e.to_string())
        }
    }
}

/// The containers of the data root by the path of the network namespace they own.
fn netns_owners(engine: &ProjectEngine) -> BTreeMap<PathBuf, (String, String)> {
    let dir = engine.networks().netns_dir();
    engine
        .runtime()
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let ns = c.meta.labels.get(plabels::NETNS)?;
            Some((dir.join(ns), (c.meta.id, c.meta.name)))
        })
        .collect()
}

fn to_api(n: network::Network, owners: &BTreeMap<PathBuf, (String, String)>) -> Network {
    Network {
        id: n.id,
        name: n.name,
        driver: "bridge".to_string(),
        scope: "local".to_string(),
        created: n.created,
        internal: n.internal,
        labels: n.labels,
        subnet: n.subnet.to_string(),
        gateway: n.gateway.to_string(),
        ip_range: n.ip_range.map(|r| r.to_string()),
        bridge: n.bridge,
        containers: n
            .endpoints
            .into_iter()
            .map(|e| {
                let (id, name) = owners.get(&e.netns).cloned().unwrap_or_default();
                NetworkContainer {
                    id,
                    name,
                    ipv4_address: format!("{}/{}", e.ip, e.prefix),
                    mac_address: e.mac,
                    aliases: e.aliases,
                }
            })
            .collect(),
    }
}

/// The network named `arg`, or whose id is `arg` or begins with it (unique).
fn resolve(engine: &ProjectEngine, arg: &str) -> Result<network::Network, ApiError> {
    match engine.networks().get(arg) {
        Ok(n) => return Ok(n),
        Err(NetworkError::NotFound { .. }) => {}
        Err(e) => return Err(network_error(e)),
    }
    let hex = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_hexdigit());
    let mut found: Vec<_> = if hex {
        engine
            .networks()
            .list()
            .map_err(network_error)?
            .into_iter()
            .filter(|n| n.id.starts_with(arg))
            .collect()
    } else {
        Vec::new()
    };
    match found.len() {
        0 => Err(ApiError::not_found(format!("network {arg:?} not found"))),
        1 => Ok(found.remove(0)),
        n => Err(ApiError::bad_request(format!(
            "network id prefix {arg:?} is ambiguous ({n} networks)"
        ))),
    }
}

fn has_label(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

/// Creates a bridge network: its subnet (given or a free one of the pool), its bridge with
/// the gateway's address and its nftables rules; nothing is left when a step fails.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", request_body = NetworkCreate,
    responses((status = 201, body = Network),
        (status = 400, description = "bad name, driver, subnet, gateway or ip range",
            body = ErrorBody),
        (status = 409, description = "the name is taken, or the subnet overlaps another \
            network or a route of the host", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<ServerState>,
    JsonBody(req): JsonBody<NetworkCreate>,
) -> Result<(StatusCode, axum::Json<Network>), ApiError> {
    if let Some(d) = req.driver.as_deref().filter(|d| *d != "bridge") {
        return Err(ApiError::bad_request(format!(
            "network driver {d:?} is not supported (only bridge)"
        )));
    }
    let ipam = req.ipam.unwrap_or_default();
    let options = NetworkOptions {
        subnet: ipam.subnet,
        gateway: ipam.gateway,
        ip_range: ipam.ip_range,
        internal: req.internal,
        labels: req.labels,
    };
    let name = req.name;
    let net = with_engine(&state, move |e| {
        e.networks()
            .create_network(&name, &options)
            .map(|n| to_api(n, &BTreeMap::new()))
            .map_err(network_error)
    })
    .await?;
    state.events.publish(
        Event::now("network", "create", &net.id, &net.name)
            .with("type", "bridge")
            .with("subnet", &net.subnet),
    );
    Ok((StatusCode::CREATED, axum::Json(net)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// `key` or `key=value`: only networks carrying this label.
    label: Option<String>,
    /// Only networks whose name contains this text (Docker's `name` filter).
    name: Option<String>,
}

/// Every network, by name.
#[utoipa::path(get, path = "/v1/networks", tag = "networks", params(ListQuery),
    responses((status = 200, body = Vec<Network>), (status = 400, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<ServerState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<axum::Json<Vec<Network>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let nets = with_engine(&state, move |e| {
        let owners = netns_owners(e);
        Ok(e.networks()
            .list()
            .map_err(network_error)?
            .into_iter()
            .filter(|n| {
                query
                    .label
                    .as_deref()
                    .is_none_or(|l| has_label(&n.labels, l))
            })
            .filter(|n| query.name.as_deref().is_none_or(|s| n.name.contains(s)))
            .map(|n| to_api(n, &owners))
            .collect())
    })
    .await?;
    Ok(axum::Json(nets))
}

/// One network, by name, id or unique id prefix, with its containers.
#[utoipa::path(get, path = "/v1/networks/{name}", tag = "networks",
    params(("name" = String, Path, description = "network name, id or id prefix")),
    responses((status = 200, body = Network), (status = 404, body = ErrorBody)))]
pub(super) async fn inspect(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Network>, ApiError> {
    let net = with_engine(&state, move |e| {
        let n = resolve(e, &name)?;
        Ok(to_api(n, &netns_owners(e)))
    })
    .await?;
    Ok(axum::Json(net))
}

/// Removes a network (its bridge, rules and record); refused while containers are attached.
#[utoipa::path(delete, path = "/v1/networks/{name}", tag = "networks",
    params(("name" = String, Path, description = "network name, id or id prefix")),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, description = "containers are attached", body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let net = with_engine(&state, move |e| {
        let n = resolve(e, &name)?;
        let api = to_api(n, &netns_owners(e));
        if !api.containers.is_empty() {
            return Err(in_use(&api));
        }
        Ok(api)
    })
    .await?;
    let net = remove_unused(&state, net).await?;
    state
        .events
        .publish(Event::now("network", "destroy", &net.id, &net.name).with("type", "bridge"));
    Ok(StatusCode::NO_CONTENT)
}

fn in_use(net: &Network) -> ApiError {
    let names: Vec<&str> = net
        .containers
        .iter()
        .map(|c| {
            if c.name.is_empty() {
                "(a container being created or removed)"
            } else {
                c.name.as_str()
            }
        })
        .collect();
    ApiError::conflict(format!(
        "network {} is in use by container(s) {}",
        net.name,
        names.join(", ")
    ))
}

/// Stops the network's DNS server, then removes it (refused by the library if a container
/// was attached meanwhile).
async fn remove_unused(state: &ServerState, net: Network) -> Result<Network, ApiError> {
    state.containers.network_removed(&net.name).await;
    with_engine(state, move |e| match e.networks().remove_network(&net.id) {
        Ok(()) => Ok(net),
        Err(NetworkError::InUse { .. }) => {
            let now = e.networks().get(&net.id).map_err(network_error)?;
            Err(in_use(&to_api(now, &netns_owners(e))))
        }
        Err(err) => Err(network_error(err)),
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct PruneQuery {
    /// `key` or `key=value`: only networks carrying this label.
    label: Option<String>,
}

/// Removes every network no container is attached to; returns their names.
#[utoipa::path(post, path = "/v1/networks/prune", tag = "networks", params(PruneQuery),
    responses((status = 200, body = NetworksPruned), (status = 400, body = ErrorBody)))]
pub(super) async fn prune(
    State(state): State<ServerState>,
    query: Result<Query<PruneQuery>, QueryRejection>,
) -> Result<axum::Json<NetworksPruned>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let unused = with_engine(&state, move |e| {
        Ok(e.networks()
            .list()
            .map_err(network_error)?
            .into_iter()
            .filter(|n| n.endpoints.is_empty())
            .filter(|n| {
                query
                    .label
                    .as_deref()
                    .is_none_or(|l| has_label(&n.labels, l))
            })
            .map(|n| to_api(n, &BTreeMap::new()))
            .collect::<Vec<_>>())
    })
    .await?;
    let mut pruned = Vec::new();
    for net in unused {
        match remove_unused(&state, net).await {
            Ok(net) => {
                state.events.publish(
                    Event::now("network", "destroy", &net.id, &net.name).with("type", "bridge"),
                );
                pruned.push(net.name);
            }
            // Attached or removed meanwhile: not unused any more.
            Err(e) if e.status == StatusCode::CONFLICT || e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    state
        .events
        .publish(Event::now("network", "prune", "", "").with("count", pruned.len()));
    Ok(axum::Json(NetworksPruned { networks: pruned }))
}

/// The network namespace container `c` owns; a container sharing another's (`network_mode:
/// container:`/`service:`), the host's or none cannot change networks (409).
fn own_netns(
    engine: &ProjectEngine,
    c: &crate::runtime::lifecycle::Container,
) -> Result<PathBuf, ApiError> {
    if let Some(ns) = c.meta.labels.get(plabels::NETNS) {
        return Ok(engine.networks().netns_dir().join(ns));
    }
    let dir = engine.runtime().dir(&c.meta.id);
    let mode = match oci_spec::runtime::Spec::load(dir.join("config.json")) {
        Ok(spec) => {
            let net = spec
                .linux()
                .as_ref()
                .and_then(|l| l.namespaces().clone())
                .unwrap_or_default()
                .into_iter()
                .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network);
            match net.as_ref().and_then(|n| n.path().clone()) {
                None if net.is_some() => "network_mode none",
                Some(p) if p == std::path::Path::new("/proc/self/ns/net") => "network_mode host",
                Some(_) => "the network namespace of another container",
                None => "network_mode host",
            }
        }
        Err(_) => "no network namespace of its own",
    };
    Err(ApiError::conflict(format!(
        "container {} uses {mode}: it cannot be connected to or disconnected from a network",
        c.meta.name
    )))
}

/// Connects a container (created, running or stopped, with a network namespace of its own) to
/// the network: an address from the network's pool or the asked one, a new interface inside
/// at once, and its name and aliases in the network's DNS while it runs. A failed connect
/// leaves no interface and no address taken.
#[utoipa::path(post, path = "/v1/networks/{name}/connect", tag = "networks",
    params(("name" = String, Path, description = "network name, id or id prefix")),
    request_body = NetworkConnect,
    responses((status = 200, description = "the container's endpoint on the network",
            body = NetworkContainer),
        (status = 400, description = "bad address or alias, or an address outside the \
            network's subnet", body = ErrorBody),
        (status = 404, description = "no such network or container", body = ErrorBody),
        (status = 409, description = "already connected, the address is in use or the pool \
            exhausted, or the container has no network namespace of its own (network_mode \
            host, none, container:)", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub(super) async fn connect(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<NetworkConnect>,
) -> Result<axum::Json<NetworkContainer>, ApiError> {
    let ipv4 = match req.ipv4_address.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(a) => Some(a.parse::<Ipv4Addr>().map_err(|_| {
            ApiError::bad_request(format!("ipv4_address {a:?}: not an IPv4 address"))
        })?),
    };
    for a in &req.aliases {
        crate::network::dns::check_name(a)
            .map_err(|e| ApiError::bad_request(format!("alias: {e}")))?;
    }
    let id = state.containers.resolve(&req.container).await?;
    let _guard = state.containers.lock(&id).await;
    let cid = id.clone();
    let (net, ep, cname) = with_engine(&state, move |e| {
        let net = resolve(e, &name)?;
        let c = e.runtime().inspect(&cid)?;
        let netns = own_netns(e, &c)?;
        let mut aliases = vec![c.meta.name.clone()];
        for a in req.aliases {
            if !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        let ep = e
            .networks()
            .connect(&netns, &net.id, &aliases, ipv4)
            .map_err(|err| match err {
                NetworkError::AlreadyConnected { .. } => ApiError::conflict(format!(
                    "container {} is already connected to network {}",
                    c.meta.name, net.name
                )),
                other => network_error(other),
            })?;
        Ok((net, ep, c.meta.name))
    })
    .await?;
    state.containers.network_connected(&id).await;
    state.events.publish(
        Event::now("network", "connect", &net.id, &net.name)
            .with("container", &id)
            .with("type", "bridge"),
    );
    tracing::info!(network = %net.name, container = %cname, ip = %ep.ip, "container connected");
    Ok(axum::Json(NetworkContainer {
        id,
        name: cname,
        ipv4_address: format!("{}/{}", ep.ip, ep.prefix),
        mac_address: ep.mac,
        aliases: ep.aliases,
    }))
}

/// Disconnects a container from the network: its interface goes, its address is released
/// and its names leave the network's DNS.
#[utoipa::path(post, path = "/v1/networks/{name}/disconnect", tag = "networks",
    params(("name" = String, Path, description = "network name, id or id prefix")),
    request_body = NetworkDisconnect,
    responses((status = 204),
        (status = 404, description = "no such network or container", body = ErrorBody),
        (status = 409, description = "the container is not connected to the network (unless \
            force), or has no network namespace of its own", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub(super) async fn disconnect(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<NetworkDisconnect>,
) -> Result<StatusCode, ApiError> {
    let id = state.containers.resolve(&req.container).await?;
    let _guard = state.containers.lock(&id).await;
    let cid = id.clone();
    let force = req.force;
    let done = with_engine(&state, move |e| {
        let net = resolve(e, &name)?;
        let c = e.runtime().inspect(&cid)?;
        let netns = own_netns(e, &c)?;
        match e.networks().disconnect(&netns, &net.id) {
            Ok(()) => Ok(Some(net)),
            Err(NetworkError::NotConnected { .. }) if force => Ok(None),
            Err(NetworkError::NotConnected { .. }) => Err(ApiError::conflict(format!(
                "container {} is not connected to network {}",
                c.meta.name, net.name
            ))),
            Err(other) => Err(network_error(other)),
        }
    })
    .await?;
    if let Some(net) = done {
        state.containers.network_disconnected(&id, &net.name);
        state.events.publish(
            Event::now("network", "disconnect", &net.id, &net.name)
                .with("container", &id)
                .with("type", "bridge"),
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
