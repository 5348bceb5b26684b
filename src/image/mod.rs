//! Images: references, the registry client, the content-addressed store, secure layer unpacking and builds (arrives with the images issue).
//!
//! Present so far: [`reference`] (parsing and normalizing image references like Docker),
//! [`store`] (digests, chain ids, verified blobs and crash-safe layer snapshots under the data
//! root) and [`unpack`] (fd-confined extraction of layer tarballs with overlayfs whiteouts).

pub mod reference;
pub mod store;
pub mod unpack;
