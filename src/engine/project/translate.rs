//! A compose service → what the runtime creates (pure): the container's name, its
//! [`ContainerConfig`] and cgroup [`Limits`], its labels, and the effects the engine still has
//! to carry out before the runtime can create it — host paths of bind mounts, the named and
//! anonymous volumes to mount (and fill by copy-up), and its network wiring. Everything the
//! runtime cannot honour yet is an error naming `services.<name>.<field>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value as J;

use super::ProjectError;
use super::labels;
use crate::image::record::ImageRecord;
use crate::runtime::bundle::LogConfig;
use crate::runtime::config::{BindMount, ContainerConfig, ImageConfig, TmpfsMount, Ulimit};
use crate::runtime::lifecycle::CreateOptions;
use crate::runtime::sys::cgroup::Limits;
use crate::spec::model;
use crate::spec::units;

/// What a service container is made from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub project: &'a model::Project,
    pub service: &'a str,
    /// The container number (1-based).
    pub replica: u32,
    /// The image reference the container is created from (recorded in its meta).
    pub image_ref: &'a str,
    /// The resolved image record.
    pub image: &'a ImageRecord,
    /// The planner's configuration hash (`com.docker.compose.config-hash`).
    pub config_hash: Option<&'a str>,
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBind {
    pub source: PathBuf,
    /// Create the directory when it is missing (Compose's short syntax, `create_host_path`).
    pub create: bool,
    /// Where in the service's `volumes` list it comes from (`volumes[2]`).
    pub field: String,
}

/// A volume to mount: a named one of the project, or an anonymous one to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUse {
    /// The volume's real name (`<project>_<key>` or `name:`); none: a new anonymous volume.
    pub name: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// Skip the copy-up of the image's content (`volume.nocopy`).
    pub nocopy: bool,
    /// Mount only this directory of the volume (`volume.subpath`).
    pub subpath: Option<String>,
    /// Where it comes from (`volumes[1]`, or `image volume /data`).
    pub field: String,
}

/// Where a secret's or config's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A host file (`file:`).
    Path(PathBuf),
    /// The value itself (`content:`, or `environment:` resolved by the client).
    Content(String),
}

/// A secret or config mounted read-only at `target` as a single file.
#[derive(Clone, PartialEq, Eq)]
pub struct FileMount {
    pub source: FileSource,
    pub target: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    /// Where it comes from (`secrets[0]`).
    pub field: String,
}

impl std::fmt::Debug for FileMount {
    // Never prints a secret's content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            FileSource::Path(p) => p.display().to_string(),
            FileSource::Content(_) => "<content>".into(),
        };
        f.debug_struct("FileMount")
            .field("source", &source)
            .field("target", &self.target)
            .field("field", &self.field)
            .finish()
    }
}

impl FileMount {
    /// A host file mounted as it is (no ownership or mode asked): bound directly, like Compose.
    pub fn is_plain_bind(&self) -> bool {
        matches!(self.source, FileSource::Path(_))
            && self.uid.is_none()
            && self.gid.is_none()
            && self.mode.is_none()
    }
}

/// The mounts of another container to share (`volumes_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesFrom {
    /// The first container of this service of the project, or a container by name or id.
    pub source: VolumesFromSource,
    /// `:ro` (else each mount keeps its own access).
    pub read_only: bool,
    /// Where it comes from (`volumes_from[0]`).
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumesFromSource {
    Service(String),
    Container(String),
}

/// One network the container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The key in the stack file's `networks:`.
    pub key: String,
    /// The network's real name.
    pub name: String,
    /// Names the embedded DNS answers for this container on this network.
    pub aliases: Vec<String>,
    pub ipv4: Option<std::net::Ipv4Addr>,
}

/// How the container is networked (`networks:` or `network_mode:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPlan {
    /// Its own namespace joined to these networks (in order: the first is `eth0`).
    Bridge(Vec<Attachment>),
    /// Its own namespace with only `lo`.
    None,
    /// The host's network namespace.
    Host,
    /// The namespace of the service's (first) container.
    Service(String),
    /// The namespace of this container (name or id).
    Container(String),
}

/// A translated service container.
#[derive(Debug, Clone)]
pub struct Translated {
    pub name: String,
    /// Create options: image, config (without network namespace, addresses and volume binds,
    /// which the engine adds), limits, labels, stop signal and timeout.
    pub options: CreateOptions,
    pub host_binds: Vec<HostBind>,
    pub volumes: Vec<VolumeUse>,
    /// Secrets and configs.
    pub files: Vec<FileMount>,
    pub volumes_from: Vec<VolumesFrom>,
    pub network: NetworkPlan,
}

/// Keys of a service's untyped fields that are handled elsewhere or are harmless here.
const IGNORED_EXTRA: &[&str] = &[
    "annotations",
    "attach",
    "env_file",
    "extends",
    "label_file",
    "links",
    "external_links",
    "runtime",
];

/// The container name of replica `replica` (`container_name` or `<project>-<service>-<n>`).
pub fn container_name(project: &str, service: &str, svc: &model::Service, replica: u32) -> String {
    match &svc.container_name {
        Some(n) => n.clone(),
        None => format!("{project}-{service}-{replica}"),
    }
}

/// The real name of the project's network `key`.
pub fn network_name(project: &model::Project, key: &str) -> String {
    match project.networks.get(key) {
        Some(n) => network_name_of(&project.name, key, n),
        None => format!("{}_{key}", project.name),
    }
}

/// The real name of a network definition: `name:`, else the key for an external network,
/// else `<project>_<key>`.
pub fn network_name_of(project: &str, key: &str, net: &model::Network) -> String {
    match &net.name {
        Some(n) => n.clone(),
        None if net.external => key.to_string(),
        None => format!("{project}_{key}"),
    }
}

/// The real name of a volume definition: `name:`, else the key for an external volume, else
/// `<project>_<key>`.
pub fn volume_name_of(project: &str, key: &str, vol: &model::Volume) -> String {
    match &vol.name {
        Some(n) => n.clone(),
        None if vol.external => key.to_string(),
        None => format!("{project}_{key}"),
    }
}

fn strings(v: Option<&J>) -> Vec<String> {
    match v {
        Some(J::String(s)) => vec![s.clone()],
        Some(J::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn is_unset(v: &J) -> bool {
    match v {
        J::Null => true,
        J::Bool(b) => !b,
        J::Array(a) => a.is_empty(),
        J::Object(o) => o.is_empty(),
        J::String(s) => s.is_empty(),
        J::Number(_) => false,
    }
}

/// Translates one service replica. Pure.
pub fn translate(input: Input<'_>) -> Result<Translated, ProjectError> {
    let project = input.project;
    let sname = input.service;
    let svc = project
        .services
        .get(sname)
        .ok_or_else(|| ProjectError::NoSuchService {
            service: sname.to_string(),
        })?;
    let field = |f: &str, reason: String| ProjectError::Field {
        service: sname.to_string(),
        field: f.to_string(),
        reason,
    };
    let unsupported = |f: &str| field(f, "not supported yet".to_string());

    if svc.container_name.is_some() && input.replica > 1 {
        return Err(field(
            "container_name",
            format!(
                "a fixed container name cannot be used by replica {} (only one replica can have it)",
                input.replica
            ),
        ));
    }
    // Fields the runtime cannot honour yet.
    if svc.privileged == Some(true) {
        return Err(unsupported("privileged"));
    }
    if svc.shm_size.is_some_and(|s| s != 64 << 20) {
        return Err(field(
            "shm_size",
            "not supported yet (/dev/shm is always 64 MiB)".into(),
        ));
    }
    for (key, value) in &svc.extra {
        match key.as_str() {
            "dns" | "dns_search" | "dns_opt" | "extra_hosts" | "security_opt" | "logging" => {}
            k if IGNORED_EXTRA.contains(&k) => {}
            "ipc" | "pid" | "uts" | "cgroup" if is_unset(value) => {}
            "ipc" if matches!(value.as_str(), Some("private" | "shareable")) => {}
            "cgroup" if value.as_str() == Some("private") => {}
            _ if is_unset(value) => {}
            k => return Err(unsupported(k)),
        }
    }

    let name = container_name(&project.name, sname, svc, input.replica);
    let c = &input.image.config;
    let image_config = ImageConfig {
        env: c.env.clone().unwrap_or_default(),
        cmd: c.cmd.clone(),
        entrypoint: c.entrypoint.clone(),
        working_dir: c.working_dir.clone(),
        user: c.user.clone(),
    };

    let mut config = ContainerConfig {
        image: image_config,
        command: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        env: svc
            .environment
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
        working_dir: svc.working_dir.clone().filter(|w| !w.is_empty()),
        user: svc.user.clone().filter(|u| !u.is_empty()),
        hostname: svc.hostname.clone().filter(|h| !h.is_empty()),
        read_only: svc.read_only.unwrap_or(false),
        cap_add: svc.cap_add.clone(),
        cap_drop: svc.cap_drop.clone(),
        init: svc.init.unwrap_or(false),
        tty: svc.tty.unwrap_or(false),
        ..Default::default()
    };
    if let Some(w) = &config.working_dir
        && !w.starts_with('/')
    {
        return Err(field(
            "working_dir",
            format!("{w:?} must be an absolute path"),
        ));
    }
    for (n, u) in &svc.ulimits {
        let conv = |v: i64, which: &str| -> Result<u64, ProjectError> {
            match v {
                -1 => Ok(u64::MAX),
                v if v >= 0 => Ok(v as u64),
                v => Err(field(
                    &format!("ulimits.{n}.{which}"),
                    format!("{v} is negative"),
                )),
            }
        };
        config.ulimits.push(Ulimit {
            name: n.clone(),
            soft: conv(u.soft, "soft")?,
            hard: conv(u.hard, "hard")?,
        });
    }
    for (k, v) in &svc.sysctls {
        config
            .sysctls
            .insert(k.clone(), v.clone().unwrap_or_default());
    }

    // security_opt
    for (i, opt) in strings(svc.extra.get("security_opt")).iter().enumerate() {
        let (k, v) = opt
            .split_once(['=', ':'])
            .map(|(k, v)| (k, Some(v)))
            .unwrap_or((opt.as_str(), None));
        match (k, v) {
            ("seccomp", Some("unconfined")) => config.seccomp_unconfined = true,
            // Always on in flotilla.
            ("no-new-privileges", None | Some("true")) => {}
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            _ => {
                return Err(field(
                    &format!("security_opt[{i}]"),
                    format!("{opt:?} is not supported yet (seccomp=unconfined, no-new-privileges)"),
                ));
            }
        }
    }
    config.dns = strings(svc.extra.get("dns"));
    config.dns_search = strings(svc.extra.get("dns_search"));
    config.dns_opt = strings(svc.extra.get("dns_opt"));
    config.extra_hosts = match svc.extra.get("extra_hosts") {
        Some(J::Object(m)) => m
            .iter()
            .flat_map(|(k, v)| {
                let ips = strings(Some(v));
                ips.into_iter().map(move |ip| format!("{k}={ip}"))
            })
            .collect(),
        other => strings(other),
    };
    for (i, h) in config.extra_hosts.iter().enumerate() {
        crate::runtime::etcfiles::parse_extra_host(h)
            .map_err(|e| field(&format!("extra_hosts[{i}]"), e.to_string()))?;
    }

    // tmpfs:
    for (i, t) in svc.tmpfs.iter().enumerate() {
        config
            .tmpfs
            .push(parse_tmpfs(t).map_err(|r| field(&format!("tmpfs[{i}]"), r))?);
    }

    // volumes:
    let mut host_binds = Vec::new();
    let mut volumes = Vec::new();
    let mut targets = BTreeSet::new();
    for t in &config.tmpfs {
        targets.insert(t.target.clone());
    }
    for (i, m) in svc.volumes.iter().enumerate() {
        let f = format!("volumes[{i}]");
        let target = m
            .target
            .clone()
            .filter(|t| t.starts_with('/'))
            .ok_or_else(|| field(&f, "needs an absolute target path".into()))?;
        if !targets.insert(target.clone()) {
            return Err(field(&f, format!("{target} is mounted twice")));
        }
        let read_only = m.read_only.unwrap_or(false);
        if let Some(k) = m.extra.keys().find(|k| k.as_str() != "consistency") {
            return Err(field(&format!("{f}.{k}"), "not supported yet".into()));
        }
        match m.kind.as_str() {
            "bind" => {
                let source = m
                    .source
                    .as_deref()
                    .filter(|s| s.starts_with('/'))
                    .ok_or_else(|| field(&f, "a bind mount needs an absolute source".into()))?;
                let mut create = false;
                if let Some(b) = &m.bind {
                    create = b.create_host_path.unwrap_or(false);
                    if let Some(p) = b
                        .propagation
                        .as_deref()
                        .filter(|p| !matches!(*p, "rprivate" | "private"))
                    {
                        return Err(field(
                            &format!("{f}.bind.propagation"),
                            format!("{p:?} is not supported yet (only rprivate)"),
                        ));
                    }
                    if let Some(k) = b.extra.keys().next() {
                        return Err(field(&format!("{f}.bind.{k}"), "not supported yet".into()));
                    }
                }
                host_binds.push(HostBind {
                    source: PathBuf::from(source),
                    create,
                    field: f.clone(),
                });
                config.binds.push(BindMount {
                    source: PathBuf::from(source),
                    target,
                    read_only,
                });
            }
            "volume" => {
                let (nocopy, subpath) = match &m.volume {
                    Some(v) => {
                        if let Some(k) = v.extra.keys().next() {
                            return Err(field(
                                &format!("{f}.volume.{k}"),
                                "not supported yet".into(),
                            ));
                        }
                        (v.nocopy.unwrap_or(false), v.subpath.clone())
                    }
                    None => (false, None),
                };
                if let Some(s) = &subpath
                    && (s.starts_with('/')
                        || s.split('/').any(|c| c == ".." || c == ".")
                        || s.is_empty())
                {
                    return Err(field(
                        &format!("{f}.volume.subpath"),
                        format!("{s:?} must be a relative path inside the volume"),
                    ));
                }
                let name = match m.source.as_deref().filter(|s| !s.is_empty()) {
                    Some(key) => Some(match project.volumes.get(key) {
                        Some(def) => volume_name_of(&project.name, key, def),
                        None => {
                            return Err(field(
                                &format!("{f}.source"),
                                format!("volume {key:?} is not defined in the top-level volumes"),
                            ));
                        }
                    }),
                    None => None,
                };
                volumes.push(VolumeUse {
                    name,
                    target,
                    read_only,
                    nocopy,
                    subpath,
                    field: f.clone(),
                });
            }
            "tmpfs" => {
                let (size, mode) = match &m.tmpfs {
                    Some(t) => (t.size, t.mode),
                    None => (None, None),
                };
                config.tmpfs.push(TmpfsMount { target, size, mode });
            }
            other => {
                return Err(field(
                    &format!("{f}.type"),
                    format!("{other:?} mounts are not supported yet (bind, volume, tmpfs)"),
                ));
            }
        }
    }
    // secrets: and configs:
    let mut files = Vec::new();
    for (kind, refs, defs) in [
        ("secrets", &svc.secrets, &project.secrets),
        ("configs", &svc.configs, &project.configs),
    ] {
        for (i, r) in refs.iter().enumerate() {
            let f = format!("{kind}[{i}]");
            let mount = file_mount(kind, r, defs, &f).map_err(|reason| field(&f, reason))?;
            if !targets.insert(mount.target.clone()) {
                return Err(field(&f, format!("{} is mounted twice", mount.target)));
            }
            files.push(mount);
        }
    }
    // volumes_from:
    let mut volumes_from = Vec::new();
    for (i, v) in svc.volumes_from.iter().enumerate() {
        let f = format!("volumes_from[{i}]");
        volumes_from.push(parse_volumes_from(v, &f).map_err(|reason| field(&f, reason))?);
    }

    // The image's VOLUMEs that the service does not mount: anonymous volumes (Docker's rule).
    if let Some(image_volumes) = &c.volumes {
        for target in image_volumes.keys() {
            let t = normalize_target(target);
            if t.starts_with('/') && !targets.contains(&t) {
                targets.insert(t.clone());
                volumes.push(VolumeUse {
                    name: None,
                    target: t.clone(),
                    read_only: false,
                    nocopy: false,
                    subpath: None,
                    field: format!("image volume {t}"),
                });
            }
        }
    }

    // Limits.
    let limits = limits(svc).map_err(|(f, r)| field(&f, r))?;

    // Labels: the service's, then Compose's and ours (which win).
    let mut all_labels: BTreeMap<String, String> = svc
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    all_labels.insert(labels::PROJECT.into(), project.name.clone());
    all_labels.insert(labels::SERVICE.into(), sname.to_string());
    all_labels.insert(labels::CONTAINER_NUMBER.into(), input.replica.to_string());
    all_labels.insert(labels::ONEOFF.into(), "False".into());
    all_labels.insert(labels::IMAGE.into(), input.image.config_digest.to_string());
    if let Some(h) = input.config_hash {
        all_labels.insert(labels::CONFIG_HASH.into(), h.to_string());
    }

    let stop_timeout = match &svc.stop_grace_period {
        Some(d) => Some(units::parse_duration(d).map_err(|r| field("stop_grace_period", r))?),
        None => None,
    };
    let log = log_config(svc.extra.get("logging")).map_err(|(f, r)| field(&f, r))?;

    let network = network_plan(project, sname, svc, &name)?;

    Ok(Translated {
        name: name.clone(),
        options: CreateOptions {
            name: Some(name),
            image: Some(input.image_ref.to_string()),
            config,
            limits,
            stop_signal: svc.stop_signal.clone(),
            stop_timeout,
            log,
            open_stdin: svc.stdin_open.unwrap_or(false),
            labels: all_labels,
        },
        host_binds,
        volumes,
        files,
        volumes_from,
        network,
    })
}

/// A service's `secrets[i]`/`configs[i]` against the project's top-level definitions.
fn file_mount(
    kind: &str,
    r: &model::FileRef,
    defs: &indexmap::IndexMap<String, model::FileObject>,
    field: &str,
) -> Result<FileMount, String> {
    let what = if kind == "secrets" {
        "secret"
    } else {
        "config"
    };
    let def = defs.get(&r.source).ok_or_else(|| {
        format!(
            "{what} {:?} is not defined in the top-level {kind}",
            r.source
        )
    })?;
    let source = if def.external {
        return Err(format!(
            "{what} {:?} is external (a Swarm object); use file, environment or content",
            r.source
        ));
    } else if let Some(file) = &def.file {
        FileSource::Path(PathBuf::from(file))
    } else if let Some(content) = &def.content {
        FileSource::Content(content.clone())
    } else if let Some(var) = &def.environment {
        return Err(format!(
            "{what} {:?} takes its value from the environment variable {var}, which is not set",
            r.source
        ));
    } else {
        return Err(format!(
            "{what} {:?} has no source (file, environment or content)",
            r.source
        ));
    };
    let base = if kind == "secrets" {
        "/run/secrets/"
    } else {
        "/"
    };
    let target = match r.target.as_deref().filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with('/') => t.to_string(),
        Some(t) => format!("{base}{t}"),
        None => format!("{base}{}", r.source),
    };
    if target.split('/').any(|c| c == "..") {
        return Err(format!("target {target:?} must not contain .."));
    }
    let id = |v: &Option<String>, name: &str| -> Result<Option<u32>, String> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| format!("{name} {s:?} must be a numeric id"))
            })
            .transpose()
    };
    let uid = id(&r.uid, "uid")?;
    let gid = id(&r.gid, "gid")?;
    if let Some(m) = r.mode
        && m > 0o7777
    {
        return Err(format!("mode {m:o} is not a file mode"));
    }
    Ok(FileMount {
        source,
        target,
        uid,
        gid,
        mode: r.mode,
        field: field.to_string(),
    })
}

/// `volumes_from` entries: `service`, `service:ro`, `container:name`, `container:name:rw`.
fn parse_volumes_from(text: &str, field: &str) -> Result<VolumesFrom, String> {
    let (source, rest) = match text.strip_prefix("container:") {
        Some(rest) => {
            let (name, mode) = match rest.split_once(':') {
                Some((n, m)) => (n, Some(m)),
                None => (rest, None),
            };
            (VolumesFromSource::Container(name.to_string()), mode)
        }
        None => {
            let (name, mode) = match text.split_once(':') {
                Some((n, m)) => (n, Some(m)),
                None => (text, None),
            };
            (VolumesFromSource::Service(name.to_string()), mode)
        }
    };
    let empty = match &source {
        VolumesFromSource::Service(n) | VolumesFromSource::Container(n) => n.is_empty(),
    };
    if empty {
        return Err(format!(
            "{text:?}: expected SERVICE[:ro|rw] or container:NAME[:ro|rw]"
        ));
    }
    let read_only = match rest {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => return Err(format!("{text:?}: unknown mode {m:?} (ro or rw)")),
    };
    Ok(VolumesFrom {
        source,
        read_only,
        field: field.to_string(),
    })
}

fn normalize_target(t: &str) -> String {
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

/// `/run`, `/run:size=64m,mode=1777` (Docker's `--tmpfs` syntax).
fn parse_tmpfs(text: &str) -> Result<TmpfsMount, String> {
    let (target, opts) = match text.split_once(':') {
        Some((t, o)) => (t, o),
        None => (text, ""),
    };
    if !target.starts_with('/') {
        return Err(format!("{text:?}: the target must be an absolute path"));
    }
    let mut m = TmpfsMount {
        target: target.to_string(),
        ..Default::default()
    };
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => m.size = Some(units::parse_bytes(v)?),
            Some(("mode", v)) => {
                m.mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("mode {v:?}: expected an octal mode"))?,
                )
            }
            _ if matches!(
                opt,
                "rw" | "nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec"
            ) => {}
            _ => return Err(format!("option {opt:?} is not supported (size, mode)")),
        }
    }
    Ok(m)
}

fn limits(svc: &model::Service) -> Result<Limits, (String, String)> {
    let mut l = Limits::default();
    let deploy_limits = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    let deploy_res = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref());
    let to_i64 = |f: &str, v: u64| -> Result<i64, (String, String)> {
        i64::try_from(v).map_err(|_| (f.to_string(), format!("{v} is too large")))
    };
    if let Some(m) = svc.mem_limit {
        l.memory = Some(to_i64("mem_limit", m)?);
    } else if let Some(m) = deploy_limits.and_then(|d| d.memory) {
        l.memory = Some(to_i64("deploy.resources.limits.memory", m)?);
    }
    if let Some(m) = svc.mem_reservation {
        l.memory_reservation = Some(to_i64("mem_reservation", m)?);
    } else if let Some(m) = deploy_res.and_then(|d| d.memory) {
        l.memory_reservation = Some(to_i64("deploy.resources.reservations.memory", m)?);
    }
    l.memory_swap = svc.memswap_limit;
    let cpus = svc.cpus.map(|c| ("cpus", c)).or_else(|| {
        deploy_limits
            .and_then(|d| d.cpus)
            .map(|c| ("deploy.resources.limits.cpus", c))
    });
    if let Some((f, c)) = cpus
        && c != 0.0
    {
        l.set_cpus(c).map_err(|e| (f.to_string(), e.to_string()))?;
    }
    if let Some(s) = svc.cpu_shares {
        l.cpu_shares = Some(
            u64::try_from(s)
                .ok()
                .filter(|s| (2..=262_144).contains(s))
                .ok_or_else(|| {
                    (
                        "cpu_shares".to_string(),
                        format!("{s}: expected 2 to 262144"),
                    )
                })?,
        );
    }
    l.cpuset_cpus = svc.cpuset.clone().filter(|c| !c.is_empty());
    l.pids_limit = svc
        .pids_limit
        .or_else(|| deploy_limits.and_then(|d| d.pids))
        .filter(|p| *p != 0);
    for (f, extra) in [
        ("deploy.resources.limits", deploy_limits.map(|d| &d.extra)),
        (
            "deploy.resources.reservations",
            deploy_res.map(|d| &d.extra),
        ),
    ] {
        if let Some(k) = extra.and_then(|e| e.iter().find(|(_, v)| !is_unset(v)).map(|(k, _)| k)) {
            return Err((format!("{f}.{k}"), "not supported yet".into()));
        }
    }
    l.validate()
        .map_err(|e| ("mem_limit".to_string(), e.to_string()))?;
    Ok(l)
}

fn log_config(logging: Option<&J>) -> Result<LogConfig, (String, String)> {
    let mut log = LogConfig::default();
    let Some(J::Object(m)) = logging else {
        return Ok(log);
    };
    if let Some(d) = m.get("driver").and_then(J::as_str)
        && !matches!(d, "json-file" | "local")
    {
        return Err((
            "logging.driver".into(),
            format!("{d:?} is not supported (json-file, local)"),
        ));
    }
    if let Some(J::Object(opts)) = m.get("options") {
        for (k, v) in opts {
            let v = v.as_str().unwrap_or_default();
            let f = format!("logging.options.{k}");
            match k.as_str() {
                "max-size" => log.max_size = units::parse_bytes(v).map_err(|r| (f, r))?,
                "max-file" => {
                    log.max_files = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| (f, format!("{v:?}: expected a positive number")))?
                }
                _ => {}
            }
        }
    }
    Ok(log)
}

fn network_plan(
    project: &model::Project,
    sname: &str,
    svc: &model::Service,
    container: &str,
) -> Result<NetworkPlan, ProjectError> {
    let field = |f: &str, reason: String| ProjectError::Field {
        service: sname.to_string(),
        field: f.to_string(),
        reason,
    };
    if let Some(mode) = svc.network_mode.as_deref() {
        if !svc.networks.is_empty() {
            return Err(field(
                "network_mode",
                "cannot be combined with `networks`".into(),
            ));
        }
        if !svc.sysctls.keys().all(|k| !k.starts_with("net.")) && mode != "none" {
            return Err(field(
                "sysctls",
                format!("net.* sysctls cannot be set with network_mode {mode}"),
            ));
        }
        return match mode.split_once(':') {
            None if mode == "none" => Ok(NetworkPlan::None),
            None if mode == "host" => Ok(NetworkPlan::Host),
            None if mode == "bridge" || mode == "default" => {
                Ok(NetworkPlan::Bridge(vec![attachment(
                    project, sname, container, "default", None,
                )?]))
            }
            Some(("service", s)) if project.services.contains_key(s) && s != sname => {
                Ok(NetworkPlan::Service(s.to_string()))
            }
            Some(("service", s)) => Err(field(
                "network_mode",
                format!("service:{s}: no such other service in the project"),
            )),
            Some(("container", c)) if !c.is_empty() => Ok(NetworkPlan::Container(c.to_string())),
            _ => Err(field(
                "network_mode",
                format!("{mode:?} is not supported (none, host, service:<name>, container:<name>)"),
            )),
        };
    }
    let mut out = Vec::new();
    if svc.networks.is_empty() {
        out.push(attachment(project, sname, container, "default", None)?);
    }
    for (key, att) in &svc.networks {
        out.push(attachment(project, sname, container, key, att.as_ref())?);
    }
    Ok(NetworkPlan::Bridge(out))
}

fn attachment(
    project: &model::Project,
    sname: &str,
    container: &str,
    key: &str,
    att: Option<&model::NetworkAttachment>,
) -> Result<Attachment, ProjectError> {
    let field = |f: String, reason: String| ProjectError::Field {
        service: sname.to_string(),
        field: f,
        reason,
    };
    let mut aliases = vec![sname.to_string()];
    if container != sname {
        aliases.push(container.to_string());
    }
    let mut ipv4 = None;
    if let Some(a) = att {
        for al in &a.aliases {
            if !aliases.contains(al) {
                aliases.push(al.clone());
            }
        }
        if let Some(ip) = a.ipv4_address.as_deref().filter(|s| !s.is_empty()) {
            ipv4 = Some(ip.parse().map_err(|_| {
                field(
                    format!("networks.{key}.ipv4_address"),
                    format!("{ip:?} is not an IPv4 address"),
                )
            })?);
        }
        if a.ipv6_address.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(field(
                format!("networks.{key}.ipv6_address"),
                "IPv6 is not supported yet".into(),
            ));
        }
        if let Some((k, _)) = a
            .extra
            .iter()
            .find(|(k, v)| !is_unset(v) && !matches!(k.as_str(), "priority" | "gw_priority"))
        {
            return Err(field(
                format!("networks.{key}.{k}"),
                "not supported yet".into(),
            ));
        }
    }
    Ok(Attachment {
        key: key.to_string(),
        name: network_name(project, key),
        aliases,
        ipv4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load::{Options, load};

    fn project(yaml: &str) -> model::Project {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            files: vec!["-".into()],
            stdin: Some(yaml.into()),
            working_dir: dir.path().to_path_buf(),
            project_name: Some("demo".into()),
            ..Default::default()
        };
        let loaded = load(&opts).unwrap();
        model::Project::from_config(&loaded.config).unwrap()
    }

    fn image() -> ImageRecord {
        let d = format!("sha256:{}", "a".repeat(64));
        serde_json::from_value(serde_json::json!({
            "name": "docker.io/library/busybox:latest",
            "manifest_digest": d,
            "manifest_media_type": "application/vnd.oci.image.manifest.v1+json",
            "config_digest": d,
            "platform": {"architecture": "amd64", "os": "linux"},
            "layers": [],
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": ["sh"],
                "WorkingDir": "/srv",
                "Volumes": {"/data": {}, "/cache/": {}}
            }
        }))
        .unwrap()
    }

    fn tr(p: &model::Project, service: &str, replica: u32) -> Result<Translated, ProjectError> {
        let img = image();
        translate(Input {
            project: p,
            service,
            replica,
            image_ref: "docker.io/library/busybox:latest",
            image: &img,
            config_hash: Some("h1"),
        })
    }

    #[test]
    fn a_service_becomes_a_container_config() {
        let p = project(
            "services:\n  api:\n    image: busybox\n    command: [sh, -c, 'sleep 1']\n    environment:\n      A: '1'\n      UNSET:\n    working_dir: /app\n    user: '1000:1000'\n    read_only: true\n    cap_add: [NET_ADMIN]\n    cap_drop: [MKNOD]\n    init: true\n    tty: true\n    ulimits:\n      nofile: {soft: 1024, hard: 2048}\n    sysctls:\n      net.core.somaxconn: '1024'\n    tmpfs: ['/run:size=1m,mode=700']\n    volumes:\n      - data:/data:ro\n      - /srv/www:/www:ro\n      - type: tmpfs\n        target: /scratch\n        tmpfs: {size: 2048, mode: 0o755}\n      - type: volume\n        target: /anon\n    security_opt: ['seccomp=unconfined', 'no-new-privileges:true']\n    dns: [10.0.0.53]\n    dns_search: example.org\n    extra_hosts: ['db:10.0.0.9']\n    labels: {tier: backend}\n    mem_limit: 64m\n    cpus: 0.5\n    pids_limit: 100\n    stop_grace_period: 3s\n    stop_signal: SIGINT\n    networks:\n      back:\n        aliases: [api-alias]\n        ipv4_address: 10.99.0.5\nnetworks:\n  back: {}\nvolumes:\n  data: {}\n",
        );
        let t = tr(&p, "api", 2).unwrap();
        assert_eq!(t.name, "demo-api-2");
        let o = &t.options;
        assert_eq!(o.name.as_deref(), Some("demo-api-2"));
        let c = &o.config;
        assert_eq!(c.image.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(c.image.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.command.as_ref().unwrap()[2], "sleep 1");
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert!(c.read_only && c.init && c.tty && c.seccomp_unconfined);
        assert_eq!(c.hostname, None);
        assert_eq!(c.cap_add, ["NET_ADMIN"]);
        assert_eq!(c.ulimits[0].soft, 1024);
        assert_eq!(c.ulimits[0].hard, 2048);
        assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(
            c.tmpfs,
            vec![
                TmpfsMount {
                    target: "/run".into(),
                    size: Some(1 << 20),
                    mode: Some(0o700)
                },
                TmpfsMount {
                    target: "/scratch".into(),
                    size: Some(2048),
                    mode: Some(0o755)
                },
            ]
        );
        assert_eq!(
            c.binds,
            vec![BindMount {
                source: "/srv/www".into(),
                target: "/www".into(),
                read_only: true
            }]
        );
        assert_eq!(t.host_binds[0].source, PathBuf::from("/srv/www"));
        assert!(t.host_binds[0].create, "short syntax creates the host path");
        let named = &t.volumes[0];
        assert_eq!(named.name.as_deref(), Some("demo_data"));
        assert!(named.read_only);
        let anon: Vec<&str> = t
            .volumes
            .iter()
            .filter(|v| v.name.is_none())
            .map(|v| v.target.as_str())
            .collect();
        // The service's anonymous volume, then the image's VOLUMEs it does not mount (its /data
        // is the named volume's).
        assert_eq!(anon, ["/anon", "/cache"]);
        assert_eq!(c.dns, ["10.0.0.53"]);
        assert_eq!(c.dns_search, ["example.org"]);
        assert_eq!(c.extra_hosts, ["db=10.0.0.9"]);
        assert_eq!(o.labels["tier"], "backend");
        assert_eq!(o.labels[labels::PROJECT], "demo");
        assert_eq!(o.labels[labels::SERVICE], "api");
        assert_eq!(o.labels[labels::CONTAINER_NUMBER], "2");
        assert_eq!(o.labels[labels::CONFIG_HASH], "h1");
        assert_eq!(o.limits.memory, Some(64 << 20));
        assert_eq!(o.limits.cpu_quota, Some(50_000));
        assert_eq!(o.limits.pids_limit, Some(100));
        assert_eq!(o.stop_timeout, Some(std::time::Duration::from_secs(3)));
        assert_eq!(o.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(
            t.network,
            NetworkPlan::Bridge(vec![Attachment {
                key: "back".into(),
                name: "demo_back".into(),
                aliases: vec!["api".into(), "demo-api-2".into(), "api-alias".into()],
                ipv4: Some("10.99.0.5".parse().unwrap()),
            }])
        );
    }

    #[test]
    fn defaults_and_network_modes() {
        let p = project(
            "services:\n  web:\n    image: busybox\n  side:\n    image: busybox\n    network_mode: service:web\n  lone:\n    image: busybox\n    network_mode: none\n  hosty:\n    image: busybox\n    network_mode: host\n  named:\n    image: busybox\n    container_name: fixed\n    deploy:\n      resources:\n        limits: {memory: 32m, pids: 7}\n",
        );
        let t = tr(&p, "web", 1).unwrap();
        assert_eq!(t.name, "demo-web-1");
        match &t.network {
            NetworkPlan::Bridge(a) => {
                assert_eq!(a.len(), 1);
                assert_eq!(a[0].name, "demo_default");
            }
            other => panic!("{other:?}"),
        }
        assert!(t.options.config.command.is_none());
        assert_eq!(
            tr(&p, "side", 1).unwrap().network,
            NetworkPlan::Service("web".into())
        );
        assert_eq!(tr(&p, "lone", 1).unwrap().network, NetworkPlan::None);
        assert_eq!(tr(&p, "hosty", 1).unwrap().network, NetworkPlan::Host);
        let n = tr(&p, "named", 1).unwrap();
        assert_eq!(n.name, "fixed");
        assert_eq!(n.options.limits.memory, Some(32 << 20));
        assert_eq!(n.options.limits.pids_limit, Some(7));
        let err = tr(&p, "named", 2).unwrap_err().to_string();
        assert!(err.starts_with("services.named.container_name: "), "{err}");
    }

    #[test]
    fn what_the_runtime_cannot_do_is_an_error_naming_the_field() {
        for (yaml, want) in [
            (
                "privileged: true",
                "services.s.privileged: not supported yet",
            ),
            (
                "devices: ['/dev/fuse']",
                "services.s.devices: not supported yet",
            ),
            (
                "security_opt: ['label=type:x']",
                "services.s.security_opt[0]: ",
            ),
            ("shm_size: 1g", "services.s.shm_size: "),
            ("logging: {driver: syslog}", "services.s.logging.driver: "),
            ("tmpfs: ['/run:uid=5']", "services.s.tmpfs[0]: "),
            (
                "volumes: [{type: bind, source: /x, target: /y, bind: {propagation: shared}}]",
                "services.s.volumes[0].bind.propagation: ",
            ),
            ("network_mode: 'bridge:x'", "services.s.network_mode: "),
            ("extra_hosts: ['h:notanip']", "services.s.extra_hosts[0]: "),
        ] {
            let p = project(&format!(
                "services:\n  s:\n    image: busybox\n    {yaml}\n"
            ));
            let err = tr(&p, "s", 1).unwrap_err().to_string();
            assert!(err.starts_with(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn long_syntax_binds_create_only_when_asked() {
        let p = project(
            "services:\n  s:\n    image: busybox\n    volumes:\n      - type: bind\n        source: /a\n        target: /a\n      - type: bind\n        source: /b\n        target: /b\n        read_only: true\n        bind: {create_host_path: true}\n",
        );
        let t = tr(&p, "s", 1).unwrap();
        assert!(!t.host_binds[0].create);
        assert!(t.host_binds[1].create);
        assert!(t.options.config.binds[1].read_only);
    }

    #[test]
    fn tmpfs_syntax() {
        assert_eq!(parse_tmpfs("/t").unwrap().size, None);
        assert!(parse_tmpfs("t").is_err());
        assert!(parse_tmpfs("/t:mode=99").is_err());
        assert_eq!(parse_tmpfs("/t:rw,size=2k").unwrap().size, Some(2048));
    }

    #[test]
    fn secrets_and_configs_get_compose_targets_and_never_print_their_content() {
        let p = project(
            "services:\n  s:\n    image: busybox\n    secrets:\n      - pw\n      - {source: pw, target: other}\n      - {source: tok, target: /etc/tok, uid: '7', mode: 0400}\n    configs:\n      - cfg\n      - {source: cfg, target: conf.d/x}\nsecrets:\n  pw: {file: /etc/hostname}\n  tok: {content: topsecret}\nconfigs:\n  cfg: {content: hello}\n",
        );
        let t = tr(&p, "s", 1).unwrap();
        let targets: Vec<&str> = t.files.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/run/secrets/pw",
                "/run/secrets/other",
                "/etc/tok",
                "/cfg",
                "/conf.d/x"
            ]
        );
        assert!(t.files[0].is_plain_bind());
        assert_eq!(t.files[0].source, FileSource::Path("/etc/hostname".into()));
        assert!(!t.files[2].is_plain_bind());
        assert_eq!(
            (t.files[2].uid, t.files[2].gid, t.files[2].mode),
            (Some(7), None, Some(0o400))
        );
        assert_eq!(t.files[3].source, FileSource::Content("hello".into()));
        assert!(!format!("{t:?}").contains("topsecret"));
        assert_eq!(t.files[2].field, "secrets[2]");
    }

    #[test]
    fn bad_secrets_and_volumes_from_name_the_entry() {
        for (yaml, want) in [
            ("secrets: [env]", "TOKEN_X, which is not set"),
            (
                "secrets: [{source: f, uid: bob}]",
                "services.s.secrets[0]: uid \"bob\"",
            ),
            (
                "secrets: [f, {source: f, target: f}]",
                "services.s.secrets[1]: /run/secrets/f is mounted twice",
            ),
            (
                "configs: [ext]",
                "services.s.configs[0]: config \"ext\" is external",
            ),
            (
                "volumes_from: ['container:c:rx']",
                "services.s.volumes_from[0]: \"container:c:rx\": unknown mode",
            ),
            (
                "volumes_from: ['container:']",
                "services.s.volumes_from[0]: ",
            ),
        ] {
            let p = project(&format!(
                "services:\n  s:\n    image: busybox\n    {yaml}\nsecrets:\n  f: {{file: /etc/hostname}}\n  env: {{environment: TOKEN_X}}\nconfigs:\n  ext: {{external: true}}\n"
            ));
            let err = tr(&p, "s", 1).unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn volumes_from_forms() {
        let v = parse_volumes_from("db:ro", "f").unwrap();
        assert_eq!(v.source, VolumesFromSource::Service("db".into()));
        assert!(v.read_only);
        let v = parse_volumes_from("container:c1:rw", "f").unwrap();
        assert_eq!(v.source, VolumesFromSource::Container("c1".into()));
        assert!(!v.read_only);
        assert!(parse_volumes_from("", "f").is_err());
    }
}
