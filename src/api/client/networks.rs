//! The client's calls of the network, volume-prune and disk-usage endpoints.

use http::Method;

use super::{Client, Result, query_escape, with_query};
use crate::api::types::{
    DiskUsage, Network, NetworkConnect, NetworkContainer, NetworkCreate, NetworkDisconnect,
    NetworksPruned, VolumesPruned,
};

/// Filters of `GET /v1/networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFilter {
    /// `key` or `key=value`.
    pub label: Option<String>,
    /// A part of the name.
    pub name: Option<String>,
}

impl Client {
    /// `POST /v1/networks`.
    pub async fn create_network(&self, req: &NetworkCreate) -> Result<Network> {
        self.call(Method::POST, "/v1/networks", Some(req)).await
    }

    /// `GET /v1/networks` with filters.
    pub async fn list_networks(&self, filter: &NetworkFilter) -> Result<Vec<Network>> {
        let mut params = Vec::new();
        if let Some(l) = &filter.label {
            params.push(format!("label={}", query_escape(l)));
        }
        if let Some(n) = &filter.name {
            params.push(format!("name={}", query_escape(n)));
        }
        let path = with_query("/v1/networks", &params);
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/networks/{name}` (name, id or id prefix).
    pub async fn inspect_network(&self, name: &str) -> Result<Network> {
        let path = format!("/v1/networks/{}", query_escape(name));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/networks/{name}`.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        let path = format!("/v1/networks/{}", query_escape(name));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /v1/networks/{name}/connect`: the container's new endpoint.
    pub async fn connect_network(
        &self,
        name: &str,
        req: &NetworkConnect,
    ) -> Result<NetworkContainer> {
        let path = format!("/v1/networks/{}/connect", query_escape(name));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/networks/{name}/disconnect`.
    pub async fn disconnect_network(&self, name: &str, req: &NetworkDisconnect) -> Result<()> {
        let path = format!("/v1/networks/{}/disconnect", query_escape(name));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/networks/prune`, optionally only networks with a label (`key` or
    /// `key=value`).
    pub async fn prune_networks(&self, label: Option<&str>) -> Result<NetworksPruned> {
        let params: Vec<String> = label
            .map(|l| format!("label={}", query_escape(l)))
            .into_iter()
            .collect();
        let path = with_query("/v1/networks/prune", &params);
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `POST /v1/volumes/prune`: anonymous volumes no container mounts, or with `all` every
    /// unused one; optionally only those with a label.
    pub async fn prune_volumes(&self, all: bool, label: Option<&str>) -> Result<VolumesPruned> {
        let mut params = Vec::new();
        if all {
            params.push("all=true".to_string());
        }
        if let Some(l) = label {
            params.push(format!("label={}", query_escape(l)));
        }
        let path = with_query("/v1/volumes/prune", &params);
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `GET /v1/system/df`.
    pub async fn system_df(&self) -> Result<DiskUsage> {
        self.call(Method::GET, "/v1/system/df", None::<&()>).await
    }
}
