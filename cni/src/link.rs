//! Pod interface plumbing over rtnetlink: the veth pair, the pod side's address, routes and
//! gateway neighbour, the node side's /32 route. `Plumbing` is the seam that lets the command
//! logic be tested without root.
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::packet_route::{
    address::AddressAttribute, link::LinkAttribute, neighbour::NeighbourState, route::RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink {op} {target}: {source}")]
    Netlink {
        op: &'static str,
        target: String,
        source: rtnetlink::Error,
    },
    #[error("opening netns {path}: {source}")]
    Netns {
        path: String,
        source: std::io::Error,
    },
    #[error("setns into {path}: {source}")]
    Setns { path: String, source: nix::Error },
    #[error("opening a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("interface {0} not found")]
    Missing(String),
}

/// What to plumb for one attachment.
#[derive(Debug, Clone)]
pub struct VethRequest {
    pub host_ifname: String,
    pub pod_ifname: String,
    pub netns: String,
    pub mtu: u32,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    pub host_mac: String,
    pub pod_mac: String,
}

/// What the pod side of an attachment looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSide {
    pub mac: String,
    pub addresses: Vec<Ipv4Addr>,
}

#[allow(async_fn_in_trait)]
pub trait Plumbing {
    /// Creates and configures both ends; on failure nothing is left behind.
    async fn create(&self, request: &VethRequest) -> Result<PodLink, LinkError>;
    /// MAC of the host-side interface, if it exists.
    async fn host_mac(&self, name: &str) -> Result<Option<String>, LinkError>;
    /// Deletes the host-side interface (and with it the pod side); missing is fine.
    async fn delete_host(&self, name: &str) -> Result<(), LinkError>;
    async fn pod_side(&self, netns: &str, ifname: &str) -> Result<Option<PodSide>, LinkError>;
    async fn host_links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, LinkError>;
}

pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn netlink_err(
    op: &'static str,
    target: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let target = target.into();
    move |source| LinkError::Netlink { op, target, source }
}

fn connect() -> Result<Handle, LinkError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(LinkError::Socket)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Opens a netlink socket inside the namespace at `path`: the calling thread enters it just
/// long enough to create the socket, which stays bound to that namespace.
fn connect_in(path: &str) -> Result<Handle, LinkError> {
    let target = std::fs::File::open(path).map_err(|source| LinkError::Netns {
        path: path.to_owned(),
        source,
    })?;
    let home =
        std::fs::File::open("/proc/thread-self/ns/net").map_err(|source| LinkError::Netns {
            path: "/proc/thread-self/ns/net".into(),
            source,
        })?;
    let setns = |file: &std::fs::File, what: &str| {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
            LinkError::Setns {
                path: what.to_owned(),
                source,
            }
        })
    };
    setns(&target, path)?;
    let handle = connect();
    setns(&home, "the original namespace")?;
    handle
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<(u32, String)>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(message)) => {
            let mac = message
                .attributes
                .iter()
                .find_map(|attr| match attr {
                    LinkAttribute::Address(bytes) => Some(format_mac(bytes)),
                    _ => None,
                })
                .unwrap_or_default();
            Ok(Some((message.header.index, mac)))
        }
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
        Err(source) => Err(LinkError::Netlink {
            op: "get link",
            target: name.to_owned(),
            source,
        }),
    }
}

/// The real thing, over rtnetlink. Create it inside a tokio runtime.
pub struct Netlink {
    host: Handle,
}

impl Netlink {
    pub fn connect() -> Result<Self, LinkError> {
        Ok(Netlink { host: connect()? })
    }

    /// Configures both ends of a freshly created pair.
    async fn configure(&self, request: &VethRequest) -> Result<PodLink, LinkError> {
        let host = &self.host;
        let pod = connect_in(&request.netns)?;
        let (pod_index, pod_mac) = link_by_name(&pod, &request.pod_ifname)
            .await?
            .ok_or_else(|| LinkError::Missing(request.pod_ifname.clone()))?;
        // Up only now: a veth end cannot come up before its pair is complete (ENOTCONN).
        for index in [
            Some(pod_index),
            link_by_name(&pod, "lo").await?.map(|(lo, _)| lo),
        ]
        .into_iter()
        .flatten()
        {
            pod.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(netlink_err(
                    "set up",
                    format!("ifindex {index} in {}", request.netns),
                ))?;
        }
        pod.address()
            .add(pod_index, IpAddr::V4(request.address), 32)
            .execute()
            .await
            .map_err(netlink_err("add address", request.address.to_string()))?;
        let to_gateway = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(request.gateway, 32)
            .output_interface(pod_index)
            .scope(RouteScope::Link)
            .build();
        pod.route()
            .add(to_gateway)
            .execute()
            .await
            .map_err(netlink_err("add route", request.gateway.to_string()))?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(pod_index)
            .gateway(request.gateway)
            .onlink()
            .build();
        pod.route()
            .add(default)
            .execute()
            .await
            .map_err(netlink_err("add route", "default"))?;
        let (host_index, host_mac) = link_by_name(host, &request.host_ifname)
            .await?
            .ok_or_else(|| LinkError::Missing(request.host_ifname.clone()))?;
        let host_mac_bytes: Vec<u8> = host_mac
            .split(':')
            .filter_map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        // The gateway is never ARPed: it resolves to the host side of the veth for good.
        pod.neighbours()
            .add(pod_index, IpAddr::V4(request.gateway))
            .link_layer_address(&host_mac_bytes)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(netlink_err("add neighbour", request.gateway.to_string()))?;
        let to_pod = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(request.address, 32)
            .output_interface(host_index)
            .scope(RouteScope::Link)
            .build();
        host.route()
            .add(to_pod)
            .replace()
            .execute()
            .await
            .map_err(netlink_err("add route", request.address.to_string()))?;
        Ok(PodLink { host_mac, pod_mac })
    }
}

impl Plumbing for Netlink {
    async fn create(&self, request: &VethRequest) -> Result<PodLink, LinkError> {
        let netns = std::fs::File::open(&request.netns).map_err(|source| LinkError::Netns {
            path: request.netns.clone(),
            source,
        })?;
        // The peer is born inside the pod's namespace with its final name and both ends up:
        // renaming an interface afterwards waits for a network-wide grace period (~20 ms).
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(request.pod_ifname.clone())
            .mtu(request.mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(request.host_ifname.clone())
            .mtu(request.mtu)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.host
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(netlink_err("add veth", &request.host_ifname))?;
        match self.configure(request).await {
            Ok(link) => Ok(link),
            Err(err) => {
                let _ = self.delete_host(&request.host_ifname).await;
                Err(err)
            }
        }
    }

    async fn host_mac(&self, name: &str) -> Result<Option<String>, LinkError> {
        Ok(link_by_name(&self.host, name).await?.map(|(_, mac)| mac))
    }

    async fn delete_host(&self, name: &str) -> Result<(), LinkError> {
        let Some((index, _)) = link_by_name(&self.host, name).await? else {
            return Ok(());
        };
        match self.host.link().del(index).execute().await {
            Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(()),
            other => other.map_err(netlink_err("delete link", name)),
        }
    }

    async fn pod_side(&self, netns: &str, ifname: &str) -> Result<Option<PodSide>, LinkError> {
        let pod = connect_in(netns)?;
        let Some((index, mac)) = link_by_name(&pod, ifname).await? else {
            return Ok(None);
        };
        let mut stream = pod.address().get().set_link_index_filter(index).execute();
        let mut addresses = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(netlink_err("list addresses", ifname))?
        {
            for attr in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                    addresses.push(*ip);
                }
            }
        }
        Ok(Some(PodSide { mac, addresses }))
    }

    async fn host_links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, LinkError> {
        let mut stream = self.host.link().get().execute();
        let mut names = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(netlink_err("list links", prefix))?
        {
            for attr in &message.attributes {
                if let LinkAttribute::IfName(name) = attr
                    && name.starts_with(prefix)
                {
                    names.push(name.clone());
                }
            }
        }
        Ok(names)
    }
}
