//! Decapsulation checks: validate a received tunnel frame and say where its inner frame is.
//!
//! Contract: [`decap_vxlan`] and [`decap_ipip`] take a whole received Ethernet frame, read only,
//! and either return the offset and length of the inner frame in that same buffer (so the caller
//! strips the outer headers by moving its start: no copy) with the outer addresses, or the first
//! check that failed as a [`DecapError`]. Each variant names one reason, so the switch can count
//! drops per reason. They allocate nothing and never panic.
//!
//! VXLAN checks, in this order: outer Ethernet type IPv4; outer IPv4 well formed (version, IHL,
//! total length within the frame, header checksum) and not a fragment; protocol UDP; UDP length;
//! destination port; UDP checksum 0 or valid; VXLAN header present with exactly the I flag and
//! zero reserved bits (the kernel's rules, [`vxlan::Packet::check_flags`]); the expected VNI; an
//! inner Ethernet header addressed to our VTEP MAC (the kernel's `flannel.1` drops anything
//! else, being a device with that MAC).
//!
//! IPIP checks, in this order: outer Ethernet type IPv4; the outer header as
//! [`ipip::Repr::parse`] checks it (well formed, protocol 4, checksum, not a fragment, inner
//! version 4 and total length within the outer packet); then the inner header length and header
//! checksum.
//!
//! Ethernet padding after the outer IPv4 total length (or the UDP length) is ignored. For IPIP
//! the inner IPv4 packet starts [`IPIP_ENCAP_LEN`] or more bytes into the frame, so the caller
//! can write an Ethernet header for it in place, over the end of the outer IPv4 header.
//!
//! Non-goals: the peer check (the outer source must be a configured peer) and the outer
//! destination check (it must be our node IP), both done by the caller with the tunnel table on
//! the returned addresses; ECN decapsulation (RFC 6040: an outer CE marking the inner packet) and
//! the outer TTL; outer IP options beyond skipping them; outer VLAN tags; reassembly of outer
//! fragments (dropped, as DF-clear VXLAN never needs fragmenting when MTUs are set right).

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::checksum;
use crate::encap::{ETHERTYPE_IPV4, ETH_HEADER_LEN, IPIP_ENCAP_LEN, IPPROTO_UDP};
use crate::ipip::{self, OuterPacket};
use crate::vxlan::{self, VXLAN_HEADER_LEN};

const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

/// Why a tunnel frame was not decapsulated. Each variant is one drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecapError {
    /// The frame ends before the outer Ethernet, IPv4 or UDP header, or before the outer IPv4
    /// total length.
    #[error("outer headers truncated")]
    OuterTruncated,
    /// The outer Ethernet type is not IPv4 (VLAN tags included).
    #[error("outer Ethernet type {0:#06x} is not IPv4")]
    NotIpv4(u16),
    /// The outer IP version is not 4.
    #[error("outer IP version {0}, expected 4")]
    BadIpVersion(u8),
    /// The outer IHL is below 5; the value is the header length in bytes.
    #[error("outer IPv4 header length {0} bytes, below 20")]
    BadIpHeaderLen(u8),
    /// The outer IPv4 total length is shorter than the outer header.
    #[error("outer IPv4 total length {0} shorter than its header")]
    BadIpTotalLen(u16),
    /// The outer IPv4 header checksum is wrong.
    #[error("outer IPv4 header checksum mismatch")]
    BadIpChecksum,
    /// The outer IPv4 packet is a fragment.
    #[error("outer IPv4 packet is a fragment")]
    Fragmented,
    /// The outer IP protocol is not the tunnel's (17 for VXLAN, 4 for IPIP).
    #[error("outer IP protocol {0} is not the tunnel's")]
    WrongProtocol(u8),
    /// The UDP length field is below 8 or beyond the IPv4 payload.
    #[error("UDP length {0} invalid")]
    BadUdpLength(u16),
    /// The UDP destination port is not the VXLAN port.
    #[error("UDP destination port {0} is not the VXLAN port")]
    WrongPort(u16),
    /// The UDP checksum is neither 0 nor correct.
    #[error("outer UDP checksum mismatch")]
    BadUdpChecksum,
    /// The UDP payload is shorter than a VXLAN header.
    #[error("VXLAN header truncated")]
    VxlanTruncated,
    /// The VXLAN flags byte is not exactly the I flag.
    #[error("bad VXLAN flags {0:#04x}")]
    BadVxlanFlags(u8),
    /// A reserved bit of the VXLAN header is set.
    #[error("VXLAN reserved bits set")]
    VxlanReservedBits,
    /// The VNI is not ours.
    #[error("VNI {0} is not ours")]
    WrongVni(u32),
    /// The inner frame is shorter than an Ethernet header (VXLAN), or the inner IPv4 packet is
    /// shorter than its header or its total length (IPIP).
    #[error("inner frame truncated")]
    InnerTruncated,
    /// The inner destination MAC is not our VTEP MAC.
    #[error("inner destination MAC {0:02x?} is not our VTEP MAC")]
    WrongInnerMac([u8; 6]),
    /// (IPIP) The inner packet's IP version is not 4.
    #[error("inner packet is not IPv4")]
    InnerNotIpv4,
    /// (IPIP) The inner IHL is below 5 or the header reaches past the inner total length.
    #[error("inner IPv4 header length invalid")]
    InnerBadHeaderLen,
    /// (IPIP) The inner IPv4 header checksum is wrong.
    #[error("inner IPv4 header checksum mismatch")]
    InnerBadChecksum,
}

/// What a VXLAN frame must match to be ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanExpect {
    /// The UDP destination port ([`vxlan::FLANNEL_UDP_PORT`] for flannel).
    pub port: u16,
    /// Our VNI ([`vxlan::FLANNEL_VNI`] for flannel).
    pub vni: u32,
    /// Our VTEP MAC: the inner destination MAC peers send to.
    pub vtep_mac: [u8; 6],
}

/// A VXLAN frame that passed [`decap_vxlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanDecap {
    /// Offset of the inner Ethernet frame in the received frame.
    pub inner_offset: usize,
    /// Length of the inner Ethernet frame (to the end of the UDP datagram).
    pub inner_len: usize,
    /// The VNI.
    pub vni: u32,
    /// The outer source address: must be a configured peer (the caller checks).
    pub outer_src: Ipv4Addr,
    /// The outer destination address: should be our node IP (the caller checks).
    pub outer_dst: Ipv4Addr,
}

/// An IPIP frame that passed [`decap_ipip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpipDecap {
    /// Offset of the inner IPv4 packet in the received frame (at least [`IPIP_ENCAP_LEN`]).
    pub inner_offset: usize,
    /// Length of the inner IPv4 packet: its total length.
    pub inner_len: usize,
    /// The outer source address: must be a configured peer (the caller checks).
    pub outer_src: Ipv4Addr,
    /// The outer destination address: should be our node IP (the caller checks).
    pub outer_dst: Ipv4Addr,
}

/// The IPv4 packet of an untagged Ethernet frame, or why there is none.
fn outer_ipv4(frame: &[u8]) -> Result<&[u8], DecapError> {
    if frame.len() < ETH_HEADER_LEN {
        return Err(DecapError::OuterTruncated);
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype != ETHERTYPE_IPV4 {
        return Err(DecapError::NotIpv4(ethertype));
    }
    Ok(&frame[ETH_HEADER_LEN..])
}

/// Validates the VXLAN frame `frame` (from its outer Ethernet header) against `expect`, in the
/// order of the module docs, and returns where its inner Ethernet frame is.
pub fn decap_vxlan(frame: &[u8], expect: &VxlanExpect) -> Result<VxlanDecap, DecapError> {
    let ip = outer_ipv4(frame)?;
    // The IPIP view's accessors are those of any IPv4 header; its protocol check is not used.
    let outer = OuterPacket::new_unchecked(ip);
    if ip.len() < IPV4_HEADER_LEN {
        return Err(DecapError::OuterTruncated);
    }
    if outer.version() != 4 {
        return Err(DecapError::BadIpVersion(outer.version()));
    }
    let header_len = outer.header_len();
    if usize::from(header_len) < IPV4_HEADER_LEN {
        return Err(DecapError::BadIpHeaderLen(header_len));
    }
    if usize::from(header_len) > ip.len() {
        return Err(DecapError::OuterTruncated);
    }
    let total_len = outer.total_len();
    if total_len < u16::from(header_len) {
        return Err(DecapError::BadIpTotalLen(total_len));
    }
    if usize::from(total_len) > ip.len() {
        return Err(DecapError::OuterTruncated);
    }
    if !outer.verify_checksum() {
        return Err(DecapError::BadIpChecksum);
    }
    if outer.is_fragment() {
        return Err(DecapError::Fragmented);
    }
    if outer.protocol() != IPPROTO_UDP {
        return Err(DecapError::WrongProtocol(outer.protocol()));
    }

    let udp_offset = usize::from(header_len);
    let ip_payload = &ip[udp_offset..usize::from(total_len)];
    if ip_payload.len() < UDP_HEADER_LEN {
        return Err(DecapError::OuterTruncated);
    }
    let udp_len = u16::from_be_bytes([ip_payload[4], ip_payload[5]]);
    if usize::from(udp_len) < UDP_HEADER_LEN || usize::from(udp_len) > ip_payload.len() {
        return Err(DecapError::BadUdpLength(udp_len));
    }
    let udp = &ip_payload[..usize::from(udp_len)];
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    if dst_port != expect.port {
        return Err(DecapError::WrongPort(dst_port));
    }
    let (outer_src, outer_dst) = (outer.src_addr(), outer.dst_addr());
    if udp[6..8] != [0, 0] {
        let pseudo = checksum::pseudo_header_v4(outer_src, outer_dst, IPPROTO_UDP, udp_len);
        if checksum::combine(&[pseudo, checksum::sum(udp)]) != 0xffff {
            return Err(DecapError::BadUdpChecksum);
        }
    }

    let packet = vxlan::Packet::new_checked(&udp[UDP_HEADER_LEN..])
        .map_err(|_| DecapError::VxlanTruncated)?;
    let repr = vxlan::Repr::parse(&packet).map_err(|e| match e {
        vxlan::Error::Truncated => DecapError::VxlanTruncated,
        vxlan::Error::BadFlags(flags) => DecapError::BadVxlanFlags(flags),
        vxlan::Error::ReservedBitsSet => DecapError::VxlanReservedBits,
    })?;
    if repr.vni != expect.vni {
        return Err(DecapError::WrongVni(repr.vni));
    }
    let inner = packet.payload();
    if inner.len() < ETH_HEADER_LEN {
        return Err(DecapError::InnerTruncated);
    }
    let mut dst_mac = [0; 6];
    dst_mac.copy_from_slice(&inner[..6]);
    if dst_mac != expect.vtep_mac {
        return Err(DecapError::WrongInnerMac(dst_mac));
    }
    Ok(VxlanDecap {
        inner_offset: ETH_HEADER_LEN + udp_offset + UDP_HEADER_LEN + VXLAN_HEADER_LEN,
        inner_len: inner.len(),
        vni: repr.vni,
        outer_src,
        outer_dst,
    })
}

/// Validates the IPIP frame `frame` (from its outer Ethernet header), in the order of the module
/// docs, and returns where its inner IPv4 packet is.
pub fn decap_ipip(frame: &[u8]) -> Result<IpipDecap, DecapError> {
    let ip = outer_ipv4(frame)?;
    let outer = OuterPacket::new_checked(ip).map_err(ipip_error)?;
    let repr = ipip::Repr::parse(&outer).map_err(ipip_error)?;
    let inner = &outer.inner()[..repr.payload_len];
    // Repr::parse checked the version and that the total length fits; its value is at least 20.
    let total_len = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
    let header_len = usize::from(inner[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN || header_len > total_len {
        return Err(DecapError::InnerBadHeaderLen);
    }
    if checksum::sum(&inner[..header_len]) != 0xffff {
        return Err(DecapError::InnerBadChecksum);
    }
    Ok(IpipDecap {
        inner_offset: ETH_HEADER_LEN + usize::from(outer.header_len()),
        inner_len: total_len,
        outer_src: repr.src_addr,
        outer_dst: repr.dst_addr,
    })
}

fn ipip_error(e: ipip::Error) -> DecapError {
    match e {
        ipip::Error::Truncated => DecapError::OuterTruncated,
        ipip::Error::BadVersion(v) => DecapError::BadIpVersion(v),
        ipip::Error::BadHeaderLen(len) => DecapError::BadIpHeaderLen(len),
        ipip::Error::BadTotalLen(len) => DecapError::BadIpTotalLen(len),
        ipip::Error::WrongProtocol(p) => DecapError::WrongProtocol(p),
        ipip::Error::BadChecksum => DecapError::BadIpChecksum,
        ipip::Error::Fragmented => DecapError::Fragmented,
        ipip::Error::InnerTruncated => DecapError::InnerTruncated,
        ipip::Error::InnerNotIpv4 => DecapError::InnerNotIpv4,
        // Only building an outer header fails so; a parsed outer packet always fits.
        ipip::Error::InnerTooLong => DecapError::InnerTruncated,
    }
}

const _: () = assert!(IPIP_ENCAP_LEN == ETH_HEADER_LEN + IPV4_HEADER_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::{
        encap_ipip, encap_vxlan, IpipPeer, IpipTemplate, VxlanPeer, VxlanTemplate, VXLAN_ENCAP_LEN,
    };

    const NODE_A_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x01];
    const NODE_B_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
    const VTEP_A: [u8; 6] = [0x0e, 0, 0, 0x77, 0x01, 0x01];
    const VTEP_B: [u8; 6] = [0x0e, 0, 0, 0x77, 0x02, 0x02];
    const NODE_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
    const NODE_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);

    const EXPECT_B: VxlanExpect = VxlanExpect {
        port: vxlan::FLANNEL_UDP_PORT,
        vni: vxlan::FLANNEL_VNI,
        vtep_mac: VTEP_B,
    };

    /// An Ethernet frame with an IPv4 UDP packet 10.244.1.2:1234 -> 10.244.2.2:80, TTL 63, DF.
    fn inner_frame(dst_mac: [u8; 6], payload_len: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&VTEP_A);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (28 + payload_len) as u16;
        f.extend_from_slice(&[0x45, 0x00]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[
            0x00, 0x07, 0x40, 0x00, 63, 17, 0, 0, 10, 244, 1, 2, 10, 244, 2, 2,
        ]);
        let c = !checksum::sum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[0x04, 0xd2, 0, 80]);
        f.extend_from_slice(&(8 + payload_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..payload_len).map(|i| i as u8));
        f
    }

    /// A VXLAN frame from node A to node B around `inner_frame(VTEP_B, 20)`.
    fn vxlan_frame(udp_checksum: bool) -> Vec<u8> {
        let inner = inner_frame(VTEP_B, 20);
        let mut buf = vec![0; VXLAN_ENCAP_LEN];
        buf.extend_from_slice(&inner);
        let peer = VxlanPeer {
            udp_checksum,
            ..VxlanPeer::flannel(NODE_A_MAC, NODE_B_MAC, NODE_A, NODE_B)
        };
        let t = VxlanTemplate::new(&peer).unwrap();
        let span = encap_vxlan(&mut buf, VXLAN_ENCAP_LEN, inner.len(), &t, 42).unwrap();
        buf[span.range()].to_vec()
    }

    fn ipip_frame() -> Vec<u8> {
        let inner = inner_frame(NODE_B_MAC, 20);
        let mut buf = vec![0; 20];
        buf.extend_from_slice(&inner);
        let t = IpipTemplate::new(&IpipPeer {
            outer_src_mac: NODE_A_MAC,
            outer_dst_mac: NODE_B_MAC,
            src_ip: NODE_A,
            dst_ip: NODE_B,
        });
        let span = encap_ipip(&mut buf, 20, inner.len(), &t, 42).unwrap();
        buf[span.range()].to_vec()
    }

    /// Refills the outer IPv4 header checksum of a frame.
    fn fix_ip_checksum(frame: &mut [u8]) {
        let header_len = usize::from(frame[14] & 0x0f) * 4;
        frame[24..26].copy_from_slice(&[0, 0]);
        let c = !checksum::sum(&frame[14..14 + header_len]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
    }

    /// Refills the outer UDP checksum of a VXLAN frame without options (0 stays 0).
    fn fix_udp_checksum(frame: &mut [u8]) {
        if frame[40..42] == [0, 0] {
            return;
        }
        frame[40..42].copy_from_slice(&[0, 0]);
        let udp_len = u16::from_be_bytes([frame[38], frame[39]]);
        let pseudo = checksum::pseudo_header_v4(NODE_A, NODE_B, 17, udp_len);
        let end = frame.len().min(34 + usize::from(udp_len));
        let sum = checksum::combine(&[pseudo, checksum::sum(&frame[34..end])]);
        let c = if !sum == 0 { 0xffff } else { !sum };
        frame[40..42].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn vxlan_round_trip() {
        for udp_checksum in [true, false] {
            let frame = vxlan_frame(udp_checksum);
            let d = decap_vxlan(&frame, &EXPECT_B).unwrap();
            assert_eq!(
                d,
                VxlanDecap {
                    inner_offset: 50,
                    inner_len: 62,
                    vni: 1,
                    outer_src: NODE_A,
                    outer_dst: NODE_B
                }
            );
            assert_eq!(
                &frame[d.inner_offset..d.inner_offset + d.inner_len],
                &inner_frame(VTEP_B, 20)[..]
            );
        }
    }

    #[test]
    fn vxlan_padding_ignored() {
        let mut frame = vxlan_frame(true);
        frame.extend_from_slice(&[0xaa; 10]);
        assert_eq!(decap_vxlan(&frame, &EXPECT_B).unwrap().inner_len, 62);
        // A UDP length shorter than the IP payload trims the datagram, as the kernel does.
        let mut frame = vxlan_frame(false);
        frame[38..40].copy_from_slice(&(8 + 8 + 14u16).to_be_bytes());
        assert_eq!(decap_vxlan(&frame, &EXPECT_B).unwrap().inner_len, 14);
    }

    #[test]
    fn vxlan_outer_ip_options_skipped() {
        let frame = vxlan_frame(false);
        let mut with_opts = frame[..34].to_vec();
        with_opts.extend_from_slice(&[1, 1, 1, 0]);
        with_opts.extend_from_slice(&frame[34..]);
        with_opts[14] = 0x46;
        let total = u16::from_be_bytes([with_opts[16], with_opts[17]]) + 4;
        with_opts[16..18].copy_from_slice(&total.to_be_bytes());
        fix_ip_checksum(&mut with_opts);
        let d = decap_vxlan(&with_opts, &EXPECT_B).unwrap();
        assert_eq!((d.inner_offset, d.inner_len), (54, 62));
    }

    /// A named patch of a good frame, whether to refill the checksums after it, and the error.
    type Case = (
        &'static str,
        Box<dyn FnOnce(&mut Vec<u8>)>,
        bool,
        DecapError,
    );

    /// Patches a good VXLAN frame (UDP checksum on), refixes the checksums unless told not to, and
    /// decapsulates it.
    fn vxlan_with(patch: impl FnOnce(&mut Vec<u8>), refix: bool) -> Result<VxlanDecap, DecapError> {
        let mut frame = vxlan_frame(true);
        patch(&mut frame);
        if refix && frame.len() >= 34 {
            fix_ip_checksum(&mut frame);
            if frame.len() >= 42 && frame[23] == 17 {
                fix_udp_checksum(&mut frame);
            }
        }
        decap_vxlan(&frame, &EXPECT_B)
    }

    #[test]
    fn vxlan_each_error() {
        use DecapError::*;
        let cases: Vec<Case> = vec![
            (
                "no Ethernet header",
                Box::new(|f| f.truncate(13)),
                false,
                OuterTruncated,
            ),
            (
                "ARP",
                Box::new(|f| f[12..14].copy_from_slice(&[0x08, 0x06])),
                false,
                NotIpv4(0x0806),
            ),
            (
                "VLAN tag",
                Box::new(|f| f[12..14].copy_from_slice(&[0x81, 0x00])),
                false,
                NotIpv4(0x8100),
            ),
            (
                "short IPv4",
                Box::new(|f| f.truncate(14 + 19)),
                false,
                OuterTruncated,
            ),
            (
                "IPv6 version",
                Box::new(|f| f[14] = 0x65),
                true,
                BadIpVersion(6),
            ),
            (
                "IHL 4",
                Box::new(|f| f[14] = 0x44),
                true,
                BadIpHeaderLen(16),
            ),
            (
                "total length 19",
                Box::new(|f| f[16..18].copy_from_slice(&19u16.to_be_bytes())),
                true,
                BadIpTotalLen(19),
            ),
            (
                "total length past the frame",
                Box::new(|f| {
                    let n = f.len() as u16 - 13;
                    f[16..18].copy_from_slice(&n.to_be_bytes())
                }),
                true,
                OuterTruncated,
            ),
            (
                "frame cut short",
                Box::new(|f| {
                    f.pop();
                }),
                false,
                OuterTruncated,
            ),
            (
                "IP checksum",
                Box::new(|f| f[22] = 63),
                false,
                BadIpChecksum,
            ),
            ("MF", Box::new(|f| f[20] = 0x20), true, Fragmented),
            ("offset", Box::new(|f| f[21] = 0x01), true, Fragmented),
            ("TCP", Box::new(|f| f[23] = 6), true, WrongProtocol(6)),
            (
                "no UDP header",
                Box::new(|f| {
                    f.truncate(14 + 20 + 7);
                    f[16..18].copy_from_slice(&27u16.to_be_bytes())
                }),
                true,
                OuterTruncated,
            ),
            (
                "UDP length 7",
                Box::new(|f| f[38..40].copy_from_slice(&7u16.to_be_bytes())),
                true,
                BadUdpLength(7),
            ),
            (
                "UDP length past IP",
                Box::new(|f| {
                    let n = f.len() as u16 - 33;
                    f[38..40].copy_from_slice(&n.to_be_bytes())
                }),
                true,
                BadUdpLength(79),
            ),
            (
                "port 4789",
                Box::new(|f| f[36..38].copy_from_slice(&4789u16.to_be_bytes())),
                true,
                WrongPort(4789),
            ),
            (
                "UDP checksum",
                Box::new(|f| f[40] ^= 0x01),
                false,
                BadUdpChecksum,
            ),
            (
                "payload changed under the UDP checksum",
                Box::new(|f| {
                    let n = f.len();
                    f[n - 1] ^= 0x01
                }),
                false,
                BadUdpChecksum,
            ),
            (
                "no VXLAN header",
                Box::new(|f| {
                    f.truncate(14 + 20 + 8 + 7);
                    f[16..18].copy_from_slice(&35u16.to_be_bytes());
                    f[38..40].copy_from_slice(&15u16.to_be_bytes())
                }),
                true,
                VxlanTruncated,
            ),
            (
                "flags 0x00",
                Box::new(|f| f[42] = 0x00),
                true,
                BadVxlanFlags(0x00),
            ),
            (
                "flags 0x88 (GBP)",
                Box::new(|f| f[42] = 0x88),
                true,
                BadVxlanFlags(0x88),
            ),
            (
                "reserved after flags",
                Box::new(|f| f[44] = 0x01),
                true,
                VxlanReservedBits,
            ),
            (
                "reserved after VNI",
                Box::new(|f| f[49] = 0x01),
                true,
                VxlanReservedBits,
            ),
            ("VNI 2", Box::new(|f| f[48] = 2), true, WrongVni(2)),
            (
                "VNI 0x010001",
                Box::new(|f| f[46] = 1),
                true,
                WrongVni(0x01_0001),
            ),
            (
                "inner 13 bytes",
                Box::new(|f| {
                    f.truncate(50 + 13);
                    f[16..18].copy_from_slice(&(36u16 + 13).to_be_bytes());
                    f[38..40].copy_from_slice(&(16u16 + 13).to_be_bytes())
                }),
                true,
                InnerTruncated,
            ),
            (
                "inner to node A's VTEP",
                Box::new(|f| f[50..56].copy_from_slice(&VTEP_A)),
                true,
                WrongInnerMac(VTEP_A),
            ),
            (
                "inner broadcast",
                Box::new(|f| f[50..56].copy_from_slice(&[0xff; 6])),
                true,
                WrongInnerMac([0xff; 6]),
            ),
        ];
        for (name, patch, refix, expected) in cases {
            assert_eq!(vxlan_with(patch, refix), Err(expected), "{name}");
        }
        // A zero UDP checksum is "none": accepted with the payload changed.
        let mut frame = vxlan_frame(false);
        frame[60] ^= 0xff;
        assert!(decap_vxlan(&frame, &EXPECT_B).is_ok());
        // Another port, VNI and MAC are accepted when expected.
        let mut frame = vxlan_frame(false);
        frame[36..38].copy_from_slice(&4789u16.to_be_bytes());
        frame[47..49].copy_from_slice(&[0x12, 0x34]);
        let expect = VxlanExpect {
            port: 4789,
            vni: 0x1234,
            vtep_mac: VTEP_B,
        };
        assert_eq!(decap_vxlan(&frame, &expect).map(|d| d.vni), Ok(0x1234));
    }

    #[test]
    fn ipip_round_trip() {
        let frame = ipip_frame();
        let d = decap_ipip(&frame).unwrap();
        assert_eq!(
            d,
            IpipDecap {
                inner_offset: 34,
                inner_len: 48,
                outer_src: NODE_A,
                outer_dst: NODE_B
            }
        );
        assert_eq!(&frame[34..], &inner_frame(NODE_B_MAC, 20)[14..]);
        // Padding after the outer packet is ignored.
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0; 12]);
        assert_eq!(decap_ipip(&padded), Ok(d));
    }

    /// Patches a good IPIP frame, refills the outer checksum if told, and decapsulates it.
    fn ipip_with(patch: impl FnOnce(&mut Vec<u8>), refix: bool) -> Result<IpipDecap, DecapError> {
        let mut frame = ipip_frame();
        patch(&mut frame);
        if refix {
            fix_ip_checksum(&mut frame);
        }
        decap_ipip(&frame)
    }

    /// Refills the inner IPv4 header checksum (inner at 34, no outer options).
    fn fix_inner(frame: &mut [u8]) {
        let header_len = (usize::from(frame[34] & 0x0f) * 4).max(20);
        frame[44..46].copy_from_slice(&[0, 0]);
        let c = !checksum::sum(&frame[34..34 + header_len]);
        frame[44..46].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn ipip_each_error() {
        use DecapError::*;
        let cases: Vec<Case> = vec![
            (
                "no Ethernet header",
                Box::new(|f| f.truncate(10)),
                false,
                OuterTruncated,
            ),
            (
                "IPv6",
                Box::new(|f| f[12..14].copy_from_slice(&[0x86, 0xdd])),
                false,
                NotIpv4(0x86dd),
            ),
            (
                "short IPv4",
                Box::new(|f| f.truncate(30)),
                false,
                OuterTruncated,
            ),
            (
                "version 6",
                Box::new(|f| f[14] = 0x65),
                true,
                BadIpVersion(6),
            ),
            (
                "IHL 3",
                Box::new(|f| f[14] = 0x43),
                true,
                BadIpHeaderLen(12),
            ),
            (
                "total length 10",
                Box::new(|f| f[16..18].copy_from_slice(&10u16.to_be_bytes())),
                true,
                BadIpTotalLen(10),
            ),
            (
                "frame cut short",
                Box::new(|f| {
                    f.pop();
                }),
                false,
                OuterTruncated,
            ),
            (
                "protocol 41",
                Box::new(|f| f[23] = 41),
                true,
                WrongProtocol(41),
            ),
            (
                "outer checksum",
                Box::new(|f| f[22] ^= 1),
                false,
                BadIpChecksum,
            ),
            ("MF", Box::new(|f| f[20] = 0x20), true, Fragmented),
            (
                "inner 8 bytes",
                Box::new(|f| {
                    f.truncate(42);
                    f[16..18].copy_from_slice(&28u16.to_be_bytes())
                }),
                true,
                InnerTruncated,
            ),
            (
                "inner total length past outer",
                Box::new(|f| {
                    f[37] += 1;
                    fix_inner(f)
                }),
                true,
                InnerTruncated,
            ),
            (
                "inner IPv6",
                Box::new(|f| {
                    f[34] = 0x65;
                    fix_inner(f)
                }),
                true,
                InnerNotIpv4,
            ),
            (
                "inner IHL 4",
                Box::new(|f| {
                    f[34] = 0x44;
                    fix_inner(f)
                }),
                true,
                InnerBadHeaderLen,
            ),
            (
                "inner IHL past total",
                Box::new(|f| {
                    f[34] = 0x4f;
                    f[36..38].copy_from_slice(&40u16.to_be_bytes())
                }),
                true,
                InnerBadHeaderLen,
            ),
            (
                "inner checksum",
                Box::new(|f| f[42] ^= 1),
                true,
                InnerBadChecksum,
            ),
        ];
        for (name, patch, refix, expected) in cases {
            assert_eq!(ipip_with(patch, refix), Err(expected), "{name}");
        }
    }

    proptest::proptest! {
        /// Any bytes, and any corruption of good frames, give a value, never a panic; what is
        /// accepted lies within the frame.
        #[test]
        fn never_panics(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 0..6),
            cut in 0usize..200,
        ) {
            let mut frames = vec![noise, vxlan_frame(true), vxlan_frame(false), ipip_frame()];
            for frame in &mut frames[1..] {
                for &(at, x) in &flips {
                    let n = frame.len();
                    frame[at % n] ^= x;
                }
                frame.truncate(cut.max(1));
            }
            for frame in &frames {
                if let Ok(d) = decap_vxlan(frame, &EXPECT_B) {
                    proptest::prop_assert!(d.inner_offset + d.inner_len <= frame.len());
                }
                if let Ok(d) = decap_ipip(frame) {
                    proptest::prop_assert!(d.inner_offset + d.inner_len <= frame.len());
                }
            }
        }
    }
}
