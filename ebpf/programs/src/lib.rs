//! Library face of the eBPF crate: empty, so the agent can name it as a build dependency and
//! cargo rebuilds the agent when the programs change.
#![no_std]
