//! The daemon's nftables table `inet flt<prefix>`: isolation between networks and outbound NAT.
//! The whole table is rendered from the list of networks ([`render`], pure, tested as text) and
//! replaced in one `nft -f -` transaction when a network goes (the `table; delete table;
//! table {…}` idiom, so a missing table is no error); with no networks the table is deleted.
//! A new network's rules are only appended ([`add`]): deleting rules or a table makes the
//! kernel wait for an RCU grace period (~12 ms here), appending does not (~2.5 ms with the
//! `nft` process), and a network's creation comes before any of its containers.
//!
//! - Isolation: with IP forwarding on, the host would route between two bridges; the forward
//!   chain drops traffic from one flotilla bridge (`flt*`, any daemon's) to another.
//! - `internal` networks: nothing is forwarded out of or into their bridge.
//! - Other networks: traffic from their subnet leaving through another link is masqueraded
//!   (not what stays on the host: the host talking to its own gateway address keeps its source).

use std::io::Write;
use std::process::{Command, Stdio};

use super::ipam::Ipv4Net;

/// Why the nftables rules could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("run nft (from the nftables package): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the rules of table {table}: {reason}")]
    Refused { table: String, reason: String },
}

/// What the rules need to know of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftNetwork {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
}

/// The table's name for the daemon prefix.
pub fn table_name(prefix: &str) -> String {
    format!("flt{prefix}")
}

/// The base chains' declarations (hooks and policies).
const FORWARD_CHAIN: &str = "type filter hook forward priority -1; policy accept;";
const POSTROUTING_CHAIN: &str = "type nat hook postrouting priority 100; policy accept;";

/// The forward chain's rules for network `n`.
fn forward_rules(n: &NftNetwork) -> [String; 2] {
    let b = &n.bridge;
    if n.internal {
        [
            format!("iifname \"{b}\" oifname != \"{b}\" drop"),
            format!("oifname \"{b}\" iifname != \"{b}\" drop"),
        ]
    } else {
        [
            format!("iifname \"{b}\" oifname \"flt*\" oifname != \"{b}\" drop"),
            format!("oifname \"{b}\" iifname \"flt*\" iifname != \"{b}\" drop"),
        ]
    }
}

/// The postrouting chain's rule for network `n` (none for internal networks).
fn nat_rule(n: &NftNetwork) -> Option<String> {
    (!n.internal).then(|| {
        format!(
            "ip saddr {} oifname != \"{}\" oifname != \"lo\" masquerade",
            n.subnet, n.bridge
        )
    })
}

/// The script that replaces the table (or only deletes it when `networks` is empty).
pub fn render(table: &str, networks: &[NftNetwork]) -> String {
    let mut s = format!("table inet {table}\ndelete table inet {table}\n");
    if networks.is_empty() {
        return s;
    }
    s.push_str(&format!("table inet {table} {{\n"));
    s.push_str(&format!("  chain forward {{\n    {FORWARD_CHAIN}\n"));
    for n in networks {
        for r in forward_rules(n) {
            s.push_str(&format!("    {r}\n"));
        }
    }
    s.push_str("  }\n");
    s.push_str(&format!(
        "  chain postrouting {{\n    {POSTROUTING_CHAIN}\n"
    ));
    for r in networks.iter().filter_map(nat_rule) {
        s.push_str(&format!("    {r}\n"));
    }
    s.push_str("  }\n}\n");
    s
}

/// The script that appends network `n`'s rules, making the table and its base chains when
/// they are missing (declaring existing ones changes nothing).
pub fn render_add(table: &str, n: &NftNetwork) -> String {
    let mut s = format!(
        "table inet {table} {{\n  chain forward {{\n    {FORWARD_CHAIN}\n  }}\n  chain postrouting {{\n    {POSTROUTING_CHAIN}\n  }}\n}}\n"
    );
    for r in forward_rules(n) {
        s.push_str(&format!("add rule inet {table} forward {r}\n"));
    }
    if let Some(r) = nat_rule(n) {
        s.push_str(&format!("add rule inet {table} postrouting {r}\n"));
    }
    s
}

/// Appends network `n`'s rules to the table ([`render_add`]).
pub fn add(table: &str, n: &NftNetwork) -> Result<(), NftError> {
    run(table, &render_add(table, n))
}

/// Replaces the table with the rules for `networks` (deletes it when there are none).
pub fn apply(table: &str, networks: &[NftNetwork]) -> Result<(), NftError> {
    run(table, &render(table, networks))
}

/// Runs `script` through `nft -f -` (one transaction).
fn run(table: &str, script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused {
            table: table.to_string(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Deletes the table if it exists.
pub fn delete(table: &str) -> Result<(), NftError> {
    apply(table, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_isolation_and_nat() {
        let nets = [
            NftNetwork {
                bridge: "fltab-b1".into(),
                subnet: "10.89.0.0/24".parse().unwrap(),
                internal: false,
            },
            NftNetwork {
                bridge: "fltab-b2".into(),
                subnet: "10.89.1.0/24".parse().unwrap(),
                internal: true,
            },
        ];
        let want = "table inet fltab\ndelete table inet fltab\ntable inet fltab {\n  chain forward {\n    type filter hook forward priority -1; policy accept;\n    iifname \"fltab-b1\" oifname \"flt*\" oifname != \"fltab-b1\" drop\n    oifname \"fltab-b1\" iifname \"flt*\" iifname != \"fltab-b1\" drop\n    iifname \"fltab-b2\" oifname != \"fltab-b2\" drop\n    oifname \"fltab-b2\" iifname != \"fltab-b2\" drop\n  }\n  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr 10.89.0.0/24 oifname != \"fltab-b1\" oifname != \"lo\" masquerade\n  }\n}\n";
        assert_eq!(render("fltab", &nets), want);
    }

    #[test]
    fn a_new_network_is_appended() {
        let net = NftNetwork {
            bridge: "fltab-b1".into(),
            subnet: "10.89.0.0/24".parse().unwrap(),
            internal: false,
        };
        let want = "table inet fltab {\n  chain forward {\n    type filter hook forward priority -1; policy accept;\n  }\n  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n  }\n}\nadd rule inet fltab forward iifname \"fltab-b1\" oifname \"flt*\" oifname != \"fltab-b1\" drop\nadd rule inet fltab forward oifname \"fltab-b1\" iifname \"flt*\" iifname != \"fltab-b1\" drop\nadd rule inet fltab postrouting ip saddr 10.89.0.0/24 oifname != \"fltab-b1\" oifname != \"lo\" masquerade\n";
        assert_eq!(render_add("fltab", &net), want);
        let internal = NftNetwork {
            internal: true,
            ..net
        };
        assert!(!render_add("fltab", &internal).contains("masquerade"));
    }

    #[test]
    fn no_networks_only_deletes() {
        assert_eq!(
            render("fltab", &[]),
            "table inet fltab\ndelete table inet fltab\n"
        );
    }
}
