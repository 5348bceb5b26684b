//! `/v1/networks`: create, list, inspect, remove and prune bridge networks through the
//! daemon's [`crate::network::Networks`] (bridge, subnet, nftables rules); a network with
//! containers attached is never removed, and its containers are named in the refusal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ServerState;
use super::volumes::with_engine;
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{
    ErrorBody, Event, Network, NetworkContainer, NetworkCreate, NetworksPruned,
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
            IpamError::Overlap { .. } | IpamError::PoolExhausted { .. } => {
                ApiError::conflict(e.to_string())
            }
            _ => ApiError::bad_request(e.to_string()),
        },
        NetworkError::NotFound { .. } => ApiError::not_found(e.to_string()),
        NetworkError::InUse { .. } => ApiError::conflict(e.to_string()),
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
