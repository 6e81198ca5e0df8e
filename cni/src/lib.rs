//! kaya-cni: a CNI 1.1 plugin. It plumbs a pod's veth pair, allocates the pod's address from
//! the node's pod CIDR (host-local style, on disk, under a lock) and registers the endpoint
//! with kaya-agent, the only writer of the node's eBPF state.
pub mod commands;
pub mod config;
pub mod ipam;
pub mod link;
pub mod spec;
