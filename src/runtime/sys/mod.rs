//! The only room with `unsafe` and raw syscalls: namespaces, mounts, pivot_root, cgroups, capabilities, seccomp. Every unsafe block carries a `// SAFETY:` comment.
