//! Test harnesses that need root: running eBPF programs on crafted packets, executing CNI
//! plugins the way a container runtime does, and simulated multi-node clusters.
//!
//! Every harness names what it creates with a unique per-test prefix and removes it on drop,
//! so tests can run at the same time and leave nothing behind.

pub mod api_client;
pub mod baseline;
pub mod bench;
pub mod binaries;
pub mod capture;
pub mod cluster;
pub mod cluster_pods;
pub mod cni_exec;
pub mod cni_invoke;
pub mod control_plane;
pub mod control_plane_bench;
pub mod datapath;
pub mod etcd;
pub mod kube_proxy;
pub mod netns;
pub mod oci_image;
pub mod pod_runtime;
pub mod pods_bench;
pub mod policy_bench;
pub mod policy_model;
pub mod policy_scenarios;
pub mod probe;
pub mod registry;
pub mod services_bench;
pub mod simulated_nodes;
pub mod store_conformance;
pub mod underlay;
