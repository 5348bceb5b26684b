//! The REST API: one set of request/response types ([`types`]) shared by the axum server routes
//! ([`server`]) and the typed client ([`client`]), the JSON error shape with its stable codes
//! ([`error`]), the frames of the upgraded exec/attach streams ([`frame`]), daemon addresses
//! (`unix:///path`, `tcp://host:port`, [`host`]) and the OpenAPI document generated from the
//! routes (`GET /openapi.json`, kept in `schemas/openapi.json`).
//! Every path is versioned (`/v1/…`).

pub mod client;
pub mod error;
pub mod frame;
pub mod host;
pub mod server;
pub mod sync;
pub mod types;

/// The API version, the first segment of every path.
pub const API_VERSION: &str = "v1";
