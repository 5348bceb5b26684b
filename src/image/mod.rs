//! Images: references, the registry client, the content-addressed store, secure layer unpacking and builds (arrives with the images issue).
//!
//! Present so far: [`reference`] (parsing and normalizing image references like Docker),
//! [`store`] (digests, chain ids, verified blobs and crash-safe layer snapshots under the data
//! root), [`unpack`] (fd-confined extraction of layer tarballs with overlayfs whiteouts),
//! [`record`] (image records, manifest/index/config shapes), [`registry`] (the `oci-client` door:
//! plain HTTP for loopback registries, HTTPS otherwise), [`pull`] and [`push`],
//! [`credentials`] (Docker's config.json, login checks), [`credential_helper`]
//! (`docker-credential-<name> get`), [`manage`] (list, tag, rm, prune) and
//! [`archive`] (`image save` / `load` / `import` tarballs).

pub mod archive;
pub mod build;
pub mod commit;
pub mod credential_helper;
pub mod credentials;
pub mod manage;
pub mod pull;
pub mod push;
pub mod record;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;
