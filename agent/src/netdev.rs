//! Network devices and routes the agent owns, over rtnetlink: the collect_md VXLAN device,
//! the pods' gateway address on it, and one route per remote pod CIDR through it.
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::{
    address::AddressAttribute,
    link::LinkAttribute,
    route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope},
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVxlan, RouteMessageBuilder};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// Routes the agent installs carry this protocol number, so it can tell them from others
/// and remove the stale ones (0x4b: 'K').
pub const ROUTE_PROTOCOL: u8 = 0x4b;

#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error("netlink {op} {target}: {source}")]
    Netlink {
        op: &'static str,
        target: String,
        source: rtnetlink::Error,
    },
    #[error("opening a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("device {name} exists but is not a vxlan device")]
    WrongKind { name: String },
}

/// What the agent needs to know of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSummary {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub is_vxlan: bool,
}

pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace; needs a tokio runtime.
    pub fn connect() -> Result<Self, NetdevError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetdevError::Socket)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkSummary>, NetdevError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(message)) => Ok(Some(summarize(&message))),
            Ok(None) => Ok(None),
            // ENODEV: no such device.
            Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(netlink_err("get link", name)(source)),
        }
    }

    /// Creates the overlay device if missing (collect_md, no learning, no ARP: the datapath
    /// sets every tunnel key) and brings it up with `mtu`.
    pub async fn ensure_overlay(
        &self,
        name: &str,
        mtu: u32,
        port: u16,
    ) -> Result<LinkSummary, NetdevError> {
        match self.link(name).await? {
            Some(link) if !link.is_vxlan => {
                return Err(NetdevError::WrongKind {
                    name: name.to_owned(),
                });
            }
            Some(_) => {}
            None => {
                let message = LinkMessageBuilder::<LinkVxlan>::new(name)
                    .collect_metadata(true)
                    .port(port)
                    .learning(false)
                    .arp(false)
                    .mtu(mtu)
                    .build();
                self.handle
                    .link()
                    .add(message)
                    .execute()
                    .await
                    .map_err(netlink_err("add vxlan", name))?;
            }
        }
        let link = self.link(name).await?.ok_or(NetdevError::WrongKind {
            name: name.to_owned(),
        })?;
        let message = LinkUnspec::new_with_index(link.index)
            .mtu(mtu)
            .arp(false)
            .up()
            .build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(netlink_err("set up", name))?;
        Ok(link)
    }

    /// Deletes a device by name; a missing device is not an error.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetdevError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        self.handle
            .link()
            .del(link.index)
            .execute()
            .await
            .map_err(netlink_err("delete link", name))
    }

    /// Adds `addr/32` to the device unless it is there already.
    pub async fn ensure_address(&self, index: u32, addr: Ipv4Addr) -> Result<(), NetdevError> {
        let mut existing = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = existing
            .try_next()
            .await
            .map_err(netlink_err("list addresses", format!("ifindex {index}")))?
        {
            let present = message
                .attributes
                .iter()
                .any(|attr| matches!(attr, AddressAttribute::Address(IpAddr::V4(a)) if *a == addr));
            if present {
                return Ok(());
            }
        }
        self.handle
            .address()
            .add(index, IpAddr::V4(addr), 32)
            .execute()
            .await
            .map_err(netlink_err("add address", addr.to_string()))
    }

    pub async fn link_name(&self, index: u32) -> Result<Option<String>, NetdevError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(message) => Ok(message.map(|m| summarize(&m).name)),
            Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(netlink_err("get link", format!("ifindex {index}"))(source)),
        }
    }

    /// The interface holding `addr` (the node's uplink, found by the node IP).
    pub async fn interface_with_address(&self, addr: Ipv4Addr) -> Result<Option<u32>, NetdevError> {
        let mut addresses = self.handle.address().get().execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(netlink_err("list addresses", addr.to_string()))?
        {
            let holds = (message.attributes.iter())
                .any(|attr| matches!(attr, AddressAttribute::Address(IpAddr::V4(a)) if *a == addr));
            if holds {
                return Ok(Some(message.header.index));
            }
        }
        Ok(None)
    }

    /// Whether a cls_bpf filter sits on the device's ingress (or egress) hook.
    pub async fn has_bpf_filter(&self, index: u32, ingress: bool) -> Result<bool, NetdevError> {
        let request = self.handle.traffic_filter(index as i32).get();
        let request = if ingress {
            request.ingress()
        } else {
            request.egress()
        };
        let mut filters = request.execute();
        while let Some(filter) = filters
            .try_next()
            .await
            .map_err(netlink_err("list tc filters", format!("ifindex {index}")))?
        {
            let is_bpf = filter.attributes.iter().any(|attr| {
                matches!(attr, rtnetlink::packet_route::tc::TcAttribute::Kind(kind) if kind == "bpf")
            });
            if is_bpf {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Destinations of the IPv4 routes this agent installed through `index`.
    pub async fn owned_routes(&self, index: u32) -> Result<BTreeSet<Ipv4Net>, NetdevError> {
        let mut routes = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut owned = BTreeSet::new();
        while let Some(route) = routes
            .try_next()
            .await
            .map_err(netlink_err("list routes", format!("ifindex {index}")))?
        {
            if route.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            let oif = route
                .attributes
                .iter()
                .any(|attr| matches!(attr, RouteAttribute::Oif(i) if *i == index));
            let destination = route.attributes.iter().find_map(|attr| match attr {
                RouteAttribute::Destination(RouteAddress::Inet(dst)) => Some(*dst),
                _ => None,
            });
            if let (true, Some(dst)) = (oif, destination)
                && let Ok(net) = Ipv4Net::new(dst, route.header.destination_prefix_length)
            {
                owned.insert(net);
            }
        }
        Ok(owned)
    }

    /// Installs (or replaces) `cidr dev <index> src <source>`, scope link.
    pub async fn replace_route(
        &self,
        cidr: Ipv4Net,
        index: u32,
        source: Ipv4Addr,
    ) -> Result<(), NetdevError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.network(), cidr.prefix_len())
            .output_interface(index)
            .pref_source(source)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(netlink_err("replace route", cidr.to_string()))
    }

    pub async fn delete_route(&self, cidr: Ipv4Net, index: u32) -> Result<(), NetdevError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.network(), cidr.prefix_len())
            .output_interface(index)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .build();
        self.handle
            .route()
            .del(route)
            .execute()
            .await
            .map_err(netlink_err("delete route", cidr.to_string()))
    }
}

fn netlink_err(
    op: &'static str,
    target: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> NetdevError {
    let target = target.into();
    move |source| NetdevError::Netlink { op, target, source }
}

fn summarize(message: &rtnetlink::packet_route::link::LinkMessage) -> LinkSummary {
    let mut summary = LinkSummary {
        index: message.header.index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        is_vxlan: false,
    };
    for attr in &message.attributes {
        match attr {
            LinkAttribute::IfName(name) => summary.name = name.clone(),
            LinkAttribute::Address(bytes) if bytes.len() == 6 => summary.mac.copy_from_slice(bytes),
            LinkAttribute::Mtu(mtu) => summary.mtu = *mtu,
            LinkAttribute::LinkInfo(infos) => {
                summary.is_vxlan = infos.iter().any(|info| {
                    matches!(
                        info,
                        rtnetlink::packet_route::link::LinkInfo::Kind(
                            rtnetlink::packet_route::link::InfoKind::Vxlan
                        )
                    )
                })
            }
            _ => {}
        }
    }
    summary
}

/// Which routes to add and which to remove to go from `present` to `wanted`.
pub fn route_changes(
    present: &BTreeSet<Ipv4Net>,
    wanted: &BTreeSet<Ipv4Net>,
) -> (Vec<Ipv4Net>, Vec<Ipv4Net>) {
    let add = wanted.iter().copied().collect();
    let remove = present.difference(wanted).copied().collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_changes_replace_all_wanted_and_drop_stale() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let present = BTreeSet::from([net("10.244.2.0/24"), net("10.244.9.0/24")]);
        let wanted = BTreeSet::from([net("10.244.2.0/24"), net("10.244.3.0/24")]);
        let (add, remove) = route_changes(&present, &wanted);
        // Every wanted route is replaced: its source address may have changed.
        assert_eq!(add, vec![net("10.244.2.0/24"), net("10.244.3.0/24")]);
        assert_eq!(remove, vec![net("10.244.9.0/24")]);
    }
}
