//! Micro-benchmarks of the forwarding engine on in-memory data: ns per packet of full 64-frame
//! batches through `Pipeline::receive` -> `process` -> `transmit`, per kind of decision.
//!
//! Every iteration copies the same pre-built frames into the arena (what a port's receive does:
//! the `Replay` port below), runs them through the pipeline and hands the outputs to `Sink`
//! ports that release them at once (a TX ring whose completions come back immediately). The
//! "copy-in only" benchmark does the receive and the release alone, so the summary printed at the
//! end can subtract it and show the pipeline's own cost.
//!
//! Before a case is measured, one batch of it goes through the pipeline and every frame must
//! come out on the expected port (encapsulated frames must also decapsulate again): a benchmark
//! of the drop path by mistake would report fine-looking numbers.
//!
//! The "acl" group measures the NetworkPolicy stage on routed pod1 -> pod2 UDP batches with no
//! policy, one rule and 10,000 rules selecting pod2 (the allowing rule last), for established
//! flows (conntrack hits), new flows every batch (conntrack inserts, flow cache hits) and, to show
//! what the flow cache saves, new destination ports every batch (every packet classified).
//!
//! Run: `cargo bench -p vswitch --bench pipeline` (add `-- --quick` for a run of seconds, or a
//! filter such as `-- vxlan` or `-- acl`). Not a test: nothing here asserts a speed.

use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vswitch::frame::{Desc, FrameArena, FrameLayout};
use vswitch::mac::MacAddr;
use vswitch::pipeline::{Pipeline, PipelineConfig, MAX_BATCH};
use vswitch::policy::flow_cache::CacheStats;
use vswitch::policy::selector::{Expr, Operator, Selector};
use vswitch::policy::{Direction, Endpoint, Inventory, Judgement, Peer, Policy, PolicySet, Rule};
use vswitch::port::memory::MemoryPort;
use vswitch::port::Port;
use vswitch::reason::Event;
use vswitch::stats::WorkerStats;
use vswitch::tables::{PortId, PortInfo, PortKind, SwitchConfig, Tables, TunnelEntry};
use vswitch::testing::*;
use vtep::decap::{decap_ipip, decap_vxlan, VxlanExpect};
use vtep::encap::{encap_ipip, encap_vxlan, IpipPeer, IpipTemplate, VxlanPeer, VxlanTemplate};
use vtep::table::Tunnel;

/// Frames per batch: a full burst.
const BATCH: usize = MAX_BATCH;

// The node's uplink and the two remote nodes (in-memory data only: nothing is sent anywhere).
const UPLINK: PortId = PortId(3);
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const VTEP_MAC: MacAddr = MacAddr([0x0e, 0x00, 0x00, 0x00, 0x00, 0x01]);
/// node2: VXLAN peer.
const NODE2_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const NODE2_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const NODE2_VTEP: [u8; 6] = [0x0e, 0x00, 0x00, 0x00, 0x00, 0x02];
const NODE2_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
/// node3: IPIP peer.
const NODE3_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 3);
const NODE3_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x03];
const NODE3_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 3, 5);

/// The test switch of `vswitch::testing` (pod1, pod2, host) plus an uplink, a VXLAN tunnel to
/// node2 (10.244.2.0/24) and an IPIP tunnel to node3 (10.244.3.0/24), both next hops resolved.
fn tunnel_tables() -> Tables {
    let port = |id: PortId, name: &str, kind, mac, ip| PortInfo {
        id,
        name: name.into(),
        kind,
        mac,
        ip,
        mtu: 1500,
    };
    Tables::build_with_tunnels(
        SwitchConfig {
            gateway_ip: GW_IP,
            gateway_mac: GW_MAC,
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            node_ip: Some(NODE_IP),
            vtep_mac: Some(VTEP_MAC),
            vxlan_udp_checksum: true,
        },
        vec![
            port(POD1, "pod1", PortKind::Pod, POD1_MAC, Some(POD1_IP)),
            port(POD2, "pod2", PortKind::Pod, POD2_MAC, Some(POD2_IP)),
            port(HOST, "host", PortKind::Host, HOST_MAC, None),
            port(UPLINK, "uplink", PortKind::Uplink, UPLINK_MAC, None),
        ],
        vec![
            TunnelEntry {
                tunnel: Tunnel::vxlan(
                    "node2",
                    NODE2_IP,
                    "10.244.2.0/24".parse().unwrap(),
                    NODE2_VTEP,
                ),
                next_hop_mac: Some(MacAddr(NODE2_MAC)),
            },
            TunnelEntry {
                tunnel: Tunnel::ipip("node3", NODE3_IP, "10.244.3.0/24".parse().unwrap()),
                next_hop_mac: Some(MacAddr(NODE3_MAC)),
            },
        ],
    )
    .expect("benchmark tables are valid")
}

/// A UDP header (checksum 0: none, valid over IPv4) and `data` zero bytes.
fn udp(src_port: u16, dst_port: u16, data: usize) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + data);
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&((8 + data) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(8 + data, 0);
    u
}

/// A batch of minimum-size (60-byte) UDP frames, one flow per frame (source ports differ).
fn udp_batch(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<Vec<u8>> {
    (0..BATCH as u16)
        .map(|i| {
            ipv4_frame(
                src_mac,
                dst_mac,
                src,
                dst,
                64,
                17,
                &udp(40000 + i, 5000, 18),
            )
        })
        .collect()
}

/// node2's VXLAN packets to pod1: routed inner frames (node2's VTEP MAC -> ours) encapsulated
/// by node2's template (node2 -> our node IP, flannel's port and VNI, UDP checksum).
fn vxlan_from_node2() -> Vec<Vec<u8>> {
    let template = VxlanTemplate::new(&VxlanPeer::flannel(
        NODE2_MAC,
        UPLINK_MAC.0,
        NODE2_IP,
        NODE_IP,
    ))
    .unwrap();
    let inner = udp_batch(MacAddr(NODE2_VTEP), VTEP_MAC, NODE2_POD, POD1_IP);
    inner
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut buf = vec![0; vtep::VXLAN_ENCAP_LEN];
            buf.extend_from_slice(f);
            let span = encap_vxlan(
                &mut buf,
                vtep::VXLAN_ENCAP_LEN,
                f.len(),
                &template,
                i as u16,
            )
            .unwrap();
            buf[span.range()].to_vec()
        })
        .collect()
}

/// node3's IPIP packets to pod1: routed inner packets encapsulated by node3's template.
fn ipip_from_node3() -> Vec<Vec<u8>> {
    let template = IpipTemplate::new(&IpipPeer {
        outer_src_mac: NODE3_MAC,
        outer_dst_mac: UPLINK_MAC.0,
        src_ip: NODE3_IP,
        dst_ip: NODE_IP,
    });
    let inner = udp_batch(MacAddr(NODE3_MAC), UPLINK_MAC, NODE3_POD, POD1_IP);
    inner
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut buf = vec![0; vtep::IPIP_HEADROOM];
            buf.extend_from_slice(f);
            let span =
                encap_ipip(&mut buf, vtep::IPIP_HEADROOM, f.len(), &template, i as u16).unwrap();
            buf[span.range()].to_vec()
        })
        .collect()
}

/// A port that receives the same pre-built frames on every burst, copying them into free arena
/// frames as a real port's receive fills them. It transmits nothing.
struct Replay {
    frames: Vec<Vec<u8>>,
    /// When set, every received copy gets a fresh big-endian `u16` at this offset (a UDP port:
    /// each frame a new flow; UDP checksums are 0, so nothing else changes).
    vary: Option<Vary>,
}

/// A counter written into each received frame.
struct Vary {
    at: usize,
    next: u16,
}

impl Replay {
    fn new(frames: Vec<Vec<u8>>) -> Replay {
        Replay { frames, vary: None }
    }
}

impl Port for Replay {
    fn rx_burst(&mut self, arena: &mut FrameArena, out: &mut [Desc]) -> usize {
        let mut n = 0;
        for (slot, frame) in out.iter_mut().zip(&self.frames) {
            match arena.alloc_copy(frame) {
                Some(d) => *slot = d,
                None => break,
            }
            if let Some(v) = &mut self.vary {
                arena.data_mut(*slot)[v.at..v.at + 2].copy_from_slice(&v.next.to_be_bytes());
                v.next = v.next.wrapping_add(1);
            }
            n += 1;
        }
        n
    }
    fn tx_burst(&mut self, _: &mut FrameArena, _: &[Desc]) -> usize {
        0
    }
}

/// A port that releases what it is given, like a TX ring whose completions come back at once.
struct Sink;

impl Port for Sink {
    fn rx_burst(&mut self, _: &mut FrameArena, _: &mut [Desc]) -> usize {
        0
    }
    fn tx_burst(&mut self, arena: &mut FrameArena, frames: &[Desc]) -> usize {
        frames.iter().for_each(|d| arena.release(*d));
        frames.len()
    }
}

/// One kind of decision to measure.
struct Case {
    name: &'static str,
    in_port: PortId,
    frames: Vec<Vec<u8>>,
    out_port: PortId,
    /// Checks one output frame (beyond its port).
    check: fn(&[u8]) -> Result<(), String>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "l2_forward",
            in_port: POD1,
            frames: udp_batch(POD1_MAC, POD2_MAC, POD1_IP, POD2_IP),
            out_port: POD2,
            check: |f| expect(f[0..6] == POD2_MAC.0 && f[22] == 64, "switched unchanged"),
        },
        Case {
            name: "routed_forward",
            in_port: POD1,
            frames: udp_batch(POD1_MAC, GW_MAC, POD1_IP, POD2_IP),
            out_port: POD2,
            check: |f| expect(f[0..6] == POD2_MAC.0 && f[22] == 63, "routed: MAC, TTL"),
        },
        Case {
            name: "arp_reply",
            in_port: POD1,
            frames: vec![arp_request(POD1_MAC, POD1_IP, GW_IP); BATCH],
            out_port: POD1,
            check: |f| {
                expect(
                    f[6..12] == GW_MAC.0 && f[21] == 2,
                    "ARP reply from the gateway",
                )
            },
        },
        Case {
            name: "vxlan_encap",
            in_port: POD1,
            frames: udp_batch(POD1_MAC, GW_MAC, POD1_IP, NODE2_POD),
            out_port: UPLINK,
            check: |f| {
                let want = VxlanExpect {
                    port: vtep::FLANNEL_UDP_PORT,
                    vni: vtep::FLANNEL_VNI,
                    vtep_mac: NODE2_VTEP,
                };
                let d = decap_vxlan(f, &want).map_err(|e| format!("decap: {e}"))?;
                expect(
                    d.outer_dst == NODE2_IP && f[0..6] == NODE2_MAC,
                    "VXLAN to node2",
                )
            },
        },
        Case {
            name: "vxlan_decap",
            in_port: UPLINK,
            frames: vxlan_from_node2(),
            out_port: POD1,
            check: |f| {
                expect(
                    f[0..6] == POD1_MAC.0 && f.len() == 60,
                    "inner frame to pod1",
                )
            },
        },
        Case {
            name: "ipip_encap",
            in_port: POD1,
            frames: udp_batch(POD1_MAC, GW_MAC, POD1_IP, NODE3_POD),
            out_port: UPLINK,
            check: |f| {
                let d = decap_ipip(f).map_err(|e| format!("decap: {e}"))?;
                expect(
                    d.outer_dst == NODE3_IP && f[0..6] == NODE3_MAC,
                    "IPIP to node3",
                )
            },
        },
        Case {
            name: "ipip_decap",
            in_port: UPLINK,
            frames: ipip_from_node3(),
            out_port: POD1,
            check: |f| {
                expect(
                    f[0..6] == POD1_MAC.0 && f.len() == 60,
                    "inner packet to pod1",
                )
            },
        },
        // ACL with 1 and 10k rules (issue 5, item 5): see `acl_cases` and the "acl" group.
    ]
}

fn expect(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("not {what}"))
    }
}

/// One pipeline with its arena and ports, as a worker holds them.
struct Rig {
    tables: Tables,
    pipeline: Pipeline,
    arena: FrameArena,
    input: Replay,
    in_port: PortId,
    sinks: Vec<Option<Sink>>,
    rx: [Desc; BATCH],
    now: u64,
    /// Nanoseconds the clock advances per batch.
    tick: u64,
}

impl Rig {
    fn new(in_port: PortId, frames: Vec<Vec<u8>>) -> Rig {
        Rig {
            tables: tunnel_tables(),
            pipeline: Pipeline::new(PipelineConfig::default(), Arc::new(WorkerStats::default())),
            arena: FrameArena::with_heap(FrameLayout::DEFAULT, 2 * BATCH).unwrap(),
            input: Replay::new(frames),
            in_port,
            sinks: (0..4).map(|_| Some(Sink)).collect(),
            rx: [Desc::default(); BATCH],
            now: 0,
            tick: 1_000,
        }
    }

    /// pod1 -> pod2 routed UDP batches under `case`'s policy and flows.
    fn acl(case: &AclCase) -> Rig {
        let mut rig = Rig::new(POD1, udp_batch(POD1_MAC, GW_MAC, POD1_IP, POD2_IP));
        if case.rules > 0 {
            rig.tables.policy = acl_policy(case.rules);
        }
        rig.input.vary = match case.flows {
            Flows::Established => None,
            Flows::New => Some(Vary { at: 34, next: 0 }),
            Flows::Uncached => Some(Vary { at: 36, next: 0 }),
        };
        if case.flows != Flows::Established {
            rig.tick = NEW_FLOW_TICK;
        }
        rig
    }

    /// Receive, process, transmit: one full batch.
    #[inline]
    fn forward(&mut self) {
        let n = self
            .pipeline
            .receive(&mut self.arena, self.in_port, &mut self.input, &mut self.rx);
        self.now += self.tick;
        self.pipeline.process(
            &self.tables,
            &mut self.arena,
            self.in_port,
            &self.rx[..n],
            self.now,
        );
        self.pipeline
            .transmit(&mut self.arena, self.sinks.as_mut_slice());
    }

    /// Receive and release: the copy-in alone.
    #[inline]
    fn copy_in(&mut self) {
        let n = self
            .pipeline
            .receive(&mut self.arena, self.in_port, &mut self.input, &mut self.rx);
        for d in &self.rx[..n] {
            self.arena.release(*black_box(d));
        }
    }

    /// Runs one batch of `case` into in-memory ports and checks where every frame went.
    fn verify(case: &Case) {
        let mut rig = Rig::new(case.in_port, case.frames.clone());
        let n = rig
            .pipeline
            .receive(&mut rig.arena, case.in_port, &mut rig.input, &mut rig.rx);
        assert_eq!(n, BATCH, "{}: a full batch is received", case.name);
        rig.pipeline
            .process(&rig.tables, &mut rig.arena, case.in_port, &rig.rx[..n], 0);
        let mut ports: Vec<Option<MemoryPort>> = (0..4).map(|_| Some(MemoryPort::new())).collect();
        rig.pipeline.transmit(&mut rig.arena, ports.as_mut_slice());
        let stats = rig.pipeline.stats();
        for i in 0..4 {
            let s = stats.snapshot(PortId(i));
            assert_eq!(
                s.total_drops(),
                0,
                "{}: drops on port {i}: {s:?}",
                case.name
            );
        }
        let out = ports[case.out_port.index()].as_mut().unwrap().take_tx();
        assert_eq!(out.len(), BATCH, "{}: every frame leaves", case.name);
        for f in &out {
            if let Err(e) = (case.check)(f) {
                panic!("{}: output {f:02x?}: {e}", case.name);
            }
        }
        assert_eq!(rig.arena.pool.in_use(), 0, "{}: no frame leaked", case.name);
    }

    /// Runs three batches of `case` into in-memory ports: every frame must reach pod2, and the
    /// policy, conntrack and the flow cache must do what the case claims to measure.
    fn verify_acl(case: &AclCase) {
        let name = case.name;
        let mut rig = Rig::acl(case);
        let set = &rig.tables.policy;
        if case.rules > 0 {
            let last = case.rules as u32 - 1;
            let judge = |peer| set.judge(POD2, Direction::Ingress, peer, 17, Some(5000));
            assert_eq!(set.rules.len(), case.rules, "{name}");
            assert_eq!(
                judge(POD1_IP),
                Judgement::Allowed(last),
                "{name}: last rule"
            );
            assert_eq!(
                judge(Ipv4Addr::new(10, 244, 1, 99)),
                Judgement::Denied,
                "{name}"
            );
        }
        let mut ports: Vec<Option<MemoryPort>> = (0..4).map(|_| Some(MemoryPort::new())).collect();
        let batches = 3;
        for b in 0..batches {
            let n = rig
                .pipeline
                .receive(&mut rig.arena, POD1, &mut rig.input, &mut rig.rx);
            assert_eq!(n, BATCH, "{name}: a full batch is received");
            rig.pipeline.process(
                &rig.tables,
                &mut rig.arena,
                POD1,
                &rig.rx[..n],
                b * rig.tick,
            );
            rig.pipeline.transmit(&mut rig.arena, ports.as_mut_slice());
            let out = ports[POD2.index()].as_mut().unwrap().take_tx();
            assert_eq!(
                out.len(),
                BATCH,
                "{name}: batch {b}: every frame reaches pod2"
            );
            for f in &out {
                assert!(
                    f[0..6] == POD2_MAC.0 && f[22] == 63,
                    "{name}: routed to pod2"
                );
            }
        }
        for i in 0..4 {
            let s = rig.pipeline.stats().snapshot(PortId(i));
            assert_eq!(s.total_drops(), 0, "{name}: drops on port {i}: {s:?}");
        }
        // Tracked connections and frames judged (each judged twice: egress at pod1, where
        // nothing is selected, and ingress at pod2), then how many distinct judgements.
        let frames = batches as usize * BATCH;
        let acl = rig.pipeline.acl();
        let (tracked, judged, distinct) = match (case.rules, case.flows) {
            (0, _) => (0, 0, 0),
            (_, Flows::Established) => (BATCH, BATCH, 1),
            (_, Flows::New) => (frames, frames, 1),
            (_, Flows::Uncached) => (frames, frames, frames),
        };
        let cache = CacheStats {
            hits: 2 * (judged - distinct) as u64,
            misses: 2 * distinct as u64,
        };
        assert_eq!(acl.conntrack.len(), tracked, "{name}: connections tracked");
        assert_eq!(acl.cache.stats(), cache, "{name}: flow cache");
        assert_eq!(rig.arena.pool.in_use(), 0, "{name}: no frame leaked");
    }
}

/// Clock step per batch of the new-flow cases: an unreplied UDP flow lives 30 s, so about 250
/// batches' flows (16,000) are live at once, a quarter of the default conntrack table, and a
/// source port comes back (after 1,024 batches) long after its flow expired.
const NEW_FLOW_TICK: u64 = 120_000_000;

/// What repeats from batch to batch in an acl case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flows {
    /// The same 64 flows every batch: after the first, every packet is a conntrack hit.
    Established,
    /// 64 new source ports every batch: every packet misses conntrack (and is inserted) but
    /// hits the flow cache (same port, direction, peer, protocol and destination port).
    New,
    /// 64 new destination ports every batch: conntrack and flow cache miss, the classifier
    /// judges every packet (what the flow cache saves).
    Uncached,
}

/// One acl benchmark.
struct AclCase {
    name: &'static str,
    /// Ingress rules selecting pod2 (0: no policy at all).
    rules: usize,
    flows: Flows,
}

fn acl_cases() -> Vec<AclCase> {
    let case = |name, rules, flows| AclCase { name, rules, flows };
    vec![
        case("acl/no_policy/established", 0, Flows::Established),
        case("acl/no_policy/new_flows", 0, Flows::New),
        case("acl/1_rule/established", 1, Flows::Established),
        case("acl/1_rule/new_flows", 1, Flows::New),
        case("acl/1_rule/uncached", 1, Flows::Uncached),
        case("acl/10k_rules/established", 10_000, Flows::Established),
        case("acl/10k_rules/new_flows", 10_000, Flows::New),
        case("acl/10k_rules/uncached", 10_000, Flows::Uncached),
    ]
}

/// One policy selecting pod2 (app=server) for ingress with `rules` rules: `rules - 1` ipBlocks
/// of one address each (172.16.0.1, 172.16.0.2, ...) that never match, then pod1's /32 (every
/// protocol and port) last, so the classifier walks every rule before allowing pod1.
fn acl_policy(rules: usize) -> PolicySet {
    let labels = |app: &str| [("app".to_string(), app.to_string())].into();
    let inventory = Inventory {
        endpoints: vec![
            Endpoint {
                ip: POD1_IP,
                namespace: "default".into(),
                labels: labels("client"),
                port: Some(POD1),
            },
            Endpoint {
                ip: POD2_IP,
                namespace: "default".into(),
                labels: labels("server"),
                port: Some(POD2),
            },
        ],
        ..Inventory::default()
    };
    let from = |ip: Ipv4Addr| Rule {
        peers: vec![Peer::Block {
            net: ipnet::Ipv4Net::new(ip, 32).unwrap(),
            except: vec![],
        }],
        ports: vec![],
    };
    let mut ingress: Vec<Rule> = (1..rules as u32)
        .map(|i| from(Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i)))
        .collect();
    ingress.push(from(POD1_IP));
    let policy = Policy {
        namespace: "default".into(),
        name: "allow-pod1-last".into(),
        selector: Selector {
            exprs: vec![Expr {
                key: "app".into(),
                op: Operator::In,
                values: vec!["server".into()],
            }],
        },
        ingress: Some(ingress),
        egress: None,
    };
    PolicySet::compile(&[policy], &inventory, None)
}

/// Per benchmark: the samples criterion took (iterations, time), for the summary.
type Samples = Arc<Mutex<Vec<(&'static str, Vec<(u64, Duration)>)>>>;

/// Times `iters` batches of `step`, recording the sample under `name`.
fn timed(
    samples: &Samples,
    name: &'static str,
    rig: &mut Rig,
    step: fn(&mut Rig),
    iters: u64,
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        step(black_box(&mut *rig));
    }
    let elapsed = start.elapsed();
    let mut all = samples.lock().unwrap();
    match all.iter_mut().find(|(n, _)| *n == name) {
        Some((_, v)) => v.push((iters, elapsed)),
        None => all.push((name, vec![(iters, elapsed)])),
    }
    elapsed
}

/// Runs every benchmark; returns a line per acl benchmark run (its state afterwards).
fn bench(c: &mut Criterion, samples: &Samples) -> Vec<String> {
    let mut acl_notes = Vec::new();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(BATCH as u64));
    {
        let mut rig = Rig::new(POD1, udp_batch(POD1_MAC, GW_MAC, POD1_IP, POD2_IP));
        group.bench_function("copy_in_only", |b| {
            b.iter_custom(|iters| timed(samples, "copy_in_only", &mut rig, Rig::copy_in, iters))
        });
    }
    for case in cases() {
        Rig::verify(&case);
        let mut rig = Rig::new(case.in_port, case.frames);
        group.bench_function(case.name, |b| {
            b.iter_custom(|iters| timed(samples, case.name, &mut rig, Rig::forward, iters))
        });
        assert_eq!(rig.arena.pool.in_use(), 0, "{}: no frame leaked", case.name);
    }
    group.finish();

    let mut group = c.benchmark_group("acl");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for case in acl_cases() {
        let id = case.name.trim_start_matches("acl/");
        Rig::verify_acl(&case);
        let mut rig = Rig::acl(&case);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| timed(samples, case.name, &mut rig, Rig::forward, iters))
        });
        assert_eq!(rig.arena.pool.in_use(), 0, "{}: no frame leaked", case.name);
        if rig.now == 0 {
            continue; // filtered out
        }
        let acl = rig.pipeline.acl();
        let counters = rig.pipeline.stats().port(POD1);
        let cache = acl.cache.stats();
        let lookups = (cache.hits + cache.misses).max(1);
        acl_notes.push(format!(
            "{:<28} {:>9} {:>9} {:>12.2}%",
            case.name,
            acl.conntrack.len(),
            counters.events(Event::ConntrackEvicted),
            100.0 * cache.hits as f64 / lookups as f64,
        ));
    }
    group.finish();
    acl_notes
}

/// ns per packet over every timed batch (total time / total packets: like criterion's slope,
/// dominated by the long samples).
fn ns_per_packet(samples: &[(u64, Duration)]) -> f64 {
    let (iters, time) = samples
        .iter()
        .fold((0u64, Duration::ZERO), |(i, t), (si, st)| (i + si, t + *st));
    time.as_nanos() as f64 / (iters.max(1) as f64 * BATCH as f64)
}

/// Median over samples of the time per batch, in ns.
fn median_ns_per_batch(samples: &[(u64, Duration)]) -> f64 {
    let mut v: Vec<f64> = samples
        .iter()
        .map(|(i, t)| t.as_nanos() as f64 / (*i).max(1) as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summary(samples: &Samples, acl_notes: &[String]) {
    let all = samples.lock().unwrap();
    // criterion's test mode (`cargo test --benches`) runs each routine once: nothing to report.
    if all.iter().map(|(_, v)| v.len()).sum::<usize>() <= all.len() {
        return;
    }
    let copy_in = all
        .iter()
        .find(|(n, _)| *n == "copy_in_only")
        .map(|(_, v)| ns_per_packet(v));
    println!();
    println!("ns/packet (every batch criterion timed, {BATCH} frames a batch, one core):");
    println!(
        "{:<28} {:>10} {:>8} {:>16} {:>18}",
        "benchmark", "ns/packet", "Mpps", "median ns/batch", "minus copy-in (ns)"
    );
    for (name, v) in all.iter() {
        let ns = ns_per_packet(v);
        let pipeline = match copy_in {
            Some(c) if *name != "copy_in_only" => format!("{:.1}", ns - c),
            _ => "-".into(),
        };
        println!(
            "{name:<28} {ns:>10.1} {:>8.2} {:>16.0} {pipeline:>18}",
            1_000.0 / ns,
            median_ns_per_batch(v)
        );
    }
    if copy_in.is_none() {
        println!("(copy_in_only was filtered out: run it too to see the pipeline's own cost)");
    }
    if !acl_notes.is_empty() {
        println!();
        println!("acl state after each run (conntrack entries stored, expired ones not yet swept included; evictions counted on pod1; flow cache hit rate):");
        println!(
            "{:<28} {:>9} {:>9} {:>13}",
            "benchmark", "conntrack", "evicted", "cache hits"
        );
        acl_notes.iter().for_each(|l| println!("{l}"));
    }
}

fn main() {
    let samples = Samples::default();
    let mut c = Criterion::default().configure_from_args();
    let acl_notes = bench(&mut c, &samples);
    c.final_summary();
    summary(&samples, &acl_notes);
}
