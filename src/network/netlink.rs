//! The rtnetlink door: links (bridges, veth pairs), addresses, routes, in the network namespace
//! of the thread that opens the connection. Blocking: each [`Netlink`] owns a small
//! current-thread tokio runtime (no worker threads, so the single-threaded netns helper can use
//! it too) that drives one netlink socket. The daemon calls it from blocking threads.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use futures_util::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::ipam::Ipv4Net;

/// A failed netlink step, naming the object it was about.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("open a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("list links: {0}")]
    ListLinks(Box<rtnetlink::Error>),
    #[error("list routes: {0}")]
    ListRoutes(Box<rtnetlink::Error>),
    #[error("link {link} not found")]
    NoSuchLink { link: String },
    #[error("create bridge {bridge}: {source}")]
    CreateBridge {
        bridge: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("create veth pair {veth}/{peer}: {source}")]
    CreateVeth {
        veth: String,
        peer: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("attach link {link} to bridge {bridge}: {source}")]
    Attach {
        link: String,
        bridge: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("move link {link} into a network namespace: {source}")]
    MoveToNetns {
        link: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("set link {link} up: {source}")]
    SetUp {
        link: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("rename link {link} to {name}: {source}")]
    Rename {
        link: String,
        name: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("add address {address} to link {link}: {source}")]
    AddAddress {
        link: String,
        address: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("add the default route via {gateway}: {source}")]
    AddRoute {
        gateway: Ipv4Addr,
        source: Box<rtnetlink::Error>,
    },
    #[error("delete link {link}: {source}")]
    DeleteLink {
        link: String,
        source: Box<rtnetlink::Error>,
    },
}

type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// A route of the host's IPv4 routing tables (default routes excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub destination: Ipv4Net,
    /// The output link's name, when there is one.
    pub dev: Option<String>,
}

/// A link: its index and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
}

/// A netlink connection in the calling thread's network namespace.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

fn boxed(e: rtnetlink::Error) -> Box<rtnetlink::Error> {
    Box::new(e)
}

/// Whether the kernel answered the request with `errno`.
fn has_code(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| c.get()) == Some(-errno))
}

/// Whether the kernel answered "no such device" (ENODEV) to a request.
fn is_no_device(e: &rtnetlink::Error) -> bool {
    has_code(e, libc::ENODEV)
}

fn link_name(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

impl Netlink {
    /// Opens a netlink socket in the current network namespace.
    pub fn open() -> Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetlinkError::Connect)?;
        let handle = rt.block_on(async {
            let (connection, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(connection);
            Ok::<_, std::io::Error>(handle)
        });
        let handle = handle.map_err(NetlinkError::Connect)?;
        Ok(Netlink { rt, handle })
    }

    /// Every link of the namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        self.rt.block_on(async {
            let msgs: Vec<LinkMessage> = self
                .handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetlinkError::ListLinks(boxed(e)))?;
            Ok(msgs
                .iter()
                .filter_map(|m| {
                    link_name(m).map(|name| Link {
                        index: m.header.index,
                        name,
                    })
                })
                .collect())
        })
    }

    /// The index of the link called `name`, if it exists.
    pub fn index_of(&self, name: &str) -> Result<Option<u32>> {
        self.rt.block_on(async {
            let mut stream = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            match stream.try_next().await {
                Ok(Some(m)) => Ok(Some(m.header.index)),
                Ok(None) => Ok(None),
                Err(e) if is_no_device(&e) => Ok(None),
                Err(e) => Err(NetlinkError::ListLinks(boxed(e))),
            }
        })
    }

    fn require(&self, name: &str) -> Result<u32> {
        self.index_of(name)?
            .ok_or_else(|| NetlinkError::NoSuchLink {
                link: name.to_string(),
            })
    }

    /// The host's IPv4 routes (every table), default routes left out.
    pub fn routes(&self) -> Result<Vec<HostRoute>> {
        let links = self.links()?;
        let msgs: Vec<RouteMessage> = self.rt.block_on(async {
            self.handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetlinkError::ListRoutes(boxed(e)))
        })?;
        let mut out = Vec::new();
        for m in msgs {
            let prefix = m.header.destination_prefix_length;
            if prefix == 0 {
                continue;
            }
            let mut dest = None;
            let mut oif = None;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = Some(*d),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            let Some(destination) = dest.and_then(|d| Ipv4Net::new(d, prefix)) else {
                continue;
            };
            let dev = oif.and_then(|i| links.iter().find(|l| l.index == i).map(|l| l.name.clone()));
            out.push(HostRoute { destination, dev });
        }
        Ok(out)
    }

    /// Creates the bridge `name` with `gateway/prefix` on it and sets it up.
    pub fn create_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<u32> {
        self.rt.block_on(async {
            self.handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
                .map_err(|e| NetlinkError::CreateBridge {
                    bridge: name.to_string(),
                    source: boxed(e),
                })
        })?;
        let index = self.require(name)?;
        self.add_address(name, index, gateway, prefix)?;
        self.set_up(name, index)?;
        Ok(index)
    }

    /// Adds `address/prefix` to the link.
    pub fn add_address(&self, link: &str, index: u32, address: Ipv4Addr, prefix: u8) -> Result<()> {
        self.rt.block_on(async {
            self.handle
                .address()
                .add(index, IpAddr::V4(address), prefix)
                .execute()
                .await
                .map_err(|e| NetlinkError::AddAddress {
                    link: link.to_string(),
                    address: format!("{address}/{prefix}"),
                    source: boxed(e),
                })
        })
    }

    /// Sets the link up.
    pub fn set_up(&self, link: &str, index: u32) -> Result<()> {
        self.rt.block_on(async {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(|e| NetlinkError::SetUp {
                    link: link.to_string(),
                    source: boxed(e),
                })
        })
    }

    /// Creates the veth pair `veth`/`peer` with `veth` attached to the bridge and up, and `peer`
    /// made right in the network namespace open at `netns_fd`.
    pub fn create_veth(&self, veth: &str, peer: &str, bridge: &str, netns_fd: RawFd) -> Result<()> {
        let bridge_index = self.require(bridge)?;
        // One request: the host end attached to the bridge and up, the peer made directly in
        // the target namespace (no later move: moving a link between namespaces waits for
        // RCU grace periods under the rtnl lock, which serialized concurrent creates).
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(netns_fd)
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(veth.to_string())
            .controller(bridge_index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.rt.block_on(async {
            self.handle
                .link()
                .add(msg)
                .execute()
                .await
                .map_err(|e| NetlinkError::CreateVeth {
                    veth: veth.to_string(),
                    peer: peer.to_string(),
                    source: boxed(e),
                })
        })
    }

    /// Renames the (down) link `link` to `name` and gives it the MAC address `mac`.
    pub fn rename(&self, link: &str, name: &str, mac: [u8; 6]) -> Result<u32> {
        let index = self.require(link)?;
        self.rt.block_on(async {
            self.handle
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .name(name.to_string())
                        .address(mac.to_vec())
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| NetlinkError::Rename {
                    link: link.to_string(),
                    name: name.to_string(),
                    source: boxed(e),
                })
        })?;
        Ok(index)
    }

    /// Adds the default route via `gateway`; `false` when the namespace already has one (the
    /// first network that gives one keeps it, like Docker's first network).
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> Result<bool> {
        self.rt.block_on(async {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .build();
            match self.handle.route().add(route).execute().await {
                Ok(()) => Ok(true),
                Err(e) if has_code(&e, libc::EEXIST) => Ok(false),
                Err(e) => Err(NetlinkError::AddRoute {
                    gateway,
                    source: boxed(e),
                }),
            }
        })
    }

    /// Deletes the link `name`; `false` when there was none.
    pub fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(index) = self.index_of(name)? else {
            return Ok(false);
        };
        self.rt.block_on(async {
            match self.handle.link().del(index).execute().await {
                Ok(()) => Ok(true),
                Err(e) if is_no_device(&e) => Ok(false),
                Err(e) => Err(NetlinkError::DeleteLink {
                    link: name.to_string(),
                    source: boxed(e),
                }),
            }
        })
    }
}
