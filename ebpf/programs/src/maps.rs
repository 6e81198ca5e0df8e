//! Map definitions; names and value layouts come from kaya-ebpf-common.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use kaya_ebpf_common::{
    config::DatapathConfig,
    ct::{CT_MAX, CtEntry, CtKey},
    endpoint::{ENDPOINTS_MAX, EndpointInfo, EndpointKey},
    lb::{
        AFFINITY_MAX, AffinityKey, AffinityValue, BACKENDS_MAX, Backend, BackendKey, SERVICES_MAX,
        SOCK_REVNAT_MAX, ServiceKey, ServiceValue, SockRevNat, SockRevNatKey,
    },
    metrics::{Counter, METRICS_MAX},
    policy::{
        EndpointPolicy, FLOW_EVENTS_BYTES, FRAGMENTS_MAX, FragmentKey, FragmentPorts, IPCACHE_MAX,
        IpcacheEntry, POLICY_ENDPOINTS_MAX, POLICY_MAX, PolicyEntry, PolicyKey, RULE_COUNTERS_MAX,
    },
    trace::EVENTS_BYTES,
    tunnel::{TUNNELS_MAX, TunnelEndpoint},
};

#[map(name = "KY_CONFIG_V2")]
pub static CONFIG: Array<DatapathConfig> = Array::pinned(1, 0);

#[map(name = "KY_ENDPOINTS_V1")]
pub static ENDPOINTS: HashMap<EndpointKey, EndpointInfo> = HashMap::pinned(ENDPOINTS_MAX, 0);

/// BPF_F_NO_PREALLOC is mandatory for LPM tries.
#[map(name = "KY_TUNNELS_V1")]
pub static TUNNELS: LpmTrie<u32, TunnelEndpoint> = LpmTrie::pinned(TUNNELS_MAX, 1);

#[map(name = "KY_METRICS_V1")]
pub static METRICS: PerCpuArray<Counter> = PerCpuArray::pinned(METRICS_MAX, 0);

#[map(name = "KY_EVENTS_V1")]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

#[inline(always)]
pub fn config() -> DatapathConfig {
    match CONFIG.get(0) {
        Some(config) => *config,
        None => DatapathConfig::default(),
    }
}

#[inline(always)]
pub fn endpoint(ip_be: u32) -> Option<EndpointInfo> {
    // SAFETY: the value is copied out before the map can change it under us.
    unsafe { ENDPOINTS.get(&EndpointKey { ip: ip_be }).copied() }
}

// Service load balancing; sizes here are defaults the agent can override at load time.
#[map(name = "KY_LB_SERVICES_V1")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> = HashMap::pinned(SERVICES_MAX, 0);

#[map(name = "KY_LB_BACKENDS_V1")]
pub static BACKENDS: HashMap<BackendKey, Backend> = HashMap::pinned(BACKENDS_MAX, 0);

#[map(name = "KY_LB_AFFINITY_V1")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> = LruHashMap::pinned(AFFINITY_MAX, 0);

#[map(name = "KY_LB_SOCK_REVNAT_V1")]
pub static SOCK_REVNAT: LruHashMap<SockRevNatKey, SockRevNat> =
    LruHashMap::pinned(SOCK_REVNAT_MAX, 0);

#[map(name = "KY_CT_V1")]
pub static CT: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(CT_MAX, 0);

// NetworkPolicy.
#[map(name = "KY_IPCACHE_V1")]
pub static IPCACHE: LpmTrie<u32, IpcacheEntry> = LpmTrie::pinned(IPCACHE_MAX, 1);

#[map(name = "KY_POLICY_V1")]
pub static POLICY: LpmTrie<PolicyKey, PolicyEntry> = LpmTrie::pinned(POLICY_MAX, 1);

#[map(name = "KY_POLICY_ENDPOINTS_V1")]
pub static POLICY_ENDPOINTS: HashMap<u32, EndpointPolicy> =
    HashMap::pinned(POLICY_ENDPOINTS_MAX, 0);

#[map(name = "KY_POLICY_RULES_V1")]
pub static RULE_COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned(RULE_COUNTERS_MAX, 0);

#[map(name = "KY_FRAGMENTS_V1")]
pub static FRAGMENTS: LruHashMap<FragmentKey, FragmentPorts> = LruHashMap::pinned(FRAGMENTS_MAX, 0);

#[map(name = "KY_FLOW_EVENTS_V1")]
pub static FLOW_EVENTS: RingBuf = RingBuf::pinned(FLOW_EVENTS_BYTES, 0);
