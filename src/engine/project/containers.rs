//! Service containers: made in undoable steps (bind sources, volumes and copy-up, network
//! namespace and endpoints, the runtime's create), started, stopped and removed with what they
//! own.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::translate::{FileMount, FileSource, Input, NetworkPlan, Translated, VolumesFromSource};
use super::{ProjectEngine, ProjectError, Result, ServiceCreate, labels, translate};
use crate::image::record::{self, ImageRecord};
use crate::image::reference::Reference;
use crate::image::store::Store as ImageStore;
use crate::network::{Attachment, NetworkError};
use crate::runtime::config::BindMount;
use crate::runtime::lifecycle::{Container, LifecycleError};
use crate::spec::model;
use crate::volume::{Volume, VolumeError};

/// Undo steps of a create, run in reverse when a later step fails.
enum Undo {
    Dir(PathBuf),
    /// A directory made whole by the create, removed with its content.
    Tree(PathBuf),
    Volume(String),
    Netns(String),
}

/// Removes directories made for bind sources, deepest first, only while empty.
fn remove_made_dirs(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Creates `path` and its missing parents; returns the directories made, shallowest first.
fn make_dirs(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut p = path;
    while std::fs::symlink_metadata(p).is_err() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    missing.reverse();
    let mut made = Vec::new();
    for d in missing {
        match std::fs::create_dir(&d) {
            Ok(()) => made.push(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                remove_made_dirs(&made);
                return Err(e);
            }
        }
    }
    Ok(made)
}

impl ProjectEngine {
    // --- containers -----------------------------------------------------------------------

    /// The image record of `image` from the data root's image store, and its layer dirs.
    pub(super) fn image(
        &self,
        service: &str,
        image: &str,
    ) -> Result<(ImageRecord, Vec<PathBuf>, String)> {
        let fail = |reason: String| ProjectError::Image {
            service: service.to_string(),
            image: image.to_string(),
            reason,
        };
        let reference = Reference::parse(image).map_err(|e| fail(e.to_string()))?;
        let store = ImageStore::open(&self.root).map_err(|e| fail(e.to_string()))?;
        let full = reference.to_string();
        let rec = match record::load(&store, &full) {
            Ok(r) => r,
            Err(record::RecordError::NotFound { .. }) => {
                return Err(fail("no such image in the store (pull it first)".into()));
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let mut layers = Vec::new();
        for l in &rec.layers {
            if !store.has_layer(&l.chain_id) {
                return Err(fail(format!("layer {} is not unpacked", l.chain_id)));
            }
            layers.push(store.layer_path(&l.chain_id));
        }
        Ok((rec, layers, full))
    }

    /// Translates replica `create.replica` of `service` without creating anything (what
    /// [`ProjectEngine::create_service_container`] would make).
    pub fn translate(
        &self,
        project: &model::Project,
        service: &str,
        create: &ServiceCreate,
    ) -> Result<(Translated, Vec<PathBuf>)> {
        let svc = project
            .services
            .get(service)
            .ok_or_else(|| ProjectError::NoSuchService {
                service: service.to_string(),
            })?;
        let image = create
            .image
            .clone()
            .or_else(|| svc.image.clone())
            .unwrap_or_else(|| format!("{}-{service}", project.name));
        let (rec, layers, full) = self.image(service, &image)?;
        let t = translate::translate(Input {
            project,
            service,
            replica: create.replica.max(1),
            image_ref: &full,
            image: &rec,
            config_hash: create.config_hash.as_deref(),
        })?;
        Ok((t, layers))
    }

    /// Creates replica `create.replica` of `service` of `project` (its networks and named
    /// volumes must exist: [`ProjectEngine::ensure_network`], [`ProjectEngine::ensure_volume`]);
    /// returns the container's id. On failure nothing of it is left behind.
    pub fn create_service_container(
        &self,
        project: &model::Project,
        service: &str,
        create: &ServiceCreate,
    ) -> Result<String> {
        let (mut t, layers) = self.translate(project, service, create)?;
        t.options.labels.extend(create.labels.clone());
        let mut undo = Vec::new();
        match self.create_steps(project, service, t, &layers, &mut undo) {
            Ok(id) => Ok(id),
            Err(e) => {
                self.rollback(undo);
                Err(e)
            }
        }
    }

    fn rollback(&self, undo: Vec<Undo>) {
        let mut dirs = Vec::new();
        for step in undo.into_iter().rev() {
            match step {
                Undo::Dir(d) => dirs.push(d),
                Undo::Tree(d) => {
                    let _ = std::fs::remove_dir_all(&d);
                }
                Undo::Volume(v) => {
                    let _ = self.volumes.remove(&v, true, &|_| Vec::new());
                }
                Undo::Netns(id) => {
                    if let Err(e) = self.networks.remove_netns(&id) {
                        tracing::warn!(netns = %id, error = %e, "rollback: remove the network namespace");
                    }
                }
            }
        }
        // Collected deepest first; remove_made_dirs goes from the end.
        dirs.reverse();
        remove_made_dirs(&dirs);
    }

    fn create_steps(
        &self,
        project: &model::Project,
        service: &str,
        mut t: Translated,
        layers: &[PathBuf],
        undo: &mut Vec<Undo>,
    ) -> Result<String> {
        let field = |f: &str, reason: String| ProjectError::Field {
            service: service.to_string(),
            field: f.to_string(),
            reason,
        };
        // A taken name fails here, before anything is made.
        if let Ok(id) = self.runtime.resolve(&t.name) {
            return Err(ProjectError::Container {
                service: service.to_string(),
                source: Box::new(LifecycleError::NameConflict {
                    name: t.name.clone(),
                    id,
                }),
            });
        }
        // 1. Bind sources.
        for b in &t.host_binds {
            if std::fs::symlink_metadata(&b.source).is_ok() {
                continue;
            }
            if !b.create {
                return Err(field(
                    &format!("{}.source", b.field),
                    format!(
                        "bind source {} does not exist (create it, or use the short syntax or bind.create_host_path: true)",
                        b.source.display()
                    ),
                ));
            }
            let made = make_dirs(&b.source).map_err(|e| {
                field(
                    &format!("{}.source", b.field),
                    format!("create {}: {e}", b.source.display()),
                )
            })?;
            undo.extend(made.into_iter().map(Undo::Dir));
        }

        // 2. Volumes: named ones must exist; anonymous ones are made; copy-up.
        let mut used = Vec::new();
        let mut anonymous = Vec::new();
        let verr = |source| ProjectError::ServiceVolume {
            service: service.to_string(),
            source: Box::new(source),
        };
        for v in &t.volumes {
            let volume = match &v.name {
                Some(name) => match self.volumes.get(name) {
                    Ok(vol) => vol,
                    Err(VolumeError::NotFound { .. }) => {
                        return Err(field(
                            &format!("{}.source", v.field),
                            format!(
                                "volume {name:?} does not exist (create the project's volumes first)"
                            ),
                        ));
                    }
                    Err(e) => return Err(verr(e)),
                },
                None => {
                    let name = crate::store::new_id().map_err(|e| {
                        verr(VolumeError::Store {
                            name: "anonymous".into(),
                            source: e,
                        })
                    })?;
                    let mut l = BTreeMap::new();
                    l.insert(labels::ANONYMOUS_PROJECT.to_string(), project.name.clone());
                    l.insert(labels::ANONYMOUS_CONTAINER.to_string(), t.name.clone());
                    let vol = self
                        .volumes
                        .create(&name, l, BTreeMap::new())
                        .map_err(verr)?;
                    undo.push(Undo::Volume(name.clone()));
                    anonymous.push(name);
                    vol
                }
            };
            if !v.nocopy && v.subpath.is_none() {
                copy_up(&volume, layers, &v.target).map_err(verr)?;
            }
            let source = match &v.subpath {
                Some(s) => {
                    let p = volume.mountpoint.join(s);
                    if !p.is_dir() {
                        return Err(field(
                            &format!("{}.volume.subpath", v.field),
                            format!("{s:?} is not a directory in volume {}", volume.name),
                        ));
                    }
                    p
                }
                None => volume.mountpoint.clone(),
            };
            used.push(volume.name.clone());
            t.options.config.binds.push(BindMount {
                source,
                target: v.target.clone(),
                read_only: v.read_only,
            });
        }
        // 2b. volumes_from: the bind and volume mounts of other containers.
        for v in &t.volumes_from {
            let source = match &v.source {
                VolumesFromSource::Service(other) => self
                    .list_project(&project.name)?
                    .into_iter()
                    .filter(|c| {
                        c.meta.labels.get(labels::SERVICE) == Some(other)
                            && c.meta.labels.get(labels::ONEOFF).map(String::as_str) != Some("True")
                    })
                    .min_by_key(|c| {
                        c.meta
                            .labels
                            .get(labels::CONTAINER_NUMBER)
                            .and_then(|n| n.parse::<u32>().ok())
                            .unwrap_or(u32::MAX)
                    })
                    .ok_or_else(|| {
                        field(&v.field, format!("service {other:?} has no container yet"))
                    })?,
                VolumesFromSource::Container(other) => {
                    let id = self.runtime.resolve(other).map_err(|_| {
                        field(&v.field, format!("container {other:?}: no such container"))
                    })?;
                    self.runtime.inspect(&id)?
                }
            };
            let shared: Vec<SharedMount> = source
                .meta
                .labels
                .get(labels::MOUNTS)
                .map(|m| serde_json::from_str(m))
                .transpose()
                .map_err(|e| {
                    field(
                        &v.field,
                        format!(
                            "container {}: unreadable mounts label: {e}",
                            source.meta.name
                        ),
                    )
                })?
                .unwrap_or_default();
            for m in shared {
                if t.options.config.binds.iter().any(|b| b.target == m.target) {
                    // The service's own mount at that path wins (Docker's rule).
                    continue;
                }
                t.options.config.binds.push(BindMount {
                    source: m.source,
                    target: m.target,
                    read_only: v.read_only || m.read_only,
                });
            }
            for name in labels::list(source.meta.labels.get(labels::VOLUMES)) {
                if !used.contains(&name) {
                    used.push(name);
                }
            }
        }
        let shared: Vec<SharedMount> = t
            .options
            .config
            .binds
            .iter()
            .map(|b| SharedMount {
                source: b.source.clone(),
                target: b.target.clone(),
                read_only: b.read_only,
            })
            .collect();
        if !shared.is_empty()
            && let Ok(text) = serde_json::to_string(&shared)
        {
            t.options.labels.insert(labels::MOUNTS.into(), text);
        }

        // 2c. Secrets and configs: host files bound read-only as they are, the others written
        // (with their owner and mode) into a directory of the container's own.
        let mut files_dir = None;
        for (i, f) in t.files.iter().enumerate() {
            let source = if f.is_plain_bind() {
                let FileSource::Path(p) = &f.source else {
                    continue;
                };
                if !p.is_file() {
                    return Err(field(
                        &f.field,
                        format!("{} does not exist or is not a file", p.display()),
                    ));
                }
                p.clone()
            } else {
                let dir = match &files_dir {
                    Some((_, d)) => PathBuf::clone(d),
                    None => {
                        let (id, d) = self.files_dir().map_err(|e| {
                            field(&f.field, format!("make a directory for it: {e}"))
                        })?;
                        undo.push(Undo::Tree(d.clone()));
                        files_dir = Some((id, d.clone()));
                        d
                    }
                };
                let path = dir.join(i.to_string());
                write_file_mount(f, &path).map_err(|reason| field(&f.field, reason))?;
                path
            };
            t.options.config.binds.push(BindMount {
                source,
                target: f.target.clone(),
                read_only: true,
            });
        }
        if let Some((id, _)) = files_dir {
            t.options.labels.insert(labels::FILES.into(), id);
        }

        // Parents before children.
        t.options
            .config
            .binds
            .sort_by_key(|b| b.target.trim_end_matches('/').matches('/').count());
        if !used.is_empty() {
            t.options
                .labels
                .insert(labels::VOLUMES.into(), used.join(","));
        }
        if !anonymous.is_empty() {
            t.options
                .labels
                .insert(labels::ANONYMOUS_VOLUMES.into(), anonymous.join(","));
        }

        // 3. Network.
        let nerr = |source| ProjectError::ServiceNetwork {
            service: service.to_string(),
            source: Box::new(source),
        };
        match &t.network {
            NetworkPlan::None => {}
            NetworkPlan::Host => {
                // Opened by the container's process before it unshares anything: the
                // namespace it inherited from the daemon, the host's.
                t.options.config.netns = Some(PathBuf::from("/proc/self/ns/net"));
            }
            NetworkPlan::Service(other) => {
                let target = self
                    .list_project(&project.name)?
                    .into_iter()
                    .filter(|c| c.meta.labels.get(labels::SERVICE) == Some(other))
                    .min_by_key(|c| {
                        c.meta
                            .labels
                            .get(labels::CONTAINER_NUMBER)
                            .and_then(|n| n.parse::<u32>().ok())
                            .unwrap_or(u32::MAX)
                    })
                    .ok_or_else(|| {
                        field(
                            "network_mode",
                            format!("service:{other}: the service has no container yet"),
                        )
                    })?;
                t.options.config.netns = Some(self.shared_netns(service, &target)?);
            }
            NetworkPlan::Container(other) => {
                let id = self.runtime.resolve(other).map_err(|_| {
                    field(
                        "network_mode",
                        format!("container:{other}: no such container"),
                    )
                })?;
                let target = self.runtime.inspect(&id)?;
                t.options.config.netns = Some(self.shared_netns(service, &target)?);
            }
            NetworkPlan::Bridge(atts) => {
                let netns_id = crate::store::new_id().map_err(|e| nerr(NetworkError::Store(e)))?;
                let mut gateways = Vec::new();
                for a in atts {
                    match self.networks.get(&a.name) {
                        Ok(n) => gateways.push(n.gateway),
                        Err(NetworkError::NotFound { .. }) => {
                            return Err(field(
                                &format!("networks.{}", a.key),
                                format!(
                                    "network {:?} does not exist (create the project's networks first)",
                                    a.name
                                ),
                            ));
                        }
                        Err(e) => return Err(nerr(e)),
                    }
                }
                let attachments: Vec<Attachment<'_>> = atts
                    .iter()
                    .map(|a| Attachment {
                        network: &a.name,
                        aliases: &a.aliases,
                        ipv4: a.ipv4,
                    })
                    .collect();
                let (path, endpoints) = self
                    .networks
                    .create_netns_connected(&netns_id, &attachments)
                    .map_err(nerr)?;
                undo.push(Undo::Netns(netns_id.clone()));
                let addresses: Vec<IpAddr> = endpoints.iter().map(|e| IpAddr::V4(e.ip)).collect();
                let first_gateway = gateways.first().copied();
                t.options.config.netns = Some(path);
                t.options.config.addresses = addresses;
                t.options.labels.insert(labels::NETNS.into(), netns_id);
                if self.gateway_dns
                    && t.options.config.dns.is_empty()
                    && let Some(gw) = first_gateway
                {
                    t.options.config.dns = vec![Ipv4Addr::to_string(&gw)];
                }
            }
        }

        // 4. The container.
        self.runtime
            .create(t.options)
            .map_err(|source| ProjectError::Container {
                service: service.to_string(),
                source: Box::new(source),
            })
    }

    /// The network namespace file of another container, to share.
    fn shared_netns(&self, service: &str, target: &Container) -> Result<PathBuf> {
        match target.meta.labels.get(labels::NETNS) {
            Some(id) => Ok(self.networks.netns_dir().join(id)),
            None => Err(ProjectError::Field {
                service: service.to_string(),
                field: "network_mode".into(),
                reason: format!(
                    "container {} has no network namespace of its own to share",
                    target.meta.name
                ),
            }),
        }
    }

    /// Starts a created or exited container; returns its pid.
    pub fn start(&self, id: &str) -> Result<i32> {
        Ok(self.runtime.start(id)?)
    }

    /// Stops a container (its stop signal, then SIGKILL after `timeout`, default its own).
    pub fn stop(&self, id: &str, timeout: Option<Duration>) -> Result<()> {
        Ok(self.runtime.stop(id, timeout)?)
    }

    /// Removes a container (killing it if it still runs), then its network namespace
    /// (disconnecting it from every network and releasing its addresses), and with
    /// `anonymous_volumes` the anonymous volumes made for it.
    pub fn remove(&self, id: &str, anonymous_volumes: bool) -> Result<()> {
        let meta = self.runtime.meta(id)?;
        self.runtime.rm(id, true)?;
        self.release(&meta, anonymous_volumes)
    }

    /// What a removed container (`meta`) held besides its state dir: its network namespace
    /// (endpoints, addresses) and, with `anonymous_volumes`, the anonymous volumes made for
    /// it. For removals made through the runtime directly (the API's container delete).
    pub fn release(
        &self,
        meta: &crate::runtime::lifecycle::Meta,
        anonymous_volumes: bool,
    ) -> Result<()> {
        if let Some(id) = meta.labels.get(labels::FILES)
            && !id.is_empty()
            && !id.contains('/')
            && id != ".."
        {
            let dir = self.root.join("files").join(id);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "remove a container's secrets");
            }
        }
        if let Some(netns) = meta.labels.get(labels::NETNS) {
            self.networks
                .remove_netns(netns)
                .map_err(|source| ProjectError::Netns {
                    container: meta.name.clone(),
                    source: Box::new(source),
                })?;
        }
        if anonymous_volumes {
            for v in labels::list(meta.labels.get(labels::ANONYMOUS_VOLUMES)) {
                let in_use = |name: &str| self.containers_using(name);
                self.volumes.remove(&v, true, &in_use).map_err(|source| {
                    ProjectError::AnonymousVolume {
                        container: meta.name.clone(),
                        volume: v.clone(),
                        source: Box::new(source),
                    }
                })?;
            }
        }
        Ok(())
    }
}

/// One mount `volumes_from` shares (the [`labels::MOUNTS`] label).
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedMount {
    source: PathBuf,
    target: String,
    #[serde(default)]
    read_only: bool,
}

impl ProjectEngine {
    /// A new private directory for one container's secrets and configs: its id and path.
    fn files_dir(&self) -> std::io::Result<(String, PathBuf)> {
        use std::os::unix::fs::DirBuilderExt;
        let base = self.root.join("files");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)?;
        let id = crate::store::new_id().map_err(std::io::Error::other)?;
        let dir = base.join(&id);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok((id, dir))
    }
}

/// Writes a secret's or config's content to `path` with its owner (default root) and mode
/// (default 0444), created exclusively and synced.
fn write_file_mount(f: &FileMount, path: &Path) -> std::result::Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let content = match &f.source {
        FileSource::Content(c) => c.as_bytes().to_vec(),
        FileSource::Path(p) => {
            std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()))?
        }
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("write it: {e}"))?;
    out.write_all(&content)
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("write it: {e}"))?;
    std::os::unix::fs::chown(path, Some(f.uid.unwrap_or(0)), Some(f.gid.unwrap_or(0)))
        .map_err(|e| format!("set its owner: {e}"))?;
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(f.mode.unwrap_or(0o444)),
    )
    .map_err(|e| format!("set its mode: {e}"))
}

/// Copies the image's content at `target` into a still-empty volume: from the topmost layer
/// that has that directory (content spread over several layers comes from that one only).
pub(super) fn copy_up(
    volume: &Volume,
    layers: &[PathBuf],
    target: &str,
) -> Result<(), VolumeError> {
    use rustix::fs::{Mode, OFlags};
    for layer in layers.iter().rev() {
        let fd = rustix::fs::open(
            layer,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| VolumeError::Io {
            name: volume.name.clone(),
            op: "open the image layer",
            path: layer.clone(),
            source: e.into(),
        })?;
        match crate::volume::copy_up(volume, std::os::fd::AsFd::as_fd(&fd), target)? {
            crate::volume::CopyUp::NothingInImage => continue,
            _ => return Ok(()),
        }
    }
    Ok(())
}
