//! The forwarding pipeline: a batch received on one port in, transmissions out.
//!
//! Contract: [`Pipeline::process`] runs the stages over a batch, in order, each a function over
//! the whole batch that only touches packets still [`Verdict::Pending`] (or, from `limits` on,
//! forwarded): [`decap`] -> [`parse`] -> [`check`] (destination class, source check) ->
//! [`lookup`] (ARP answers, FDB learning and lookup, routes) -> [`acl`] (NetworkPolicy,
//! connection tracking) -> [`limits`] (TTL, MTU, ICMP errors) ->
//! [`rewrite`] (MACs, TTL, replies built in place) -> output. Every frame ends in exactly one of:
//! queued for transmit on a port ([`Pipeline::outputs`]), or returned to the free pool with a
//! counted [`DropReason`] or [`Event`]. The caller transmits the outputs and counts TX.
//!
//! Stages take time (`now`, nanoseconds) as a parameter, take no lock, make no syscall and do not
//! allocate: the batch context and output arrays are allocated once, at construction.

pub mod acl;
pub mod check;
pub mod decap;
pub mod icmp;
pub mod limits;
pub mod lookup;
pub mod parse;
pub mod rewrite;

use crate::fdb::LearnedFdb;
use crate::frame::{Desc, FrameArena};
use crate::mac::MacAddr;
use crate::policy::conntrack::{Conntrack, ConntrackConfig};
use crate::policy::flow_cache::FlowCache;
use crate::port::{Port, PortMap};
use crate::reason::{DropReason, Event};
use crate::stats::{PortCounters, WorkerStats};
use crate::tables::{PortId, Tables};
use acl::{AclNote, AclState};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vtep::table::TunnelId;

/// Most frames in one batch.
pub const MAX_BATCH: usize = 64;

/// Conntrack slots checked for expiry before each batch (the whole table turns over every
/// `max_entries / 16` batches; expired entries are invisible meanwhile).
const CONNTRACK_SWEEP_PER_BATCH: usize = 16;

/// What a parsed ARP packet says (Ethernet/IPv4 ARP only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpMeta {
    /// 1 request, 2 reply.
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// What a parsed IPv4 header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Meta {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Header length in bytes (IHL * 4).
    pub header_len: u8,
    /// Total length field.
    pub total_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol number.
    pub protocol: u8,
    /// Don't-fragment flag.
    pub dont_fragment: bool,
    /// Fragment offset in 8-byte units.
    pub fragment_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
    /// ICMP type, for an ICMP packet that is not a non-first fragment and has a type byte.
    pub icmp_type: Option<u8>,
}

/// The network layer of a parsed frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L3 {
    /// Not parsed (yet).
    #[default]
    None,
    /// ARP, Ethernet/IPv4.
    Arp(ArpMeta),
    /// IPv4.
    Ipv4(Ipv4Meta),
}

/// What a frame's headers say; filled by `parse`, read by later stages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// The network layer.
    pub l3: L3,
}

/// ICMP errors the switch generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// Type 11 code 0.
    TimeExceeded,
    /// Type 3 code 4 with the next-hop MTU.
    FragmentationNeeded {
        /// The egress MTU.
        mtu: u16,
    },
}

/// How a forwarded frame is changed before it leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Switched at L2: unchanged.
    Switch,
    /// Routed: destination MAC set, source MAC = gateway, TTL - 1.
    Route {
        /// The next hop's MAC.
        dst_mac: MacAddr,
    },
    /// Answered ARP request: reply with `mac` for the requested address.
    ArpReply {
        /// The MAC announced for the target IP.
        mac: MacAddr,
    },
    /// Answered ICMP echo request to the gateway.
    EchoReply,
    /// Routed into a tunnel: inner rewrite, then the tunnel's outer header prepended.
    Encap {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// The frame is replaced by an ICMP error to its sender; `reason` counts the original.
    IcmpError {
        /// Which error.
        error: IcmpError,
        /// The drop reason counted for the original frame.
        reason: DropReason,
    },
}

/// Where a frame stands in the pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet.
    #[default]
    Pending,
    /// Dropped and counted.
    Drop(DropReason),
    /// Consumed on purpose with nothing to send (counted as the event).
    Consume(Event),
    /// To be transmitted on a port after `Action`.
    Forward(PortId, Action),
}

/// One frame of the batch and what the stages learned about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCtx {
    /// The frame.
    pub desc: Desc,
    /// Parsed headers.
    pub meta: Meta,
    /// The decision so far.
    pub verdict: Verdict,
    /// The tunnel the frame arrived through (set by `decap`).
    pub tunnel: Option<TunnelId>,
    /// What policy and connection tracking decided (set by `acl`).
    pub acl: AclNote,
}

/// Everything a stage may read besides the batch.
#[derive(Clone, Copy)]
pub struct StageEnv<'a> {
    /// The current table snapshot.
    pub tables: &'a Tables,
    /// The port the batch came in on.
    pub in_port: PortId,
    /// The time, in nanoseconds.
    pub now: u64,
    /// The ingress port's counters (for events a stage observes, like FDB learning).
    pub counters: &'a PortCounters,
}

/// Settings of one pipeline instance.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Most learned FDB entries.
    pub fdb_capacity: usize,
    /// Seconds a learned FDB entry lives without being refreshed.
    pub fdb_aging_secs: u64,
    /// Connection tracking size and timeouts.
    pub conntrack: ConntrackConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            fdb_capacity: 4096,
            fdb_aging_secs: 300,
            conntrack: ConntrackConfig::default(),
        }
    }
}

/// A frame ready to transmit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// Egress port.
    pub port: PortId,
    /// The frame.
    pub desc: Desc,
}

/// One worker's pipeline: its batch context, learned FDB, counters and output list.
pub struct Pipeline {
    batch: Vec<PacketCtx>,
    outputs: Vec<Output>,
    tx_scratch: Vec<Desc>,
    fdb: LearnedFdb,
    acl: AclState,
    /// Next outer IPv4 identification of an encapsulated packet.
    next_ip_id: u16,
    stats: Arc<WorkerStats>,
}

impl Pipeline {
    /// A pipeline that counts into `stats`.
    pub fn new(config: PipelineConfig, stats: Arc<WorkerStats>) -> Self {
        Pipeline {
            batch: Vec::with_capacity(MAX_BATCH),
            outputs: Vec::with_capacity(MAX_BATCH),
            tx_scratch: Vec::with_capacity(MAX_BATCH),
            next_ip_id: 0,
            fdb: LearnedFdb::new(config.fdb_capacity, config.fdb_aging_secs),
            acl: AclState {
                conntrack: Conntrack::new(config.conntrack),
                cache: FlowCache::default(),
            },
            stats,
        }
    }

    /// The counters this pipeline writes.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// The learned FDB.
    pub fn fdb(&self) -> &LearnedFdb {
        &self.fdb
    }

    /// Connection tracking and the policy flow cache.
    pub fn acl(&self) -> &AclState {
        &self.acl
    }

    /// Runs `rx` (at most [`MAX_BATCH`] frames received on `in_port`) through every stage.
    ///
    /// Afterwards [`Pipeline::outputs`] lists the frames to transmit, grouped by port in
    /// arrival order; every other frame has been returned to `arena`'s pool and counted.
    pub fn process(
        &mut self,
        tables: &Tables,
        arena: &mut FrameArena,
        in_port: PortId,
        rx: &[Desc],
        now: u64,
    ) {
        assert!(rx.len() <= MAX_BATCH, "batch of {} > {MAX_BATCH}", rx.len());
        let counters = self.stats.port(in_port);
        let env = StageEnv {
            tables,
            in_port,
            now,
            counters,
        };
        self.batch.clear();
        self.outputs.clear();
        for d in rx {
            counters.rx_packets.add(1);
            counters.rx_bytes.add(d.len as u64);
            self.batch.push(PacketCtx {
                desc: *d,
                ..PacketCtx::default()
            });
        }
        if !self.acl.conntrack.is_empty() {
            self.acl.conntrack.sweep(now, CONNTRACK_SWEEP_PER_BATCH);
        }
        run_stages(
            env,
            arena,
            &mut self.fdb,
            &mut self.acl,
            &mut self.next_ip_id,
            &mut self.batch,
            true,
            &mut |_, _| {},
        );
        let tracked = self.acl.conntrack.len() as u64;
        if tracked != self.stats.conntrack_entries.get() {
            self.stats.conntrack_entries.set(tracked);
        }
        self.output(arena, in_port);
    }

    /// Runs one frame through the stages without counting or transmitting, calling `observe`
    /// after each stage with its name and the packet's state (for `vswitchctl trace`).
    ///
    /// The frame is rewritten in place like a forwarded one; the caller owns it afterwards.
    pub fn trace(
        &mut self,
        tables: &Tables,
        arena: &mut FrameArena,
        in_port: PortId,
        frame: Desc,
        now: u64,
        observe: &mut dyn FnMut(&'static str, &PacketCtx),
    ) -> PacketCtx {
        let scratch = PortCounters::default();
        let env = StageEnv {
            tables,
            in_port,
            now,
            counters: &scratch,
        };
        let mut one = [PacketCtx {
            desc: frame,
            ..PacketCtx::default()
        }];
        let mut ip_id = self.next_ip_id;
        run_stages(
            env,
            arena,
            &mut self.fdb,
            &mut self.acl,
            &mut ip_id,
            &mut one,
            false,
            observe,
        );
        one[0]
    }

    fn output(&mut self, arena: &mut FrameArena, in_port: PortId) {
        let counters = self.stats.port(in_port);
        for ctx in &self.batch {
            match ctx.verdict {
                Verdict::Forward(port, action) => {
                    match action {
                        Action::ArpReply { .. } => counters.event(Event::ArpReplies),
                        Action::EchoReply => counters.event(Event::IcmpEchoReplies),
                        Action::IcmpError { reason, .. } => {
                            counters.drop(reason);
                            counters.event(Event::IcmpErrorsSent);
                        }
                        Action::Encap { .. } => counters.event(Event::TunnelEncapsulated),
                        Action::Switch | Action::Route { .. } => {}
                    }
                    self.outputs.push(Output {
                        port,
                        desc: ctx.desc,
                    });
                }
                Verdict::Drop(reason) => {
                    counters.drop(reason);
                    arena.release(ctx.desc);
                }
                Verdict::Consume(event) => {
                    counters.event(event);
                    arena.release(ctx.desc);
                }
                Verdict::Pending => unreachable!("a stage left a packet undecided"),
            }
        }
        group_by_port(&mut self.outputs);
    }

    /// Frames to transmit after [`Pipeline::process`], grouped by egress port.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Transmits the outputs of the last [`Pipeline::process`] on `ports`, one burst per
    /// egress port, counting TX; frames a port does not accept are released and counted
    /// (`tx_ring_full`, or `port_gone` when this worker has no such port).
    pub fn transmit<P: PortMap + ?Sized>(&mut self, arena: &mut FrameArena, ports: &mut P) {
        let mut start = 0;
        while start < self.outputs.len() {
            let port_id = self.outputs[start].port;
            let end = start
                + self.outputs[start..]
                    .iter()
                    .take_while(|o| o.port == port_id)
                    .count();
            self.tx_scratch.clear();
            self.tx_scratch
                .extend(self.outputs[start..end].iter().map(|o| o.desc));
            let counters = self.stats.port(port_id);
            let (sent, reason) = match ports.port_mut(port_id) {
                Some(port) => (
                    port.tx_burst(arena, &self.tx_scratch),
                    DropReason::TxRingFull,
                ),
                None => (0, DropReason::PortGone),
            };
            for d in &self.tx_scratch[..sent] {
                counters.tx_packets.add(1);
                counters.tx_bytes.add(d.len as u64);
            }
            for d in &self.tx_scratch[sent..] {
                counters.drop(reason);
                arena.release(*d);
            }
            start = end;
        }
        self.outputs.clear();
    }

    /// Receives up to `out.len()` frames from `port` (counting frames too long for a buffer
    /// against `port_id`); returns how many.
    pub fn receive(
        &self,
        arena: &mut FrameArena,
        port_id: PortId,
        port: &mut dyn Port,
        out: &mut [Desc],
    ) -> usize {
        let n = port.rx_burst(arena, out);
        let oversize = port.take_rx_oversize();
        if oversize > 0 {
            let counters = self.stats.port(port_id);
            counters.drop_n(DropReason::FrameTooLong, oversize);
            counters.rx_packets.add(oversize);
        }
        n
    }
}

/// Stable insertion sort by port: at most [`MAX_BATCH`] outputs, no allocation.
fn group_by_port(outputs: &mut [Output]) {
    for i in 1..outputs.len() {
        let mut j = i;
        while j > 0 && outputs[j - 1].port > outputs[j].port {
            outputs.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_stages(
    env: StageEnv<'_>,
    arena: &mut FrameArena,
    fdb: &mut LearnedFdb,
    acl: &mut AclState,
    ip_id: &mut u16,
    batch: &mut [PacketCtx],
    commit: bool,
    observe: &mut dyn FnMut(&'static str, &PacketCtx),
) {
    let mut step = |name: &'static str, batch: &[PacketCtx]| {
        for p in batch {
            observe(name, p);
        }
    };
    decap::run(env, arena, batch);
    step("decap", batch);
    parse::run(arena, batch);
    step("parse", batch);
    check::run(env, batch);
    step("check", batch);
    lookup::run(env, fdb, batch);
    step("lookup", batch);
    acl::run(env, arena, acl, batch, commit);
    step("acl", batch);
    limits::run(env, batch);
    step("limits", batch);
    rewrite::run(env, arena, ip_id, batch);
    step("rewrite", batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameLayout;
    use crate::port::memory::MemoryPort;
    use crate::testing::*;

    /// Runs `frames` received on `in_port` through a fresh pipeline over `tables()`.
    fn run(in_port: PortId, frames: &[Vec<u8>]) -> (Vec<Vec<Vec<u8>>>, Arc<WorkerStats>) {
        let tables = tables();
        let stats = Arc::new(WorkerStats::default());
        let mut p = Pipeline::new(PipelineConfig::default(), Arc::clone(&stats));
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 128).unwrap();
        let mut ports: Vec<Option<MemoryPort>> = (0..3).map(|_| Some(MemoryPort::new())).collect();
        for f in frames {
            ports[in_port.index()].as_mut().unwrap().inject(f.clone());
        }
        let mut rx = [Desc::default(); MAX_BATCH];
        let port = ports[in_port.index()].as_mut().unwrap();
        let n = p.receive(&mut arena, in_port, port, &mut rx);
        p.process(&tables, &mut arena, in_port, &rx[..n], 0);
        p.transmit(&mut arena, ports.as_mut_slice());
        assert_eq!(arena.pool.in_use(), 0, "every frame back in the pool");
        let out = ports
            .iter_mut()
            .map(|p| p.as_mut().unwrap().take_tx())
            .collect();
        (out, stats)
    }

    #[test]
    fn routes_between_pods_rewriting_macs_ttl_and_checksum() {
        let f = ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[1; 8]);
        let (out, stats) = run(POD1, std::slice::from_ref(&f));
        let want = {
            let mut w = ipv4_frame(GW_MAC, POD2_MAC, POD1_IP, POD2_IP, 63, 17, &[1; 8]);
            w[0..6].copy_from_slice(&POD2_MAC.0);
            w[6..12].copy_from_slice(&GW_MAC.0);
            w
        };
        assert_eq!(out[POD2.index()], vec![want]);
        assert_eq!(stats.port(POD2).tx_packets.get(), 1);
        assert_eq!(stats.port(POD1).rx_packets.get(), 1);
    }

    #[test]
    fn switches_known_macs_unchanged_and_drops_unknown_ones() {
        let known = ipv4_frame(POD1_MAC, POD2_MAC, POD1_IP, POD2_IP, 1, 6, &[]);
        let unknown = ipv4_frame(
            POD1_MAC,
            MacAddr([2, 0, 0, 0, 0, 9]),
            POD1_IP,
            POD2_IP,
            1,
            6,
            &[],
        );
        let (out, stats) = run(POD1, &[known.clone(), unknown]);
        assert_eq!(out[POD2.index()], vec![known]);
        assert_eq!(stats.port(POD1).drops(DropReason::UnknownUnicast), 1);
    }

    #[test]
    fn answers_arp_for_gateway_and_pods_but_not_strangers() {
        let frames = [
            arp_request(POD1_MAC, POD1_IP, GW_IP),
            arp_request(POD1_MAC, POD1_IP, POD2_IP),
            arp_request(POD1_MAC, POD1_IP, "10.244.1.99".parse().unwrap()),
        ];
        let (out, stats) = run(POD1, &frames);
        let replies = &out[POD1.index()];
        assert_eq!(replies.len(), 2);
        assert_eq!(
            &replies[0][6..12],
            &GW_MAC.0,
            "gateway answers with its MAC"
        );
        assert_eq!(&replies[1][22..28], &POD2_MAC.0, "pod2's MAC as ARP sender");
        assert_eq!(replies[1].len(), 42);
        assert_eq!(stats.port(POD1).events(Event::ArpReplies), 2);
        assert_eq!(stats.port(POD1).drops(DropReason::ArpUnknownTarget), 1);
    }

    #[test]
    fn host_asking_for_a_pod_gets_the_gateway_mac() {
        let (out, _) = run(
            HOST,
            &[arp_request(
                HOST_MAC,
                "192.168.0.1".parse().unwrap(),
                POD2_IP,
            )],
        );
        assert_eq!(&out[HOST.index()][0][22..28], &GW_MAC.0);
    }

    #[test]
    fn source_check_stops_spoofing_pods_but_trusts_the_host() {
        let spoof_ip = ipv4_frame(POD1_MAC, GW_MAC, POD2_IP, GW_IP, 64, 17, &[]);
        let spoof_mac = ipv4_frame(POD2_MAC, GW_MAC, POD1_IP, GW_IP, 64, 17, &[]);
        let (_, stats) = run(POD1, &[spoof_ip, spoof_mac]);
        assert_eq!(stats.port(POD1).drops(DropReason::SpoofedSourceIp), 1);
        assert_eq!(stats.port(POD1).drops(DropReason::SpoofedSourceMac), 1);
        let dnat = ipv4_frame(HOST_MAC, GW_MAC, POD2_IP, POD1_IP, 64, 6, &[]);
        let (out, _) = run(HOST, &[dnat]);
        assert_eq!(
            out[POD1.index()].len(),
            1,
            "host may carry other pods' sources"
        );
    }

    #[test]
    fn echo_to_gateway_is_answered_in_place() {
        let req = ipv4_frame(
            POD1_MAC,
            GW_MAC,
            POD1_IP,
            GW_IP,
            64,
            1,
            &echo_request(7, 1, b"hi"),
        );
        let (out, stats) = run(POD1, &[req]);
        let reply = &out[POD1.index()][0];
        assert_eq!(&reply[0..6], &POD1_MAC.0);
        assert_eq!(&reply[26..30], &GW_IP.octets());
        assert_eq!(&reply[30..34], &POD1_IP.octets());
        assert_eq!(reply[34], 0, "echo reply type");
        assert_eq!(vtep::checksum::sum(&reply[14..34]), 0xffff);
        assert_eq!(vtep::checksum::sum(&reply[34..]), 0xffff);
        assert_eq!(stats.port(POD1).events(Event::IcmpEchoReplies), 1);
    }

    #[test]
    fn ttl_and_mtu_limits_produce_icmp_errors() {
        let expiring = ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 1, 17, &[0; 12]);
        let (out, stats) = run(POD1, std::slice::from_ref(&expiring));
        let err = &out[POD1.index()][0];
        assert_eq!((err[34], err[35]), (11, 0));
        assert_eq!(
            &err[42..42 + 28],
            &expiring[14..14 + 28],
            "quotes header + 8 bytes"
        );
        assert_eq!(vtep::checksum::sum(&err[34..]), 0xffff);
        assert_eq!(stats.port(POD1).drops(DropReason::TtlExpired), 1);

        let big = ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[0; 1481]);
        let (out, stats) = run(POD1, &[big]);
        let err = &out[POD1.index()][0];
        assert_eq!((err[34], err[35]), (3, 4));
        assert_eq!(u16::from_be_bytes([err[40], err[41]]), 1500);
        assert_eq!(stats.port(POD1).drops(DropReason::FragmentationNeeded), 1);
    }

    #[test]
    fn outputs_are_grouped_by_port_in_arrival_order() {
        let mut o: Vec<Output> = [3u16, 1, 3, 2, 1]
            .iter()
            .enumerate()
            .map(|(i, p)| Output {
                port: PortId(*p),
                desc: Desc {
                    addr: i as u64,
                    len: 0,
                },
            })
            .collect();
        group_by_port(&mut o);
        let got: Vec<_> = o.iter().map(|o| (o.port.0, o.desc.addr)).collect();
        assert_eq!(got, vec![(1, 1), (1, 4), (2, 3), (3, 0), (3, 2)]);
    }

    #[test]
    fn trace_reports_every_stage() {
        let tables = tables();
        let mut p = Pipeline::new(PipelineConfig::default(), Arc::default());
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 4).unwrap();
        let d = arena
            .alloc_copy(&ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[]))
            .unwrap();
        let mut stages = Vec::new();
        let end = p.trace(&tables, &mut arena, POD1, d, 0, &mut |s, _| stages.push(s));
        assert_eq!(
            stages,
            ["decap", "parse", "check", "lookup", "acl", "limits", "rewrite"]
        );
        assert!(matches!(
            end.verdict,
            Verdict::Forward(POD2, Action::Route { .. })
        ));
    }
}
