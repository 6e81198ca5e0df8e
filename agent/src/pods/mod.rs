//! The kubelet role (issue 5, groundwork): turning Pod specs into what the node enforces.
//! So far the pure parts: resource accounting (quantities, QoS classes, cgroup values),
//! restart policy with CrashLoopBackOff, and probe bookkeeping.
pub mod probe;
pub mod quantity;
pub mod resources;
pub mod restart;
