//! The event bus: every state change the engine makes (a container created, started, died, an
//! image pulled, a volume removed, …) is published here as an [`Event`]. Each event gets the
//! next sequence number, is appended to the event log `<root>/events.jsonl` (one JSON object
//! per line, written before subscribers see it) and broadcast to the subscribers of
//! `GET /v1/events`. The log is bounded: past [`LOG_MAX_BYTES`] it is renamed to
//! `events.jsonl.1` (replacing the older one) and a new one begins, so between one and two
//! logs' worth of history can be replayed (`since`/`until`). A daemon killed at any moment
//! loses no event it published (the line is in the kernel's page cache before the bus returns);
//! a torn last line after a crash is skipped when reading. A slow live subscriber that falls
//! more than [`CAPACITY`] events behind misses the oldest ones (it is told how many) rather than
//! slowing the engine down.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it misses some.
pub const CAPACITY: usize = 1024;
/// The event log's file name in the data root.
pub const LOG_FILE: &str = "events.jsonl";
/// The size past which the event log is rotated.
pub const LOG_MAX_BYTES: u64 = 4 << 20;

/// One state change, as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// When it happened, milliseconds since the Unix epoch.
    pub time: u64,
    /// The daemon's sequence number of the event (increasing, across restarts).
    #[serde(default)]
    pub seq: u64,
    /// The kind of object: `container`, `image`, `network`, `volume`, `project`.
    pub kind: String,
    /// What happened: `create`, `start`, `die`, `destroy`, `remove`, …
    pub action: String,
    /// The object's id.
    pub id: String,
    /// The object's name.
    pub name: String,
    /// More about it (exit code, image, labels, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event about `kind` object `id` named `name`, happening now.
    pub fn now(kind: &str, action: &str, id: &str, name: &str) -> Self {
        Event {
            time: crate::store::now_ms(),
            seq: 0,
            kind: kind.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            name: name.to_string(),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds an attribute.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.attributes.insert(key.to_string(), value.to_string());
        self
    }
}

/// Why an event filter or time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "event filter key {0:?}: expected type, event, container, image, volume, network, id or name"
    )]
    UnknownKey(String),
    #[error("event filters {0:?}: expected a JSON object of string lists")]
    Syntax(String),
    #[error("time {0:?}: expected RFC 3339 or Unix seconds")]
    Time(String),
}

/// `filters` of `GET /v1/events`: for each key one of its values must match (keys combine with
/// "and", values of one key with "or"), as Docker's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter(pub BTreeMap<String, Vec<String>>);

const FILTER_KEYS: [&str; 9] = [
    "type",
    "event",
    "action",
    "container",
    "image",
    "volume",
    "network",
    "id",
    "name",
];

impl EventFilter {
    /// Parses `{"type":["container"],"event":["die"]}`; an empty text is no filter.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let map: BTreeMap<String, Vec<String>> =
            serde_json::from_str(text).map_err(|_| FilterError::Syntax(text.to_string()))?;
        for key in map.keys() {
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(FilterError::UnknownKey(key.clone()));
            }
        }
        Ok(EventFilter(map))
    }

    /// Adds `key=value` (the CLI's `--filter`).
    pub fn add(&mut self, key: &str, value: &str) -> Result<(), FilterError> {
        if !FILTER_KEYS.contains(&key) {
            return Err(FilterError::UnknownKey(key.to_string()));
        }
        self.0
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, e: &Event) -> bool {
        self.0.iter().all(|(key, values)| {
            values.is_empty()
                || values.iter().any(|v| match key.as_str() {
                    "type" => e.kind == *v,
                    "event" | "action" => e.action == *v,
                    "id" => e.id.starts_with(v.as_str()),
                    "name" => e.name == *v,
                    kind => {
                        e.kind == kind
                            && (e.name == *v || (!v.is_empty() && e.id.starts_with(v.as_str())))
                    }
                })
        })
    }
}

/// A time of `since`/`until`: RFC 3339 or Unix seconds (with a fraction), in milliseconds.
pub fn parse_time(text: &str) -> Result<u64, FilterError> {
    let t = crate::runtime::time::parse(text).ok_or_else(|| FilterError::Time(text.to_string()))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| FilterError::Time(text.to_string()))?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The event log on disk.
#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: File,
    size: u64,
}

#[derive(Debug)]
struct Inner {
    log: Option<Log>,
    seq: u64,
}

/// The publishing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    inner: Arc<Mutex<Inner>>,
    path: Option<PathBuf>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// The events of one log file, oldest first; unreadable or torn lines are skipped.
fn read_log(path: &Path) -> io::Result<Vec<Event>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        if let Ok(e) = serde_json::from_slice::<Event>(&line) {
            out.push(e);
        }
    }
    Ok(out)
}

fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

impl EventBus {
    /// A bus that keeps nothing on disk (tests, tools).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus {
            tx,
            inner: Arc::new(Mutex::new(Inner { log: None, seq: 0 })),
            path: None,
        }
    }

    /// A bus that appends to `<root>/events.jsonl`, continuing its sequence numbers.
    pub fn persistent(data_root: &Path) -> io::Result<Self> {
        let path = data_root.join(LOG_FILE);
        let last = read_log(&path)?
            .last()
            .map(|e| e.seq)
            .or(read_log(&rotated(&path))?.last().map(|e| e.seq))
            .unwrap_or(0);
        let (file, size) = open_append(&path)?;
        let (tx, _) = broadcast::channel(CAPACITY);
        Ok(EventBus {
            tx,
            inner: Arc::new(Mutex::new(Inner {
                log: Some(Log {
                    path: path.clone(),
                    file,
                    size,
                }),
                seq: last,
            })),
            path: Some(path),
        })
    }

    /// Numbers the event, appends it to the log and publishes it to every current subscriber
    /// (none listening is fine). A log that cannot be written is reported, not fatal.
    pub fn publish(&self, mut event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.seq += 1;
        event.seq = inner.seq;
        tracing::debug!(kind = %event.kind, action = %event.action, name = %event.name, "event");
        if let Some(log) = inner.log.as_mut()
            && let Err(e) = append(log, &event)
        {
            tracing::warn!(path = %log.path.display(), error = %e, "append to the event log");
        }
        let _ = self.tx.send(event);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The logged events (oldest first) with `since <= time <= until` that match `filter`.
    /// Blocking file I/O: call it off the async threads.
    pub fn replay(
        &self,
        since: Option<u64>,
        until: Option<u64>,
        filter: &EventFilter,
    ) -> io::Result<Vec<Event>> {
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        // The lock keeps a rotation from happening between the two reads.
        let _inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = read_log(&rotated(path))?;
        all.extend(read_log(path)?);
        Ok(all
            .into_iter()
            .filter(|e| since.is_none_or(|s| e.time >= s))
            .filter(|e| until.is_none_or(|u| e.time <= u))
            .filter(|e| filter.matches(e))
            .collect())
    }
}

fn append(log: &mut Log, event: &Event) -> io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
    line.push(b'\n');
    if log.size > 0 && log.size + line.len() as u64 > LOG_MAX_BYTES {
        fs::rename(&log.path, rotated(&log.path))?;
        let (file, size) = open_append(&log.path)?;
        log.file = file;
        log.size = size;
    }
    log.file.write_all(&line)?;
    log.size += line.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_later_events_in_order() {
        let bus = EventBus::new();
        bus.publish(Event::now("volume", "create", "0", "before"));
        let mut rx = bus.subscribe();
        bus.publish(Event::now("volume", "create", "1", "a"));
        bus.publish(Event::now("volume", "remove", "1", "a"));
        assert_eq!(rx.recv().await.unwrap().action, "create");
        let e = rx.recv().await.unwrap();
        assert_eq!((e.action.as_str(), e.seq), ("remove", 3));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn the_log_replays_across_restarts_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::persistent(dir.path()).unwrap();
        bus.publish(Event::now("container", "create", "abc", "web"));
        bus.publish(Event::now("container", "die", "abc", "web").with("exitCode", 3));
        bus.publish(Event::now("image", "pull", "sha256:1", "busybox"));
        drop(bus);
        // A torn line (a crash mid-write) is skipped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        f.write_all(b"{\"time\":1,\"ki").unwrap();
        f.write_all(b"\n").unwrap();
        let bus = EventBus::persistent(dir.path()).unwrap();
        bus.publish(Event::now("container", "destroy", "abc", "web"));
        let all = bus.replay(None, None, &EventFilter::default()).unwrap();
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        let f = EventFilter::parse(r#"{"type":["container"],"event":["die","destroy"]}"#).unwrap();
        let got: Vec<String> = bus
            .replay(None, None, &f)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(got, ["die", "destroy"]);
        let mut f = EventFilter::default();
        f.add("container", "web").unwrap();
        assert_eq!(bus.replay(None, None, &f).unwrap().len(), 3);
        assert!(bus.replay(Some(u64::MAX), None, &f).unwrap().is_empty());
        assert!(EventFilter::parse(r#"{"colour":["red"]}"#).is_err());
        assert!(EventFilter::parse("[1]").is_err());
    }

    #[test]
    fn the_log_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::persistent(dir.path()).unwrap();
        let big = "x".repeat(64 << 10);
        for i in 0..200 {
            bus.publish(Event::now("container", "create", &i.to_string(), "n").with("pad", &big));
        }
        let size = |p: PathBuf| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(dir.path().join(LOG_FILE)) <= LOG_MAX_BYTES);
        assert!(size(rotated(&dir.path().join(LOG_FILE))) <= LOG_MAX_BYTES);
        let all = bus.replay(None, None, &EventFilter::default()).unwrap();
        assert!(all.len() < 200 && all.len() > 60, "{}", all.len());
        assert_eq!(all.last().unwrap().seq, 200);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1714566896.5").unwrap(), 1_714_566_896_500);
        assert_eq!(
            parse_time("2024-05-01T12:34:56Z").unwrap(),
            1_714_566_896_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}
