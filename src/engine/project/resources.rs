//! The project's networks and volumes: created with Compose's names and labels when missing,
//! external ones checked, removed (never external ones).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value as J;

use super::{ProjectEngine, ProjectError, Result, labels, translate};
use crate::network::ipam::{self, Ipv4Net};
use crate::network::{Network, NetworkError, NetworkOptions};
use crate::spec::model;
use crate::volume::{Volume, VolumeError};

fn is_unset(v: &J) -> bool {
    match v {
        J::Null => true,
        J::Bool(b) => !b,
        J::Object(o) => o.is_empty(),
        J::Array(a) => a.is_empty(),
        J::String(s) => s.is_empty(),
        J::Number(_) => false,
    }
}

/// `ipam.config[0]` of a network definition: its subnet, gateway and ip range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ipam {
    subnet: Option<String>,
    gateway: Option<String>,
    ip_range: Option<String>,
}

/// `ipam.config[0]` of a network definition (`subnet`, `gateway`, `ip_range`; the rest
/// refused), checked here so an error names the field: the gateway an IPv4 address and the
/// range a CIDR, both inside the subnet, which they need.
fn ipam_config(key: &str, ipam: Option<&J>) -> Result<Ipam> {
    let bad = |reason: String| ProjectError::NetworkField {
        key: key.to_string(),
        reason,
    };
    // `networks.<key>.ipam.config[0].<field>: <reason>`.
    let field = |f: &str, reason: String| ProjectError::NetworkField {
        key: format!("{key}.ipam.config[0].{f}"),
        reason,
    };
    let Some(J::Object(ipam)) = ipam else {
        return Ok(Ipam::default());
    };
    if let Some(d) = ipam
        .get("driver")
        .and_then(J::as_str)
        .filter(|d| *d != "default")
    {
        return Err(bad(format!(
            "ipam.driver {d:?} is not supported (only default)"
        )));
    }
    if let Some((k, _)) = ipam
        .iter()
        .find(|(k, v)| !matches!(k.as_str(), "driver" | "config") && !is_unset(v))
    {
        return Err(bad(format!("ipam.{k}: not supported yet")));
    }
    let configs = match ipam.get("config") {
        Some(J::Array(c)) => c.clone(),
        _ => Vec::new(),
    };
    if configs.len() > 1 {
        return Err(bad(
            "ipam.config: only one subnet per network is supported yet".into(),
        ));
    }
    let Some(J::Object(c)) = configs.into_iter().next() else {
        return Ok(Ipam::default());
    };
    if let Some((k, _)) = c
        .iter()
        .find(|(k, v)| !matches!(k.as_str(), "subnet" | "gateway" | "ip_range") && !is_unset(v))
    {
        return Err(bad(format!(
            "ipam.config[0].{k}: not supported yet (only subnet, gateway and ip_range)"
        )));
    }
    let text = |k: &str| {
        c.get(k)
            .and_then(J::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let out = Ipam {
        subnet: text("subnet"),
        gateway: text("gateway"),
        ip_range: text("ip_range"),
    };
    let Some(subnet) = &out.subnet else {
        for (k, v) in [("gateway", &out.gateway), ("ip_range", &out.ip_range)] {
            if v.is_some() {
                return Err(field(k, "needs ipam.config[0].subnet".into()));
            }
        }
        return Ok(out);
    };
    let subnet: Ipv4Net = subnet
        .parse()
        .map_err(|e: ipam::IpamError| field("subnet", e.to_string()))?;
    let gateway = match &out.gateway {
        None => subnet.gateway(),
        Some(g) => {
            let gw = g
                .parse::<Ipv4Addr>()
                .map_err(|_| field("gateway", format!("{g:?} is not an IPv4 address")))?;
            let pool = ipam::Pool {
                subnet,
                gateway: gw,
                range: None,
            };
            ipam::check_pool(&pool).map_err(|e| field("gateway", e.to_string()))?;
            gw
        }
    };
    if let Some(r) = &out.ip_range {
        let range: Ipv4Net = r
            .parse()
            .map_err(|e: ipam::IpamError| field("ip_range", e.to_string()))?;
        let pool = ipam::Pool {
            subnet,
            gateway,
            range: Some(range),
        };
        ipam::check_pool(&pool).map_err(|e| field("ip_range", e.to_string()))?;
    }
    Ok(out)
}

impl ProjectEngine {
    // --- networks -------------------------------------------------------------------------

    /// Makes sure the project's network `key` exists: `<project>_<key>` (or `name:`) is
    /// created with Compose's labels when missing, an existing one is returned as it is; an
    /// `external` one must already exist.
    pub fn ensure_network(
        &self,
        project: &str,
        key: &str,
        net: &model::Network,
    ) -> Result<Network> {
        let name = translate::network_name_of(project, key, net);
        let nerr = |source| ProjectError::Network {
            key: key.to_string(),
            source: Box::new(source),
        };
        if net.external {
            return match self.networks.get(&name) {
                Ok(n) => Ok(n),
                Err(NetworkError::NotFound { .. }) => Err(ProjectError::ExternalNetworkMissing {
                    key: key.to_string(),
                    name,
                }),
                Err(e) => Err(nerr(e)),
            };
        }
        if let Some(d) = net.driver.as_deref().filter(|d| *d != "bridge") {
            return Err(ProjectError::NetworkField {
                key: key.to_string(),
                reason: format!("driver {d:?} is not supported (only bridge)"),
            });
        }
        for (k, v) in &net.extra {
            match k.as_str() {
                "attachable" => {}
                _ if is_unset(v) => {}
                _ => {
                    return Err(ProjectError::NetworkField {
                        key: key.to_string(),
                        reason: format!("{k}: not supported yet"),
                    });
                }
            }
        }
        let ipam = ipam_config(key, net.ipam.as_ref())?;
        match self.networks.get(&name) {
            Ok(n) => {
                if n.internal != net.internal {
                    tracing::warn!(network = %name, "existing network differs in `internal`; recreate it to change");
                }
                return Ok(n);
            }
            Err(NetworkError::NotFound { .. }) => {}
            Err(e) => return Err(nerr(e)),
        }
        let options = NetworkOptions {
            subnet: ipam.subnet,
            gateway: ipam.gateway,
            ip_range: ipam.ip_range,
            internal: net.internal,
            labels: crate::plan::labels::network_labels(project, key, &net.labels),
        };
        match self.networks.create_network(&name, &options) {
            Ok(n) => Ok(n),
            // Made meanwhile by someone else: use it.
            Err(NetworkError::Store(crate::store::StoreError::NameConflict { .. })) => {
                self.networks.get(&name).map_err(nerr)
            }
            Err(e) => Err(nerr(e)),
        }
    }

    /// Removes the project's network `key`; an external one is never removed. Returns whether
    /// a network was removed (a missing one is not an error).
    pub fn remove_network(&self, project: &str, key: &str, net: &model::Network) -> Result<bool> {
        if net.external {
            return Ok(false);
        }
        let name = translate::network_name_of(project, key, net);
        match self.networks.remove_network(&name) {
            Ok(()) => Ok(true),
            Err(NetworkError::NotFound { .. }) => Ok(false),
            Err(source) => Err(ProjectError::Network {
                key: key.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// The networks labelled with the project.
    pub fn project_networks(&self, project: &str) -> Result<Vec<Network>> {
        let all = self
            .networks
            .list()
            .map_err(|source| ProjectError::Network {
                key: "*".into(),
                source: Box::new(source),
            })?;
        Ok(all
            .into_iter()
            .filter(|n| n.labels.get(labels::PROJECT).map(String::as_str) == Some(project))
            .collect())
    }

    // --- volumes --------------------------------------------------------------------------

    /// Makes sure the project's volume `key` exists (`<project>_<key>` or `name:`, created with
    /// Compose's labels); an `external` one must already exist.
    pub fn ensure_volume(&self, project: &str, key: &str, vol: &model::Volume) -> Result<Volume> {
        let name = translate::volume_name_of(project, key, vol);
        let verr = |source| ProjectError::Volume {
            key: key.to_string(),
            source: Box::new(source),
        };
        if vol.external {
            return match self.volumes.get(&name) {
                Ok(v) => Ok(v),
                Err(VolumeError::NotFound { .. }) => Err(ProjectError::ExternalVolumeMissing {
                    key: key.to_string(),
                    name,
                }),
                Err(e) => Err(verr(e)),
            };
        }
        let driver = vol.driver.as_deref().unwrap_or(crate::volume::DRIVER);
        let opts: BTreeMap<String, String> = vol
            .driver_opts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.volumes
            .create_with_driver(
                &name,
                driver,
                crate::plan::labels::volume_labels(project, key, &vol.labels),
                opts,
            )
            .map_err(verr)
    }

    /// Removes the project's volume `key` (refused while a container mounts it); an external
    /// one is never removed. Returns whether a volume was removed.
    pub fn remove_volume(&self, project: &str, key: &str, vol: &model::Volume) -> Result<bool> {
        if vol.external {
            return Ok(false);
        }
        let name = translate::volume_name_of(project, key, vol);
        let in_use = |v: &str| self.containers_using(v);
        self.volumes
            .remove(&name, true, &in_use)
            .map(|r| r.is_some())
            .map_err(|source| ProjectError::Volume {
                key: key.to_string(),
                source: Box::new(source),
            })
    }

    /// The volumes labelled with the project (not anonymous ones).
    pub fn project_volumes(&self, project: &str) -> Result<Vec<Volume>> {
        self.volumes
            .list(Some(&format!("{}={project}", labels::PROJECT)))
            .map_err(|source| ProjectError::Volume {
                key: "*".into(),
                source: Box::new(source),
            })
    }

    /// Names of the containers that mount volume `name` (the `io.flotilla.volumes` label).
    pub fn containers_using(&self, name: &str) -> Vec<String> {
        self.runtime
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                labels::list(c.meta.labels.get(labels::VOLUMES))
                    .iter()
                    .any(|v| v == name)
            })
            .map(|c| c.meta.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(c: J) -> Result<Ipam> {
        ipam_config("front", Some(&serde_json::json!({ "config": [c] })))
    }

    #[test]
    fn ipam_gateway_and_range() {
        let ok = config(serde_json::json!({
            "subnet": "10.231.0.0/24", "gateway": "10.231.0.254", "ip_range": "10.231.0.128/25"
        }))
        .unwrap();
        assert_eq!(ok.gateway.as_deref(), Some("10.231.0.254"));
        assert_eq!(ok.ip_range.as_deref(), Some("10.231.0.128/25"));
        let cases = [
            (
                serde_json::json!({"gateway": "10.231.0.1"}),
                "networks.front.ipam.config[0].gateway: needs ipam.config[0].subnet",
            ),
            (
                serde_json::json!({"subnet": "10.231.0.0/24", "gateway": "10.232.0.1"}),
                "networks.front.ipam.config[0].gateway: address 10.232.0.1 is outside",
            ),
            (
                serde_json::json!({"subnet": "10.231.0.0/24", "gateway": "nope"}),
                "networks.front.ipam.config[0].gateway: \"nope\" is not an IPv4 address",
            ),
            (
                serde_json::json!({"subnet": "10.231.0.0/24", "gateway": "10.231.0.255"}),
                "networks.front.ipam.config[0].gateway: address 10.231.0.255 of subnet",
            ),
            (
                serde_json::json!({"subnet": "10.231.0.0/24", "ip_range": "10.9.0.0/25"}),
                "networks.front.ipam.config[0].ip_range: ip range 10.9.0.0/25 is not inside",
            ),
            (
                serde_json::json!({"ip_range": "10.231.0.0/25"}),
                "networks.front.ipam.config[0].ip_range: needs ipam.config[0].subnet",
            ),
            (
                serde_json::json!({"subnet": "10.231.0.0/24", "aux_addresses": {"a": "10.231.0.5"}}),
                "networks.front: ipam.config[0].aux_addresses: not supported yet",
            ),
        ];
        for (c, want) in cases {
            let got = config(c.clone()).unwrap_err().to_string();
            assert!(got.starts_with(want), "{c}: {got}");
        }
    }
}
