//! Image build from Dockerfiles (issue 9). Present so far, all pure: [`dockerfile`] (the parser:
//! parser directives, continuations, heredocs, flags, exec and shell forms, located errors),
//! [`words`] (Docker's word processing: quotes, escapes, `$VAR` / `${VAR:-d}` expansion),
//! [`stages`] (the stage graph: names, `--from`, what a target needs, args in effect, every
//! instruction expanded), [`ignore`] (the one `.dockerignore` matcher, shared with watch) and
//! [`cache`] (layer cache keys from the parent chain, expanded text, args and copied content).
//! Executing steps (RUN in a container, layers, the cache store) is not there yet.

pub mod cache;
pub mod dockerfile;
pub mod ignore;
pub mod stages;
pub mod words;

#[cfg(test)]
mod tests;
