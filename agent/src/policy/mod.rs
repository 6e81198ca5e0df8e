//! NetworkPolicy (issue 4, in progress): security identities for label sets. Enforcement in
//! the datapath is not built yet.
pub mod identity;
