//! Property: whatever frames arrive (valid ones with random byte flips and truncations, or pure
//! noise), the pipeline never panics, returns every buffer, and accounts for every frame:
//! received = transmitted + dropped + consumed - ICMP errors (an ICMP error counts the original
//! as a drop and leaves as a frame). It holds without policy, and with NetworkPolicy active
//! (default-deny ingress, an allow rule, an egress policy; a small conntrack table whose
//! entries expire, overflow and are judged again after a policy change) over connections in
//! both directions.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::frame::{Desc, FrameArena, FrameLayout};
use vswitch::pipeline::{Pipeline, PipelineConfig, MAX_BATCH};
use vswitch::policy::conntrack::{tcp_flags, ConntrackConfig};
use vswitch::port::memory::MemoryPort;
use vswitch::reason::{DropReason, Event};
use vswitch::stats::WorkerStats;
use vswitch::tables::{PortId, Tables};
use vswitch::testing::*;

fn templates() -> Vec<Vec<u8>> {
    vec![
        ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[7; 30]),
        ipv4_frame(POD1_MAC, POD2_MAC, POD1_IP, POD2_IP, 2, 6, &[1; 40]),
        ipv4_frame(
            POD1_MAC,
            GW_MAC,
            POD1_IP,
            GW_IP,
            64,
            1,
            &echo_request(3, 4, b"abc"),
        ),
        ipv4_frame(
            HOST_MAC,
            GW_MAC,
            "1.2.3.4".parse().unwrap(),
            POD1_IP,
            1,
            1,
            &[11, 0, 0, 0],
        ),
        arp_request(POD1_MAC, POD1_IP, GW_IP),
        arp_request(HOST_MAC, "192.168.1.1".parse().unwrap(), POD2_IP),
    ]
}

fn mutated() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let n = templates().len();
    (
        0..3u16,
        0..n,
        proptest::collection::vec((0..120usize, any::<u8>()), 0..4),
        proptest::option::of(0..80usize),
    )
        .prop_map(|(port, t, flips, cut)| {
            let mut f = templates()[t].clone();
            for (at, v) in flips {
                if let Some(b) = f.get_mut(at) {
                    *b = v;
                }
            }
            if let Some(c) = cut {
                f.truncate(c);
            }
            (port, f)
        })
}

fn frames() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    let noise = (0..3u16, proptest::collection::vec(any::<u8>(), 0..200));
    proptest::collection::vec(prop_oneof![4 => mutated(), 1 => noise], 1..100)
}

/// Runs `input` (input port, frame), one frame a batch, `step` nanoseconds apart, through a
/// pipeline switching between `tables` (one after another, every `switch_every` frames), and
/// checks the accounting.
fn accounts_for_every_frame(
    tables: &[Tables],
    switch_every: usize,
    config: PipelineConfig,
    step: u64,
    input: &[(u16, Vec<u8>)],
) -> Result<(), TestCaseError> {
    let stats = Arc::new(WorkerStats::default());
    let mut pipeline = Pipeline::new(config, Arc::clone(&stats));
    let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 256).unwrap();
    let mut ports: Vec<Option<MemoryPort>> = (0..3).map(|_| Some(MemoryPort::new())).collect();
    let mut rx = [Desc::default(); MAX_BATCH];
    for (i, (port, frame)) in input.iter().enumerate() {
        let id = PortId(*port);
        ports[id.index()].as_mut().unwrap().inject(frame.clone());
        let port = ports[id.index()].as_mut().unwrap();
        let n = pipeline.receive(&mut arena, id, port, &mut rx);
        let tables = &tables[i / switch_every % tables.len()];
        pipeline.process(tables, &mut arena, id, &rx[..n], i as u64 * step);
        pipeline.transmit(&mut arena, ports.as_mut_slice());
    }
    prop_assert_eq!(arena.pool.in_use(), 0);
    let (mut rx_n, mut tx_n, mut dropped, mut consumed, mut errors) = (0, 0, 0, 0, 0);
    for id in 0..3 {
        let s = stats.port(PortId(id));
        let snap = stats.snapshot(PortId(id));
        rx_n += snap.rx_packets;
        tx_n += snap.tx_packets;
        dropped += snap.total_drops();
        consumed += s.events(Event::GratuitousArp);
        errors += s.events(Event::IcmpErrorsSent);
    }
    prop_assert_eq!(rx_n, input.len() as u64);
    prop_assert_eq!(rx_n, tx_n + dropped + consumed - errors);
    let sent: usize = ports
        .iter_mut()
        .map(|p| p.as_mut().unwrap().take_tx().len())
        .sum();
    prop_assert_eq!(sent as u64, tx_n);
    Ok(())
}

/// Default-deny ingress for every pod; pod2 (app=server) accepts TCP 80 and UDP 53 from pod1
/// (app=client), which may send to the cluster only.
const POLICIES: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    ports:
    - {protocol: TCP, port: 80}
    - {protocol: UDP, port: 53}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.244.0.0/16}
";

fn policy_tables(yaml: &str) -> Tables {
    vswitch::testing::policy_tables(yaml, ["client", "server"])
}

/// Two generations: the policies, and the same without UDP 53 (connections are judged again
/// whenever the property switches).
fn policy_generations() -> Vec<Tables> {
    let no_dns = POLICIES.replace("    - {protocol: UDP, port: 53}\n", "");
    assert_ne!(no_dns, POLICIES);
    vec![policy_tables(POLICIES), policy_tables(&no_dns)]
}

/// A small table (2 buckets of 4) with short timeouts.
fn small_conntrack() -> PipelineConfig {
    PipelineConfig {
        conntrack: ConntrackConfig {
            max_entries: 8,
            tcp_established_secs: 5,
            tcp_transitory_secs: 2,
            udp_secs: 3,
            icmp_secs: 2,
        },
        ..PipelineConfig::default()
    }
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0; 12];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&12u16.to_be_bytes());
    u
}

/// Frames of connections between pod1 (client port `1000 + k`) and pod2, with their input port:
/// both directions of TCP 80 and UDP 53, denied ones, ICMP errors about them, echo and a
/// non-first fragment.
fn policy_template(t: usize, k: u16) -> (u16, Vec<u8>) {
    use tcp_flags::{ACK, FIN, RST, SYN};
    let c = 1000 + k;
    let p1 = |dst, proto, l4: &[u8]| ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, dst, 64, proto, l4);
    let p2 = |proto, l4: &[u8]| ipv4_frame(POD2_MAC, GW_MAC, POD2_IP, POD1_IP, 64, proto, l4);
    let error_about = |f: Vec<u8>| {
        let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&f[14..42]);
        m
    };
    let stranger: Ipv4Addr = "8.8.8.8".parse().unwrap();
    match t {
        0 => (0, p1(POD2_IP, 6, &tcp(c, 80, SYN))),
        1 => (1, p2(6, &tcp(80, c, SYN | ACK))),
        2 => (0, p1(POD2_IP, 6, &tcp(c, 80, ACK))),
        3 => (1, p2(6, &tcp(80, c, FIN | ACK))),
        4 => (0, p1(POD2_IP, 6, &tcp(c, 80, RST))),
        5 => (0, p1(POD2_IP, 17, &udp(c, 53))),
        6 => (1, p2(17, &udp(53, c))),
        7 => (0, p1(POD2_IP, 17, &udp(c, 54))),
        8 => (1, p2(1, &error_about(p1(POD2_IP, 17, &udp(c, 53))))),
        9 => (1, p2(6, &tcp(80, c, SYN))),
        10 => (0, p1(POD2_IP, 1, &echo_request(k, 1, b""))),
        11 => (1, p2(1, &echo_request(k, 1, b""))),
        12 => (0, p1(stranger, 6, &tcp(c, 443, SYN))),
        13 => (
            2,
            ipv4_frame(
                HOST_MAC,
                GW_MAC,
                stranger,
                POD2_IP,
                64,
                6,
                &tcp(443, c, SYN),
            ),
        ),
        14 => (
            0,
            p1(POD2_IP, 6, &tcp(c, 80, SYN))
                .into_iter()
                .enumerate()
                .map(|(i, b)| match i {
                    20 => 0x00, // fragment offset 8 (bytes), not the first fragment
                    21 => 0x01,
                    _ => b,
                })
                .collect(),
        ),
        15 => (0, p1(POD2_IP, 1, &[11, 0, 0, 0])),
        _ => (
            0,
            ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 1, 6, &tcp(c, 80, SYN)),
        ), // TTL 1: allowed, then answered with time exceeded
    }
}

const POLICY_TEMPLATES: usize = 17;

/// Mostly intact connection frames on their own port (so that flows meet their replies), some
/// with byte flips, truncations or on another port.
fn policy_frames() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    let one = (
        0..POLICY_TEMPLATES,
        0..12u16,
        proptest::option::weighted(0.1, 0..3u16),
        proptest::collection::vec((0..80usize, any::<u8>()), 0..2),
        proptest::option::weighted(0.1, 0..70usize),
    )
        .prop_map(|(t, k, other_port, flips, cut)| {
            let (port, mut f) = policy_template(t, k);
            for (at, v) in flips {
                if let Some(b) = f.get_mut(at) {
                    *b = v;
                }
            }
            if let Some(c) = cut {
                f.truncate(c);
            }
            (other_port.unwrap_or(port), f)
        });
    proptest::collection::vec(one, 1..150)
}

#[test]
fn the_policy_property_runs_with_policy_in_force() {
    let tables = policy_generations();
    let stats = Arc::new(WorkerStats::default());
    let mut pipeline = Pipeline::new(small_conntrack(), Arc::clone(&stats));
    let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 16).unwrap();
    let mut rx = [Desc::default(); MAX_BATCH];
    for (t, want) in [
        (7, DropReason::PolicyDenied),
        (12, DropReason::PolicyDenied),
    ] {
        let (port, f) = policy_template(t, 0);
        let mut input = MemoryPort::new();
        input.inject(f);
        let n = pipeline.receive(&mut arena, PortId(port), &mut input, &mut rx);
        pipeline.process(&tables[0], &mut arena, PortId(port), &rx[..n], 0);
        assert_eq!(stats.port(PortId(port)).drops(want), 1, "template {t}");
        stats.reset_port(PortId(port));
    }
    assert_eq!(arena.pool.in_use(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn every_frame_is_accounted_for(input in frames()) {
        accounts_for_every_frame(&[tables()], usize::MAX, PipelineConfig::default(), 1, &input)?;
    }

    /// With policy in force: the generation changes every 16 frames, a frame every 0.1 s.
    #[test]
    fn every_frame_is_accounted_for_with_policy(input in policy_frames()) {
        accounts_for_every_frame(&policy_generations(), 16, small_conntrack(), 100_000_000, &input)?;
    }
}
