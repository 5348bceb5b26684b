//! The daemon's image operations shared by the API's pull endpoint and the reconciler: the
//! registry settings for a reference (the daemon's config plus the Docker config's
//! credentials) and a pull into the data root's store under its shared lock, on a
//! current-thread runtime of its own (the registry client's futures are not `Send`). Blocking:
//! call it from `spawn_blocking`.

use std::path::Path;

use crate::engine::config::DaemonConfig;
use crate::image::manage::StoreLock;
use crate::image::pull::{self, PullError, PullOptions, PullReport};
use crate::image::reference::Reference;
use crate::image::registry::{self, RegistryOptions};
use crate::image::store::Store;

/// The daemon's registry settings plus the credentials of its Docker config for `reference`.
pub fn registry_options(config: &DaemonConfig, reference: &Reference) -> RegistryOptions {
    let mut options = config.registry_options();
    if let Ok(path) = crate::image::credentials::docker_config_path() {
        match registry::docker_config_auth(&path, &reference.registry) {
            Ok(auth) => options.auth = auth,
            Err(e) => tracing::warn!(error = %e, "read registry credentials"),
        }
    }
    options
}

/// Why a pull did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PullFailure {
    /// Before the pull: the store, its lock, the runtime.
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Pull(#[from] PullError),
}

/// Opens the store of `root`, takes its shared lock and pulls `reference`.
pub fn pull_blocking(
    root: &Path,
    reference: &Reference,
    options: &PullOptions,
) -> Result<(Store, PullReport), PullFailure> {
    let store =
        Store::open(root).map_err(|e| PullFailure::Setup(format!("open the image store: {e}")))?;
    let _lock = StoreLock::shared(&store).map_err(|e| PullFailure::Setup(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PullFailure::Setup(format!("start a runtime for the pull: {e}")))?;
    let report = rt.block_on(pull::pull(&store, reference, options))?;
    Ok((store, report))
}
