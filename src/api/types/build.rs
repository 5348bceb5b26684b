//! Request and response bodies of the image build endpoints (`POST /v1/build`,
//! `POST /v1/build/prune`), re-exported by [`super`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The options of `POST /v1/build`, sent as JSON in its `options` query parameter (the request
/// body is the build context, a tar stream).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context (default `Dockerfile`); with `dockerfile_inline`,
    /// only the name errors are located in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The Dockerfile's text (the CLI always sends it, so a Dockerfile outside the context or
    /// excluded by `.dockerignore` still builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    /// The stage to build (default: the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// References the result is tagged with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Labels added to the result's config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Run every step, ignoring the cache.
    #[serde(default)]
    pub no_cache: bool,
    /// Pull the base images even when the store has them.
    #[serde(default)]
    pub pull: bool,
    /// The network of `RUN` steps: `host` (the default: the daemon's network namespace) or
    /// `none` (an empty one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `os/arch[/variant]` (default: this machine's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Size in bytes of the `RUN` steps' `/dev/shm` (default 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Entries added to the `RUN` steps' `/etc/hosts`: `name:ip` or `name=ip`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
}

/// One line of the build's progress stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BuildProgress {
    /// `step` (a step begins), `cached` (it was found in the cache), `log` (a line of `RUN`
    /// output), `step_done` (with `seconds`), `warning`, and last `done` (with `image`) or
    /// `error` (with `message`, and for a failed step its `step`, `name`, `line`, `exit_code`).
    pub kind: String,
    /// The step's number in this build (BuildKit's `#N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// `[stage 2/5] RUN make` for a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The step's line in the Dockerfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// A line of output, a warning, or an error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The image id (config digest) on `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl BuildProgress {
    pub fn of(kind: &str) -> Self {
        BuildProgress {
            kind: kind.to_string(),
            ..BuildProgress::default()
        }
    }
}

/// `POST /v1/build/prune`: what was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildPruned {
    /// Cache entries removed.
    pub entries: usize,
    /// Intermediate images removed.
    pub images: usize,
    /// Bytes of blobs and layers freed.
    pub reclaimed: u64,
}
