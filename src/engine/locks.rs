//! The lock table: one `tokio::sync::Mutex` per key (`container:<id>`, `project:<name>`, …), so
//! concurrent operations on one object serialize while operations on different objects run in
//! parallel. Entries are created on first use and dropped once nobody holds or waits for them,
//! so the table stays as small as the set of objects being worked on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// Held while an operation works on one object; dropping it lets the next one in.
pub type Guard = OwnedMutexGuard<()>;

/// Per-key async locks.
#[derive(Debug, Default)]
pub struct LockTable {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl LockTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for the lock of `key` and returns it held.
    pub async fn lock(&self, key: &str) -> Guard {
        let mutex = self.entry(key);
        mutex.lock_owned().await
    }

    fn entry(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned table only means another thread panicked while inserting; the map is
        // still usable.
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let fresh = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&fresh));
        fresh
    }

    /// How many keys are currently locked or waited for.
    pub fn len(&self) -> usize {
        let map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|w| w.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_key_serializes_and_different_keys_do_not() {
        let table = Arc::new(LockTable::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (table, inside, max) = (table.clone(), inside.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                let _g = table.lock("container:a").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);

        let a = table.lock("a").await;
        let b = tokio::time::timeout(Duration::from_secs(1), table.lock("b")).await;
        assert!(b.is_ok(), "another key is not blocked");
        drop(a);
        drop(b);
        assert!(table.is_empty(), "released entries are dropped");
    }
}
