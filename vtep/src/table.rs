//! The tunnel table: which peer a remote pod subnet lives behind, and which peers may send to us.
//!
//! Contract: a [`TunnelTable`] is built once on the control path from a list of [`Tunnel`]s
//! ([`TunnelTable::build`] validates it and builds the indexes) and is read-only afterwards, so
//! workers can share a snapshot without locks; a change builds a new table. Lookups allocate
//! nothing:
//!
//! - [`TunnelTable::route`]: the tunnel whose remote subnet holds an inner destination, in
//!   O(log n) (binary search over the subnets, which the table keeps disjoint, so the containing
//!   subnet is unique and is the longest prefix match);
//! - [`TunnelTable::peer`]: the tunnel of a given kind whose remote node IP is an outer source
//!   address, in O(1) (a hash map per kind): the "accept only from configured peers" check of the
//!   decapsulation path.
//!
//! A [`TunnelId`] is the tunnel's position in the list given to [`TunnelTable::build`]; it names
//! the tunnel in this table only (for per-tunnel templates and counters built alongside it).
//!
//! Build rules: names are non-empty and unique; the remote is a unicast address; a subnet is
//! written as its network address (no host bits set, as `ip route` requires); subnets do not
//! overlap (flannel and Calico hand out disjoint per-node blocks, and an overlap is a
//! configuration error, not something to resolve by prefix length); one tunnel per kind and remote
//! node; a VXLAN tunnel has a unicast VTEP MAC, a VNI of at most 24 bits and a non-zero port. The
//! VNI, port and VTEP MAC of an IPIP tunnel are ignored.
//!
//! Non-goals: the next-hop MAC on the underlay (ARP, the caller's cache), outer-header templates
//! (built by the caller from the table, see [`crate::encap`]), persistence and the control
//! protocol, and IPv6.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use thiserror::Error;

use crate::vxlan::{FLANNEL_UDP_PORT, FLANNEL_VNI, VNI_MAX};

/// The encapsulation a tunnel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunnelKind {
    /// VXLAN in flannel's wire format (UDP, inner Ethernet frame).
    Vxlan,
    /// IPv4 in IPv4 in Calico's wire format (IP protocol 4, no inner Ethernet).
    Ipip,
}

impl TunnelKind {
    /// The kind's name in configuration and on the command line: `vxlan` or `ipip`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Ipip => "ipip",
        }
    }

    const fn index(self) -> usize {
        match self {
            TunnelKind::Vxlan => 0,
            TunnelKind::Ipip => 1,
        }
    }
}

impl fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tunnel kind name that is neither `vxlan` nor `ipip`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown tunnel kind {0:?}: expected \"vxlan\" or \"ipip\"")]
pub struct UnknownTunnelKind(pub String);

impl FromStr for TunnelKind {
    type Err = UnknownTunnelKind;

    fn from_str(s: &str) -> Result<TunnelKind, UnknownTunnelKind> {
        match s {
            "vxlan" => Ok(TunnelKind::Vxlan),
            "ipip" => Ok(TunnelKind::Ipip),
            _ => Err(UnknownTunnelKind(s.to_owned())),
        }
    }
}

/// A tunnel's position in its [`TunnelTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelId(pub u32);

impl TunnelId {
    /// The id as an index into [`TunnelTable::tunnels`] (and the caller's per-tunnel arrays).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// One remote node: where its pod subnet is reached, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// The operator's name for the tunnel (a node name, typically).
    pub name: String,
    /// The encapsulation.
    pub kind: TunnelKind,
    /// The remote node's IP on the underlay.
    pub remote: Ipv4Addr,
    /// The remote node's pod subnet (its network address).
    pub subnet: Ipv4Net,
    /// (VXLAN) The VNI, at most 2^24 - 1.
    pub vni: u32,
    /// (VXLAN) The remote node's VTEP MAC: the inner destination MAC of frames sent to it.
    pub vtep_mac: Option<[u8; 6]>,
    /// (VXLAN) The UDP destination port.
    pub port: u16,
}

impl Tunnel {
    /// A VXLAN tunnel with flannel's VNI (1) and port (8472).
    pub fn vxlan(
        name: impl Into<String>,
        remote: Ipv4Addr,
        subnet: Ipv4Net,
        vtep_mac: [u8; 6],
    ) -> Tunnel {
        Tunnel {
            name: name.into(),
            kind: TunnelKind::Vxlan,
            remote,
            subnet,
            vni: FLANNEL_VNI,
            vtep_mac: Some(vtep_mac),
            port: FLANNEL_UDP_PORT,
        }
    }

    /// An IPIP tunnel (the VXLAN fields hold their defaults and are ignored).
    pub fn ipip(name: impl Into<String>, remote: Ipv4Addr, subnet: Ipv4Net) -> Tunnel {
        Tunnel {
            name: name.into(),
            kind: TunnelKind::Ipip,
            remote,
            subnet,
            vni: FLANNEL_VNI,
            vtep_mac: None,
            port: FLANNEL_UDP_PORT,
        }
    }
}

/// Why a list of tunnels does not make a table. Names are the tunnels' names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TableError {
    /// A tunnel has an empty name.
    #[error("tunnel with an empty name")]
    EmptyName,
    /// Two tunnels have the same name.
    #[error("duplicate tunnel name {0:?}")]
    DuplicateName(String),
    /// The remote is not a unicast address (unspecified, broadcast, multicast or loopback).
    #[error("tunnel {name:?}: remote {remote} is not a unicast node address")]
    BadRemote {
        /// The tunnel.
        name: String,
        /// Its remote.
        remote: Ipv4Addr,
    },
    /// The subnet has host bits set.
    #[error("tunnel {name:?}: subnet {subnet} has host bits set (the network is {network})")]
    SubnetHostBits {
        /// The tunnel.
        name: String,
        /// The subnet as given.
        subnet: Ipv4Net,
        /// The network it was probably meant to be.
        network: Ipv4Net,
    },
    /// Two tunnels' subnets overlap.
    #[error("tunnels {a:?} ({a_subnet}) and {b:?} ({b_subnet}) have overlapping subnets")]
    Overlap {
        /// The tunnel whose subnet starts first.
        a: String,
        /// Its subnet.
        a_subnet: Ipv4Net,
        /// The other tunnel.
        b: String,
        /// Its subnet.
        b_subnet: Ipv4Net,
    },
    /// Two tunnels of the same kind have the same remote.
    #[error("tunnels {a:?} and {b:?} are both {kind} tunnels to {remote}: one per peer")]
    DuplicatePeer {
        /// The first tunnel.
        a: String,
        /// The second tunnel.
        b: String,
        /// Their kind.
        kind: TunnelKind,
        /// Their remote.
        remote: Ipv4Addr,
    },
    /// A VXLAN tunnel has no VTEP MAC.
    #[error("VXLAN tunnel {0:?} has no VTEP MAC")]
    MissingVtepMac(String),
    /// A VXLAN tunnel's VTEP MAC is zero or multicast.
    #[error("VXLAN tunnel {name:?}: VTEP MAC {mac:02x?} is not a unicast address")]
    BadVtepMac {
        /// The tunnel.
        name: String,
        /// Its VTEP MAC.
        mac: [u8; 6],
    },
    /// A VXLAN tunnel's VNI does not fit in 24 bits.
    #[error("VXLAN tunnel {name:?}: VNI {vni} is above 16777215")]
    BadVni {
        /// The tunnel.
        name: String,
        /// Its VNI.
        vni: u32,
    },
    /// A VXLAN tunnel's port is 0.
    #[error("VXLAN tunnel {0:?}: UDP port 0")]
    BadPort(String),
    /// More tunnels than a [`TunnelId`] can number.
    #[error("too many tunnels")]
    TooMany,
}

type PeerMap = HashMap<u32, TunnelId, ahash::RandomState>;

/// The tunnels of a node, indexed by remote subnet and by remote node IP. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct TunnelTable {
    tunnels: Vec<Tunnel>,
    /// First address of each subnet, ascending; the subnets are disjoint.
    starts: Vec<u32>,
    /// Last address and tunnel of the subnet at the same position in `starts`.
    ends: Vec<(u32, TunnelId)>,
    /// Remote node IP -> tunnel, one map per kind ([`TunnelKind::index`]).
    peers: [PeerMap; 2],
    names: HashMap<String, TunnelId, ahash::RandomState>,
}

fn check_tunnel(t: &Tunnel) -> Result<(), TableError> {
    if t.name.is_empty() {
        return Err(TableError::EmptyName);
    }
    let r = t.remote;
    if r.is_unspecified() || r.is_broadcast() || r.is_multicast() || r.is_loopback() {
        return Err(TableError::BadRemote {
            name: t.name.clone(),
            remote: r,
        });
    }
    if t.subnet.trunc() != t.subnet {
        return Err(TableError::SubnetHostBits {
            name: t.name.clone(),
            subnet: t.subnet,
            network: t.subnet.trunc(),
        });
    }
    if t.kind == TunnelKind::Vxlan {
        let Some(mac) = t.vtep_mac else {
            return Err(TableError::MissingVtepMac(t.name.clone()));
        };
        if mac == [0; 6] || mac[0] & 0x01 != 0 {
            return Err(TableError::BadVtepMac {
                name: t.name.clone(),
                mac,
            });
        }
        if t.vni > VNI_MAX {
            return Err(TableError::BadVni {
                name: t.name.clone(),
                vni: t.vni,
            });
        }
        if t.port == 0 {
            return Err(TableError::BadPort(t.name.clone()));
        }
    }
    Ok(())
}

impl TunnelTable {
    /// Validates `tunnels` (the build rules of the module docs, each tunnel in order, then peers,
    /// then overlaps) and builds the table. [`TunnelId`]`(i)` is `tunnels[i]`.
    pub fn build(tunnels: Vec<Tunnel>) -> Result<TunnelTable, TableError> {
        if u32::try_from(tunnels.len()).is_err() {
            return Err(TableError::TooMany);
        }
        let hasher = ahash::RandomState::new();
        let mut names = HashMap::with_capacity_and_hasher(tunnels.len(), hasher.clone());
        let mut peers: [PeerMap; 2] = [
            HashMap::with_hasher(hasher.clone()),
            HashMap::with_hasher(hasher),
        ];
        let ids = (0..).map(TunnelId);
        for (t, id) in tunnels.iter().zip(ids.clone()) {
            check_tunnel(t)?;
            if names.insert(t.name.clone(), id).is_some() {
                return Err(TableError::DuplicateName(t.name.clone()));
            }
        }
        for (t, id) in tunnels.iter().zip(ids.clone()) {
            if let Some(other) = peers[t.kind.index()].insert(u32::from(t.remote), id) {
                return Err(TableError::DuplicatePeer {
                    a: tunnels[other.index()].name.clone(),
                    b: t.name.clone(),
                    kind: t.kind,
                    remote: t.remote,
                });
            }
        }

        // Sorted by first address, then by prefix length, the CIDR blocks are laminar (nested or
        // disjoint): if any block holds another, the block right after it in this order is inside
        // it, so checking neighbours finds every overlap.
        let mut by_start: Vec<(u32, u8, TunnelId)> = tunnels
            .iter()
            .zip(ids)
            .map(|(t, id)| (u32::from(t.subnet.network()), t.subnet.prefix_len(), id))
            .collect();
        by_start.sort_unstable();
        let end = |id: TunnelId| u32::from(tunnels[id.index()].subnet.broadcast());
        for pair in by_start.windows(2) {
            let (a, b) = (pair[0].2, pair[1].2);
            if pair[1].0 <= end(a) {
                let (a, b) = (&tunnels[a.index()], &tunnels[b.index()]);
                return Err(TableError::Overlap {
                    a: a.name.clone(),
                    a_subnet: a.subnet,
                    b: b.name.clone(),
                    b_subnet: b.subnet,
                });
            }
        }
        let starts = by_start.iter().map(|&(start, _, _)| start).collect();
        let ends = by_start.iter().map(|&(_, _, id)| (end(id), id)).collect();
        Ok(TunnelTable {
            tunnels,
            starts,
            ends,
            peers,
            names,
        })
    }

    /// The tunnel whose remote subnet holds `dst`, if any: the longest (and only) prefix match.
    pub fn route(&self, dst: Ipv4Addr) -> Option<(TunnelId, &Tunnel)> {
        let dst = u32::from(dst);
        let i = self
            .starts
            .partition_point(|&start| start <= dst)
            .checked_sub(1)?;
        let (end, id) = self.ends[i];
        (dst <= end).then(|| (id, &self.tunnels[id.index()]))
    }

    /// The `kind` tunnel whose remote node IP is `outer_src`, if any: whether a received tunnel
    /// packet comes from a configured peer.
    pub fn peer(&self, kind: TunnelKind, outer_src: Ipv4Addr) -> Option<(TunnelId, &Tunnel)> {
        let id = *self.peers[kind.index()].get(&u32::from(outer_src))?;
        Some((id, &self.tunnels[id.index()]))
    }

    /// The tunnel named `name`, if any.
    pub fn by_name(&self, name: &str) -> Option<(TunnelId, &Tunnel)> {
        let id = *self.names.get(name)?;
        Some((id, &self.tunnels[id.index()]))
    }

    /// The tunnel `id`, if it is in this table.
    pub fn get(&self, id: TunnelId) -> Option<&Tunnel> {
        self.tunnels.get(id.index())
    }

    /// All tunnels, in the order given to [`TunnelTable::build`] (indexed by [`TunnelId`]).
    pub fn tunnels(&self) -> &[Tunnel] {
        &self.tunnels
    }

    /// All tunnels with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (TunnelId, &Tunnel)> + '_ {
        (0..).map(TunnelId).zip(&self.tunnels)
    }

    /// The number of tunnels.
    pub fn len(&self) -> usize {
        self.tunnels.len()
    }

    /// Whether the table has no tunnel.
    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty()
    }

    /// The tunnels back, to edit and build a new table from.
    pub fn into_tunnels(self) -> Vec<Tunnel> {
        self.tunnels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn mac(n: u8) -> [u8; 6] {
        [0x0e, 0, 0, 0, 0, n]
    }

    fn node(n: u8) -> Tunnel {
        Tunnel::vxlan(
            format!("node-{n}"),
            Ipv4Addr::new(192, 168, 77, n),
            Ipv4Net::new(Ipv4Addr::new(10, 244, n, 0), 24).unwrap(),
            mac(n),
        )
    }

    #[test]
    fn route_and_peer() {
        let mut calico = Tunnel::ipip("calico-9", ip("192.168.77.9"), net("10.245.0.0/16"));
        calico.vni = 77; // ignored for IPIP
        let table = TunnelTable::build(vec![
            node(2),
            node(3),
            calico,
            node(1),
            Tunnel::ipip("host", ip("192.168.77.2"), net("10.9.9.9/32")),
        ])
        .unwrap();
        assert_eq!(table.len(), 5);
        let route = |s: &str| table.route(ip(s)).map(|(id, t)| (id, t.name.as_str()));
        assert_eq!(route("10.244.2.0"), Some((TunnelId(0), "node-2")));
        assert_eq!(route("10.244.2.255"), Some((TunnelId(0), "node-2")));
        assert_eq!(route("10.244.3.7"), Some((TunnelId(1), "node-3")));
        assert_eq!(route("10.244.1.1"), Some((TunnelId(3), "node-1")));
        assert_eq!(route("10.245.200.1"), Some((TunnelId(2), "calico-9")));
        assert_eq!(route("10.9.9.9"), Some((TunnelId(4), "host")));
        for miss in [
            "10.244.0.1",
            "10.244.4.0",
            "10.9.9.8",
            "10.9.9.10",
            "0.0.0.0",
            "255.255.255.255",
            "10.246.0.0",
        ] {
            assert_eq!(route(miss), None, "{miss}");
        }

        // The peer check is per kind: node 2 is a VXLAN peer and an IPIP peer ("host").
        let peer = |k, s: &str| table.peer(k, ip(s)).map(|(id, _)| id);
        assert_eq!(peer(TunnelKind::Vxlan, "192.168.77.2"), Some(TunnelId(0)));
        assert_eq!(peer(TunnelKind::Ipip, "192.168.77.2"), Some(TunnelId(4)));
        assert_eq!(peer(TunnelKind::Ipip, "192.168.77.9"), Some(TunnelId(2)));
        assert_eq!(peer(TunnelKind::Vxlan, "192.168.77.9"), None);
        assert_eq!(peer(TunnelKind::Vxlan, "192.168.77.4"), None);

        assert_eq!(table.by_name("node-3").map(|(id, _)| id), Some(TunnelId(1)));
        assert_eq!(table.by_name("node-4"), None);
        assert_eq!(
            table.get(TunnelId(3)).map(|t| t.remote),
            Some(ip("192.168.77.1"))
        );
        assert_eq!(table.get(TunnelId(5)), None);
        assert_eq!(
            table.iter().map(|(id, _)| id.0).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(table.into_tunnels()[0], node(2));
    }

    #[test]
    fn empty_and_whole_space() {
        let empty = TunnelTable::build(Vec::new()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.route(ip("10.0.0.1")), None);
        assert_eq!(empty.peer(TunnelKind::Vxlan, ip("10.0.0.1")), None);
        let all = TunnelTable::build(vec![Tunnel::ipip(
            "all",
            ip("192.168.0.1"),
            net("0.0.0.0/0"),
        )])
        .unwrap();
        for s in ["0.0.0.0", "10.1.2.3", "255.255.255.255"] {
            assert_eq!(all.route(ip(s)).map(|(id, _)| id), Some(TunnelId(0)));
        }
    }

    fn build_err(tunnels: Vec<Tunnel>) -> TableError {
        TunnelTable::build(tunnels).unwrap_err()
    }

    #[test]
    fn overlaps_are_rejected() {
        // A /16 holding a /24: flannel never hands out such subnets; refuse rather than guess.
        let wide = Tunnel::ipip("wide", ip("192.168.77.9"), net("10.244.0.0/16"));
        let e = build_err(vec![node(1), node(2), wide.clone()]);
        assert_eq!(
            e,
            TableError::Overlap {
                a: "wide".into(),
                a_subnet: net("10.244.0.0/16"),
                b: "node-1".into(),
                b_subnet: net("10.244.1.0/24")
            }
        );
        assert_eq!(
            e.to_string(),
            "tunnels \"wide\" (10.244.0.0/16) and \"node-1\" (10.244.1.0/24) have overlapping subnets"
        );
        // Nested at the end of the block, and equal blocks.
        let mut last = node(7);
        last.subnet = net("10.244.255.0/24");
        assert!(matches!(
            build_err(vec![last, wide.clone()]),
            TableError::Overlap { .. }
        ));
        let mut same = node(9);
        same.subnet = net("10.244.1.0/24");
        assert!(matches!(
            build_err(vec![node(1), same]),
            TableError::Overlap { .. }
        ));
        // Adjacent blocks do not overlap.
        let mut next = wide.clone();
        next.subnet = net("10.245.0.0/16");
        let mut prev = node(8);
        prev.subnet = net("10.243.255.0/24");
        assert!(TunnelTable::build(vec![next, prev]).is_ok());
    }

    #[test]
    fn each_build_error() {
        let with = |f: fn(&mut Tunnel)| {
            let mut t = node(5);
            f(&mut t);
            build_err(vec![node(1), t])
        };
        assert_eq!(with(|t| t.name.clear()), TableError::EmptyName);
        assert_eq!(
            with(|t| t.name = "node-1".into()),
            TableError::DuplicateName("node-1".into())
        );
        for remote in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1"] {
            let mut t = node(5);
            t.remote = ip(remote);
            assert_eq!(
                build_err(vec![t]),
                TableError::BadRemote {
                    name: "node-5".into(),
                    remote: ip(remote)
                }
            );
        }
        assert_eq!(
            with(|t| t.subnet = "10.244.5.1/24".parse().unwrap()),
            TableError::SubnetHostBits {
                name: "node-5".into(),
                subnet: net("10.244.5.1/24"),
                network: net("10.244.5.0/24")
            }
        );
        assert_eq!(
            with(|t| t.vtep_mac = None),
            TableError::MissingVtepMac("node-5".into())
        );
        assert_eq!(
            with(|t| t.vtep_mac = Some([0; 6])),
            TableError::BadVtepMac {
                name: "node-5".into(),
                mac: [0; 6]
            }
        );
        assert_eq!(
            with(|t| t.vtep_mac = Some([0x01, 0, 0x5e, 0, 0, 1])),
            TableError::BadVtepMac {
                name: "node-5".into(),
                mac: [0x01, 0, 0x5e, 0, 0, 1]
            }
        );
        assert_eq!(
            with(|t| t.vni = 1 << 24),
            TableError::BadVni {
                name: "node-5".into(),
                vni: 1 << 24
            }
        );
        let mut max_vni = node(5);
        max_vni.vni = VNI_MAX;
        assert!(TunnelTable::build(vec![max_vni]).is_ok());
        assert_eq!(with(|t| t.port = 0), TableError::BadPort("node-5".into()));
        assert_eq!(
            with(|t| t.remote = ip("192.168.77.1")),
            TableError::DuplicatePeer {
                a: "node-1".into(),
                b: "node-5".into(),
                kind: TunnelKind::Vxlan,
                remote: ip("192.168.77.1")
            }
        );
        // An IPIP tunnel needs none of the VXLAN fields.
        let mut ipip = Tunnel::ipip("c", ip("192.168.77.5"), net("10.1.0.0/24"));
        (ipip.vni, ipip.port) = (u32::MAX, 0);
        assert!(TunnelTable::build(vec![ipip]).is_ok());
    }

    #[test]
    fn kind_names() {
        for kind in [TunnelKind::Vxlan, TunnelKind::Ipip] {
            assert_eq!(kind.to_string().parse::<TunnelKind>(), Ok(kind));
        }
        assert_eq!(
            "gre".parse::<TunnelKind>(),
            Err(UnknownTunnelKind("gre".into()))
        );
    }

    #[test]
    fn thousands_of_peers() {
        // 4096 nodes with a /24 each, as in a large flannel cluster with 10.0.0.0/8.
        let tunnels: Vec<_> = (0..4096u32)
            .map(|i| {
                let net = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | i << 8), 24).unwrap();
                Tunnel::vxlan(
                    format!("n{i}"),
                    Ipv4Addr::from(0xc0a8_0000 | (i + 1)),
                    net,
                    mac(1),
                )
            })
            .collect();
        let table = TunnelTable::build(tunnels).unwrap();
        for i in (0..4096u32).step_by(37) {
            let (id, t) = table
                .route(Ipv4Addr::from(0x0a00_0000 | i << 8 | 0x42))
                .unwrap();
            assert_eq!(
                (id, t.remote),
                (TunnelId(i), Ipv4Addr::from(0xc0a8_0000 | (i + 1)))
            );
            assert_eq!(
                table.peer(TunnelKind::Vxlan, t.remote).map(|(id, _)| id),
                Some(TunnelId(i))
            );
        }
        assert_eq!(table.route(ip("10.16.0.1")), None);
    }

    proptest! {
        /// Against a linear scan for the longest prefix holding the address.
        #[test]
        fn route_is_longest_prefix_match(
            blocks in proptest::collection::vec((any::<u32>(), 8u8..=32), 1..60),
            probes in proptest::collection::vec(any::<u32>(), 50),
        ) {
            // Keep the blocks that overlap none kept before (the table refuses overlaps).
            let mut nets: Vec<Ipv4Net> = Vec::new();
            for (addr, len) in blocks {
                let n = Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc();
                if !nets.iter().any(|m| m.contains(&n) || n.contains(m)) {
                    nets.push(n);
                }
            }
            let tunnels: Vec<_> = nets
                .iter()
                .enumerate()
                .map(|(i, n)| Tunnel::ipip(format!("t{i}"), Ipv4Addr::from(0x0a00_0001 + i as u32), *n))
                .collect();
            let table = TunnelTable::build(tunnels).unwrap();
            // Probe inside each block (first, last, middle) and at random.
            let mut addrs: Vec<u32> = probes;
            for n in &nets {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                addrs.extend([lo, hi, lo + (hi - lo) / 2, lo.wrapping_sub(1), hi.wrapping_add(1)]);
            }
            for a in addrs {
                let a = Ipv4Addr::from(a);
                let expected = nets
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.contains(&a))
                    .max_by_key(|(_, n)| n.prefix_len())
                    .map(|(i, _)| TunnelId(i as u32));
                prop_assert_eq!(table.route(a).map(|(id, _)| id), expected);
            }
        }
    }
}
