//! A container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, as Docker provides them:
//! rendered from the container's settings (pure functions, unit-tested as text), written into
//! the container's state dir at each start, and bind-mounted over the image's files.
//!
//! The settings travel from [`crate::runtime::config::render`] to the shim in one annotation
//! ([`ANNOTATION_ETC`], an [`EtcConfig`] as JSON). At start the shim calls [`install`]: it reads
//! the host's resolv.conf, writes `<state>/hostname`, `<state>/hosts` and `<state>/resolv.conf`,
//! and adds the three bind mounts to the spec in memory, before the mounts of the user (a
//! user's own mount on one of these paths wins: that file is then not mounted at all).
//!
//! - hostname: the spec's hostname; without one, Docker's default, the container id's first
//!   12 digits (also set as the UTS hostname and `HOSTNAME`).
//! - hosts: `localhost` for 127.0.0.1 and ::1 plus Docker's IPv6 names, `extra_hosts`, then the
//!   container's own addresses (known once the network module wires the container).
//! - resolv.conf: `dns` when given, else the host's nameservers without the loopback ones
//!   (a systemd-resolved stub falls back to `/run/systemd/resolve/resolv.conf`, then to
//!   Docker's default public resolvers); `dns_search` and `dns_opt` replace the host's search
//!   and options lines when given (Docker's rules).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::runtime::bundle;
use crate::runtime::shim::ShimError;
use crate::runtime::sys::container::ContainerError;

/// Annotation: the [`EtcConfig`] of the container as JSON (absent: all defaults).
pub const ANNOTATION_ETC: &str = "io.flotilla.etc";

/// The files, by container path and file name in the state dir.
pub const FILES: [(&str, &str); 3] = [
    ("/etc/hostname", "hostname"),
    ("/etc/hosts", "hosts"),
    ("/etc/resolv.conf", "resolv.conf"),
];

/// Docker's resolvers when the host has none a container can reach.
const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// Where systemd-resolved keeps the real upstream servers behind its 127.0.0.53 stub.
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// Why the settings are invalid or the files could not be provided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcError {
    #[error("extra_hosts entry {entry:?}: {reason}")]
    ExtraHost { entry: String, reason: String },
    #[error("dns {value:?}: not an IP address")]
    Dns { value: String },
    #[error("dns_search {value:?}: invalid domain")]
    DnsSearch { value: String },
    #[error("dns_opt {value:?}: invalid option")]
    DnsOpt { value: String },
    #[error("annotation {ANNOTATION_ETC}: {reason}")]
    Annotation { reason: String },
    #[error("container {id}: write {path}: {reason}")]
    Write {
        id: String,
        path: PathBuf,
        reason: String,
    },
}

impl From<EtcError> for ShimError {
    fn from(e: EtcError) -> ShimError {
        ShimError::Container {
            source: ContainerError::Credentials {
                step: "provide /etc/hostname, /etc/hosts and /etc/resolv.conf",
                source: io::Error::other(e),
            },
        }
    }
}

/// One `extra_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub ip: IpAddr,
}

/// What the three files are made from, besides the hostname.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<HostEntry>,
    /// The container's own addresses (the network module fills them in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
}

impl EtcConfig {
    pub fn is_empty(&self) -> bool {
        self == &EtcConfig::default()
    }
}

/// An `extra_hosts` entry as Compose writes it: `name:ip`, `name=ip`, `name:[v6]` or
/// `name=v6` (the first separator splits, so `name:::1` is `::1`).
pub fn parse_extra_host(entry: &str) -> Result<HostEntry, EtcError> {
    let fail = |reason: &str| EtcError::ExtraHost {
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let split = match (entry.find('='), entry.find(':')) {
        (Some(e), Some(c)) => e.min(c),
        (Some(i), None) | (None, Some(i)) => i,
        (None, None) => return Err(fail("expected host:ip or host=ip")),
    };
    let (name, ip) = (&entry[..split], &entry[split + 1..]);
    if !valid_host_name(name) {
        return Err(fail("invalid host name"));
    }
    let ip = ip
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(ip);
    if ip == "host-gateway" {
        return Err(fail("host-gateway is not supported yet"));
    }
    let ip: IpAddr = ip.parse().map_err(|_| fail("not an IP address"))?;
    Ok(HostEntry {
        name: name.to_string(),
        ip,
    })
}

fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The settings from the config's strings, checked.
pub fn settings(
    dns: &[String],
    dns_search: &[String],
    dns_opt: &[String],
    extra_hosts: &[String],
    addresses: &[IpAddr],
) -> Result<EtcConfig, EtcError> {
    let dns = dns
        .iter()
        .map(|d| {
            d.trim().parse().map_err(|_| EtcError::Dns {
                value: d.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    for s in dns_search {
        if s != "." && !valid_host_name(s) {
            return Err(EtcError::DnsSearch { value: s.clone() });
        }
    }
    for o in dns_opt {
        if o.is_empty() || o.chars().any(|c| c.is_whitespace()) {
            return Err(EtcError::DnsOpt { value: o.clone() });
        }
    }
    Ok(EtcConfig {
        dns,
        dns_search: dns_search.to_vec(),
        dns_opt: dns_opt.to_vec(),
        extra_hosts: extra_hosts
            .iter()
            .map(|e| parse_extra_host(e))
            .collect::<Result<_, _>>()?,
        addresses: addresses.to_vec(),
    })
}

/// For [`crate::runtime::config::render`]: checks the config's settings and records them in
/// the annotation (nothing when all are empty).
pub fn annotate(
    config: &crate::runtime::config::ContainerConfig,
    annotations: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), EtcError> {
    let etc = settings(
        &config.dns,
        &config.dns_search,
        &config.dns_opt,
        &config.extra_hosts,
        &config.addresses,
    )?;
    if !etc.is_empty() {
        let text = serde_json::to_string(&etc).map_err(|e| EtcError::Annotation {
            reason: e.to_string(),
        })?;
        annotations.insert(ANNOTATION_ETC.into(), serde_json::Value::String(text));
    }
    Ok(())
}

/// The settings of a spec (its annotation; none: the defaults).
pub fn from_spec(spec: &Spec) -> Result<EtcConfig, EtcError> {
    match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ETC))
    {
        None => Ok(EtcConfig::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| EtcError::Annotation {
            reason: e.to_string(),
        }),
    }
}

// --- rendering (pure) ----------------------------------------------------------------------

/// `/etc/hostname`.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts`: Docker's defaults, `extra_hosts`, then the container's own addresses named
/// by its hostname (and the short name when the hostname has a domain).
pub fn render_hosts(hostname: &str, etc: &EtcConfig) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for h in &etc.extra_hosts {
        out.push_str(&format!("{}\t{}\n", h.ip, h.name));
    }
    let names = match hostname.split_once('.') {
        Some((short, _)) if !short.is_empty() => format!("{hostname} {short}"),
        _ => hostname.to_string(),
    };
    for ip in &etc.addresses {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out
}

/// The nameservers of a resolv.conf text, in order.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                // A scoped IPv6 address (fe80::1%eth0) is not usable in another namespace.
                .and_then(|w| w.parse().ok())
        })
        .collect()
}

/// Whether the host's resolv.conf text names no nameserver a container could reach.
pub fn only_loopback(text: &str) -> bool {
    nameservers(text).iter().all(|ip| ip.is_loopback())
}

/// `/etc/resolv.conf` from the host's text and the container's settings.
pub fn render_resolv_conf(host: &str, etc: &EtcConfig) -> String {
    let mut servers: Vec<IpAddr> = if etc.dns.is_empty() {
        nameservers(host)
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .collect()
    } else {
        etc.dns.clone()
    };
    if servers.is_empty() {
        servers = DEFAULT_NAMESERVERS
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
    }
    let host_words = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(key)).then(|| words.map(str::to_string).collect::<Vec<_>>())
            })
            .next_back()
            .unwrap_or_default()
    };
    let search = if etc.dns_search.is_empty() {
        host_words("search")
    } else {
        // `dns_search: .` means no search domain at all (Docker's rule).
        etc.dns_search
            .iter()
            .filter(|s| s.as_str() != ".")
            .cloned()
            .collect()
    };
    let options = if etc.dns_opt.is_empty() {
        host_words("options")
    } else {
        etc.dns_opt.clone()
    };
    let mut out = String::new();
    for ip in servers {
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The mounts for the files in `state`, inserted after the kernel filesystems (`/proc`, `/dev`,
/// `/sys` and below) and before the user's mounts; a destination the spec already mounts is
/// left to that mount.
pub fn add_mounts(mounts: &mut Vec<Mount>, state: &Path) -> Result<(), EtcError> {
    let kernel = |m: &Mount| {
        ["/proc", "/dev", "/sys"]
            .iter()
            .any(|p| m.destination().starts_with(p))
    };
    let mut at = mounts
        .iter()
        .position(|m| !kernel(m))
        .unwrap_or(mounts.len());
    for (destination, file) in FILES {
        if mounts
            .iter()
            .any(|m| m.destination() == Path::new(destination))
        {
            continue;
        }
        let mount: Mount = serde_json::from_value(json!({
            "destination": destination,
            "type": "bind",
            "source": state.join(file),
            "options": ["rbind", "rprivate"],
        }))
        .map_err(|e| EtcError::Annotation {
            reason: e.to_string(),
        })?;
        mounts.insert(at, mount);
        at += 1;
    }
    Ok(())
}

// --- at start ------------------------------------------------------------------------------

/// The host's resolv.conf text (empty when missing); behind a loopback-only stub such as
/// systemd-resolved's, the upstream servers' file.
fn host_resolv_conf() -> String {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if only_loopback(&text)
        && let Ok(upstream) = std::fs::read_to_string(SYSTEMD_RESOLV_CONF)
        && !only_loopback(&upstream)
    {
        return upstream;
    }
    text
}

/// At start, in the shim: writes the three files into `state` and adds their bind mounts to
/// `spec` (in memory); gives a spec without a hostname Docker's default one.
pub fn install(mut spec: Spec, state: &Path) -> Result<Spec, EtcError> {
    let etc = from_spec(&spec)?;
    let id = bundle::id(&spec).unwrap_or_default();
    let hostname = match spec.hostname() {
        Some(h) => h.clone(),
        None if id.len() >= 12 => {
            let short = id[..12].to_string();
            spec.set_hostname(Some(short.clone()));
            if let Some(env) = spec
                .process_mut()
                .as_mut()
                .and_then(|p| p.env_mut().as_mut())
                && !env.iter().any(|e| e.starts_with("HOSTNAME="))
            {
                env.push(format!("HOSTNAME={short}"));
            }
            short
        }
        None => "localhost".to_string(),
    };
    let files = [
        (FILES[0].1, render_hostname(&hostname)),
        (FILES[1].1, render_hosts(&hostname, &etc)),
        (FILES[2].1, render_resolv_conf(&host_resolv_conf(), &etc)),
    ];
    for (name, text) in files {
        let path = state.join(name);
        write_file(&path, text.as_bytes()).map_err(|e| EtcError::Write {
            id: id.clone(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    add_mounts(&mut mounts, state)?;
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

/// Writes `path` (0644) atomically: the bind mount of a later start must not see half a file.
/// Not synced: every start writes it again from its sources, so a crash loses nothing.
fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    crate::runtime::state::write_replace(path, data)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{ContainerConfig, HostLimits, render};

    #[test]
    fn extra_hosts_syntaxes() {
        let e = |s| parse_extra_host(s).map(|h| format!("{} {}", h.name, h.ip));
        assert_eq!(e("db:10.0.0.2").unwrap(), "db 10.0.0.2");
        assert_eq!(e("db=10.0.0.2").unwrap(), "db 10.0.0.2");
        assert_eq!(e("v6:::1").unwrap(), "v6 ::1");
        assert_eq!(e("v6=::1").unwrap(), "v6 ::1");
        assert_eq!(e("v6:[fd00::1]").unwrap(), "v6 fd00::1");
        assert!(e("nohost").is_err());
        assert!(e(":1.2.3.4").is_err());
        assert!(e("a b:1.2.3.4").is_err());
        assert!(e("db:not-an-ip").is_err());
        assert_eq!(
            e("gw:host-gateway").unwrap_err().to_string(),
            "extra_hosts entry \"gw:host-gateway\": host-gateway is not supported yet"
        );
    }

    #[test]
    fn hosts_file() {
        let etc = settings(
            &[],
            &[],
            &[],
            &["db:10.0.0.2".into(), "v6=fd00::5".into()],
            &["172.18.0.3".parse().unwrap()],
        )
        .unwrap();
        assert_eq!(
            render_hosts("web.example", &etc),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n10.0.0.2\tdb\nfd00::5\tv6\n\
             172.18.0.3\tweb.example web\n"
        );
        let plain = render_hosts("box", &EtcConfig::default());
        assert!(plain.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost"));
        assert!(!plain.contains("box"));
        assert_eq!(render_hostname("box"), "box\n");
    }

    #[test]
    fn resolv_conf_drops_loopback_and_applies_settings() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\n\
                    nameserver ::1\nnameserver fe80::1%eth0\nsearch corp.example\n\
                    options edns0 trust-ad\n";
        assert_eq!(
            render_resolv_conf(host, &EtcConfig::default()),
            "nameserver 10.1.1.1\nsearch corp.example\noptions edns0 trust-ad\n"
        );
        let etc = settings(
            &["1.1.1.1".into(), "2606:4700::1111".into()],
            &["a.example".into(), "b.example".into()],
            &["ndots:2".into()],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            render_resolv_conf(host, &etc),
            "nameserver 1.1.1.1\nnameserver 2606:4700::1111\n\
             search a.example b.example\noptions ndots:2\n"
        );
        // Only a loopback stub: Docker's public resolvers.
        assert_eq!(
            render_resolv_conf("nameserver 127.0.0.53\n", &EtcConfig::default()),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert!(only_loopback("nameserver 127.0.0.53\n"));
        assert!(only_loopback(""));
        assert!(!only_loopback(host));
        let no_search = settings(&[], &[".".into()], &[], &[], &[]).unwrap();
        assert_eq!(
            render_resolv_conf(host, &no_search),
            "nameserver 10.1.1.1\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn invalid_settings() {
        assert!(matches!(
            settings(&["x".into()], &[], &[], &[], &[]),
            Err(EtcError::Dns { .. })
        ));
        assert!(matches!(
            settings(&[], &["a b".into()], &[], &[], &[]),
            Err(EtcError::DnsSearch { .. })
        ));
        assert!(matches!(
            settings(&[], &[], &["a b".into()], &[], &[]),
            Err(EtcError::DnsOpt { .. })
        ));
    }

    #[test]
    fn install_writes_files_and_mounts_before_user_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContainerConfig {
            command: Some(vec!["true".into()]),
            hostname: Some("box".into()),
            extra_hosts: vec!["db:10.0.0.2".into()],
            dns: vec!["9.9.9.9".into()],
            binds: vec![crate::runtime::config::BindMount {
                source: "/srv".into(),
                target: "/etc/resolv.conf".into(),
                read_only: true,
            }],
            ..Default::default()
        };
        let spec = render(&c, &HostLimits::default()).unwrap().spec;
        assert!(from_spec(&spec).unwrap().extra_hosts.len() == 1);
        let spec = install(spec, dir.path()).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("hostname"), "box\n");
        assert!(read("hosts").contains("10.0.0.2\tdb\n"));
        assert_eq!(
            read("resolv.conf").lines().next(),
            Some("nameserver 9.9.9.9")
        );
        let dests: Vec<String> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf"
            ]
        );
        // The user's /etc/resolv.conf mount is kept (last), not doubled.
        let m = &spec.mounts().as_ref().unwrap()[8];
        assert_eq!(m.source().as_deref(), Some(Path::new("/srv")));
        // No hostname: Docker's default, the short id.
        let c = ContainerConfig {
            command: Some(vec!["true".into()]),
            ..Default::default()
        };
        let spec = render(&c, &HostLimits::default()).unwrap().spec;
        let spec = bundle::apply(
            spec,
            &bundle::Extras {
                id: "0123456789abcdef".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let spec = install(spec, dir.path()).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
        assert_eq!(read("hostname"), "0123456789ab\n");
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"HOSTNAME=0123456789ab".to_string()));
    }
}
