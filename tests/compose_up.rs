//! `flotilla up`/`down`/`ps` end to end (root): every test starts its own `flotilla daemon` on
//! its own tempdir data root and socket, imports a busybox image into that root with the real
//! binary (`image import` of the tests' busybox rootfs), writes stack files into the tempdir and
//! runs the real `flotilla` CLI against the daemon. Order and idempotence are judged from the
//! daemon's events (`flotilla events --format json`, ordered by sequence number) and the
//! containers' state files; every wait is a bounded poll.
//!
//! Covered (reconciler issue, "Tests that must exist" and "Bad input"): a four-service stack
//! (db with a named volume and a healthcheck, a one-shot migration, an api waiting for both, a
//! web in front) comes up in dependency order with `--wait`, and a second `up` plans and does
//! nothing (the one-shot job that completed is not run again); editing one service's environment recreates only
//! that service (`--dry-run` says why); scale 1→5→2; `restart: on-failure:3`; `restart: always`
//! across a daemon `kill -9` with its container killed meanwhile; `down` keeps the named volume,
//! `down -v` removes it, and nothing is left on the host; unknown services, a located stack
//! file error, a dependency that never becomes healthy, `--wait-timeout`, an image that cannot
//! be pulled (a closed loopback port), and two `up`s at once on one project.
//!
//! TODO(dns-ports): once the embedded DNS server and published ports are wired into `up`, add
//! here: the four-service stack with web serving HTTP on a published host port and calling the
//! api by its service name (answered end to end from the host through the port); DNS answering
//! every replica after scale 1→5→2; and the bad-input case of a published port already taken
//! by a process outside flotilla (clear error naming the port, the rest of the stack up).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::compose::{Daemon, Ev, Row, TIMEOUT, kill9_pid, until};
use flotilla::api::client::{Client, block_on};
use flotilla::api::host::Host;
use flotilla::runtime::state::Status;
/// A shell that exits 0 on SIGTERM (so stops are quick) and otherwise runs forever.
const SERVE: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

impl Daemon {
    /// This file's daemon: `flt-cu-<tag>-…`.
    fn start(tag: &str) -> Daemon {
        Daemon::start_for("compose up", "cu", tag, &[])
    }
}

/// The sequence number of the first event `action` of container `name` (after `after`).
fn seq_of(events: &[Ev], name: &str, action: &str, after: u64) -> u64 {
    events
        .iter()
        .find(|e| e.seq > after && e.name == name && e.action == action)
        .map(|e| e.seq)
        .unwrap_or_else(|| panic!("no {action} event of {name} after {after}: {events:#?}"))
}

fn names(ps: &BTreeMap<String, Row>) -> Vec<String> {
    ps.keys().cloned().collect()
}

/// The four-service stack of the issue (without its published port and DNS, see the TODO at
/// the top). db becomes healthy only after a while; migrate checks db's volume and writes to
/// it; api refuses to start (exit 9) unless the migration ran; web depends on api.
fn four_services(project: &str, api_mode: &str) -> String {
    format!(
        r#"name: {project}
services:
  db:
    image: IMG
    command: ["sh", "-c", "sleep 0.5; echo ok > /data/ready; {SERVE}"]
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /data/ready"]
      interval: 1s
      start_period: 30s
      start_interval: 100ms
  migrate:
    image: IMG
    command: ["sh", "-c", "test -f /data/ready && echo done > /data/migrated"]
    volumes: ["data:/data"]
    depends_on:
      db: {{condition: service_healthy}}
  api:
    image: IMG
    command: ["sh", "-c", "test -f /data/migrated || exit 9; {SERVE}"]
    volumes: ["data:/data:ro"]
    environment:
      MODE: {api_mode}
    depends_on:
      migrate: {{condition: service_completed_successfully}}
      db: {{condition: service_healthy}}
  web:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    depends_on: [api]
volumes:
  data: {{}}
"#
    )
}

#[test]
fn four_service_stack_comes_up_in_order_and_a_second_up_changes_nothing() {
    let mut d = Daemon::start("order");
    let p = "cuorder";
    let dir = d.stack(p, &four_services(p, "one"));
    d.ok(&dir, &["up", "-d", "--wait"]);

    let ps = d.ps(&dir);
    assert_eq!(
        names(&ps),
        [
            "cuorder-api-1",
            "cuorder-db-1",
            "cuorder-migrate-1",
            "cuorder-web-1"
        ]
    );
    assert_eq!(ps["cuorder-db-1"].state, "running");
    assert_eq!(ps["cuorder-db-1"].health, "healthy");
    assert_eq!(ps["cuorder-migrate-1"].state, "exited");
    assert_eq!(ps["cuorder-migrate-1"].exit_code, 0);
    assert_eq!(ps["cuorder-api-1"].state, "running");
    assert_eq!(ps["cuorder-web-1"].state, "running");

    // The order, from the daemon's events.
    let ev = d.events();
    let db_start = seq_of(&ev, "cuorder-db-1", "start", 0);
    let db_healthy = seq_of(&ev, "cuorder-db-1", "health_status: healthy", 0);
    let migrate_start = seq_of(&ev, "cuorder-migrate-1", "start", 0);
    let migrate_die = seq_of(&ev, "cuorder-migrate-1", "die", 0);
    let api_start = seq_of(&ev, "cuorder-api-1", "start", 0);
    let web_start = seq_of(&ev, "cuorder-web-1", "start", 0);
    let die = ev.iter().find(|e| e.seq == migrate_die).unwrap();
    assert_eq!(die.exit_code.as_deref(), Some("0"), "{die:?}");
    assert!(db_start < db_healthy, "{ev:#?}");
    assert!(
        db_healthy < migrate_start,
        "migrate before db healthy: {ev:#?}"
    );
    assert!(migrate_start < migrate_die, "{ev:#?}");
    assert!(
        migrate_die < api_start,
        "api before migrate's exit: {ev:#?}"
    );
    assert!(db_healthy < api_start, "api before db healthy: {ev:#?}");
    assert!(api_start < web_start, "web before api: {ev:#?}");
    assert!(
        ev.iter()
            .all(|e| e.action != "die" || e.name == "cuorder-migrate-1"),
        "only the one-shot job may have exited: {ev:#?}"
    );

    // A second `up`: nothing planned, recreated, started or stopped.
    let started: BTreeMap<String, Option<String>> = ps
        .iter()
        .map(|(n, r)| (n.clone(), d.state(&r.id).started_at))
        .collect();
    let last = ev.last().map_or(0, |e| e.seq);
    let plan = d.ok(&dir, &["up", "-d", "--dry-run"]);
    d.ok(&dir, &["up", "-d"]);
    let again = d.ps(&dir);
    for (name, row) in &ps {
        assert_eq!(again[name].id, row.id, "{name} was recreated");
    }
    for name in ["cuorder-db-1", "cuorder-api-1", "cuorder-web-1"] {
        assert_eq!(
            d.state(&again[name].id).started_at,
            started[name],
            "{name} was restarted"
        );
    }
    // The one-shot job exited 0 with an unchanged configuration: it is not run again.
    assert_eq!(
        plan.stdout.trim(),
        "",
        "zero actions planned:\n{}",
        plan.text()
    );
    let new: Vec<Ev> = d.events().into_iter().filter(|e| e.seq > last).collect();
    assert!(new.is_empty(), "the second up changed something: {new:#?}");
    let st = d.state(&again["cuorder-migrate-1"].id);
    assert_eq!(st.started_at, started["cuorder-migrate-1"]);
    assert_eq!((st.status, st.exit_code), (Status::Exited, Some(0)));
}

#[test]
fn editing_one_services_environment_recreates_only_that_service() {
    let mut d = Daemon::start("env");
    let p = "cuenv";
    let dir = d.stack(p, &four_services(p, "one"));
    d.ok(&dir, &["up", "-d", "--wait"]);
    let before = d.ps(&dir);
    let started: BTreeMap<String, Option<String>> = before
        .iter()
        .map(|(n, r)| (n.clone(), d.state(&r.id).started_at))
        .collect();
    let last = d.events().last().map_or(0, |e| e.seq);

    d.stack(p, &four_services(p, "two"));
    let plan = d.ok(&dir, &["up", "-d", "--dry-run"]);
    let recreates: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.contains("recreate"))
        .collect();
    assert_eq!(
        recreates,
        ["api: recreate cuenv-api-1 (environment changed)"],
        "{}",
        plan.text()
    );
    // The dry run changed nothing.
    assert_eq!(d.ps(&dir), before);

    let up = d.ok(&dir, &["up", "-d", "--wait", "--verbose"]);
    assert!(
        up.stdout
            .contains("cuenv-api-1  Recreate (environment changed)"),
        "{}",
        up.text()
    );
    let after = d.ps(&dir);
    assert_eq!(names(&after), names(&before));
    assert_ne!(after["cuenv-api-1"].id, before["cuenv-api-1"].id);
    assert_eq!(after["cuenv-api-1"].state, "running");
    for name in ["cuenv-db-1", "cuenv-migrate-1", "cuenv-web-1"] {
        assert_eq!(after[name].id, before[name].id, "{name} was recreated");
    }
    for name in ["cuenv-db-1", "cuenv-web-1"] {
        assert_eq!(
            d.state(&after[name].id).started_at,
            started[name],
            "{name} was restarted"
        );
    }
    let ev = d.events();
    let changed: BTreeSet<(&str, &str)> = ev
        .iter()
        .filter(|e| e.seq > last && matches!(e.action.as_str(), "create" | "destroy"))
        .map(|e| (e.name.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        changed,
        BTreeSet::from([("cuenv-api-1", "create"), ("cuenv-api-1", "destroy")]),
        "{ev:#?}"
    );
    let ids = |action: &str| -> Vec<&str> {
        ev.iter()
            .filter(|e| e.seq > last && e.action == action)
            .map(|e| e.id.as_str())
            .collect()
    };
    assert_eq!(ids("destroy"), [before["cuenv-api-1"].id.as_str()]);
    assert_eq!(ids("create"), [after["cuenv-api-1"].id.as_str()]);
    // The new container has the new environment.
    let config = fs::read_to_string(
        d.container_dir(&after["cuenv-api-1"].id)
            .join("config.json"),
    )
    .unwrap();
    assert!(config.contains("MODE=two"), "{config}");
}

#[test]
fn scale_one_to_five_to_two_keeps_the_lowest_replicas() {
    let mut d = Daemon::start("scale");
    let p = "cuscale";
    let dir = d.stack(
        p,
        &format!(
            "name: {p}\nservices:\n  web:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n"
        ),
    );
    let replicas = |ps: &BTreeMap<String, Row>| -> Vec<String> {
        ps.iter()
            .filter(|(_, r)| r.state == "running")
            .map(|(n, _)| n.clone())
            .collect()
    };
    let want = |n: u32| -> Vec<String> { (1..=n).map(|i| format!("cuscale-web-{i}")).collect() };

    d.ok(&dir, &["up", "-d", "--wait"]);
    let one = d.ps(&dir);
    assert_eq!(names(&one), want(1));

    d.ok(&dir, &["up", "-d", "--wait", "--scale", "web=5"]);
    let five = d.ps(&dir);
    assert_eq!(names(&five), want(5));
    assert_eq!(replicas(&five), want(5));
    // The network's DNS server (on the gateway every container's resolv.conf names) answers
    // the service's name with every replica.
    let gateway = d.nameserver(&five["cuscale-web-1"].id);
    let answer = |n: usize| {
        until("DNS to answer every replica", TIMEOUT, || {
            let ips = dns_a(gateway, "web");
            (ips.len() == n).then_some(ips)
        })
    };
    let ips: BTreeSet<std::net::Ipv4Addr> = answer(5).into_iter().collect();
    assert_eq!(ips.len(), 5, "five distinct addresses: {ips:?}");
    assert_eq!(dns_a(gateway, "cuscale-web-3").len(), 1);
    assert_eq!(five["cuscale-web-1"].id, one["cuscale-web-1"].id);
    assert!(five.values().all(|r| r.service == "web"));

    let plan = d.ok(&dir, &["up", "-d", "--scale", "web=2", "--dry-run"]);
    let removed: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.contains("remove"))
        .collect();
    assert_eq!(
        removed,
        [
            "web: remove cuscale-web-5",
            "web: remove cuscale-web-4",
            "web: remove cuscale-web-3"
        ],
        "highest numbers first:\n{}",
        plan.text()
    );
    d.ok(&dir, &["up", "-d", "--wait", "--scale", "web=2"]);
    let two = d.ps(&dir);
    assert_eq!(names(&two), want(2));
    assert_eq!(replicas(&two), want(2));
    for name in want(2) {
        assert_eq!(two[&name].id, five[&name].id, "{name} was recreated");
    }
    assert_eq!(answer(2).len(), 2, "DNS follows the scale-down");
    assert!(dns_a(gateway, "cuscale-web-3").is_empty());
    let gone: BTreeSet<String> = ["3", "4", "5"]
        .iter()
        .map(|n| five[&format!("cuscale-web-{n}")].id.clone())
        .collect();
    let dirs: BTreeSet<String> = d.state_dirs().into_iter().collect();
    assert!(gone.is_disjoint(&dirs), "removed replicas left state dirs");
}

#[test]
fn on_failure_3_restarts_three_times_then_leaves_it_exited() {
    let mut d = Daemon::start("onfail");
    let p = "cuonfail";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  crash:
    image: IMG
    command: ["sh", "-c", "echo boom; exit 3"]
    restart: on-failure:3
  fine:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    restart: on-failure:3
"#
        ),
    );
    d.ok(&dir, &["up", "-d"]);
    let count = |ev: &[Ev], action: &str| {
        ev.iter()
            .filter(|e| e.name == "cuonfail-crash-1" && e.action == action)
            .count()
    };
    let ev = until("4 die events of crash", TIMEOUT, || {
        let ev = d.events();
        (count(&ev, "die") >= 4).then_some(ev)
    });
    assert!(
        ev.iter()
            .filter(|e| e.action == "die")
            .all(|e| e.exit_code.as_deref() == Some("3")),
        "{ev:#?}"
    );
    // The back-off doubles from 100 ms: after the fourth exit a fifth start would come within
    // 800 ms; give it well over that.
    let quiet = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet {
        let ps = d.ps(&dir);
        assert_eq!(ps["cuonfail-crash-1"].state, "exited", "{ps:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ev = d.events();
    assert_eq!(count(&ev, "die"), 4, "{ev:#?}");
    assert_eq!(count(&ev, "start"), 4, "{ev:#?}");
    let ps = d.ps(&dir);
    assert_eq!(ps["cuonfail-crash-1"].exit_code, 3);
    assert_eq!(ps["cuonfail-fine-1"].state, "running");
}

#[test]
fn always_comes_back_after_a_daemon_kill9_and_restart() {
    let mut d = Daemon::start("always");
    let p = "cualways";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  always:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    restart: always
  steady:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    restart: always
  never:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    restart: "no"
"#
        ),
    );
    d.ok(&dir, &["up", "-d", "--wait"]);
    let ps = d.ps(&dir);
    let id = |s: &str| ps[&format!("cualways-{s}-1")].id.clone();
    let (always, steady, never) = (id("always"), id("steady"), id("never"));
    let before = |id: &str| d.state(id);
    let (always0, steady0) = (before(&always), before(&steady));

    // The daemon dies; meanwhile the containers of `always` and `never` are killed.
    d.kill9();
    for id in [&always, &never] {
        kill9_pid(d.state(id).pid.unwrap());
    }
    for id in [&always, &never] {
        until("the shim to record the exit", TIMEOUT, || {
            (d.state(id).status == Status::Exited).then_some(())
        });
    }
    d.spawn();

    let back = until("always to run again", TIMEOUT, || {
        let st = d.state(&always);
        (st.status == Status::Running && st.pid != always0.pid).then_some(st)
    });
    assert_ne!(back.started_at, always0.started_at);
    let ps = d.ps(&dir);
    assert_eq!(
        ps["cualways-always-1"].id, always,
        "restarted, not recreated"
    );
    assert_eq!(ps["cualways-always-1"].state, "running");
    // The untouched container still runs, the same process.
    let st = d.state(&steady);
    assert_eq!(st.status, Status::Running);
    assert_eq!(st.pid, steady0.pid);
    assert_eq!(st.started_at, steady0.started_at);
    // `restart: "no"` stays down, with the exit the shim recorded.
    assert_eq!(ps["cualways-never-1"].state, "exited");
    assert_eq!(ps["cualways-never-1"].exit_code, 137);
    let ev = d.events();
    assert!(
        ev.iter().any(|e| e.name == "cualways-never-1"
            && e.action == "die"
            && e.exit_code.as_deref() == Some("137")),
        "the exit seen at restore has its die event: {ev:#?}"
    );

    // The restarted daemon supervises it too.
    kill9_pid(back.pid.unwrap());
    until("always to run again (daemon up)", TIMEOUT, || {
        let st = d.state(&always);
        (st.status == Status::Running && st.pid != back.pid).then_some(())
    });
}

#[test]
fn down_keeps_the_named_volume_down_v_removes_it_and_nothing_is_left() {
    let mut d = Daemon::start("down");
    let p = "cudown";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  keeper:
    image: IMG
    command: ["sh", "-c", "echo run >> /data/runs; {SERVE}"]
    volumes: ["data:/data"]
  other:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    depends_on: [keeper]
volumes:
  data: {{}}
"#
        ),
    );
    let volume = "cudown_data";
    let runs = d.root.join("volumes").join(volume).join("_data/runs");
    d.ok(&dir, &["up", "-d", "--wait"]);
    assert_eq!(d.ps(&dir).len(), 2);
    assert!(!d.links().is_empty(), "no bridge/veth links of the project");
    assert!(d.volumes().contains(&volume.to_string()));
    let running = d.leftovers();
    for kind in ["link ", "netns file ", "mount ", "cgroup ", "process "] {
        assert!(
            running.iter().any(|l| l.starts_with(kind)),
            "the leftover check sees no {kind}while the stack runs: {running:#?}"
        );
    }
    until("keeper to write to its volume", TIMEOUT, || {
        (fs::read_to_string(&runs).ok()? == "run\n").then_some(())
    });

    d.ok(&dir, &["down"]);
    assert!(d.ps(&dir).is_empty());
    let out = d.ok(&dir, &["ls", "-q"]);
    assert!(!out.stdout.contains(p), "{}", out.text());
    assert_eq!(d.leftovers(), Vec::<String>::new());
    assert_eq!(d.volumes(), [volume]);

    // The volume's content survives into the next `up`.
    d.ok(&dir, &["up", "-d", "--wait"]);
    until("keeper to append to the kept volume", TIMEOUT, || {
        (fs::read_to_string(&runs).ok()? == "run\nrun\n").then_some(())
    });

    d.ok(&dir, &["down", "-v"]);
    assert!(d.ps(&dir).is_empty());
    assert!(d.volumes().is_empty(), "{:?}", d.volumes());
    assert!(!d.root.join("volumes").join(volume).exists());
    assert_eq!(d.leftovers(), Vec::<String>::new());

    // And after the daemon has gone, nothing of it runs.
    assert_eq!(d.stop(), Some(0), "{}", d.log());
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[test]
fn bad_stack_files_and_unknown_services_are_refused_before_anything_runs() {
    let mut d = Daemon::start("badin");
    // The image import's own events come first.
    let before = d.events().len();
    let p = "cubadin";
    let dir = d.stack(
        p,
        &format!(
            "name: {p}\nservices:\n  web:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n"
        ),
    );
    let out = d.fails(&dir, &["up", "-d", "nosuch"]);
    assert!(
        out.stderr.contains("no such service: nosuch"),
        "{}",
        out.text()
    );
    assert!(out.stderr.contains(p), "names the project: {}", out.text());

    d.stack_file(
        p,
        "broken.yaml",
        &format!("name: {p}\nservices:\n  web:\n    image: IMG\n    colour: red\n"),
    );
    let out = d.fails(&dir, &["-f", "broken.yaml", "up", "-d"]);
    assert!(
        out.stderr.contains("broken.yaml:5:5") && out.stderr.contains("colour"),
        "file:line:col and the key: {}",
        out.text()
    );
    assert_eq!(out.code, Some(1));

    // Neither touched anything.
    assert!(d.ps(&dir).is_empty());
    let links = d.links_until(|l| l.is_empty());
    assert!(links.is_empty(), "{links:?}");
    assert_eq!(d.events().len(), before, "events of a refused up");
    // The good stack still comes up.
    d.ok(&dir, &["up", "-d", "--wait"]);
    assert_eq!(d.ps(&dir)["cubadin-web-1"].state, "running");
}

#[test]
fn a_dependency_that_never_becomes_healthy_is_named_with_its_last_output() {
    let mut d = Daemon::start("sick");
    // Unhealthy after two failed checks: the dependent is not started.
    let p = "cusick";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  db:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    healthcheck:
      test: ["CMD-SHELL", "echo db-is-down; exit 1"]
      interval: 200ms
      retries: 2
  api:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    depends_on:
      db: {{condition: service_healthy}}
  solo:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
"#
        ),
    );
    let out = d.fails(&dir, &["up", "-d", "--wait", "--wait-timeout", "3"]);
    assert!(
        out.stderr.contains("cusick-db-1 is unhealthy") && out.stderr.contains("db-is-down"),
        "names the dependency and its last health output: {}",
        out.text()
    );
    assert!(out.stderr.contains("api"), "{}", out.text());
    let ps = d.ps(&dir);
    assert_eq!(ps["cusick-db-1"].health, "unhealthy");
    assert_eq!(ps["cusick-api-1"].state, "created", "{ps:?}");
    assert_eq!(ps["cusick-solo-1"].state, "running", "{ps:?}");

    // Never healthy within --wait-timeout (still in its start period): `--wait` gives up after
    // the timeout, naming the service and its last health output.
    let p = "cuslow";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  slow:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    healthcheck:
      test: ["CMD-SHELL", "echo still-starting; exit 1"]
      interval: 1s
      start_period: 120s
      start_interval: 100ms
"#
        ),
    );
    let out = d.fails(&dir, &["up", "-d", "--wait", "--wait-timeout", "3"]);
    assert!(
        out.stderr.contains("service slow")
            && out.stderr.contains("wait timeout")
            && out.stderr.contains("still-starting"),
        "{}",
        out.text()
    );
    assert!(
        out.took >= Duration::from_secs(3) && out.took < Duration::from_secs(20),
        "{:?}",
        out.took
    );
    assert_eq!(d.ps(&dir)["cuslow-slow-1"].state, "running");
}

#[test]
fn an_image_that_cannot_be_pulled_fails_fast_and_independent_services_come_up() {
    let mut d = Daemon::start("pull");
    let p = "cupull";
    // 127.0.0.1:1: a closed loopback port, the connection is refused at once.
    let broken = "127.0.0.1:1/flotilla-test/missing:1";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  broken:
    image: {broken}
  needs:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    depends_on: [broken]
  solo:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
"#
        ),
    );
    let out = d.fails(&dir, &["up", "-d"]);
    assert!(
        out.stderr.contains(broken),
        "names the image: {}",
        out.text()
    );
    assert!(out.took < Duration::from_secs(15), "{:?}", out.took);
    let ps = d.ps(&dir);
    assert_eq!(ps["cupull-solo-1"].state, "running", "{ps:?}");
    assert!(!ps.contains_key("cupull-broken-1"), "{ps:?}");
    assert!(
        ps.get("cupull-needs-1")
            .is_none_or(|r| r.state != "running"),
        "{ps:?}"
    );

    // Again: the same error, the running service left alone.
    let again = d.fails(&dir, &["up", "-d"]);
    assert!(again.stderr.contains(broken), "{}", again.text());
    let ps2 = d.ps(&dir);
    assert_eq!(ps2["cupull-solo-1"].id, ps["cupull-solo-1"].id);
    assert_eq!(
        d.state(&ps2["cupull-solo-1"].id).started_at,
        d.state(&ps["cupull-solo-1"].id).started_at
    );
}

#[test]
fn a_second_up_at_once_on_one_project_is_refused() {
    let mut d = Daemon::start("twice");
    let p = "cutwice";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  slow:
    image: IMG
    command: ["sh", "-c", "sleep 3; echo > /tmp/ready; {SERVE}"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 1s
      start_period: 60s
      start_interval: 100ms
"#
        ),
    );
    let first = d.command(&dir, &["up", "-d", "--wait"]);
    until("the first up to create its container", TIMEOUT, || {
        d.events()
            .iter()
            .any(|e| e.name == "cutwice-slow-1" && e.action == "start")
            .then_some(())
    });
    let second = d.fails(&dir, &["up", "-d"]);
    assert!(
        second.stderr.contains("project cutwice") && second.stderr.contains("another up"),
        "{}",
        second.text()
    );
    let first = first.finish(TIMEOUT);
    assert!(first.ok(), "the first up completes:\n{}", first.text());
    let ps = d.ps(&dir);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps["cutwice-slow-1"].health, "healthy");
    // Once it is done, `up` is accepted again (and changes nothing).
    let id = ps["cutwice-slow-1"].id.clone();
    d.ok(&dir, &["up", "-d"]);
    assert_eq!(d.ps(&dir)["cutwice-slow-1"].id, id);
}

/// The README's example (examples/hello, as scripts/example brings it up): `web` serves its
/// page on the published port, and its CGI reaches `api` by its name through the network's
/// embedded DNS; a second `up` changes nothing; `down` leaves nothing.
#[test]
fn the_hello_example_serves_its_page_and_reaches_api_by_name() {
    use std::io::{Read, Write};
    let mut d = Daemon::start("hello");
    let tar = d.path().join("busybox-rootfs.tar");
    d.ok(
        d.path(),
        &[
            "image",
            "import",
            tar.to_str().unwrap(),
            "localhost/flotilla/busybox:1",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    d.env.push(("HELLO_PORT".into(), port.to_string()));
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    d.projects.push((example.clone(), "hello".into()));
    d.ok(&example, &["up", "-d", "--wait", "--wait-timeout", "50"]);
    let get = |path: &str| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    };
    assert!(get("/").contains("Hello from flotilla"));
    let answer = until("web to reach api by name", TIMEOUT, || {
        let body = get("/cgi-bin/api");
        body.contains("\"hello\":\"world\"").then_some(body)
    });
    assert!(answer.contains("application/json"), "{answer}");
    let again = d.ok(&example, &["up", "-d", "--dry-run"]);
    assert!(again.stdout.trim().is_empty(), "{}", again.text());
    d.ok(&example, &["down"]);
    d.projects.retain(|(_, p)| p != "hello");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the published port is still open after down"
    );
    let left = d.leftovers();
    assert!(left.is_empty(), "{left:?}");
}

/// The A records the DNS server at `server` (the gateway of the test's own network, asked from
/// the host) gives for `name`; empty on NXDOMAIN.
fn dns_a(server: std::net::Ipv4Addr, name: &str) -> Vec<std::net::Ipv4Addr> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&q, (server, 53)).unwrap();
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).unwrap();
    let r = &buf[..n];
    assert_eq!(&r[..2], &[0x12, 0x34], "the answer keeps the id");
    let answers = u16::from_be_bytes([r[6], r[7]]);
    // Skip the question: its name, type and class.
    let mut i = 12;
    while r[i] != 0 {
        i += 1 + r[i] as usize;
    }
    i += 5;
    let mut out = Vec::new();
    for _ in 0..answers {
        // A name: a pointer or labels.
        if r[i] & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while r[i] != 0 {
                i += 1 + r[i] as usize;
            }
            i += 1;
        }
        let kind = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = u16::from_be_bytes([r[i + 8], r[i + 9]]) as usize;
        i += 10;
        if kind == 1 && len == 4 {
            out.push(std::net::Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]));
        }
        i += len;
    }
    out
}

/// `create` makes the containers of `up` without starting them; `compose pull` pulls through
/// the daemon and names an image it cannot get (`--ignore-pull-failures` carries on).
#[test]
fn create_then_start_and_compose_pull_failures() {
    let mut d = Daemon::start("create");
    let p = "cucreate";
    let dir = d.stack(
        p,
        &format!(
            "name: {p}\nservices:\n  web:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n  \
             gone:\n    image: 127.0.0.1:1/nothing/here:1\n    profiles: [never]\n"
        ),
    );
    d.ok(&dir, &["create"]);
    let ps = d.ps(&dir);
    assert_eq!(names(&ps), [format!("{p}-web-1")]);
    assert_eq!(ps[&format!("{p}-web-1")].state, "created");
    d.ok(&dir, &["start"]);
    until("web to run", TIMEOUT, || {
        (d.ps(&dir)[&format!("{p}-web-1")].state == "running").then_some(())
    });
    // Only `gone` (a closed loopback port): `web`'s image name would be looked up in DNS.
    let o = d.fails(&dir, &["--profile", "never", "compose", "pull", "gone"]);
    assert!(
        o.stderr.contains("127.0.0.1:1/nothing/here:1"),
        "{}",
        o.text()
    );
    assert!(o.took < Duration::from_secs(30), "a closed port fails fast");
    d.ok(
        &dir,
        &[
            "--profile",
            "never",
            "compose",
            "pull",
            "--ignore-pull-failures",
            "gone",
        ],
    );
}

#[test]
fn run_makes_a_one_off_container_after_its_dependencies() {
    let mut d = Daemon::start("run");
    let p = "curun";
    let dir = d.stack(
        p,
        &format!(
            "name: {p}\nservices:\n  db:\n    image: IMG\n    command: [\"sh\", \"-c\", \
             \"{SERVE}\"]\n  app:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n    \
             restart: always\n    ports: [\"127.0.0.1::80\"]\n    depends_on: [db]\n"
        ),
    );
    let before = d.state_dirs().len();

    // Attached: the output as it comes, the command's exit code; `--rm` removes it after.
    let out = d.run_at(
        &dir,
        &[
            "run",
            "--rm",
            "-e",
            "GREETING=hi",
            "app",
            "sh",
            "-c",
            "echo $GREETING; exit 7",
        ],
        TIMEOUT,
    );
    assert_eq!(out.code, Some(7), "{}", out.text());
    assert_eq!(out.stdout, "hi\n", "{}", out.text());
    // db was brought up first; app was not (only its one-off ran, and it is not listed).
    let ps = d.ps(&dir);
    assert_eq!(names(&ps), ["curun-db-1"], "{ps:#?}");
    assert_eq!(ps["curun-db-1"].state, "running");
    assert_eq!(
        d.state_dirs().len(),
        before + 1,
        "the one-off container was not removed"
    );

    // Detached: its name is printed; it is one-off (ps leaves it out) and has no ports.
    let out = d.ok(
        &dir,
        &["run", "-d", "--name", "curun-once", "--no-deps", "app"],
    );
    assert_eq!(out.stdout.trim(), "curun-once", "{}", out.text());
    let client = Client::new(Host::Unix(d.socket.clone()), None);
    let c = block_on(client.inspect_container("curun-once"))
        .unwrap()
        .unwrap();
    assert_eq!(c.labels["com.docker.compose.oneoff"], "True");
    assert_eq!(c.labels["com.docker.compose.service"], "app");
    assert!(c.ports.is_empty(), "{:?}", c.ports);
    assert_eq!(names(&d.ps(&dir)), ["curun-db-1"]);

    // Unknown services are named, by the CLI and by the API (400).
    let out = d.fails(&dir, &["run", "nope"]);
    assert!(
        out.stderr.contains("no such service: nope"),
        "{}",
        out.text()
    );
    let config = d.ok(&dir, &["config", "--format", "json"]);
    let req = flotilla::api::types::ProjectRun {
        project: serde_json::from_str(&config.stdout).unwrap(),
        service: "nope".into(),
        ..Default::default()
    };
    match block_on(client.project_run(p, &req)).unwrap() {
        Err(flotilla::api::client::ClientError::Api {
            status: 400,
            message,
            ..
        }) => assert!(message.contains("no such service: \"nope\""), "{message}"),
        other => panic!("expected a 400: {other:?}"),
    }

    // The planner ignores one-off containers: `up` creates app's own container, and a second
    // `up` plans nothing.
    d.ok(&dir, &["up", "-d"]);
    assert_eq!(names(&d.ps(&dir)), ["curun-app-1", "curun-db-1"]);
    let plan = d.ok(&dir, &["up", "-d", "--dry-run"]);
    assert_eq!(plan.stdout.trim(), "", "{}", plan.text());
    block_on(client.remove_container_with("curun-once", true, true))
        .unwrap()
        .unwrap();
}

#[test]
fn secrets_configs_and_volumes_from_are_mounted_read_only_and_leave_nothing() {
    let mut d = Daemon::start("files");
    let p = "cufiles";
    let dir = d.stack(
        p,
        &format!(
            r#"name: {p}
services:
  store:
    image: IMG
    command: ["sh", "-c", "echo kept > /data/f; {SERVE}"]
    volumes: ["data:/data"]
  app:
    image: IMG
    command: ["sh", "-c", "{SERVE}"]
    depends_on: [store]
    volumes_from: ["store:ro"]
    secrets:
      - db_pass
      - source: token
        target: tok
      - source: db_pass
        target: /etc/pw
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: cfg
        target: /etc/app.conf
secrets:
  db_pass: {{file: ./pass.txt}}
  token: {{environment: FLT_TEST_TOKEN}}
configs:
  cfg: {{content: "hello config"}}
volumes:
  data: {{}}
"#
        ),
    );
    fs::write(dir.join("pass.txt"), "s3cret\n").unwrap();

    // An environment-sourced secret whose variable is unset is refused, naming it.
    let out = d.fails(&dir, &["up", "-d"]);
    assert!(
        out.stderr.contains("FLT_TEST_TOKEN") && out.stderr.contains("secrets[1]"),
        "{}",
        out.text()
    );
    d.ok(&dir, &["down", "-v"]);

    d.env.push(("FLT_TEST_TOKEN".into(), "tv-123".into()));
    // `config` never prints the value.
    let out = d.ok(&dir, &["config"]);
    assert!(!out.stdout.contains("tv-123"), "{}", out.text());
    d.ok(&dir, &["up", "-d", "--wait"]);
    let exec = |cmd: &str| d.ok(&dir, &["exec", "app", "sh", "-c", cmd]).stdout;
    assert_eq!(exec("cat /run/secrets/db_pass"), "s3cret\n");
    assert_eq!(exec("cat /run/secrets/tok"), "tv-123");
    assert_eq!(exec("stat -c '%a %u %g' /run/secrets/tok"), "444 0 0\n");
    assert_eq!(
        exec("cat /etc/pw; stat -c '%a %u %g' /etc/pw"),
        "s3cret\n400 1000 1001\n"
    );
    assert_eq!(exec("cat /etc/app.conf"), "hello config");
    // Read-only: neither a secret nor the shared volume can be written from `app`.
    let o = d.run_at(
        &dir,
        &["exec", "app", "sh", "-c", "echo x > /run/secrets/db_pass"],
        TIMEOUT,
    );
    assert_ne!(o.code, Some(0), "{}", o.text());
    until("store to write its volume", TIMEOUT, || {
        let o = d.run_at(&dir, &["exec", "app", "cat", "/data/f"], TIMEOUT);
        (o.stdout == "kept\n").then_some(())
    });
    let o = d.run_at(
        &dir,
        &["exec", "app", "sh", "-c", "echo x > /data/g"],
        TIMEOUT,
    );
    assert_ne!(o.code, Some(0), "{}", o.text());
    // The host file was bound, not copied; the others were written under the data root only.
    let files = d.root.join("files");
    let made: Vec<_> = fs::read_dir(&files).unwrap().flatten().collect();
    assert_eq!(made.len(), 1, "one files dir for app");
    let secrets_in_logs = fs::read_to_string(d.path().join("daemon.log")).unwrap();
    assert!(!secrets_in_logs.contains("tv-123"));

    d.ok(&dir, &["down", "-v"]);
    assert_eq!(fs::read_dir(&files).unwrap().count(), 0, "files dir left");
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

/// A stand-in for "the internet" made by the test: a network namespace behind a veth pair on
/// the host (`198.19.x.0/30`: host side .1, outside .2) serving HTTP whose CGI prints the
/// client's address. Removed on drop, its server ended by its pid.
struct Outside {
    netns: String,
    host_link: String,
    host_ip: String,
    ip: String,
    server: Option<Child>,
    _www: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let pid = std::process::id();
        let x = pid % 250 + 1;
        let www = tempfile::tempdir().unwrap();
        let mut o = Outside {
            netns: format!("flt-out-{pid}"),
            host_link: format!("fxo{pid}"),
            host_ip: format!("198.19.{x}.1"),
            ip: format!("198.19.{x}.2"),
            server: None,
            _www: www,
        };
        let peer = format!("fxi{pid}");
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &o.netns]);
        ip(&[
            "link",
            "add",
            &o.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &o.netns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", o.host_ip),
            "dev",
            &o.host_link,
        ]);
        ip(&["link", "set", &o.host_link, "up"]);
        let ns = o.netns.clone();
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&["addr", "add", &format!("{}/30", o.ip), "dev", &peer]);
        in_ns(&["link", "set", &peer, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        let cgi = o._www.path().join("cgi-bin");
        fs::create_dir_all(&cgi).unwrap();
        let script = cgi.join("addr");
        fs::write(
            &script,
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let busybox = common::registry::busybox_path();
        o.server = Some(
            Command::new("ip")
                .args(["netns", "exec", &o.netns])
                .arg(busybox)
                .args(["httpd", "-f", "-p", &format!("{}:9999", o.ip), "-h"])
                .arg(o._www.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        o
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[test]
fn outbound_traffic_leaves_masqueraded_as_the_host() {
    let mut d = Daemon::start("nat");
    let outside = Outside::new();
    let p = "cunat";
    let dir = d.stack(
        p,
        &format!("name: {p}\nservices:\n  c:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n"),
    );
    d.ok(&dir, &["up", "-d", "--wait"]);
    // The container reaches an address outside its bridge through the host, and arrives
    // there from the host's own address on that link (masqueraded), not from 10.x.
    let url = format!("http://{}:9999/cgi-bin/addr", outside.ip);
    let seen = until("the outside server to answer", TIMEOUT, || {
        let o = d.run_at(&dir, &["exec", "c", "wget", "-q", "-O", "-", &url], TIMEOUT);
        o.ok().then(|| o.stdout.trim().to_string())
    });
    assert_eq!(seen, outside.host_ip, "the source the outside saw");
    d.ok(&dir, &["down"]);
    drop(outside);
    assert_eq!(d.leftovers(), Vec::<String>::new());
}
