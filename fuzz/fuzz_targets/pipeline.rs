//! The whole pipeline over arbitrary frames received on every port kind (pod, host, uplink), on
//! a plain switch, with tunnels (VXLAN, IPIP, one unresolved; a port without a port object), and
//! with NetworkPolicy in force (one generation, or two alternating).
//!
//! Input: one mode byte (`vswitch_fuzz::Mode::from_byte`; bit 2 picks a tiny conntrack table),
//! then records (`vswitch_fuzz::records`).
//!
//! Invariants: no panic; no frame buffer held after each transmit (`arena.pool.in_use() == 0`);
//! every frame accounted for (received = transmitted + dropped + consumed - ICMP errors sent,
//! summed over every port); what the ports got is what the counters say was transmitted; every
//! IPv4 frame the switch sends has a well-formed header (version 4, IHL >= 5, total length
//! within the frame, header checksum correct).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use vswitch::frame::{Desc, FrameArena, FrameLayout};
use vswitch::pipeline::{Pipeline, PipelineConfig, MAX_BATCH};
use vswitch::policy::conntrack::ConntrackConfig;
use vswitch::port::memory::MemoryPort;
use vswitch::reason::Event;
use vswitch::stats::WorkerStats;
use vswitch::tables::PortId;
use vswitch_fuzz::{records, Mode};

fn check_ipv4_out(port: usize, frame: &[u8]) {
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip = &frame[14..];
    assert!(
        ip.len() >= 20,
        "port {port}: IPv4 frame without a header: {frame:02x?}"
    );
    assert_eq!(ip[0] >> 4, 4, "port {port}: IP version: {frame:02x?}");
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert!(
        header_len >= 20 && header_len <= total_len && total_len <= ip.len(),
        "port {port}: IPv4 lengths (header {header_len}, total {total_len}, have {}): {frame:02x?}",
        ip.len()
    );
    assert_eq!(
        vtep::checksum::sum(&ip[..header_len]),
        0xffff,
        "port {port}: IPv4 header checksum: {frame:02x?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode_byte, rest)) = data.split_first() else {
        return;
    };
    let mode = Mode::from_byte(mode_byte);
    let (generations, switch_every) = mode.tables();
    let input = records(rest, mode.input_ports());
    if input.is_empty() {
        return;
    }

    let mut config = PipelineConfig {
        fdb_capacity: 64,
        ..PipelineConfig::default()
    };
    config.conntrack = if mode_byte & 4 != 0 {
        ConntrackConfig {
            max_entries: 8,
            tcp_established_secs: 5,
            tcp_transitory_secs: 2,
            udp_secs: 3,
            icmp_secs: 2,
        }
    } else {
        ConntrackConfig {
            max_entries: 1024,
            ..ConntrackConfig::default()
        }
    };
    let stats = Arc::new(WorkerStats::default());
    let mut pipeline = Pipeline::new(config, Arc::clone(&stats));
    let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 2 * MAX_BATCH).unwrap();
    // The last table slot of the tunnel topologies (pod3) has no port object: port_gone.
    let mut ports: Vec<Option<MemoryPort>> = (0..mode.table_ports())
        .map(|i| (i < mode.input_ports()).then(MemoryPort::new))
        .collect();
    let mut rx = [Desc::default(); MAX_BATCH];
    let mut sent = vec![0u64; ports.len()];
    let mut now = 0u64;
    let mut at = 0;
    let mut frames_seen = 0usize;
    while at < input.len() {
        let first = input[at];
        now += first.step_ns;
        let len = 1 + input[at + 1..]
            .iter()
            .take(MAX_BATCH - 1)
            .take_while(|r| r.same_batch && r.port == first.port)
            .count();
        let id = PortId(first.port);
        let port = ports[id.index()].as_mut().expect("input ports exist");
        for r in &input[at..at + len] {
            port.inject(r.frame.to_vec());
        }
        let n = pipeline.receive(&mut arena, id, port, &mut rx[..len]);
        assert_eq!(port.pending_rx(), 0, "a batch fits the arena");
        let tables = &generations[frames_seen / switch_every % generations.len()];
        pipeline.process(tables, &mut arena, id, &rx[..n], now);
        pipeline.transmit(&mut arena, ports.as_mut_slice());
        assert_eq!(arena.pool.in_use(), 0, "a frame buffer leaked");
        for (i, p) in ports.iter_mut().enumerate() {
            if let Some(p) = p {
                for f in p.take_tx() {
                    check_ipv4_out(i, &f);
                    sent[i] += 1;
                }
            }
        }
        frames_seen += len;
        at += len;
    }

    let (mut rx_n, mut tx_n, mut dropped, mut consumed, mut errors) = (0, 0, 0, 0, 0);
    for (i, sent) in sent.iter().enumerate() {
        let id = PortId(i as u16);
        let s = stats.port(id);
        let snap = stats.snapshot(id);
        assert_eq!(
            snap.tx_packets, *sent,
            "port {i}: frames sent vs tx counter"
        );
        rx_n += snap.rx_packets;
        tx_n += snap.tx_packets;
        dropped += snap.total_drops();
        consumed += s.events(Event::GratuitousArp);
        errors += s.events(Event::IcmpErrorsSent);
    }
    assert_eq!(rx_n, input.len() as u64, "every frame counted as received");
    assert_eq!(
        rx_n + errors,
        tx_n + dropped + consumed,
        "rx = tx + drops + consumed - icmp errors (rx {rx_n}, tx {tx_n}, drops {dropped}, \
         consumed {consumed}, icmp errors {errors})"
    );
});
