//! Networks: bridges, veth pairs, IPAM, network namespaces and the nftables rules that isolate
//! networks and masquerade their outbound traffic; the embedded DNS server ([`dns`]) and the
//! published-port proxies ([`proxy`]) the daemon runs per network and per container.
//!
//! [`Networks`] is the library the engine calls (blocking: call it from blocking threads, never
//! on an async worker). One per daemon: its data root, its store and its per-daemon `prefix`
//! (1–4 of `[a-z0-9]`), which every host-global name carries so two daemons coexist and
//! leftovers are found:
//! - bridge `flt<prefix>-b<6 hex of the network id>`, host veth `flt<prefix>-v<6 hex>` (its
//!   peer is `flt<prefix>-p<6 hex>` until it is renamed `ethN` inside the namespace),
//! - nftables table `inet flt<prefix>` ([`nft`]),
//! - namespace files `<data_root>/netns/<id>` ([`netns`]).
//!
//! A network's record (in [`crate::store`]) keeps its subnet, gateway, bridge and endpoints in
//! its body; every address change is one store transaction made under the manager's lock, so
//! an address is never handed out twice while in use ([`ipam`]). Choosing a subnet and creating
//! its bridge happen under a host-wide file lock (`/run/flotilla/network.lock`): the host's
//! routes are read (netlink) and every subnet they touch is skipped, including other daemons'.

pub mod dns;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::runtime::spawner::Spawner;
use crate::store::{NetworkRecord, Store, StoreError};
use ipam::{IpamError, Ipv4Net, Taken};
use netlink::{Netlink, NetlinkError};
use netns::{IfaceSetup, NetnsError};
use nft::{NftError, NftNetwork};

/// The host-wide lock held while a subnet is chosen and its bridge made.
pub const HOST_LOCK: &str = "/run/flotilla/network.lock";

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network prefix {prefix:?}: expected 1 to 4 of a-z and 0-9")]
    InvalidPrefix { prefix: String },
    #[error("network name {name:?}: expected letters, digits, '_', '.' or '-', not first")]
    InvalidName { name: String },
    #[error("network {network}: {field} needs a subnet")]
    NeedsSubnet {
        network: String,
        field: &'static str,
    },
    #[error("network {network}: gateway {value:?}: not an IPv4 address")]
    InvalidGateway { network: String, value: String },
    #[error("network namespace id {id:?}: expected a plain file name")]
    InvalidNetnsId { id: String },
    #[error("network {network:?} not found")]
    NotFound { network: String },
    #[error("network {network} has {endpoints} connected endpoint(s)")]
    InUse { network: String, endpoints: usize },
    #[error("network {network}: {} is already connected", netns.display())]
    AlreadyConnected { network: String, netns: PathBuf },
    #[error("network {network}: {} is not connected", netns.display())]
    NotConnected { network: String, netns: PathBuf },
    #[error("network {network}: {source}")]
    Ipam { network: String, source: IpamError },
    #[error("address pool: {0}")]
    Pool(IpamError),
    #[error("network {network}: read its record: {source}")]
    Record {
        network: String,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("network {network}: {source}")]
    Netlink {
        network: String,
        source: NetlinkError,
    },
    #[error("host routes: {0}")]
    Routes(NetlinkError),
    #[error("network {network}: {source}")]
    Netns { network: String, source: NetnsError },
    #[error("{0}")]
    Namespace(NetnsError),
    #[error("network {network}: open the network namespace {}: {source}", netns.display())]
    OpenNetns {
        network: String,
        netns: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Nft(#[from] NftError),
    #[error("create the directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("enable ip forwarding (/proc/sys/net/ipv4/ip_forward): {0}")]
    IpForward(std::io::Error),
    #[error("find the flotilla executable: {0}")]
    Exe(std::io::Error),
    #[error("cleanup of prefix {prefix}: {reason}")]
    Cleanup { prefix: String, reason: String },
}

type Result<T, E = NetworkError> = std::result::Result<T, E>;

/// How a network is created (Compose's `networks.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// `ipam.config[0].subnet`; none: a free subnet of the pool.
    pub subnet: Option<String>,
    /// The gateway (the bridge's address) inside `subnet`; none: its first address. Needs
    /// `subnet`.
    pub gateway: Option<String>,
    /// The range inside `subnet` that endpoints' addresses are taken from; none: the whole
    /// subnet. Needs `subnet`.
    pub ip_range: Option<String>,
    /// No route out: no default route in containers, nothing forwarded in or out.
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// A network as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where endpoints' addresses come from, when narrower than the subnet.
    pub ip_range: Option<Ipv4Net>,
    pub bridge: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub endpoints: Vec<Endpoint>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created: u64,
}

/// A network a new namespace is connected to ([`Networks::create_netns_connected`]).
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    /// The network's name or id.
    pub network: &'a str,
    pub aliases: &'a [String],
    /// The address asked for; default: the lowest free one.
    pub ipv4: Option<Ipv4Addr>,
}

/// A container's (network namespace's) attachment to a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route's gateway; none on internal networks.
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// The host side of the veth pair (a port of the network's bridge).
    pub veth: String,
    /// The interface inside the namespace (`eth0`, `eth1`, …); empty while being wired.
    pub ifname: String,
    pub netns: PathBuf,
    pub aliases: Vec<String>,
}

/// What a network record's body holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetworkBody {
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_range: Option<Ipv4Net>,
    bridge: String,
    internal: bool,
    #[serde(default)]
    endpoints: BTreeMap<Ipv4Addr, EndpointBody>,
}

impl NetworkBody {
    fn pool(&self) -> ipam::Pool {
        ipam::Pool {
            subnet: self.subnet,
            gateway: self.gateway,
            range: self.ip_range,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EndpointBody {
    netns: PathBuf,
    veth: String,
    mac: String,
    #[serde(default)]
    ifname: String,
    #[serde(default)]
    aliases: Vec<String>,
}

fn body_of(rec: &NetworkRecord) -> Result<NetworkBody> {
    serde_json::from_value(rec.body.clone()).map_err(|source| NetworkError::Record {
        network: rec.name.clone(),
        source,
    })
}

fn set_body(rec: &mut NetworkRecord, body: &NetworkBody) -> Result<()> {
    rec.body = serde_json::to_value(body).map_err(|source| NetworkError::Record {
        network: rec.name.clone(),
        source,
    })?;
    Ok(())
}

fn endpoint(network: &str, body: &NetworkBody, ip: Ipv4Addr, e: &EndpointBody) -> Endpoint {
    Endpoint {
        network: network.to_string(),
        ip,
        prefix: body.subnet.prefix(),
        gateway: (!body.internal).then_some(body.gateway),
        mac: e.mac.clone(),
        veth: e.veth.clone(),
        ifname: e.ifname.clone(),
        netns: e.netns.clone(),
        aliases: e.aliases.clone(),
    }
}

fn network_of(rec: &NetworkRecord) -> Result<Network> {
    let body = body_of(rec)?;
    Ok(Network {
        id: rec.id.clone(),
        name: rec.name.clone(),
        subnet: body.subnet,
        gateway: body.gateway,
        ip_range: body.ip_range,
        bridge: body.bridge.clone(),
        internal: body.internal,
        labels: rec.labels.clone(),
        endpoints: body
            .endpoints
            .iter()
            .map(|(ip, e)| endpoint(&rec.name, &body, *ip, e))
            .collect(),
        created: rec.created,
    })
}

/// Whether `prefix` can prefix host-global names (1–4 of `[a-z0-9]`).
pub fn valid_prefix(prefix: &str) -> bool {
    (1..=4).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The start of every host-global link name of the prefix.
pub fn link_prefix(prefix: &str) -> String {
    format!("flt{prefix}-")
}

/// Six random hexadecimal digits.
fn short_random() -> Result<String> {
    let id = crate::store::new_id()?;
    Ok(id[..6].to_string())
}

/// A file lock, released when dropped.
struct FileLock {
    _file: std::fs::File,
}

fn host_lock() -> Result<FileLock> {
    let path = Path::new(HOST_LOCK);
    let lock_err = |source| NetworkError::Lock {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(lock_err)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(lock_err)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| lock_err(e.into()))?;
    Ok(FileLock { _file: file })
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn ensure_ip_forward() -> Result<()> {
    let now = std::fs::read_to_string(IP_FORWARD).map_err(NetworkError::IpForward)?;
    if now.trim() == "1" {
        return Ok(());
    }
    tracing::info!("enabling ip forwarding for outbound traffic of flotilla networks");
    std::fs::write(IP_FORWARD, "1").map_err(NetworkError::IpForward)
}

/// The networks of one daemon.
pub struct Networks {
    root: PathBuf,
    prefix: String,
    store: Arc<Store>,
    spawner: Arc<Spawner>,
    pool: Ipv4Net,
    subnet_prefix: u8,
    ip_forward: bool,
    lock: Mutex<()>,
    /// Endpoints released while their veth pair is still being torn down by the kernel (see
    /// [`Networks::remove_netns`]): (network id, address) → host veth. Their addresses are
    /// handed out again only when nothing else is free, or once the veth is gone.
    dying: Arc<Mutex<BTreeMap<(String, Ipv4Addr), String>>>,
    /// The subnets of removed networks whose bridges are still being deleted in the
    /// background ([`Networks::remove_network`]).
    deleting: Arc<(Mutex<Vec<Ipv4Net>>, Condvar)>,
    /// Serializes changes of the nftables table (appends and background replacements).
    nft_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("root", &self.root)
            .field("prefix", &self.prefix)
            .field("pool", &self.pool)
            .finish()
    }
}

impl Networks {
    /// The networks of `data_root` (kept in `store`), with host-global names prefixed by
    /// `flt<prefix>`; the default pool is [`ipam::DEFAULT_POOL`] in /24s, the helper is this
    /// executable, and IP forwarding is switched on for non-internal networks (as Docker does).
    pub fn new(data_root: &Path, prefix: &str, store: Arc<Store>) -> Result<Networks> {
        if !valid_prefix(prefix) {
            return Err(NetworkError::InvalidPrefix {
                prefix: prefix.to_string(),
            });
        }
        let pool = ipam::DEFAULT_POOL.parse().map_err(NetworkError::Pool)?;
        let exe = std::env::current_exe().map_err(NetworkError::Exe)?;
        Ok(Networks {
            root: data_root.to_path_buf(),
            prefix: prefix.to_string(),
            store,
            spawner: Arc::new(Spawner::new(&exe)),
            pool,
            subnet_prefix: ipam::DEFAULT_SUBNET_PREFIX,
            ip_forward: true,
            lock: Mutex::new(()),
            dying: Arc::default(),
            deleting: Arc::default(),
            nft_lock: Arc::default(),
        })
    }

    /// Takes subnets of size `/subnet_prefix` from `pool`.
    pub fn with_pool(mut self, pool: &str, subnet_prefix: u8) -> Result<Networks> {
        self.pool = pool.parse().map_err(NetworkError::Pool)?;
        self.subnet_prefix = subnet_prefix;
        Ok(self)
    }

    /// Runs `exe shim netns …` as the namespace helper (tests pass the flotilla binary).
    pub fn with_exe(mut self, exe: &Path) -> Networks {
        self.spawner = Arc::new(Spawner::new(exe));
        self
    }

    /// Runs the namespace helpers through `spawner` (the daemon shares its runtime's, so one
    /// fork server serves both).
    pub fn with_spawner(mut self, spawner: Arc<Spawner>) -> Networks {
        self.spawner = spawner;
        self
    }

    /// Whether non-internal networks switch host IP forwarding on.
    pub fn with_ip_forward(mut self, on: bool) -> Networks {
        self.ip_forward = on;
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<data_root>/netns`.
    pub fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, network: &str) -> Result<NetworkRecord> {
        self.store
            .find::<NetworkRecord>(network)?
            .ok_or_else(|| NetworkError::NotFound {
                network: network.to_string(),
            })
    }

    fn netlink(&self, network: &str) -> Result<Netlink> {
        Netlink::open().map_err(|source| NetworkError::Netlink {
            network: network.to_string(),
            source,
        })
    }

    /// Replaces the nftables table with the rules of every network of this daemon.
    fn apply_nft(&self) -> Result<()> {
        apply_rules(&self.store, &self.prefix, &self.nft_lock)
    }

    /// Appends the rules of a new network (`body`) to the nftables table.
    fn add_nft(&self, body: &NetworkBody) -> Result<()> {
        let _nft = self.nft_lock.lock().unwrap_or_else(|p| p.into_inner());
        nft::add(&nft::table_name(&self.prefix), &nft_network(body))?;
        Ok(())
    }

    /// Subnets in use: this daemon's networks (first, so an overlap names the network rather
    /// than its bridge's route) and the host's routes.
    fn taken(&self, nl: &Netlink) -> Result<Vec<Taken>> {
        let mut taken = Vec::new();
        for rec in self.store.list::<NetworkRecord>()? {
            taken.push(Taken {
                subnet: body_of(&rec)?.subnet,
                owner: format!("network {}", rec.name),
            });
        }
        taken.extend(
            nl.routes()
                .map_err(NetworkError::Routes)?
                .into_iter()
                .map(|r| Taken {
                    subnet: r.destination,
                    owner: match r.dev {
                        Some(dev) => format!("host route on {dev}"),
                        None => "host route".to_string(),
                    },
                }),
        );
        Ok(taken)
    }

    /// Creates the network `name`: a subnet (given, or the first free one of the pool), its
    /// bridge with the gateway address, its record and its nftables rules. Nothing is left
    /// behind when a step fails.
    pub fn create_network(&self, name: &str, options: &NetworkOptions) -> Result<Network> {
        if !valid_name(name) {
            return Err(NetworkError::InvalidName {
                name: name.to_string(),
            });
        }
        let ipam_err = |source| NetworkError::Ipam {
            network: name.to_string(),
            source,
        };
        let requested = match &options.subnet {
            Some(s) => Some(s.parse::<Ipv4Net>().map_err(ipam_err)?),
            None => None,
        };
        let needs_subnet = |field| NetworkError::NeedsSubnet {
            network: name.to_string(),
            field,
        };
        let gateway = match (&options.gateway, requested) {
            (None, _) => None,
            (Some(_), None) => return Err(needs_subnet("gateway")),
            (Some(g), Some(_)) => {
                Some(
                    g.parse::<Ipv4Addr>()
                        .map_err(|_| NetworkError::InvalidGateway {
                            network: name.to_string(),
                            value: g.clone(),
                        })?,
                )
            }
        };
        let ip_range = match (&options.ip_range, requested) {
            (None, _) => None,
            (Some(_), None) => return Err(needs_subnet("ip range")),
            (Some(r), Some(_)) => Some(r.parse::<Ipv4Net>().map_err(ipam_err)?),
        };
        if let Some(subnet) = requested {
            ipam::check_pool(&ipam::Pool {
                subnet,
                gateway: gateway.unwrap_or(subnet.gateway()),
                range: ip_range,
            })
            .map_err(ipam_err)?;
        }
        let _guard = self.guard();
        if let Some(rec) = self.store.find::<NetworkRecord>(name)? {
            return Err(StoreError::NameConflict {
                kind: "network",
                name: name.to_string(),
                id: rec.id,
            }
            .into());
        }
        // A removed network's bridge still being deleted holds its subnet (its route): a
        // subnet asked for waits for it; an automatic choice takes another one.
        if let Some(want) = requested {
            self.settle_where(|s| s.overlaps(&want));
        }
        let _host = host_lock()?;
        let nl = self.netlink(name)?;
        let taken = self.taken(&nl)?;
        let subnet = match requested {
            Some(s) => {
                ipam::check_subnet(s, &taken).map_err(ipam_err)?;
                s
            }
            None => ipam::choose_subnet(self.pool, self.subnet_prefix, &taken).map_err(ipam_err)?,
        };
        let mut rec = NetworkRecord::new(name, options.labels.clone())?;
        let body = NetworkBody {
            subnet,
            gateway: gateway.unwrap_or(subnet.gateway()),
            ip_range,
            bridge: format!("{}b{}", link_prefix(&self.prefix), &rec.id[..6]),
            internal: options.internal,
            endpoints: BTreeMap::new(),
        };
        set_body(&mut rec, &body)?;
        if !options.internal && self.ip_forward {
            ensure_ip_forward()?;
        }
        self.store.insert(&rec)?;
        let made = nl
            .create_bridge(&body.bridge, body.gateway, subnet.prefix())
            .map_err(|source| NetworkError::Netlink {
                network: name.to_string(),
                source,
            })
            .and_then(|_| self.add_nft(&body));
        if let Err(e) = made {
            let _ = nl.delete_link(&body.bridge);
            let _ = self.store.remove::<NetworkRecord>(&rec.id);
            let _ = self.apply_nft();
            return Err(e);
        }
        tracing::info!(network = name, %subnet, bridge = %body.bridge, "network created");
        network_of(&rec)
    }

    /// The network with this name or id.
    pub fn get(&self, network: &str) -> Result<Network> {
        network_of(&self.record(network)?)
    }

    /// Every network of this daemon, by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        self.store
            .list::<NetworkRecord>()?
            .iter()
            .map(network_of)
            .collect()
    }

    /// Removes a network without endpoints: its record at once; its rules and its bridge in
    /// the background (both deletions wait for RCU grace periods in the kernel: 12 ms for the
    /// rules, 20–45 ms for the bridge here, the longest steps of a `down`). Until the bridge is
    /// gone its subnet stays taken; a network creation waits for pending deletions first
    /// ([`Networks::settle`]). What cannot be deleted is logged and left to [`cleanup_prefix`]
    /// at the next daemon start (rules referring to a bridge that no longer exists match
    /// nothing).
    pub fn remove_network(&self, network: &str) -> Result<()> {
        let _guard = self.guard();
        let rec = self.record(network)?;
        let body = body_of(&rec)?;
        if !body.endpoints.is_empty() {
            return Err(NetworkError::InUse {
                network: rec.name,
                endpoints: body.endpoints.len(),
            });
        }
        let nl = self.netlink(&rec.name)?;
        self.store.remove::<NetworkRecord>(&rec.id)?;
        {
            let (subnets, _) = &*self.deleting;
            subnets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(body.subnet);
        }
        let deleting = Arc::clone(&self.deleting);
        let (store, prefix, lock) = (
            Arc::clone(&self.store),
            self.prefix.clone(),
            Arc::clone(&self.nft_lock),
        );
        let (name, bridge, subnet) = (rec.name.clone(), body.bridge.clone(), body.subnet);
        let delete = move || {
            let rules = std::thread::scope(|scope| {
                let rules = scope.spawn(|| apply_rules(&store, &prefix, &lock));
                let mut result = nl.delete_link(&bridge);
                if result.is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                    result = nl.delete_link(&bridge);
                }
                if let Err(e) = result {
                    tracing::warn!(network = %name, %bridge, error = %e, "delete a removed network's bridge");
                }
                rules.join()
            });
            match rules {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(network = %name, error = %e, "remove a removed network's rules");
                }
                Err(_) => tracing::warn!(network = %name, "the rules' thread panicked"),
            }
            let (subnets, cv) = &*deleting;
            forget_subnet(
                &mut subnets.lock().unwrap_or_else(|p| p.into_inner()),
                subnet,
            );
            cv.notify_all();
        };
        let spawned = std::thread::Builder::new()
            .name("network-delete".into())
            .spawn(delete);
        if let Err(e) = spawned {
            // No thread: everything here.
            let (subnets, _) = &*self.deleting;
            forget_subnet(
                &mut subnets.lock().unwrap_or_else(|p| p.into_inner()),
                body.subnet,
            );
            tracing::warn!(error = %e, "no thread to delete a network's bridge");
            self.apply_nft()?;
            self.netlink(&rec.name)?
                .delete_link(&body.bridge)
                .map_err(|source| NetworkError::Netlink {
                    network: rec.name.clone(),
                    source,
                })?;
        }
        tracing::info!(network = %rec.name, "network removed");
        Ok(())
    }

    /// Waits (at most 10 s) until the bridges and rules of removed networks are deleted.
    pub fn settle(&self) {
        self.settle_where(|_| true);
    }

    /// Waits (at most 10 s) while a removed network whose subnet `pending` matches is still
    /// being deleted.
    fn settle_where(&self, pending: impl Fn(&Ipv4Net) -> bool) {
        let (subnets, cv) = &*self.deleting;
        let list = subnets.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv
            .wait_timeout_while(list, Duration::from_secs(10), |l| l.iter().any(&pending))
            .map_err(|p| p.into_inner());
    }

    /// Reserves an address (one store transaction) for a new endpoint in `netns`.
    fn reserve(
        &self,
        network: &str,
        netns: &Path,
        aliases: &[String],
        ipv4: Option<Ipv4Addr>,
        ifname: &str,
    ) -> Result<(NetworkRecord, NetworkBody, Ipv4Addr)> {
        let _guard = self.guard();
        let mut rec = self.record(network)?;
        let mut body = body_of(&rec)?;
        if body.endpoints.values().any(|e| e.netns == netns) {
            return Err(NetworkError::AlreadyConnected {
                network: rec.name,
                netns: netns.to_path_buf(),
            });
        }
        let used: BTreeSet<Ipv4Addr> = body.endpoints.keys().copied().collect();
        let dying = self.dying_addresses(&rec.id);
        if let Some(ip) = ipv4
            && let Some(veth) = dying.get(&ip)
        {
            // The same address again (a fixed `ipv4_address`): its old veth (same MAC) goes
            // first.
            gone_or_deleted(veth, Duration::from_secs(2));
        }
        let mut busy = used.clone();
        busy.extend(dying.keys().copied());
        let ip = match ipam::allocate_within(&body.pool(), &busy, ipv4) {
            Ok(ip) => Ok(ip),
            Err(_) if ipv4.is_none() && busy.len() > used.len() => {
                ipam::allocate_within(&body.pool(), &used, ipv4)
            }
            Err(e) => Err(e),
        }
        .map_err(|source| NetworkError::Ipam {
            network: rec.name.clone(),
            source,
        })?;
        let veth = format!("{}v{}", link_prefix(&self.prefix), short_random()?);
        body.endpoints.insert(
            ip,
            EndpointBody {
                netns: netns.to_path_buf(),
                veth,
                mac: ipam::mac_string(ipam::mac_for(ip)),
                ifname: ifname.to_string(),
                aliases: aliases.to_vec(),
            },
        );
        set_body(&mut rec, &body)?;
        self.store.update(&rec)?;
        Ok((rec, body, ip))
    }

    /// Changes one endpoint of a network (one store transaction): sets its interface name, or
    /// (`None`) releases it.
    fn update_endpoint(&self, network_id: &str, ip: Ipv4Addr, ifname: Option<&str>) -> Result<()> {
        let _guard = self.guard();
        let mut rec = self.record(network_id)?;
        let mut body = body_of(&rec)?;
        match ifname {
            Some(name) => {
                if let Some(e) = body.endpoints.get_mut(&ip) {
                    e.ifname = name.to_string();
                }
            }
            None => {
                body.endpoints.remove(&ip);
            }
        }
        set_body(&mut rec, &body)?;
        self.store.update(&rec)?;
        Ok(())
    }

    /// Connects the network namespace at `netns` to `network`: an address (`ipv4` when given),
    /// a veth pair whose host end joins the bridge and whose other end becomes `ethN` inside
    /// with the address, `lo` up and (unless internal) the default route via the gateway.
    pub fn connect(
        &self,
        netns: &Path,
        network: &str,
        aliases: &[String],
        ipv4: Option<Ipv4Addr>,
    ) -> Result<Endpoint> {
        let (rec, body, ip) = self.reserve(network, netns, aliases, ipv4, "")?;
        let Some(ep) = body.endpoints.get(&ip).cloned() else {
            return Err(NetworkError::NotConnected {
                network: rec.name,
                netns: netns.to_path_buf(),
            });
        };
        let peer = self.peer_of(&ep.veth);
        let wired = self.wire(&rec.name, &body, &ep, &peer, ip);
        let ifname = match wired {
            Ok(ifname) => ifname,
            Err(e) => {
                if let Ok(nl) = Netlink::open() {
                    let _ = nl.delete_link(&ep.veth);
                    let _ = nl.delete_link(&peer);
                }
                let _ = self.update_endpoint(&rec.id, ip, None);
                return Err(e);
            }
        };
        self.update_endpoint(&rec.id, ip, Some(&ifname))?;
        let mut out = endpoint(&rec.name, &body, ip, &ep);
        out.ifname = ifname;
        tracing::info!(network = %rec.name, %ip, veth = %ep.veth, "endpoint connected");
        Ok(out)
    }

    fn wire(
        &self,
        network: &str,
        body: &NetworkBody,
        ep: &EndpointBody,
        peer: &str,
        ip: Ipv4Addr,
    ) -> Result<String> {
        let file = std::fs::File::open(&ep.netns).map_err(|source| NetworkError::OpenNetns {
            network: network.to_string(),
            netns: ep.netns.clone(),
            source,
        })?;
        let nl = self.netlink(network)?;
        nl.create_veth(&ep.veth, peer, &body.bridge, file.as_raw_fd())
            .map_err(|source| NetworkError::Netlink {
                network: network.to_string(),
                source,
            })?;
        let setup = IfaceSetup {
            link: peer.to_string(),
            mac: ipam::mac_for(ip),
            address: ip,
            prefix: body.subnet.prefix(),
            gateway: (!body.internal).then_some(body.gateway),
        };
        let report = netns::setup(&self.spawner, &ep.netns, &setup).map_err(|source| {
            NetworkError::Netns {
                network: network.to_string(),
                source,
            }
        })?;
        Ok(report.ifname)
    }

    /// Disconnects the namespace at `netns` from `network`: its veth pair is deleted and its
    /// address released.
    pub fn disconnect(&self, netns: &Path, network: &str) -> Result<()> {
        let rec = self.record(network)?;
        let body = body_of(&rec)?;
        let Some((ip, ep)) = body.endpoints.iter().find(|(_, e)| e.netns == netns) else {
            return Err(NetworkError::NotConnected {
                network: rec.name,
                netns: netns.to_path_buf(),
            });
        };
        let nl = self.netlink(&rec.name)?;
        nl.delete_link(&ep.veth)
            .map_err(|source| NetworkError::Netlink {
                network: rec.name.clone(),
                source,
            })?;
        self.update_endpoint(&rec.id, *ip, None)?;
        tracing::info!(network = %rec.name, %ip, "endpoint disconnected");
        Ok(())
    }

    fn netns_path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
            return Err(NetworkError::InvalidNetnsId { id: id.to_string() });
        }
        Ok(self.netns_dir().join(id))
    }

    /// Creates the network namespace `<data_root>/netns/<id>` (with `lo` up) through the helper.
    pub fn create_netns(&self, id: &str) -> Result<PathBuf> {
        let path = self.netns_path(id)?;
        let dir = self.netns_dir();
        std::fs::create_dir_all(&dir).map_err(|source| NetworkError::Dir { path: dir, source })?;
        netns::create(&self.spawner, &path).map_err(NetworkError::Namespace)?;
        Ok(path)
    }

    /// The name of the container's end of the veth pair whose host end is `veth`.
    fn peer_of(&self, veth: &str) -> String {
        veth.replacen(
            &format!("{}v", link_prefix(&self.prefix)),
            &format!("{}p", link_prefix(&self.prefix)),
            1,
        )
    }

    /// Creates the network namespace `<data_root>/netns/<id>` connected to each of
    /// `attachments` in order (`eth0`, `eth1`, …): what [`Networks::create_netns`] then
    /// [`Networks::connect`] for each make, with one helper process and one store transaction
    /// per network instead of two helpers and two transactions per network. On failure the
    /// addresses are released and nothing is left on the host.
    pub fn create_netns_connected(
        &self,
        id: &str,
        attachments: &[Attachment<'_>],
    ) -> Result<(PathBuf, Vec<Endpoint>)> {
        let path = self.netns_path(id)?;
        let dir = self.netns_dir();
        std::fs::create_dir_all(&dir).map_err(|source| NetworkError::Dir { path: dir, source })?;
        let mut reserved = Vec::new();
        let made = (|| {
            for (n, a) in attachments.iter().enumerate() {
                let r = self.reserve(a.network, &path, a.aliases, a.ipv4, &format!("eth{n}"))?;
                reserved.push(r);
            }
            let mut wires = Vec::new();
            for (rec, body, ip) in &reserved {
                let ep = body
                    .endpoints
                    .get(ip)
                    .ok_or_else(|| NetworkError::NotConnected {
                        network: rec.name.clone(),
                        netns: path.clone(),
                    })?;
                wires.push(netns::Wire {
                    veth: ep.veth.clone(),
                    bridge: body.bridge.clone(),
                    ifname: ep.ifname.clone(),
                    iface: IfaceSetup {
                        link: self.peer_of(&ep.veth),
                        mac: ipam::mac_for(*ip),
                        address: *ip,
                        prefix: body.subnet.prefix(),
                        gateway: (!body.internal).then_some(body.gateway),
                    },
                });
            }
            netns::create_wired(&self.spawner, &path, &wires).map_err(NetworkError::Namespace)
        })();
        if let Err(e) = made {
            // The helper removed what it made; a helper that died half-way did not.
            let _ = netns::remove(&path);
            for (rec, _, ip) in &reserved {
                let _ = self.update_endpoint(&rec.id, *ip, None);
            }
            return Err(e);
        }
        let mut out = Vec::new();
        for (rec, body, ip) in &reserved {
            if let Some(ep) = body.endpoints.get(ip) {
                tracing::info!(network = %rec.name, %ip, veth = %ep.veth, "endpoint connected");
                out.push(endpoint(&rec.name, body, *ip, ep));
            }
        }
        Ok((path, out))
    }

    /// Disconnects the namespace `id` from every network and removes it: the namespace file
    /// is unmounted and the endpoints' addresses released at once, while the kernel tears the
    /// namespace down, and its veth pairs with it, in the background (10–40 ms here; deleting
    /// each veth synchronously costs ~20 ms of RCU grace periods per container, serialized).
    /// A veth still there after [`VETH_TEARDOWN`] (something else held the namespace) is
    /// deleted explicitly; until a veth is gone its address is handed out only when nothing
    /// else is free.
    pub fn remove_netns(&self, id: &str) -> Result<()> {
        let path = self.netns_path(id)?;
        let mut released = Vec::new();
        for net in self.list()? {
            if let Some(ep) = net.endpoints.iter().find(|e| e.netns == path) {
                released.push((net.id.clone(), net.name.clone(), ep.ip, ep.veth.clone()));
            }
        }
        netns::remove(&path).map_err(NetworkError::Namespace)?;
        let mut first_err = None;
        for (net_id, name, ip, veth) in released {
            {
                let mut dying = self.dying.lock().unwrap_or_else(|p| p.into_inner());
                dying.insert((net_id.clone(), ip), veth.clone());
            }
            match self.update_endpoint(&net_id, ip, None) {
                Ok(()) => tracing::info!(network = %name, %ip, "endpoint disconnected"),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            let dying = Arc::clone(&self.dying);
            let reap = move || {
                gone_or_deleted(&veth, VETH_TEARDOWN);
                let mut dying = dying.lock().unwrap_or_else(|p| p.into_inner());
                dying.remove(&(net_id, ip));
            };
            if let Err(e) = std::thread::Builder::new()
                .name("veth-reaper".into())
                .spawn(reap)
            {
                tracing::warn!(error = %e, "no thread to watch a veth's teardown");
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The addresses of `network_id` whose veth is still being torn down, with the veth.
    fn dying_addresses(&self, network_id: &str) -> BTreeMap<Ipv4Addr, String> {
        let dying = self.dying.lock().unwrap_or_else(|p| p.into_inner());
        dying
            .iter()
            .filter(|((n, _), _)| n == network_id)
            .map(|((_, ip), veth)| (*ip, veth.clone()))
            .collect()
    }

    /// What a previous run of this daemon killed halfway left in the kernel: links of its
    /// prefix that no record names (a removed network's bridge, a removed namespace's veth,
    /// deleted in the background when the daemon ended) are deleted, and the nftables table is
    /// rebuilt from the records. Run at daemon start; returns the links deleted.
    pub fn prune_stale(&self) -> Result<Vec<String>> {
        let mut known = BTreeSet::new();
        for net in self.list()? {
            known.insert(net.bridge.clone());
            for e in &net.endpoints {
                known.insert(e.veth.clone());
            }
        }
        let nl = Netlink::open().map_err(|source| NetworkError::Netlink {
            network: String::new(),
            source,
        })?;
        let start = link_prefix(&self.prefix);
        let mut removed = Vec::new();
        let links = nl.links().map_err(|source| NetworkError::Netlink {
            network: String::new(),
            source,
        })?;
        for l in links {
            if l.name.starts_with(&start) && !known.contains(&l.name) {
                match nl.delete_link(&l.name) {
                    Ok(true) => removed.push(l.name),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(link = %l.name, error = %e, "delete a stale link"),
                }
            }
        }
        if !known.is_empty() || !removed.is_empty() {
            self.apply_nft()?;
        }
        if !removed.is_empty() {
            tracing::info!(links = ?removed, "stale links of a previous run deleted");
        }
        Ok(removed)
    }

    /// Removes every kernel object of this daemon's prefix ([`cleanup_prefix`]).
    pub fn cleanup(&self) -> Result<Cleanup> {
        self.settle();
        cleanup_prefix(&self.prefix, &self.root)
    }
}

/// Takes one `subnet` off the list of pending deletions.
fn forget_subnet(list: &mut Vec<Ipv4Net>, subnet: Ipv4Net) {
    if let Some(i) = list.iter().position(|s| *s == subnet) {
        list.swap_remove(i);
    }
}

/// What the nftables rules need of a network.
fn nft_network(body: &NetworkBody) -> NftNetwork {
    NftNetwork {
        bridge: body.bridge.clone(),
        subnet: body.subnet,
        internal: body.internal,
    }
}

/// Replaces the nftables table of daemon `prefix` with the rules of every network in `store`
/// (under `lock`, which serializes every change of the table).
fn apply_rules(store: &Store, prefix: &str, lock: &Mutex<()>) -> Result<()> {
    let _nft = lock.lock().unwrap_or_else(|p| p.into_inner());
    let mut nets = Vec::new();
    for rec in store.list::<NetworkRecord>()? {
        nets.push(nft_network(&body_of(&rec)?));
    }
    nft::apply(&nft::table_name(prefix), &nets)?;
    Ok(())
}

/// How long a released endpoint's veth may take to disappear with its namespace before it is
/// deleted explicitly ([`Networks::remove_netns`]).
pub const VETH_TEARDOWN: Duration = Duration::from_secs(5);

/// Waits (polling, up to `limit`) for the host link `veth` to disappear; deletes it when it is
/// still there then. Blocking.
fn gone_or_deleted(veth: &str, limit: Duration) {
    let sys = Path::new("/sys/class/net").join(veth);
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    while sys.exists() {
        if start.elapsed() >= limit {
            match Netlink::open().and_then(|nl| nl.delete_link(veth)) {
                Ok(true) => tracing::warn!(
                    %veth,
                    "a removed namespace's veth outlived it (something held the namespace): deleted"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(%veth, error = %e, "delete a removed namespace's veth"),
            }
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// What [`cleanup_prefix`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub links: Vec<String>,
    pub netns: Vec<PathBuf>,
}

/// Removes what a crashed run of the daemon with `prefix` and `data_root` left: every link
/// named `flt<prefix>-…` (veths and bridges), every namespace file under
/// `<data_root>/netns/`, and the nftables table `inet flt<prefix>`. Records are kept. Goes on
/// past failures and reports the first.
pub fn cleanup_prefix(prefix: &str, data_root: &Path) -> Result<Cleanup> {
    if !valid_prefix(prefix) {
        return Err(NetworkError::InvalidPrefix {
            prefix: prefix.to_string(),
        });
    }
    let mut done = Cleanup::default();
    let mut errors: Vec<String> = Vec::new();
    let start = link_prefix(prefix);
    match Netlink::open().and_then(|nl| {
        let mut links: Vec<_> = nl
            .links()?
            .into_iter()
            .filter(|l| l.name.starts_with(&start))
            .collect();
        // Veths first, bridges last (a bridge's ports leave with their veth anyway).
        links.sort_by_key(|l| l.name.as_bytes().get(start.len()) == Some(&b'b'));
        let mut removed = Vec::new();
        for l in links {
            if nl.delete_link(&l.name)? {
                removed.push(l.name);
            }
        }
        Ok(removed)
    }) {
        Ok(links) => done.links = links,
        Err(e) => errors.push(e.to_string()),
    }
    let dir = data_root.join("netns");
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                match netns::remove(&path) {
                    Ok(()) => done.netns.push(path),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("read {}: {e}", dir.display())),
    }
    if let Err(e) = nft::delete(&nft::table_name(prefix)) {
        errors.push(e.to_string());
    }
    match errors.into_iter().next() {
        None => Ok(done),
        Some(reason) => Err(NetworkError::Cleanup {
            prefix: prefix.to_string(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_names() {
        assert!(valid_prefix("ab12"));
        assert!(valid_prefix("a"));
        for bad in ["", "abcde", "AB", "a-b", "a_b"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        assert!(valid_name("proj_default"));
        assert!(valid_name("a.b-c"));
        assert!(!valid_name("-x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        // The longest names fit the kernel's 15 characters.
        let bridge = format!("{}b{}", link_prefix("abcd"), "012345");
        assert_eq!(bridge.len(), 15);
    }

    #[test]
    fn body_round_trips() {
        let mut endpoints = BTreeMap::new();
        endpoints.insert(
            Ipv4Addr::new(10, 89, 0, 2),
            EndpointBody {
                netns: "/x/netns/a".into(),
                veth: "fltab-v123456".into(),
                mac: "02:42:0a:59:00:02".into(),
                ifname: "eth0".into(),
                aliases: vec!["web".into()],
            },
        );
        let body = NetworkBody {
            subnet: "10.89.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            ip_range: None,
            bridge: "fltab-b123456".into(),
            internal: false,
            endpoints,
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["endpoints"]["10.89.0.2"]["veth"], "fltab-v123456");
        let back: NetworkBody = serde_json::from_value(v).unwrap();
        assert_eq!(back.endpoints.len(), 1);
    }
}
