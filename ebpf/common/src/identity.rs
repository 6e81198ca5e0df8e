//! Reserved security identities; pods get identities from FIRST_POD_IDENTITY upwards.
//!
//! The VNI of every overlay packet carries the sender's identity, so it must fit in 24 bits.

pub const IDENTITY_UNKNOWN: u32 = 0;
/// Traffic originated by this node's own stack.
pub const IDENTITY_HOST: u32 = 1;
/// Anything outside the cluster.
pub const IDENTITY_WORLD: u32 = 2;
/// Another node's own stack (overlay traffic sent by a remote host, not a pod).
pub const IDENTITY_REMOTE_NODE: u32 = 6;
/// Pods with no identity yet (no Pod object known): only rules for every peer admit them.
pub const IDENTITY_DEFAULT_POD: u32 = 256;
/// Label-set identities start above the default, so a pod never passes for one it is not.
pub const FIRST_POD_IDENTITY: u32 = 257;
pub const MAX_IDENTITY: u32 = (1 << 24) - 1;
