//! Standalone containers (`container create/run`) on a bridge network and with named volumes:
//! the network namespace, endpoint (DNS names), volumes and copy-up a service's container gets
//! ([`super::containers`]), without a project. Docker's default `bridge` network is a network
//! of this daemon like any other, made on first use (its bridge is `flt<prefix>-b…`, so test
//! daemons never share it).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::{ProjectEngine, labels};
use crate::network::{Attachment, Network, NetworkError, NetworkOptions};
use crate::runtime::config::BindMount;
use crate::runtime::lifecycle::CreateOptions;
use crate::volume::VolumeError;

/// The name of the daemon's default bridge network (Docker's `bridge`).
pub const DEFAULT_BRIDGE: &str = "bridge";

/// The label that marks the default bridge network.
pub const DEFAULT_BRIDGE_LABEL: &str = "io.flotilla.network.default-bridge";

/// Why a standalone container's network or volumes could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The network or image named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Bad input (a volume name, an alias).
    #[error("{0}")]
    Invalid(String),
    /// The container name is taken.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

/// A named volume to mount.
#[derive(Debug, Clone)]
pub struct NamedVolume {
    pub name: String,
    pub target: String,
    pub read_only: bool,
}

/// What a standalone create made before the container itself ([`ProjectEngine::undo_standalone`]
/// takes it back when the container's create fails).
#[derive(Debug, Default)]
pub struct Prepared {
    netns: Option<String>,
    volumes: Vec<String>,
}

impl ProjectEngine {
    /// The default bridge network, made now when it does not exist yet.
    pub fn default_bridge(&self) -> Result<Network, StandaloneError> {
        let failed = |e: NetworkError| StandaloneError::Failed(e.to_string());
        match self.networks.get(DEFAULT_BRIDGE) {
            Ok(n) => return Ok(n),
            Err(NetworkError::NotFound { .. }) => {}
            Err(e) => return Err(failed(e)),
        }
        let mut labels = BTreeMap::new();
        labels.insert(DEFAULT_BRIDGE_LABEL.to_string(), "true".to_string());
        let options = NetworkOptions {
            labels,
            ..NetworkOptions::default()
        };
        match self.networks.create_network(DEFAULT_BRIDGE, &options) {
            Ok(n) => Ok(n),
            // Made by a concurrent create meanwhile.
            Err(e) => self.networks.get(DEFAULT_BRIDGE).map_err(|_| failed(e)),
        }
    }

    /// Adds to `options` (a container of `image`) its named volumes (made when missing, and
    /// filled from the image while empty) and, with `network` (`bridge` or a network's name),
    /// a network namespace of its own connected to that network under its name and `aliases`,
    /// with the network's gateway as its DNS server unless `options` names one. On failure
    /// nothing of it is left.
    pub fn prepare_standalone(
        &self,
        options: &mut CreateOptions,
        image: &str,
        network: Option<&str>,
        aliases: &[String],
        volumes: &[NamedVolume],
    ) -> Result<Prepared, StandaloneError> {
        let mut made = Prepared::default();
        match self.prepare_steps(options, image, network, aliases, volumes, &mut made) {
            Ok(()) => Ok(made),
            Err(e) => {
                self.undo_standalone(made);
                Err(e)
            }
        }
    }

    fn prepare_steps(
        &self,
        options: &mut CreateOptions,
        image: &str,
        network: Option<&str>,
        aliases: &[String],
        volumes: &[NamedVolume],
        made: &mut Prepared,
    ) -> Result<(), StandaloneError> {
        // A taken name fails before anything is made.
        if let Some(name) = &options.name
            && let Ok(id) = self.runtime.resolve(name)
        {
            return Err(StandaloneError::Conflict(format!(
                "the container name {name:?} is already in use by container {id}"
            )));
        }
        let net = match network {
            None => None,
            Some(DEFAULT_BRIDGE) => Some(self.default_bridge()?),
            Some(name) => match self.networks.get(name) {
                Ok(n) => Some(n),
                Err(NetworkError::NotFound { .. }) => {
                    return Err(StandaloneError::NotFound(format!(
                        "network {name:?} not found (make it with `network create {name}`)"
                    )));
                }
                Err(e) => return Err(StandaloneError::Failed(e.to_string())),
            },
        };

        if !volumes.is_empty() {
            let (_, layers, _) = self
                .image("", image)
                .map_err(|e| StandaloneError::NotFound(e.to_string()))?;
            let mut used = Vec::new();
            for v in volumes {
                let verr = |e: VolumeError| match e {
                    VolumeError::InvalidName { .. } => StandaloneError::Invalid(e.to_string()),
                    other => StandaloneError::Failed(other.to_string()),
                };
                let existed = match self.volumes.get(&v.name) {
                    Ok(_) => true,
                    Err(VolumeError::NotFound { .. }) => false,
                    Err(e) => return Err(verr(e)),
                };
                let vol = self
                    .volumes
                    .create(&v.name, BTreeMap::new(), BTreeMap::new())
                    .map_err(verr)?;
                if !existed {
                    made.volumes.push(vol.name.clone());
                }
                super::containers::copy_up(&vol, &layers, &v.target).map_err(verr)?;
                options.config.binds.push(BindMount {
                    source: vol.mountpoint.clone(),
                    target: v.target.clone(),
                    read_only: v.read_only,
                });
                if !used.contains(&vol.name) {
                    used.push(vol.name);
                }
            }
            options
                .config
                .binds
                .sort_by_key(|b| b.target.trim_end_matches('/').matches('/').count());
            options
                .labels
                .insert(labels::VOLUMES.into(), used.join(","));
        }

        if let Some(net) = net {
            let nerr = |e: NetworkError| StandaloneError::Failed(e.to_string());
            let netns_id = crate::store::new_id().map_err(|e| nerr(NetworkError::Store(e)))?;
            let mut names: Vec<String> = options.name.iter().cloned().collect();
            for a in aliases {
                if !names.contains(a) {
                    names.push(a.clone());
                }
            }
            let attachment = Attachment {
                network: &net.id,
                aliases: &names,
                ipv4: None,
            };
            let (path, endpoints): (PathBuf, _) = self
                .networks
                .create_netns_connected(&netns_id, &[attachment])
                .map_err(nerr)?;
            made.netns = Some(netns_id.clone());
            let Some(ep) = endpoints.first() else {
                return Err(nerr(NetworkError::NotConnected {
                    network: net.name.clone(),
                    netns: path,
                }));
            };
            options.config.netns = Some(path);
            options.config.addresses = vec![IpAddr::V4(ep.ip)];
            options.labels.insert(labels::NETNS.into(), netns_id);
            if self.gateway_dns && options.config.dns.is_empty() {
                options.config.dns = vec![Ipv4Addr::to_string(&net.gateway)];
            }
        }
        Ok(())
    }

    /// Takes back what [`ProjectEngine::prepare_standalone`] made (its container was not made).
    pub fn undo_standalone(&self, made: Prepared) {
        if let Some(id) = made.netns
            && let Err(e) = self.networks.remove_netns(&id)
        {
            tracing::warn!(netns = %id, error = %e, "undo: remove the network namespace");
        }
        for v in made.volumes {
            if let Err(e) = self.volumes.remove(&v, true, &|_| Vec::new()) {
                tracing::warn!(volume = %v, error = %e, "undo: remove the volume");
            }
        }
    }
}
