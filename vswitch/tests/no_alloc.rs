//! The per-packet path allocates nothing: a counting global allocator watches receive ->
//! process -> transmit over batches that exercise every kind of decision (route, switch, ARP
//! reply, echo reply, ICMP error, FDB learning, drops).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use vswitch::frame::{Desc, FrameArena, FrameLayout};
use vswitch::mac::MacAddr;
use vswitch::pipeline::{Pipeline, PipelineConfig, MAX_BATCH};
use vswitch::port::{memory::MemoryPort, Port};
use vswitch::stats::WorkerStats;
use vswitch::tables::PortId;
use vswitch::testing::*;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    /// Set only on the test's own thread: the harness's threads may allocate meanwhile.
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHING.with(Cell::get) {
            ALLOCS.fetch_add(1, SeqCst);
        }
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

#[test]
fn receive_process_transmit_do_not_allocate() {
    let tables = tables();
    let stranger: Ipv4Addr = "8.8.8.8".parse().unwrap();
    let pod_frames = [
        ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[0; 64]), // routed
        ipv4_frame(POD1_MAC, POD2_MAC, POD1_IP, POD2_IP, 64, 6, &[0; 40]), // switched
        ipv4_frame(
            POD1_MAC,
            GW_MAC,
            POD1_IP,
            GW_IP,
            64,
            1,
            &echo_request(1, 1, b""),
        ), // echo
        ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 1, 17, &[0; 8]),   // time exceeded
        ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, stranger, 64, 6, &[0; 20]), // to the host
        ipv4_frame(POD1_MAC, GW_MAC, POD2_IP, POD1_IP, 64, 17, &[]),      // spoofed: drop
        arp_request(POD1_MAC, POD1_IP, GW_IP),                            // ARP reply
        vec![0; 10],                                                      // truncated: drop
    ];
    let host_frames: Vec<Vec<u8>> = (0..8u8)
        .map(|i| {
            let src = MacAddr([2, 0, 0, 0, 0, i]);
            ipv4_frame(src, GW_MAC, [1, 1, 1, i].into(), POD1_IP, 64, 6, &[0; 20])
        })
        .collect(); // routed, and each teaches the FDB a new MAC

    let stats = Arc::new(WorkerStats::default());
    let mut pipeline = Pipeline::new(PipelineConfig::default(), Arc::clone(&stats));
    let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 256).unwrap();
    let mut pod_in = MemoryPort::new();
    let mut host_in = MemoryPort::new();
    let rounds = 200;
    for _ in 0..rounds {
        pod_frames.iter().for_each(|f| pod_in.inject(f.clone()));
        host_frames.iter().for_each(|f| host_in.inject(f.clone()));
    }
    let mut sinks: Vec<Option<Sink>> = (0..3).map(|_| Some(Sink)).collect();
    let mut rx = [Desc::default(); MAX_BATCH];

    let mut round = |pipeline: &mut Pipeline, arena: &mut FrameArena, now: u64| {
        for (id, port) in [(POD1, &mut pod_in), (HOST, &mut host_in)] {
            let want = if id == POD1 {
                pod_frames.len()
            } else {
                host_frames.len()
            };
            let n = pipeline.receive(arena, id, port, &mut rx[..want]);
            pipeline.process(&tables, arena, id, &rx[..n], now);
            pipeline.transmit(arena, sinks.as_mut_slice());
        }
    };
    round(&mut pipeline, &mut arena, 0); // warm-up: first FDB inserts, lazy statics
    WATCHING.with(|w| w.set(true));
    for i in 1..rounds {
        round(&mut pipeline, &mut arena, i as u64 * 1000);
    }
    WATCHING.with(|w| w.set(false));
    assert_eq!(ALLOCS.load(SeqCst), 0, "allocations on the per-packet path");
    assert_eq!(arena.pool.in_use(), 0);
    let tx: u64 = (0..3).map(|i| stats.port(PortId(i)).tx_packets.get()).sum();
    assert_eq!(
        tx,
        rounds as u64 * 14,
        "6 pod frames and 8 host frames leave per round"
    );
}
