//! The kubelet role (issue 5, groundwork): turning Pod specs into what the node enforces.
//! So far the parts that need no container runtime: resource accounting (quantities, QoS
//! classes, cgroup values), restart policy with CrashLoopBackOff, probe bookkeeping,
//! CRI-format container logs with rotation, and pod spec validation.
pub mod cri_log;
pub mod downward;
pub mod env;
pub mod manager;
pub mod node_status;
pub mod objects;
pub mod planner;
pub mod pod_status;
pub mod probe;
pub mod quantity;
pub mod resources;
pub mod restart;
pub mod security;
pub mod static_pods;
pub mod validate;
pub mod volumes;
