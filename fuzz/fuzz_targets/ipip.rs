//! IPIP: the outer header view and `Repr`, `outer_repr_for_inner`, `decap_ipip` on arbitrary
//! frames, and the encap -> decap round trip. Input: a whole Ethernet frame.
//!
//! Invariants: no panic; `Repr::emit` then `Repr::parse` gives the same `Repr`; an accepted
//! frame's inner packet lies inside the frame at or after `IPIP_ENCAP_LEN`, is IPv4 with a
//! correct header checksum and the reported length; encapsulating any IPv4 frame and
//! decapsulating the result gives its IPv4 packet back (or, exactly when the inner header
//! checksum is wrong, `InnerBadChecksum`), with TTL, DF and ECN as the kernel's `tunl0` sets
//! them; a failed encapsulation writes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use vtep::encap::{encap_ipip, IpipPeer, IpipTemplate};
use vtep::ipip::{encap_ecn, outer_repr_for_inner, OuterPacket, Repr};
use vtep::{checksum, decap_ipip, DecapError, IPIP_ENCAP_LEN, IPIP_HEADROOM};

const A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 3);
const B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

fn view(ip: &[u8]) {
    let Ok(packet) = OuterPacket::new_checked(ip) else {
        return;
    };
    // After check() no accessor panics.
    let _ = (
        packet.version(),
        packet.header_len(),
        packet.dscp_ecn(),
        packet.ident(),
        packet.dont_frag(),
        packet.more_frags(),
        packet.frag_offset(),
        packet.ttl(),
        packet.checksum(),
        packet.src_addr(),
        packet.dst_addr(),
        packet.verify_checksum(),
    );
    assert_eq!(
        packet.inner().len(),
        usize::from(packet.total_len()) - usize::from(packet.header_len())
    );
    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    assert_eq!(repr.payload_len, packet.inner().len());
    // emit writes a 20-byte header (options dropped) over a copy with the same inner packet.
    let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
    out[repr.buffer_len()..].copy_from_slice(packet.inner());
    let mut emitted = OuterPacket::new_unchecked(&mut out[..]);
    repr.emit(&mut emitted);
    let again = OuterPacket::new_checked(&out[..]).expect("emitted header checks");
    assert!(again.verify_checksum());
    assert_eq!(Repr::parse(&again), Ok(repr), "parse(emit(repr)) differs");
}

fn check_accepted(frame: &[u8], d: &vtep::IpipDecap) {
    assert!(d.inner_offset >= IPIP_ENCAP_LEN);
    let end = d
        .inner_offset
        .checked_add(d.inner_len)
        .expect("no overflow");
    assert!(
        end <= frame.len(),
        "inner span {d:?} beyond a {}-byte frame",
        frame.len()
    );
    let inner = &frame[d.inner_offset..end];
    assert_eq!(inner[0] >> 4, 4);
    let hl = usize::from(inner[0] & 0x0f) * 4;
    assert!(hl >= 20 && hl <= inner.len());
    assert_eq!(
        usize::from(u16::from_be_bytes([inner[2], inner[3]])),
        d.inner_len
    );
    assert_eq!(checksum::sum(&inner[..hl]), 0xffff);
    assert_eq!(frame[23], 4, "outer protocol");
    assert_eq!(d.outer_src.octets(), frame[26..30]);
    assert_eq!(d.outer_dst.octets(), frame[30..34]);
}

/// Encapsulates the Ethernet frame `frame` and decapsulates the result.
fn round_trip(frame: &[u8], ip_id: u16) {
    let template = IpipTemplate::new(&IpipPeer {
        outer_src_mac: [0x02, 0, 0, 0, 0x77, 0x03],
        outer_dst_mac: [0x02, 0, 0, 0, 0x77, 0x01],
        src_ip: A,
        dst_ip: B,
    });
    let headroom = IPIP_HEADROOM + usize::from(ip_id % 3);
    let mut buf = vec![0x5a; headroom];
    buf.extend_from_slice(frame);
    let before = buf.clone();
    let span = match encap_ipip(&mut buf, headroom, frame.len(), &template, ip_id) {
        Ok(span) => span,
        Err(e) => {
            assert_eq!(
                buf, before,
                "a failed encapsulation ({e:?}) wrote into the buffer"
            );
            return;
        }
    };
    let inner = &frame[14..];
    let total = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
    assert_eq!(span.start, headroom - IPIP_HEADROOM);
    assert_eq!(span.len, IPIP_ENCAP_LEN + total);
    let out = &buf[span.range()];
    assert_eq!(
        &out[IPIP_ENCAP_LEN..],
        &inner[..total],
        "the inner packet moved or changed"
    );
    let outer = OuterPacket::new_checked(&out[14..]).expect("our outer header checks");
    assert!(outer.verify_checksum());
    assert_eq!(outer.ttl(), inner[8]);
    assert_eq!(outer.dont_frag(), inner[6] & 0x40 != 0);
    assert_eq!(outer.dscp_ecn(), encap_ecn(inner[1]));
    assert_eq!(outer.ident(), ip_id);
    let hl = usize::from(inner[0] & 0x0f) * 4;
    let inner_ok = checksum::sum(&inner[..hl]) == 0xffff;
    match decap_ipip(out) {
        Ok(d) => {
            assert!(inner_ok, "accepted a bad inner checksum");
            check_accepted(out, &d);
            assert_eq!((d.inner_offset, d.inner_len), (IPIP_ENCAP_LEN, total));
            assert_eq!((d.outer_src, d.outer_dst), (A, B));
        }
        Err(e) => {
            assert!(!inner_ok, "our own encapsulation is refused: {e:?}");
            assert_eq!(e, DecapError::InnerBadChecksum);
        }
    }
}

fuzz_target!(|frame: &[u8]| {
    if frame.len() > 14 {
        view(&frame[14..]);
        if let Ok(repr) = outer_repr_for_inner(A, B, 1, &frame[14..]) {
            assert!(20 + repr.payload_len <= 65535);
            assert_eq!(repr.ttl, frame[14 + 8]);
        }
    }
    if let Ok(d) = decap_ipip(frame) {
        check_accepted(frame, &d);
        // Re-encapsulating what was accepted (with an Ethernet header written in place over the
        // end of the outer header, as the switch does) round-trips too.
        let mut again = vec![0u8; 14];
        again[12..14].copy_from_slice(&[0x08, 0x00]);
        again.extend_from_slice(&frame[d.inner_offset..d.inner_offset + d.inner_len]);
        round_trip(&again, 9);
    }
    let seed = frame.first().copied().unwrap_or(0);
    round_trip(frame, u16::from(seed) * 257);
});
