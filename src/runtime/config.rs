//! A container's configuration as data: [`ContainerConfig`] (the image config plus the service's
//! overrides) rendered into an OCI runtime spec with Docker's defaults — capability set, masked
//! and read-only paths, mounts, devices, namespaces — and the parsed form of OCI mount options
//! that `runtime::sys` applies. Pure: no I/O, so everything here is unit-tested as values.
//!
//! What the OCI spec cannot say travels as annotations: the image layers that make the overlay
//! root filesystem ([`ANNOTATION_LAYERS`]) and the user as written (names are resolved inside the
//! container, through its `/etc/passwd` and `/etc/group`, at start: [`ANNOTATION_USER`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use oci_spec::runtime::{Capability, Spec};
use serde_json::{Value, json};

/// Annotation: JSON array of the image's layer directories, bottom layer first.
pub const ANNOTATION_LAYERS: &str = "io.flotilla.rootfs.layers";
/// Annotation: the `user` option as written (`name`, `uid`, `name:group`, `uid:gid`).
pub const ANNOTATION_USER: &str = "io.flotilla.user";
/// Annotation: `"true"` when the container runs the built-in init as PID 1.
pub const ANNOTATION_INIT: &str = "io.flotilla.init";
/// `"true"`: the overlay root is mounted with overlayfs's `volatile` option (no sync of the
/// upper filesystem, at unmount either); for containers whose writable layer is discarded
/// with them.
pub const ANNOTATION_VOLATILE: &str = "io.flotilla.rootfs.volatile";
/// `unconfined`: no seccomp filter (`security_opt: seccomp=unconfined`); absent: the default
/// filter ([`crate::runtime::sys::seccomp`]).
pub const ANNOTATION_SECCOMP: &str = "io.flotilla.seccomp";

/// `PATH` when neither the image nor the service sets one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux knows (for `cap_add: [ALL]`).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's masked paths: bind-mounted over with `/dev/null` (files) or a read-only tmpfs (dirs).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Why a container config cannot be rendered. Each variant names the offending value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no command: the image has no entrypoint or cmd and none was given")]
    NoCommand,
    #[error("environment entry {entry:?}: expected KEY=VALUE")]
    InvalidEnv { entry: String },
    #[error("working directory {path:?}: must be an absolute path")]
    RelativeWorkingDir { path: String },
    #[error("mount target {target:?}: must be an absolute path")]
    RelativeMountTarget { target: String },
    #[error("bind mount source {path:?}: must be an absolute path")]
    RelativeBindSource { path: PathBuf },
    #[error("capability {name:?}: unknown")]
    UnknownCapability { name: String },
    #[error(
        "ulimit {name:?}: unknown (core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)"
    )]
    UnknownUlimit { name: String },
    #[error("ulimit {name}: soft limit {soft} is above the hard limit {hard}")]
    UlimitSoftAboveHard { name: String, soft: u64, hard: u64 },
    #[error("sysctl {key:?}: not namespaced, so it cannot be set per container")]
    SysctlNotNamespaced { key: String },
    #[error("sysctl {key:?}: invalid name")]
    InvalidSysctl { key: String },
    #[error("user {user:?}: invalid (expected name, uid, name:group or uid:gid)")]
    InvalidUser { user: String },
    #[error("hostname {hostname:?}: invalid (1 to 64 characters, no '/' or NUL)")]
    InvalidHostname { hostname: String },
    #[error("mount {target:?}: option {option:?}: {reason}")]
    InvalidMountOption {
        target: String,
        option: String,
        reason: String,
    },
    #[error("render the runtime spec: {reason}")]
    Render { reason: String },
    #[error("{0}")]
    Etc(#[from] crate::runtime::etcfiles::EtcError),
}

/// The parts of an image's config that shape the process (OCI image config `config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A `ulimits` entry: `name` as Docker spells it (`nofile`, `nproc`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// A tmpfs mount (`tmpfs:` or a `type: tmpfs` volume).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TmpfsMount {
    pub target: String,
    /// Size in bytes (none: the kernel's default, half of RAM).
    pub size: Option<u64>,
    /// Mode of the tmpfs root (none: 1777 like Docker).
    pub mode: Option<u32>,
}

/// A bind mount (a host path or a named volume's directory) onto `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// Everything the runtime spec is made from: the image's config and the service's overrides.
/// `None` overrides keep the image's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    pub image: ImageConfig,
    /// The image's unpacked layer directories, bottom first (overlayfs lowerdirs).
    pub layers: Vec<PathBuf>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries, applied over the image's.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub init: bool,
    /// `security_opt: seccomp=unconfined`: no default seccomp filter.
    pub seccomp_unconfined: bool,
    pub tty: bool,
    pub ulimits: Vec<Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    pub tmpfs: Vec<TmpfsMount>,
    pub binds: Vec<BindMount>,
    /// Replaces Docker's masked paths when set (an empty list unmasks everything).
    pub masked_paths: Option<Vec<String>>,
    /// Replaces Docker's read-only paths when set.
    pub readonly_paths: Option<Vec<String>>,
    /// A prepared network namespace (bind-mounted file) to join; none: a new, empty one.
    pub netns: Option<PathBuf>,
    /// `dns`, `dns_search`, `dns_opt`, `extra_hosts` (Compose syntax) and the container's own
    /// addresses: `/etc/resolv.conf` and `/etc/hosts` ([`crate::runtime::etcfiles`]).
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub extra_hosts: Vec<String>,
    /// Size in bytes of `/dev/shm` (none: Docker's 64 MiB).
    pub shm_size: Option<u64>,
    pub addresses: Vec<std::net::IpAddr>,
    /// The writable layer is thrown away with the container (`run --rm`): the overlay is
    /// mounted `volatile` ([`ANNOTATION_VOLATILE`]), so its unmount at exit does not sync the
    /// host filesystem.
    pub volatile_rootfs: bool,
}

/// The host's hard resource limits, by Docker's ulimit name. A container's ulimit cannot exceed
/// them: raising a hard limit needs CAP_SYS_RESOURCE, which the runtime may not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLimits {
    pub hard: BTreeMap<String, u64>,
}

/// A rendered runtime spec and the adjustments made on the way (clamped ulimits), to report.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub spec: Spec,
    pub warnings: Vec<String>,
}

/// Docker's ulimit names and their OCI rlimit types.
pub const ULIMITS: [(&str, &str); 15] = [
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// Renders the OCI runtime spec of a container.
pub fn render(config: &ContainerConfig, host: &HostLimits) -> Result<Rendered, ConfigError> {
    let mut warnings = Vec::new();
    let args = process_args(config)?;
    let hostname = match &config.hostname {
        Some(h) => {
            if h.is_empty() || h.len() > 64 || h.contains('/') || h.contains('\0') {
                return Err(ConfigError::InvalidHostname {
                    hostname: h.clone(),
                });
            }
            Some(h.clone())
        }
        None => None,
    };
    let env = process_env(config, hostname.as_deref())?;
    let cwd = config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| config.image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(ConfigError::RelativeWorkingDir { path: cwd });
    }
    let user_text = config
        .user
        .clone()
        .or_else(|| config.image.user.clone())
        .unwrap_or_default();
    let (uid, gid) = numeric_user(&user_text)?;
    let caps = capabilities(&config.cap_add, &config.cap_drop)?;
    let rlimits = rlimits(&config.ulimits, host, &mut warnings)?;
    for key in config.sysctls.keys() {
        check_sysctl(key)?;
    }

    let mut annotations = serde_json::Map::new();
    if !config.layers.is_empty() {
        let layers: Vec<String> = config
            .layers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        annotations.insert(
            ANNOTATION_LAYERS.into(),
            Value::String(json!(layers).to_string()),
        );
    }
    if !user_text.is_empty() {
        annotations.insert(ANNOTATION_USER.into(), Value::String(user_text.clone()));
    }
    if config.init {
        annotations.insert(ANNOTATION_INIT.into(), Value::String("true".into()));
    }
    if config.volatile_rootfs && !config.layers.is_empty() {
        annotations.insert(ANNOTATION_VOLATILE.into(), Value::String("true".into()));
    }
    if config.seccomp_unconfined {
        annotations.insert(
            ANNOTATION_SECCOMP.into(),
            Value::String("unconfined".into()),
        );
    }
    crate::runtime::etcfiles::annotate(config, &mut annotations)?;

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    namespaces.push(match &config.netns {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    });

    let masked = config
        .masked_paths
        .clone()
        .unwrap_or_else(|| DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect());
    let readonly = config.readonly_paths.clone().unwrap_or_else(|| {
        DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });

    let mut process = json!({
        "terminal": config.tty,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "noNewPrivileges": true,
    });
    if !rlimits.is_empty() {
        process["rlimits"] = Value::Array(rlimits);
    }
    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": process,
        "root": {"path": "rootfs", "readonly": config.read_only},
        "mounts": mounts(config)?,
        "linux": {
            "namespaces": namespaces,
            "devices": default_devices(),
            "maskedPaths": masked,
            "readonlyPaths": readonly,
        },
        "annotations": annotations,
    });
    if let Some(h) = hostname {
        spec["hostname"] = Value::String(h);
    }
    if !config.sysctls.is_empty() {
        spec["linux"]["sysctl"] = json!(config.sysctls);
    }
    let spec: Spec = serde_json::from_value(spec).map_err(|e| ConfigError::Render {
        reason: e.to_string(),
    })?;
    Ok(Rendered { spec, warnings })
}

/// Docker's rule: the service's entrypoint replaces the image's and then drops the image's cmd;
/// the service's command replaces the image's cmd.
fn process_args(config: &ContainerConfig) -> Result<Vec<String>, ConfigError> {
    let (entrypoint, cmd) = match &config.entrypoint {
        Some(ep) => (ep.clone(), config.command.clone().unwrap_or_default()),
        None => (
            config.image.entrypoint.clone().unwrap_or_default(),
            config
                .command
                .clone()
                .or_else(|| config.image.cmd.clone())
                .unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(ConfigError::NoCommand);
    }
    Ok(args)
}

/// `PATH` (default) and `HOSTNAME` first, `TERM=xterm` with a tty, then the image's environment
/// and the service's over it, each key once, in first-seen order.
fn process_env(
    config: &ContainerConfig,
    hostname: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |key: &str, value: &str| {
        if !values.contains_key(key) {
            order.push(key.to_string());
        }
        values.insert(key.to_string(), value.to_string());
    };
    set("PATH", DEFAULT_PATH);
    if let Some(h) = hostname {
        set("HOSTNAME", h);
    }
    if config.tty {
        set("TERM", "xterm");
    }
    for entry in config.image.env.iter().chain(&config.env) {
        match entry.split_once('=') {
            Some((k, v)) if !k.is_empty() => set(k, v),
            _ => {
                return Err(ConfigError::InvalidEnv {
                    entry: entry.clone(),
                });
            }
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = values.get(&k).map(String::as_str).unwrap_or_default();
            format!("{k}={v}")
        })
        .collect())
}

/// The numeric uid and gid of a `user` option when it is numeric (names: 0, resolved at start).
fn numeric_user(user: &str) -> Result<(u32, u32), ConfigError> {
    let invalid = || ConfigError::InvalidUser {
        user: user.to_string(),
    };
    if user.contains('\n') || user.contains('\0') {
        return Err(invalid());
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if (user.contains(':') && (u.is_empty() || g.is_some_and(str::is_empty)))
        || g.is_some_and(|g| g.contains(':'))
    {
        return Err(invalid());
    }
    let uid = u.parse::<u32>().unwrap_or(0);
    let gid = g.and_then(|g| g.parse::<u32>().ok()).unwrap_or(0);
    Ok((uid, gid))
}

/// `CAP_NET_ADMIN`, `NET_ADMIN` and `net_admin` all name the same capability.
fn capability_name(name: &str) -> Result<String, ConfigError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if serde_json::from_value::<Capability>(Value::String(full.clone())).is_err() {
        return Err(ConfigError::UnknownCapability {
            name: name.to_string(),
        });
    }
    Ok(full)
}

/// Docker's rules: `drop: [ALL]` starts from nothing, `add: [ALL]` from everything; otherwise
/// the default set plus `add` minus `drop`. Sorted, for stable output.
fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, ConfigError> {
    let is_all = |s: &String| s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("cap_all");
    let add_all = add.iter().any(is_all);
    let drop_all = drop.iter().any(is_all);
    let add: BTreeSet<String> = add
        .iter()
        .filter(|s| !is_all(s))
        .map(|s| capability_name(s))
        .collect::<Result<_, _>>()?;
    let drop: BTreeSet<String> = drop
        .iter()
        .filter(|s| !is_all(s))
        .map(|s| capability_name(s))
        .collect::<Result<_, _>>()?;
    let mut set: BTreeSet<String> = if add_all {
        ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    } else if drop_all {
        BTreeSet::new()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    if !add_all {
        set.extend(add);
    }
    if !drop_all || add_all {
        for d in &drop {
            set.remove(d);
        }
    }
    Ok(set.into_iter().collect())
}

/// The ulimits as OCI rlimits, clamped to the host's hard limits (with a warning for each).
fn rlimits(
    ulimits: &[Ulimit],
    host: &HostLimits,
    warnings: &mut Vec<String>,
) -> Result<Vec<Value>, ConfigError> {
    let mut out = Vec::new();
    for u in ulimits {
        let Some((_, typ)) = ULIMITS.iter().find(|(n, _)| *n == u.name) else {
            return Err(ConfigError::UnknownUlimit {
                name: u.name.clone(),
            });
        };
        if u.soft > u.hard {
            return Err(ConfigError::UlimitSoftAboveHard {
                name: u.name.clone(),
                soft: u.soft,
                hard: u.hard,
            });
        }
        let (mut soft, mut hard) = (u.soft, u.hard);
        if let Some(&max) = host.hard.get(&u.name)
            && hard > max
        {
            warnings.push(format!(
                "ulimit {}: hard limit {} is above the host's hard limit {max}; clamped to {max} \
                 (raising it needs CAP_SYS_RESOURCE)",
                u.name, u.hard
            ));
            hard = max;
            soft = soft.min(max);
        }
        out.push(json!({"type": typ, "hard": hard, "soft": soft}));
    }
    Ok(out)
}

/// Docker's namespaced sysctls: the IPC ones and `net.*` (the container has its own network
/// namespace; host networking is not offered).
fn check_sysctl(key: &str) -> Result<(), ConfigError> {
    let valid = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !valid {
        return Err(ConfigError::InvalidSysctl {
            key: key.to_string(),
        });
    }
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") || key.starts_with("net.") {
        Ok(())
    } else {
        Err(ConfigError::SysctlNotNamespaced {
            key: key.to_string(),
        })
    }
}

fn check_target(target: &str) -> Result<(), ConfigError> {
    if !target.starts_with('/') {
        return Err(ConfigError::RelativeMountTarget {
            target: target.to_string(),
        });
    }
    Ok(())
}

/// Docker's default mounts, then tmpfs mounts, then bind mounts.
fn mounts(config: &ContainerConfig) -> Result<Vec<Value>, ConfigError> {
    let mut out = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777",
                           format!("size={}", config.shm_size.unwrap_or(64 << 20))]}),
    ];
    for t in &config.tmpfs {
        check_target(&t.target)?;
        let mut options = vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "noexec".to_string(),
        ];
        options.push(format!("mode={:o}", t.mode.unwrap_or(0o1777)));
        if let Some(size) = t.size {
            options.push(format!("size={size}"));
        }
        out.push(
            json!({"destination": t.target, "type": "tmpfs", "source": "tmpfs",
                        "options": options}),
        );
    }
    for b in &config.binds {
        check_target(&b.target)?;
        if !b.source.is_absolute() {
            return Err(ConfigError::RelativeBindSource {
                path: b.source.clone(),
            });
        }
        let access = if b.read_only { "ro" } else { "rw" };
        out.push(
            json!({"destination": b.target, "type": "bind", "source": b.source,
                        "options": ["rbind", access, "rprivate"]}),
        );
    }
    Ok(out)
}

/// Docker's default devices (character devices, mode 0666, owned by root).
fn default_devices() -> Vec<Value> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .iter()
    .map(|(path, major, minor)| {
        json!({"path": path, "type": "c", "major": major, "minor": minor,
               "fileMode": 0o666, "uid": 0, "gid": 0})
    })
    .collect()
}

// --- mount options -------------------------------------------------------------------------

/// How access times are updated on a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atime {
    Relatime,
    Noatime,
    Strictatime,
}

/// Mount propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Private,
    Slave,
    Shared,
    Unbindable,
}

/// The per-mount attributes an OCI option list asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttrs {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub nodiratime: bool,
    pub atime: Option<Atime>,
}

/// An OCI mount's option list, parsed: a bind or a filesystem mount, its attributes, its
/// propagation and the filesystem's own options (`mode=755`, `newinstance`, …) in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub bind: bool,
    pub recursive: bool,
    pub attrs: MountAttrs,
    /// Propagation and whether it applies recursively.
    pub propagation: Option<(Propagation, bool)>,
    pub data: Vec<(String, Option<String>)>,
}

/// Parses an OCI mount's options. `typ` `bind` (or a `bind`/`rbind` option) makes a bind mount,
/// which takes no filesystem options.
pub fn parse_mount_options(
    target: &str,
    typ: Option<&str>,
    options: &[String],
) -> Result<MountOptions, ConfigError> {
    let mut out = MountOptions {
        bind: typ == Some("bind"),
        ..MountOptions::default()
    };
    for option in options {
        let a = &mut out.attrs;
        match option.as_str() {
            "bind" => out.bind = true,
            "rbind" => {
                out.bind = true;
                out.recursive = true;
            }
            "ro" => a.read_only = true,
            "rw" => a.read_only = false,
            "nosuid" => a.nosuid = true,
            "suid" => a.nosuid = false,
            "nodev" => a.nodev = true,
            "dev" => a.nodev = false,
            "noexec" => a.noexec = true,
            "exec" => a.noexec = false,
            "nodiratime" => a.nodiratime = true,
            "diratime" => a.nodiratime = false,
            "relatime" => a.atime = Some(Atime::Relatime),
            "noatime" => a.atime = Some(Atime::Noatime),
            "strictatime" => a.atime = Some(Atime::Strictatime),
            "norelatime" | "atime" => a.atime = Some(Atime::Strictatime),
            "defaults" => {}
            p @ ("private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared"
            | "unbindable" | "runbindable") => {
                let recursive = p.starts_with('r');
                let kind = match p.trim_start_matches('r') {
                    "private" => Propagation::Private,
                    "slave" => Propagation::Slave,
                    "shared" => Propagation::Shared,
                    _ => Propagation::Unbindable,
                };
                out.propagation = Some((kind, recursive));
            }
            other => {
                if other.is_empty() || other.contains(',') || other.contains('\0') {
                    return Err(ConfigError::InvalidMountOption {
                        target: target.to_string(),
                        option: other.to_string(),
                        reason: "empty or contains ',' or NUL".into(),
                    });
                }
                match other.split_once('=') {
                    Some((k, v)) => out.data.push((k.to_string(), Some(v.to_string()))),
                    None => out.data.push((other.to_string(), None)),
                }
            }
        }
    }
    if out.bind
        && let Some((k, _)) = out.data.first()
    {
        return Err(ConfigError::InvalidMountOption {
            target: target.to_string(),
            option: k.clone(),
            reason: "a bind mount takes no filesystem options".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceType;

    fn busybox() -> ContainerConfig {
        ContainerConfig {
            image: ImageConfig {
                env: vec!["PATH=/bin:/usr/bin".into(), "LANG=C".into()],
                cmd: Some(vec!["sh".into()]),
                ..ImageConfig::default()
            },
            layers: vec!["/l/0".into(), "/l/1".into()],
            ..ContainerConfig::default()
        }
    }

    fn spec_json(config: &ContainerConfig) -> Value {
        let r = render(config, &HostLimits::default()).unwrap();
        serde_json::to_value(&r.spec).unwrap()
    }

    fn sorted(v: &Value) -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn defaults_are_dockers() {
        let s = spec_json(&busybox());
        assert_eq!(s["process"]["args"], json!(["sh"]));
        assert_eq!(s["process"]["env"], json!(["PATH=/bin:/usr/bin", "LANG=C"]));
        assert_eq!(s["process"]["cwd"], json!("/"));
        assert_eq!(s["process"]["user"], json!({"uid": 0, "gid": 0}));
        assert_eq!(s["process"]["noNewPrivileges"], json!(true));
        assert_eq!(s["process"]["terminal"], json!(false));
        assert!(s["process"].get("rlimits").is_none());
        let mut defaults: Vec<String> =
            DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        defaults.sort();
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(
                sorted(&s["process"]["capabilities"][set]),
                defaults,
                "{set}"
            );
        }
        assert!(s["process"]["capabilities"].get("ambient").is_none());
        assert!(s["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(s["root"], json!({"path": "rootfs", "readonly": false}));
        assert!(s.get("hostname").is_none());
        assert_eq!(
            s["annotations"][ANNOTATION_LAYERS],
            json!(r#"["/l/0","/l/1"]"#)
        );
        assert!(s["annotations"].get(ANNOTATION_USER).is_none());
        assert_eq!(s["linux"]["maskedPaths"], json!(DEFAULT_MASKED_PATHS));
        assert_eq!(s["linux"]["readonlyPaths"], json!(DEFAULT_READONLY_PATHS));
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount", "uts", "ipc", "cgroup", "network"]);
        assert!(s["linux"]["namespaces"][5].get("path").is_none());
        let devices: Vec<String> = s["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}:{} {:o}",
                    d["path"].as_str().unwrap(),
                    d["type"].as_str().unwrap(),
                    d["major"],
                    d["minor"],
                    d["fileMode"].as_u64().unwrap()
                )
            })
            .collect();
        assert_eq!(
            devices,
            [
                "/dev/null c 1:3 666",
                "/dev/zero c 1:5 666",
                "/dev/full c 1:7 666",
                "/dev/random c 1:8 666",
                "/dev/urandom c 1:9 666",
                "/dev/tty c 5:0 666"
            ]
        );
        assert!(s["linux"].get("resources").is_none());
        assert!(s["linux"].get("seccomp").is_none());
    }

    #[test]
    fn default_mounts() {
        let s = spec_json(&busybox());
        let mounts: Vec<String> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{} {} {} {}",
                    m["destination"].as_str().unwrap(),
                    m["type"].as_str().unwrap(),
                    m["source"].as_str().unwrap(),
                    sorted(&m["options"]).join(",")
                )
            })
            .collect();
        assert_eq!(
            mounts,
            [
                "/proc proc proc nodev,noexec,nosuid",
                "/dev tmpfs tmpfs mode=755,nosuid,size=65536k,strictatime",
                "/dev/pts devpts devpts gid=5,mode=0620,newinstance,noexec,nosuid,ptmxmode=0666",
                "/sys sysfs sysfs nodev,noexec,nosuid,ro",
                "/dev/mqueue mqueue mqueue nodev,noexec,nosuid",
                "/dev/shm tmpfs shm mode=1777,nodev,noexec,nosuid,size=67108864",
            ]
        );
    }

    #[test]
    fn overrides() {
        let mut c = busybox();
        c.image.entrypoint = Some(vec!["/entry".into()]);
        c.image.working_dir = Some("/srv".into());
        c.image.user = Some("daemon".into());
        c.command = Some(vec!["run".into(), "x".into()]);
        c.env = vec!["LANG=fr".into(), "EXTRA=a=b".into()];
        c.working_dir = Some("/work".into());
        c.user = Some("1000:1001".into());
        c.hostname = Some("box".into());
        c.read_only = true;
        c.tty = true;
        c.init = true;
        c.netns = Some("/run/netns/flt1".into());
        c.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        c.tmpfs = vec![TmpfsMount {
            target: "/tmp".into(),
            size: Some(1 << 20),
            mode: None,
        }];
        c.binds = vec![BindMount {
            source: "/host/data".into(),
            target: "/data".into(),
            read_only: true,
        }];
        c.masked_paths = Some(vec![]);
        let s = spec_json(&c);
        assert_eq!(s["process"]["args"], json!(["/entry", "run", "x"]));
        assert_eq!(
            s["process"]["env"],
            json!([
                "PATH=/bin:/usr/bin",
                "HOSTNAME=box",
                "TERM=xterm",
                "LANG=fr",
                "EXTRA=a=b"
            ])
        );
        assert_eq!(s["process"]["cwd"], json!("/work"));
        assert_eq!(s["process"]["user"], json!({"uid": 1000, "gid": 1001}));
        assert_eq!(s["process"]["terminal"], json!(true));
        assert_eq!(s["annotations"][ANNOTATION_USER], json!("1000:1001"));
        assert_eq!(s["annotations"][ANNOTATION_INIT], json!("true"));
        assert_eq!(s["hostname"], json!("box"));
        assert_eq!(s["root"]["readonly"], json!(true));
        assert_eq!(
            s["linux"]["namespaces"][5],
            json!({"type": "network", "path": "/run/netns/flt1"})
        );
        assert_eq!(s["linux"]["sysctl"], json!({"net.ipv4.ip_forward": "1"}));
        assert_eq!(s["linux"]["maskedPaths"], json!([]));
        let mounts = s["mounts"].as_array().unwrap();
        assert_eq!(
            mounts[6],
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=1048576"]})
        );
        assert_eq!(
            mounts[7],
            json!({"destination": "/data", "type": "bind", "source": "/host/data",
                   "options": ["rbind", "ro", "rprivate"]})
        );
        let spec = render(&c, &HostLimits::default()).unwrap().spec;
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert_eq!(ns[5].typ(), LinuxNamespaceType::Network);
    }

    #[test]
    fn entrypoint_override_drops_image_cmd() {
        let mut c = busybox();
        c.image.entrypoint = Some(vec!["/docker-entrypoint.sh".into()]);
        c.image.cmd = Some(vec!["nginx".into()]);
        c.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        assert_eq!(spec_json(&c)["process"]["args"], json!(["/bin/sh", "-c"]));
        c.entrypoint = None;
        assert_eq!(
            spec_json(&c)["process"]["args"],
            json!(["/docker-entrypoint.sh", "nginx"])
        );
        c.image.entrypoint = None;
        c.image.cmd = None;
        assert_eq!(
            render(&c, &HostLimits::default()).unwrap_err(),
            ConfigError::NoCommand
        );
    }

    #[test]
    fn default_path_when_missing() {
        let mut c = busybox();
        c.image.env = vec![];
        assert_eq!(
            spec_json(&c)["process"]["env"],
            json!([format!("PATH={DEFAULT_PATH}")])
        );
        c.env = vec!["NOVALUE".into()];
        assert!(matches!(
            render(&c, &HostLimits::default()),
            Err(ConfigError::InvalidEnv { .. })
        ));
    }

    #[test]
    fn capability_rules() {
        let caps = |add: &[&str], drop: &[&str]| {
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            capabilities(&s(add), &s(drop))
        };
        let with = caps(&["net_admin", "CAP_SYS_PTRACE"], &["MKNOD", "cap_kill"]).unwrap();
        assert!(with.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(with.contains(&"CAP_SYS_PTRACE".to_string()));
        assert!(!with.contains(&"CAP_MKNOD".to_string()));
        assert!(!with.contains(&"CAP_KILL".to_string()));
        assert_eq!(with.len(), 14);
        assert_eq!(caps(&["CHOWN"], &["ALL"]).unwrap(), ["CAP_CHOWN"]);
        assert_eq!(caps(&["ALL"], &["SYS_ADMIN"]).unwrap().len(), 40);
        assert_eq!(caps(&[], &["all"]).unwrap(), Vec::<String>::new());
        assert_eq!(
            caps(&["BOGUS"], &[]).unwrap_err(),
            ConfigError::UnknownCapability {
                name: "BOGUS".into()
            }
        );
        for name in ALL_CAPABILITIES {
            assert!(capability_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn ulimits_are_clamped_to_the_host() {
        let mut c = busybox();
        c.ulimits = vec![
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 65536,
            },
            Ulimit {
                name: "nproc".into(),
                soft: 50000,
                hard: 50000,
            },
            Ulimit {
                name: "core".into(),
                soft: 0,
                hard: 0,
            },
        ];
        let host = HostLimits {
            hard: [("nofile".to_string(), 20000), ("nproc".to_string(), 32768)].into(),
        };
        let r = render(&c, &host).unwrap();
        let s = serde_json::to_value(&r.spec).unwrap();
        assert_eq!(
            s["process"]["rlimits"],
            json!([
                {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 1024},
                {"type": "RLIMIT_NPROC", "hard": 32768, "soft": 32768},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ])
        );
        assert_eq!(r.warnings.len(), 2);
        assert!(r.warnings[0].starts_with("ulimit nofile: hard limit 65536 is above"));
        c.ulimits = vec![Ulimit {
            name: "files".into(),
            soft: 1,
            hard: 1,
        }];
        assert!(matches!(
            render(&c, &host),
            Err(ConfigError::UnknownUlimit { .. })
        ));
        c.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 2,
            hard: 1,
        }];
        assert!(matches!(
            render(&c, &host),
            Err(ConfigError::UlimitSoftAboveHard { .. })
        ));
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        let mut c = busybox();
        c.sysctls.insert("kernel.shmmax".into(), "1".into());
        c.sysctls.insert("fs.mqueue.msg_max".into(), "1".into());
        assert!(render(&c, &HostLimits::default()).is_ok());
        c.sysctls.insert("kernel.hostname".into(), "x".into());
        assert!(matches!(
            render(&c, &HostLimits::default()),
            Err(ConfigError::SysctlNotNamespaced { .. })
        ));
        c.sysctls.clear();
        c.sysctls.insert("net.ipv4/../../x".into(), "1".into());
        assert!(matches!(
            render(&c, &HostLimits::default()),
            Err(ConfigError::InvalidSysctl { .. })
        ));
    }

    #[test]
    fn users() {
        assert_eq!(numeric_user(""), Ok((0, 0)));
        assert_eq!(numeric_user("1000"), Ok((1000, 0)));
        assert_eq!(numeric_user("1000:1000"), Ok((1000, 1000)));
        assert_eq!(numeric_user("nobody"), Ok((0, 0)));
        for bad in [":1", "1:", "a:b:c", "a\nb"] {
            assert!(numeric_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_paths() {
        let mut c = busybox();
        c.working_dir = Some("rel".into());
        assert!(matches!(
            render(&c, &HostLimits::default()),
            Err(ConfigError::RelativeWorkingDir { .. })
        ));
        let mut c = busybox();
        c.binds = vec![BindMount {
            source: "rel".into(),
            target: "/x".into(),
            read_only: false,
        }];
        assert!(matches!(
            render(&c, &HostLimits::default()),
            Err(ConfigError::RelativeBindSource { .. })
        ));
        c.binds[0].source = "/abs".into();
        c.binds[0].target = "x".into();
        assert!(matches!(
            render(&c, &HostLimits::default()),
            Err(ConfigError::RelativeMountTarget { .. })
        ));
        let mut c = busybox();
        c.hostname = Some("a/b".into());
        assert!(matches!(
            render(&c, &HostLimits::default()),
            Err(ConfigError::InvalidHostname { .. })
        ));
    }

    #[test]
    fn mount_options() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let o = parse_mount_options(
            "/dev/pts",
            Some("devpts"),
            &s(&["nosuid", "noexec", "newinstance", "ptmxmode=0666"]),
        )
        .unwrap();
        assert!(!o.bind);
        assert_eq!(
            o.attrs,
            MountAttrs {
                nosuid: true,
                noexec: true,
                ..MountAttrs::default()
            }
        );
        assert_eq!(
            o.data,
            [
                ("newinstance".to_string(), None),
                ("ptmxmode".to_string(), Some("0666".to_string()))
            ]
        );
        let o = parse_mount_options("/d", Some("bind"), &s(&["rbind", "ro", "rprivate"])).unwrap();
        assert!(o.bind && o.recursive && o.attrs.read_only);
        assert_eq!(o.propagation, Some((Propagation::Private, true)));
        let o = parse_mount_options("/d", None, &s(&["bind", "strictatime", "rw"])).unwrap();
        assert!(o.bind && !o.recursive && !o.attrs.read_only);
        assert_eq!(o.attrs.atime, Some(Atime::Strictatime));
        assert!(parse_mount_options("/d", Some("bind"), &s(&["size=1"])).is_err());
        assert!(parse_mount_options("/d", Some("tmpfs"), &s(&["a,b"])).is_err());
    }
}
