//! The pipeline's parser, `vswitch::pipeline::parse::parse_frame`, on arbitrary frames, checked
//! against an independent reading of the bytes (the rules of `tests/pcap/README.md`); and the
//! replay report's frame description (`describe`, `field_at`, `frame_diff`).
//!
//! Invariants: no panic; Ethernet addresses are the frame's; an accepted IPv4 frame has version
//! 4, IHL >= 5, total length between the header length and the frame, a correct header checksum,
//! and its fields as reported; an accepted ARP frame is Ethernet/IPv4 ARP, request or reply;
//! a refusal names the reason the first failing check gives.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use vswitch::pipeline::parse::parse_frame;
use vswitch::pipeline::L3;
use vswitch::reason::DropReason;

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// What the parser must say about `frame`, from the bytes.
fn expected(frame: &[u8]) -> Result<(), DropReason> {
    if frame.len() < 14 {
        return Err(DropReason::TruncatedEthernet);
    }
    let p = &frame[14..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            if p.len() < 20 {
                return Err(DropReason::TruncatedIpv4);
            }
            if p[0] >> 4 != 4 {
                return Err(DropReason::BadIpv4Version);
            }
            let hl = usize::from(p[0] & 0x0f) * 4;
            if hl < 20 {
                return Err(DropReason::BadIpv4HeaderLength);
            }
            if p.len() < hl {
                return Err(DropReason::TruncatedIpv4);
            }
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            if total < hl || total > p.len() {
                return Err(DropReason::BadIpv4TotalLength);
            }
            if vtep::checksum::sum(&p[..hl]) != 0xffff {
                return Err(DropReason::BadIpv4Checksum);
            }
            Ok(())
        }
        0x0806 => {
            let ok = p.len() >= 28
                && p[0..2] == [0, 1]
                && p[2..4] == [0x08, 0x00]
                && p[4] == 6
                && p[5] == 4
                && matches!(u16::from_be_bytes([p[6], p[7]]), 1 | 2);
            if ok {
                Ok(())
            } else {
                Err(DropReason::MalformedArp)
            }
        }
        0x8100 | 0x88a8 => Err(DropReason::VlanUnsupported),
        0x86dd => Err(DropReason::Ipv6Unsupported),
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

fuzz_target!(|frame: &[u8]| {
    let got = parse_frame(frame);
    let want = expected(frame);
    match (&got, want) {
        (Ok(meta), Ok(())) => {
            assert_eq!(meta.dst_mac.0, frame[0..6]);
            assert_eq!(meta.src_mac.0, frame[6..12]);
            let p = &frame[14..];
            match meta.l3 {
                L3::Ipv4(ip) => {
                    let hl = usize::from(p[0] & 0x0f) * 4;
                    assert_eq!(usize::from(ip.header_len), hl);
                    assert_eq!(ip.total_len, u16::from_be_bytes([p[2], p[3]]));
                    let flags = u16::from_be_bytes([p[6], p[7]]);
                    assert_eq!(ip.dont_fragment, flags & 0x4000 != 0);
                    assert_eq!(ip.more_fragments, flags & 0x2000 != 0);
                    assert_eq!(ip.fragment_offset, flags & 0x1fff);
                    assert_eq!((ip.ttl, ip.protocol), (p[8], p[9]));
                    assert_eq!((ip.src, ip.dst), (addr(&p[12..16]), addr(&p[16..20])));
                    let icmp = p[9] == 1 && flags & 0x1fff == 0 && usize::from(ip.total_len) > hl;
                    assert_eq!(ip.icmp_type, icmp.then(|| p[hl]));
                }
                L3::Arp(arp) => {
                    assert_eq!(arp.op, u16::from_be_bytes([p[6], p[7]]));
                    assert_eq!(arp.sender_mac.0, p[8..14]);
                    assert_eq!(arp.sender_ip, addr(&p[14..18]));
                    assert_eq!(arp.target_ip, addr(&p[24..28]));
                }
                L3::None => panic!("accepted without a network layer"),
            }
        }
        (Err(reason), Err(want)) => assert_eq!(*reason, want, "{frame:02x?}"),
        (got, want) => panic!("parse_frame says {got:?}, the bytes say {want:?}: {frame:02x?}"),
    }

    // The replay report's helpers (their contract: `at` is a byte of the frame).
    let _ = vswitch::replay::describe(frame);
    for at in [0, 12, 14, 22, 24, 34, 42, 50] {
        if at < frame.len() {
            let _ = vswitch::replay::field_at(frame, at);
        }
    }
    let mut flipped = frame.to_vec();
    if let Some(b) = flipped.get_mut(frame.len() / 2) {
        *b ^= 0x40;
    }
    let _ = vswitch::replay::frame_diff("p", 0, 1, frame, &flipped);
    if frame.len() <= 128 {
        let _ = vswitch::replay::frame_diff("p", 0, 1, frame, &frame[..frame.len() / 2]);
    }
});
