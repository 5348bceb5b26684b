//! Planning: the dependency graph of services, networks and volumes (petgraph), start and stop
//! order, and the desired-versus-actual diff that turns a stack and the engine's objects into a
//! graph of actions for `up` and `down`. Pure, no I/O.
pub mod action;
pub mod actual;
pub mod down;
pub mod error;
pub mod graph;
pub mod hash;
pub mod labels;
pub mod stack;
#[cfg(test)]
mod testutil;
pub mod up;
