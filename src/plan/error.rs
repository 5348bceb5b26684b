//! The planner's errors: one variant per way a stack and the engine's objects cannot be planned,
//! each naming the service, network or volume at fault.

use thiserror::Error;

use super::graph::GraphError;

/// Why no plan could be made.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The stack's references do not resolve, or services form a cycle.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A command named services that the stack does not define.
    #[error("no such service: {}", .0.join(", "))]
    UnknownServices(Vec<String>),
    /// `container_name` is one name; it cannot be shared by several replicas.
    #[error(
        "service \"{service}\" sets container_name \"{container_name}\" but asks for {replicas} replicas; a container name is unique, so remove container_name or run one replica"
    )]
    ContainerNameWithReplicas {
        service: String,
        container_name: String,
        replicas: u32,
    },
    /// An `external: true` network that does not exist; flotilla never creates those.
    #[error("network \"{key}\" is external but network \"{name}\" does not exist; create it first")]
    MissingExternalNetwork { key: String, name: String },
    /// An `external: true` volume that does not exist; flotilla never creates those.
    #[error("volume \"{key}\" is external but volume \"{name}\" does not exist; create it first")]
    MissingExternalVolume { key: String, name: String },
    /// The image is not present and the pull policy forbids pulling it.
    #[error("service \"{service}\": image \"{image}\" is not present and the pull policy is never")]
    ImageNotPresent { service: String, image: String },
    /// A service with neither `image` nor `build` (the spec normally rejects this first).
    #[error("service \"{service}\" has neither an image nor a build context")]
    NoImage { service: String },
    /// A `depends_on` condition the planner does not know.
    #[error(
        "service \"{service}\": unknown depends_on condition \"{condition}\" for \"{dependency}\""
    )]
    UnknownCondition {
        service: String,
        dependency: String,
        condition: String,
    },
    /// A `pull_policy` (or `--pull`) value the planner does not know.
    #[error("service \"{service}\": unknown pull policy \"{policy}\"")]
    UnknownPullPolicy { service: String, policy: String },
    /// The service's configuration could not be serialized for hashing.
    #[error("service \"{service}\": cannot serialize its configuration: {source}")]
    Serialize {
        service: String,
        #[source]
        source: serde_json::Error,
    },
}
