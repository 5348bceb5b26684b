//! The container's root filesystem, built inside its fresh mount namespace: the overlayfs root
//! (image layers as lowerdirs, upper and work dirs in the state dir) or a bind of a prepared
//! rootfs, the spec's mounts, devices and `/dev` links, then `pivot_root` with the old root
//! detached ([`prepare`]); afterwards masked paths, read-only paths and the read-only root
//! ([`protect`]).
//!
//! Every path inside the container is resolved by the kernel from the root's fd with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so a symlink in the image (`/data → /etc`,
//! `../../..`) stays inside the rootfs; mounts are attached to those fds with the new mount API
//! (`fsopen`/`fsmount`/`open_tree` + `move_mount`), never through a path string on the host.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, Mount, Spec};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use crate::runtime::config::{
    self, ANNOTATION_LAYERS, ANNOTATION_VOLATILE, Atime, ConfigError, MountAttrs,
};

/// Why the root filesystem could not be built. Each variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("make the mount tree private: {source}")]
    MakePrivate { source: io::Error },
    #[error("annotation {ANNOTATION_LAYERS}: {reason}")]
    Layers { reason: String },
    #[error("create {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("mount overlay on {path}: {source}")]
    Overlay { path: PathBuf, source: io::Error },
    #[error("bind rootfs {path}: {source}")]
    BindRootfs { path: PathBuf, source: io::Error },
    #[error("open rootfs {path}: {source}")]
    OpenRoot { path: PathBuf, source: io::Error },
    #[error("mount {destination}: {source}")]
    MountOptions {
        destination: String,
        source: ConfigError,
    },
    #[error("mount {destination}: resolve inside the rootfs: {source}")]
    Target {
        destination: String,
        source: io::Error,
    },
    #[error("mount {typ} on {destination}: {source}")]
    Mount {
        typ: String,
        destination: String,
        source: io::Error,
    },
    #[error("bind {source_path} on {destination}: {source}")]
    Bind {
        source_path: PathBuf,
        destination: String,
        source: io::Error,
    },
    #[error("device {path}: {source}")]
    Device { path: String, source: io::Error },
    #[error("bind the console {path} on /dev/console: {source}")]
    Console { path: PathBuf, source: io::Error },
    #[error("link /dev/{name}: {source}")]
    DevLink { name: String, source: io::Error },
    #[error("working directory {path}: {source}")]
    WorkingDir { path: PathBuf, source: io::Error },
    #[error("pivot_root into the rootfs: {source}")]
    PivotRoot { source: io::Error },
    #[error("detach the old root: {source}")]
    DetachOldRoot { source: io::Error },
    #[error("mask {path}: {source}")]
    Mask { path: String, source: io::Error },
    #[error("make {path} read-only: {source}")]
    ReadOnlyPath { path: String, source: io::Error },
    #[error("make the root read-only: {source}")]
    ReadOnlyRoot { source: io::Error },
}

type Result<T, E = RootfsError> = std::result::Result<T, E>;

fn ioe(e: Errno) -> io::Error {
    io::Error::from(e)
}

// --- mount_setattr (not wrapped by rustix or nix) ------------------------------------------

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(dirfd, path, flags, attr)`: sets `set` and clears `clear` on a mount (or a
/// whole tree with `AT_RECURSIVE`).
fn mount_setattr(
    dirfd: BorrowedFd<'_>,
    path: &str,
    flags: u32,
    set: u64,
    clear: u64,
) -> io::Result<()> {
    let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the syscall reads `path` (a NUL-terminated string that outlives the call) and
    // `size_of::<MountAttr>()` bytes of `attr` (a live, correctly laid out `struct mount_attr`);
    // it writes no memory of ours and takes no ownership of `dirfd`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The attributes to set and to clear for the options' [`MountAttrs`].
fn attr_bits(a: &MountAttrs) -> (u64, u64) {
    let mut set = 0;
    let mut clear = 0;
    for (on, bit) in [
        (a.read_only, MOUNT_ATTR_RDONLY),
        (a.nosuid, MOUNT_ATTR_NOSUID),
        (a.nodev, MOUNT_ATTR_NODEV),
        (a.noexec, MOUNT_ATTR_NOEXEC),
        (a.nodiratime, MOUNT_ATTR_NODIRATIME),
    ] {
        if on {
            set |= bit;
        } else {
            clear |= bit;
        }
    }
    if let Some(atime) = a.atime {
        clear |= MOUNT_ATTR_ATIME_MASK;
        set |= match atime {
            Atime::Relatime => 0,
            Atime::Noatime => MOUNT_ATTR_NOATIME,
            Atime::Strictatime => MOUNT_ATTR_STRICTATIME,
        };
    }
    (set, clear)
}

// --- fd-confined resolution ----------------------------------------------------------------

/// A container path (`/dev/pts`) relative to the root, `.` for the root itself.
fn rel(path: &str) -> &str {
    let r = path.trim_start_matches('/');
    if r.is_empty() { "." } else { r }
}

/// Opens `path` resolved by the kernel as if `root` were `/`.
fn open_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    // openat2 rejects a mode unless a file may be created.
    let mode = if flags.contains(OFlags::CREATE) {
        Mode::from_raw_mode(0o644)
    } else {
        Mode::empty()
    };
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(
            root,
            rel(path),
            flags | OFlags::CLOEXEC,
            mode,
            resolve | ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // openat2 asks for a retry when a concurrent rename could have raced "..".
            Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
            other => return other,
        }
    }
}

/// Splits `a/b/c` into (`a/b`, `c`).
fn split_last(path: &str) -> (&str, &str) {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// Opens the directory `path` in the root (an `O_PATH` fd), creating missing components (0755).
fn ensure_dir(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY;
    match open_in_root(root, path, flags, ResolveFlags::empty()) {
        Err(Errno::NOENT) => {
            let (parent, last) = split_last(path);
            if last.is_empty() || last == "." || last == ".." {
                return Err(Errno::NOENT);
            }
            let dir = ensure_dir(root, parent)?;
            match rustix::fs::mkdirat(&dir, last, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            open_in_root(root, path, flags, ResolveFlags::empty())
        }
        other => other,
    }
}

/// Opens the file `path` in the root (an `O_PATH` fd), creating an empty one when missing.
fn ensure_file(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    match open_in_root(root, path, OFlags::PATH, ResolveFlags::empty()) {
        Err(Errno::NOENT) => {
            let (parent, _) = split_last(path);
            ensure_dir(root, parent)?;
            drop(open_in_root(
                root,
                path,
                OFlags::CREATE | OFlags::RDONLY,
                ResolveFlags::empty(),
            )?);
            open_in_root(root, path, OFlags::PATH, ResolveFlags::empty())
        }
        other => other,
    }
}

// --- the root filesystem -------------------------------------------------------------------

/// Where the container's root is mounted: `<state>/rootfs`.
pub fn rootfs_dir(state: &Path) -> PathBuf {
    state.join("rootfs")
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| RootfsError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// The image layers of the spec's annotation, bottom first (empty: no annotation).
fn layers(spec: &Spec) -> Result<Vec<PathBuf>> {
    let Some(text) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_LAYERS))
    else {
        return Ok(Vec::new());
    };
    let list: Vec<PathBuf> = serde_json::from_str(text).map_err(|e| RootfsError::Layers {
        reason: e.to_string(),
    })?;
    if list.is_empty() || list.iter().any(|p| !p.is_absolute()) {
        return Err(RootfsError::Layers {
            reason: "expected a non-empty list of absolute paths".into(),
        });
    }
    Ok(list)
}

/// Mounts the overlay of `layers` (bottom first) on `target` with the new mount API, one
/// `lowerdir+` per layer (no option-length limit); kernels before 6.8 get the classic option
/// string.
///
/// `volatile`: overlayfs's `volatile` option (no syncs of the upper filesystem, not even the
/// one at unmount, which otherwise makes every container exit wait for a `syncfs` of the host
/// filesystem holding the state dir); ignored by kernels without it (before 5.10).
fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let mut plus = true;
    for layer in layers.iter().rev() {
        match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", layer.as_os_str()) {
            Ok(()) => {}
            Err(Errno::INVAL) if layer == &layers[layers.len() - 1] => {
                plus = false;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !plus {
        let escape = |p: &Path| {
            let s = p.to_string_lossy();
            s.replace('\\', "\\\\")
                .replace(':', "\\:")
                .replace(',', "\\,")
        };
        let lower: Vec<String> = layers.iter().rev().map(|p| escape(p)).collect();
        let mut data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            escape(upper),
            escape(work)
        );
        if volatile {
            data.push_str(",volatile");
        }
        return Ok(rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(CString::new(data)?.as_c_str()),
        )?);
    }
    rustix::mount::fsconfig_set_string(&fs, "upperdir", upper.as_os_str())?;
    rustix::mount::fsconfig_set_string(&fs, "workdir", work.as_os_str())?;
    if volatile {
        match rustix::mount::fsconfig_set_flag(&fs, "volatile") {
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::mount::fsconfig_create(&fs)?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    rustix::mount::move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Builds the root filesystem and enters it. Runs in the container's process, in its new mount
/// namespace (so nothing here is visible on the host, and everything vanishes with it), before
/// the user switch. Afterwards `/` is the container's root and the host's is gone.
///
/// `console`, the host path of the container's pseudo-terminal slave, is bound on
/// `/dev/console` (as runc does).
pub fn prepare(spec: &Spec, bundle: &Path, state: &Path, console: Option<&Path>) -> Result<()> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| RootfsError::MakePrivate { source: ioe(e) })?;

    let target = rootfs_dir(state);
    create_dir(&target)?;
    let layers = layers(spec)?;
    if layers.is_empty() {
        let path = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        let path = bundle.join(path);
        bind_rootfs(&path, &target).map_err(|source| RootfsError::BindRootfs { path, source })?;
    } else {
        let upper = state.join("upper");
        let work = state.join("work");
        create_dir(&upper)?;
        create_dir(&work)?;
        let volatile = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_VOLATILE))
            .is_some_and(|v| v == "true");
        if volatile {
            // A volatile mount leaves `work/incompat/volatile/dirty` behind, even when unmounted
            // cleanly, and overlayfs refuses the next mount while it is there (the upper may
            // have lost writes in a crash). This container's writable layer is disposable by
            // definition: a restart reuses it as it is.
            let _ = std::fs::remove_dir_all(work.join("work/incompat/volatile"));
        }
        mount_overlay(&layers, &upper, &work, &target, volatile).map_err(|source| {
            RootfsError::Overlay {
                path: target.clone(),
                source,
            }
        })?;
    }
    let root: OwnedFd = rustix::fs::open(
        &target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::OpenRoot {
        path: target.clone(),
        source: ioe(e),
    })?;

    for m in spec.mounts().as_deref().unwrap_or_default() {
        mount_one(root.as_fd(), m)?;
    }
    devices(root.as_fd(), spec)?;
    dev_links(root.as_fd())?;
    if let Some(path) = console {
        bind_console(root.as_fd(), path).map_err(|source| RootfsError::Console {
            path: path.to_path_buf(),
            source,
        })?;
    }
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd()) {
        let text = cwd.to_string_lossy();
        ensure_dir(root.as_fd(), &text).map_err(|e| RootfsError::WorkingDir {
            path: cwd.clone(),
            source: ioe(e),
        })?;
    }
    pivot(root.as_fd())
}

fn bind_rootfs(path: &Path, target: &Path) -> io::Result<()> {
    let tree = rustix::mount::open_tree(
        CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    rustix::mount::move_mount(
        &tree,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// One mount of the spec, attached at its destination resolved inside the root.
fn mount_one(root: BorrowedFd<'_>, m: &Mount) -> Result<()> {
    let destination = m.destination().to_string_lossy().into_owned();
    let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
    let options = config::parse_mount_options(
        &destination,
        m.typ().as_deref(),
        m.options().as_deref().unwrap_or_default(),
    )
    .map_err(|source| RootfsError::MountOptions {
        destination: destination.clone(),
        source,
    })?;
    let target_error = |e: Errno| RootfsError::Target {
        destination: destination.clone(),
        source: ioe(e),
    };
    if options.bind {
        let source_path = m.source().clone().unwrap_or_default();
        let bind_error = |source: io::Error| RootfsError::Bind {
            source_path: source_path.clone(),
            destination: destination.clone(),
            source,
        };
        let is_dir = std::fs::metadata(&source_path)
            .map_err(bind_error)?
            .is_dir();
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        if options.recursive {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        let tree =
            rustix::mount::open_tree(CWD, &source_path, flags).map_err(|e| bind_error(ioe(e)))?;
        let (set, clear) = attr_bits(&options.attrs);
        let recursive = if options.recursive {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
        mount_setattr(
            tree.as_fd(),
            "",
            libc::AT_EMPTY_PATH as u32 | recursive,
            set,
            clear,
        )
        .map_err(bind_error)?;
        let target = if is_dir {
            ensure_dir(root, &destination)
        } else {
            ensure_file(root, &destination)
        }
        .map_err(target_error)?;
        attach(&tree, &target).map_err(|e| bind_error(ioe(e)))
    } else {
        let mount_error = |e: Errno| RootfsError::Mount {
            typ: typ.clone(),
            destination: destination.clone(),
            source: ioe(e),
        };
        // A kernel filesystem's mount point must be a real directory of the image, not a
        // symlink the image controls (runc's CVE-2019-16884 class).
        let target = match typ.as_str() {
            "proc" | "sysfs" => {
                ensure_dir(root, &destination).map_err(target_error)?;
                open_in_root(
                    root,
                    &destination,
                    OFlags::PATH | OFlags::DIRECTORY,
                    ResolveFlags::NO_SYMLINKS,
                )
                .map_err(target_error)?
            }
            _ => ensure_dir(root, &destination).map_err(target_error)?,
        };
        let fs = rustix::mount::fsopen(typ.as_str(), FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(mount_error)?;
        if let Some(source) = m.source() {
            rustix::mount::fsconfig_set_string(&fs, "source", source.as_os_str())
                .map_err(mount_error)?;
        }
        for (key, value) in &options.data {
            match value {
                Some(v) => rustix::mount::fsconfig_set_string(&fs, key.as_str(), v.as_str()),
                None => rustix::mount::fsconfig_set_flag(&fs, key.as_str()),
            }
            .map_err(mount_error)?;
        }
        rustix::mount::fsconfig_create(&fs).map_err(mount_error)?;
        let (set, _) = attr_bits(&options.attrs);
        let mnt = rustix::mount::fsmount(
            &fs,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::from_bits_retain(set as u32),
        )
        .map_err(mount_error)?;
        attach(&mnt, &target).map_err(mount_error)
    }
}

/// Attaches a detached mount onto the object `target` refers to.
fn attach(mnt: &OwnedFd, target: &OwnedFd) -> Result<(), Errno> {
    rustix::mount::move_mount(
        mnt,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// The spec's devices: created with mknod, or bound from the host's when mknod is not allowed.
fn devices(root: BorrowedFd<'_>, spec: &Spec) -> Result<()> {
    let devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    for d in devices {
        let path = d.path().to_string_lossy().into_owned();
        let error = |source: io::Error| RootfsError::Device {
            path: path.clone(),
            source,
        };
        let file_type = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => FileType::CharacterDevice,
            LinuxDeviceType::B => FileType::BlockDevice,
            LinuxDeviceType::P => FileType::Fifo,
            LinuxDeviceType::A => {
                return Err(error(io::Error::other("type \"a\" is not a device node")));
            }
        };
        let (parent, name) = split_last(&path);
        if name.is_empty() || name == "." || name == ".." {
            return Err(error(io::Error::from(io::ErrorKind::InvalidInput)));
        }
        let dir = ensure_dir(root, parent).map_err(|e| error(ioe(e)))?;
        let dev = rustix::fs::makedev(d.major() as u32, d.minor() as u32);
        let mode = Mode::from_raw_mode(d.file_mode().unwrap_or(0o666));
        match rustix::fs::mknodat(&dir, name, file_type, mode, dev) {
            Ok(()) => {
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(d.uid().unwrap_or(0))),
                    Some(rustix::fs::Gid::from_raw(d.gid().unwrap_or(0))),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| error(ioe(e)))?;
            }
            Err(Errno::PERM) => {
                let target = ensure_file(root, &path).map_err(|e| error(ioe(e)))?;
                let tree = rustix::mount::open_tree(
                    CWD,
                    d.path(),
                    OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
                )
                .map_err(|e| error(ioe(e)))?;
                attach(&tree, &target).map_err(|e| error(ioe(e)))?;
            }
            Err(e) => return Err(error(ioe(e))),
        }
    }
    Ok(())
}

/// Binds the pseudo-terminal slave `path` (on the host's devpts) on `/dev/console`.
fn bind_console(root: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let target = ensure_file(root, "/dev/console").map_err(ioe)?;
    let tree = rustix::mount::open_tree(
        CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    attach(&tree, &target).map_err(ioe)
}

/// `/dev/fd`, `/dev/std{in,out,err}` and `/dev/ptmx` (→ `pts/ptmx` of the new devpts).
fn dev_links(root: BorrowedFd<'_>) -> Result<()> {
    let dev = ensure_dir(root, "/dev").map_err(|e| RootfsError::DevLink {
        name: String::new(),
        source: ioe(e),
    })?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(RootfsError::DevLink {
                    name: name.into(),
                    source: ioe(e),
                });
            }
        }
    }
    Ok(())
}

/// `pivot_root(".", ".")` from inside the new root, then the old root (stacked on top) is
/// detached: no path of the host stays reachable.
fn pivot(root: BorrowedFd<'_>) -> Result<()> {
    let err = |e: Errno| RootfsError::PivotRoot { source: ioe(e) };
    rustix::process::fchdir(root).map_err(err)?;
    rustix::process::pivot_root(".", ".").map_err(err)?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)
        .map_err(|e| RootfsError::DetachOldRoot { source: ioe(e) })?;
    rustix::process::chdir("/").map_err(err)
}

/// After `pivot_root`: masks the spec's masked paths, makes its read-only paths read-only, and
/// the root read-only when the spec asks. Missing paths are skipped, like runc does.
pub fn protect(spec: &Spec) -> Result<()> {
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::ReadOnlyRoot { source: ioe(e) })?;
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
    {
        mask(root.as_fd(), &path).map_err(|e| RootfsError::Mask {
            path: path.clone(),
            source: ioe(e),
        })?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        read_only_path(root.as_fd(), &path).map_err(|source| RootfsError::ReadOnlyPath {
            path: path.clone(),
            source,
        })?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        mount_setattr(
            root.as_fd(),
            "",
            libc::AT_EMPTY_PATH as u32,
            MOUNT_ATTR_RDONLY,
            0,
        )
        .map_err(|source| RootfsError::ReadOnlyRoot { source })?;
    }
    Ok(())
}

fn open_existing(root: BorrowedFd<'_>, path: &str) -> Result<Option<OwnedFd>, Errno> {
    match open_in_root(root, path, OFlags::PATH, ResolveFlags::NO_SYMLINKS) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}

fn mask(root: BorrowedFd<'_>, path: &str) -> Result<(), Errno> {
    let Some(target) = open_existing(root, path)? else {
        return Ok(());
    };
    let is_dir = rustix::fs::fstat(&target)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let mnt = if is_dir {
        let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
        rustix::mount::fsconfig_set_string(&fs, "source", "tmpfs")?;
        rustix::mount::fsconfig_set_string(&fs, "size", "0")?;
        rustix::mount::fsconfig_create(&fs)?;
        rustix::mount::fsmount(
            &fs,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::MOUNT_ATTR_RDONLY,
        )?
    } else {
        let null = open_in_root(root, "/dev/null", OFlags::PATH, ResolveFlags::NO_SYMLINKS)?;
        rustix::mount::open_tree(
            &null,
            "",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH,
        )?
    };
    attach(&mnt, &target)
}

fn read_only_path(root: BorrowedFd<'_>, path: &str) -> io::Result<()> {
    let Some(target) = open_existing(root, path).map_err(ioe)? else {
        return Ok(());
    };
    let tree = rustix::mount::open_tree(
        &target,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    mount_setattr(
        tree.as_fd(),
        "",
        (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32,
        MOUNT_ATTR_RDONLY,
        0,
    )?;
    attach(&tree, &target).map_err(ioe)
}

/// Writes the spec's sysctls under `/proc/sys` (after `pivot_root`: the container's own
/// procfs, in its namespaces).
pub fn sysctls(spec: &Spec) -> Result<(), (String, io::Error)> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) else {
        return Ok(());
    };
    let mut keys: Vec<_> = map.keys().cloned().collect();
    keys.sort();
    for key in keys {
        let value = &map[&key];
        if key
            .split('.')
            .any(|p| p.is_empty() || p == ".." || p.contains('/'))
        {
            return Err((key, io::Error::from(io::ErrorKind::InvalidInput)));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value.as_bytes()).map_err(|e| (key.clone(), e))?;
    }
    Ok(())
}
