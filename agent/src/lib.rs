//! kaya-agent: the node agent. It owns this node's eBPF dataplane (loads, pins, attaches and
//! keeps the maps in sync) and serves the endpoint API that kaya-cni registers pods through.
pub mod clock;
pub mod cni_conf;
pub mod config;
pub mod datapath;
pub mod dir_watch;
pub mod endpoint_api;
pub mod endpoint_service;
pub mod feed;
pub mod images;
pub mod inspect;
pub mod instance;
pub mod manifests;
pub mod masquerade;
pub mod netdev;
pub mod node;
pub mod objects;
pub mod observe;
pub mod pods;
pub mod pods_api;
pub mod policy;
pub mod prometheus;
pub mod registry;
pub mod runtime;
pub mod services;
pub mod sysctl;
