//! The stack file: discovery, YAML with locations, interpolation, `.env` files, merging several
//! files, `extends`, `include`, profiles, validation against the schema and normalization into the
//! typed model in [`model`]. Pure: it reads stack files and env files, nothing else.

pub mod canon;
pub mod develop;
pub mod dotenv;
pub mod emit;
pub mod error;
pub mod extends;
pub mod include;
pub mod interpolate;
pub mod load;
pub mod merge;
pub mod model;
pub mod node;
pub mod normalize;
pub mod schema;
pub mod units;
pub mod yaml;
