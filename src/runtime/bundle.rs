//! What the lifecycle adds to a container's bundle (`config.json`, an OCI runtime spec) for its
//! shim to read: flotilla's annotations (container id, cgroup prefix, log rotation, open stdin)
//! and the resource limits in `linux.resources`, converted to and from the cgroup module's
//! [`Limits`]. Pure: values in, values out.

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::runtime::logs::{DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE};
use crate::runtime::sys::cgroup::{Limits, prefix_dir};

/// Annotation: the container's id.
pub const ANNOTATION_ID: &str = "io.flotilla.container.id";
/// Annotation: the per-daemon cgroup prefix; the cgroup is `flotilla-<prefix>/<id>`.
pub const ANNOTATION_CGROUP_PREFIX: &str = "io.flotilla.cgroup.prefix";
/// Annotation: the size of one log file in bytes before it rotates.
pub const ANNOTATION_LOG_MAX_SIZE: &str = "log.max_size";
/// Annotation: how many log files are kept, the current one included.
pub const ANNOTATION_LOG_MAX_FILES: &str = "log.max_files";
/// Annotation: `"true"` when the container's stdin is a pipe the shim holds open (`-i`).
pub const ANNOTATION_OPEN_STDIN: &str = "io.flotilla.stdin";

/// Why a bundle annotation or resource could not be set.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("annotation {key}: {reason}")]
    Annotation { key: String, reason: String },
    #[error("resources: {reason}")]
    Resources { reason: String },
}

/// Log rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// What the lifecycle writes into a bundle beyond the rendered spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    pub id: String,
    /// None: the shim creates no cgroup.
    pub cgroup_prefix: Option<String>,
    pub log: LogConfig,
    pub open_stdin: bool,
    pub limits: Limits,
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a String> {
    spec.annotations().as_ref().and_then(|a| a.get(key))
}

/// The container id of a bundle.
pub fn id(spec: &Spec) -> Option<String> {
    annotation(spec, ANNOTATION_ID).cloned()
}

/// `flotilla-<prefix>/<id>` when the bundle names both.
pub fn cgroup_path(spec: &Spec) -> Option<String> {
    let prefix = annotation(spec, ANNOTATION_CGROUP_PREFIX)?;
    let id = annotation(spec, ANNOTATION_ID)?;
    Some(format!("{}/{id}", prefix_dir(prefix)))
}

/// Log rotation of a bundle (defaults for a missing or invalid annotation).
pub fn log_config(spec: &Spec) -> LogConfig {
    let d = LogConfig::default();
    LogConfig {
        max_size: annotation(spec, ANNOTATION_LOG_MAX_SIZE)
            .and_then(|v| v.parse().ok())
            .filter(|v| *v > 0)
            .unwrap_or(d.max_size),
        max_files: annotation(spec, ANNOTATION_LOG_MAX_FILES)
            .and_then(|v| v.parse().ok())
            .filter(|v| *v > 0)
            .unwrap_or(d.max_files),
    }
}

/// Whether the bundle asks for an open stdin.
pub fn open_stdin(spec: &Spec) -> bool {
    annotation(spec, ANNOTATION_OPEN_STDIN).is_some_and(|v| v == "true")
}

/// Whether the process runs on a terminal.
pub fn terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// The cgroup limits of a bundle's `linux.resources`.
pub fn limits(spec: &Spec) -> Limits {
    let mut l = Limits::default();
    let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else {
        return l;
    };
    if let Some(m) = r.memory() {
        l.memory = m.limit();
        l.memory_reservation = m.reservation();
        l.memory_swap = m.swap();
    }
    if let Some(c) = r.cpu() {
        l.cpu_quota = c.quota();
        l.cpu_period = c.period();
        l.cpu_shares = c.shares();
        l.cpuset_cpus = c.cpus().clone();
        l.cpuset_mems = c.mems().clone();
    }
    if let Some(p) = r.pids() {
        l.pids_limit = Some(p.limit());
    }
    l
}

/// `linux.resources` for `limits` (OCI's shape).
fn resources(limits: &Limits) -> Value {
    let mut r = serde_json::Map::new();
    let mut memory = serde_json::Map::new();
    for (key, value) in [
        ("limit", limits.memory),
        ("reservation", limits.memory_reservation),
        ("swap", limits.memory_swap),
    ] {
        if let Some(v) = value {
            memory.insert(key.into(), json!(v));
        }
    }
    if !memory.is_empty() {
        r.insert("memory".into(), Value::Object(memory));
    }
    let mut cpu = serde_json::Map::new();
    if let Some(v) = limits.cpu_quota {
        cpu.insert("quota".into(), json!(v));
    }
    if let Some(v) = limits.cpu_period {
        cpu.insert("period".into(), json!(v));
    }
    if let Some(v) = limits.cpu_shares {
        cpu.insert("shares".into(), json!(v));
    }
    if let Some(v) = &limits.cpuset_cpus {
        cpu.insert("cpus".into(), json!(v));
    }
    if let Some(v) = &limits.cpuset_mems {
        cpu.insert("mems".into(), json!(v));
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(v) = limits.pids_limit {
        r.insert("pids".into(), json!({"limit": v}));
    }
    Value::Object(r)
}

/// Adds `extras` to `spec`.
pub fn apply(spec: Spec, extras: &Extras) -> Result<Spec, BundleError> {
    let mut value = serde_json::to_value(&spec).map_err(|e| BundleError::Resources {
        reason: e.to_string(),
    })?;
    let mut annotations = vec![
        (ANNOTATION_ID, extras.id.clone()),
        (ANNOTATION_LOG_MAX_SIZE, extras.log.max_size.to_string()),
        (ANNOTATION_LOG_MAX_FILES, extras.log.max_files.to_string()),
    ];
    if let Some(prefix) = &extras.cgroup_prefix {
        annotations.push((ANNOTATION_CGROUP_PREFIX, prefix.clone()));
    }
    if extras.open_stdin {
        annotations.push((ANNOTATION_OPEN_STDIN, "true".into()));
    }
    let map = value
        .as_object_mut()
        .ok_or_else(|| BundleError::Resources {
            reason: "the spec is not an object".into(),
        })?;
    let a = map
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    for (key, v) in annotations {
        a.as_object_mut()
            .ok_or_else(|| BundleError::Annotation {
                key: key.into(),
                reason: "annotations is not an object".into(),
            })?
            .insert(key.into(), Value::String(v));
    }
    let resources = resources(&extras.limits);
    if resources.as_object().is_some_and(|r| !r.is_empty()) {
        let linux = map
            .entry("linux")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(linux) = linux.as_object_mut() {
            linux.insert("resources".into(), resources);
        }
    }
    serde_json::from_value(value).map_err(|e| BundleError::Resources {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{ContainerConfig, HostLimits, render};

    fn spec() -> Spec {
        let c = ContainerConfig {
            command: Some(vec!["true".into()]),
            ..Default::default()
        };
        render(&c, &HostLimits::default()).unwrap().spec
    }

    #[test]
    fn extras_round_trip_through_the_spec() {
        let limits = Limits {
            memory: Some(32 << 20),
            memory_swap: Some(32 << 20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(64),
            ..Default::default()
        };
        let extras = Extras {
            id: "abc".into(),
            cgroup_prefix: Some("t1".into()),
            log: LogConfig {
                max_size: 1000,
                max_files: 2,
            },
            open_stdin: true,
            limits: limits.clone(),
        };
        let s = apply(spec(), &extras).unwrap();
        assert_eq!(id(&s).as_deref(), Some("abc"));
        assert_eq!(cgroup_path(&s).as_deref(), Some("flotilla-t1/abc"));
        assert_eq!(log_config(&s), extras.log);
        assert!(open_stdin(&s));
        assert!(!terminal(&s));
        assert_eq!(super::limits(&s), limits);
        let text = serde_json::to_value(&s).unwrap();
        assert_eq!(text["annotations"]["log.max_size"], "1000");
        assert_eq!(text["linux"]["resources"]["memory"]["limit"], 32 << 20);
    }

    #[test]
    fn defaults_without_extras() {
        let s = spec();
        assert_eq!(cgroup_path(&s), None);
        assert_eq!(log_config(&s), LogConfig::default());
        assert!(!open_stdin(&s));
        assert_eq!(limits(&s), Limits::default());
        let plain = apply(
            s,
            &Extras {
                id: "x".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            plain
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .is_none()
        );
    }
}
