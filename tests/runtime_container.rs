//! Root integration tests of the container runtime: `flotilla shim run` (the real binary) on OCI
//! bundles rendered by `runtime::config::render` over a busybox-static image used as the single
//! overlay layer. Each test has its own tempdir and a unique marker in its containers'
//! environment; a drop guard kills marked processes, unmounts anything under the tempdir and
//! removes it even when the test fails, and (when the test did not fail) asserts there was
//! nothing left to clean.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla::runtime::config::{self, BindMount, TmpfsMount};

mod common;

use common::shim::{Fixture, TIMEOUT};

#[test]
fn pid_one_and_host_processes_invisible_and_hostname() {
    let mut f = Fixture::new();
    let mut c = f.config(
        "echo $$; for p in /proc/[0-9]*; do echo proc ${p#/proc/}; done; hostname; exit 42",
    );
    c.hostname = Some("box".into());
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\nproc 1\nbox\n");
}

#[test]
fn masked_and_read_only_paths() {
    let mut f = Fixture::new();
    let host_timer_list = fs::read("/proc/timer_list").map(|t| t.len()).unwrap_or(0);
    let c = f.config(
        "echo kcore $(cat /proc/kcore 2>/dev/null | wc -c); \
         echo timer_list $(cat /proc/timer_list | wc -c); \
         echo acpi $(ls -A /proc/acpi | wc -l); \
         touch /proc/acpi/x 2>/dev/null && echo acpi-writable; \
         echo x 2>/dev/null > /proc/sys/kernel/domainname && echo sys-writable; \
         echo done",
    );
    let out = f.sh(&c);
    assert_eq!(out, "kcore 0\ntimer_list 0\nacpi 0\ndone\n");
    // The mask hides something: the host's timer_list is not empty.
    assert!(host_timer_list > 0 || !Path::new("/proc/timer_list").exists());
}

#[test]
fn mount_fails_without_cap_sys_admin_and_default_caps() {
    let mut f = Fixture::new();
    let c = f.config(
        "mount -t tmpfs x /mnt 2>/dev/null; echo rc=$?; grep CapEff /proc/self/status; \
         grep CapBnd /proc/self/status; grep NoNewPrivs /proc/self/status",
    );
    let out = f.sh(&c);
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "rc=0", "{out}");
    // Docker's default set: chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    assert_eq!(lines[1], "CapEff:\t00000000a80425fb");
    assert_eq!(lines[2], "CapBnd:\t00000000a80425fb");
    assert_eq!(lines[3], "NoNewPrivs:\t1");
}

#[test]
fn read_only_root_and_tmpfs() {
    let mut f = Fixture::new();
    let mut c = f.config(
        "touch /x 2>/dev/null; echo root=$?; touch /tmp/y && echo tmp=$?; \
         grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1",
    );
    c.read_only = true;
    c.tmpfs = vec![TmpfsMount {
        target: "/tmp".into(),
        size: Some(1 << 20),
        mode: None,
    }];
    let out = f.sh(&c);
    assert_eq!(out, "root=1\ntmp=0\nro\n");
    // The image itself is untouched.
    assert!(!f.image().join("x").exists());
}

#[test]
fn user_option_takes_effect() {
    let mut f = Fixture::new();
    let mut c = f.config("id; grep CapEff /proc/self/status; echo $HOME");
    c.user = Some("nobody".into());
    assert_eq!(
        f.sh(&c),
        "uid=65534(nobody) gid=65534(nogroup)\nCapEff:\t0000000000000000\n/nonexistent\n"
    );
    c.user = Some("1000:1000".into());
    assert_eq!(
        f.sh(&c),
        "uid=1000(app) gid=1000(app) groups=10(wheel)\nCapEff:\t0000000000000000\n/home/app\n"
    );
    c.user = Some("4321".into());
    assert_eq!(
        f.sh(&c),
        "uid=4321 gid=0(root)\nCapEff:\t0000000000000000\n/\n"
    );
    c.user = Some("ghost".into());
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unable to find user ghost: no matching entries in passwd file"),
        "{out:?}"
    );
}

#[test]
fn missing_entrypoint_exits_127() {
    let mut f = Fixture::new();
    let mut c = f.config("");
    c.command = Some(vec!["nosuchcmd".into(), "arg".into()]);
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"exec: "nosuchcmd": executable file not found in $PATH"#),
        "{stderr}"
    );
    c.command = Some(vec!["/no/such/file".into()]);
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    c.command = Some(vec!["/etc/passwd".into()]);
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
}

#[test]
fn symlink_at_mount_destination_stays_inside() {
    let mut f = Fixture::new();
    let image = f.image();
    symlink("/etc", image.join("data")).unwrap();
    symlink("../../../../../../../../../etc", image.join("data2")).unwrap();
    let src = f.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("marker"), "confined\n").unwrap();
    let host_etc = fs::read_dir("/etc").unwrap().count();
    for target in ["/data", "/data2"] {
        let mut c = f.config("cat /etc/marker; ls /etc | wc -l");
        c.binds = vec![BindMount {
            source: src.clone(),
            target: target.into(),
            read_only: true,
        }];
        // Bound on the container's /etc (resolved in its root), not on the host's /etc.
        assert_eq!(f.sh(&c), "confined\n1\n", "{target}");
    }
    assert!(!Path::new("/etc/marker").exists());
    assert_eq!(fs::read_dir("/etc").unwrap().count(), host_etc);
}

#[test]
fn binary_cannot_be_overwritten_through_proc_exe() {
    let mut f = Fixture::new();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let before = fs::metadata(&binary).unwrap();
    let c = f.config(
        "echo x 2>/dev/null > /proc/self/exe && echo self-writable; \
         echo x 2>/dev/null >> /proc/1/exe && echo pid1-writable; echo ready; sleep 60",
    );
    let pid = f.spawn(&c);
    // The shim runs from a sealed memfd: its exe is not the flotilla file and is not writable.
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let link = fs::read_link(&exe).unwrap_or_default();
        if link.to_string_lossy().contains("memfd:") {
            break;
        }
        assert!(Instant::now() < deadline, "shim still runs from {link:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(fs::OpenOptions::new().write(true).open(&exe).is_err());
    assert!(fs::OpenOptions::new().append(true).open(&exe).is_err());
    // The container reached its `sleep` (the shell may exec it in its place).
    let sleeping = |f: &Fixture| {
        f.marked_processes().iter().any(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    };
    while !sleeping(&f) {
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Killing the shim takes its container down.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let out = f.wait(pid);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    let after = fs::metadata(&binary).unwrap();
    assert_eq!(before.len(), after.len());
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
}

#[test]
fn signals_are_forwarded_and_exit_codes_reported() {
    let mut f = Fixture::new();
    let c = f.config("trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done");
    let pid = f.spawn(&c);
    let deadline = Instant::now() + TIMEOUT;
    while f.marked_processes().len() < 2 {
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = f.wait(pid);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn environment_cwd_and_sysctls() {
    let mut f = Fixture::new();
    let mut c = f.config(
        "pwd; echo $GREETING; cat /proc/sys/kernel/shmmni; cat /proc/sys/net/ipv4/ip_forward",
    );
    c.working_dir = Some("/srv/app".into());
    c.env.push("GREETING=hello".into());
    c.sysctls = BTreeMap::from([
        ("kernel.shmmni".to_string(), "1234".to_string()),
        ("net.ipv4.ip_forward".to_string(), "1".to_string()),
    ]);
    assert_eq!(f.sh(&c), "/srv/app\nhello\n1234\n1\n");
    // A ulimit above the host's hard limit is clamped to it, not refused by the kernel.
    let hard = flotilla::runtime::sys::container::host_hard_limits().hard["nofile"];
    let mut c = f.config("ulimit -Hn; ulimit -Sn");
    c.ulimits = vec![config::Ulimit {
        name: "nofile".into(),
        soft: 1000,
        hard: hard + 1000,
    }];
    assert_eq!(f.sh(&c), format!("{hard}\n1000\n"));
}
