//! IP address management (pure): IPv4 CIDRs, subnets carved from a pool while skipping every
//! subnet already taken (other networks, the host's routes), and addresses handed out inside a
//! subnet (gateway = first address; network, gateway and broadcast are never given to an
//! endpoint). The caller persists the result: the network module keeps the subnet and the
//! addresses in use in the network's record, one store transaction per change, under a lock,
//! so an address is never handed out twice while it is in use.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The default pool networks' subnets are taken from.
pub const DEFAULT_POOL: &str = "10.89.0.0/16";

/// The default size of a subnet taken from the pool.
pub const DEFAULT_SUBNET_PREFIX: u8 = 24;

/// Why an address or a subnet cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("invalid cidr {value:?}: {reason}")]
    InvalidCidr { value: String, reason: &'static str },
    #[error("subnet {subnet} is too small for a network (at most /30)")]
    SubnetTooSmall { subnet: Ipv4Net },
    #[error("subnet {subnet} overlaps {other} ({owner})")]
    Overlap {
        subnet: Ipv4Net,
        other: Ipv4Net,
        owner: String,
    },
    #[error("address pool {pool} is exhausted: every /{prefix} in it is in use")]
    PoolExhausted { pool: Ipv4Net, prefix: u8 },
    #[error("subnet {subnet} has no free address left")]
    SubnetExhausted { subnet: Ipv4Net },
    #[error("address {address} is outside the subnet {subnet}")]
    OutsideSubnet { address: Ipv4Addr, subnet: Ipv4Net },
    #[error("address {address} of subnet {subnet} is reserved ({what})")]
    Reserved {
        address: Ipv4Addr,
        subnet: Ipv4Net,
        what: &'static str,
    },
    #[error("address {address} of subnet {subnet} is already in use")]
    InUse { address: Ipv4Addr, subnet: Ipv4Net },
    #[error("ip range {range} is not inside the subnet {subnet}")]
    RangeOutside { range: Ipv4Net, subnet: Ipv4Net },
    #[error("ip range {range} has no address left for endpoints")]
    RangeExhausted { range: Ipv4Net },
}

/// An IPv4 network in CIDR form; the address is always the network address (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Ipv4Net {
    /// The network of `addr/prefix` (host bits cleared); `None` when `prefix` > 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32).then(|| Ipv4Net {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The last address (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// The first usable address, the gateway of a flotilla network.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).saturating_add(1))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two networks share at least one address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(p) == u32::from(other.network) & mask(p)
    }

    /// The subnets of size `prefix` inside this network, in order (none when `prefix` is
    /// shorter than this network's).
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Ipv4Net> + use<> {
        let base = u64::from(u32::from(self.network));
        let (count, step) = if prefix < self.prefix || prefix > 32 {
            (0u64, 1u64)
        } else {
            (1u64 << (prefix - self.prefix), 1u64 << (32 - prefix))
        };
        (0..count).filter_map(move |i| {
            let addr = u32::try_from(base + i * step).ok()?;
            Ipv4Net::new(Ipv4Addr::from(addr), prefix)
        })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = IpamError;

    /// `a.b.c.d/n`; the address must be the network address (`10.0.0.1/24` is refused, as
    /// Compose's `ipam.config.subnet` expects a network).
    fn from_str(value: &str) -> Result<Ipv4Net, IpamError> {
        let bad = |reason| IpamError::InvalidCidr {
            value: value.to_string(),
            reason,
        };
        let (addr, prefix) = value
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the prefix length is not a number"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length is larger than 32"))?;
        let net =
            Ipv4Net::new(addr, prefix).ok_or_else(|| bad("the prefix length is larger than 32"))?;
        if net.network != addr {
            return Err(bad("host bits are set (give the network address)"));
        }
        Ok(net)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A subnet somebody already uses, and who (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub subnet: Ipv4Net,
    pub owner: String,
}

/// Checks that `subnet` can carry a network and overlaps nothing in `taken`.
pub fn check_subnet(subnet: Ipv4Net, taken: &[Taken]) -> Result<(), IpamError> {
    if subnet.prefix > 30 {
        return Err(IpamError::SubnetTooSmall { subnet });
    }
    match taken.iter().find(|t| t.subnet.overlaps(&subnet)) {
        Some(t) => Err(IpamError::Overlap {
            subnet,
            other: t.subnet,
            owner: t.owner.clone(),
        }),
        None => Ok(()),
    }
}

/// The first `/prefix` of `pool` that overlaps nothing in `taken`.
pub fn choose_subnet(pool: Ipv4Net, prefix: u8, taken: &[Taken]) -> Result<Ipv4Net, IpamError> {
    if prefix > 30 {
        return Err(IpamError::SubnetTooSmall {
            subnet: Ipv4Net::new(pool.network, prefix.min(32)).unwrap_or(pool),
        });
    }
    pool.subnets(prefix)
        .find(|s| !taken.iter().any(|t| t.subnet.overlaps(s)))
        .ok_or(IpamError::PoolExhausted { pool, prefix })
}

/// Why `address` cannot be given to an endpoint of `subnet` regardless of what is in use.
fn check_assignable(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    address: Ipv4Addr,
) -> Result<(), IpamError> {
    if !subnet.contains(address) {
        return Err(IpamError::OutsideSubnet { address, subnet });
    }
    let what = if address == subnet.network {
        "network address"
    } else if address == subnet.broadcast() {
        "broadcast address"
    } else if address == gateway {
        "gateway"
    } else {
        return Ok(());
    };
    Err(IpamError::Reserved {
        address,
        subnet,
        what,
    })
}

/// An address for a new endpoint of `subnet`: `requested` when it is free, else the lowest
/// free one. `used` holds the addresses of the subnet's endpoints.
pub fn allocate(
    subnet: Ipv4Net,
    used: &BTreeSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    allocate_within(
        &Pool {
            subnet,
            gateway: subnet.gateway(),
            range: None,
        },
        used,
        requested,
    )
}

/// Where a network's endpoints get their addresses: its subnet, its gateway (any address of
/// the subnet but the network and broadcast ones) and, optionally, a narrower range that
/// automatically chosen addresses come from (Docker's `--ip-range`; a requested address may
/// lie anywhere in the subnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub range: Option<Ipv4Net>,
}

/// Checks a network's addressing: the gateway inside the subnet and not its network or
/// broadcast address, the range inside the subnet with at least one address besides the
/// gateway.
pub fn check_pool(pool: &Pool) -> Result<(), IpamError> {
    let subnet = pool.subnet;
    let address = pool.gateway;
    if !subnet.contains(address) {
        return Err(IpamError::OutsideSubnet { address, subnet });
    }
    if address == subnet.network || address == subnet.broadcast() {
        return Err(IpamError::Reserved {
            address,
            subnet,
            what: if address == subnet.network {
                "network address"
            } else {
                "broadcast address"
            },
        });
    }
    if let Some(range) = pool.range {
        if range.prefix < subnet.prefix || !subnet.contains(range.network) {
            return Err(IpamError::RangeOutside { range, subnet });
        }
        if candidates(pool).next().is_none() {
            return Err(IpamError::RangeExhausted { range });
        }
    }
    Ok(())
}

/// The addresses automatic allocation may hand out, lowest first.
fn candidates(pool: &Pool) -> impl Iterator<Item = Ipv4Addr> + use<> {
    let p = *pool;
    let span = p.range.unwrap_or(p.subnet);
    let first = u32::from(span.network);
    let last = u32::from(span.broadcast());
    (first..=last)
        .map(Ipv4Addr::from)
        .filter(move |a| *a != p.gateway && *a != p.subnet.network && *a != p.subnet.broadcast())
}

/// [`allocate`] for a pool with any gateway and an optional range.
pub fn allocate_within(
    pool: &Pool,
    used: &BTreeSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    let subnet = pool.subnet;
    if let Some(address) = requested {
        check_assignable(subnet, pool.gateway, address)?;
        if used.contains(&address) {
            return Err(IpamError::InUse { address, subnet });
        }
        return Ok(address);
    }
    candidates(pool)
        .find(|a| !used.contains(a))
        .ok_or(match pool.range {
            Some(range) => IpamError::RangeExhausted { range },
            None => IpamError::SubnetExhausted { subnet },
        })
}

/// Docker's MAC address for an endpoint: `02:42` followed by the four bytes of its address
/// (unique while addresses are, and stable across restarts).
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn taken(s: &str) -> Taken {
        Taken {
            subnet: net(s),
            owner: format!("route {s}"),
        }
    }

    #[test]
    fn parses_and_prints_cidrs() {
        assert_eq!(net("10.89.0.0/16").to_string(), "10.89.0.0/16");
        assert_eq!(
            net("0.0.0.0/0").broadcast(),
            Ipv4Addr::new(255, 255, 255, 255)
        );
        assert_eq!(net("10.1.2.0/24").gateway(), Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(net("10.1.2.0/24").broadcast(), Ipv4Addr::new(10, 1, 2, 255));
    }

    #[test]
    fn invalid_cidrs_are_errors() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/1x",
            "300.0.0.0/8",
            "abc/8",
            "10.0.0.1/24",
            "",
        ] {
            let e = bad.parse::<Ipv4Net>().unwrap_err();
            assert!(matches!(e, IpamError::InvalidCidr { .. }), "{bad}: {e:?}");
            assert!(e.to_string().starts_with("invalid cidr"), "{e}");
        }
    }

    #[test]
    fn overlap_is_symmetric() {
        let a = net("10.89.0.0/16");
        let b = net("10.89.3.0/24");
        let c = net("10.90.0.0/24");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
        assert!(net("0.0.0.0/0").overlaps(&c));
    }

    #[test]
    fn subnets_are_carved_in_order() {
        let subs: Vec<_> = net("10.89.0.0/22").subnets(24).collect();
        assert_eq!(
            subs,
            [
                net("10.89.0.0/24"),
                net("10.89.1.0/24"),
                net("10.89.2.0/24"),
                net("10.89.3.0/24")
            ]
        );
        assert_eq!(net("10.89.0.0/24").subnets(16).count(), 0);
        assert_eq!(net("0.0.0.0/0").subnets(1).count(), 2);
    }

    #[test]
    fn choose_skips_taken_subnets_and_host_routes() {
        let pool = net("10.89.0.0/16");
        let t = [
            taken("10.89.0.0/24"),
            taken("10.89.1.128/25"),
            taken("10.89.2.7/32"),
        ];
        assert_eq!(choose_subnet(pool, 24, &t).unwrap(), net("10.89.3.0/24"));
        // A host route covering the whole pool leaves nothing.
        let e = choose_subnet(pool, 24, &[taken("10.0.0.0/8")]).unwrap_err();
        assert_eq!(e, IpamError::PoolExhausted { pool, prefix: 24 });
    }

    #[test]
    fn pool_runs_out() {
        let pool = net("10.89.0.0/23");
        let mut t = Vec::new();
        for _ in 0..2 {
            let s = choose_subnet(pool, 24, &t).unwrap();
            t.push(Taken {
                subnet: s,
                owner: "network".into(),
            });
        }
        assert!(matches!(
            choose_subnet(pool, 24, &t),
            Err(IpamError::PoolExhausted { .. })
        ));
    }

    #[test]
    fn explicit_subnets_are_checked() {
        let t = [taken("172.20.0.0/16")];
        assert!(check_subnet(net("172.21.0.0/24"), &t).is_ok());
        let e = check_subnet(net("172.20.5.0/24"), &t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 172.20.5.0/24 overlaps 172.20.0.0/16 (route 172.20.0.0/16)"
        );
        assert!(matches!(
            check_subnet(net("172.21.0.0/31"), &t),
            Err(IpamError::SubnetTooSmall { .. })
        ));
    }

    #[test]
    fn addresses_start_after_the_gateway_and_are_unique() {
        let s = net("10.89.7.0/29");
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        for _ in 0..5 {
            let a = allocate(s, &used, None).unwrap();
            assert!(used.insert(a), "{a} handed out twice");
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            [
                "10.89.7.2",
                "10.89.7.3",
                "10.89.7.4",
                "10.89.7.5",
                "10.89.7.6"
            ]
        );
        assert_eq!(
            allocate(s, &used, None),
            Err(IpamError::SubnetExhausted { subnet: s })
        );
        // Released: available again.
        used.remove(&Ipv4Addr::new(10, 89, 7, 4));
        assert_eq!(
            allocate(s, &used, None).unwrap(),
            Ipv4Addr::new(10, 89, 7, 4)
        );
    }

    #[test]
    fn requested_addresses_are_honoured_or_refused() {
        let s = net("10.89.7.0/24");
        let mut used = BTreeSet::new();
        let want = Ipv4Addr::new(10, 89, 7, 50);
        assert_eq!(allocate(s, &used, Some(want)).unwrap(), want);
        used.insert(want);
        assert_eq!(
            allocate(s, &used, Some(want)),
            Err(IpamError::InUse {
                address: want,
                subnet: s
            })
        );
        assert!(matches!(
            allocate(s, &used, Some(Ipv4Addr::new(10, 89, 8, 2))),
            Err(IpamError::OutsideSubnet { .. })
        ));
        for (a, what) in [
            (Ipv4Addr::new(10, 89, 7, 0), "network address"),
            (Ipv4Addr::new(10, 89, 7, 1), "gateway"),
            (Ipv4Addr::new(10, 89, 7, 255), "broadcast address"),
        ] {
            assert_eq!(
                allocate(s, &used, Some(a)),
                Err(IpamError::Reserved {
                    address: a,
                    subnet: s,
                    what
                })
            );
        }
    }

    #[test]
    fn macs_follow_docker() {
        let m = mac_for(Ipv4Addr::new(10, 89, 0, 2));
        assert_eq!(mac_string(m), "02:42:0a:59:00:02");
    }

    #[test]
    fn serde_round_trip() {
        let n = net("10.89.3.0/24");
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(j, "\"10.89.3.0/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>(&j).unwrap(), n);
        assert!(serde_json::from_str::<Ipv4Net>("\"10.0.0.1/8\"").is_err());
    }

    #[test]
    fn pools_with_a_gateway_and_a_range() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let pool = Pool {
            subnet: net("10.50.0.0/24"),
            gateway: a("10.50.0.254"),
            range: Some(net("10.50.0.128/30")),
        };
        check_pool(&pool).unwrap();
        let mut used = BTreeSet::new();
        let first = allocate_within(&pool, &used, None).unwrap();
        assert_eq!(first, a("10.50.0.128"));
        used.insert(first);
        for want in ["10.50.0.129", "10.50.0.130", "10.50.0.131"] {
            let got = allocate_within(&pool, &used, None).unwrap();
            assert_eq!(got, a(want));
            used.insert(got);
        }
        assert_eq!(
            allocate_within(&pool, &used, None),
            Err(IpamError::RangeExhausted {
                range: net("10.50.0.128/30")
            })
        );
        // A requested address may lie outside the range, never on the gateway.
        assert_eq!(
            allocate_within(&pool, &used, Some(a("10.50.0.1"))),
            Ok(a("10.50.0.1"))
        );
        assert!(matches!(
            allocate_within(&pool, &used, Some(a("10.50.0.254"))),
            Err(IpamError::Reserved {
                what: "gateway",
                ..
            })
        ));

        let outside = Pool {
            gateway: a("10.51.0.1"),
            ..pool
        };
        assert!(matches!(
            check_pool(&outside),
            Err(IpamError::OutsideSubnet { .. })
        ));
        let broadcast = Pool {
            gateway: a("10.50.0.255"),
            ..pool
        };
        assert!(matches!(
            check_pool(&broadcast),
            Err(IpamError::Reserved { .. })
        ));
        let wide = Pool {
            range: Some(net("10.50.0.0/23")),
            ..pool
        };
        assert!(matches!(
            check_pool(&wide),
            Err(IpamError::RangeOutside { .. })
        ));
        let elsewhere = Pool {
            range: Some(net("10.60.0.0/28")),
            ..pool
        };
        assert!(matches!(
            check_pool(&elsewhere),
            Err(IpamError::RangeOutside { .. })
        ));
    }
}
