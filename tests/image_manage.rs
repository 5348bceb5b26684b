//! Removing and pruning images against real containers (root): a container's layer snapshots
//! stay while the container exists, whatever happened to the image's names and records; once
//! the container is removed, a prune removes them.
//!
//! The test has its own test daemon (tests/common/image_daemon.rs: data root, socket, config)
//! and its own cgroup prefix, and runs the real `flotilla` binary as the daemon's client for
//! `image rm` and `image prune`; the container is made and started with the runtime library on
//! the daemon's data root. A drop guard kills what the container left running (by pid, from its
//! state file), removes its cgroups and mounts, stops the daemon and removes the data root, even
//! on failure.

mod common;

use std::path::Path;
use std::process::Output;

use common::image_daemon::ImageDaemon;
use common::registry::{busybox_layer, files_layer, image_from_layers};
use flotilla::image::manage;
use flotilla::image::store::{Digest, Store};
use flotilla::image::unpack::UnpackOptions;
use flotilla::runtime::config::ContainerConfig;
use flotilla::runtime::lifecycle::{self, CreateOptions, LogsOptions, Runtime};
use flotilla::runtime::state::{self, Status};
use flotilla::runtime::sys::cgroup::{self, Cgroup};

const IMAGE: &str = "flotilla.test/keep:1";

struct Fixture {
    daemon: Option<ImageDaemon>,
    prefix: String,
    ids: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            rustix::process::geteuid().is_root(),
            "the image/container tests need root (CI runs them as root)"
        );
        Fixture {
            daemon: Some(ImageDaemon::start()),
            prefix: format!("imgmanage-{}", std::process::id()),
            ids: Vec::new(),
        }
    }

    fn daemon(&self) -> &ImageDaemon {
        self.daemon.as_ref().expect("daemon")
    }

    fn root(&self) -> &Path {
        &self.daemon().root
    }

    fn store(&self) -> Store {
        Store::open(self.root()).expect("store")
    }

    fn runtime(&self) -> Runtime {
        Runtime::new(self.root())
            .expect("runtime")
            .with_prefix(&self.prefix)
            .with_exe(Path::new(env!("CARGO_BIN_EXE_flotilla")))
    }

    fn flotilla(&self, args: &[&str]) -> Output {
        self.daemon().run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.flotilla(args);
        assert!(
            output.status.success(),
            "flotilla {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stores a two-layer image (busybox, then `/hello`) with its layers unpacked; returns the
    /// chain ids and layer blob digests.
    fn image(&self) -> (Vec<Digest>, Vec<Digest>) {
        let store = self.store();
        let image = image_from_layers(
            "amd64",
            vec![busybox_layer(), files_layer(&[("hello", "still here\n")])],
        );
        let record = image.import(&store, IMAGE);
        let mut parent = None;
        for layer in &record.layers {
            let blob = store.open_blob(&layer.blob.digest).expect("blob");
            store
                .unpack_layer(
                    parent.as_ref(),
                    &layer.diff_id,
                    std::io::BufReader::new(blob),
                    &UnpackOptions::default(),
                )
                .expect("unpack");
            parent = Some(layer.chain_id.clone());
        }
        (
            record.layers.iter().map(|l| l.chain_id.clone()).collect(),
            image.layer_digests(),
        )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        let root = daemon.root.clone();
        for id in &self.ids {
            let state_dir = root.join("containers").join(id);
            if let Ok(st) = state::read(&state_dir) {
                if let Some(pid) = st.shim_pid
                    && state::process_alive(pid, st.shim_start_time)
                    && let Some(pid) = rustix::process::Pid::from_raw(pid)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                if matches!(st.status, Status::Running | Status::Paused)
                    && let Some(pid) = st.pid.and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            if let Ok(cg) = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix))) {
                let _ = cg.destroy(true);
            }
        }
        let _ = cgroup::cleanup_prefix(&self.prefix);
        for m in lifecycle::mounts_under(&root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        // Stops the daemon and removes the data root.
        drop(daemon);
    }
}

#[test]
fn force_removed_image_keeps_its_layers_for_a_container_until_it_is_removed() {
    let mut f = Fixture::new();
    let (chain_ids, layer_blobs) = f.image();
    let store = f.store();

    // A container (created, never started: a stopped container counts as much as a running one).
    let id = f
        .runtime()
        .create(CreateOptions {
            name: Some("keeper".into()),
            image: Some(IMAGE.into()),
            config: ContainerConfig {
                command: Some(vec!["cat".into(), "/hello".into()]),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("create");
    f.ids.push(id.clone());

    // Without -f the image is refused; with it, only its name goes.
    let refused = f.flotilla(&["image", "rm", IMAGE]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use by container(s) keeper"),
        "{refused:?}"
    );
    let removed = f.ok(&["image", "rm", "-f", IMAGE]);
    assert!(removed.contains(&format!("Untagged: {IMAGE}")), "{removed}");
    assert!(!removed.contains("Deleted:"), "{removed}");

    // The image is now dangling, and prune -a keeps it, its blobs and its snapshots.
    let records = manage::list(&store).expect("list");
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(manage::is_dangling(&records[0]), "{}", records[0].name);
    let pruned = f.ok(&["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("Total reclaimed space: 0B"), "{pruned}");
    // The same when the last record is gone some other way: the container's own record of its
    // layers keeps the snapshots.
    std::fs::remove_file(flotilla::image::record::record_path(
        &store,
        &records[0].name,
    ))
    .expect("remove the dangling record");
    f.ok(&["image", "prune", "-a", "-f"]);
    for chain_id in &chain_ids {
        assert!(store.has_layer(chain_id), "snapshot {chain_id} pruned");
    }

    // The container still starts and sees the image's files.
    let rt = f.runtime();
    rt.start(&id).expect("start");
    assert_eq!(rt.wait(&id).expect("wait"), 0);
    let logs = rt
        .logs_text(&id, &LogsOptions::default())
        .expect("container logs");
    assert!(logs.contains("still here"), "{logs}");
    assert_eq!(rt.state(&id).expect("state").status, Status::Exited);

    // Once the container is gone, prune removes the snapshots and the blobs.
    rt.rm(&id, false).expect("rm container");
    let pruned = f.ok(&["image", "prune", "-a", "-f"]);
    assert!(!pruned.contains("Total reclaimed space: 0B"), "{pruned}");
    for chain_id in &chain_ids {
        assert!(!store.has_layer(chain_id), "snapshot {chain_id} left");
        assert!(
            !store.root().join("layers").join(chain_id.hex()).exists(),
            "snapshot dir {chain_id} left"
        );
    }
    for blob in &layer_blobs {
        assert!(!store.has_blob(blob), "blob {blob} left");
    }
    assert!(manage::list(&store).expect("list").is_empty());
}
