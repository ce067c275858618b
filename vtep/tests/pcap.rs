//! Parses real captures (copied from `shared/pcaps`, see its README) with the vtep views.
//!
//! - `flannel_vxlan.pcap`: two nodes wired exactly as flanneld wires them (kernel `flannel.1`,
//!   VNI 1, UDP 8472), captured on the underlay.
//! - `ipip_calico.pcap`: Calico-style IPIP crafted from the kernel's ip_tunnel rules; the last
//!   three frames are negatives (wrong outer destination, truncated inner, protocol 41).

use std::net::Ipv4Addr;
use std::path::Path;

use vtep::checksum;
use vtep::ipip::{self, OuterPacket};
use vtep::vxlan::{self, Packet};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETH_HEADER_LEN: usize = 14;
const IPPROTO_UDP: u8 = 17;

/// The frames of a classic little-endian microsecond pcap file with Ethernet link type.
fn read_pcap(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let le_u32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(le_u32(0), 0xa1b2_c3d4, "{name}: not a little-endian pcap");
    assert_eq!(le_u32(20), 1, "{name}: link type is not Ethernet");
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let captured = le_u32(at + 8) as usize;
        assert_eq!(
            captured,
            le_u32(at + 12) as usize,
            "{name}: truncated capture"
        );
        at += 16;
        frames.push(bytes[at..at + captured].to_vec());
        at += captured;
    }
    frames
}

/// The IPv4 packet of an untagged Ethernet frame.
fn ipv4_of(frame: &[u8]) -> &[u8] {
    assert_eq!(
        u16::from_be_bytes([frame[12], frame[13]]),
        ETHERTYPE_IPV4,
        "not IPv4"
    );
    &frame[ETH_HEADER_LEN..]
}

#[test]
fn flannel_vxlan_frames_parse() {
    let frames = read_pcap("flannel_vxlan.pcap");
    assert_eq!(frames.len(), 12);
    for (i, frame) in frames.iter().enumerate() {
        let ip = ipv4_of(frame);
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert_eq!(ip[9], IPPROTO_UDP, "frame {i}");
        let udp = &ip[ihl..total_len];
        assert_eq!(
            u16::from_be_bytes([udp[2], udp[3]]),
            vxlan::FLANNEL_UDP_PORT,
            "frame {i}"
        );

        // The kernel filled in the outer UDP checksum: it verifies with our pseudo-header sum.
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_UDP, udp.len() as u16);
        assert_ne!(u16::from_be_bytes([udp[6], udp[7]]), 0, "frame {i}");
        assert_eq!(
            checksum::combine(&[pseudo, checksum::sum(udp)]),
            0xffff,
            "frame {i}"
        );

        let packet = Packet::new_checked(&udp[8..]).unwrap();
        assert_eq!(packet.flags(), vxlan::FLAG_I, "frame {i}");
        let repr = vxlan::Repr::parse(&packet).unwrap();
        assert_eq!(repr.vni, vxlan::FLANNEL_VNI, "frame {i}");

        // Re-emitting the header reproduces the kernel's bytes.
        let mut header = [0; vxlan::VXLAN_HEADER_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut header[..]));
        assert_eq!(header, udp[8..16], "frame {i}");

        // The inner Ethernet frame carries IPv4 between the pod subnets.
        let inner = packet.payload();
        assert_eq!(u16::from_be_bytes([inner[12], inner[13]]), ETHERTYPE_IPV4);
        assert_eq!(
            inner[ETH_HEADER_LEN + 12],
            10,
            "frame {i}: inner source not a pod IP"
        );
    }
}

#[test]
fn calico_ipip_frames_parse() {
    let node_a = Ipv4Addr::new(192, 168, 77, 1);
    let node_b = Ipv4Addr::new(192, 168, 77, 2);
    let frames = read_pcap("ipip_calico.pcap");
    assert_eq!(frames.len(), 12);
    let outer: Vec<_> = frames.iter().map(|f| ipv4_of(f)).collect();
    let repr = |i: usize| ipip::Repr::parse(&OuterPacket::new_checked(outer[i]).unwrap());

    // Unfragmented positives: ICMP request (DF) and reply, TCP SYN, UDP, host-to-pod, a
    // 1500-byte outer packet, ECN CE.
    for i in [0, 1, 2, 3, 4, 5, 8] {
        let packet = OuterPacket::new_checked(outer[i]).unwrap();
        assert!(packet.verify_checksum(), "frame {i}");
        let r = repr(i).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(r.payload_len, packet.inner().len(), "frame {i}");
        assert_eq!(packet.inner()[0] >> 4, 4, "frame {i}");

        // tunl0's rules rebuild the outer header from the inner packet (ident as captured).
        let built = ipip::outer_repr_for_inner(r.src_addr, r.dst_addr, r.ident, packet.inner());
        let built = built.unwrap();
        assert_eq!(
            (built.ttl, built.dont_frag),
            (r.ttl, r.dont_frag),
            "frame {i}"
        );
        if i == 8 {
            // Inner CE: the capture copies CE to the outer header; the kernel
            // (INET_ECN_encapsulate) writes ECT(0) instead, and so do we.
            assert_eq!(
                (packet.inner()[1], r.dscp_ecn, built.dscp_ecn),
                (0x03, 0x03, 0x02)
            );
        } else {
            assert_eq!(built, r, "frame {i}");
            let mut header = [0; ipip::OUTER_HEADER_LEN];
            built.emit(&mut OuterPacket::new_unchecked(&mut header[..]));
            assert_eq!(header, outer[i][..20], "frame {i}");
        }
    }
    assert_eq!(repr(0).unwrap().src_addr, node_a);
    assert_eq!(repr(1).unwrap().src_addr, node_b);
    assert_eq!(repr(5).unwrap().payload_len, 1480);
    assert_eq!(repr(8).unwrap().dscp_ecn, 0x03);

    // Outer fragments: the view parses, the Repr (decapsulation as is) refuses them.
    let first = OuterPacket::new_checked(outer[6]).unwrap();
    assert!(first.more_frags() && first.frag_offset() == 0);
    let second = OuterPacket::new_checked(outer[7]).unwrap();
    assert!(!second.more_frags() && second.frag_offset() == 1480);
    assert_eq!(repr(6), Err(ipip::Error::Fragmented));
    assert_eq!(repr(7), Err(ipip::Error::Fragmented));

    // Wrong outer destination: a well-formed packet; refusing it is the tunnel table's policy.
    let r = repr(9).unwrap();
    assert_eq!(r.dst_addr, Ipv4Addr::new(192, 168, 77, 99));
    assert_ne!(r.dst_addr, node_b);

    // Truncated inner: 8 bytes where an inner IPv4 header must be.
    assert_eq!(
        OuterPacket::new_checked(outer[10]).unwrap().inner().len(),
        8
    );
    assert_eq!(repr(10), Err(ipip::Error::InnerTruncated));

    // Protocol 41 (IPv6 in IPv4) is not IPIP.
    assert_eq!(
        OuterPacket::new_checked(outer[11]),
        Err(ipip::Error::WrongProtocol(41))
    );
}
