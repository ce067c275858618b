//! Stage 1, parse: Ethernet, then ARP or IPv4, into [`Meta`]; malformed frames are dropped.
//!
//! Contract: for every pending packet, either fills `meta` (MACs, and ARP or IPv4 fields) or
//! sets `Drop` with the reason of the first check that fails, in the order documented in
//! `tests/pcap/README.md`. Reads frame bytes only. Ethernet and IPv4 headers are sliced with
//! etherparse, ARP with smoltcp's wire view; the IPv4 header checksum is verified here.

use super::{ArpMeta, Ipv4Meta, Meta, PacketCtx, Verdict, L3};
use crate::frame::FrameArena;
use crate::mac::MacAddr;
use crate::reason::DropReason;
use etherparse::err::ipv4::{HeaderError, HeaderSliceError};
use etherparse::{EtherType, Ethernet2HeaderSlice, Ipv4HeaderSlice};
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr};

const ETHERNET_LEN: usize = 14;

/// Parses every pending packet of `batch`.
pub fn run(arena: &FrameArena, batch: &mut [PacketCtx]) {
    for p in batch.iter_mut().filter(|p| p.verdict == Verdict::Pending) {
        match parse_frame(arena.data(p.desc)) {
            Ok(meta) => p.meta = meta,
            Err(reason) => p.verdict = Verdict::Drop(reason),
        }
    }
}

/// Parses one frame.
pub fn parse_frame(frame: &[u8]) -> Result<Meta, DropReason> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| DropReason::TruncatedEthernet)?;
    let mut meta = Meta {
        dst_mac: MacAddr(eth.destination()),
        src_mac: MacAddr(eth.source()),
        l3: L3::None,
    };
    let payload = &frame[ETHERNET_LEN..];
    meta.l3 = match eth.ether_type() {
        EtherType::IPV4 => L3::Ipv4(parse_ipv4(payload)?),
        EtherType::ARP => L3::Arp(parse_arp(payload)?),
        EtherType::VLAN_TAGGED_FRAME | EtherType::PROVIDER_BRIDGING => {
            return Err(DropReason::VlanUnsupported)
        }
        EtherType::IPV6 => return Err(DropReason::Ipv6Unsupported),
        _ => return Err(DropReason::UnsupportedEthertype),
    };
    Ok(meta)
}

fn parse_arp(payload: &[u8]) -> Result<ArpMeta, DropReason> {
    let packet = ArpPacket::new_checked(payload).map_err(|_| DropReason::MalformedArp)?;
    match ArpRepr::parse(&packet).map_err(|_| DropReason::MalformedArp)? {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => {
            let op = match operation {
                ArpOperation::Request => 1,
                ArpOperation::Reply => 2,
                _ => return Err(DropReason::MalformedArp),
            };
            Ok(ArpMeta {
                op,
                sender_mac: MacAddr(source_hardware_addr.0),
                sender_ip: source_protocol_addr,
                target_ip: target_protocol_addr,
            })
        }
        _ => Err(DropReason::MalformedArp),
    }
}

fn parse_ipv4(payload: &[u8]) -> Result<Ipv4Meta, DropReason> {
    let ip = Ipv4HeaderSlice::from_slice(payload).map_err(|e| match e {
        HeaderSliceError::Len(_) => DropReason::TruncatedIpv4,
        HeaderSliceError::Content(HeaderError::UnexpectedVersion { .. }) => {
            DropReason::BadIpv4Version
        }
        HeaderSliceError::Content(HeaderError::HeaderLengthSmallerThanHeader { .. }) => {
            DropReason::BadIpv4HeaderLength
        }
    })?;
    let header_len = ip.slice().len();
    let total_len = ip.total_len() as usize;
    if total_len < header_len || total_len > payload.len() {
        return Err(DropReason::BadIpv4TotalLength);
    }
    if vtep::checksum::sum(ip.slice()) != 0xffff {
        return Err(DropReason::BadIpv4Checksum);
    }
    let fragment_offset = ip.fragments_offset().value();
    let protocol = ip.protocol().0;
    let icmp_type = (protocol == 1 && fragment_offset == 0 && total_len > header_len)
        .then(|| payload[header_len]);
    Ok(Ipv4Meta {
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        header_len: header_len as u8,
        total_len: total_len as u16,
        ttl: ip.ttl(),
        protocol,
        dont_fragment: ip.dont_fragment(),
        fragment_offset,
        more_fragments: ip.more_fragments(),
        icmp_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn parses_ipv4_and_arp() {
        let f = ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[0; 8]);
        let m = parse_frame(&f).unwrap();
        let L3::Ipv4(ip) = m.l3 else { panic!() };
        assert_eq!(
            (ip.src, ip.dst, ip.ttl, ip.protocol),
            (POD1_IP, POD2_IP, 64, 17)
        );
        assert_eq!((ip.header_len, ip.total_len, ip.icmp_type), (20, 28, None));
        let a = arp_request(POD1_MAC, POD1_IP, GW_IP);
        let L3::Arp(arp) = parse_frame(&a).unwrap().l3 else {
            panic!()
        };
        assert_eq!((arp.op, arp.sender_ip, arp.target_ip), (1, POD1_IP, GW_IP));
    }

    #[test]
    fn rejects_each_malformation_with_its_reason() {
        let good = ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[0; 8]);
        let cases: Vec<(Vec<u8>, DropReason)> = vec![
            (good[..13].to_vec(), DropReason::TruncatedEthernet),
            (good[..30].to_vec(), DropReason::TruncatedIpv4),
            (patched(&good, 14, 0x65), DropReason::BadIpv4Version),
            (patched(&good, 14, 0x44), DropReason::BadIpv4HeaderLength),
            (patched(&good, 14, 0x46), DropReason::BadIpv4Checksum),
            (patched(&good, 17, 200), DropReason::BadIpv4TotalLength),
            (patched(&good, 24, 0x99), DropReason::BadIpv4Checksum),
            (patched(&good, 12, 0x86), DropReason::UnsupportedEthertype),
        ];
        for (frame, want) in cases {
            assert_eq!(parse_frame(&frame).map(|_| ()), Err(want), "{frame:02x?}");
        }
    }
}
