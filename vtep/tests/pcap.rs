//! Parses real captures (copied from `shared/pcaps`, see its README) with the vtep views, and
//! decapsulates and re-encapsulates them with `vtep::decap` and `vtep::encap`.
//!
//! - `flannel_vxlan.pcap`: two nodes wired exactly as flanneld wires them (kernel `flannel.1`,
//!   VNI 1, UDP 8472, outer UDP checksum computed), captured on the underlay.
//! - `ipip_calico.pcap`: Calico-style IPIP crafted from the kernel's ip_tunnel rules; the last
//!   three frames are negatives (wrong outer destination, truncated inner, protocol 41).
//! - `vxlan_port_8472.pcap`: tcpdump's VXLAN sample (the-tcpdump-group/tcpdump `tests/`), VNI
//!   100 on UDP 8472 with outer UDP checksum 0 and DF set, L2 traffic inside.

use std::net::Ipv4Addr;
use std::path::Path;

use vtep::checksum;
use vtep::ipip::{self, OuterPacket};
use vtep::vxlan::{self, Packet};
use vtep::{
    decap_ipip, decap_vxlan, encap_ipip, encap_vxlan, encap_vxlan_with_src_port, DecapError,
    IpipPeer, IpipTemplate, VxlanExpect, VxlanPeer, VxlanTemplate,
};

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

/// The two flannel nodes of `flannel_vxlan.pcap`: node IP, underlay MAC, VTEP MAC (`flannel.1`).
const FLANNEL_NODES: [(Ipv4Addr, [u8; 6], [u8; 6]); 2] = [
    (
        Ipv4Addr::new(192, 168, 77, 1),
        [0x02, 0x77, 0, 0, 0, 0x01],
        [0x0e, 0, 0, 0x77, 0x01, 0x01],
    ),
    (
        Ipv4Addr::new(192, 168, 77, 2),
        [0x02, 0x77, 0, 0, 0, 0x02],
        [0x0e, 0, 0, 0x77, 0x02, 0x02],
    ),
];

fn flannel_node(ip: Ipv4Addr) -> ([u8; 6], [u8; 6]) {
    let (_, mac, vtep) = FLANNEL_NODES.iter().find(|n| n.0 == ip).expect("a node");
    (*mac, *vtep)
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

#[test]
fn flannel_vxlan_frames_decapsulate() {
    for (i, frame) in read_pcap("flannel_vxlan.pcap").iter().enumerate() {
        let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
        let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
        let (_, vtep_mac) = flannel_node(dst);
        assert_eq!(frame[..6], flannel_node(dst).0, "frame {i}: outer dst MAC");
        let expect = VxlanExpect {
            port: vxlan::FLANNEL_UDP_PORT,
            vni: vxlan::FLANNEL_VNI,
            vtep_mac,
        };
        let d = decap_vxlan(frame, &expect).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(d.inner_offset, 50, "frame {i}");
        assert_eq!(d.inner_offset + d.inner_len, frame.len(), "frame {i}");
        assert_eq!(
            (d.vni, d.outer_src, d.outer_dst),
            (1, src, dst),
            "frame {i}"
        );
        // The inner frame: from the sender's VTEP MAC, carrying IPv4 between pod subnets.
        let inner = &frame[d.inner_offset..];
        assert_eq!(
            inner[6..12],
            flannel_node(src).1,
            "frame {i}: inner src MAC"
        );
        assert_eq!(be16(inner, 12), ETHERTYPE_IPV4);

        // The same frame is refused by the other node's VTEP, and on another VNI or port.
        let other = VxlanExpect {
            vtep_mac: flannel_node(src).1,
            ..expect
        };
        assert_eq!(
            decap_vxlan(frame, &other),
            Err(DecapError::WrongInnerMac(vtep_mac))
        );
        let vni2 = VxlanExpect { vni: 2, ..expect };
        assert_eq!(decap_vxlan(frame, &vni2), Err(DecapError::WrongVni(1)));
        let iana = VxlanExpect {
            port: vxlan::IANA_UDP_PORT,
            ..expect
        };
        assert_eq!(decap_vxlan(frame, &iana), Err(DecapError::WrongPort(8472)));
    }
}

/// Decapsulates each captured flannel frame and encapsulates its inner frame again with a
/// template built from the captured outer fields: the kernel's bytes come back exactly, UDP
/// checksum included (the kernel computed it, so do we), given the kernel's IP ID and UDP source
/// port (its port hash is keyed with a per-boot secret).
#[test]
fn flannel_vxlan_reencapsulates_byte_for_byte() {
    let frames = read_pcap("flannel_vxlan.pcap");
    for (i, frame) in frames.iter().enumerate() {
        let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
        let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
        let expect = VxlanExpect {
            port: vxlan::FLANNEL_UDP_PORT,
            vni: vxlan::FLANNEL_VNI,
            vtep_mac: flannel_node(dst).1,
        };
        let d = decap_vxlan(frame, &expect).unwrap();
        let mut outer_src_mac = [0; 6];
        outer_src_mac.copy_from_slice(&frame[6..12]);
        let mut outer_dst_mac = [0; 6];
        outer_dst_mac.copy_from_slice(&frame[..6]);
        let peer = VxlanPeer::flannel(outer_src_mac, outer_dst_mac, src, dst);
        let template = VxlanTemplate::new(&peer).unwrap();
        let (ip_id, src_port) = (be16(frame, 18), be16(frame, 34));

        // Scribble over the outer headers first: everything must be rewritten.
        let mut buf = frame.clone();
        buf[..d.inner_offset].fill(0xa5);
        let span = encap_vxlan_with_src_port(
            &mut buf,
            d.inner_offset,
            d.inner_len,
            &template,
            ip_id,
            src_port,
        )
        .unwrap();
        assert_eq!(span.range(), 0..frame.len(), "frame {i}");
        assert_eq!(
            buf, *frame,
            "frame {i}: re-encapsulation differs from the kernel's"
        );

        // With our own source port hash, only the port and the UDP checksum differ.
        let mut ours = frame.clone();
        let span = encap_vxlan(&mut ours, d.inner_offset, d.inner_len, &template, ip_id).unwrap();
        assert_eq!(span.range(), 0..frame.len());
        let port = be16(&ours, 34);
        assert!((49152..=65535).contains(&port), "frame {i}");
        assert_eq!(port, vtep::flow_src_port(&frame[d.inner_offset..]));
        let udp = &ours[34..];
        let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_UDP, udp.len() as u16);
        assert_eq!(checksum::combine(&[pseudo, checksum::sum(udp)]), 0xffff);
        for at in (0..frame.len()).filter(|at| !(34..36).contains(at) && !(40..42).contains(at)) {
            assert_eq!(ours[at], frame[at], "frame {i} byte {at}");
        }

        // Without a UDP checksum: the same bytes with 0 in its place.
        let no_csum = VxlanTemplate::new(&VxlanPeer {
            udp_checksum: false,
            ..peer
        })
        .unwrap();
        let mut zero = frame.clone();
        encap_vxlan_with_src_port(
            &mut zero,
            d.inner_offset,
            d.inner_len,
            &no_csum,
            ip_id,
            src_port,
        )
        .unwrap();
        assert_eq!(zero[40..42], [0, 0]);
        zero[40..42].copy_from_slice(&frame[40..42]);
        assert_eq!(zero, *frame, "frame {i}");
        assert_eq!(
            decap_vxlan(&zero, &expect).map(|z| z.inner_len),
            Ok(d.inner_len)
        );
    }
}

#[test]
fn calico_ipip_frames_decapsulate_and_reencapsulate() {
    let node_a = Ipv4Addr::new(192, 168, 77, 1);
    let node_b = Ipv4Addr::new(192, 168, 77, 2);
    let frames = read_pcap("ipip_calico.pcap");
    for i in [0, 1, 2, 3, 4, 5, 8] {
        let frame = &frames[i];
        let d = decap_ipip(frame).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(d.inner_offset, 34, "frame {i}");
        assert_eq!(d.inner_offset + d.inner_len, frame.len(), "frame {i}");
        let (src, dst) = if i == 1 {
            (node_b, node_a)
        } else {
            (node_a, node_b)
        };
        assert_eq!((d.outer_src, d.outer_dst), (src, dst), "frame {i}");

        // Put an Ethernet header in front of the inner packet, in place (as the switch does
        // before routing it), then encapsulate it again for the same peer.
        let mut buf = frame.clone();
        let eth = d.inner_offset - 14;
        buf[eth..eth + 12].fill(0x5a);
        buf[eth + 12..eth + 14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        buf[..eth].fill(0xa5);
        let mut outer_src_mac = [0; 6];
        outer_src_mac.copy_from_slice(&frame[6..12]);
        let mut outer_dst_mac = [0; 6];
        outer_dst_mac.copy_from_slice(&frame[..6]);
        let template = IpipTemplate::new(&IpipPeer {
            outer_src_mac,
            outer_dst_mac,
            src_ip: src,
            dst_ip: dst,
        });
        let span = encap_ipip(&mut buf, eth, 14 + d.inner_len, &template, be16(frame, 18)).unwrap();
        assert_eq!(span.range(), 0..frame.len(), "frame {i}");
        if i == 8 {
            // Inner CE: the crafted capture copies CE; the kernel writes ECT(0), and so do we.
            assert_eq!((frame[15], buf[15]), (0x03, 0x02));
            assert_eq!(checksum::sum(&buf[14..34]), 0xffff);
            buf[15] = frame[15];
            buf[24..26].copy_from_slice(&frame[24..26]);
        }
        assert_eq!(buf, *frame, "frame {i}");
    }

    // Outer fragments, a wrong outer destination (well formed: the caller's check), a truncated
    // inner packet, and protocol 41.
    assert_eq!(decap_ipip(&frames[6]), Err(DecapError::Fragmented));
    assert_eq!(decap_ipip(&frames[7]), Err(DecapError::Fragmented));
    let d = decap_ipip(&frames[9]).unwrap();
    assert_eq!(d.outer_dst, Ipv4Addr::new(192, 168, 77, 99));
    assert_eq!(decap_ipip(&frames[10]), Err(DecapError::InnerTruncated));
    assert_eq!(decap_ipip(&frames[11]), Err(DecapError::WrongProtocol(41)));
}

/// tcpdump's VXLAN sample (`vxlan_port_8472.pcap`, another implementation, L2 VXLAN): VNI 100
/// on port 8472, outer DF set, outer UDP checksum 0, inner ICMP and ARP.
#[test]
fn tcpdump_vxlan_zero_checksum_frames_decapsulate() {
    const VTEP_202: [u8; 6] = [0x00, 0x30, 0x88, 0x01, 0x00, 0x02];
    const VTEP_203: [u8; 6] = [0x00, 0x16, 0x3e, 0x37, 0xf6, 0x04];
    let frames = read_pcap("vxlan_port_8472.pcap");
    assert_eq!(frames.len(), 10);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame[40..42], [0, 0], "frame {i}: UDP checksum 0");
        assert_eq!(frame[20] & 0x40, 0x40, "frame {i}: DF set");
        let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
        let vtep_mac = if dst == Ipv4Addr::new(192, 168, 202, 1) {
            VTEP_202
        } else {
            VTEP_203
        };
        let expect = VxlanExpect {
            port: vxlan::FLANNEL_UDP_PORT,
            vni: 100,
            vtep_mac,
        };
        let result = decap_vxlan(frame, &expect);
        if i == 1 {
            // An ARP request flooded to the broadcast MAC: not for an L3 VTEP.
            assert_eq!(result, Err(DecapError::WrongInnerMac([0xff; 6])));
            continue;
        }
        let d = result.unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!((d.inner_offset, d.vni, d.outer_dst), (50, 100, dst));
        assert_eq!(d.inner_offset + d.inner_len, frame.len());
        let flannel = VxlanExpect {
            vni: vxlan::FLANNEL_VNI,
            ..expect
        };
        assert_eq!(decap_vxlan(frame, &flannel), Err(DecapError::WrongVni(100)));
    }
}
