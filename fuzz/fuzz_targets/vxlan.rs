//! VXLAN: the header view and `Repr`, `decap_vxlan` on arbitrary frames, and the encap ->
//! decap round trip. Input: a whole Ethernet frame.
//!
//! Invariants: no panic (the views' checked constructors make every accessor safe); a parsed
//! `Repr` emits the bytes it was parsed from; an accepted frame's inner span lies inside the
//! frame, starts with our VTEP MAC and carries the expected VNI; the outer addresses are the
//! frame's; encapsulating any inner frame (as flannel would, UDP checksum on or off) and
//! decapsulating the result gives the inner frame back, byte for byte, with a valid outer IPv4
//! header and the flow's source port; a failed encapsulation writes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use vtep::encap::{encap_vxlan, flow_src_port, EncapError, VxlanPeer, VxlanTemplate};
use vtep::vxlan::{self, Packet, Repr, FLANNEL_UDP_PORT, FLANNEL_VNI, VNI_MAX};
use vtep::{checksum, decap_vxlan, VxlanExpect, VXLAN_ENCAP_LEN};

const OUR_VTEP: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x01];
const FLANNEL: VxlanExpect = VxlanExpect {
    port: FLANNEL_UDP_PORT,
    vni: FLANNEL_VNI,
    vtep_mac: OUR_VTEP,
};

fn view(bytes: &[u8]) {
    let Ok(packet) = Packet::new_checked(bytes) else {
        assert!(bytes.len() < vxlan::VXLAN_HEADER_LEN);
        return;
    };
    let (_, _, vni, _) = (
        packet.flags(),
        packet.reserved0(),
        packet.vni(),
        packet.reserved1(),
    );
    assert!(vni <= VNI_MAX);
    assert_eq!(packet.payload(), &bytes[8..]);
    match Repr::parse(&packet) {
        Ok(repr) => {
            assert_eq!(repr.vni, vni);
            assert!(packet.check_flags().is_ok());
            let mut out = [0xa5u8; 8];
            repr.emit(&mut Packet::new_unchecked(&mut out[..]));
            assert_eq!(&out[..], &bytes[..8], "emit(parse(header)) differs");
        }
        Err(_) => assert!(packet.check_flags().is_err()),
    }
}

/// What the decapsulation must report for an accepted frame, read independently.
fn check_accepted(frame: &[u8], expect: &VxlanExpect, d: &vtep::VxlanDecap) {
    let end = d
        .inner_offset
        .checked_add(d.inner_len)
        .expect("no overflow");
    assert!(
        end <= frame.len(),
        "inner span {d:?} beyond a {}-byte frame",
        frame.len()
    );
    assert!(d.inner_len >= 14);
    assert_eq!(frame[12..14], [0x08, 0x00]);
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    assert_eq!(d.inner_offset, 14 + ihl + 8 + 8);
    assert_eq!(frame[d.inner_offset..d.inner_offset + 6], expect.vtep_mac);
    assert_eq!(d.vni, expect.vni);
    assert_eq!(d.outer_src.octets(), frame[26..30]);
    assert_eq!(d.outer_dst.octets(), frame[30..34]);
    assert_eq!(
        checksum::sum(&frame[14..14 + ihl]),
        0xffff,
        "outer header checksum"
    );
    let udp = &frame[14 + ihl..];
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), expect.port);
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[4], udp[5]])),
        16 + d.inner_len
    );
}

/// Encapsulates `inner` for a peer and decapsulates the result.
fn round_trip(inner: &[u8], udp_checksum: bool, vni: u32, ip_id: u16) {
    let peer = VxlanPeer {
        outer_src_mac: [0x02, 0, 0, 0, 0x77, 0x02],
        outer_dst_mac: [0x02, 0, 0, 0, 0x77, 0x01],
        src_ip: Ipv4Addr::new(192, 168, 77, 2),
        dst_ip: Ipv4Addr::new(192, 168, 77, 1),
        udp_dst_port: FLANNEL_UDP_PORT,
        vni,
        udp_checksum,
    };
    let template = match VxlanTemplate::new(&peer) {
        Ok(t) => t,
        Err(e) => {
            assert!(vni > VNI_MAX && e == EncapError::BadVni(vni));
            return;
        }
    };
    let headroom = VXLAN_ENCAP_LEN + usize::from(ip_id % 3); // the span need not start at 0
    let mut buf = vec![0x5a; headroom];
    buf.extend_from_slice(inner);
    let before = buf.clone();
    let span = match encap_vxlan(&mut buf, headroom, inner.len(), &template, ip_id) {
        Ok(span) => span,
        Err(e) => {
            assert_eq!(
                buf, before,
                "a failed encapsulation ({e:?}) wrote into the buffer"
            );
            assert!(
                inner.len() < 14 || inner.len() + VXLAN_ENCAP_LEN - 14 > 65535,
                "{e:?}"
            );
            return;
        }
    };
    assert_eq!(span.start, headroom - VXLAN_ENCAP_LEN);
    assert_eq!(span.len, VXLAN_ENCAP_LEN + inner.len());
    let frame = &buf[span.range()];
    assert_eq!(
        &frame[VXLAN_ENCAP_LEN..],
        inner,
        "the inner frame moved or changed"
    );
    let src_port = u16::from_be_bytes([frame[34], frame[35]]);
    assert_eq!(src_port, flow_src_port(inner));
    assert!(src_port >= 49152);
    if !udp_checksum {
        assert_eq!(frame[40..42], [0, 0]);
    }
    let expect = VxlanExpect {
        port: FLANNEL_UDP_PORT,
        vni,
        vtep_mac: inner[..6].try_into().unwrap(),
    };
    let d = decap_vxlan(frame, &expect)
        .unwrap_or_else(|e| panic!("our own encapsulation is refused: {e:?}"));
    check_accepted(frame, &expect, &d);
    assert_eq!(d.inner_offset, VXLAN_ENCAP_LEN);
    assert_eq!(d.inner_len, inner.len());
    assert_eq!((d.outer_src, d.outer_dst), (peer.src_ip, peer.dst_ip));
}

fuzz_target!(|frame: &[u8]| {
    view(frame);
    if frame.len() > 42 {
        view(&frame[42..]); // where the VXLAN header sits behind a 20-byte outer IPv4 header
    }

    if let Ok(d) = decap_vxlan(frame, &FLANNEL) {
        check_accepted(frame, &FLANNEL, &d);
        // Re-encapsulating what was accepted round-trips too.
        let inner = &frame[d.inner_offset..d.inner_offset + d.inner_len];
        round_trip(inner, true, FLANNEL_VNI, 7);
    }
    // The same frame against what it claims (port, VNI, inner MAC), so the later checks are
    // reached without the fuzzer guessing our constants.
    if frame.len() >= 14 + 20 {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let at = 14 + ihl;
        if frame.len() >= at + 8 + 8 + 6 {
            let expect = VxlanExpect {
                port: u16::from_be_bytes([frame[at + 2], frame[at + 3]]),
                vni: u32::from_be_bytes([0, frame[at + 12], frame[at + 13], frame[at + 14]]),
                vtep_mac: frame[at + 16..at + 22].try_into().unwrap(),
            };
            if let Ok(d) = decap_vxlan(frame, &expect) {
                check_accepted(frame, &expect, &d);
            }
        }
    }

    let seed = frame.first().copied().unwrap_or(0);
    let vni = match seed % 4 {
        0 => FLANNEL_VNI,
        1 => VNI_MAX,
        2 => VNI_MAX + 1,
        _ => u32::from(seed) << 16,
    };
    round_trip(frame, seed & 0x10 != 0, vni, u16::from(seed) * 257);
});
