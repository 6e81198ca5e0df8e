//! Keeps the datapath's service maps equal to the catalog's plan for this node, cleans up
//! conntrack and affinity entries of removed backends, and keeps the figures Prometheus
//! reads.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::catalog::Catalog;
use super::frontend::Frontend;
use super::plan::{NodeView, plan};
use crate::datapath::{
    MapAccessError,
    ct::CtMap,
    lb::{LbMaps, LbTable, SyncReport, TableError},
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("programming services: {0}")]
    Table(#[from] TableError),
    #[error("cleaning up after removed backends: {0}")]
    Cleanup(#[from] MapAccessError),
}

/// Figures for the metrics endpoint.
#[derive(Clone, Debug, Default)]
pub struct LbStats {
    pub services: usize,
    pub frontends: usize,
    pub backends: usize,
    pub services_map_entries: usize,
    pub services_map_max: u32,
    pub backends_map_max: u32,
    pub syncs_total: u64,
    pub sync_errors_total: u64,
    pub map_full_total: u64,
    pub last_sync: Duration,
    pub ct_entries_purged_total: u64,
}

pub struct ServiceSync {
    node: NodeView,
    table: LbTable,
    maps: LbMaps,
    ct: CtMap,
    pub stats: LbStats,
}

impl ServiceSync {
    /// Adopts what the maps already hold, so a restart rewrites nothing that stays.
    pub fn new(maps: LbMaps, ct: CtMap, node: NodeView) -> Result<Self, MapAccessError> {
        let table = maps.read_table()?;
        let stats = LbStats {
            services_map_max: maps.services_max,
            backends_map_max: maps.backends_max,
            services_map_entries: table.slots.len(),
            backends: table.backends.len(),
            ..LbStats::default()
        };
        Ok(ServiceSync {
            node,
            table,
            maps,
            ct,
            stats,
        })
    }

    pub fn apply(&mut self, catalog: &Catalog) -> Result<(), SyncError> {
        let plan = plan(catalog, &self.node);
        for conflict in &plan.conflicts {
            tracing::warn!(%conflict, "service frontend conflict");
        }
        self.apply_frontends(&plan.frontends).map(drop)
    }

    /// Programs exactly `frontends` (already planned for this node), then drops the
    /// conntrack and affinity entries of backends that went away.
    pub fn apply_frontends(&mut self, frontends: &[Frontend]) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let result = self.table.sync(frontends, &mut self.maps);
        self.stats.syncs_total += 1;
        self.stats.services_map_entries = self.table.slots.len();
        self.stats.backends = self.table.backends.len();
        let report = match result {
            Ok(report) => report,
            Err(err) => {
                self.stats.sync_errors_total += 1;
                if matches!(err, TableError::MapFull { .. }) {
                    self.stats.map_full_total += 1;
                }
                return Err(err.into());
            }
        };
        let purged = self.ct.purge_backends(&report.removed_backends)?;
        self.maps.purge_affinity(&report.removed_backends)?;
        self.stats.ct_entries_purged_total += purged as u64;
        self.stats.services = (frontends.iter())
            .map(|f| f.service.split(':').next().unwrap_or_default())
            .collect::<BTreeSet<_>>()
            .len();
        self.stats.frontends = frontends.len();
        self.stats.last_sync = started.elapsed();
        tracing::info!(
            frontends = frontends.len(),
            writes = report.writes,
            deletes = report.deletes,
            removed_backends = report.removed_backends.len(),
            ct_purged = purged,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "services synced"
        );
        Ok(report)
    }

    /// What the service maps hold.
    pub fn table(&self) -> &LbTable {
        &self.table
    }

    pub fn conntrack(&self) -> &CtMap {
        &self.ct
    }
}
