//! kaya-control-plane: the Kubernetes-compatible control plane — the HTTPS API (`api`) over a
//! revisioned store (`store`: embedded SQLite or etcd), the controllers and the scheduler.
pub mod api;
pub mod control_plane;
pub mod controllers;
pub mod node_api;
pub mod scheduler;
pub mod store;
