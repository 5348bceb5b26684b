//! The daemon's nftables table `inet flt<prefix>`: isolation between networks and outbound NAT.
//! The whole table is rendered from the list of networks ([`render`], pure, tested as text) and
//! replaced in one `nft -f -` transaction at every network change (the `table; delete table;
//! table {…}` idiom, so a missing table is no error); with no networks the table is deleted.
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

/// The script that replaces the table (or only deletes it when `networks` is empty).
pub fn render(table: &str, networks: &[NftNetwork]) -> String {
    let mut s = format!("table inet {table}\ndelete table inet {table}\n");
    if networks.is_empty() {
        return s;
    }
    s.push_str(&format!("table inet {table} {{\n"));
    s.push_str("  chain forward {\n    type filter hook forward priority -1; policy accept;\n");
    for n in networks {
        let b = &n.bridge;
        if n.internal {
            s.push_str(&format!("    iifname \"{b}\" oifname != \"{b}\" drop\n"));
            s.push_str(&format!("    oifname \"{b}\" iifname != \"{b}\" drop\n"));
        } else {
            s.push_str(&format!(
                "    iifname \"{b}\" oifname \"flt*\" oifname != \"{b}\" drop\n"
            ));
            s.push_str(&format!(
                "    oifname \"{b}\" iifname \"flt*\" iifname != \"{b}\" drop\n"
            ));
        }
    }
    s.push_str("  }\n");
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n",
    );
    for n in networks.iter().filter(|n| !n.internal) {
        s.push_str(&format!(
            "    ip saddr {} oifname != \"{}\" oifname != \"lo\" masquerade\n",
            n.subnet, n.bridge
        ));
    }
    s.push_str("  }\n}\n");
    s
}

/// Replaces the table with the rules for `networks` (deletes it when there are none).
pub fn apply(table: &str, networks: &[NftNetwork]) -> Result<(), NftError> {
    let script = render(table, networks);
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
    fn no_networks_only_deletes() {
        assert_eq!(
            render("fltab", &[]),
            "table inet fltab\ndelete table inet fltab\n"
        );
    }
}
