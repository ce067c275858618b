//! The per-packet functions allocate nothing: a counting global allocator watches
//! encapsulation, decapsulation (accepted and refused frames) and tunnel table lookups.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use vtep::{
    decap_ipip, decap_vxlan, encap_ipip, encap_vxlan, IpipPeer, IpipTemplate, Tunnel, TunnelKind,
    TunnelTable, VxlanExpect, VxlanPeer, VxlanTemplate, IPIP_HEADROOM, VXLAN_ENCAP_LEN,
};

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

const UPLINK_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const UPLINK_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const VTEP_A: [u8; 6] = [0x0e, 0, 0, 0, 0, 1];
const VTEP_B: [u8; 6] = [0x0e, 0, 0, 0, 0, 2];
const NODE_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const NODE_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);

/// A 1000-byte Ethernet frame with a UDP packet 10.244.1.2 -> 10.244.2.2, in a 2048-byte buffer
/// at offset 256.
fn frame_in_buffer() -> (Vec<u8>, usize, usize) {
    let mut buf = vec![0u8; 2048];
    let start = 256;
    let len = 1000;
    let f = &mut buf[start..start + len];
    f[..6].copy_from_slice(&VTEP_B);
    f[6..12].copy_from_slice(&VTEP_A);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[..12].copy_from_slice(&[0x45, 0x02, 0x03, 0xd2, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip[12..20].copy_from_slice(&[10, 244, 1, 2, 10, 244, 2, 2]);
    let c = !vtep::checksum::sum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..24].copy_from_slice(&[0x9c, 0x40, 0x00, 0x35]);
    (buf, start, len)
}

#[test]
fn encap_decap_lookups_do_not_allocate() {
    let vxlan =
        VxlanTemplate::new(&VxlanPeer::flannel(UPLINK_A, UPLINK_B, NODE_A, NODE_B)).unwrap();
    let ipip = IpipTemplate::new(&IpipPeer {
        outer_src_mac: UPLINK_A,
        outer_dst_mac: UPLINK_B,
        src_ip: NODE_A,
        dst_ip: NODE_B,
    });
    let expect = VxlanExpect {
        port: 8472,
        vni: 1,
        vtep_mac: VTEP_B,
    };
    let wrong = VxlanExpect { vni: 2, ..expect };
    let tunnels: Vec<_> = (1..=200u8)
        .map(|n| {
            let subnet = format!("10.244.{n}.0/24").parse().unwrap();
            Tunnel::vxlan(
                format!("node-{n}"),
                Ipv4Addr::new(192, 168, 77, n),
                subnet,
                VTEP_B,
            )
        })
        .collect();
    let table = TunnelTable::build(tunnels).unwrap();
    let (template_buf, start, len) = frame_in_buffer();
    let mut buf = template_buf.clone();

    WATCHING.with(|w| w.set(true));
    for i in 0..1000u16 {
        buf.copy_from_slice(&template_buf);
        let span = encap_vxlan(&mut buf, start, len, &vxlan, i).unwrap();
        assert_eq!(span.start, start - VXLAN_ENCAP_LEN);
        let d = decap_vxlan(&buf[span.range()], &expect).unwrap();
        black_box(decap_vxlan(&buf[span.range()], &wrong).unwrap_err());
        black_box(table.peer(TunnelKind::Vxlan, d.outer_src));
        black_box(table.route(Ipv4Addr::new(10, 244, (i % 250) as u8, 7)));

        buf.copy_from_slice(&template_buf);
        let span = encap_ipip(&mut buf, start, len, &ipip, i).unwrap();
        assert_eq!(span.start, start - IPIP_HEADROOM);
        let d = decap_ipip(&buf[span.range()]).unwrap();
        black_box(table.peer(TunnelKind::Ipip, d.outer_src));
        black_box(decap_ipip(&buf[..40]).unwrap_err());
    }
    WATCHING.with(|w| w.set(false));
    assert_eq!(ALLOCS.load(SeqCst), 0, "allocations on the per-packet path");
}
