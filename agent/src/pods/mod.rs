//! The kubelet role (issue 5, groundwork): turning Pod specs into what the node enforces.
//! So far only resource accounting: quantities, QoS classes and cgroup values.
pub mod quantity;
pub mod resources;
