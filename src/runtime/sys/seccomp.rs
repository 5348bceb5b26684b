//! The default seccomp filter, in the spirit of Docker's default profile: the system calls a
//! container without extra capabilities has no business making (kernel modules, keyrings,
//! mounts and namespaces, other processes' memory, clocks, reboot, NUMA policy, …) fail with
//! `EPERM`; `clone` fails when asked for a new namespace and `clone3` answers `ENOSYS` (so libc
//! falls back to `clone`, whose flags the filter can read). Adding the capability that governs
//! a call (`CAP_SYS_ADMIN` for mounts and namespaces, `CAP_SYS_PTRACE` for `ptrace`, …) lifts
//! its rule. `seccomp=unconfined` (the spec annotation [`ANNOTATION_SECCOMP`]) installs none.
//!
//! The rules are plain data ([`RULES`]); [`program`] turns them into classic BPF for the
//! native architecture (pure, unit-tested), [`install`] loads it. Unlike Docker's allow-list,
//! this is a deny-list over the native system call table, so a process may not switch tables:
//! x32 calls (`__X32_SYSCALL_BIT`) and other architectures' (`int 0x80`) answer `ENOSYS`.

use std::io;

use oci_spec::runtime::Spec;

use crate::runtime::config::ANNOTATION_SECCOMP;

/// Why the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: the default filter does not support this architecture")]
    Architecture,
    #[error("seccomp: {source}")]
    Capabilities {
        source: super::process::ProcessError,
    },
    #[error("seccomp: install the filter: {source}")]
    Install { source: io::Error },
}

/// Capability numbers (`linux/capability.h`) that lift rules.
mod cap {
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_RAWIO: u32 = 17;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_PACCT: u32 = 20;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const SYS_NICE: u32 = 23;
    pub const SYS_TIME: u32 = 25;
    pub const SYS_TTY_CONFIG: u32 = 26;
    pub const SYSLOG: u32 = 34;
    pub const PERFMON: u32 = 38;
    pub const BPF: u32 = 39;
}

/// When a rule's call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// When the low 32 bits of argument 0 have any of these bits (`clone`'s flags).
    AnyBit(u32),
    /// When the low 32 bits of argument 0 are none of these values (`personality`).
    NoneOf(&'static [u32]),
}

/// One refused system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub nr: libc::c_long,
    pub when: When,
    /// The error the call fails with.
    pub errno: i32,
    /// Any of these capabilities (in the container's bounding set) lifts the rule.
    pub lifted_by: &'static [u32],
}

const fn deny(name: &'static str, nr: libc::c_long, lifted_by: &'static [u32]) -> Rule {
    Rule {
        name,
        nr,
        when: When::Always,
        errno: libc::EPERM,
        lifted_by,
    }
}

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET`.
pub const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// The `personality` values a container may set: Linux, with `UNAME26`, with
/// `ADDR_NO_RANDOMIZE` (as `setarch -R`), both, and the query `0xffffffff`.
pub const PERSONALITIES: &[u32] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

use cap::*;

/// The default filter's rules.
pub const RULES: &[Rule] = &[
    deny("acct", libc::SYS_acct, &[SYS_PACCT]),
    deny("add_key", libc::SYS_add_key, &[]),
    deny("keyctl", libc::SYS_keyctl, &[]),
    deny("request_key", libc::SYS_request_key, &[]),
    deny("bpf", libc::SYS_bpf, &[SYS_ADMIN, BPF]),
    deny("clock_adjtime", libc::SYS_clock_adjtime, &[SYS_TIME]),
    deny("clock_settime", libc::SYS_clock_settime, &[SYS_TIME]),
    deny("settimeofday", libc::SYS_settimeofday, &[SYS_TIME]),
    deny("init_module", libc::SYS_init_module, &[SYS_MODULE]),
    deny("finit_module", libc::SYS_finit_module, &[SYS_MODULE]),
    deny("delete_module", libc::SYS_delete_module, &[SYS_MODULE]),
    deny("get_mempolicy", libc::SYS_get_mempolicy, &[SYS_NICE]),
    deny("set_mempolicy", libc::SYS_set_mempolicy, &[SYS_NICE]),
    deny("mbind", libc::SYS_mbind, &[SYS_NICE]),
    deny("move_pages", libc::SYS_move_pages, &[SYS_NICE]),
    deny("kcmp", libc::SYS_kcmp, &[SYS_PTRACE]),
    deny("ptrace", libc::SYS_ptrace, &[SYS_PTRACE]),
    deny(
        "process_vm_readv",
        libc::SYS_process_vm_readv,
        &[SYS_PTRACE],
    ),
    deny(
        "process_vm_writev",
        libc::SYS_process_vm_writev,
        &[SYS_PTRACE],
    ),
    deny("pidfd_getfd", libc::SYS_pidfd_getfd, &[SYS_PTRACE]),
    deny("process_madvise", libc::SYS_process_madvise, &[SYS_PTRACE]),
    deny("userfaultfd", libc::SYS_userfaultfd, &[SYS_PTRACE]),
    deny("kexec_load", libc::SYS_kexec_load, &[SYS_BOOT]),
    deny("kexec_file_load", libc::SYS_kexec_file_load, &[SYS_BOOT]),
    deny("reboot", libc::SYS_reboot, &[SYS_BOOT]),
    deny("lookup_dcookie", libc::SYS_lookup_dcookie, &[SYS_ADMIN]),
    deny("mount", libc::SYS_mount, &[SYS_ADMIN]),
    deny("umount2", libc::SYS_umount2, &[SYS_ADMIN]),
    deny("pivot_root", libc::SYS_pivot_root, &[SYS_ADMIN]),
    deny("fsopen", libc::SYS_fsopen, &[SYS_ADMIN]),
    deny("fsconfig", libc::SYS_fsconfig, &[SYS_ADMIN]),
    deny("fsmount", libc::SYS_fsmount, &[SYS_ADMIN]),
    deny("fspick", libc::SYS_fspick, &[SYS_ADMIN]),
    deny("open_tree", libc::SYS_open_tree, &[SYS_ADMIN]),
    deny("move_mount", libc::SYS_move_mount, &[SYS_ADMIN]),
    deny("mount_setattr", libc::SYS_mount_setattr, &[SYS_ADMIN]),
    deny("setns", libc::SYS_setns, &[SYS_ADMIN]),
    deny("unshare", libc::SYS_unshare, &[SYS_ADMIN]),
    deny(
        "name_to_handle_at",
        libc::SYS_name_to_handle_at,
        &[SYS_ADMIN],
    ),
    deny(
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        &[DAC_READ_SEARCH],
    ),
    deny("quotactl", libc::SYS_quotactl, &[SYS_ADMIN]),
    deny("swapon", libc::SYS_swapon, &[SYS_ADMIN]),
    deny("swapoff", libc::SYS_swapoff, &[SYS_ADMIN]),
    deny("syslog", libc::SYS_syslog, &[SYS_ADMIN, SYSLOG]),
    deny(
        "perf_event_open",
        libc::SYS_perf_event_open,
        &[SYS_ADMIN, PERFMON],
    ),
    deny("vhangup", libc::SYS_vhangup, &[SYS_TTY_CONFIG]),
    deny("nfsservctl", libc::SYS_nfsservctl, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("create_module", 174, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("get_kernel_syms", 177, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("query_module", 178, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("uselib", libc::SYS_uselib, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("ustat", libc::SYS_ustat, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("sysfs", libc::SYS_sysfs, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("_sysctl", libc::SYS__sysctl, &[]),
    #[cfg(target_arch = "x86_64")]
    deny("ioperm", libc::SYS_ioperm, &[SYS_RAWIO]),
    #[cfg(target_arch = "x86_64")]
    deny("iopl", libc::SYS_iopl, &[SYS_RAWIO]),
    Rule {
        name: "clone",
        nr: libc::SYS_clone,
        when: When::AnyBit(NAMESPACE_FLAGS),
        errno: libc::EPERM,
        lifted_by: &[SYS_ADMIN],
    },
    Rule {
        name: "clone3",
        nr: libc::SYS_clone3,
        when: When::Always,
        errno: libc::ENOSYS,
        lifted_by: &[SYS_ADMIN],
    },
    Rule {
        name: "personality",
        nr: libc::SYS_personality,
        when: When::NoneOf(PERSONALITIES),
        errno: libc::EPERM,
        lifted_by: &[],
    },
];

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: Option<u32> = Some(0xC000_003E); // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: Option<u32> = Some(0xC000_00B7); // AUDIT_ARCH_AARCH64
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_ARCH: Option<u32> = None;

/// x32 system calls carry this bit in their number (x86_64 only).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
// Offsets in `struct seccomp_data`: nr, arch, args[0] (its low half on little endian).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
#[cfg(target_endian = "little")]
const OFFSET_ARG0_LOW: u32 = 16;
#[cfg(target_endian = "big")]
const OFFSET_ARG0_LOW: u32 = 20;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn ret_errno(errno: i32) -> libc::sock_filter {
    insn(RET_K, 0, 0, RET_ERRNO | (errno as u32 & 0xffff))
}

/// The body of a rule, run with the system call number matched; it always returns.
fn body(rule: &Rule) -> Vec<libc::sock_filter> {
    let allow = insn(RET_K, 0, 0, RET_ALLOW);
    match rule.when {
        When::Always => vec![ret_errno(rule.errno)],
        When::AnyBit(bits) => vec![
            insn(LD_W_ABS, 0, 0, OFFSET_ARG0_LOW),
            insn(JSET_K, 0, 1, bits),
            ret_errno(rule.errno),
            allow,
        ],
        When::NoneOf(values) => {
            let mut out = vec![insn(LD_W_ABS, 0, 0, OFFSET_ARG0_LOW)];
            let n = values.len();
            for (i, v) in values.iter().enumerate() {
                // True: over the remaining comparisons and the refusal, to `allow`.
                out.push(insn(JEQ_K, (n - i) as u8, 0, *v));
            }
            out.push(ret_errno(rule.errno));
            out.push(allow);
            out
        }
    }
}

/// The filter for a container whose bounding set is `caps` (bit n: capability n), as classic
/// BPF: other architectures and x32 calls get `ENOSYS`, each rule not lifted by `caps` refuses
/// its call, everything else is allowed.
pub fn program(caps: u64) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let arch = NATIVE_ARCH.ok_or(SeccompError::Architecture)?;
    let mut out = vec![
        insn(LD_W_ABS, 0, 0, OFFSET_ARCH),
        insn(JEQ_K, 1, 0, arch),
        ret_errno(libc::ENOSYS),
        insn(LD_W_ABS, 0, 0, OFFSET_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        out.push(insn(JGE_K, 0, 1, X32_SYSCALL_BIT));
        out.push(ret_errno(libc::ENOSYS));
    }
    for rule in RULES {
        if rule.lifted_by.iter().any(|c| caps & (1 << c) != 0) {
            continue;
        }
        let body = body(rule);
        out.push(insn(JEQ_K, 0, body.len() as u8, rule.nr as u32));
        out.extend(body);
    }
    out.push(insn(RET_K, 0, 0, RET_ALLOW));
    Ok(out)
}

/// The filter `spec` asks for: none with `seccomp=unconfined`, else the default one for the
/// spec's bounding set. Built before the process drops its privileges (it allocates).
pub fn for_spec(spec: &Spec) -> Result<Option<Vec<libc::sock_filter>>, SeccompError> {
    let unconfined = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SECCOMP))
        .is_some_and(|v| v == "unconfined");
    if unconfined {
        return Ok(None);
    }
    let bounding = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref());
    let caps = super::process::cap_bits(bounding)
        .map_err(|source| SeccompError::Capabilities { source })?;
    program(caps).map(Some)
}

/// Installs `filter` on this process (inherited by its children and kept across `execve`).
/// Needs `no_new_privs` or `CAP_SYS_ADMIN`.
pub fn install(filter: &[libc::sock_filter]) -> Result<(), SeccompError> {
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points to `filter`, which lives until the call returns; the kernel copies
    // the program and does not keep the pointer. The filter pointer is only read.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(SeccompError::Install {
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` over a `seccomp_data` (nr, arch, arg0) like the kernel would.
    fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn default_filter_refuses_and_allows() {
        let arch = NATIVE_ARCH.unwrap();
        let prog = program(0).unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        let nr = |n: libc::c_long| n as u32;
        assert_eq!(run(&prog, nr(libc::SYS_unshare), arch, 0), eperm);
        assert_eq!(run(&prog, nr(libc::SYS_keyctl), arch, 0), eperm);
        assert_eq!(run(&prog, nr(libc::SYS_read), arch, 0), RET_ALLOW);
        assert_eq!(run(&prog, nr(libc::SYS_clone3), arch, 0), enosys);
        // clone: a fork is fine, a new namespace is not.
        let fork = libc::SIGCHLD as u64;
        assert_eq!(run(&prog, nr(libc::SYS_clone), arch, fork), RET_ALLOW);
        let newnet = fork | libc::CLONE_NEWNET as u64;
        assert_eq!(run(&prog, nr(libc::SYS_clone), arch, newnet), eperm);
        // personality: the safe values only.
        let p = nr(libc::SYS_personality);
        for v in PERSONALITIES {
            assert_eq!(run(&prog, p, arch, u64::from(*v)), RET_ALLOW, "{v:#x}");
        }
        assert_eq!(run(&prog, p, arch, 0x0040_0000), eperm);
        // No way around the table: x32 numbers and other architectures.
        let x32_unshare = X32_SYSCALL_BIT | 272;
        assert_eq!(run(&prog, x32_unshare, arch, 0), enosys);
        assert_eq!(run(&prog, 310, 0x4000_0003, 0), enosys);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn capabilities_lift_their_rules() {
        let arch = NATIVE_ARCH.unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let admin = program(1 << cap::SYS_ADMIN).unwrap();
        assert_eq!(run(&admin, libc::SYS_unshare as u32, arch, 0), RET_ALLOW);
        assert_eq!(run(&admin, libc::SYS_mount as u32, arch, 0), RET_ALLOW);
        let newns = libc::CLONE_NEWNS as u64;
        assert_eq!(run(&admin, libc::SYS_clone as u32, arch, newns), RET_ALLOW);
        assert_eq!(run(&admin, libc::SYS_ptrace as u32, arch, 0), eperm);
        assert_eq!(run(&admin, libc::SYS_keyctl as u32, arch, 0), eperm);
        let ptrace = program(1 << cap::SYS_PTRACE).unwrap();
        assert_eq!(run(&ptrace, libc::SYS_ptrace as u32, arch, 0), RET_ALLOW);
        assert_eq!(run(&ptrace, libc::SYS_unshare as u32, arch, 0), eperm);
    }

    #[test]
    fn rules_name_each_call_once() {
        let mut nrs: Vec<libc::c_long> = RULES.iter().map(|r| r.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), RULES.len());
    }
}
