//! Planning: the dependency graph of services, networks and volumes (petgraph), start and stop
//! order, and (with the reconciler issue) the desired-versus-actual diff. Pure, no I/O.
pub mod graph;
