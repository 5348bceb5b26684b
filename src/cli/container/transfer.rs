//! `container cp` (host ↔ container through [`crate::runtime::copy`]: a running container's
//! `/proc/<pid>/root`, a stopped one's overlay mounted in a private mount namespace) and
//! `container commit` (the upper dir → a new image through [`crate::image::commit`]; a running
//! container is paused meanwhile, as Docker does).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{Failure, fail};
use crate::cli::{EngineArgs, out};
use crate::image::commit::{self, CommitOptions};
use crate::image::manage;
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::runtime::copy;
use crate::runtime::lifecycle::Runtime;
use crate::runtime::state::Status;
use crate::runtime::time;

#[derive(Args, Debug, Clone)]
pub struct CpArgs {
    /// CONTAINER:PATH or a host path
    #[arg(value_name = "SRC")]
    pub src: String,
    /// CONTAINER:PATH or a host path
    #[arg(value_name = "DEST")]
    pub dest: String,
}

#[derive(Args, Debug, Clone)]
pub struct CommitArgs {
    /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER,
    /// WORKDIR)
    #[arg(short, long, value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author
    #[arg(short, long)]
    pub author: Option<String>,
    /// The container
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The new image's name
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: String,
}

/// `CONTAINER:PATH` → (container, path); a host path with a colon needs `./` or `/` first.
fn container_path(text: &str) -> Option<(&str, &str)> {
    let (c, p) = text.split_once(':')?;
    (!c.is_empty() && !c.contains('/') && !c.starts_with('.')).then_some((c, p))
}

pub fn cp(rt: &Runtime, args: &CpArgs) -> Result<u8, Failure> {
    let (name, path, host, into) = match (container_path(&args.src), container_path(&args.dest)) {
        (Some((c, p)), None) => (c, p, PathBuf::from(&args.dest), false),
        (None, Some((c, p))) => (c, p, PathBuf::from(&args.src), true),
        (Some(_), Some(_)) => {
            return Err(fail("cp: copying between containers is not supported"));
        }
        (None, None) => {
            return Err(fail(
                "cp: one of SRC and DEST must be CONTAINER:PATH (a host path with ':' needs ./)",
            ));
        }
    };
    let id = rt.resolve(name).map_err(fail)?;
    let st = rt.state(&id).map_err(fail)?;
    let path = if path.is_empty() { "/" } else { path };
    let root = match (st.status, st.pid) {
        (Status::Running | Status::Paused, Some(pid)) => PathBuf::from(format!("/proc/{pid}/root")),
        _ => copy::mount_stopped(&rt.dir(&id), into)
            .map_err(|e| fail(format!("container {id}: cp: {e}")))?,
    };
    let root_fd = copy::open_root(&root).map_err(|e| fail(format!("container {id}: cp: {e}")))?;
    let result = if into {
        copy::copy_in(root_fd.as_fd(), &host, path)
    } else {
        copy::copy_out(root_fd.as_fd(), path, Path::new(&host))
    };
    result.map_err(|e| fail(format!("container {id}: cp: {e}")))?;
    Ok(0)
}

pub fn commit(engine: &EngineArgs, rt: &Runtime, args: &CommitArgs) -> Result<u8, Failure> {
    let reference = Reference::parse(&args.reference).map_err(|e| fail(format!("commit: {e}")))?;
    let id = rt.resolve(&args.container).map_err(fail)?;
    let meta = rt.meta(&id).map_err(fail)?;
    let store = Store::open(&engine.data_root).map_err(fail)?;
    let image_id = meta.image_id.clone().ok_or_else(|| {
        fail(format!(
            "container {id}: commit: the container has no image"
        ))
    })?;
    let parent = manage::find(&store, &image_id)
        .map_err(|e| fail(format!("container {id}: commit: its image: {e}")))?
        .records
        .into_iter()
        .next()
        .ok_or_else(|| {
            fail(format!(
                "container {id}: commit: its image {image_id} is gone"
            ))
        })?;
    let dir = rt.dir(&id);
    let mut exclude: Vec<String> = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(spec) = oci_spec::runtime::Spec::load(dir.join("config.json")) {
        for m in spec.mounts().clone().unwrap_or_default() {
            exclude.push(m.destination().to_string_lossy().into_owned());
        }
    }
    let options = CommitOptions {
        changes: args.change.clone(),
        comment: args.message.clone(),
        author: args.author.clone(),
        created_by: meta.command.join(" "),
        exclude,
        created: time::now(),
    };
    // Docker pauses a running container so that the layer is consistent.
    let paused = rt.state(&id).map_err(fail)?.status == Status::Running && rt.pause(&id).is_ok();
    let result = commit::commit(&store, &parent, &dir.join("upper"), &reference, &options);
    if paused && let Err(e) = rt.unpause(&id) {
        eprintln!("error: {e}");
    }
    let image = result.map_err(|e| fail(format!("container {id}: {e}")))?;
    out(&format!("{}\n", image.config_digest)).map_err(fail)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        assert_eq!(container_path("web:/etc"), Some(("web", "/etc")));
        assert_eq!(container_path("/tmp/a:b"), None);
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path("file"), None);
    }
}
