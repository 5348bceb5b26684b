//! The stack file: discovery, YAML with locations, interpolation, `.env` files, merging several
//! files, `extends`, `include`, profiles, validation against the schema and normalization into the
//! typed model in [`model`]. Pure: it reads stack files and env files, nothing else.

pub mod error;
pub mod node;
pub mod yaml;
