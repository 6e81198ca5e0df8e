//! Map keys, values, map names and wire constants shared by the eBPF programs and the agent.
//!
//! Every type is `#[repr(C)]` with explicit padding and a compile-time size check, because
//! the kernel and userspace read the same bytes. When a layout changes, the map name gets a
//! new version suffix so an old pinned map is never read with the new layout.
#![no_std]

pub mod config;
pub mod ct;
pub mod endpoint;
pub mod identity;
pub mod lb;
pub mod metrics;
pub mod policy;
pub mod trace;
pub mod tunnel;

/// Asserts at compile time that a map type has exactly the expected size.
#[macro_export]
macro_rules! assert_size {
    ($t:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);
    };
}

/// Asserts at compile time that a field sits at the expected offset.
#[macro_export]
macro_rules! assert_offset {
    ($t:ty, $field:ident, $offset:expr) => {
        const _: () = assert!(core::mem::offset_of!($t, $field) == $offset);
    };
}

#[cfg(feature = "user")]
mod pod_impls {
    //! `aya::Pod` marks these plain-old-data types as safe to copy in and out of maps.
    use super::*;
    unsafe impl aya::Pod for config::DatapathConfig {}
    unsafe impl aya::Pod for endpoint::EndpointKey {}
    unsafe impl aya::Pod for endpoint::EndpointInfo {}
    unsafe impl aya::Pod for metrics::Counter {}
    unsafe impl aya::Pod for trace::TraceEvent {}
    unsafe impl aya::Pod for tunnel::TunnelEndpoint {}
    unsafe impl aya::Pod for lb::ServiceKey {}
    unsafe impl aya::Pod for lb::ServiceValue {}
    unsafe impl aya::Pod for lb::BackendKey {}
    unsafe impl aya::Pod for lb::Backend {}
    unsafe impl aya::Pod for lb::AffinityKey {}
    unsafe impl aya::Pod for lb::AffinityValue {}
    unsafe impl aya::Pod for lb::SockRevNatKey {}
    unsafe impl aya::Pod for lb::SockRevNat {}
    unsafe impl aya::Pod for ct::CtKey {}
    unsafe impl aya::Pod for ct::CtEntry {}
    unsafe impl aya::Pod for policy::IpcacheEntry {}
    unsafe impl aya::Pod for policy::PolicyKey {}
    unsafe impl aya::Pod for policy::PolicyEntry {}
    unsafe impl aya::Pod for policy::EndpointPolicy {}
    unsafe impl aya::Pod for policy::FragmentKey {}
    unsafe impl aya::Pod for policy::FragmentPorts {}
    unsafe impl aya::Pod for policy::FlowEvent {}
}
