//! Helpers shared by integration tests (`mod common;`).

#![allow(dead_code)]

pub mod compose;
pub mod daemon;
pub mod image_daemon;
pub mod images;
pub mod netdaemon;
pub mod registry;
pub mod shim;

/// The host's links whose names start with `start` (`flt<prefix>-`), sorted, once `ok` holds
/// for them or 10 s have passed. A removed container's veth pair goes with its network
/// namespace, which the kernel tears down in the background (10–40 ms here): checks made right
/// after a removal wait for it; a link that stays is still reported.
pub fn links_until(start: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut links: Vec<String> = std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(start))
            .collect();
        links.sort();
        if ok(&links) || std::time::Instant::now() >= deadline {
            return links;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether `ok` holds within 10 s (polled every 10 ms): for what the daemon finishes in the
/// background after answering (a removed network's rules and bridge).
pub fn eventually(mut ok: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
