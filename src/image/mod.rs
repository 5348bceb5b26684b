//! Images: references, the registry client, the content-addressed store, secure layer unpacking and builds (arrives with the images issue).
