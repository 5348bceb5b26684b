//! cgroups on the real kernel (root): memory limit and OOM kill, pids limit, freezer, stats,
//! update, kill and destroy. Each test uses its own prefix (`flotilla-test-<pid>-<n>`) and a guard
//! that kills what the test started and removes its cgroups even when an assertion fails.

use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use flotilla::runtime::sys::cgroup::{self, Cgroup, Error, Hierarchy, Limits, Version};
use rustix::process::Signal;

const BUSYBOX: &str = "/bin/busybox";
const MIB: i64 = 1 << 20;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One test's cgroups and child processes; dropping it cleans everything up.
struct Fixture {
    hierarchy: Hierarchy,
    prefix: String,
    cgroups: Vec<Cgroup>,
    children: Vec<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::on(Hierarchy::host().unwrap().clone())
    }

    /// A fixture whose cgroups live in `hierarchy` instead of the host's usual one.
    fn on(hierarchy: Hierarchy) -> Fixture {
        assert!(
            rustix::process::geteuid().is_root(),
            "the cgroup tests need root (CI runs them as root)"
        );
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: apt-get install busybox-static"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Fixture {
            hierarchy,
            prefix: format!("test-{}-{n:03}", std::process::id()),
            cgroups: Vec::new(),
            children: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", cgroup::prefix_dir(&self.prefix))
    }

    fn try_create(&mut self, name: &str, limits: &Limits) -> Result<Cgroup, Error> {
        // Registered before creating, so a half-made group is removed too.
        let path = self.path(name);
        self.cgroups.push(Cgroup::open_in(&self.hierarchy, &path)?);
        Cgroup::create_in(&self.hierarchy, &path, limits)
    }

    fn create(&mut self, name: &str, limits: &Limits) -> Cgroup {
        match self.try_create(name, limits) {
            Ok(cg) => cg,
            Err(e) => panic!("create {name}: {e}"),
        }
    }

    /// Starts `script` under busybox sh inside `cg`: the child blocks on stdin until it has been
    /// moved into the cgroup, so everything it runs is accounted there.
    fn spawn_in(&mut self, cg: &Cgroup, script: &str) -> usize {
        self.spawn_with(script, |pid| cg.add_pid(pid).unwrap())
    }

    /// Starts `script` under busybox sh once `place` has put the (waiting) child somewhere.
    fn spawn_with(&mut self, script: &str, place: impl FnOnce(i32)) -> usize {
        let mut child = Command::new(BUSYBOX)
            .args(["sh", "-c", &format!("read _; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut stdin = child.stdin.take().unwrap();
        self.children.push(child);
        place(pid);
        stdin.write_all(b"go\n").unwrap();
        self.children.len() - 1
    }

    fn pid(&self, child: usize) -> i32 {
        self.children[child].id() as i32
    }

    fn wait_exit(&mut self, child: usize, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.children[child].try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "child {} still running after {timeout:?}",
                self.pid(child)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every path under the cgroup mounts whose name starts with this test's top directory.
    fn leftovers(&self) -> Vec<String> {
        find(&format!("{}*", cgroup::prefix_dir(&self.prefix)))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The groups first: kill_all thaws a frozen group after SIGKILL, so the waits below end.
        for cg in &self.cgroups {
            if let Err(e) = cg.destroy(true) {
                eprintln!("cleanup: {e}");
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = cgroup::cleanup_prefix_in(&self.hierarchy, &self.prefix) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn find(name: &str) -> Vec<String> {
    let out = Command::new("find")
        .args(["/sys/fs/cgroup", "-name", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` every 10 ms until it holds; panics after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn version() -> Version {
    Hierarchy::host().unwrap().version
}

/// The file of a cgroup, in whichever of its directories holds it.
fn cgroup_file(cg: &Cgroup, file: &str) -> PathBuf {
    cg.dirs()
        .into_iter()
        .map(|d| d.join(file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {file} in {:?}", cg.dirs()))
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_owned()
}

/// A shell loop writing an increasing number to `file` about every millisecond (bounded).
fn counter_script(file: &Path) -> String {
    format!(
        "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); echo $i > {}; {BUSYBOX} usleep 1000; done",
        file.display()
    )
}

fn counter(file: &Path) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn memory_limit_ends_in_an_oom_kill() {
    let mut fx = Fixture::new();
    // memory+swap = memory, so that a host with swap OOM-kills instead of swapping; a kernel
    // without swap accounting refuses that, and then the memory limit alone must do.
    let limits = Limits {
        memory: Some(32 * MIB),
        memory_swap: Some(32 * MIB),
        ..Limits::default()
    };
    let cg = match fx.try_create("oom", &limits) {
        Ok(cg) => cg,
        Err(Error::NoController { controller, .. }) if controller == "swap" => {
            let memory_only = Limits {
                memory_swap: None,
                ..limits
            };
            fx.create("oom", &memory_only)
        }
        Err(e) => panic!("create: {e}"),
    };
    assert!(!cg.oom_killed().unwrap());
    assert_eq!(cg.stats().unwrap().memory_limit, Some(32 << 20));
    let child = fx.spawn_in(
        &cg,
        "x=$(head -c 209715200 /dev/zero | tr '\\0' a); echo survived",
    );
    let status = fx.wait_exit(child, Duration::from_secs(60));
    assert_eq!(status.signal(), Some(9), "expected SIGKILL, got {status}");
    assert!(cg.oom_killed().unwrap(), "oom_killed() should say so");
    cg.destroy(true).unwrap();
    assert!(!cg.exists());
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let mut fx = Fixture::new();
    let cg = fx.create(
        "pids",
        &Limits {
            pids_limit: Some(20),
            ..Limits::default()
        },
    );
    assert_eq!(cg.stats().unwrap().pids_limit, Some(20));
    // A bounded fork loop: 60 background sleeps (that die on their own) against a limit of 20.
    let child = fx.spawn_in(
        &cg,
        "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; wait",
    );
    let mut peak = 0;
    wait_for(
        "the group to reach its pids limit",
        Duration::from_secs(20),
        || {
            let now = cg.stats().unwrap().pids_current;
            peak = peak.max(now);
            now >= 20
        },
    );
    // Let the loop run to its end (or die of a failed fork), watching the count.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        let stats = cg.stats().unwrap();
        peak = peak.max(stats.pids_current);
        assert!(cg.pids().unwrap().len() <= 20);
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(peak, 20, "pids.current must stop at the limit");
    // The host is fine: a process outside the group still starts.
    assert!(
        Command::new(BUSYBOX)
            .arg("true")
            .status()
            .unwrap()
            .success()
    );
    cg.destroy(true).unwrap();
    fx.wait_exit(child, Duration::from_secs(10));
    assert!(!cg.exists());
}

#[test]
fn freeze_stops_a_counter_and_thaw_resumes_it() {
    let mut fx = Fixture::new();
    let cg = fx.create("freeze", &Limits::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter");
    let child = fx.spawn_in(&cg, &counter_script(&file));
    wait_for("the counter to start", Duration::from_secs(10), || {
        counter(&file) >= 3
    });

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let frozen_at = fs::read_to_string(&file).unwrap_or_default();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(10));
        assert_eq!(fs::read_to_string(&file).unwrap_or_default(), frozen_at);
    }
    let n = frozen_at.trim().parse::<u64>().unwrap_or(0);

    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    wait_for("the counter to resume", Duration::from_secs(10), || {
        counter(&file) > n
    });

    // A paused container can be removed: destroy kills through the freezer.
    cg.freeze().unwrap();
    cg.destroy(true).unwrap();
    assert_eq!(
        fx.wait_exit(child, Duration::from_secs(10)).signal(),
        Some(9)
    );
    assert!(!cg.exists());
}

#[test]
fn stats_are_readable() {
    let mut fx = Fixture::new();
    let mut limits = Limits {
        memory: Some(64 * MIB),
        pids_limit: Some(50),
        ..Limits::default()
    };
    limits.set_cpus(1.5).unwrap();
    let cg = fx.create("stats", &limits);
    let child = fx.spawn_in(
        &cg,
        // Memory is charged where it is allocated (v1 does not move charges with a process),
        // so the child allocates after joining.
        "x=$(head -c 4194304 /dev/zero | tr '\\0' a); \
         i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 30",
    );
    let pid = fx.pid(child);
    wait_for(
        "cpu and memory usage to show",
        Duration::from_secs(20),
        || {
            let stats = cg.stats().unwrap();
            stats.cpu_usage_ns > 10_000_000 && stats.memory_usage > 0
        },
    );
    let stats = cg.stats().unwrap();
    assert!(stats.memory_usage > 0, "{stats:?}");
    assert_eq!(stats.memory_limit, Some(64 << 20));
    assert!(stats.pids_current >= 1, "{stats:?}");
    assert_eq!(stats.pids_limit, Some(50));
    assert!(cg.pids().unwrap().contains(&pid));
    assert!(!cg.oom_killed().unwrap());

    // Re-adopting by path sees the same group.
    let again = Cgroup::open(cg.path()).unwrap();
    assert!(again.pids().unwrap().contains(&pid));

    // A plain signal reaches every process.
    cg.kill_all(Signal::TERM).unwrap();
    assert_eq!(
        fx.wait_exit(child, Duration::from_secs(10)).signal(),
        Some(15)
    );
}

#[test]
fn update_changes_limits() {
    let mut fx = Fixture::new();
    let cg = fx.create(
        "update",
        &Limits {
            memory: Some(64 * MIB),
            pids_limit: Some(10),
            ..Limits::default()
        },
    );
    let child = fx.spawn_in(&cg, "sleep 30");
    cg.update(&Limits {
        memory: Some(128 * MIB),
        pids_limit: Some(30),
        ..Limits::default()
    })
    .unwrap();
    let stats = cg.stats().unwrap();
    assert_eq!(stats.memory_limit, Some(128 << 20));
    assert_eq!(stats.pids_limit, Some(30));

    // With swap accounting, memory+swap is raised past its old value in the order the kernel
    // accepts (v1 refuses memory > memory+swap at any step).
    let with_swap = |memory: i64, swap: i64| Limits {
        memory: Some(memory),
        memory_swap: Some(swap),
        ..Limits::default()
    };
    match cg.update(&with_swap(32 * MIB, 64 * MIB)) {
        Err(Error::NoController { controller, .. }) if controller == "swap" => {}
        other => {
            other.unwrap();
            cg.update(&with_swap(256 * MIB, 512 * MIB)).unwrap();
            assert_eq!(cg.stats().unwrap().memory_limit, Some(256 << 20));
            cg.update(&with_swap(16 * MIB, 32 * MIB)).unwrap();
            assert_eq!(cg.stats().unwrap().memory_limit, Some(16 << 20));
        }
    }
    cg.update(&with_swap(-1, -1)).unwrap();
    assert_eq!(cg.stats().unwrap().memory_limit, None);

    let mut cpus = Limits::default();
    cpus.set_cpus(0.5).unwrap();
    cg.update(&cpus).unwrap();
    match version() {
        Version::V1 => assert_eq!(read_trimmed(&cgroup_file(&cg, "cpu.cfs_quota_us")), "50000"),
        Version::V2 => assert_eq!(read_trimmed(&cgroup_file(&cg, "cpu.max")), "50000 100000"),
    }

    // A value the kernel refuses is reported with the controller, the file and the value.
    let err = cg
        .update(&Limits {
            cpuset_cpus: Some("4095".into()),
            ..Limits::default()
        })
        .unwrap_err()
        .to_string();
    let expected = format!("cannot write 4095 to cpuset/{}/cpuset.cpus: ", cg.path());
    assert!(err.starts_with(&expected), "{err}");

    cg.destroy(true).unwrap();
    assert_eq!(
        fx.wait_exit(child, Duration::from_secs(10)).signal(),
        Some(9)
    );
}

#[test]
fn destroy_and_cleanup_leave_nothing() {
    let mut fx = Fixture::new();
    let limits = Limits {
        memory: Some(64 * MIB),
        cpuset_cpus: Some("0".into()),
        pids_limit: Some(100),
        ..Limits::default()
    };
    let a = fx.create("a", &limits);
    let b = fx.create("b", &limits);
    let busy = fx.create("busy", &Limits::default());
    let in_a = fx.spawn_in(&a, "sleep 30 & sleep 30 & wait");
    let in_busy = fx.spawn_in(&busy, "sleep 30");
    wait_for("a's processes", Duration::from_secs(10), || {
        a.pids().unwrap().len() == 3
    });
    // A nested group (as a container with its own cgroup namespace may make), with a process in
    // it, is found by pids() and goes too.
    for dir in a.dirs() {
        let nested = dir.join("nested");
        fs::create_dir(&nested).unwrap();
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if nested.join(file).exists() {
                fs::write(nested.join(file), fs::read(dir.join(file)).unwrap()).unwrap();
            }
        }
    }
    let in_nested = fx.spawn_with("sleep 30", |pid| {
        for dir in a.dirs() {
            fs::write(dir.join("nested/cgroup.procs"), pid.to_string()).unwrap();
        }
    });
    assert!(a.pids().unwrap().contains(&fx.pid(in_nested)));
    assert!(a.pids().unwrap().len() >= 4);

    a.destroy(true).unwrap();
    assert!(!a.exists());
    a.destroy(true).unwrap(); // idempotent
    assert_eq!(
        fx.wait_exit(in_a, Duration::from_secs(10)).signal(),
        Some(9)
    );
    assert_eq!(
        fx.wait_exit(in_nested, Duration::from_secs(10)).signal(),
        Some(9)
    );
    let leaf_a = format!("{}/a", cgroup::prefix_dir(&fx.prefix));
    assert!(
        fx.leftovers().iter().all(|p| !p.contains(&leaf_a)),
        "{:?}",
        fx.leftovers()
    );

    // b is empty: destroy without kill removes it; the busy group survives a cleanup.
    b.destroy(false).unwrap();
    assert!(!b.exists());
    let removed = cgroup::cleanup_prefix(&fx.prefix).unwrap();
    assert_eq!(removed, 0, "only the busy group and its parents are left");
    assert!(busy.exists());
    assert!(busy.pids().unwrap().contains(&fx.pid(in_busy)));

    // Re-adopted by path after a restart, then killed and removed.
    let adopted = Cgroup::open(busy.path()).unwrap();
    adopted.kill_all(Signal::KILL).unwrap();
    assert_eq!(
        fx.wait_exit(in_busy, Duration::from_secs(10)).signal(),
        Some(9)
    );
    adopted.destroy(false).unwrap();
    assert!(!busy.exists());

    let removed = cgroup::cleanup_prefix(&fx.prefix).unwrap();
    assert!(removed >= 1, "the top directories are removed");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

/// The v2 code path on a hybrid host: its unified hierarchy has no resource controllers (here at
/// most hugetlb), but the core files — cgroup.procs, cgroup.freeze, cgroup.events, cgroup.kill,
/// cpu.stat — work as on a pure v2 host. On a pure v2 host this is the host's hierarchy.
#[test]
fn v2_core_files_work() {
    let hierarchy = match version() {
        Version::V2 => Hierarchy::host().unwrap().clone(),
        Version::V1 => {
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let unified = mountinfo.lines().find_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                right
                    .starts_with("cgroup2 ")
                    .then(|| left.split(' ').nth(4))?
            });
            let Some(dir) = unified else {
                eprintln!("no cgroup2 mount on this host: skipped");
                return;
            };
            Hierarchy {
                version: Version::V2,
                mounts: vec![cgroup::Mount {
                    controllers: Vec::new(),
                    dir: PathBuf::from(dir),
                }],
            }
        }
    };
    let unified_has_memory = fs::read_to_string(hierarchy.mounts[0].dir.join("cgroup.controllers"))
        .unwrap()
        .split_whitespace()
        .any(|c| c == "memory");
    let mut fx = Fixture::on(hierarchy);
    if !unified_has_memory {
        // A limit whose controller the parent does not offer is refused up front.
        let err = fx
            .try_create(
                "nomem",
                &Limits {
                    memory: Some(64 * MIB),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("memory controller is not available"),
            "{err}"
        );
    }
    let cg = fx.create("core", &Limits::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter");
    let child = fx.spawn_in(&cg, &counter_script(&file));
    assert!(cg.pids().unwrap().contains(&fx.pid(child)));
    wait_for("the counter to start", Duration::from_secs(10), || {
        counter(&file) >= 3
    });

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let frozen_at = fs::read_to_string(&file).unwrap_or_default();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(10));
        assert_eq!(fs::read_to_string(&file).unwrap_or_default(), frozen_at);
    }
    cg.thaw().unwrap();
    let n = frozen_at.trim().parse::<u64>().unwrap_or(0);
    wait_for("the counter to resume", Duration::from_secs(10), || {
        counter(&file) > n
    });
    assert!(cg.stats().unwrap().cpu_usage_ns > 0);

    // Frozen, then destroyed: cgroup.kill kills frozen tasks.
    cg.freeze().unwrap();
    cg.destroy(true).unwrap();
    assert_eq!(
        fx.wait_exit(child, Duration::from_secs(10)).signal(),
        Some(9)
    );
    assert!(!cg.exists());
    assert!(cgroup::cleanup_prefix_in(&fx.hierarchy, &fx.prefix).unwrap() >= 1);
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}
