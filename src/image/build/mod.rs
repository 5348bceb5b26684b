//! Image build from Dockerfiles (issue 9). Present so far, all pure: [`ignore`] (the one
//! `.dockerignore` matcher, shared with watch). Executing steps is not there yet.

pub mod ignore;
