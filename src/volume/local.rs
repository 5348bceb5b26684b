//! The `local` driver: named volumes as directories under `<root>/volumes/`, their records in
//! the state database.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, VolumeRecord};

/// The only driver there is.
pub const DRIVER: &str = "local";

/// The directory of the volumes inside the data root.
const VOLUMES_DIR: &str = "volumes";
/// A volume's content inside its directory (Docker's layout).
const DATA_DIR: &str = "_data";
/// Prefix of a volume directory being removed (names never start with `.`).
const REMOVING: &str = ".removing-";

/// Why a volume operation failed; every message names the volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume name {name:?}: expected [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 255 characters)")]
    InvalidName { name: String },
    #[error("volume {name:?} not found")]
    NotFound { name: String },
    #[error("volume {name:?} is in use by container(s) {}", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("volume {name:?}: driver {driver:?} is not supported (only \"local\")")]
    Driver { name: String, driver: String },
    #[error("volume {name:?}: driver option {reason}")]
    Option { name: String, reason: String },
    #[error("volume {name:?}: bind device {}: {source}", device.display())]
    Device {
        name: String,
        device: PathBuf,
        source: io::Error,
    },
    #[error("volume {name:?}: {op} {}: {source}", path.display())]
    Io {
        name: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("volume {name:?}: image path {path}: {source}")]
    Image {
        name: String,
        path: String,
        source: io::Error,
    },
    #[error("volume {name:?}: image path {path}: tree deeper than {max} levels")]
    TooDeep {
        name: String,
        path: String,
        max: usize,
    },
    #[error("volume {name:?}: {source}")]
    Store { name: String, source: StoreError },
}

pub(super) type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// What a volume record keeps in its body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Body {
    #[serde(default)]
    driver: Option<String>,
    #[serde(default)]
    mountpoint: Option<PathBuf>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// A named volume as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    /// Always [`DRIVER`].
    pub driver: String,
    /// The host directory mounted into containers.
    pub mountpoint: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// The driver options given at creation.
    pub options: BTreeMap<String, String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created: u64,
}

impl Volume {
    /// True for a bind-type local volume (`type=none,o=bind,device=…`).
    pub fn is_bind(&self) -> bool {
        bind_device(&self.name, &self.options)
            .ok()
            .flatten()
            .is_some()
    }
}

/// Docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 255 bytes.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 255
}

/// The device of a bind-type local volume, `None` for a plain one; other option sets refused.
fn bind_device(name: &str, opts: &BTreeMap<String, String>) -> Result<Option<PathBuf>> {
    let bad = |reason: String| VolumeError::Option {
        name: name.to_string(),
        reason,
    };
    if let Some(key) = opts
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "o" | "device"))
    {
        return Err(bad(format!(
            "{key:?} is unknown (expected type, o, device)"
        )));
    }
    if opts.is_empty() {
        return Ok(None);
    }
    let kind = opts.get("type").map(String::as_str);
    if kind != Some("none") {
        return Err(bad(format!(
            "type={} is not supported (only type=none,o=bind,device=<dir>)",
            kind.unwrap_or("")
        )));
    }
    let o = opts.get("o").map(String::as_str).unwrap_or("");
    if !o.split(',').any(|f| f == "bind" || f == "rbind") {
        return Err(bad(format!("o={o:?} must contain bind with type=none")));
    }
    if let Some(f) = o
        .split(',')
        .find(|f| !matches!(*f, "bind" | "rbind" | "ro" | "rw"))
    {
        return Err(bad(format!("o={o:?}: mount option {f:?} is not supported")));
    }
    let Some(device) = opts.get("device").filter(|d| !d.is_empty()) else {
        return Err(bad("device is required with type=none,o=bind".to_string()));
    };
    let device = PathBuf::from(device);
    if !device.is_absolute() {
        return Err(bad(format!(
            "device={} must be an absolute path",
            device.display()
        )));
    }
    Ok(Some(device))
}

/// Named volumes of one data root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
    store: Arc<Store>,
}

impl Volumes {
    /// Volumes under `<data_root>/volumes`, their records in `store`. Leftovers of removals a
    /// crash interrupted are swept lazily by [`Volumes::create`].
    pub fn new(data_root: &Path, store: Arc<Store>) -> Volumes {
        Volumes {
            dir: data_root.join(VOLUMES_DIR),
            store,
        }
    }

    /// `<data_root>/volumes`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn store_err(name: &str) -> impl FnOnce(StoreError) -> VolumeError + '_ {
        move |source| VolumeError::Store {
            name: name.to_string(),
            source,
        }
    }

    fn io_err<'a>(
        name: &'a str,
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> VolumeError + 'a {
        move |source| VolumeError::Io {
            name: name.to_string(),
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn to_volume(&self, rec: VolumeRecord) -> Volume {
        let body: Body = serde_json::from_value(rec.body).unwrap_or_default();
        let mountpoint = body
            .mountpoint
            .unwrap_or_else(|| self.dir.join(&rec.name).join(DATA_DIR));
        Volume {
            id: rec.id,
            name: rec.name,
            driver: body.driver.unwrap_or_else(|| DRIVER.to_string()),
            mountpoint,
            labels: rec.labels,
            options: body.options,
            created: rec.created,
        }
    }

    /// The record named `name` (names only: ids are never valid volume names' clashes).
    fn record(&self, name: &str) -> Result<Option<VolumeRecord>> {
        self.store
            .find::<VolumeRecord>(name)
            .map_err(Self::store_err(name))
    }

    /// Creates the volume `name`, or returns it unchanged when it exists (Docker's behaviour;
    /// the labels and options given are then ignored). Plain volumes get
    /// `<root>/volumes/<name>/_data`; bind-type ones (`type=none,o=bind,device=/dir`) use the
    /// existing directory `device` as their mountpoint.
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        driver_opts: BTreeMap<String, String>,
    ) -> Result<Volume> {
        self.create_with_driver(name, DRIVER, labels, driver_opts)
    }

    /// [`Volumes::create`] naming the driver (a compose file's `driver:`); only `local`.
    pub fn create_with_driver(
        &self,
        name: &str,
        driver: &str,
        labels: BTreeMap<String, String>,
        driver_opts: BTreeMap<String, String>,
    ) -> Result<Volume> {
        if !valid_name(name) {
            return Err(VolumeError::InvalidName {
                name: name.to_string(),
            });
        }
        if driver != DRIVER {
            return Err(VolumeError::Driver {
                name: name.to_string(),
                driver: driver.to_string(),
            });
        }
        if let Some(rec) = self.record(name)?.filter(|r| r.name == name) {
            return Ok(self.to_volume(rec));
        }
        let device = bind_device(name, &driver_opts)?;
        self.sweep();
        let (mountpoint, made) = match device {
            Some(device) => {
                let meta = fs::metadata(&device).map_err(|source| VolumeError::Device {
                    name: name.to_string(),
                    device: device.clone(),
                    source,
                })?;
                if !meta.is_dir() {
                    return Err(VolumeError::Device {
                        name: name.to_string(),
                        device,
                        source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                    });
                }
                (device, None)
            }
            None => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o701)
                    .create(&self.dir)
                    .map_err(Self::io_err(name, "create", &self.dir))?;
                let vdir = self.dir.join(name);
                let made = match fs::DirBuilder::new().mode(0o755).create(&vdir) {
                    Ok(()) => Some(vdir.clone()),
                    // A directory without a record: left by a create a crash interrupted.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                    Err(e) => return Err(Self::io_err(name, "create", &vdir)(e)),
                };
                let data = vdir.join(DATA_DIR);
                match fs::create_dir(&data) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        if let Some(m) = &made {
                            let _ = fs::remove_dir_all(m);
                        }
                        return Err(Self::io_err(name, "create", &data)(e));
                    }
                }
                let _ = fs::set_permissions(&data, fs::Permissions::from_mode(0o755));
                (data, made)
            }
        };
        let undo = || {
            if let Some(m) = &made {
                let _ = fs::remove_dir_all(m);
            }
        };
        let mut rec = match VolumeRecord::new(name, labels) {
            Ok(r) => r,
            Err(e) => {
                undo();
                return Err(Self::store_err(name)(e));
            }
        };
        let body = Body {
            driver: Some(DRIVER.to_string()),
            mountpoint: Some(mountpoint),
            options: driver_opts,
        };
        rec.body = serde_json::to_value(&body).unwrap_or_default();
        match self.store.insert(&rec) {
            Ok(()) => Ok(self.to_volume(rec)),
            // Created concurrently under the same name: that one wins, unchanged.
            Err(StoreError::NameConflict { .. }) => {
                match self.record(name)?.filter(|r| r.name == name) {
                    Some(other) => Ok(self.to_volume(other)),
                    None => Err(VolumeError::NotFound {
                        name: name.to_string(),
                    }),
                }
            }
            Err(e) => {
                undo();
                Err(Self::store_err(name)(e))
            }
        }
    }

    /// The volume with this name or id.
    pub fn get(&self, name: &str) -> Result<Volume> {
        match self.record(name)? {
            Some(rec) => Ok(self.to_volume(rec)),
            None => Err(VolumeError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Every volume, by name; with a filter `key` or `key=value`, only those with that label.
    pub fn list(&self, label: Option<&str>) -> Result<Vec<Volume>> {
        let records = match label {
            Some(l) => match l.split_once('=') {
                Some((k, v)) => self.store.list_by_label::<VolumeRecord>(k, Some(v)),
                None => self.store.list_by_label::<VolumeRecord>(l, None),
            },
            None => self.store.list::<VolumeRecord>(),
        }
        .map_err(Self::store_err(label.unwrap_or("*")))?;
        Ok(records.into_iter().map(|r| self.to_volume(r)).collect())
    }

    /// Removes the volume `name` (name or id) and its directory; a bind-type volume's device is
    /// left alone. Refused while `in_use(name)` names containers. With `force`, a missing
    /// volume is not an error (`Ok(None)`).
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Option<Volume>> {
        let Some(rec) = self.record(name)? else {
            if force {
                return Ok(None);
            }
            return Err(VolumeError::NotFound {
                name: name.to_string(),
            });
        };
        let volume = self.to_volume(rec);
        let containers = in_use(&volume.name);
        if !containers.is_empty() {
            return Err(VolumeError::InUse {
                name: volume.name,
                containers,
            });
        }
        // The directory is moved aside before the record goes, so a failure of either leaves
        // the volume whole, and a new volume of the same name never finds the old content.
        let vdir = self.dir.join(&volume.name);
        let aside = self.dir.join(format!("{REMOVING}{}", volume.id));
        let moved = match fs::rename(&vdir, &aside) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(Self::io_err(&volume.name, "move aside", &vdir)(e)),
        };
        if let Err(e) = self.store.remove::<VolumeRecord>(&volume.id) {
            if moved {
                let _ = fs::rename(&aside, &vdir);
            }
            return Err(Self::store_err(&volume.name)(e));
        }
        if moved {
            fs::remove_dir_all(&aside).map_err(Self::io_err(&volume.name, "remove", &aside))?;
        }
        Ok(Some(volume))
    }

    /// Removes every volume `in_use` names no container for (with a label filter, only those
    /// carrying it); returns the removed volumes.
    pub fn prune(
        &self,
        label: Option<&str>,
        in_use: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Vec<Volume>> {
        let mut removed = Vec::new();
        for v in self.list(label)? {
            if !in_use(&v.name).is_empty() {
                continue;
            }
            match self.remove(&v.id, true, in_use) {
                Ok(Some(v)) => removed.push(v),
                Ok(None) | Err(VolumeError::InUse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Deletes directories of removals a crash interrupted.
    fn sweep(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(REMOVING) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}
