//! NetworkPolicy: Kubernetes policies, pods and namespaces compiled into security
//! identities, the ipcache and per-endpoint allow entries, and kept in sync with the maps.
pub mod compile;
pub mod identity;
pub mod inventory;
pub mod names;
pub mod numbering;
pub mod selector;
pub mod spec;
pub mod sync;
