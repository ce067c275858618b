//! The switch manager: turns control requests into state, plumbing and table snapshots.
//!
//! Contract: [`Switch`] owns the persisted [`State`] (pods, IPAM) and is the only writer of
//! the table snapshot. `port add` is idempotent per (container id, interface): the same pair
//! again returns the existing attachment. A new pod gets an address (requested or allocated),
//! a slot and a host interface name, then [`PodPlumbing`] creates and attaches it, then the
//! state is saved, then the tables are published; a failure at any step undoes the earlier ones
//! and stores nothing. `port del` of an unknown pod succeeds. Requests are serialized by one
//! lock on the control path; workers never take it.

mod policy;

use crate::config::{mac_for_ip, Config};
use crate::control::Handler;
use crate::state::{PodRecord, State, StateStore};
use ctl::proto::{self, ErrorCode, Reply, Request, Response};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vswitch::mac::MacAddr;
use vswitch::stats::{PortStats, WorkerStats};
use vswitch::tables::{
    NextHop, PortId, PortInfo, PortKind, SwitchConfig, TableHandle, Tables, TunnelEntry, MAX_PORTS,
};

/// The first slot pods get (0: host port, 1: uplink).
pub const FIRST_POD_SLOT: u16 = 2;
/// Slot of the host port.
pub const HOST_SLOT: PortId = PortId(0);
/// Slot of the uplink.
pub const UPLINK_SLOT: PortId = PortId(1);

/// Creates, re-attaches and removes pods' interfaces and their switch ports.
pub trait PodPlumbing: Send {
    /// Creates the pod's veth as `pod` describes and attaches the host end as port `pod.slot`;
    /// returns the host end's MAC. On error nothing is left behind.
    fn attach(&mut self, pod: &PodRecord, gateway: std::net::Ipv4Addr) -> Result<MacAddr, String>;
    /// Attaches an existing pod veth again (after a restart); returns the host end's MAC.
    fn reattach(&mut self, pod: &PodRecord) -> Result<MacAddr, String>;
    /// Detaches the port and deletes the veth (both idempotent).
    fn detach(&mut self, pod: &PodRecord) -> Result<(), String>;
    /// Frames the kernel dropped before the switch saw them, for port `slot` (AF_XDP ring
    /// full, fill ring empty, ...), by counter name; only the non-zero ones.
    fn kernel_drops(&self, _slot: u16) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The workers' learned FDB entries.
    fn learned_fdb(&self) -> Result<Vec<crate::worker::LearnedEntry>, String> {
        Ok(Vec::new())
    }
    /// Starts a packet capture on a port.
    fn capture(&self, _tap: crate::worker::Tap) -> Result<(), String> {
        Err("this switch cannot capture".into())
    }
    /// The node's own IPv4 addresses (its traffic to pods is never judged by policy).
    fn node_addresses(&self) -> Vec<std::net::Ipv4Addr> {
        Vec::new()
    }
}

struct Inner {
    state: State,
    host_macs: BTreeMap<u16, MacAddr>,
    plumbing: Box<dyn PodPlumbing>,
    fixed_ports: Vec<PortInfo>,
    /// Resolved underlay next hops by tunnel name.
    next_hops: BTreeMap<String, MacAddr>,
    /// The node's own addresses, as last read.
    node_addresses: Vec<std::net::Ipv4Addr>,
}

/// Tunnels from the config, then those added at run time.
fn all_tunnels<'a>(
    config: &'a Config,
    state: &'a State,
) -> impl Iterator<Item = &'a proto::TunnelSpec> {
    config.tunnels.iter().chain(&state.tunnels)
}

/// The engine's form of a tunnel spec (defaults: flannel's VNI 1 and port 8472).
pub fn to_tunnel(spec: &proto::TunnelSpec) -> Result<vtep::table::Tunnel, String> {
    let mut t = match spec.kind {
        proto::TunnelKind::Vxlan => {
            let mac: MacAddr = spec
                .vtep_mac
                .as_deref()
                .ok_or("a vxlan tunnel needs vtep_mac")?
                .parse()
                .map_err(|e: vswitch::mac::ParseMacError| e.to_string())?;
            vtep::table::Tunnel::vxlan(&spec.name, spec.remote, spec.subnet, mac.0)
        }
        proto::TunnelKind::Ipip => vtep::table::Tunnel::ipip(&spec.name, spec.remote, spec.subnet),
    };
    if let Some(v) = spec.vni {
        t.vni = v;
    }
    if let Some(p) = spec.port {
        t.port = p;
    }
    Ok(t)
}

/// A spec with its defaults filled in, as `tunnel list` shows it.
fn with_defaults(spec: &proto::TunnelSpec) -> proto::TunnelSpec {
    let mut s = spec.clone();
    if s.kind == proto::TunnelKind::Vxlan {
        s.vni.get_or_insert(vtep::vxlan::FLANNEL_VNI);
        s.port.get_or_insert(vtep::vxlan::FLANNEL_UDP_PORT);
    }
    s
}

/// A random locally administered unicast MAC (our VTEP MAC, generated once).
fn random_mac() -> MacAddr {
    let mut b = [0u8; 6];
    let got = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if got.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b.copy_from_slice(&t.as_nanos().to_le_bytes()[..6]);
    }
    b[0] = (b[0] & 0xfc) | 0x02;
    MacAddr(b)
}

/// The node's switch: configuration, state, plumbing, tables and workers' counters.
pub struct Switch {
    config: Config,
    store: StateStore,
    tables: TableHandle,
    workers: Vec<(Arc<WorkerStats>, Option<usize>)>,
    inner: Mutex<Inner>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::error(code, message)
}

impl Switch {
    /// A switch over `state` (already loaded) whose non-pod ports are `fixed_ports`.
    /// Re-attaches every pod in the state; a pod whose veth is gone stays recorded (so a later
    /// `port del` frees its address) but unattached, with a warning.
    pub fn new(
        config: Config,
        store: StateStore,
        state: State,
        plumbing: Box<dyn PodPlumbing>,
        fixed_ports: Vec<PortInfo>,
        tables: TableHandle,
        workers: Vec<(Arc<WorkerStats>, Option<usize>)>,
    ) -> Switch {
        let mut state = state;
        if state.vtep_mac.is_none() {
            state.vtep_mac = Some(random_mac());
            if let Err(e) = store.save(&state) {
                tracing::error!("cannot persist the new VTEP MAC: {e}");
            }
        }
        let mut inner = Inner {
            state,
            host_macs: BTreeMap::new(),
            plumbing,
            fixed_ports,
            next_hops: BTreeMap::new(),
            node_addresses: Vec::new(),
        };
        inner.node_addresses = inner.plumbing.node_addresses();
        for pod in inner.state.pods.clone() {
            match inner.plumbing.reattach(&pod) {
                Ok(mac) => {
                    inner.host_macs.insert(pod.slot, mac);
                    tracing::info!(id = %pod.id, ip = %pod.ip, port = pod.host_ifname, "re-attached pod");
                }
                Err(e) => {
                    tracing::warn!(id = %pod.id, "pod not re-attached, kept in state until `port del`: {e}");
                }
            }
        }
        let switch = Switch {
            config,
            store,
            tables,
            workers,
            inner: Mutex::new(inner),
        };
        {
            let inner = switch.inner.lock().expect("switch lock");
            if let Err(e) = switch.publish(&inner) {
                tracing::error!("cannot publish tables: {e}");
            }
        }
        switch
    }

    fn switch_config(&self, state: &State) -> SwitchConfig {
        SwitchConfig {
            gateway_ip: self.config.gateway_ip(),
            gateway_mac: self.config.gateway_mac(),
            pod_cidr: self.config.node.pod_cidr,
            cluster_cidr: self.config.node.cluster_cidr,
            node_ip: Some(self.config.node.node_ip),
            vtep_mac: state.vtep_mac,
            vxlan_udp_checksum: self.config.node.vxlan_udp_checksum,
        }
    }

    /// Builds and publishes the snapshot for the attached pods and fixed ports.
    fn publish(&self, inner: &Inner) -> Result<(), String> {
        let mut ports = inner.fixed_ports.clone();
        for pod in inner
            .state
            .pods
            .iter()
            .filter(|p| inner.host_macs.contains_key(&p.slot))
        {
            ports.push(PortInfo {
                id: PortId(pod.slot),
                name: pod.host_ifname.clone(),
                kind: PortKind::Pod,
                mac: pod.mac,
                ip: Some(pod.ip.addr()),
                mtu: pod.mtu,
            });
        }
        let mut tables = self.build_tables(&inner.state, &inner.next_hops, ports)?;
        tables.node_addresses = inner.node_addresses.clone();
        self.tables.publish(tables);
        Ok(())
    }

    fn build_tables(
        &self,
        state: &State,
        next_hops: &BTreeMap<String, MacAddr>,
        ports: Vec<PortInfo>,
    ) -> Result<Tables, String> {
        let tunnels = all_tunnels(&self.config, state)
            .map(|spec| {
                Ok(TunnelEntry {
                    tunnel: to_tunnel(spec)?,
                    next_hop_mac: next_hops.get(&spec.name).copied(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let policy = self.policy_set(state, &ports);
        let mut tables = Tables::build_with_tunnels(self.switch_config(state), ports, tunnels)
            .map_err(|e| e.to_string())?;
        tables.policy = policy;
        Ok(tables)
    }

    /// Looks up the underlay next hop of every tunnel in the kernel's tables, asks the kernel
    /// to resolve the missing ones, and publishes new tables when one changed. Called
    /// periodically by the daemon.
    pub fn resolve_next_hops(&self, lookup: &dyn Fn(std::net::Ipv4Addr) -> Option<MacAddr>) {
        let mut inner = self.inner.lock().expect("switch lock");
        let wanted: Vec<(String, std::net::Ipv4Addr)> = all_tunnels(&self.config, &inner.state)
            .map(|t| (t.name.clone(), t.remote))
            .collect();
        let mut next = BTreeMap::new();
        for (name, remote) in wanted {
            if let Some(mac) = lookup(remote) {
                next.insert(name, mac);
            }
        }
        let addresses = inner.plumbing.node_addresses();
        if next != inner.next_hops || addresses != inner.node_addresses {
            tracing::info!(
                "tunnel next hops: {:?}; node addresses {:?}",
                next,
                addresses
            );
            inner.next_hops = next;
            inner.node_addresses = addresses;
            if let Err(e) = self.publish(&inner) {
                tracing::error!("publishing tables with new next hops: {e}");
            }
        }
    }

    fn tunnel_infos(&self, inner: &Inner) -> Vec<proto::TunnelInfo> {
        all_tunnels(&self.config, &inner.state)
            .map(|t| proto::TunnelInfo {
                spec: with_defaults(t),
                next_hop_mac: inner.next_hops.get(&t.name).map(|m| m.to_string()),
            })
            .collect()
    }

    fn tunnel_add(&self, spec: proto::TunnelSpec) -> Response {
        let n = &self.config.node;
        if let Err(why) = crate::config::check_tunnel(
            &spec,
            n.encapsulation,
            n.pod_cidr,
            n.cluster_cidr,
            n.node_ip,
        ) {
            return error(
                ErrorCode::BadRequest,
                format!("tunnel {:?}: {why}", spec.name),
            );
        }
        if n.uplink.is_none() {
            return error(
                ErrorCode::BadRequest,
                "tunnels need an uplink: set node.uplink in the configuration",
            );
        }
        let mut inner = self.inner.lock().expect("switch lock");
        if self.config.tunnels.iter().any(|t| t.name == spec.name) {
            return error(
                ErrorCode::Conflict,
                format!(
                    "tunnel {:?} is defined in the configuration file; change it there",
                    spec.name
                ),
            );
        }
        let mut next = inner.state.clone();
        next.tunnels.retain(|t| t.name != spec.name);
        next.tunnels.push(spec.clone());
        if let Err(e) = self.build_tables(&next, &inner.next_hops, inner.fixed_ports.clone()) {
            return error(ErrorCode::Conflict, format!("tunnel {:?}: {e}", spec.name));
        }
        if let Err(e) = self.store.save(&next) {
            return error(ErrorCode::Internal, e.to_string());
        }
        inner.state = next;
        if let Err(e) = self.publish(&inner) {
            tracing::error!("publishing tables after adding tunnel {}: {e}", spec.name);
        }
        tracing::info!(name = %spec.name, remote = %spec.remote, subnet = %spec.subnet, "tunnel added");
        let info = self
            .tunnel_infos(&inner)
            .into_iter()
            .filter(|t| t.spec.name == spec.name)
            .collect();
        ok(Reply::Tunnels(info))
    }

    fn tunnel_del(&self, name: &str) -> Response {
        let mut inner = self.inner.lock().expect("switch lock");
        if self.config.tunnels.iter().any(|t| t.name == name) {
            return error(
                ErrorCode::Conflict,
                format!("tunnel {name:?} is defined in the configuration file; remove it there"),
            );
        }
        if !inner.state.tunnels.iter().any(|t| t.name == name) {
            return ok(Reply::Removed(false));
        }
        let mut next = inner.state.clone();
        next.tunnels.retain(|t| t.name != name);
        if let Err(e) = self.store.save(&next) {
            return error(ErrorCode::Internal, e.to_string());
        }
        inner.state = next;
        inner.next_hops.remove(name);
        if let Err(e) = self.publish(&inner) {
            tracing::error!("publishing tables after removing tunnel {name}: {e}");
        }
        tracing::info!(name, "tunnel removed");
        ok(Reply::Removed(true))
    }

    fn port_info(&self, pod: &PodRecord, host_mac: Option<MacAddr>) -> proto::PortInfo {
        proto::PortInfo {
            id: pod.id.clone(),
            ifname: pod.ifname.clone(),
            netns: pod.netns.clone(),
            host_ifname: pod.host_ifname.clone(),
            host_mac: host_mac.map(|m| m.to_string()).unwrap_or_default(),
            port: pod.slot,
            mac: pod.mac.to_string(),
            ip: pod.ip,
            gateway: self.config.gateway_ip(),
            mtu: pod.mtu,
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
        }
    }

    fn port_add(&self, req: proto::PortAdd) -> Response {
        if let Err(why) = validate_names(&req.id, &req.ifname) {
            return error(ErrorCode::BadRequest, why);
        }
        let netns = crate::netlink::netns_path(&req.netns);
        if !netns.exists() {
            return error(
                ErrorCode::NotFound,
                format!("network namespace {} does not exist", netns.display()),
            );
        }
        let namespace = req.namespace.clone().unwrap_or_else(|| "default".into());
        if let Err(why) =
            policy::check_namespace(&namespace).and_then(|()| policy::check_labels(&req.labels))
        {
            return error(ErrorCode::BadRequest, why);
        }
        let mac = match req.mac.as_deref().map(str::parse::<MacAddr>).transpose() {
            Ok(m) => m,
            Err(e) => return error(ErrorCode::BadRequest, e.to_string()),
        };
        if mac.is_some_and(|m| m.is_multicast()) {
            return error(ErrorCode::BadRequest, "--mac must be a unicast address");
        }
        let mut inner = self.inner.lock().expect("switch lock");
        if let Some(pod) = inner.state.pod(&req.id, &req.ifname) {
            let host_mac = inner.host_macs.get(&pod.slot).copied();
            return ok(Reply::Port(self.port_info(pod, host_mac)));
        }
        let cidr = self.config.node.pod_cidr;
        let mut next = inner.state.clone();
        let ip = match next.allocate_ip(cidr, self.config.gateway_ip(), req.ip.map(|n| n.addr())) {
            Ok(ip) => ip,
            Err(e) => {
                let code = match e {
                    crate::state::IpamError::Exhausted(..) => ErrorCode::Exhausted,
                    crate::state::IpamError::InUse(..) => ErrorCode::Conflict,
                    crate::state::IpamError::Unusable(..) => ErrorCode::BadRequest,
                };
                return error(code, e.to_string());
            }
        };
        if let Some(want) = req.ip.filter(|n| n.prefix_len() != cidr.prefix_len()) {
            return error(
                ErrorCode::BadRequest,
                format!(
                    "--ip {want} must have the pod CIDR's prefix /{}",
                    cidr.prefix_len()
                ),
            );
        }
        let mac = mac.unwrap_or_else(|| mac_for_ip(ip));
        if let Some(other) = next.pods.iter().find(|p| p.mac == mac) {
            return error(
                ErrorCode::Conflict,
                format!("MAC {mac} is already used by pod {}", other.id),
            );
        }
        let Some(slot) = next.free_slot(FIRST_POD_SLOT, MAX_PORTS as u16) else {
            return error(
                ErrorCode::Exhausted,
                format!("all {MAX_PORTS} switch ports are in use"),
            );
        };
        let record = PodRecord {
            id: req.id.clone(),
            ifname: req.ifname.clone(),
            netns: netns.display().to_string(),
            host_ifname: host_ifname(&req.id, &req.ifname),
            slot,
            mac,
            ip: Ipv4Net::new(ip, cidr.prefix_len()).expect("prefix from a valid CIDR"),
            mtu: self.config.pod_mtu(),
            namespace,
            labels: req.labels.clone(),
        };
        let host_mac = match inner.plumbing.attach(&record, self.config.gateway_ip()) {
            Ok(m) => m,
            Err(e) => {
                return error(
                    ErrorCode::Internal,
                    format!("attaching pod {}: {e}", req.id),
                )
            }
        };
        next.pods.push(record.clone());
        if let Err(e) = self.store.save(&next) {
            let _ = inner.plumbing.detach(&record);
            return error(ErrorCode::Internal, e.to_string());
        }
        inner.state = next;
        inner.host_macs.insert(slot, host_mac);
        if let Err(e) = self.publish(&inner) {
            tracing::error!("publishing tables after adding {}: {e}", record.id);
        }
        tracing::info!(id = %record.id, ip = %record.ip, port = record.host_ifname, "pod attached");
        ok(Reply::Port(self.port_info(&record, Some(host_mac))))
    }

    fn port_del(&self, id: &str, ifname: &str) -> Response {
        let mut inner = self.inner.lock().expect("switch lock");
        let Some(pod) = inner.state.pod(id, ifname).cloned() else {
            return ok(Reply::Removed(false));
        };
        inner.host_macs.remove(&pod.slot);
        if let Err(e) = self.publish(&inner) {
            tracing::error!("publishing tables while removing {id}: {e}");
        }
        if let Err(e) = inner.plumbing.detach(&pod) {
            tracing::warn!(id, "removing the pod's interface failed (continuing): {e}");
        }
        let mut next = inner.state.clone();
        next.pods.retain(|p| !(p.id == id && p.ifname == ifname));
        if let Err(e) = self.store.save(&next) {
            return error(ErrorCode::Internal, e.to_string());
        }
        inner.state = next;
        tracing::info!(id, ip = %pod.ip, "pod detached");
        ok(Reply::Removed(true))
    }

    fn port_list(&self) -> Response {
        let inner = self.inner.lock().expect("switch lock");
        let ports = inner
            .state
            .pods
            .iter()
            .map(|p| self.port_info(p, inner.host_macs.get(&p.slot).copied()))
            .collect();
        ok(Reply::Ports(ports))
    }

    /// The counters `vswitchctl stats` shows.
    pub fn stats_snapshot(&self) -> proto::Stats {
        match self.stats() {
            Response::Ok {
                result: Reply::Stats(s),
            } => s,
            _ => proto::Stats::default(),
        }
    }

    fn stats(&self) -> Response {
        let inner = self.inner.lock().expect("switch lock");
        let tables = self.tables.load();
        let ports = tables
            .ports()
            .map(|p| {
                let mut total = PortStats::default();
                for (w, _) in &self.workers {
                    total.merge(&w.snapshot(p.id));
                }
                let kernel = PortStats {
                    drops: inner.plumbing.kernel_drops(p.id.0),
                    ..PortStats::default()
                };
                total.merge(&kernel);
                proto::PortCounters {
                    name: p.name.clone(),
                    port: p.id.0,
                    rx_packets: total.rx_packets,
                    rx_bytes: total.rx_bytes,
                    tx_packets: total.tx_packets,
                    tx_bytes: total.tx_bytes,
                    drops: total
                        .drops
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                    events: total
                        .events
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                }
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, (w, cpu))| proto::WorkerCounters {
                worker: i,
                cpu: *cpu,
                busy_polls: w.busy_polls.get(),
                idle_polls: w.idle_polls.get(),
                sleeps: w.sleeps.get(),
                sleep_ns: w.sleep_ns.get(),
                frames_in_use: w.frames_in_use.get(),
                frames_total: w.frames_total.get(),
                conntrack_entries: w.conntrack_entries.get(),
            })
            .collect();
        let policies = self.policy_counters();
        ok(Reply::Stats(proto::Stats {
            ports,
            workers,
            policies,
        }))
    }

    fn node(&self) -> Response {
        ok(Reply::Node(proto::NodeInfo {
            name: self.config.node.name.clone(),
            node_ip: self.config.node.node_ip,
            pod_cidr: self.config.node.pod_cidr,
            cluster_cidr: self.config.node.cluster_cidr,
            gateway: self.config.gateway_ip(),
            gateway_mac: self.config.gateway_mac().to_string(),
            pod_mtu: self.config.pod_mtu(),
            vtep_mac: self
                .inner
                .lock()
                .expect("switch lock")
                .state
                .vtep_mac
                .unwrap_or_default()
                .to_string(),
            vni: vtep::vxlan::FLANNEL_VNI,
            vxlan_port: vtep::vxlan::FLANNEL_UDP_PORT,
        }))
    }

    /// `port_check` (CNI CHECK): the recorded attachment, verified against the kernel: the host
    /// end exists with the MAC the switch knows and is attached; the pod interface exists, is
    /// up, has its MAC, its address and a default route via the gateway. `not_found` for an
    /// unknown attachment, `mismatch` naming the first difference otherwise.
    fn port_check(&self, id: &str, ifname: &str) -> Response {
        let (pod, host_mac) = {
            let inner = self.inner.lock().expect("switch lock");
            let Some(pod) = inner.state.pod(id, ifname).cloned() else {
                return error(
                    ErrorCode::NotFound,
                    format!("{id}/{ifname} is not attached"),
                );
            };
            let host_mac = inner.host_macs.get(&pod.slot).copied();
            (pod, host_mac)
        };
        let Some(host_mac) = host_mac else {
            return error(
                ErrorCode::Mismatch,
                format!(
                    "{id}/{ifname}: host interface {} is not attached to the switch (it was \
                     missing when vswitchd started); delete the pod's attachment and add it again",
                    pod.host_ifname
                ),
            );
        };
        match crate::netlink::link_info(&pod.host_ifname) {
            Ok(Some((_, mac))) if mac == host_mac.0 => {}
            Ok(Some((_, mac))) => {
                return error(
                    ErrorCode::Mismatch,
                    format!(
                        "{id}/{ifname}: host interface {} has MAC {}, the port has {host_mac}",
                        pod.host_ifname,
                        MacAddr(mac)
                    ),
                )
            }
            Ok(None) => {
                return error(
                    ErrorCode::Mismatch,
                    format!(
                        "{id}/{ifname}: host interface {} does not exist",
                        pod.host_ifname
                    ),
                )
            }
            Err(e) => return error(ErrorCode::Internal, e.to_string()),
        }
        let checked = crate::netlink::check_pod_link(
            std::path::Path::new(&pod.netns),
            &pod.ifname,
            pod.mac.0,
            pod.ip,
            self.config.gateway_ip(),
        );
        match checked {
            Ok(()) => ok(Reply::Port(self.port_info(&pod, Some(host_mac)))),
            Err(e) => {
                let code = match e {
                    crate::netlink::NetlinkError::Mismatch { .. }
                    | crate::netlink::NetlinkError::Netns { .. } => ErrorCode::Mismatch,
                    _ => ErrorCode::Internal,
                };
                error(code, format!("{id}/{ifname}: {e}"))
            }
        }
    }

    /// `gc` (CNI GC): detaches every pod whose (id, ifname) is not in `valid`, continuing past
    /// failures; answers with the attachments removed, or an error naming every failure.
    fn gc(&self, valid: &[proto::Attachment]) -> Response {
        let keep: std::collections::BTreeSet<(&str, &str)> = valid
            .iter()
            .map(|a| (a.id.as_str(), a.ifname.as_str()))
            .collect();
        let stale: Vec<proto::PortInfo> = {
            let inner = self.inner.lock().expect("switch lock");
            inner
                .state
                .pods
                .iter()
                .filter(|p| !keep.contains(&(p.id.as_str(), p.ifname.as_str())))
                .map(|p| self.port_info(p, inner.host_macs.get(&p.slot).copied()))
                .collect()
        };
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for p in stale {
            match self.port_del(&p.id, &p.ifname) {
                Response::Ok {
                    result: Reply::Removed(true),
                } => {
                    tracing::info!(id = %p.id, ifname = %p.ifname, "gc: removed a stale attachment");
                    removed.push(p);
                }
                Response::Ok { .. } => {}
                Response::Error { message, .. } => {
                    failed.push(format!("{}/{}: {message}", p.id, p.ifname))
                }
            }
        }
        if failed.is_empty() {
            ok(Reply::Ports(removed))
        } else {
            error(
                ErrorCode::Internal,
                format!(
                    "gc removed {} stale attachment(s) but failed for {}",
                    removed.len(),
                    failed.join("; ")
                ),
            )
        }
    }
}

fn ok(result: Reply) -> Response {
    Response::Ok { result }
}

impl Handler for Switch {
    fn handle(&self, request: Request) -> Response {
        match request {
            Request::PortAdd(req) => self.port_add(req),
            Request::PortDel { id, ifname } => self.port_del(&id, &ifname),
            Request::PortList {} => self.port_list(),
            Request::Stats {} => self.stats(),
            Request::Node {} => self.node(),
            Request::TunnelAdd(spec) => self.tunnel_add(spec),
            Request::TunnelDel { name } => self.tunnel_del(&name),
            Request::TunnelList {} => {
                let inner = self.inner.lock().expect("switch lock");
                ok(Reply::Tunnels(self.tunnel_infos(&inner)))
            }
            Request::PortCheck { id, ifname } => self.port_check(&id, &ifname),
            Request::Gc { valid } => self.gc(&valid),
            Request::FdbShow {} => self.fdb_show(),
            Request::RouteShow {} => self.route_show(),
            Request::Capture {
                port,
                count,
                timeout_ms,
            } => self.capture(&port, count, timeout_ms),
            Request::Trace { port, frame } => self.trace(&port, &frame),
            Request::PolicyApply { yaml } => self.policy_apply(&yaml),
            Request::PolicyList {} => self.policy_list(),
            Request::PolicyDelete { namespace, name } => self.policy_delete(&namespace, &name),
            Request::EndpointAdd(spec) => self.endpoint_add(spec),
            Request::EndpointDel { ip } => self.endpoint_del(ip),
            Request::EndpointList {} => self.endpoint_list(),
            Request::NamespaceSet(spec) => self.namespace_set(spec),
            Request::NamespaceList {} => self.namespace_list(),
        }
    }
}

impl Switch {
    fn fdb_show(&self) -> Response {
        let tables = self.tables.load();
        let name = |id: PortId| {
            tables
                .port(id)
                .map_or_else(|| format!("port {}", id.0), |p| p.name.clone())
        };
        let mut entries: Vec<proto::FdbEntry> = tables
            .fdb_static_entries()
            .map(|(mac, port)| proto::FdbEntry {
                mac: mac.to_string(),
                port: port.0,
                port_name: name(port),
                kind: "static".into(),
                age_secs: None,
            })
            .collect();
        let learned = self
            .inner
            .lock()
            .expect("switch lock")
            .plumbing
            .learned_fdb();
        match learned {
            Ok(learned) => entries.extend(learned.into_iter().map(|e| proto::FdbEntry {
                mac: e.mac.to_string(),
                port: e.port.0,
                port_name: name(e.port),
                kind: "learned".into(),
                age_secs: Some(e.age_ns / 1_000_000_000),
            })),
            Err(e) => return error(ErrorCode::Internal, e),
        }
        entries.sort_by(|a, b| (a.port, &a.mac).cmp(&(b.port, &b.mac)));
        ok(Reply::Fdb(entries))
    }

    fn route_show(&self) -> Response {
        let tables = self.tables.load();
        let name = |id: PortId| {
            tables
                .port(id)
                .map_or_else(|| format!("port {}", id.0), |p| p.name.clone())
        };
        let routes = tables
            .routes
            .entries()
            .into_iter()
            .map(|(prefix, hop)| proto::RouteEntry {
                prefix,
                next_hop: match hop {
                    NextHop::Gateway => "the switch (gateway address)".into(),
                    NextHop::Pod(id) => format!("pod port {} (slot {})", name(id), id.0),
                    NextHop::Host(id) => format!("host port {}", name(id)),
                    NextHop::Tunnel(id) => tables.routes.tunnels.get(id).map_or_else(
                        || "tunnel".into(),
                        |t| format!("tunnel {} ({} to {})", t.name, t.kind, t.remote),
                    ),
                    NextHop::Unreachable => "unreachable (no such pod)".into(),
                },
            })
            .collect();
        ok(Reply::Routes(routes))
    }

    fn capture(&self, port: &str, count: usize, timeout_ms: u64) -> Response {
        if !(1..=10_000).contains(&count) {
            return error(ErrorCode::BadRequest, "--count must be 1..=10000");
        }
        let tables = self.tables.load();
        let Some(info) = tables.port_by_name(port) else {
            return error(
                ErrorCode::NotFound,
                format!("no port {port:?} (see `vswitchctl stats` for port names)"),
            );
        };
        let (sink, frames) = crossbeam_channel::bounded(count);
        let tap = crate::worker::Tap {
            port: info.id,
            count,
            sink,
        };
        if let Err(e) = self
            .inner
            .lock()
            .expect("switch lock")
            .plumbing
            .capture(tap)
        {
            return error(ErrorCode::Internal, e);
        }
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.min(600_000));
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            match frames.recv_deadline(deadline) {
                Ok(f) => out.push(f.iter().map(|b| format!("{b:02x}")).collect()),
                Err(_) => break,
            }
        }
        ok(Reply::Frames(out))
    }

    fn trace(&self, port: &str, frame: &str) -> Response {
        let tables = self.tables.load();
        let Some(info) = tables.port_by_name(port) else {
            return error(
                ErrorCode::NotFound,
                format!("no port {port:?} (see `vswitchctl stats` for port names)"),
            );
        };
        let frame = match crate::trace::frame_from(frame, info, self.config.gateway_mac()) {
            Ok(f) => f,
            Err(e) => return error(ErrorCode::BadRequest, e),
        };
        match crate::trace::trace(&tables, info, &frame) {
            Ok(t) => ok(Reply::Trace(t)),
            Err(e) => error(ErrorCode::BadRequest, e),
        }
    }
}

/// Checks a container id and interface name before they reach the kernel or the state file.
pub fn validate_names(id: &str, ifname: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!(
            "container id {id:?} must be 1-256 printable characters without '/'"
        ));
    }
    let ok_if = !ifname.is_empty()
        && ifname.len() <= 15
        && ifname != "."
        && ifname != ".."
        && ifname
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if !ok_if {
        return Err(format!(
            "interface name {ifname:?} must be 1-15 visible characters without '/' or ':'"
        ));
    }
    Ok(())
}

/// The host-side interface name of a pod: `vsw` and 11 hex digits of a hash of its id and
/// interface (stable, so a restarted daemon finds it; FNV-1a 64).
pub fn host_ifname(id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("vsw{:011x}", h >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Plumbing that records calls and can be told to fail.
    #[derive(Clone, Default)]
    struct Fake {
        calls: Arc<Mutex<Vec<String>>>,
        fail: Arc<AtomicBool>,
    }

    impl PodPlumbing for Fake {
        fn attach(&mut self, pod: &PodRecord, _: std::net::Ipv4Addr) -> Result<MacAddr, String> {
            if self.fail.load(Ordering::SeqCst) {
                return Err("veth creation failed".into());
            }
            self.calls
                .lock()
                .unwrap()
                .push(format!("attach {} {}", pod.id, pod.ip));
            Ok(MacAddr([2, 0, 0, 0, 0, pod.slot as u8]))
        }
        fn reattach(&mut self, pod: &PodRecord) -> Result<MacAddr, String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("reattach {}", pod.id));
            Ok(MacAddr([2, 0, 0, 0, 0, pod.slot as u8]))
        }
        fn detach(&mut self, pod: &PodRecord) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("detach {}", pod.id));
            Ok(())
        }
    }

    struct Fixture {
        dir: std::path::PathBuf,
        fake: Fake,
        tables: TableHandle,
    }

    impl Fixture {
        fn new(tag: &str) -> Fixture {
            let dir =
                std::env::temp_dir().join(format!("vswitchd-switch-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Fixture {
                dir,
                fake: Fake::default(),
                tables: TableHandle::default(),
            }
        }

        fn switch(&self) -> Switch {
            let text = format!(
                "[node]\nname = \"n1\"\npod_cidr = \"10.244.1.0/24\"\ncluster_cidr = \"10.244.0.0/16\"\nnode_ip = \"192.168.77.1\"\n[control]\nstate_dir = \"{}\"\n",
                self.dir.display()
            );
            let config = Config::parse(&text, "test").unwrap();
            let store = StateStore::new(&self.dir);
            let state = store.load().unwrap();
            Switch::new(
                config,
                store,
                state,
                Box::new(self.fake.clone()),
                vec![],
                self.tables.clone(),
                vec![],
            )
        }

        fn add(&self, s: &Switch, id: &str, ip: Option<&str>) -> Response {
            s.handle(Request::PortAdd(proto::PortAdd {
                netns: self.dir.display().to_string(),
                id: id.into(),
                ifname: "eth0".into(),
                ip: ip.map(|i| i.parse().unwrap()),
                mac: None,
                namespace: None,
                labels: Default::default(),
            }))
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn port(r: Response) -> proto::PortInfo {
        match r {
            Response::Ok {
                result: Reply::Port(p),
            } => p,
            other => panic!("expected a port, got {other:?}"),
        }
    }

    #[test]
    fn add_is_idempotent_persisted_and_published() {
        let f = Fixture::new("add");
        let s = f.switch();
        let a = port(f.add(&s, "c1", None));
        assert_eq!(a.ip.to_string(), "10.244.1.2/24");
        assert_eq!(a.mac, "0a:58:0a:f4:01:02");
        assert_eq!(a.port, FIRST_POD_SLOT);
        assert_eq!(port(f.add(&s, "c1", None)), a, "same id again: same answer");
        assert_eq!(f.fake.calls.lock().unwrap().len(), 1, "plumbed once");
        let b = port(f.add(&s, "c2", Some("10.244.1.50/24")));
        assert_eq!(b.ip.to_string(), "10.244.1.50/24");
        assert!(f
            .tables
            .load()
            .routes
            .pod("10.244.1.50".parse().unwrap())
            .is_some());
        // A restarted switch re-attaches both and keeps their addresses.
        drop(s);
        let s = f.switch();
        let Response::Ok {
            result: Reply::Ports(list),
        } = s.handle(Request::PortList {})
        else {
            panic!()
        };
        assert_eq!(list.len(), 2);
        assert!(f
            .fake
            .calls
            .lock()
            .unwrap()
            .contains(&"reattach c2".to_string()));
        assert!(f
            .tables
            .load()
            .routes
            .pod("10.244.1.2".parse().unwrap())
            .is_some());
    }

    #[test]
    fn del_frees_and_unknown_del_succeeds() {
        let f = Fixture::new("del");
        let s = f.switch();
        port(f.add(&s, "c1", None));
        assert_eq!(
            s.handle(Request::PortDel {
                id: "c1".into(),
                ifname: "eth0".into()
            }),
            ok(Reply::Removed(true))
        );
        assert_eq!(
            s.handle(Request::PortDel {
                id: "c1".into(),
                ifname: "eth0".into()
            }),
            ok(Reply::Removed(false))
        );
        assert!(f
            .tables
            .load()
            .routes
            .pod("10.244.1.2".parse().unwrap())
            .is_none());
        // Round robin: the freed address is not handed out next.
        assert_eq!(port(f.add(&s, "c2", None)).ip.to_string(), "10.244.1.3/24");
    }

    #[test]
    fn failures_store_nothing_and_bad_requests_are_refused() {
        let f = Fixture::new("fail");
        let s = f.switch();
        f.fake.fail.store(true, Ordering::SeqCst);
        let r = f.add(&s, "c1", None);
        assert!(
            matches!(r, Response::Error { code: ErrorCode::Internal, ref message } if message.contains("veth creation failed")),
            "{r:?}"
        );
        f.fake.fail.store(false, Ordering::SeqCst);
        assert_eq!(
            port(f.add(&s, "c1", None)).ip.to_string(),
            "10.244.1.2/24",
            "nothing was consumed"
        );
        let conflict = f.add(&s, "c9", Some("10.244.1.2/24"));
        assert!(
            matches!(
                conflict,
                Response::Error {
                    code: ErrorCode::Conflict,
                    ..
                }
            ),
            "{conflict:?}"
        );
        let outside = f.add(&s, "c9", Some("10.9.0.2/24"));
        assert!(
            matches!(
                outside,
                Response::Error {
                    code: ErrorCode::BadRequest,
                    ..
                }
            ),
            "{outside:?}"
        );
        let bad_name = s.handle(Request::PortDel {
            id: "x".into(),
            ifname: "eth0".into(),
        });
        assert_eq!(bad_name, ok(Reply::Removed(false)));
        assert!(validate_names("c/1", "eth0").is_err());
        assert!(validate_names("c1", "a-very-long-interface").is_err());
        let missing_ns = s.handle(Request::PortAdd(proto::PortAdd {
            netns: "/nonexistent/ns".into(),
            id: "c3".into(),
            ifname: "eth0".into(),
            ip: None,
            mac: None,
            namespace: None,
            labels: Default::default(),
        }));
        assert!(matches!(
            missing_ns,
            Response::Error {
                code: ErrorCode::NotFound,
                ..
            }
        ));
    }

    #[test]
    fn gc_keeps_the_valid_attachments_and_check_knows_only_attached_pods() {
        let f = Fixture::new("gc");
        let s = f.switch();
        for id in ["c1", "c2", "c3"] {
            port(f.add(&s, id, None));
        }
        let r = s.handle(Request::PortCheck {
            id: "nope".into(),
            ifname: "eth0".into(),
        });
        assert!(
            matches!(
                r,
                Response::Error {
                    code: ErrorCode::NotFound,
                    ..
                }
            ),
            "{r:?}"
        );
        let keep = |ids: &[&str]| Request::Gc {
            valid: ids
                .iter()
                .map(|id| proto::Attachment {
                    id: (*id).into(),
                    ifname: "eth0".into(),
                })
                .chain(std::iter::once(proto::Attachment {
                    id: "c1".into(),
                    ifname: "eth1".into(),
                }))
                .collect(),
        };
        let Response::Ok {
            result: Reply::Ports(removed),
        } = s.handle(keep(&["c2", "unknown"]))
        else {
            panic!("gc failed")
        };
        let gone: Vec<&str> = removed.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(gone, ["c1", "c3"]);
        let Response::Ok {
            result: Reply::Ports(left),
        } = s.handle(Request::PortList {})
        else {
            panic!()
        };
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "c2");
        assert!(f
            .fake
            .calls
            .lock()
            .unwrap()
            .contains(&"detach c3".to_string()));
        assert_eq!(
            s.handle(keep(&["c2"])),
            ok(Reply::Ports(vec![])),
            "nothing stale: nothing removed"
        );
    }

    #[test]
    fn host_ifnames_are_stable_and_short() {
        let a = host_ifname("abc", "eth0");
        assert_eq!(a, host_ifname("abc", "eth0"));
        assert_ne!(a, host_ifname("abc", "eth1"));
        assert!(a.len() <= 15 && a.starts_with("vsw"), "{a}");
    }
}
