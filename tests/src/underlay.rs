//! The underlay of a simulated cluster: a bridge in a test-owned namespace, and nodes plugged
//! into it by a veth whose node end is `eth0` with the node's address.
use std::net::Ipv4Addr;

use crate::netns::TestNetns;

pub const BRIDGE: &str = "br0";
pub const PREFIX_LEN: u8 = 24;

/// Creates the underlay namespace with its bridge up.
pub fn create(label: &str) -> anyhow::Result<TestNetns> {
    let underlay = TestNetns::create(label)?;
    underlay.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    underlay.ip(&["link", "set", BRIDGE, "up"])?;
    Ok(underlay)
}

/// Creates node namespace `label`, plugged into `underlay` through bridge port `port`, with
/// `ip` on its `eth0`.
pub fn plug_node(
    underlay: &TestNetns,
    label: &str,
    port: &str,
    ip: Ipv4Addr,
) -> anyhow::Result<TestNetns> {
    let node = TestNetns::create(label)?;
    underlay.ip(&[
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        node.name(),
    ])?;
    underlay.ip(&["link", "set", port, "master", BRIDGE, "up"])?;
    node.ip(&["addr", "add", &format!("{ip}/{PREFIX_LEN}"), "dev", "eth0"])?;
    node.ip(&["link", "set", "eth0", "up"])?;
    Ok(node)
}
