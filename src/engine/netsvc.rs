//! The daemon's per-network services, following containers as they start and stop: the
//! embedded DNS server of each network (on its gateway address, port 53: service names,
//! container names and aliases of the running containers, other names forwarded to the
//! upstream resolvers of `[dns]` in the daemon config) and the userland proxies of published
//! ports (bound before the container starts, so a port held by another process fails the start
//! with a clear error and nothing half-started; released when it stops).
//!
//! A container's networks are its network namespace's endpoints (the `io.flotilla.netns`
//! label); its published ports are stored at create in `<state dir>/ports.json` (the service's
//! `ports`, long syntax).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::engine::project::labels::NETNS;
use crate::network::dns::{Directory, DnsConfig, DnsServer};
use crate::network::proxy::{PortBinding, Proxies, ProxyConfig, PublishRequest};
use crate::network::{Endpoint, Network, Networks};
use crate::runtime::lifecycle::Runtime;
use crate::runtime::state;
use crate::spec::model;

/// The file holding a container's published ports.
pub const PORTS_FILE: &str = "ports.json";

/// Stores `ports` as the container's published ports (at create).
pub fn write_ports(dir: &Path, ports: &[model::Port]) -> std::io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let data = serde_json::to_vec(ports).map_err(std::io::Error::other)?;
    state::write_atomic(&dir.join(PORTS_FILE), &data)
}

fn read_ports(dir: &Path) -> Vec<model::Port> {
    std::fs::read(dir.join(PORTS_FILE))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// DNS servers and port proxies of one daemon.
pub struct NetServices {
    networks: Arc<Networks>,
    runtime: Runtime,
    proxies: Proxies,
    directory: Arc<Directory>,
    servers: tokio::sync::Mutex<HashMap<String, DnsServer>>,
    upstreams: Vec<SocketAddr>,
    /// The networks each running container's names are registered in.
    registered: std::sync::Mutex<HashMap<String, Vec<String>>>,
}

impl std::fmt::Debug for NetServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetServices")
            .field("upstreams", &self.upstreams)
            .finish()
    }
}

impl NetServices {
    pub fn new(networks: Arc<Networks>, runtime: Runtime, upstreams: Vec<SocketAddr>) -> Arc<Self> {
        Arc::new(NetServices {
            networks,
            runtime,
            proxies: Proxies::new(ProxyConfig::default()),
            directory: Arc::new(Directory::new()),
            servers: tokio::sync::Mutex::new(HashMap::new()),
            upstreams,
            registered: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The networks and endpoints of container `id` (none without a netns of its own).
    async fn endpoints(&self, id: &str) -> Vec<(Network, Endpoint)> {
        let (networks, runtime, id) = (self.networks.clone(), self.runtime.clone(), id.to_string());
        tokio::task::spawn_blocking(move || {
            let Ok(meta) = runtime.meta(&id) else {
                return Vec::new();
            };
            let Some(netns) = meta.labels.get(NETNS) else {
                return Vec::new();
            };
            let path = networks.netns_dir().join(netns);
            let Ok(all) = networks.list() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for n in all {
                for e in n.endpoints.iter().filter(|e| e.netns == path) {
                    out.push((n.clone(), e.clone()));
                }
            }
            out
        })
        .await
        .unwrap_or_default()
    }

    /// Binds the published ports of container `id` (before it starts). Fails naming the port
    /// when one cannot be bound; then nothing of it stays bound.
    pub async fn publish(&self, id: &str) -> Result<Vec<PortBinding>, String> {
        let ports = read_ports(&self.runtime.dir(id));
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let endpoints = self.endpoints(id).await;
        let Some((_, first)) = endpoints.first() else {
            return Err("published ports need a bridge network (the container has none)".into());
        };
        let ip = IpAddr::V4(first.ip);
        let mut requests = Vec::new();
        for p in &ports {
            let protocol = p.protocol.as_deref().unwrap_or("tcp");
            requests.push(
                PublishRequest::from_long_syntax(
                    p.host_ip.as_deref(),
                    p.published.as_deref(),
                    p.target,
                    protocol,
                    ip,
                )
                .map_err(|e| e.to_string())?,
            );
        }
        self.proxies.start(id, &requests).map_err(|e| e.to_string())
    }

    /// Makes the running container `id` known to the DNS server of each of its networks
    /// (starting the server of a network on its first container).
    pub async fn register(&self, id: &str) {
        for (network, endpoint) in self.endpoints(id).await {
            let records = self.directory.network(&network.name);
            if let Err(e) = records.set_endpoint(id, endpoint.ip, &endpoint.aliases) {
                tracing::warn!(id, network = %network.name, error = %e, "register DNS names");
            }
            if let Ok(mut r) = self.registered.lock() {
                let list = r.entry(id.to_string()).or_default();
                if !list.contains(&network.name) {
                    list.push(network.name.clone());
                }
            }
            if network.internal {
                // An internal network's bridge has no address to answer on.
                continue;
            }
            let mut servers = self.servers.lock().await;
            if servers.contains_key(&network.name) {
                continue;
            }
            let config = DnsConfig {
                upstreams: self.upstreams.clone(),
                clients: Some(network.subnet),
                directory: Some(self.directory.clone()),
                ..DnsConfig::default()
            };
            let addr = SocketAddr::new(IpAddr::V4(network.gateway), 53);
            match DnsServer::start(addr, records, config).await {
                Ok(server) => {
                    servers.insert(network.name.clone(), server);
                }
                Err(e) => {
                    tracing::warn!(network = %network.name, error = %e, "start the DNS server")
                }
            }
        }
    }

    /// Forgets container `id`: its names leave every network's DNS, its ports are released.
    pub async fn unregister(&self, id: &str) {
        self.proxies.stop(id).await;
        let networks = self
            .registered
            .lock()
            .ok()
            .and_then(|mut r| r.remove(id))
            .unwrap_or_default();
        for network in networks {
            self.directory.network(&network).remove_endpoint(id);
        }
    }

    /// Takes container `id`'s names out of `network`'s DNS (disconnected from it while
    /// running); its other networks keep them.
    pub fn disconnected(&self, id: &str, network: &str) {
        let was = self
            .registered
            .lock()
            .ok()
            .and_then(|mut r| {
                let list = r.get_mut(id)?;
                let before = list.len();
                list.retain(|n| n != network);
                Some(list.len() != before)
            })
            .unwrap_or(false);
        if was {
            self.directory.network(network).remove_endpoint(id);
        }
    }

    /// The published ports of container `id` as bound.
    pub fn ports(&self, id: &str) -> Vec<PortBinding> {
        self.proxies.port(id)
    }

    /// Stops the DNS server of a network about to be removed.
    pub async fn network_removed(&self, name: &str) {
        if let Some(server) = self.servers.lock().await.remove(name) {
            server.stop().await;
        }
        self.directory.remove_network(name);
    }
}
