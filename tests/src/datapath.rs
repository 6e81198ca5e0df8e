//! Runs kaya's eBPF programs with BPF_PROG_TEST_RUN on packets built in Rust, with maps
//! pinned in a private bpffs directory, and returns the verdict, the output packet and the
//! trace events and counters the run produced.
use aya::maps::{Map, MapData, RingBuf};
use aya::programs::TestRun;
use aya::programs::TestRunOptions;
use ipnet::Ipv4Net;
use kaya_agent::datapath::{
    Datapath,
    ct::CtMap,
    endpoints::EndpointMap,
    lb::{LbMaps, SyncReport},
    metrics, settings,
    settings::SettingsMap,
    trace,
    tunnels::TunnelMap,
};
use kaya_agent::datapath::{ipcache::IpcacheMap, policy::PolicyMaps};
use kaya_agent::policy::{
    compile::{Inputs, NodeContext},
    sync::{PolicyReport, PolicySync},
};
use kaya_agent::services::{Frontend, NodeView, sync::ServiceSync};
use kaya_ebpf_common::{endpoint::EndpointInfo, trace::EVENTS_MAP, trace::TraceEvent};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i32 = 7;

/// ifindex the kernel gives test-run packets when the context names none: loopback.
pub const TEST_RUN_IFINDEX: u32 = 1;

/// `struct __sk_buff` up to and including `ifindex` (offset 40): the part BPF_PROG_TEST_RUN
/// lets a test set; the kernel zero-fills the rest.
const SKB_CTX_LEN: usize = 44;
const SKB_IFINDEX_OFFSET: usize = 40;
const SKB_INGRESS_IFINDEX_OFFSET: usize = 36;

pub struct Outcome {
    pub verdict: i32,
    pub packet: Vec<u8>,
    pub events: Vec<TraceEvent>,
}

pub struct TestDatapath {
    pin_dir: PathBuf,
    datapath: Datapath,
    pub endpoints: EndpointMap,
    pub tunnels: TunnelMap,
    /// The agent's service sync, on this datapath's maps.
    pub services: ServiceSync,
    /// The agent's policy sync, on this datapath's maps.
    pub policy: PolicySync,
    events: RingBuf<MapData>,
    names: tempfile::TempDir,
}

/// Uplink ifindex the test programs are told about (lo: test runs never redirect there).
pub const TEST_UPLINK_IFINDEX: u32 = 1;
/// The node's pod gateway in packet tests: outside clients of node frontends are SNATed to it.
pub const TEST_SNAT_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestDatapath {
    /// Loads the programs with fresh maps; tracing on, the overlay device at `overlay_ifindex`.
    pub fn new(overlay_ifindex: u32, node_ip: Ipv4Addr) -> anyhow::Result<Self> {
        Self::with_trace(overlay_ifindex, node_ip, true)
    }

    /// As `new`, with trace events on or off (off: what a production node runs, for timing).
    pub fn with_trace(
        overlay_ifindex: u32,
        node_ip: Ipv4Addr,
        trace: bool,
    ) -> anyhow::Result<Self> {
        let bpffs = std::path::Path::new("/sys/fs/bpf");
        kaya_agent::datapath::loader::ensure_bpffs(bpffs)?;
        let pin_dir = bpffs.join(format!(
            "kaya-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut datapath = Datapath::load(&pin_dir)?;
        SettingsMap::open(&mut datapath)?.write(settings::render(
            overlay_ifindex,
            TEST_UPLINK_IFINDEX,
            node_ip,
            TEST_SNAT_IP,
            trace,
        ))?;
        let endpoints = EndpointMap::open(&mut datapath)?;
        let tunnels = TunnelMap::open(&mut datapath)?;
        let events = RingBuf::try_from(Map::RingBuf(datapath.take_map(EVENTS_MAP)?))?;
        let node = NodeView {
            name: "node-1".into(),
            addresses: vec![node_ip],
        };
        let services = ServiceSync::new(
            LbMaps::open(&mut datapath)?,
            CtMap::open(&mut datapath)?,
            node,
        )?;
        let names = tempfile::tempdir()?;
        let policy = PolicySync::new(
            IpcacheMap::open(&mut datapath)?,
            PolicyMaps::open(&mut datapath)?,
            names.path().join("names.json"),
        );
        Ok(TestDatapath {
            pin_dir,
            datapath,
            endpoints,
            tunnels,
            services,
            policy,
            events,
            names,
        })
    }

    pub fn add_endpoint(&mut self, ip: Ipv4Addr, info: EndpointInfo) {
        self.endpoints
            .upsert(ip, info)
            .expect("endpoint map insert");
    }

    pub fn set_tunnels(&mut self, tunnels: &[(Ipv4Net, Ipv4Addr)]) {
        let wanted: BTreeMap<_, _> = tunnels.iter().copied().collect();
        self.tunnels.sync(&wanted).expect("tunnel map sync");
    }

    /// Programs exactly these service frontends through the agent's sync (conntrack and
    /// affinity of removed backends go too).
    pub fn set_frontends(&mut self, frontends: &[Frontend]) -> SyncReport {
        self.services
            .apply_frontends(frontends)
            .expect("service maps accept the frontends")
    }

    /// Programs the policy maps through the agent's compiler and sync.
    pub fn set_policy(&mut self, inputs: &Inputs, node: &NodeContext) -> PolicyReport {
        self.policy
            .apply(inputs, node)
            .expect("policy maps accept the policies")
    }

    /// Where the policy sync records flow names (rules, pods).
    pub fn names_path(&self) -> PathBuf {
        self.names.path().join("names.json")
    }

    /// Runs `program` once on `packet` as if it arrived on `ifindex`.
    pub fn run(
        &mut self,
        program: &'static str,
        packet: &[u8],
        ifindex: u32,
    ) -> anyhow::Result<Outcome> {
        self.run_forwarded(program, packet, ifindex, 0)
    }

    /// Runs `program` on `packet` at `ifindex`, as a packet the node received on
    /// `ingress_ifindex` and forwarded (0: one the node sent itself).
    pub fn run_forwarded(
        &mut self,
        program: &'static str,
        packet: &[u8],
        ifindex: u32,
        ingress_ifindex: u32,
    ) -> anyhow::Result<Outcome> {
        let mut ctx = [0u8; SKB_CTX_LEN];
        ctx[SKB_IFINDEX_OFFSET..SKB_IFINDEX_OFFSET + 4].copy_from_slice(&ifindex.to_ne_bytes());
        ctx[SKB_INGRESS_IFINDEX_OFFSET..SKB_INGRESS_IFINDEX_OFFSET + 4]
            .copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let mut out = vec![0u8; packet.len() + 256];
        let result = self.datapath.program(program)?.test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat: 1,
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        let mut events = Vec::new();
        while let Some(item) = self.events.next() {
            if let Some(event) = trace::decode(&item) {
                events.push(event);
            }
        }
        Ok(Outcome {
            verdict: result.return_value as i32,
            packet: out,
            events,
        })
    }

    /// The kernel's average time per run of `program` on `packet`, over `repeat` runs.
    pub fn time_per_run(
        &mut self,
        program: &'static str,
        packet: &[u8],
        ifindex: u32,
        repeat: u32,
    ) -> anyhow::Result<std::time::Duration> {
        let mut ctx = [0u8; SKB_CTX_LEN];
        ctx[SKB_IFINDEX_OFFSET..SKB_IFINDEX_OFFSET + 4].copy_from_slice(&ifindex.to_ne_bytes());
        let result = self.datapath.program(program)?.test_run(TestRunOptions {
            data_in: Some(packet),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })?;
        Ok(result.duration)
    }

    /// Packets counted under `reason` so far.
    pub fn counter(&self, reason: &str) -> u64 {
        metrics::read_pinned(&self.pin_dir)
            .expect("metrics map readable")
            .get(reason)
            .map_or(0, |counter| counter.packets)
    }
}

impl Drop for TestDatapath {
    fn drop(&mut self) {
        let _ = kaya_agent::datapath::loader::unpin_all(&self.pin_dir);
    }
}
