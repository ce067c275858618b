//! Property: whatever frames arrive (valid ones with random byte flips and truncations, or pure
//! noise), the pipeline never panics, returns every buffer, and accounts for every frame:
//! received = transmitted + dropped + consumed - ICMP errors (an ICMP error counts the original
//! as a drop and leaves as a frame).

use proptest::prelude::*;
use std::sync::Arc;
use vswitch::frame::{Desc, FrameArena, FrameLayout};
use vswitch::pipeline::{Pipeline, PipelineConfig, MAX_BATCH};
use vswitch::port::memory::MemoryPort;
use vswitch::reason::Event;
use vswitch::stats::WorkerStats;
use vswitch::tables::PortId;
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn every_frame_is_accounted_for(input in frames()) {
        let tables = tables();
        let stats = Arc::new(WorkerStats::default());
        let mut pipeline = Pipeline::new(PipelineConfig::default(), Arc::clone(&stats));
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 256).unwrap();
        let mut ports: Vec<Option<MemoryPort>> = (0..3).map(|_| Some(MemoryPort::new())).collect();
        let mut rx = [Desc::default(); MAX_BATCH];
        for (i, (port, frame)) in input.iter().enumerate() {
            let id = PortId(*port);
            ports[id.index()].as_mut().unwrap().inject(frame.clone());
            let port = ports[id.index()].as_mut().unwrap();
            let n = pipeline.receive(&mut arena, id, port, &mut rx);
            pipeline.process(&tables, &mut arena, id, &rx[..n], i as u64);
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
        let sent: usize = ports.iter_mut().map(|p| p.as_mut().unwrap().take_tx().len()).sum();
        prop_assert_eq!(sent as u64, tx_n);
    }
}
