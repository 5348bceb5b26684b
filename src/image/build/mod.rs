//! Image build from Dockerfiles (issue 9). Present so far, all pure: [`dockerfile`] (the parser:
//! parser directives, continuations, heredocs, flags, exec and shell forms, located errors),
//! [`words`] (Docker's word processing: quotes, escapes, `$VAR` / `${VAR:-d}` expansion),
//! [`stages`] (the stage graph: names, `--from`, what a target needs, args in effect, every
//! instruction expanded), [`ignore`] (the one `.dockerignore` matcher, shared with watch) and
//! [`cache`] (layer cache keys from the parent chain, expanded text, args and copied content).
//! Executing a build: [`rootfs`] (a merged read-only view of an image's unpacked layers),
//! [`copy`] (COPY/ADD staged as a layer), [`meta`] (the config-only instructions); the executor
//! itself (containers, pulls, the persistent cache) is `crate::engine::build`.

pub mod cache;
pub mod copy;
pub mod dockerfile;
pub mod ignore;
pub mod meta;
pub mod rootfs;
pub mod stages;
pub mod words;

#[cfg(test)]
mod tests;
