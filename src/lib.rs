//! flotilla: a container engine and a compose-style orchestrator. See ARCHITECTURE.md for the map
//! of modules; dependencies point down only (cli → api → engine → image/runtime/network/volume).
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod engine;
pub mod image;
pub mod network;
pub mod plan;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod volume;
pub mod watch;
