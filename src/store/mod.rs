//! The embedded state database (redb) and the on-disk layout of the data root.
//!
//! `<root>/state.redb` holds every object record ([`records`]: containers, networks, volumes,
//! projects) with a name → id index per kind (names are unique within a kind; a clash is a
//! [`StoreError::NameConflict`]) and a label index for listing by label. Every change is one
//! write transaction, committed durably before the call returns, so a daemon killed at any
//! moment loses nothing it acknowledged. The schema version lives in the `meta` table;
//! [`Store::open`] runs the [`migrate`] chain from the recorded version to [`SCHEMA_VERSION`]
//! inside one transaction, and refuses a database written by a newer flotilla.

pub mod records;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use redb::{
    Database, Durability, MultimapTableHandle, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, WriteTransaction,
};

pub use records::{ContainerRecord, NetworkRecord, Object, ProjectRecord, VolumeRecord};

/// The schema version this build writes; [`migrate`] brings older databases up to it.
pub const SCHEMA_VERSION: u64 = 1;

/// The database file inside the data root.
pub const DB_FILE: &str = "state.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema_version";

/// Read cache of the database; the default (1 GiB) is far more than the daemon's records need.
const CACHE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create the data root {}: {source}", path.display())]
    CreateRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("open the state database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error("begin a transaction on the state database: {0}")]
    Begin(Box<redb::TransactionError>),
    #[error("open the table {table}: {source}")]
    Table {
        table: String,
        source: Box<redb::TableError>,
    },
    #[error("read the table {table}: {source}")]
    Read {
        table: String,
        source: Box<redb::StorageError>,
    },
    #[error("write the table {table}: {source}")]
    Write {
        table: String,
        source: Box<redb::StorageError>,
    },
    #[error("commit to the state database: {0}")]
    Commit(Box<redb::CommitError>),
    #[error("set the durability of a state database transaction: {0}")]
    Durability(Box<redb::SetDurabilityError>),
    #[error("{kind} name {name:?} is already in use by {id}")]
    NameConflict {
        kind: &'static str,
        name: String,
        id: String,
    },
    #[error("{kind} {id} already exists")]
    IdConflict { kind: &'static str, id: String },
    #[error("{kind} {key:?} not found")]
    NotFound { kind: &'static str, key: String },
    #[error("decode the {kind} record {id}: {source}")]
    Decode {
        kind: &'static str,
        id: String,
        source: serde_json::Error,
    },
    #[error("encode the {kind} record {id}: {source}")]
    Encode {
        kind: &'static str,
        id: String,
        source: serde_json::Error,
    },
    #[error(
        "the state database has schema version {found}, newer than this flotilla knows ({supported}); \
         use a newer flotilla"
    )]
    TooNew { found: u64, supported: u64 },
    #[error("no migration of the state database from schema version {from}")]
    NoMigration { from: u64 },
    #[error("read random bytes for a new id: {0}")]
    Random(std::io::Error),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

fn table_err(table: &str) -> impl FnOnce(redb::TableError) -> StoreError + '_ {
    move |e| StoreError::Table {
        table: table.to_string(),
        source: Box::new(e),
    }
}

fn read_err(table: &str) -> impl FnOnce(redb::StorageError) -> StoreError + '_ {
    move |e| StoreError::Read {
        table: table.to_string(),
        source: Box::new(e),
    }
}

fn write_err(table: &str) -> impl FnOnce(redb::StorageError) -> StoreError + '_ {
    move |e| StoreError::Write {
        table: table.to_string(),
        source: Box::new(e),
    }
}

fn begin_err(e: redb::TransactionError) -> StoreError {
    StoreError::Begin(Box::new(e))
}

fn commit_err(e: redb::CommitError) -> StoreError {
    StoreError::Commit(Box::new(e))
}

/// A fresh object id: 64 hexadecimal digits from the kernel's random source.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(StoreError::Random)?;
    Ok(hex::encode(bytes))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The state database of one data root.
pub struct Store {
    db: Database,
    path: PathBuf,
    group: Mutex<GroupCommit>,
    flushed: Condvar,
}

/// Group commit: writes are committed without a flush, then made durable together by one
/// flush (an empty durable commit, which persists every commit before it); a write returns
/// only once a flush that followed it has completed, so it is as durable as before, but ten
/// concurrent writes (a `compose up` reserving ten addresses) share one or two `fdatasync`s
/// instead of taking ten in turn.
#[derive(Debug, Default)]
struct GroupCommit {
    /// Writes committed so far (a sequence number).
    committed: u64,
    /// Writes known to be on disk.
    durable: u64,
    /// Whether a flush is running.
    flushing: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `<data_root>/state.redb` and migrates it to [`SCHEMA_VERSION`].
    pub fn open(data_root: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_root).map_err(|source| StoreError::CreateRoot {
            path: data_root.to_path_buf(),
            source,
        })?;
        let path = data_root.join(DB_FILE);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                source: Box::new(e),
            })?;
        let store = Store {
            db,
            path,
            group: Mutex::default(),
            flushed: Condvar::new(),
        };
        store.upgrade()?;
        Ok(store)
    }

    /// Commits `txn` and returns once it is on disk ([`GroupCommit`]).
    fn commit(&self, mut txn: WriteTransaction) -> Result<()> {
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Durability(Box::new(e)))?;
        txn.commit().map_err(commit_err)?;
        let mut group = self.group.lock().unwrap_or_else(|p| p.into_inner());
        group.committed += 1;
        let mine = group.committed;
        loop {
            if group.durable >= mine {
                return Ok(());
            }
            if group.flushing {
                group = self.flushed.wait(group).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            group.flushing = true;
            let target = group.committed;
            drop(group);
            let flushed = self.flush();
            group = self.group.lock().unwrap_or_else(|p| p.into_inner());
            group.flushing = false;
            if flushed.is_ok() {
                group.durable = group.durable.max(target);
            }
            self.flushed.notify_all();
            flushed?;
        }
    }

    /// An empty durable commit: every commit before it is on disk when it returns.
    fn flush(&self) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(begin_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Durability(Box::new(e)))?;
        txn.commit().map_err(commit_err)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn upgrade(&self) -> Result<()> {
        let txn = self.db.begin_write().map_err(begin_err)?;
        let found = {
            let meta = txn.open_table(META).map_err(table_err(META.name()))?;
            meta.get(SCHEMA_KEY)
                .map_err(read_err(META.name()))?
                .map_or(0, |v| v.value())
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        migrate(&txn, found, SCHEMA_VERSION)?;
        {
            let mut meta = txn.open_table(META).map_err(table_err(META.name()))?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
                .map_err(write_err(META.name()))?;
        }
        txn.commit().map_err(commit_err)?;
        tracing::info!(from = found, to = SCHEMA_VERSION, path = %self.path.display(), "state database migrated");
        Ok(())
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(begin_err)?;
        let meta = txn.open_table(META).map_err(table_err(META.name()))?;
        Ok(meta
            .get(SCHEMA_KEY)
            .map_err(read_err(META.name()))?
            .map_or(0, |v| v.value()))
    }

    /// Adds a new record; its id and its name must both be unused within its kind.
    pub fn insert<T: Object>(&self, rec: &T) -> Result<()> {
        let bytes = encode(rec)?;
        let txn = self.db.begin_write().map_err(begin_err)?;
        {
            let mut records = txn
                .open_table(T::RECORDS)
                .map_err(table_err(T::RECORDS.name()))?;
            let mut names = txn
                .open_table(T::BY_NAME)
                .map_err(table_err(T::BY_NAME.name()))?;
            if records
                .get(rec.id())
                .map_err(read_err(T::RECORDS.name()))?
                .is_some()
            {
                return Err(StoreError::IdConflict {
                    kind: T::KIND,
                    id: rec.id().to_string(),
                });
            }
            if let Some(holder) = names.get(rec.name()).map_err(read_err(T::BY_NAME.name()))? {
                return Err(StoreError::NameConflict {
                    kind: T::KIND,
                    name: rec.name().to_string(),
                    id: holder.value().to_string(),
                });
            }
            records
                .insert(rec.id(), bytes.as_slice())
                .map_err(write_err(T::RECORDS.name()))?;
            names
                .insert(rec.name(), rec.id())
                .map_err(write_err(T::BY_NAME.name()))?;
            index_labels::<T>(&txn, rec.id(), rec.labels(), true)?;
        }
        self.commit(txn)
    }

    /// Replaces an existing record (same id); a new name must be unused.
    pub fn update<T: Object>(&self, rec: &T) -> Result<()> {
        let bytes = encode(rec)?;
        let txn = self.db.begin_write().map_err(begin_err)?;
        {
            let mut records = txn
                .open_table(T::RECORDS)
                .map_err(table_err(T::RECORDS.name()))?;
            let old: T = match records.get(rec.id()).map_err(read_err(T::RECORDS.name()))? {
                Some(v) => decode::<T>(rec.id(), v.value())?,
                None => {
                    return Err(StoreError::NotFound {
                        kind: T::KIND,
                        key: rec.id().to_string(),
                    });
                }
            };
            if old.name() != rec.name() {
                let mut names = txn
                    .open_table(T::BY_NAME)
                    .map_err(table_err(T::BY_NAME.name()))?;
                if let Some(holder) = names.get(rec.name()).map_err(read_err(T::BY_NAME.name()))? {
                    return Err(StoreError::NameConflict {
                        kind: T::KIND,
                        name: rec.name().to_string(),
                        id: holder.value().to_string(),
                    });
                }
                names
                    .remove(old.name())
                    .map_err(write_err(T::BY_NAME.name()))?;
                names
                    .insert(rec.name(), rec.id())
                    .map_err(write_err(T::BY_NAME.name()))?;
            }
            records
                .insert(rec.id(), bytes.as_slice())
                .map_err(write_err(T::RECORDS.name()))?;
            index_labels::<T>(&txn, rec.id(), old.labels(), false)?;
            index_labels::<T>(&txn, rec.id(), rec.labels(), true)?;
        }
        self.commit(txn)
    }

    /// The record with this id.
    pub fn get<T: Object>(&self, id: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(begin_err)?;
        let records = txn
            .open_table(T::RECORDS)
            .map_err(table_err(T::RECORDS.name()))?;
        match records.get(id).map_err(read_err(T::RECORDS.name()))? {
            Some(v) => Ok(Some(decode(id, v.value())?)),
            None => Ok(None),
        }
    }

    /// The record with this id or, failing that, this name.
    pub fn find<T: Object>(&self, id_or_name: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(begin_err)?;
        let records = txn
            .open_table(T::RECORDS)
            .map_err(table_err(T::RECORDS.name()))?;
        if let Some(v) = records
            .get(id_or_name)
            .map_err(read_err(T::RECORDS.name()))?
        {
            return Ok(Some(decode(id_or_name, v.value())?));
        }
        let names = txn
            .open_table(T::BY_NAME)
            .map_err(table_err(T::BY_NAME.name()))?;
        let Some(id) = names.get(id_or_name).map_err(read_err(T::BY_NAME.name()))? else {
            return Ok(None);
        };
        let id = id.value().to_string();
        match records
            .get(id.as_str())
            .map_err(read_err(T::RECORDS.name()))?
        {
            Some(v) => Ok(Some(decode(&id, v.value())?)),
            None => Ok(None),
        }
    }

    /// Removes the record with this id and its index entries; returns it.
    pub fn remove<T: Object>(&self, id: &str) -> Result<T> {
        let txn = self.db.begin_write().map_err(begin_err)?;
        let rec = {
            let mut records = txn
                .open_table(T::RECORDS)
                .map_err(table_err(T::RECORDS.name()))?;
            let rec: T = match records.remove(id).map_err(write_err(T::RECORDS.name()))? {
                Some(v) => decode(id, v.value())?,
                None => {
                    return Err(StoreError::NotFound {
                        kind: T::KIND,
                        key: id.to_string(),
                    });
                }
            };
            let mut names = txn
                .open_table(T::BY_NAME)
                .map_err(table_err(T::BY_NAME.name()))?;
            names
                .remove(rec.name())
                .map_err(write_err(T::BY_NAME.name()))?;
            index_labels::<T>(&txn, rec.id(), rec.labels(), false)?;
            rec
        };
        self.commit(txn)?;
        Ok(rec)
    }

    /// Every record of this kind, by name.
    pub fn list<T: Object>(&self) -> Result<Vec<T>> {
        let txn = self.db.begin_read().map_err(begin_err)?;
        let names = txn
            .open_table(T::BY_NAME)
            .map_err(table_err(T::BY_NAME.name()))?;
        let records = txn
            .open_table(T::RECORDS)
            .map_err(table_err(T::RECORDS.name()))?;
        let mut out = Vec::new();
        for entry in names.iter().map_err(read_err(T::BY_NAME.name()))? {
            let (_, id) = entry.map_err(read_err(T::BY_NAME.name()))?;
            let id = id.value();
            if let Some(v) = records.get(id).map_err(read_err(T::RECORDS.name()))? {
                out.push(decode(id, v.value())?);
            }
        }
        Ok(out)
    }

    /// The records carrying label `key` (with this value, when one is given), by name.
    pub fn list_by_label<T: Object>(&self, key: &str, value: Option<&str>) -> Result<Vec<T>> {
        let txn = self.db.begin_read().map_err(begin_err)?;
        let labels = txn
            .open_multimap_table(T::BY_LABEL)
            .map_err(table_err(T::BY_LABEL.name()))?;
        let records = txn
            .open_table(T::RECORDS)
            .map_err(table_err(T::RECORDS.name()))?;
        let mut ids = Vec::new();
        match value {
            Some(value) => {
                let k = records::label_key(key, value);
                for id in labels
                    .get(k.as_str())
                    .map_err(read_err(T::BY_LABEL.name()))?
                {
                    ids.push(
                        id.map_err(read_err(T::BY_LABEL.name()))?
                            .value()
                            .to_string(),
                    );
                }
            }
            None => {
                // Every `key\0…` entry: the keys from `key\0` up to (not including) `key\x01`.
                let from = format!("{key}\0");
                let to = format!("{key}\u{1}");
                for entry in labels
                    .range(from.as_str()..to.as_str())
                    .map_err(read_err(T::BY_LABEL.name()))?
                {
                    let (_, values) = entry.map_err(read_err(T::BY_LABEL.name()))?;
                    for id in values {
                        ids.push(
                            id.map_err(read_err(T::BY_LABEL.name()))?
                                .value()
                                .to_string(),
                        );
                    }
                }
            }
        }
        let mut out: Vec<T> = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = records
                .get(id.as_str())
                .map_err(read_err(T::RECORDS.name()))?
            {
                out.push(decode(&id, v.value())?);
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(out)
    }

    /// How many records of this kind exist.
    pub fn count<T: Object>(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(begin_err)?;
        let records = txn
            .open_table(T::RECORDS)
            .map_err(table_err(T::RECORDS.name()))?;
        records.len().map_err(read_err(T::RECORDS.name()))
    }
}

fn encode<T: Object>(rec: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(rec).map_err(|source| StoreError::Encode {
        kind: T::KIND,
        id: rec.id().to_string(),
        source,
    })
}

fn decode<T: Object>(id: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        kind: T::KIND,
        id: id.to_string(),
        source,
    })
}

/// Adds (`add`) or removes the label index entries of one record.
fn index_labels<T: Object>(
    txn: &WriteTransaction,
    id: &str,
    labels: &BTreeMap<String, String>,
    add: bool,
) -> Result<()> {
    let mut table = txn
        .open_multimap_table(T::BY_LABEL)
        .map_err(table_err(T::BY_LABEL.name()))?;
    for (k, v) in labels {
        let key = records::label_key(k, v);
        if add {
            table
                .insert(key.as_str(), id)
                .map_err(write_err(T::BY_LABEL.name()))?;
        } else {
            table
                .remove(key.as_str(), id)
                .map_err(write_err(T::BY_LABEL.name()))?;
        }
    }
    Ok(())
}

/// Creates the three tables of one kind (opening a table in a write transaction creates it).
fn create_tables<T: Object>(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(T::RECORDS)
        .map_err(table_err(T::RECORDS.name()))?;
    txn.open_table(T::BY_NAME)
        .map_err(table_err(T::BY_NAME.name()))?;
    txn.open_multimap_table(T::BY_LABEL)
        .map_err(table_err(T::BY_LABEL.name()))?;
    Ok(())
}

/// Brings the database from schema version `from` to `to`, one step at a time, inside the
/// caller's transaction (a failed step leaves the database as it was). Version 0 is a database
/// that was just created. A later schema change adds an arm here and bumps [`SCHEMA_VERSION`].
pub fn migrate(txn: &WriteTransaction, from: u64, to: u64) -> Result<()> {
    for version in from..to {
        match version {
            0 => {
                create_tables::<ContainerRecord>(txn)?;
                create_tables::<NetworkRecord>(txn)?;
                create_tables::<VolumeRecord>(txn)?;
                create_tables::<ProjectRecord>(txn)?;
            }
            _ => return Err(StoreError::NoMigration { from: version }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn create_read_update_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut v = VolumeRecord::new("data", labels(&[("a", "1")])).unwrap();
        v.body = serde_json::json!({"driver": "local"});
        store.insert(&v).unwrap();
        assert_eq!(store.get::<VolumeRecord>(&v.id).unwrap(), Some(v.clone()));
        assert_eq!(store.find::<VolumeRecord>("data").unwrap(), Some(v.clone()));
        assert_eq!(store.find::<VolumeRecord>(&v.id).unwrap(), Some(v.clone()));
        assert_eq!(store.find::<VolumeRecord>("nope").unwrap(), None);
        // Kinds are separate: the same name is free for a network.
        assert_eq!(store.find::<NetworkRecord>("data").unwrap(), None);
        assert_eq!(store.count::<VolumeRecord>().unwrap(), 1);

        let mut renamed = v.clone();
        renamed.name = "data2".into();
        renamed.labels = labels(&[("b", "2")]);
        store.update(&renamed).unwrap();
        assert_eq!(store.find::<VolumeRecord>("data").unwrap(), None);
        assert_eq!(
            store.find::<VolumeRecord>("data2").unwrap(),
            Some(renamed.clone())
        );
        assert!(
            store
                .list_by_label::<VolumeRecord>("a", None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.list_by_label::<VolumeRecord>("b", Some("2")).unwrap(),
            vec![renamed.clone()]
        );

        let removed: VolumeRecord = store.remove(&v.id).unwrap();
        assert_eq!(removed, renamed);
        assert_eq!(store.get::<VolumeRecord>(&v.id).unwrap(), None);
        assert_eq!(store.find::<VolumeRecord>("data2").unwrap(), None);
        assert!(store.list::<VolumeRecord>().unwrap().is_empty());
        assert!(
            store
                .list_by_label::<VolumeRecord>("b", None)
                .unwrap()
                .is_empty()
        );
        let err = store.remove::<VolumeRecord>(&v.id).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let err = store.update(&renamed).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    }

    #[test]
    fn names_are_unique_within_a_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ContainerRecord::new("web-1", BTreeMap::new()).unwrap();
        store.insert(&a).unwrap();
        let b = ContainerRecord::new("web-1", BTreeMap::new()).unwrap();
        let err = store.insert(&b).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("container name \"web-1\" is already in use by {}", a.id)
        );
        let err = store.insert(&a).unwrap_err();
        assert!(matches!(err, StoreError::IdConflict { .. }), "{err}");
        // A rename onto a taken name fails and changes nothing.
        let c = ContainerRecord::new("web-2", BTreeMap::new()).unwrap();
        store.insert(&c).unwrap();
        let mut clash = c.clone();
        clash.name = "web-1".into();
        assert!(matches!(
            store.update(&clash).unwrap_err(),
            StoreError::NameConflict { .. }
        ));
        assert_eq!(store.find::<ContainerRecord>("web-2").unwrap(), Some(c));
        let names: Vec<String> = store
            .list::<ContainerRecord>()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
    }

    #[test]
    fn list_by_label() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = "com.docker.compose.project";
        for (name, project) in [("a-web-1", "a"), ("a-db-1", "a"), ("b-web-1", "b")] {
            let r = ContainerRecord::new(name, labels(&[(p, project)])).unwrap();
            store.insert(&r).unwrap();
        }
        store
            .insert(&ContainerRecord::new("loose", BTreeMap::new()).unwrap())
            .unwrap();
        // A label whose key extends another's is not confused with it.
        store
            .insert(
                &ContainerRecord::new("x", labels(&[("com.docker.compose.projectx", "a")]))
                    .unwrap(),
            )
            .unwrap();
        let names = |v: Vec<ContainerRecord>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list_by_label(p, Some("a")).unwrap()),
            ["a-db-1", "a-web-1"]
        );
        assert_eq!(
            names(store.list_by_label(p, None).unwrap()),
            ["a-db-1", "a-web-1", "b-web-1"]
        );
        assert!(
            store
                .list_by_label::<ContainerRecord>(p, Some("c"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn reopen_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let n = NetworkRecord::new("app_default", BTreeMap::new()).unwrap();
        {
            let store = Store::open(&root).unwrap();
            assert_eq!(store.path(), root.join(DB_FILE));
            assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
            store.insert(&n).unwrap();
        }
        let store = Store::open(&root).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.find::<NetworkRecord>("app_default").unwrap(), Some(n));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    }

    #[test]
    fn migration_chain_refuses_unknown_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        migrate(&txn, 0, SCHEMA_VERSION).unwrap();
        let err = migrate(&txn, SCHEMA_VERSION, SCHEMA_VERSION + 1).unwrap_err();
        assert!(matches!(err, StoreError::NoMigration { from } if from == SCHEMA_VERSION));
    }

    const CRASH_DIR: &str = "FLOTILLA_STORE_CRASH_DIR";

    /// The child half of `committed_data_survives_a_crash`: commits a record, then aborts the
    /// process without running any destructor. Does nothing when run on its own.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR) else {
            return;
        };
        let store = Store::open(Path::new(&dir)).unwrap();
        let v = VolumeRecord::new("survivor", BTreeMap::new()).unwrap();
        store.insert(&v).unwrap();
        // Concurrent writes share flushes (group commit); each is on disk when it returns.
        std::thread::scope(|s| {
            for i in 0..16 {
                let store = &store;
                s.spawn(move || {
                    let mut v = VolumeRecord::new(&format!("v{i}"), BTreeMap::new()).unwrap();
                    store.insert(&v).unwrap();
                    v.labels.insert("n".into(), i.to_string());
                    store.update(&v).unwrap();
                });
            }
        });
        std::process::abort();
    }

    #[test]
    fn committed_data_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::crash_child", "--nocapture"])
            .env(CRASH_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child should have aborted");
        let store = Store::open(dir.path()).unwrap();
        let v = store.find::<VolumeRecord>("survivor").unwrap();
        assert!(v.is_some(), "the committed record is lost");
        for i in 0..16 {
            let v = store.find::<VolumeRecord>(&format!("v{i}")).unwrap();
            let v = v.unwrap_or_else(|| panic!("v{i} is lost"));
            assert_eq!(
                v.labels.get("n"),
                Some(&i.to_string()),
                "v{i}'s update is lost"
            );
        }
    }
}
