//! Running pods: the plan the agent hands each pod's shim, and the shim that carries it out
//! through libcontainer (sandbox namespaces, CNI, overlay rootfs, OCI spec, supervision).
pub mod cni;
pub mod container;
pub mod plan;
pub mod pod_cgroup;
pub mod protocol;
pub mod rootfs;
pub mod sandbox;
pub mod shim;
pub mod spec;
pub mod status;
pub mod steps;
