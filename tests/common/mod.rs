//! Helpers shared by integration tests (`mod common;`).

#![allow(dead_code)]

pub mod compose;
pub mod daemon;
pub mod image_daemon;
pub mod images;
pub mod netdaemon;
pub mod registry;
pub mod shim;
