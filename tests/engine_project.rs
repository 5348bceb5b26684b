//! Root integration tests of `engine::project` on the real kernel with the busybox test image:
//! a two-service project on its default network (plus an internal one), a named volume that
//! outlives its container, tmpfs, read-only binds, copy-up; then everything removed and the
//! host checked for leftovers; and failed creates that leave nothing behind.
//!
//! Each test has its own data root, network prefix (`flt<4 chars>`), cgroup prefix (derived
//! from the data root) and a drop guard that kills what its containers left running (by pid,
//! from their state files) and removes its cgroups, links, namespace files, nftables table
//! and mounts, even on failure. Traffic goes only between the test's own namespaces.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::engine::project::{ProjectEngine, ServiceCreate, labels};
use flotilla::image::store::Store as ImageStore;
use flotilla::image::unpack::UnpackOptions;
use flotilla::network::{Networks, cleanup_prefix};
use flotilla::runtime::lifecycle::{self, LogsOptions, Runtime};
use flotilla::runtime::state::{self, Status};
use flotilla::runtime::sys::cgroup;
use flotilla::spec::load::{Options, load};
use flotilla::spec::model::Project;
use flotilla::store::Store;
use flotilla::volume::Volumes;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const IMAGE: &str = "flotilla.test/busybox:latest";
const TIMEOUT: Duration = Duration::from_secs(30);

struct Fixture {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    prefix: String,
    engine: ProjectEngine,
}

fn random_prefix() -> String {
    let mut b = [0u8; 2];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    format!("e{}", &hex::encode(b)[..3])
}

fn fixture() -> Fixture {
    assert!(
        rustix::process::geteuid().is_root(),
        "the project engine tests need root (CI runs them as root)"
    );
    let dir = tempfile::Builder::new()
        .prefix("flt-ep-")
        .tempdir()
        .unwrap();
    let root = dir.path().to_path_buf();
    let images = ImageStore::open(&root).unwrap();
    let record = common::registry::busybox_image("amd64").import(&images, IMAGE);
    let mut parent = None;
    for layer in &record.layers {
        let blob = images.open_blob(&layer.blob.digest).unwrap();
        images
            .unpack_layer(
                parent.as_ref(),
                &layer.diff_id,
                std::io::BufReader::new(blob),
                &UnpackOptions::default(),
            )
            .unwrap();
        parent = Some(layer.chain_id.clone());
    }
    let prefix = random_prefix();
    let store = Arc::new(Store::open(&root).unwrap());
    let networks = Networks::new(&root, &prefix, store.clone())
        .unwrap()
        .with_exe(Path::new(BIN));
    let runtime = Runtime::new(&root).unwrap().with_exe(Path::new(BIN));
    let volumes = Volumes::new(&root, store);
    let engine = ProjectEngine::new(&root, runtime, Arc::new(networks), volumes);
    Fixture {
        dir: Some(dir),
        root,
        prefix,
        engine,
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let rt = self.engine.runtime();
        for c in rt.list().unwrap_or_default() {
            if let Ok(st) = state::read(&rt.dir(&c.meta.id)) {
                if let Some(pid) = st.shim_pid
                    && state::process_alive(pid, st.shim_start_time)
                    && let Some(p) = rustix::process::Pid::from_raw(pid)
                {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
                if matches!(st.status, Status::Running | Status::Paused)
                    && let Some(p) = st.pid.and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let _ = cgroup::cleanup_prefix(rt.prefix());
        let _ = cleanup_prefix(&self.prefix, &self.root);
        for m in lifecycle::mounts_under(&self.root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn project(yaml: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        files: vec!["-".into()],
        stdin: Some(yaml.into()),
        working_dir: dir.path().to_path_buf(),
        project_name: Some("eptest".into()),
        ..Default::default()
    };
    let loaded = load(&opts).unwrap();
    Project::from_config(&loaded.config).unwrap()
}

/// The host's links of `prefix` once `ok` holds for them (at most 10 s: a removed container's
/// veth goes with its namespace, in the background).
fn links_until(prefix: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    common::links_until(&format!("flt{prefix}-"), ok)
}

fn links_of(prefix: &str) -> Vec<String> {
    links_until(prefix, |_| true)
}

fn nft_table_exists(prefix: &str) -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "inet", &format!("flt{prefix}")])
        .output()
        .unwrap()
        .status
        .success()
}

fn netns_files(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("netns"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Container cgroups left under the prefix's directory in any hierarchy (the prefix directory
/// itself is the runtime's, shared by its containers, and stays).
fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    let top = cgroup::prefix_dir(prefix);
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join(&top)];
    if let Ok(entries) = fs::read_dir(base) {
        for e in entries.flatten() {
            candidates.push(e.path().join(&top));
        }
    }
    let mut out = Vec::new();
    for c in candidates {
        if let Ok(entries) = fs::read_dir(&c) {
            out.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

fn labels_of(f: &Fixture, id: &str, key: &str) -> String {
    f.engine.runtime().meta(id).unwrap().labels[key].clone()
}

fn logs(f: &Fixture, id: &str) -> String {
    f.engine
        .runtime()
        .logs_text(id, &LogsOptions::default())
        .unwrap_or_default()
}

fn wait_for_log(f: &Fixture, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = logs(f, id);
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in logs: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create(f: &Fixture, p: &Project, service: &str) -> String {
    f.engine
        .create_service_container(
            p,
            service,
            &ServiceCreate {
                replica: 1,
                config_hash: Some(format!("hash-{service}")),
                labels: [("x.test".to_string(), "planner".to_string())].into(),
                ..Default::default()
            },
        )
        .unwrap()
}

fn ensure_all(f: &Fixture, p: &Project) {
    for (k, n) in &p.networks {
        f.engine.ensure_network(&p.name, k, n).unwrap();
    }
    for (k, v) in &p.volumes {
        f.engine.ensure_volume(&p.name, k, v).unwrap();
    }
}

const API: &str = "cat /proc/mounts; cat /proc/net/route; \
    [ -f /data/hello ] || echo persisted > /data/hello; cat /data/hello; echo api-ready; \
    exec httpd -f -p 8080 -h /data";

#[test]
fn a_two_service_project_runs_on_its_networks_and_volumes_and_leaves_nothing() {
    let f = fixture();
    let host_dir = f.root.join("host-ro");
    fs::create_dir(&host_dir).unwrap();
    fs::write(host_dir.join("file"), "host").unwrap();
    let yaml = format!(
        "services:\n  api:\n    image: {IMAGE}\n    command: [sh, -c, '{API}']\n    tmpfs: ['/scratch:size=1m']\n    volumes:\n      - data:/data\n      - tools:/bin:ro\n    networks: [default, back]\n  web:\n    image: {IMAGE}\n    command: [sh, -c, 'if echo x > /ro/new; then echo RW; else echo RO; fi; cat /ro/file; echo; while true; do wget -q -O - http://$$API/hello; sleep 0.2; done']\n    environment:\n      API: unset\n    volumes:\n      - /cache\n      - type: bind\n        source: {}\n        target: /ro\n        read_only: true\n  side:\n    image: {IMAGE}\n    command: [sh, -c, 'while true; do wget -q -O - http://127.0.0.1:8080/hello; sleep 0.2; done']\n    network_mode: service:api\n  lone:\n    image: {IMAGE}\n    command: [sh, -c, 'cat /proc/net/dev; echo lone-done; sleep 300']\n    network_mode: none\n  hosty:\n    image: {IMAGE}\n    command: [sh, -c, 'cat /proc/net/dev; echo host-done']\n    network_mode: host\nnetworks:\n  back:\n    internal: true\nvolumes:\n  data: {{}}\n  tools: {{}}\n",
        host_dir.display()
    );
    let mut p = project(&yaml);
    ensure_all(&f, &p);
    let default = f.engine.networks().get("eptest_default").unwrap();
    let back = f.engine.networks().get("eptest_back").unwrap();
    assert!(back.internal);
    assert_eq!(default.labels[labels::PROJECT], "eptest");
    assert_eq!(default.labels[labels::NETWORK], "default");
    assert!(default.bridge.starts_with(&format!("flt{}-", f.prefix)));

    // api: two networks, a named volume, a tmpfs, a copy-up volume over /bin.
    let api = create(&f, &p, "api");
    f.engine.start(&api).unwrap();
    let text = wait_for_log(&f, &api, "api-ready");
    assert!(text.contains("/scratch tmpfs"), "{text}");
    assert!(text.contains("persisted"), "{text}");
    let tools = f.engine.volumes().get("eptest_tools").unwrap();
    assert!(
        tools.mountpoint.join("busybox").is_file(),
        "the image's /bin was copied into the new volume"
    );
    let default = f.engine.networks().get("eptest_default").unwrap();
    let back = f.engine.networks().get("eptest_back").unwrap();
    assert_eq!(default.endpoints.len(), 1);
    assert_eq!(back.endpoints.len(), 1);
    let api_ep = &default.endpoints[0];
    assert!(api_ep.aliases.contains(&"api".to_string()));
    assert!(api_ep.aliases.contains(&"eptest-api-1".to_string()));
    assert_eq!(
        back.endpoints[0].gateway, None,
        "internal: no default route"
    );
    let api_meta = f.engine.runtime().meta(&api).unwrap();
    assert_eq!(api_meta.name, "eptest-api-1");
    assert_eq!(api_meta.labels[labels::SERVICE], "api");
    assert_eq!(api_meta.labels[labels::CONFIG_HASH], "hash-api");

    // web reaches api by its address on the default network.
    p.services
        .get_mut("web")
        .unwrap()
        .environment
        .insert("API".into(), Some(format!("{}:8080", api_ep.ip)));
    let web = create(&f, &p, "web");
    f.engine.start(&web).unwrap();
    let text = wait_for_log(&f, &web, "persisted");
    assert!(
        text.contains("RO"),
        "the read-only bind is read-only: {text}"
    );
    assert!(!text.contains("RW"), "{text}");
    assert!(text.contains("host"), "{text}");
    assert!(!host_dir.join("new").exists());
    let default = f.engine.networks().get("eptest_default").unwrap();
    assert_eq!(default.endpoints.len(), 2, "each container has an address");
    let listed = f.engine.list_project("eptest").unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.state.status == Status::Running));
    // What the planner reads: both containers with their labels; the project's named volumes
    // (web's anonymous one is not a project volume).
    let actual = f.engine.actual().unwrap();
    let mut seen: Vec<(String, u32)> = actual
        .project_containers("eptest")
        .map(|c| (c.service.clone(), c.number))
        .collect();
    seen.sort();
    assert_eq!(seen, [("api".to_string(), 1), ("web".to_string(), 1)]);
    let web_actual = actual.containers.iter().find(|c| c.id == web).unwrap();
    assert_eq!(web_actual.labels["x.test"], "planner");
    assert_eq!(web_actual.config_hash.as_deref(), Some("hash-web"));
    assert!(actual.network("eptest_back").is_some());
    let mut vols: Vec<&str> = actual.volumes.iter().map(|v| v.name.as_str()).collect();
    vols.sort();
    assert_eq!(vols, ["eptest_data", "eptest_tools"]);
    let web_anon = labels_of(&f, &web, labels::ANONYMOUS_VOLUMES);
    assert_eq!(web_anon.split(',').count(), 1);
    assert!(f.engine.volumes().get(&web_anon).is_ok());

    // The volume's data survives removing and re-creating api.
    f.engine.stop(&api, Some(Duration::from_secs(5))).unwrap();
    f.engine.remove(&api, true).unwrap();
    assert!(
        f.engine.runtime().meta(&api).is_err(),
        "api's state is gone"
    );
    assert_eq!(
        f.engine
            .networks()
            .get("eptest_back")
            .unwrap()
            .endpoints
            .len(),
        0
    );
    let data = f.engine.volumes().get("eptest_data").unwrap();
    let hello = data.mountpoint.join("hello");
    assert_eq!(fs::read_to_string(&hello).unwrap(), "persisted\n");
    fs::write(&hello, "persisted\nsecond\n").unwrap();
    let api2 = create(&f, &p, "api");
    f.engine.start(&api2).unwrap();
    wait_for_log(&f, &api2, "persisted\nsecond\napi-ready");

    // network_mode service:api shares api's namespace (its loopback reaches api's server);
    // none has only lo. Neither takes an address.
    let side = create(&f, &p, "side");
    f.engine.start(&side).unwrap();
    wait_for_log(&f, &side, "second");
    let lone = create(&f, &p, "lone");
    f.engine.start(&lone).unwrap();
    let text = wait_for_log(&f, &lone, "lone-done");
    assert!(text.contains("lo:") && !text.contains("eth0"), "{text}");
    // host: the host's namespace, where the test's bridges are.
    let hosty = create(&f, &p, "hosty");
    f.engine.start(&hosty).unwrap();
    let text = wait_for_log(&f, &hosty, "host-done");
    assert!(text.contains(&default.bridge), "{text}");
    assert_eq!(
        f.engine
            .networks()
            .get("eptest_default")
            .unwrap()
            .endpoints
            .len(),
        2
    );

    // A volume in use cannot be removed.
    let err = f
        .engine
        .remove_volume("eptest", "data", &p.volumes["data"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use"), "{err}");

    // Everything removed: nothing of the test is left on the host.
    for id in [&side, &lone, &hosty, &web, &api2] {
        f.engine.stop(id, Some(Duration::from_secs(2))).unwrap();
        f.engine.remove(id, true).unwrap();
    }
    for (k, n) in &p.networks {
        assert!(f.engine.remove_network("eptest", k, n).unwrap());
    }
    for (k, v) in &p.volumes {
        assert!(f.engine.remove_volume("eptest", k, v).unwrap());
    }
    assert!(f.engine.list_project("eptest").unwrap().is_empty());
    assert!(
        f.engine.volumes().get(&web_anon).is_err(),
        "the anonymous volume went with its container"
    );
    assert!(f.engine.volumes().list(None).unwrap().is_empty());
    assert!(f.engine.networks().list().unwrap().is_empty());
    assert_eq!(
        links_until(&f.prefix, |l| l.is_empty()),
        Vec::<String>::new()
    );
    assert_eq!(netns_files(&f.root), Vec::<PathBuf>::new());
    assert_eq!(lifecycle::mounts_under(&f.root), Vec::<PathBuf>::new());
    assert_eq!(
        cgroup_dirs(f.engine.runtime().prefix()),
        Vec::<PathBuf>::new()
    );
    f.engine.networks().settle();
    assert!(!nft_table_exists(&f.prefix));
}

#[test]
fn failed_creates_leave_nothing_behind() {
    let f = fixture();
    let yaml = format!(
        "services:\n  nobind:\n    image: {IMAGE}\n    command: [sleep, '1']\n    volumes:\n      - type: bind\n        source: /nonexistent-flotilla-test/src\n        target: /src\n  badcap:\n    image: {IMAGE}\n    command: [sleep, '1']\n    cap_add: [NOT_A_CAPABILITY]\n    volumes: [/anon, 'data:/data']\n    networks: [default, back]\n  halfnet:\n    image: {IMAGE}\n    command: [sleep, '1']\n    volumes: [/anon]\n    networks: [default, missing]\n  ext:\n    image: {IMAGE}\n    networks: [outside]\n  gone:\n    image: {IMAGE}\n    command: [sleep, '1']\n    networks: [default, back]\nnetworks:\n  back: {{}}\n  missing: {{}}\n  outside:\n    external: true\nvolumes:\n  data: {{}}\n"
    );
    let p = project(&yaml);
    for k in ["default", "back"] {
        f.engine.ensure_network(&p.name, k, &p.networks[k]).unwrap();
    }
    f.engine
        .ensure_volume(&p.name, "data", &p.volumes["data"])
        .unwrap();
    let links_before = links_of(&f.prefix);
    assert_eq!(links_before.len(), 2, "two bridges: {links_before:?}");

    let err = f
        .engine
        .ensure_network(&p.name, "outside", &p.networks["outside"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "networks.outside: external network \"outside\" not found (create it first)"
    );
    // The external network is never removed.
    assert!(
        !f.engine
            .remove_network(&p.name, "outside", &p.networks["outside"])
            .unwrap()
    );

    let cases = [
        ("nobind", "services.nobind.volumes[0].source: bind source"),
        ("badcap", "service badcap: container "),
        (
            "halfnet",
            "services.halfnet.networks.missing: network \"eptest_missing\" does not exist",
        ),
        (
            "ext",
            "services.ext.networks.outside: network \"outside\" does not exist",
        ),
    ];
    for (service, want) in cases {
        let err = f
            .engine
            .create_service_container(&p, service, &ServiceCreate::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{service}: {err}");
        if service == "badcap" {
            assert!(err.contains("NOT_A_CAPABILITY"), "{err}");
        }
        // Nothing is left: no container, netns, veth, address, anonymous volume, mount.
        assert!(f.engine.runtime().list().unwrap().is_empty(), "{service}");
        assert_eq!(netns_files(&f.root), Vec::<PathBuf>::new(), "{service}");
        assert_eq!(
            links_until(&f.prefix, |l| l == links_before.as_slice()),
            links_before,
            "{service}"
        );
        for n in f.engine.networks().list().unwrap() {
            assert!(n.endpoints.is_empty(), "{service}: {n:?}");
        }
        let vols: Vec<String> = f
            .engine
            .volumes()
            .list(None)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(vols, ["eptest_data"], "{service}");
        assert_eq!(lifecycle::mounts_under(&f.root), Vec::<PathBuf>::new());
    }
    assert!(!Path::new("/nonexistent-flotilla-test").exists());
    // A bridge gone behind the daemon's back: the namespace's helper fails on the second
    // network after wiring the first, and undoes both (veths, namespace, addresses).
    let back = f.engine.networks().get("eptest_back").unwrap();
    let del = std::process::Command::new("ip")
        .args(["link", "del", &back.bridge])
        .status()
        .unwrap();
    assert!(del.success());
    let links_now: Vec<String> = links_before
        .iter()
        .filter(|l| **l != back.bridge)
        .cloned()
        .collect();
    let err = f
        .engine
        .create_service_container(&p, "gone", &ServiceCreate::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("service gone: ")
            && err.contains("in the host's network namespace")
            && err.contains(&back.bridge),
        "{err}"
    );
    assert!(f.engine.runtime().list().unwrap().is_empty());
    assert_eq!(netns_files(&f.root), Vec::<PathBuf>::new());
    assert_eq!(
        links_until(&f.prefix, |l| l == links_now.as_slice()),
        links_now
    );
    for n in f.engine.networks().list().unwrap() {
        assert!(n.endpoints.is_empty(), "{n:?}");
    }
    assert_eq!(
        cgroup_dirs(f.engine.runtime().prefix()),
        Vec::<PathBuf>::new()
    );
    for k in ["default", "back"] {
        assert!(f.engine.remove_network(&p.name, k, &p.networks[k]).unwrap());
    }
    assert!(
        f.engine
            .remove_volume(&p.name, "data", &p.volumes["data"])
            .unwrap()
    );
    assert_eq!(
        links_until(&f.prefix, |l| l.is_empty()),
        Vec::<String>::new()
    );
    f.engine.networks().settle();
    assert!(!nft_table_exists(&f.prefix));
}
