//! Root integration tests of the default seccomp filter (`runtime::sys::seccomp`) through the
//! real `flotilla shim run` and `flotilla shim exec`, with busybox-static's applets: `unshare`
//! (unshare(2)), `nsenter` (setns(2)), `swapon` (swapon(2)) and `mount` (mount(2)). Each call is
//! refused with EPERM ("Operation not permitted") under the filter; with the governing
//! capability added the filter lets it through to the kernel; `seccomp=unconfined` lifts it.

mod common;

use common::shim::Fixture;

/// `sh -c` lines that print `<name> rc=<status>` and the first line of stderr.
fn probe(name: &str, cmd: &str) -> String {
    format!("echo {name} rc=$({cmd} 2>/tmp/err >/dev/null; echo $?) $(head -n1 /tmp/err); ")
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn default_filter_refuses_namespaces_mounts_and_swap_with_eperm() {
    let mut f = Fixture::new();
    let script = probe("unshare", "unshare -n true")
        + &probe("nsenter", "nsenter -t 1 -n true")
        + &probe("swapon", "swapon /dev/null")
        + "grep Seccomp: /proc/self/status; echo ok";
    let c = f.config(&script);
    let out = f.sh(&c);
    let l = lines(&out);
    for (i, name) in ["unshare", "nsenter", "swapon"].iter().enumerate() {
        assert!(l[i].starts_with(&format!("{name} rc=1")), "{out}");
        assert!(l[i].contains("Operation not permitted"), "{out}");
    }
    assert_eq!(l[3], "Seccomp:\t2", "{out}");
    // Ordinary work is untouched: a shell, pipes, forks.
    assert_eq!(l[4], "ok");
}

#[test]
fn cap_sys_admin_lifts_the_namespace_and_mount_rules() {
    let mut f = Fixture::new();
    // With CAP_SYS_ADMIN the calls reach the kernel, which allows them.
    let script = probe("unshare", "unshare -n true")
        + &probe("mount", "mount -t tmpfs x /mnt")
        + &probe("swapon", "swapon /dev/null");
    let mut c = f.config(&script);
    c.cap_add = vec!["SYS_ADMIN".into()];
    let out = f.sh(&c);
    let l = lines(&out);
    assert!(l[0].starts_with("unshare rc=0"), "{out}");
    assert!(l[1].starts_with("mount rc=0"), "{out}");
    // swapon of /dev/null passes the filter: the kernel refuses it for another reason.
    assert!(l[2].starts_with("swapon rc=1"), "{out}");
    assert!(!l[2].contains("Operation not permitted"), "{out}");
}

#[test]
fn unconfined_installs_no_filter() {
    let mut f = Fixture::new();
    let mut c = f.config("grep Seccomp: /proc/self/status");
    c.seccomp_unconfined = true;
    assert_eq!(f.sh(&c), "Seccomp:\t0\n");
    let mut c = f.config(&probe("unshare", "unshare -n true"));
    c.seccomp_unconfined = true;
    c.cap_add = vec!["SYS_ADMIN".into()];
    let out = f.sh(&c);
    assert!(out.starts_with("unshare rc=0"), "{out}");
}
