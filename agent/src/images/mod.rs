//! Container images on the node: references, the OCI distribution client, a content-addressed
//! store with layers unpacked for overlayfs, OCI-layout import, pull policy and GC.
pub mod digest;
pub mod distribution;
pub mod install;
pub mod manifest;
pub mod oci_layout;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;
