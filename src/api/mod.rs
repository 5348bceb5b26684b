//! The REST API: request/response types shared by the axum server routes and the unix-socket client (arrives with the engine-daemon issue).
