//! Watch and redeploy (`flotilla watch`, `flotilla up --watch`): file watching (notify) turned
//! into redeploy actions (patterns: the build's `.dockerignore` matcher,
//! [`crate::image::build::ignore`]). [`rules`]: a stack's
//! `develop.watch` rules compiled for routing changed paths; [`tree`]: content hashes of what
//! was seen; [`session`]: the loop (batching, stack reloads through the reconciler, sync,
//! restart, exec); [`exec`]: `sync+exec`'s command in a container.

pub mod exec;
pub mod rules;
pub mod session;
pub mod tree;
