//! The switch's tables, published as immutable snapshots.
//!
//! Contract: the control side describes the switch ([`SwitchConfig`] plus [`PortInfo`]s),
//! [`Tables::build`] validates the description and derives every lookup structure (FDB static
//! entries, pod routes), and [`TableHandle::publish`] swaps the new snapshot in atomically.
//! Workers read the current snapshot through a [`TableReader`] once per burst: a pointer
//! comparison when nothing changed, no lock ever, so a control change never pauses forwarding.
//! A snapshot is never mutated after it is built.
//!
//! Non-goals: learned FDB entries (per worker, see `fdb`), counters (see `stats`).

use crate::mac::MacAddr;
use crate::policy::PolicySet;
use ahash::AHashMap;
use arc_swap::{ArcSwap, Cache};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::sync::Arc;
use thiserror::Error;
use vtep::encap::{IpipPeer, IpipTemplate, VxlanPeer, VxlanTemplate};
use vtep::table::{Tunnel, TunnelId, TunnelKind, TunnelTable};

/// Number of port slots; port ids are indexes below this.
pub const MAX_PORTS: usize = 1024;

/// A port's slot number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortId(pub u16);

impl PortId {
    /// The slot as an index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a port connects the switch to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// A pod's veth: source-checked, its MAC and IP are static table entries.
    Pod,
    /// The host port: the node's own stack (Services, node IP, the internet through masquerade).
    Host,
    /// The node's uplink NIC (tunnels, later issues).
    Uplink,
}

/// One port as the tables see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Slot.
    pub id: PortId,
    /// Operator-facing name (the host-side interface name).
    pub name: String,
    /// Kind.
    pub kind: PortKind,
    /// Pod: the pod interface's MAC. Host/uplink: the MAC of the interface frames are sent to.
    pub mac: MacAddr,
    /// Pod: its IPv4 address.
    pub ip: Option<Ipv4Addr>,
    /// Largest IPv4 packet the port takes.
    pub mtu: u16,
}

/// Switch-wide settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchConfig {
    /// The pods' default gateway: the first address of `pod_cidr`.
    pub gateway_ip: Ipv4Addr,
    /// The MAC the switch answers and routes with.
    pub gateway_mac: MacAddr,
    /// This node's pod subnet.
    pub pod_cidr: Ipv4Net,
    /// The whole cluster's pod network.
    pub cluster_cidr: Ipv4Net,
    /// Our underlay address: the outer source of tunnel packets, and what they are sent to.
    #[serde(default)]
    pub node_ip: Option<Ipv4Addr>,
    /// Our VTEP MAC: inner source MAC of VXLAN packets we send, inner destination we accept.
    #[serde(default)]
    pub vtep_mac: Option<MacAddr>,
    /// Whether outer UDP checksums of VXLAN packets are computed (else sent as 0).
    #[serde(default = "yes")]
    pub vxlan_udp_checksum: bool,
}

fn yes() -> bool {
    true
}

/// A tunnel as the control side gives it: the peer and its resolved underlay next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEntry {
    /// The peer.
    pub tunnel: Tunnel,
    /// The underlay next hop's MAC; `None` while unresolved (packets are then dropped and
    /// counted as `tunnel_unresolved`).
    pub next_hop_mac: Option<MacAddr>,
}

/// A prebuilt outer header.
#[derive(Clone, Debug)]
pub enum TunnelTemplate {
    /// VXLAN: outer Ethernet, IPv4, UDP, VXLAN.
    Vxlan(VxlanTemplate),
    /// IPIP: outer Ethernet and IPv4.
    Ipip(IpipTemplate),
}

/// What the datapath needs to send into one tunnel.
#[derive(Clone, Debug)]
pub struct TunnelOut {
    /// The outer header, once the next hop is resolved.
    pub template: Option<TunnelTemplate>,
    /// Largest inner IPv4 packet: uplink MTU less the encapsulation overhead.
    pub mtu: u16,
    /// Inner destination MAC (the peer's VTEP MAC for VXLAN).
    pub inner_dst_mac: MacAddr,
}

/// Where a routed packet goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// The switch itself (the gateway IP).
    Gateway,
    /// A pod of this node.
    Pod(PortId),
    /// The host port.
    Host(PortId),
    /// A tunnel to another node.
    Tunnel(TunnelId),
    /// Nowhere: counted as `no_route`.
    Unreachable,
}

/// IPv4 routes: local pods (/32), the rest of the pod CIDR (unreachable), remote pod subnets
/// (tunnels), default (host port).
#[derive(Clone, Debug)]
pub struct RouteTable {
    pods: AHashMap<Ipv4Addr, PortId>,
    gateway: Option<Ipv4Addr>,
    pod_cidr: Option<Ipv4Net>,
    host: Option<PortId>,
    /// Tunnels by remote subnet and by peer.
    pub tunnels: TunnelTable,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            pods: AHashMap::default(),
            gateway: None,
            pod_cidr: None,
            host: None,
            tunnels: TunnelTable::build(Vec::new()).expect("an empty tunnel table is valid"),
        }
    }
}

impl RouteTable {
    /// The next hop for `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> NextHop {
        if Some(dst) == self.gateway {
            return NextHop::Gateway;
        }
        if let Some(p) = self.pods.get(&dst) {
            return NextHop::Pod(*p);
        }
        if self.pod_cidr.is_some_and(|c| c.contains(&dst)) {
            return NextHop::Unreachable;
        }
        if let Some((id, _)) = self.tunnels.route(dst) {
            return NextHop::Tunnel(id);
        }
        match self.host {
            Some(h) => NextHop::Host(h),
            None => NextHop::Unreachable,
        }
    }

    /// The local pod with address `ip`, if any.
    #[inline]
    pub fn pod(&self, ip: Ipv4Addr) -> Option<PortId> {
        self.pods.get(&ip).copied()
    }

    /// Every route, most specific first, for display.
    pub fn entries(&self) -> Vec<(Ipv4Net, NextHop)> {
        let mut v: Vec<_> = self
            .pods
            .iter()
            .map(|(ip, p)| (Ipv4Net::from(*ip), NextHop::Pod(*p)))
            .collect();
        v.sort_by_key(|(n, _)| n.addr());
        if let Some(g) = self.gateway {
            v.insert(0, (Ipv4Net::from(g), NextHop::Gateway));
        }
        if let Some(c) = self.pod_cidr {
            v.push((c, NextHop::Unreachable));
        }
        v.extend(
            self.tunnels
                .iter()
                .map(|(id, t)| (t.subnet, NextHop::Tunnel(id))),
        );
        if let Some(h) = self.host {
            v.push((Ipv4Net::default(), NextHop::Host(h)));
        }
        v
    }
}

/// A description the tables refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TableError {
    /// Port id at or above `MAX_PORTS`.
    #[error("port {name}: slot {id} is beyond the {max} port slots")]
    SlotOutOfRange {
        /// Port name.
        name: String,
        /// Slot.
        id: u16,
        /// MAX_PORTS.
        max: usize,
    },
    /// Two ports in one slot.
    #[error("ports {0} and {1} share slot {2}")]
    DuplicateSlot(String, String, u16),
    /// Two ports with the same name.
    #[error("two ports are named {0}")]
    DuplicateName(String),
    /// Two ports claim one MAC.
    #[error("ports {0} and {1} both use MAC {2}")]
    DuplicateMac(String, String, MacAddr),
    /// Two pods claim one IP.
    #[error("pods {0} and {1} both use IP {2}")]
    DuplicateIp(String, String, Ipv4Addr),
    /// A pod without an address, or outside the pod CIDR, or on the gateway address.
    #[error("pod {name}: address {ip:?} must be inside pod_cidr {cidr} and not the gateway")]
    BadPodIp {
        /// Pod name.
        name: String,
        /// Its address.
        ip: Option<Ipv4Addr>,
        /// The pod CIDR.
        cidr: Ipv4Net,
    },
    /// More than one host port.
    #[error("ports {0} and {1} are both host ports; a switch has one")]
    SecondHostPort(String, String),
    /// The gateway is not inside the pod CIDR.
    #[error("gateway {0} is not inside pod_cidr {1}")]
    GatewayOutsidePodCidr(Ipv4Addr, Ipv4Net),
    /// A port MTU too small for IPv4 or too big for a frame.
    #[error("port {0}: MTU {1} is outside 576..=9000")]
    BadMtu(String, u16),
    /// The MAC is multicast/broadcast or the gateway's.
    #[error("port {0}: MAC {1} is a group address or the gateway's")]
    BadMac(String, MacAddr),
    /// The tunnels do not form a valid table.
    #[error("tunnels: {0}")]
    Tunnel(#[from] vtep::table::TableError),
    /// Tunnels need an uplink port, a node IP and (for VXLAN) our VTEP MAC.
    #[error("tunnels need {0}")]
    TunnelSetup(&'static str),
    /// A tunnel's subnet overlaps the pod CIDR.
    #[error("tunnel {0}: subnet {1} overlaps pod_cidr {2}")]
    TunnelOverlapsPods(String, Ipv4Net, Ipv4Net),
    /// More than one uplink port.
    #[error("ports {0} and {1} are both uplinks; a switch has one")]
    SecondUplink(String, String),
}

/// One immutable snapshot of everything a worker looks up.
#[derive(Debug, Default)]
pub struct Tables {
    /// Switch-wide settings (`None` only in the empty initial snapshot).
    pub config: Option<SwitchConfig>,
    ports: Vec<Option<PortInfo>>,
    fdb: AHashMap<MacAddr, PortId>,
    /// IPv4 routes.
    pub routes: RouteTable,
    host_port: Option<PortId>,
    uplink: Option<PortId>,
    tunnel_out: Vec<TunnelOut>,
    /// NetworkPolicy, compiled (empty: no policy, nothing judged or tracked).
    pub policy: PolicySet,
    /// The node's own IPv4 addresses besides `node_ip`: what the host port sends from one of
    /// them (or from `node_ip`) is the node's own traffic, which policy never judges.
    pub node_addresses: Vec<Ipv4Addr>,
}

impl Tables {
    /// Validates `config` and `ports` and derives the lookup structures (no tunnels).
    pub fn build(config: SwitchConfig, ports: Vec<PortInfo>) -> Result<Tables, TableError> {
        Self::build_with_tunnels(config, ports, Vec::new())
    }

    /// Validates `config`, `ports` and `tunnels` and derives the lookup structures, including
    /// a prebuilt outer header for every tunnel whose next hop is resolved.
    pub fn build_with_tunnels(
        config: SwitchConfig,
        ports: Vec<PortInfo>,
        tunnels: Vec<TunnelEntry>,
    ) -> Result<Tables, TableError> {
        if !config.pod_cidr.contains(&config.gateway_ip) {
            return Err(TableError::GatewayOutsidePodCidr(
                config.gateway_ip,
                config.pod_cidr,
            ));
        }
        let mut t = Tables {
            routes: RouteTable {
                gateway: Some(config.gateway_ip),
                pod_cidr: Some(config.pod_cidr),
                ..RouteTable::default()
            },
            ..Tables::default()
        };
        for p in ports {
            t.add_port(&config, p)?;
        }
        t.routes.host = t.host_port;
        t.add_tunnels(&config, tunnels)?;
        t.config = Some(config);
        Ok(t)
    }

    fn add_tunnels(
        &mut self,
        config: &SwitchConfig,
        entries: Vec<TunnelEntry>,
    ) -> Result<(), TableError> {
        if entries.is_empty() {
            return Ok(());
        }
        let uplink = self
            .uplink
            .and_then(|id| self.port(id))
            .ok_or(TableError::TunnelSetup("an uplink port"))?
            .clone();
        let node_ip = config.node_ip.ok_or(TableError::TunnelSetup("node_ip"))?;
        for e in &entries {
            let t = &e.tunnel;
            if t.subnet.contains(&config.pod_cidr) || config.pod_cidr.contains(&t.subnet) {
                return Err(TableError::TunnelOverlapsPods(
                    t.name.clone(),
                    t.subnet,
                    config.pod_cidr,
                ));
            }
        }
        let next_hops: Vec<Option<MacAddr>> = entries.iter().map(|e| e.next_hop_mac).collect();
        self.routes.tunnels = TunnelTable::build(entries.into_iter().map(|e| e.tunnel).collect())?;
        for (t, next_hop) in self.routes.tunnels.tunnels().iter().zip(next_hops) {
            let (template, overhead, inner_dst_mac) = match t.kind {
                TunnelKind::Vxlan => {
                    config
                        .vtep_mac
                        .ok_or(TableError::TunnelSetup("vtep_mac for VXLAN"))?;
                    let peer = VxlanPeer {
                        outer_src_mac: uplink.mac.0,
                        outer_dst_mac: next_hop.unwrap_or_default().0,
                        src_ip: node_ip,
                        dst_ip: t.remote,
                        udp_dst_port: t.port,
                        vni: t.vni,
                        udp_checksum: config.vxlan_udp_checksum,
                    };
                    let template = VxlanTemplate::new(&peer)
                        .map_err(|_| TableError::TunnelSetup("a valid VNI"))?;
                    let vtep = MacAddr(t.vtep_mac.unwrap_or_default());
                    (
                        TunnelTemplate::Vxlan(template),
                        vtep::vxlan::VXLAN_MTU_OVERHEAD,
                        vtep,
                    )
                }
                TunnelKind::Ipip => {
                    let peer = IpipPeer {
                        outer_src_mac: uplink.mac.0,
                        outer_dst_mac: next_hop.unwrap_or_default().0,
                        src_ip: node_ip,
                        dst_ip: t.remote,
                    };
                    (
                        TunnelTemplate::Ipip(IpipTemplate::new(&peer)),
                        vtep::ipip::IPIP_MTU_OVERHEAD,
                        config.gateway_mac,
                    )
                }
            };
            self.tunnel_out.push(TunnelOut {
                template: next_hop.map(|_| template),
                mtu: uplink.mtu - overhead as u16,
                inner_dst_mac,
            });
        }
        Ok(())
    }

    /// What the datapath needs to send into tunnel `id`.
    #[inline]
    pub fn tunnel_out(&self, id: TunnelId) -> Option<&TunnelOut> {
        self.tunnel_out.get(id.index())
    }

    /// The uplink port, if there is one.
    #[inline]
    pub fn uplink(&self) -> Option<PortId> {
        self.uplink
    }

    fn add_port(&mut self, config: &SwitchConfig, p: PortInfo) -> Result<(), TableError> {
        let slot = p.id.index();
        if slot >= MAX_PORTS {
            return Err(TableError::SlotOutOfRange {
                name: p.name,
                id: p.id.0,
                max: MAX_PORTS,
            });
        }
        if !(576..=9000).contains(&p.mtu) {
            return Err(TableError::BadMtu(p.name, p.mtu));
        }
        if p.mac.is_multicast() || p.mac == config.gateway_mac {
            return Err(TableError::BadMac(p.name, p.mac));
        }
        if let Some(other) = self.ports.iter().flatten().find(|o| o.name == p.name) {
            return Err(TableError::DuplicateName(other.name.clone()));
        }
        if self.ports.len() <= slot {
            self.ports.resize(slot + 1, None);
        }
        if let Some(other) = &self.ports[slot] {
            return Err(TableError::DuplicateSlot(
                other.name.clone(),
                p.name,
                p.id.0,
            ));
        }
        if let Some(other) = self.fdb.get(&p.mac).and_then(|id| self.port(*id)) {
            return Err(TableError::DuplicateMac(other.name.clone(), p.name, p.mac));
        }
        match p.kind {
            PortKind::Pod => {
                let ip =
                    p.ip.filter(|ip| config.pod_cidr.contains(ip) && *ip != config.gateway_ip)
                        .ok_or_else(|| TableError::BadPodIp {
                            name: p.name.clone(),
                            ip: p.ip,
                            cidr: config.pod_cidr,
                        })?;
                if let Some(other) = self.routes.pod(ip).and_then(|id| self.port(id)) {
                    return Err(TableError::DuplicateIp(other.name.clone(), p.name, ip));
                }
                self.routes.pods.insert(ip, p.id);
                self.fdb.insert(p.mac, p.id);
            }
            PortKind::Host => {
                if let Some(h) = self.host_port.and_then(|id| self.port(id)) {
                    return Err(TableError::SecondHostPort(h.name.clone(), p.name));
                }
                self.host_port = Some(p.id);
            }
            PortKind::Uplink => {
                if let Some(u) = self.uplink.and_then(|id| self.port(id)) {
                    return Err(TableError::SecondUplink(u.name.clone(), p.name));
                }
                self.uplink = Some(p.id);
            }
        }
        self.ports[slot] = Some(p);
        Ok(())
    }

    /// The port in slot `id`.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortInfo> {
        self.ports.get(id.index()).and_then(Option::as_ref)
    }

    /// Every port, by slot.
    pub fn ports(&self) -> impl Iterator<Item = &PortInfo> {
        self.ports.iter().flatten()
    }

    /// The port with this name.
    pub fn port_by_name(&self, name: &str) -> Option<&PortInfo> {
        self.ports().find(|p| p.name == name)
    }

    /// The static FDB entry for `mac` (a pod port's MAC).
    #[inline]
    pub fn fdb_static(&self, mac: MacAddr) -> Option<PortId> {
        self.fdb.get(&mac).copied()
    }

    /// Static FDB entries, for display.
    pub fn fdb_static_entries(&self) -> impl Iterator<Item = (MacAddr, PortId)> + '_ {
        self.fdb.iter().map(|(m, p)| (*m, *p))
    }

    /// The host port, if there is one.
    #[inline]
    pub fn host_port(&self) -> Option<PortId> {
        self.host_port
    }
}

/// The control side's handle: publishes new snapshots.
#[derive(Debug, Clone)]
pub struct TableHandle {
    current: Arc<ArcSwap<Tables>>,
}

impl Default for TableHandle {
    fn default() -> Self {
        Self::new(Tables::default())
    }
}

impl TableHandle {
    /// A handle whose first snapshot is `tables`.
    pub fn new(tables: Tables) -> Self {
        TableHandle {
            current: Arc::new(ArcSwap::from_pointee(tables)),
        }
    }

    /// Makes `tables` the snapshot every worker sees from its next burst on.
    pub fn publish(&self, tables: Tables) {
        self.current.store(Arc::new(tables));
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Tables> {
        self.current.load_full()
    }

    /// A reader for one worker.
    pub fn reader(&self) -> TableReader {
        TableReader {
            cache: Cache::new(Arc::clone(&self.current)),
        }
    }
}

/// A worker's view of the current snapshot (arc-swap's cache: one pointer compare per load).
pub struct TableReader {
    cache: Cache<Arc<ArcSwap<Tables>>, Arc<Tables>>,
}

impl TableReader {
    /// The current snapshot; call once per burst.
    #[inline]
    pub fn load(&mut self) -> &Arc<Tables> {
        self.cache.load()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config() -> SwitchConfig {
        SwitchConfig {
            gateway_ip: "10.244.1.1".parse().unwrap(),
            gateway_mac: "0a:58:0a:f4:01:01".parse().unwrap(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            node_ip: None,
            vtep_mac: None,
            vxlan_udp_checksum: true,
        }
    }

    pub(crate) fn pod(id: u16, last: u8) -> PortInfo {
        PortInfo {
            id: PortId(id),
            name: format!("pod{id}"),
            kind: PortKind::Pod,
            mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, last]),
            ip: Some(Ipv4Addr::new(10, 244, 1, last)),
            mtu: 1500,
        }
    }

    pub(crate) fn host(id: u16) -> PortInfo {
        PortInfo {
            id: PortId(id),
            name: "host".into(),
            kind: PortKind::Host,
            mac: "0a:58:0a:f4:00:fe".parse().unwrap(),
            ip: None,
            mtu: 1500,
        }
    }

    #[test]
    fn routes_pods_gateway_cidr_and_default() {
        let t = Tables::build(config(), vec![pod(0, 2), pod(1, 3), host(2)]).unwrap();
        let r = &t.routes;
        assert_eq!(r.lookup("10.244.1.1".parse().unwrap()), NextHop::Gateway);
        assert_eq!(
            r.lookup("10.244.1.3".parse().unwrap()),
            NextHop::Pod(PortId(1))
        );
        assert_eq!(
            r.lookup("10.244.1.9".parse().unwrap()),
            NextHop::Unreachable
        );
        assert_eq!(
            r.lookup("8.8.8.8".parse().unwrap()),
            NextHop::Host(PortId(2))
        );
        assert_eq!(t.fdb_static(pod(0, 2).mac), Some(PortId(0)));
        assert_eq!(t.host_port(), Some(PortId(2)));
        assert_eq!(r.entries().len(), 5);
    }

    #[test]
    fn refuses_conflicts() {
        let dup_ip = PortInfo {
            id: PortId(1),
            name: "b".into(),
            mac: "0a:58:0a:f4:01:09".parse().unwrap(),
            ..pod(0, 2)
        };
        assert!(matches!(
            Tables::build(config(), vec![pod(0, 2), dup_ip]),
            Err(TableError::DuplicateIp(..))
        ));
        let outside = PortInfo {
            ip: Some("10.9.9.9".parse().unwrap()),
            ..pod(0, 2)
        };
        assert!(matches!(
            Tables::build(config(), vec![outside]),
            Err(TableError::BadPodIp { .. })
        ));
        let mut h2 = host(1);
        h2.name = "host2".into();
        h2.mac = "0a:58:0a:f4:00:fd".parse().unwrap();
        assert!(matches!(
            Tables::build(config(), vec![host(0), h2]),
            Err(TableError::SecondHostPort(..))
        ));
        let same_slot = PortInfo {
            name: "other".into(),
            ..pod(0, 3)
        };
        assert!(matches!(
            Tables::build(config(), vec![pod(0, 2), same_slot]),
            Err(TableError::DuplicateSlot(..))
        ));
        assert!(matches!(
            Tables::build(config(), vec![pod(0, 2), pod(1, 2)]),
            Err(TableError::DuplicateMac(..))
        ));
    }

    #[test]
    fn readers_see_published_snapshots() {
        let h = TableHandle::default();
        let mut r = h.reader();
        assert!(r.load().config.is_none());
        h.publish(Tables::build(config(), vec![pod(0, 2)]).unwrap());
        assert!(r.load().port(PortId(0)).is_some());
    }
}
