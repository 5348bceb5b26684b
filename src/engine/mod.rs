//! The daemon's engine: the reconciler that executes plans, restart and health supervision, events and per-project locks (arrives with the reconciler issue).
