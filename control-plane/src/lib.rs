//! kaya-control-plane: the Kubernetes-compatible control plane (issue 6). So far its
//! storage layer: a revisioned key-value store (MVCC) with an embedded SQLite backend.
pub mod store;
