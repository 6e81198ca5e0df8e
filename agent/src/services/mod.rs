//! Kubernetes Services as the datapath needs them: a catalog of validated Service and
//! EndpointSlice objects (fed by any source: the manifest directory today, the control-plane
//! stream later), and the per-node plan of frontends and backends made from it.
pub mod catalog;
pub mod frontend;
pub mod plan;
pub mod sync;

pub use catalog::{Catalog, InvalidObject, ObjectName};
pub use frontend::{BackendAddr, Frontend, FrontendAddr, FrontendKind, Protocol};
pub use plan::{NodeView, plan};
