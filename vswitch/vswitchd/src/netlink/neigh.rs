//! Next-hop lookups for tunnel peers over one connection, in whatever namespace the connection
//! was opened: the route the kernel picks for an address (`ip route get`) and one entry of the
//! IPv4 neighbour table (`ip neigh get`). The lookups return the raw `rtnetlink::Error`; callers
//! name the step.

use std::net::Ipv4Addr;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST},
    packet_route::{
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia},
        AddressFamily, RouteNetlinkMessage,
    },
    Error, Handle,
};

use super::error::errno_of;

/// The kernel's answer to `ip route get DST`, reduced to what next-hop resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteTo {
    pub kind: RouteType,
    /// `RTA_OIF`: where the packet leaves.
    pub oif: Option<u32>,
    /// `RTA_GATEWAY` (or an IPv4 `RTA_VIA`): set when the route goes via a gateway.
    pub gateway: Option<Ipv4Addr>,
    /// An `RTA_VIA` that is not IPv4 (an IPv6 gateway for an IPv4 route, RFC 5549).
    pub foreign_via: bool,
}

impl RouteTo {
    fn from_message(msg: &RouteMessage) -> Self {
        let mut route = RouteTo {
            kind: msg.header.kind,
            oif: None,
            gateway: None,
            foreign_via: false,
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(ip))
                | RouteAttribute::Via(RouteVia::Inet(ip)) => route.gateway = Some(*ip),
                RouteAttribute::Via(_) => route.foreign_via = true,
                _ => {}
            }
        }
        route
    }

    /// The output interface and the next hop (the gateway, or `dst` itself when on-link); `Err`
    /// says why the route is no way to reach `dst` as a unicast peer.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Result<(u32, Ipv4Addr), String> {
        match self.kind {
            RouteType::Unicast => {}
            RouteType::Local => return Err(format!("{dst} is an address of this node")),
            RouteType::Broadcast => return Err(format!("{dst} is a broadcast address")),
            RouteType::Multicast => return Err(format!("{dst} is a multicast address")),
            other => return Err(format!("the kernel picked a route of type {other:?}")),
        }
        if self.foreign_via {
            return Err(
                "its gateway is not an IPv4 address (RFC 5549 route), which is not \
                        supported"
                    .into(),
            );
        }
        let oif = self
            .oif
            .ok_or("the kernel's answer names no output interface")?;
        Ok((oif, self.gateway.unwrap_or(dst)))
    }
}

/// Why `ip route get` failed, for the errnos that mean "no way there" (the kernel answers a
/// lookup that hits no route, or an `unreachable`, `prohibit` or `blackhole` route, with these).
pub(crate) fn unroutable(errno: i32) -> Option<&'static str> {
    match errno {
        libc::ENETUNREACH => Some("no route matches it (network unreachable)"),
        libc::EHOSTUNREACH => Some("an `unreachable` route matches it"),
        libc::EACCES => Some("a `prohibit` route matches it"),
        libc::EINVAL => Some("a `blackhole` route matches it"),
        _ => None,
    }
}

/// `ip route get DST`: the route the kernel picks for a packet this host sends to `dst` (the
/// main lookup with policy routing, as for a packet from an unbound socket). `None` if the
/// kernel answered with nothing.
pub(crate) async fn route_get(h: &Handle, dst: Ipv4Addr) -> Result<Option<RouteTo>, Error> {
    // The header as `ip route get` sends it (table, protocol, scope and type 0), so the query
    // also passes NETLINK_GET_STRICT_CHK.
    let mut query = RouteMessage::default();
    query.header.address_family = AddressFamily::Inet;
    query.header.destination_prefix_length = 32;
    query
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    let mut answers = h.route().get(query).execute();
    Ok(answers.try_next().await?.map(|m| RouteTo::from_message(&m)))
}

/// A neighbour table entry, reduced to what next-hop resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Neighbour {
    pub state: NeighbourState,
    /// `NDA_LLADDR`, if the entry has one.
    pub lladdr: Option<Vec<u8>>,
}

impl Neighbour {
    fn from_message(msg: &NeighbourMessage) -> Self {
        let lladdr = msg.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(mac) => Some(mac.clone()),
            _ => None,
        });
        Neighbour {
            state: msg.header.state,
            lladdr,
        }
    }

    /// The MAC, if the entry is one a frame can be addressed with: REACHABLE, STALE, DELAY,
    /// PROBE or PERMANENT, with a 6-byte link-layer address. (STALE, DELAY and PROBE entries
    /// are still valid, the kernel is only re-confirming them; INCOMPLETE and FAILED have no
    /// usable address, NOARP entries no real one.)
    pub fn usable_mac(&self) -> Option<[u8; 6]> {
        let usable = matches!(
            self.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
        );
        let mac = self.lladdr.as_deref()?;
        usable.then(|| <[u8; 6]>::try_from(mac).ok()).flatten()
    }
}

/// `ip neigh get IP dev INDEX` (a single-entry RTM_GETNEIGH, Linux 5.0+): the entry for `ip` on
/// link `index`, `None` if the kernel has none.
pub(crate) async fn neigh_get(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
) -> Result<Option<Neighbour>, Error> {
    let mut query = NeighbourMessage::default();
    query.header.family = AddressFamily::Inet;
    query.header.ifindex = index;
    query
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(query));
    // Not a dump: the kernel looks up exactly this entry (ENOENT if there is none).
    req.header.flags = NLM_F_REQUEST;
    let mut answers = h.clone().request(req)?;
    let Some(answer) = answers.next().await else {
        return Ok(None);
    };
    let (header, payload) = answer.into_parts();
    let err = match payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(msg)) => {
            return Ok(Some(Neighbour::from_message(&msg)))
        }
        NetlinkPayload::Error(err) => Error::NetlinkError(err),
        payload => Error::UnexpectedMessage(NetlinkMessage::new(header, payload)),
    };
    match errno_of(&err) {
        Some(libc::ENOENT) => Ok(None),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 7];

    fn neighbour(state: NeighbourState, lladdr: Option<&[u8]>) -> Neighbour {
        Neighbour {
            state,
            lladdr: lladdr.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn only_valid_states_with_a_mac_are_usable() {
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
        ] {
            assert_eq!(
                neighbour(state, Some(&MAC)).usable_mac(),
                Some(MAC),
                "{state:?}"
            );
            assert_eq!(neighbour(state, None).usable_mac(), None, "{state:?}");
            assert_eq!(neighbour(state, Some(&[1, 2, 3, 4])).usable_mac(), None);
        }
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::Noarp,
            NeighbourState::None,
            NeighbourState::Other(0x82),
        ] {
            assert_eq!(neighbour(state, Some(&MAC)).usable_mac(), None, "{state:?}");
        }
    }

    fn route(kind: RouteType, oif: Option<u32>, gateway: Option<Ipv4Addr>) -> RouteTo {
        RouteTo {
            kind,
            oif,
            gateway,
            foreign_via: false,
        }
    }

    #[test]
    fn next_hop_is_the_gateway_or_the_destination() {
        let dst = Ipv4Addr::new(192, 168, 88, 5);
        let gw = Ipv4Addr::new(192, 168, 77, 2);
        assert_eq!(
            route(RouteType::Unicast, Some(3), Some(gw)).next_hop(dst),
            Ok((3, gw))
        );
        assert_eq!(
            route(RouteType::Unicast, Some(3), None).next_hop(dst),
            Ok((3, dst))
        );
        assert!(route(RouteType::Unicast, None, None).next_hop(dst).is_err());
        let local = route(RouteType::Local, Some(1), None).next_hop(dst);
        assert!(local.unwrap_err().contains("address of this node"));
        assert!(route(RouteType::Broadcast, Some(3), None)
            .next_hop(dst)
            .is_err());
        let v6 = RouteTo {
            foreign_via: true,
            ..route(RouteType::Unicast, Some(3), None)
        };
        assert!(v6.next_hop(dst).unwrap_err().contains("RFC 5549"));
    }
}
