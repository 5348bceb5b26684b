//! The embedded state database (redb) and the on-disk layout of the data root (arrives with the engine-daemon issue).
