//! The host's cgroup layout: pure v2, or v1 controller hierarchies found in mountinfo (hybrid
//! hosts count as v1: their unified hierarchy carries no resource controller we use).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Error, ROOT};

/// Which cgroup interface the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Controllers in separate hierarchies (also hybrid hosts).
    V1,
    /// The unified hierarchy with all controllers.
    V2,
}

/// One mounted hierarchy: its controllers and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Controllers bound to it (`["cpu", "cpuacct"]` when co-mounted); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Mount point.
    pub dir: PathBuf,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// v1: every controller hierarchy (named ones such as `name=systemd` excluded); v2: one mount.
    pub mounts: Vec<Mount>,
}

/// Controllers known to the kernel; everything else in a v1 mount's options is a mount option.
const KNOWN_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

impl Hierarchy {
    /// The host's layout, detected once per process.
    pub fn host() -> Result<&'static Hierarchy, Error> {
        static HOST: OnceLock<Hierarchy> = OnceLock::new();
        if let Some(h) = HOST.get() {
            return Ok(h);
        }
        let detected = Hierarchy::detect()?;
        Ok(HOST.get_or_init(|| detected))
    }

    /// Detects the layout now: pure v2 when `/sys/fs/cgroup/cgroup.controllers` exists, else the
    /// v1 controller mounts from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Hierarchy, Error> {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            return Ok(Hierarchy {
                version: Version::V2,
                mounts: vec![Mount {
                    controllers: Vec::new(),
                    dir: root.to_path_buf(),
                }],
            });
        }
        let text = fs::read_to_string("/proc/self/mountinfo").map_err(Error::Mountinfo)?;
        Ok(Hierarchy {
            version: Version::V1,
            mounts: parse_v1_mounts(&text),
        })
    }

    pub(super) fn v1_mount(&self, controller: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
    }
}

/// The cgroup v1 controller mounts listed in a mountinfo text (first mount of each controller).
pub fn parse_v1_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            continue;
        }
        let super_opts = right.nth(1).unwrap_or("");
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let controllers: Vec<String> = super_opts
            .split(',')
            .filter(|o| KNOWN_CONTROLLERS.contains(o))
            .map(str::to_owned)
            .collect();
        if controllers.is_empty()
            || controllers
                .iter()
                .any(|c| mounts.iter().any(|m| m.controllers.contains(c)))
        {
            continue;
        }
        mounts.push(Mount {
            controllers,
            dir: PathBuf::from(unescape_mountinfo(point)),
        });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(digits, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in super::super) const MOUNTINFO: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
35 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
36 31 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory
37 31 0:32 / /sys/fs/cgroup/pids rw,nosuid shared:15 - cgroup cgroup rw,pids
38 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw shared:16 - cgroup cgroup rw,net_cls,net_prio
39 31 0:31 / /mnt/memory\\040copy rw shared:14 - cgroup cgroup rw,memory
";

    #[test]
    fn mountinfo_yields_v1_controller_mounts() {
        let mounts = parse_v1_mounts(MOUNTINFO);
        let got: Vec<(String, String)> = mounts
            .iter()
            .map(|m| (m.controllers.join(","), m.dir.display().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
                ("memory", "/sys/fs/cgroup/memory"),
                ("pids", "/sys/fs/cgroup/pids"),
                ("net_cls,net_prio", "/sys/fs/cgroup/net_cls,net_prio"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/mnt/trail\\"), "/mnt/trail\\");
    }
}
