//! Small async rtnetlink operations over one connection, in whatever namespace the connection was
//! opened. Each returns the raw `rtnetlink::Error`; callers name the step.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::RawFd,
};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{
    packet_route::{
        address::AddressAttribute,
        link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
        route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope},
        AddressFamily,
    },
    Error, Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::error::errno_of;

/// What we read back about a link.
#[derive(Debug, Clone)]
pub(crate) struct LinkState {
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    pub is_veth: bool,
    /// `IFLA_LINK`: for a veth, the peer's ifindex (when the peer is in the same namespace).
    pub peer_index: Option<u32>,
}

impl LinkState {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut state = LinkState {
            index: msg.header.index,
            mac: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            is_veth: false,
            peer_index: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Address(a) => state.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                LinkAttribute::Link(i) => state.peer_index = Some(*i),
                LinkAttribute::LinkInfo(infos) => {
                    state.is_veth = infos.contains(&LinkInfo::Kind(InfoKind::Veth))
                }
                _ => {}
            }
        }
        state
    }
}

/// The link called `name`, or `None` if there is none.
pub(crate) async fn find(h: &Handle, name: &str) -> Result<Option<LinkState>, Error> {
    let mut links = h.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(LinkState::from_message(&msg))),
        Ok(None) => Ok(None),
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `ip link add NAME type veth peer name PEER`.
pub(crate) async fn add_veth(h: &Handle, name: &str, peer: &str) -> Result<(), Error> {
    h.link()
        .add(LinkVeth::new(name, peer).build())
        .execute()
        .await
}

/// `ip link del` by index.
pub(crate) async fn delete(h: &Handle, index: u32) -> Result<(), Error> {
    h.link().del(index).execute().await
}

/// `ip link set` with whatever the builder carries.
async fn change(h: &Handle, msg: LinkMessageBuilder<LinkUnspec>) -> Result<(), Error> {
    h.link().change(msg.build()).execute().await
}

pub(crate) async fn move_to_netns(h: &Handle, index: u32, ns_fd: RawFd) -> Result<(), Error> {
    change(h, LinkUnspec::new_with_index(index).setns_by_fd(ns_fd)).await
}

pub(crate) async fn rename(h: &Handle, index: u32, name: &str) -> Result<(), Error> {
    change(h, LinkUnspec::new_with_index(index).name(name)).await
}

pub(crate) async fn set_mac(h: &Handle, index: u32, mac: [u8; 6]) -> Result<(), Error> {
    change(h, LinkUnspec::new_with_index(index).address(mac.to_vec())).await
}

pub(crate) async fn set_mtu(h: &Handle, index: u32, mtu: u16) -> Result<(), Error> {
    change(h, LinkUnspec::new_with_index(index).mtu(u32::from(mtu))).await
}

pub(crate) async fn set_up(h: &Handle, index: u32) -> Result<(), Error> {
    change(h, LinkUnspec::new_with_index(index).up()).await
}

/// `ip addr add ADDRESS dev INDEX`.
pub(crate) async fn add_address(h: &Handle, index: u32, address: Ipv4Net) -> Result<(), Error> {
    h.address()
        .add(index, IpAddr::V4(address.addr()), address.prefix_len())
        .execute()
        .await
}

/// The IPv4 addresses (with prefix) on link `index`.
pub(crate) async fn ipv4_addresses(h: &Handle, index: u32) -> Result<Vec<Ipv4Net>, Error> {
    ipv4_addresses_where(h, Some(index)).await
}

/// The IPv4 addresses (with prefix) on link `index`, or on every link.
pub(crate) async fn ipv4_addresses_where(
    h: &Handle,
    index: Option<u32>,
) -> Result<Vec<Ipv4Net>, Error> {
    let mut request = h.address().get();
    if let Some(index) = index {
        request = request.set_link_index_filter(index);
    }
    let msgs: Vec<_> = request.execute().try_collect().await?;
    let mut found = Vec::new();
    for msg in msgs {
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
                Some(*ip)
            }
            _ => None,
        });
        if let Some(net) = local.and_then(|ip| Ipv4Net::new(ip, msg.header.prefix_len).ok()) {
            found.push(net);
        }
    }
    Ok(found)
}

/// `ip route add default via GATEWAY dev INDEX`.
pub(crate) async fn add_default_route(h: &Handle, index: u32, gw: Ipv4Addr) -> Result<(), Error> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(index)
        .gateway(gw)
        .build();
    h.route().add(route).execute().await
}

/// `ip route replace NET dev INDEX scope link`.
pub(crate) async fn replace_link_route(h: &Handle, index: u32, net: Ipv4Net) -> Result<(), Error> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net.network(), net.prefix_len())
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    h.route().add(route).replace().execute().await
}

/// A route of the main IPv4 table, reduced to what we compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ipv4Route {
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// The routes of the main IPv4 table.
pub(crate) async fn main_ipv4_routes(h: &Handle) -> Result<Vec<Ipv4Route>, Error> {
    let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let msgs: Vec<RouteMessage> = h.route().get(query).execute().try_collect().await?;
    Ok(msgs.iter().filter_map(main_table_route).collect())
}

fn main_table_route(msg: &RouteMessage) -> Option<Ipv4Route> {
    if msg.header.address_family != AddressFamily::Inet
        || route_table(msg) != u32::from(RouteHeader::RT_TABLE_MAIN)
    {
        return None;
    }
    let mut route = Ipv4Route {
        destination: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, msg.header.destination_prefix_length)
            .ok()?,
        gateway: None,
        oif: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                route.destination = Ipv4Net::new(*ip, msg.header.destination_prefix_length).ok()?
            }
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(*ip),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            _ => {}
        }
    }
    Some(route)
}

fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}
