//! What a policy change does to connections already tracked: they are judged again, once, at
//! their next packet under the new policies; cut if no longer allowed, kept (and not judged
//! again) if still allowed. New connections see the change at once.

use std::sync::Arc;
use vswitch::frame::{Desc, FrameArena, FrameLayout};
use vswitch::pipeline::{Pipeline, PipelineConfig, MAX_BATCH};
use vswitch::port::memory::MemoryPort;
use vswitch::reason::DropReason;
use vswitch::stats::WorkerStats;
use vswitch::tables::{PortId, Tables};
use vswitch::testing::*;

const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n";

fn tables_with(yaml: Option<&str>) -> Tables {
    match yaml {
        Some(y) => policy_tables(y, ["p1", "p2"]),
        None => tables(),
    }
}

fn tcp(from_pod1: bool, flags: u8) -> Vec<u8> {
    let (src_mac, src, dst, sport, dport) = if from_pod1 {
        (POD1_MAC, POD1_IP, POD2_IP, 40000u16, 80u16)
    } else {
        (POD2_MAC, POD2_IP, POD1_IP, 80, 40000)
    };
    let mut seg = vec![0u8; 20];
    seg[0..2].copy_from_slice(&sport.to_be_bytes());
    seg[2..4].copy_from_slice(&dport.to_be_bytes());
    seg[12] = 0x50;
    seg[13] = flags;
    ipv4_frame(src_mac, GW_MAC, src, dst, 64, 6, &seg)
}

struct Rig {
    pipeline: Pipeline,
    arena: FrameArena,
    ports: Vec<Option<MemoryPort>>,
    stats: Arc<WorkerStats>,
}

impl Rig {
    fn new() -> Rig {
        let stats = Arc::new(WorkerStats::default());
        Rig {
            pipeline: Pipeline::new(PipelineConfig::default(), Arc::clone(&stats)),
            arena: FrameArena::with_heap(FrameLayout::DEFAULT, 64).unwrap(),
            ports: (0..3).map(|_| Some(MemoryPort::new())).collect(),
            stats,
        }
    }

    /// Sends one frame in on its pod's port; returns whether it came out of the other pod.
    fn send(&mut self, tables: &Tables, from_pod1: bool, flags: u8) -> bool {
        let (inp, outp) = if from_pod1 {
            (POD1, POD2)
        } else {
            (POD2, POD1)
        };
        self.ports[inp.index()]
            .as_mut()
            .unwrap()
            .inject(tcp(from_pod1, flags));
        let mut rx = [Desc::default(); MAX_BATCH];
        let port = self.ports[inp.index()].as_mut().unwrap();
        let n = self.pipeline.receive(&mut self.arena, inp, port, &mut rx);
        self.pipeline
            .process(tables, &mut self.arena, inp, &rx[..n], 1_000_000);
        self.pipeline
            .transmit(&mut self.arena, self.ports.as_mut_slice());
        !self.ports[outp.index()]
            .as_mut()
            .unwrap()
            .take_tx()
            .is_empty()
    }

    fn denied(&self) -> u64 {
        (0..2)
            .map(|p| self.stats.port(PortId(p)).drops(DropReason::PolicyDenied))
            .sum()
    }
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;

#[test]
fn a_connection_no_longer_allowed_is_cut_at_its_next_packet() {
    let allow = tables_with(Some(&format!(
        "{HEAD}spec:\n  podSelector:\n    matchLabels:\n      app: p1\n  ingress:\n  - ports:\n    - port: 40000\n"
    )));
    let mut rig = Rig::new();
    assert!(rig.send(&allow, true, SYN));
    assert!(
        rig.send(&allow, false, SYN_ACK),
        "reply of an allowed connection"
    );
    assert!(rig.send(&allow, true, ACK));

    let deny_pod2_ingress = tables_with(Some(&format!(
        "{HEAD}spec:\n  podSelector:\n    matchLabels:\n      app: p2\n  policyTypes: [Ingress]\n"
    )));
    assert!(
        !rig.send(&deny_pod2_ingress, true, ACK),
        "cut: pod2 now denies it"
    );
    assert!(
        !rig.send(&deny_pod2_ingress, true, ACK),
        "its entry is gone: judged as new, and denied"
    );
    assert_eq!(rig.denied(), 2);
    assert!(
        !rig.send(&deny_pod2_ingress, true, SYN),
        "new connections denied too"
    );
}

#[test]
fn a_connection_still_allowed_survives_a_change_and_new_ones_see_it_at_once() {
    let none = tables_with(None);
    let mut rig = Rig::new();
    assert!(
        rig.send(&none, true, SYN),
        "no policy: nothing judged or tracked"
    );

    let open = tables_with(Some(&format!(
        "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - {{}}\n"
    )));
    assert!(rig.send(&open, true, SYN));
    assert!(rig.send(&open, false, SYN_ACK));
    let also_open = tables_with(Some(&format!(
        "{HEAD}spec:\n  podSelector:\n    matchLabels:\n      app: p2\n  ingress:\n  - ports:\n    - port: 80\n"
    )));
    assert!(
        rig.send(&also_open, true, ACK),
        "still allowed under the new policy"
    );
    assert!(rig.send(&also_open, false, ACK), "replies too");
    let closed_port = tables_with(Some(&format!(
        "{HEAD}spec:\n  podSelector:\n    matchLabels:\n      app: p2\n  ingress:\n  - ports:\n    - port: 81\n"
    )));
    assert!(
        !rig.send(&closed_port, false, ACK),
        "re-judged: port 80 no longer allowed"
    );
    assert_eq!(rig.denied(), 1);
}
