//! The event bus: every state change the engine makes (a volume created, a container started,
//! …) is published here as an [`Event`]; `GET /v1/events` streams them to clients. A slow
//! subscriber that falls more than [`CAPACITY`] events behind misses the oldest ones (it is
//! told how many) rather than slowing the engine down. `--since` (a replay from the store) and
//! filters arrive with the events part of the engine issue.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it misses some.
pub const CAPACITY: usize = 1024;

/// One state change, as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// When it happened, milliseconds since the Unix epoch.
    pub time: u64,
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
            kind: kind.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            name: name.to_string(),
            attributes: BTreeMap::new(),
        }
    }
}

/// The publishing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus { tx }
    }

    /// Publishes an event to every current subscriber (none listening is fine).
    pub fn publish(&self, event: Event) {
        tracing::debug!(kind = %event.kind, action = %event.action, name = %event.name, "event");
        let _ = self.tx.send(event);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
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
        assert_eq!(rx.recv().await.unwrap().action, "remove");
        assert!(rx.try_recv().is_err());
    }
}
