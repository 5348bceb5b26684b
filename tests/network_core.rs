//! The network core on the real kernel (root): bridges, veth pairs, named network namespaces,
//! IPAM and the nftables rules. Each test has its own random prefix and data root and a guard
//! that removes every link, namespace file and nftables table of its prefix, even on failure.
//! Traffic goes only to addresses of the bridges and namespaces the test made.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use flotilla::network::ipam::IpamError;
use flotilla::network::{NetworkError, NetworkOptions, Networks, cleanup_prefix};
use flotilla::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    prefix: String,
    nets: Networks,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = cleanup_prefix(&self.prefix, &self.root);
    }
}

fn random_prefix() -> String {
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    format!("t{}", &hex::encode(b)[..3])
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let prefix = random_prefix();
    let store = Arc::new(Store::open(&root).unwrap());
    let nets = Networks::new(&root, &prefix, store)
        .unwrap()
        .with_exe(Path::new(BIN));
    Fixture {
        _dir: dir,
        root,
        prefix,
        nets,
    }
}

fn ping(netns: &Path, addr: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["busybox", "ping", "-c1", "-W1"])
        .arg(addr.to_string())
        .output()
        .unwrap()
        .status
        .success()
}

/// The routing table inside the namespace, as /proc/net/route shows it there.
fn routes(netns: &Path) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["busybox", "cat", "/proc/net/route"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn has_default_route(netns: &Path) -> bool {
    routes(netns).lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000")
    })
}

/// The host's links whose names start with `flt<prefix>-`, once `ok` holds for them (at
/// most 10 s: a removed namespace's veth goes with it, in the background).
fn links_until(prefix: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    common::links_until(&format!("flt{prefix}-"), ok)
}

fn links_of(prefix: &str) -> Vec<String> {
    links_until(prefix, |_| true)
}

fn nft_table_exists(prefix: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", &format!("flt{prefix}")])
        .output()
        .unwrap()
        .status
        .success()
}

fn opts() -> NetworkOptions {
    NetworkOptions::default()
}

#[test]
fn one_network_connects_and_another_is_isolated() {
    let f = fixture();
    let a = f.nets.create_network("front", &opts()).unwrap();
    let b = f.nets.create_network("back", &opts()).unwrap();
    assert!(!a.subnet.overlaps(&b.subnet), "{} {}", a.subnet, b.subnet);
    assert!(a.bridge.len() <= 15 && a.bridge.starts_with(&format!("flt{}-", f.prefix)));
    assert_eq!(a.gateway, a.subnet.gateway());

    let ns1 = f.nets.create_netns("c1").unwrap();
    let ns2 = f.nets.create_netns("c2").unwrap();
    let ns3 = f.nets.create_netns("c3").unwrap();
    assert_eq!(ns1, f.root.join("netns/c1"));
    let e1 = f
        .nets
        .connect(&ns1, "front", &["web".into()], None)
        .unwrap();
    let e2 = f.nets.connect(&ns2, "front", &[], None).unwrap();
    let e3 = f.nets.connect(&ns3, "back", &[], None).unwrap();
    assert_eq!(e1.ifname, "eth0");
    assert!(a.subnet.contains(e1.ip) && a.subnet.contains(e2.ip));
    assert_ne!(e1.ip, e2.ip);
    assert_eq!(e1.gateway, Some(a.gateway));
    assert!(e1.veth.len() <= 15);

    // Same network: both ways, and the gateway.
    assert!(ping(&ns1, e2.ip), "c1 → c2");
    assert!(ping(&ns2, e1.ip), "c2 → c1");
    assert!(ping(&ns1, a.gateway), "c1 → its gateway");
    assert!(ping(&ns3, b.gateway), "c3 → its gateway");
    assert!(has_default_route(&ns1));

    // Forwarding is on (non-internal networks turn it on), so only the rules isolate.
    let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(fwd.trim(), "1");
    assert!(nft_table_exists(&f.prefix));
    assert!(!ping(&ns3, e1.ip), "c3 (back) reached c1 (front)");
    assert!(!ping(&ns1, e3.ip), "c1 (front) reached c3 (back)");
    // Without the table the host would route between the bridges: the rules do the isolating.
    let deleted = Command::new("nft")
        .args(["delete", "table", "inet", &format!("flt{}", f.prefix)])
        .status()
        .unwrap();
    assert!(deleted.success());
    assert!(
        ping(&ns3, e1.ip),
        "without the rules c3 (back) reaches c1 (front)"
    );

    // A second network on the same namespace: a second interface.
    let e1b = f.nets.connect(&ns1, "back", &[], None).unwrap();
    assert_eq!(e1b.ifname, "eth1");
    assert!(ping(&ns1, e3.ip), "c1, now also on back, reaches c3");

    // Everything removed: nothing of the test's prefix is left.
    assert!(matches!(
        f.nets.remove_network("front"),
        Err(NetworkError::InUse { endpoints: 2, .. })
    ));
    for id in ["c1", "c2", "c3"] {
        f.nets.remove_netns(id).unwrap();
    }
    assert!(f.nets.get("front").unwrap().endpoints.is_empty());
    f.nets.remove_network("front").unwrap();
    f.nets.remove_network("back").unwrap();
    assert_eq!(
        links_until(&f.prefix, |l| l.is_empty()),
        Vec::<String>::new()
    );
    assert_eq!(std::fs::read_dir(f.nets.netns_dir()).unwrap().count(), 0);
    f.nets.settle();
    assert!(!nft_table_exists(&f.prefix));
    assert!(f.nets.list().unwrap().is_empty());
}

#[test]
fn internal_network_has_no_default_route() {
    let f = fixture();
    let internal = NetworkOptions {
        internal: true,
        ..opts()
    };
    let n = f.nets.create_network("hidden", &internal).unwrap();
    let other = f.nets.create_network("open", &opts()).unwrap();
    let ns1 = f.nets.create_netns("i1").unwrap();
    let ns2 = f.nets.create_netns("i2").unwrap();
    let e1 = f.nets.connect(&ns1, "hidden", &[], None).unwrap();
    let e2 = f.nets.connect(&ns2, "hidden", &[], None).unwrap();
    assert_eq!(e1.gateway, None);
    assert!(!has_default_route(&ns1), "{}", routes(&ns1));
    assert!(
        ping(&ns1, e2.ip),
        "members of an internal network reach each other"
    );
    assert!(
        !ping(&ns1, other.gateway),
        "no route out of an internal network"
    );
    assert!(n.internal);
    let script = Command::new("nft")
        .args(["list", "table", "inet", &format!("flt{}", f.prefix)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&script.stdout);
    assert!(
        text.contains(&format!("ip saddr {} ", other.subnet)) && text.contains("masquerade"),
        "{text}"
    );
    assert!(!text.contains(&format!("ip saddr {} ", n.subnet)), "{text}");
}

/// A removed namespace's veth pair goes with the namespace (the kernel tears it down in the
/// background); its address is released at once but not handed out again while the veth is
/// there; a veth whose namespace something else still holds is deleted explicitly.
#[test]
fn removed_namespaces_take_their_veths_and_held_ones_are_deleted() {
    let f = fixture();
    f.nets.create_network("gone", &opts()).unwrap();
    let a = f.nets.create_netns("a").unwrap();
    let b = f.nets.create_netns("b").unwrap();
    let ea = f.nets.connect(&a, "gone", &[], None).unwrap();
    let eb = f.nets.connect(&b, "gone", &[], None).unwrap();
    // Something outside flotilla keeps b's namespace alive.
    let held = std::fs::File::open(&b).unwrap();
    let removing = std::time::Instant::now();
    f.nets.remove_netns("a").unwrap();
    f.nets.remove_netns("b").unwrap();
    assert!(f.nets.get("gone").unwrap().endpoints.is_empty());
    assert!(!a.exists() && !b.exists(), "namespace files removed");

    let links = links_until(&f.prefix, |l| !l.contains(&ea.veth));
    assert!(!links.contains(&ea.veth), "a's veth went with a: {links:?}");
    assert!(links.contains(&eb.veth), "b's namespace is held: {links:?}");
    // b's address (and MAC) stays out of use while b's veth is there.
    let c = f.nets.create_netns("c").unwrap();
    let ec = f.nets.connect(&c, "gone", &[], None).unwrap();
    assert_ne!(ec.ip, eb.ip);

    let links = links_until(&f.prefix, |l| !l.contains(&eb.veth));
    assert!(
        !links.contains(&eb.veth),
        "the held veth is deleted: {links:?}"
    );
    assert!(removing.elapsed() >= flotilla::network::VETH_TEARDOWN);
    drop(held);
    f.nets.remove_netns("c").unwrap();
    f.nets.remove_network("gone").unwrap();
    assert_eq!(
        links_until(&f.prefix, |l| l.is_empty()),
        Vec::<String>::new()
    );
}

/// A removed network's bridge is deleted in the background (its record and rules at once);
/// a new network asking for the same subnet right away waits for it instead of failing.
#[test]
fn a_removed_networks_subnet_can_be_taken_again_at_once() {
    let f = fixture();
    let first = f.nets.create_network("again", &opts()).unwrap();
    f.nets.remove_network("again").unwrap();
    assert!(f.nets.list().unwrap().is_empty(), "the record goes at once");
    let same = NetworkOptions {
        subnet: Some(first.subnet.to_string()),
        ..opts()
    };
    let second = f.nets.create_network("again", &same).unwrap();
    assert_eq!(second.subnet, first.subnet);
    assert_ne!(second.bridge, first.bridge);
    assert_eq!(
        links_until(&f.prefix, |l| l == [second.bridge.clone()]),
        vec![second.bridge.clone()],
        "the first bridge is gone"
    );
    f.nets.remove_network("again").unwrap();
    f.nets.settle();
    assert_eq!(links_of(&f.prefix), Vec::<String>::new());
}

/// What a daemon killed while it deleted a network in the background left (a bridge no record
/// names, its rules) is removed by the next start's `prune_stale`; live networks are untouched.
#[test]
fn stale_links_and_rules_of_a_killed_run_are_pruned() {
    let f = fixture();
    let live = f.nets.create_network("live", &opts()).unwrap();
    let ns = f.nets.create_netns("c").unwrap();
    let ep = f.nets.connect(&ns, "live", &[], None).unwrap();
    let stale = format!("flt{}-bdead00", f.prefix);
    let made = Command::new("ip")
        .args(["link", "add", &stale, "type", "bridge"])
        .status()
        .unwrap();
    assert!(made.success());
    let pruned = f.nets.prune_stale().unwrap();
    assert_eq!(pruned, vec![stale.clone()]);
    let mut want = vec![live.bridge.clone(), ep.veth.clone()];
    want.sort();
    assert_eq!(links_of(&f.prefix), want);
    assert!(nft_table_exists(&f.prefix), "the live network's rules stay");
    assert!(ping(&ns, live.gateway));
    f.nets.remove_netns("c").unwrap();
    f.nets.remove_network("live").unwrap();
    f.nets.settle();
    assert!(!nft_table_exists(&f.prefix));
}

#[test]
fn parallel_connects_never_share_an_address_and_released_ones_return() {
    let f = fixture();
    let net = f.nets.create_network("many", &opts()).unwrap();
    let paths: Vec<PathBuf> = (0..10)
        .map(|i| f.nets.create_netns(&format!("p{i}")).unwrap())
        .collect();
    let endpoints: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| s.spawn(|| f.nets.connect(p, "many", &[], None)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let ips: BTreeSet<Ipv4Addr> = endpoints.iter().map(|e| e.ip).collect();
    assert_eq!(ips.len(), 10, "{endpoints:?}");
    assert!(ips.iter().all(|ip| net.subnet.contains(*ip)));
    let veths: BTreeSet<&str> = endpoints.iter().map(|e| e.veth.as_str()).collect();
    assert_eq!(veths.len(), 10);
    assert_eq!(f.nets.get("many").unwrap().endpoints.len(), 10);
    assert!(ping(&paths[0], endpoints[9].ip));

    // The same namespace twice, an address in use, outside the subnet: refused, nothing made.
    let links_before = links_of(&f.prefix);
    assert!(matches!(
        f.nets.connect(&paths[0], "many", &[], None),
        Err(NetworkError::AlreadyConnected { .. })
    ));
    let extra = f.nets.create_netns("extra").unwrap();
    let taken = endpoints[3].ip;
    let e = f
        .nets
        .connect(&extra, "many", &[], Some(taken))
        .unwrap_err();
    assert!(
        matches!(
            e,
            NetworkError::Ipam {
                source: IpamError::InUse { .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "network many: address {taken} of subnet {} is already in use",
            net.subnet
        )
    );
    assert!(matches!(
        f.nets
            .connect(&extra, "many", &[], Some(Ipv4Addr::new(192, 0, 2, 77))),
        Err(NetworkError::Ipam {
            source: IpamError::OutsideSubnet { .. },
            ..
        })
    ));
    assert_eq!(
        links_until(&f.prefix, |l| l == links_before.as_slice()),
        links_before
    );

    // Released: the address is available again, and an explicit one is honoured.
    f.nets.disconnect(&paths[3], "many").unwrap();
    let again = f.nets.connect(&extra, "many", &[], Some(taken)).unwrap();
    assert_eq!(again.ip, taken);
    assert!(ping(&paths[0], taken));
    f.nets.disconnect(&extra, "many").unwrap();
    let lowest = f.nets.connect(&paths[3], "many", &[], None).unwrap();
    assert_eq!(lowest.ip, taken, "the lowest free address comes back");

    for i in 0..10 {
        f.nets.remove_netns(&format!("p{i}")).unwrap();
    }
    f.nets.remove_netns("extra").unwrap();
    f.nets.remove_network("many").unwrap();
    assert_eq!(
        links_until(&f.prefix, |l| l.is_empty()),
        Vec::<String>::new()
    );
    f.nets.settle();
    assert!(!nft_table_exists(&f.prefix));
}

#[test]
fn bad_input_is_refused_without_partial_state() {
    let f = fixture();
    let a = f.nets.create_network("first", &opts()).unwrap();
    let links = links_of(&f.prefix);
    assert_eq!(links, vec![a.bridge.clone()]);

    let overlap = NetworkOptions {
        subnet: Some(a.subnet.to_string()),
        ..opts()
    };
    let e = f.nets.create_network("second", &overlap).unwrap_err();
    assert!(
        matches!(
            e,
            NetworkError::Ipam {
                source: IpamError::Overlap { .. },
                ..
            }
        ),
        "{e}"
    );
    let bad = NetworkOptions {
        subnet: Some("10.0.0.0/33".into()),
        ..opts()
    };
    let e = f.nets.create_network("third", &bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        "network third: invalid cidr \"10.0.0.0/33\": the prefix length is larger than 32"
    );
    assert!(matches!(
        f.nets.create_network("first", &opts()),
        Err(NetworkError::Store(_))
    ));
    assert!(matches!(
        f.nets.create_network("bad name", &opts()),
        Err(NetworkError::InvalidName { .. })
    ));
    assert!(matches!(
        f.nets.remove_network("nope"),
        Err(NetworkError::NotFound { .. })
    ));
    let ns = f.nets.create_netns("b1").unwrap();
    assert!(matches!(
        f.nets.connect(&ns, "nope", &[], None),
        Err(NetworkError::NotFound { .. })
    ));
    assert!(matches!(
        f.nets.create_netns("../x"),
        Err(NetworkError::InvalidNetnsId { .. })
    ));

    // An exhausted pool: the pool is the first network's own subnet.
    let tiny = Networks::new(
        &f.root.join("other"),
        &f.prefix,
        Arc::new(Store::open(&f.root.join("other")).unwrap()),
    )
    .unwrap()
    .with_exe(Path::new(BIN))
    .with_pool(&a.subnet.to_string(), 24)
    .unwrap();
    let e = tiny.create_network("x", &opts()).unwrap_err();
    assert!(
        matches!(
            e,
            NetworkError::Ipam {
                source: IpamError::PoolExhausted { .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(links_until(&f.prefix, |l| l == links.as_slice()), links);
    assert_eq!(f.nets.list().unwrap().len(), 1);
}

#[test]
fn cleanup_removes_what_a_crashed_run_left() {
    let f = fixture();
    f.nets.create_network("left", &opts()).unwrap();
    let ns = f.nets.create_netns("crashed").unwrap();
    f.nets.connect(&ns, "left", &[], None).unwrap();
    assert_eq!(links_until(&f.prefix, |l| l.len() == 2).len(), 2);
    assert!(nft_table_exists(&f.prefix));
    let done = f.nets.cleanup().unwrap();
    assert_eq!(done.links.len(), 2, "{done:?}");
    assert_eq!(done.netns, vec![ns.clone()]);
    assert_eq!(
        links_until(&f.prefix, |l| l.is_empty()),
        Vec::<String>::new()
    );
    assert!(!ns.exists());
    f.nets.settle();
    assert!(!nft_table_exists(&f.prefix));
}
