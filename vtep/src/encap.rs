//! Encapsulation in place: a prebuilt outer header per peer, copied in front of a frame and
//! patched per packet (VPP's "rewrite").
//!
//! ```text
//! VXLAN, 50 bytes written before the inner Ethernet frame, which stays where it is:
//!
//!   headroom ........ | outer Ethernet 14 | outer IPv4 20 | UDP 8 | VXLAN 8 | inner Ethernet frame |
//!                     ^ returned start                                      ^ inner_start
//!
//! IPIP, 34 bytes written over the frame's Ethernet header and the 20 bytes before it:
//!
//!   headroom ... | outer Ethernet 14 | outer IPv4 20 | inner IPv4 packet |
//!                ^ frame_start - 20    ^ frame_start - 6  ^ frame_start + 14
//! ```
//!
//! Contract:
//!
//! - A template ([`VxlanTemplate`], [`IpipTemplate`]) is built once per peer on the control path
//!   from a peer description ([`VxlanPeer`], [`IpipPeer`]). It holds the outer header bytes with
//!   every per-peer field filled in, and the partial checksums of those fields, so the per-packet
//!   work is one copy, a few 16-bit stores and a checksum combine.
//! - [`encap_vxlan`] and [`encap_ipip`] work in place on a buffer the caller owns, writing only
//!   into the headroom before the frame (and, for IPIP, over the inner Ethernet header); the
//!   payload is never moved. They return where the encapsulated frame now lies ([`FrameSpan`]).
//!   They allocate nothing, read no clock and never panic; a frame they cannot encapsulate is an
//!   [`EncapError`] and the buffer is then left untouched.
//! - VXLAN outer headers follow the Linux kernel's `vxlan` device as flanneld configures it
//!   (`flannel.1`): IPv4 TTL 64, DF clear, DSCP 0, ECN from the inner IPv4 packet
//!   ([`ipip::encap_ecn`], as `ip_tunnel_ecn_encap` does), the identification the caller passes,
//!   UDP source port from a hash of the inner flow ([`flow_src_port`]), UDP checksum computed
//!   (0xffff when it comes out 0, RFC 768) or 0 when the peer says so, VXLAN flags 0x08 and the VNI.
//! - IPIP outer headers follow the kernel's `tunl0` as Calico uses it, through
//!   [`ipip::outer_repr_for_inner`]: TTL and DF from the inner packet, ECN per [`ipip::encap_ecn`].
//!
//! The IPv4 identification must differ between packets to the same peer that may be fragmented
//! (all VXLAN packets: DF is clear); a per-peer or per-worker counter is what the kernel does.
//!
//! Non-goals: choosing the tunnel or the next-hop MAC (the tunnel table and ARP), the MTU check
//! and ICMP fragmentation-needed (the caller compares the frame with the tunnel MTU first), the
//! inner MACs of a VXLAN frame (set by the router before encapsulation: source = our VTEP MAC,
//! destination = the remote VTEP MAC), outer IP options, VLAN tags, IPv6, and checksum offload.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::checksum;
use crate::ipip;
use crate::vxlan::{self, VNI_MAX, VXLAN_HEADER_LEN};

/// Length of an Ethernet header without VLAN tags.
pub const ETH_HEADER_LEN: usize = 14;
/// The Ethernet type of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// The IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// Bytes [`encap_vxlan`] writes before the inner Ethernet frame: outer Ethernet (14), IPv4 (20),
/// UDP (8), VXLAN (8). The headroom a VXLAN frame needs.
pub const VXLAN_ENCAP_LEN: usize =
    ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
/// Bytes [`encap_ipip`] writes: outer Ethernet (14) and outer IPv4 (20).
pub const IPIP_ENCAP_LEN: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN;
/// Headroom an IPIP frame needs before its Ethernet header: the frame grows by the outer IPv4
/// header, as the inner Ethernet header is replaced by the outer one.
pub const IPIP_HEADROOM: usize = IPV4_HEADER_LEN;
/// The outer IPv4 TTL of VXLAN packets (the kernel's default hop limit, as `flannel.1` has no TTL
/// configured).
pub const VXLAN_TTL: u8 = 64;
/// The lowest VXLAN UDP source port [`flow_src_port`] returns (the IANA dynamic range, the range
/// RFC 7348 §5 recommends).
pub const SRC_PORT_MIN: u16 = 49152;
/// The highest VXLAN UDP source port [`flow_src_port`] returns.
pub const SRC_PORT_MAX: u16 = 65535;

const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

/// Why a frame could not be encapsulated (or a template built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncapError {
    /// Fewer bytes before the frame than the outer headers need.
    #[error("no headroom: {needed} bytes needed before the frame, {available} available")]
    NoHeadroom {
        /// The headroom the encapsulation needs.
        needed: usize,
        /// The bytes before the frame in the buffer.
        available: usize,
    },
    /// The frame's start and length reach past the end of the buffer.
    #[error("frame out of the buffer's bounds")]
    OutOfBounds,
    /// The inner frame is shorter than an Ethernet header, or (IPIP) the inner IPv4 packet is
    /// shorter than its header or than its total length field.
    #[error("inner frame truncated")]
    InnerTruncated,
    /// (IPIP) The frame does not carry IPv4: another Ethernet type, or IP version not 4.
    #[error("inner frame is not IPv4")]
    NotIpv4,
    /// (IPIP) The inner IPv4 header length is below 20 bytes or beyond the total length.
    #[error("inner IPv4 header length invalid")]
    InnerBadHeaderLen,
    /// The outer IPv4 packet would be longer than 65535 bytes.
    #[error("encapsulated packet longer than 65535 bytes")]
    TooLong,
    /// (template) The VNI does not fit in 24 bits.
    #[error("VNI {0} wider than 24 bits")]
    BadVni(u32),
}

/// Where an encapsulated frame lies in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameSpan {
    /// Offset of the outer Ethernet header.
    pub start: usize,
    /// Length of the frame from `start`.
    pub len: usize,
}

impl FrameSpan {
    /// The offset one past the frame's last byte.
    pub const fn end(&self) -> usize {
        self.start + self.len
    }

    /// The frame as a range of the buffer.
    pub const fn range(&self) -> core::ops::Range<usize> {
        self.start..self.end()
    }
}

/// Byte positions in the outer headers, from the start of the outer Ethernet header.
mod field {
    use core::ops::Range;

    pub const ETH_DST: Range<usize> = 0..6;
    pub const ETH_SRC: Range<usize> = 6..12;
    pub const ETH_TYPE: Range<usize> = 12..14;

    pub const IP: usize = 14;
    pub const IP_VER_IHL: usize = IP;
    pub const IP_DSCP_ECN: usize = IP + 1;
    pub const IP_LENGTH: Range<usize> = IP + 2..IP + 4;
    pub const IP_IDENT: Range<usize> = IP + 4..IP + 6;
    pub const IP_FLG_OFF: Range<usize> = IP + 6..IP + 8;
    pub const IP_TTL: usize = IP + 8;
    pub const IP_PROTOCOL: usize = IP + 9;
    pub const IP_CHECKSUM: Range<usize> = IP + 10..IP + 12;
    pub const IP_SRC: Range<usize> = IP + 12..IP + 16;
    pub const IP_DST: Range<usize> = IP + 16..IP + 20;
    pub const IP_HEADER: Range<usize> = IP..IP + 20;

    pub const UDP: usize = 34;
    pub const UDP_SRC_PORT: Range<usize> = UDP..UDP + 2;
    pub const UDP_DST_PORT: Range<usize> = UDP + 2..UDP + 4;
    pub const UDP_LENGTH: Range<usize> = UDP + 4..UDP + 6;
    pub const UDP_CHECKSUM: Range<usize> = UDP + 6..UDP + 8;
    pub const UDP_AND_VXLAN: Range<usize> = UDP..UDP + 16;

    pub const VXLAN: Range<usize> = 42..50;

    /// The don't-fragment flag in the flags and fragment offset word.
    pub const FLAG_DF: u16 = 0x4000;
}

fn put_u16(bytes: &mut [u8], range: core::ops::Range<usize>, value: u16) {
    bytes[range].copy_from_slice(&value.to_be_bytes());
}

/// Writes the outer Ethernet header and the per-peer fields of the outer IPv4 header (version
/// and IHL, protocol, addresses) into `bytes`; every other IPv4 field is left zero.
fn fill_eth_ipv4(
    bytes: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    protocol: u8,
) {
    bytes[field::ETH_DST].copy_from_slice(&dst_mac);
    bytes[field::ETH_SRC].copy_from_slice(&src_mac);
    put_u16(bytes, field::ETH_TYPE, ETHERTYPE_IPV4);
    bytes[field::IP_VER_IHL] = 0x45;
    bytes[field::IP_PROTOCOL] = protocol;
    bytes[field::IP_SRC].copy_from_slice(&src_ip.octets());
    bytes[field::IP_DST].copy_from_slice(&dst_ip.octets());
}

/// Checks that `len` bytes at `start` lie in a buffer of `buf_len` bytes with `headroom` bytes
/// before them; returns the start of the headroom.
fn claim_headroom(
    buf_len: usize,
    start: usize,
    len: usize,
    headroom: usize,
) -> Result<usize, EncapError> {
    match start.checked_add(len) {
        Some(end) if end <= buf_len => {}
        _ => return Err(EncapError::OutOfBounds),
    }
    start.checked_sub(headroom).ok_or(EncapError::NoHeadroom {
        needed: headroom,
        available: start,
    })
}

/// The inner IPv4 packet of an untagged Ethernet frame, if it has one: Ethernet type IPv4, at
/// least 20 bytes, version 4. Nothing else is checked.
fn inner_ipv4(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < ETH_HEADER_LEN + IPV4_HEADER_LEN
        || u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV4
        || frame[ETH_HEADER_LEN] >> 4 != 4
    {
        return None;
    }
    Some(&frame[ETH_HEADER_LEN..])
}

/// A VXLAN peer as the encapsulation sees it: addresses on the underlay, and the VXLAN settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanPeer {
    /// Our uplink's MAC address.
    pub outer_src_mac: [u8; 6],
    /// The underlay next hop's MAC address (the remote node's, on a flat underlay).
    pub outer_dst_mac: [u8; 6],
    /// Our node IP.
    pub src_ip: Ipv4Addr,
    /// The remote node's IP.
    pub dst_ip: Ipv4Addr,
    /// The UDP destination port ([`vxlan::FLANNEL_UDP_PORT`] for flannel).
    pub udp_dst_port: u16,
    /// The VNI, at most [`VNI_MAX`] ([`vxlan::FLANNEL_VNI`] for flannel).
    pub vni: u32,
    /// Whether to compute the outer UDP checksum (the kernel's default, `udpcsum`); when false
    /// the checksum is 0 ("none", allowed over IPv4), which saves a pass over the packet.
    pub udp_checksum: bool,
}

impl VxlanPeer {
    /// A peer with flannel's settings: UDP port 8472, VNI 1, UDP checksum computed (as the
    /// kernel's `flannel.1` sends it).
    pub const fn flannel(
        outer_src_mac: [u8; 6],
        outer_dst_mac: [u8; 6],
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
    ) -> VxlanPeer {
        VxlanPeer {
            outer_src_mac,
            outer_dst_mac,
            src_ip,
            dst_ip,
            udp_dst_port: vxlan::FLANNEL_UDP_PORT,
            vni: vxlan::FLANNEL_VNI,
            udp_checksum: true,
        }
    }
}

/// The prebuilt outer headers (Ethernet, IPv4, UDP, VXLAN) for one VXLAN peer.
///
/// The bytes hold every per-peer field; the per-packet fields (IPv4 DSCP/ECN, total length,
/// identification and checksum, UDP source port, length and checksum) are zero and patched by
/// [`encap_vxlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanTemplate {
    bytes: [u8; VXLAN_ENCAP_LEN],
    /// Folded sum of the IPv4 header with its per-packet fields zero.
    ip_sum: u16,
    /// Folded sum of the UDP pseudo-header without its length, and of the UDP and VXLAN headers
    /// with their per-packet fields zero. `None` when the peer wants no UDP checksum.
    udp_sum: Option<u16>,
}

impl VxlanTemplate {
    /// Builds the outer headers for `peer`. Fails only for a VNI wider than 24 bits.
    pub fn new(peer: &VxlanPeer) -> Result<VxlanTemplate, EncapError> {
        if peer.vni > VNI_MAX {
            return Err(EncapError::BadVni(peer.vni));
        }
        let mut bytes = [0; VXLAN_ENCAP_LEN];
        fill_eth_ipv4(
            &mut bytes,
            peer.outer_src_mac,
            peer.outer_dst_mac,
            peer.src_ip,
            peer.dst_ip,
            IPPROTO_UDP,
        );
        bytes[field::IP_TTL] = VXLAN_TTL;
        put_u16(&mut bytes, field::UDP_DST_PORT, peer.udp_dst_port);
        vxlan::Repr { vni: peer.vni }
            .emit(&mut vxlan::Packet::new_unchecked(&mut bytes[field::VXLAN]));
        let ip_sum = checksum::sum(&bytes[field::IP_HEADER]);
        let udp_sum = peer.udp_checksum.then(|| {
            checksum::combine(&[
                checksum::pseudo_header_v4(peer.src_ip, peer.dst_ip, IPPROTO_UDP, 0),
                checksum::sum(&bytes[field::UDP_AND_VXLAN]),
            ])
        });
        Ok(VxlanTemplate {
            bytes,
            ip_sum,
            udp_sum,
        })
    }

    /// Replaces the underlay next hop's MAC address (after it was resolved again). No checksum
    /// covers it, so nothing else changes.
    pub fn set_outer_dst_mac(&mut self, mac: [u8; 6]) {
        self.bytes[field::ETH_DST].copy_from_slice(&mac);
    }

    /// The prebuilt bytes, per-packet fields zero.
    pub fn bytes(&self) -> &[u8; VXLAN_ENCAP_LEN] {
        &self.bytes
    }
}

/// The IP protocols whose ports enter the flow hash: TCP, UDP, SCTP (their first four header
/// bytes are the source and destination ports).
const fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132)
}

/// The multiplier of the hash: 2^32 divided by the golden ratio (Knuth's multiplicative hashing).
const GOLDEN: u32 = 0x9e37_79b1;

/// The outer UDP source port for an inner Ethernet frame, in `SRC_PORT_MIN..=SRC_PORT_MAX`.
///
/// Like the kernel (`udp_flow_src_port`), the port is a hash of the inner flow mapped into a port
/// range, so one flow keeps one port (no reordering on the underlay) and different flows spread
/// over ECMP paths and receive queues. The kernel's hash is keyed with a per-boot random secret,
/// so no implementation can reproduce its ports, and none needs to: receivers ignore the source
/// port. This one is deterministic, the one `tests/pcap/README.md` specifies:
///
/// ```text
/// h = src ^ dst ^ (protocol << 16) ^ ((sport << 16) | dport)     (u32, wrapping)
/// h = h * 0x9e3779b1 mod 2^32
/// port = 49152 + ((h >> 16) mod 16384)
/// ```
///
/// with `src`, `dst` the inner IPv4 addresses as big-endian `u32`, and `sport`, `dport` the L4
/// ports for TCP, UDP and SCTP packets that are not fragments (MF clear, offset 0) and whose
/// ports are present, else 0. A frame that does not carry IPv4 (untagged, at least 20 bytes,
/// version 4) hashes with every field 0: port 49152. Only IPv4 is routed into tunnels.
///
/// For example UDP 10.244.1.2:40000 -> 10.244.2.5:5000 gets port 62873, and ICMP between the
/// same addresses 62370.
pub fn flow_src_port(inner_frame: &[u8]) -> u16 {
    let mut h = 0u32;
    if let Some(ip) = inner_ipv4(inner_frame) {
        let word = |at: usize| u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
        let protocol = ip[9];
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
        let ports = if has_ports(protocol)
            && !fragment
            && header_len >= IPV4_HEADER_LEN
            && ip.len() >= header_len + 4
        {
            word(header_len)
        } else {
            0
        };
        h = word(12) ^ word(16) ^ (u32::from(protocol) << 16) ^ ports;
    }
    let h = h.wrapping_mul(GOLDEN);
    let range = u32::from(SRC_PORT_MAX - SRC_PORT_MIN) + 1;
    SRC_PORT_MIN + ((h >> 16) % range) as u16
}

/// Encapsulates the inner Ethernet frame `buf[inner_start..inner_start + inner_len]` in VXLAN for
/// the peer of `t`, writing the [`VXLAN_ENCAP_LEN`] bytes of outer headers just before it, with
/// IPv4 identification `ip_id` and the UDP source port [`flow_src_port`] of the inner frame.
///
/// The inner frame is not moved, not changed, and not checked beyond its Ethernet header length;
/// its MACs must already be the VTEP MACs. Fails without writing anything if the frame is out of
/// the buffer ([`EncapError::OutOfBounds`]), shorter than an Ethernet header
/// ([`EncapError::InnerTruncated`]), too long for an outer IPv4 packet ([`EncapError::TooLong`]),
/// or if `inner_start` is below [`VXLAN_ENCAP_LEN`] ([`EncapError::NoHeadroom`]).
pub fn encap_vxlan(
    buf: &mut [u8],
    inner_start: usize,
    inner_len: usize,
    t: &VxlanTemplate,
    ip_id: u16,
) -> Result<FrameSpan, EncapError> {
    let inner = match inner_start.checked_add(inner_len) {
        Some(end) if end <= buf.len() => &buf[inner_start..end],
        _ => return Err(EncapError::OutOfBounds),
    };
    let src_port = flow_src_port(inner);
    encap_vxlan_with_src_port(buf, inner_start, inner_len, t, ip_id, src_port)
}

/// [`encap_vxlan`] with the UDP source port given, for a caller that keeps it per flow (in a flow
/// cache, say) or must reproduce a given one.
pub fn encap_vxlan_with_src_port(
    buf: &mut [u8],
    inner_start: usize,
    inner_len: usize,
    t: &VxlanTemplate,
    ip_id: u16,
    src_port: u16,
) -> Result<FrameSpan, EncapError> {
    let start = claim_headroom(buf.len(), inner_start, inner_len, VXLAN_ENCAP_LEN)?;
    if inner_len < ETH_HEADER_LEN {
        return Err(EncapError::InnerTruncated);
    }
    let ip_len = VXLAN_ENCAP_LEN - ETH_HEADER_LEN + inner_len;
    let ip_len = u16::try_from(ip_len).map_err(|_| EncapError::TooLong)?;
    let udp_len = ip_len - IPV4_HEADER_LEN as u16;

    let (outer, inner) = buf[start..inner_start + inner_len].split_at_mut(VXLAN_ENCAP_LEN);
    let ecn = inner_ipv4(inner).map_or(0, |ip| ipip::encap_ecn(ip[1]));
    outer.copy_from_slice(&t.bytes);

    outer[field::IP_DSCP_ECN] = ecn;
    put_u16(outer, field::IP_LENGTH, ip_len);
    put_u16(outer, field::IP_IDENT, ip_id);
    let ip_sum = checksum::combine(&[t.ip_sum, u16::from(ecn), ip_len, ip_id]);
    put_u16(outer, field::IP_CHECKSUM, !ip_sum);

    put_u16(outer, field::UDP_SRC_PORT, src_port);
    put_u16(outer, field::UDP_LENGTH, udp_len);
    if let Some(udp_sum) = t.udp_sum {
        // The inner frame starts 16 bytes into the UDP datagram: its sum composes (even offset).
        let sum = checksum::combine(&[udp_sum, udp_len, udp_len, src_port, checksum::sum(inner)]);
        let udp_checksum = match !sum {
            0 => 0xffff,
            c => c,
        };
        put_u16(outer, field::UDP_CHECKSUM, udp_checksum);
    }
    Ok(FrameSpan {
        start,
        len: VXLAN_ENCAP_LEN + inner_len,
    })
}

/// An IPIP peer as the encapsulation sees it: addresses on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpipPeer {
    /// Our uplink's MAC address.
    pub outer_src_mac: [u8; 6],
    /// The underlay next hop's MAC address.
    pub outer_dst_mac: [u8; 6],
    /// Our node IP.
    pub src_ip: Ipv4Addr,
    /// The remote node's IP.
    pub dst_ip: Ipv4Addr,
}

/// The prebuilt outer headers (Ethernet, IPv4 protocol 4) for one IPIP peer.
///
/// The per-packet fields (DSCP/ECN, total length, identification, DF, TTL, checksum) are zero in
/// the bytes and patched by [`encap_ipip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpipTemplate {
    bytes: [u8; IPIP_ENCAP_LEN],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    /// Folded sum of the IPv4 header with its per-packet fields zero.
    ip_sum: u16,
}

impl IpipTemplate {
    /// Builds the outer headers for `peer`.
    pub fn new(peer: &IpipPeer) -> IpipTemplate {
        let mut bytes = [0; IPIP_ENCAP_LEN];
        fill_eth_ipv4(
            &mut bytes,
            peer.outer_src_mac,
            peer.outer_dst_mac,
            peer.src_ip,
            peer.dst_ip,
            ipip::IPPROTO_IPIP,
        );
        let ip_sum = checksum::sum(&bytes[field::IP_HEADER]);
        IpipTemplate {
            bytes,
            src_ip: peer.src_ip,
            dst_ip: peer.dst_ip,
            ip_sum,
        }
    }

    /// Replaces the underlay next hop's MAC address (after it was resolved again).
    pub fn set_outer_dst_mac(&mut self, mac: [u8; 6]) {
        self.bytes[field::ETH_DST].copy_from_slice(&mac);
    }

    /// The prebuilt bytes, per-packet fields zero.
    pub fn bytes(&self) -> &[u8; IPIP_ENCAP_LEN] {
        &self.bytes
    }
}

/// Encapsulates the IPv4 packet of the Ethernet frame `buf[frame_start..frame_start + frame_len]`
/// in IPIP for the peer of `t`, with outer identification `ip_id`.
///
/// The outer Ethernet and IPv4 headers ([`IPIP_ENCAP_LEN`] bytes) are written from
/// `frame_start - 20`, over the frame's Ethernet header; the inner IPv4 packet is not moved.
/// TTL, DF and ECN come from the inner header ([`ipip::outer_repr_for_inner`]). The returned
/// span ends at the inner packet's total length: Ethernet padding after it is dropped.
///
/// Fails without writing anything if the frame is out of the buffer
/// ([`EncapError::OutOfBounds`]), `frame_start` is below [`IPIP_HEADROOM`]
/// ([`EncapError::NoHeadroom`]), the frame is not untagged IPv4 ([`EncapError::NotIpv4`]), the
/// inner packet is shorter than its header or its total length ([`EncapError::InnerTruncated`]),
/// its header length is invalid ([`EncapError::InnerBadHeaderLen`]), or it is too long
/// ([`EncapError::TooLong`]). The inner header checksum is not verified (the switch's parser did).
pub fn encap_ipip(
    buf: &mut [u8],
    frame_start: usize,
    frame_len: usize,
    t: &IpipTemplate,
    ip_id: u16,
) -> Result<FrameSpan, EncapError> {
    let start = claim_headroom(buf.len(), frame_start, frame_len, IPIP_HEADROOM)?;
    let frame = &buf[frame_start..frame_start + frame_len];
    if frame_len < ETH_HEADER_LEN {
        return Err(EncapError::InnerTruncated);
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV4 {
        return Err(EncapError::NotIpv4);
    }
    let inner = &frame[ETH_HEADER_LEN..];
    let repr =
        ipip::outer_repr_for_inner(t.src_ip, t.dst_ip, ip_id, inner).map_err(|e| match e {
            ipip::Error::InnerNotIpv4 => EncapError::NotIpv4,
            ipip::Error::InnerTooLong => EncapError::TooLong,
            _ => EncapError::InnerTruncated,
        })?;
    let header_len = usize::from(inner[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN || header_len > repr.payload_len {
        return Err(EncapError::InnerBadHeaderLen);
    }

    let ip_len = (IPV4_HEADER_LEN + repr.payload_len) as u16; // checked by outer_repr_for_inner
    let flags = if repr.dont_frag { field::FLAG_DF } else { 0 };
    let outer = &mut buf[start..start + IPIP_ENCAP_LEN];
    outer.copy_from_slice(&t.bytes);
    outer[field::IP_DSCP_ECN] = repr.dscp_ecn;
    put_u16(outer, field::IP_LENGTH, ip_len);
    put_u16(outer, field::IP_IDENT, ip_id);
    put_u16(outer, field::IP_FLG_OFF, flags);
    outer[field::IP_TTL] = repr.ttl;
    let ip_sum = checksum::combine(&[
        t.ip_sum,
        u16::from(repr.dscp_ecn),
        ip_len,
        ip_id,
        flags,
        u16::from(repr.ttl) << 8,
    ]);
    put_u16(outer, field::IP_CHECKSUM, !ip_sum);
    Ok(FrameSpan {
        start,
        len: ETH_HEADER_LEN + usize::from(ip_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x01];
    const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
    const OUR_VTEP: [u8; 6] = [0x0e, 0, 0, 0x77, 0x01, 0x01];
    const REMOTE_VTEP: [u8; 6] = [0x0e, 0, 0, 0x77, 0x02, 0x02];
    const NODE_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
    const NODE_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
    const POD_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
    const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);

    /// An Ethernet frame carrying IPv4 `src -> dst` with the given TOS, flags word, TTL,
    /// protocol and L4 bytes; header checksum filled.
    #[allow(clippy::too_many_arguments)]
    fn ipv4_frame(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        tos: u8,
        flags: u16,
        ttl: u8,
        protocol: u8,
        l4: &[u8],
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let total = (20 + l4.len()) as u16;
        f.extend_from_slice(&[0x45, tos]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&0x1234u16.to_be_bytes());
        f.extend_from_slice(&flags.to_be_bytes());
        f.extend_from_slice(&[ttl, protocol, 0, 0]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        let c = !checksum::sum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(l4);
        f
    }

    fn udp_frame(sport: u16, dport: u16) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&[0, 12, 0, 0, b'h', b'i', b'!', b'!']);
        ipv4_frame(OUR_VTEP, REMOTE_VTEP, POD_A, POD_B, 0, 0x4000, 63, 17, &l4)
    }

    fn peer(udp_checksum: bool) -> VxlanPeer {
        VxlanPeer {
            udp_checksum,
            ..VxlanPeer::flannel(OUR_MAC, NEXT_HOP_MAC, NODE_A, NODE_B)
        }
    }

    /// `inner` placed after `headroom` bytes of 0xee.
    fn with_headroom(headroom: usize, inner: &[u8]) -> Vec<u8> {
        let mut buf = vec![0xee; headroom];
        buf.extend_from_slice(inner);
        buf
    }

    fn udp_checksum_ok(frame: &[u8]) -> bool {
        let udp_len = u16::from_be_bytes([frame[38], frame[39]]);
        let udp = &frame[34..34 + usize::from(udp_len)];
        let pseudo = checksum::pseudo_header_v4(NODE_A, NODE_B, IPPROTO_UDP, udp_len);
        checksum::combine(&[pseudo, checksum::sum(udp)]) == 0xffff
    }

    #[test]
    fn vxlan_template_bytes() {
        let t = VxlanTemplate::new(&peer(true)).unwrap();
        #[rustfmt::skip]
        let expected: [u8; 50] = [
            0x02, 0x77, 0, 0, 0, 0x02, 0x02, 0x77, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 168, 77, 1, 192, 168, 77, 2, // IPv4
            0, 0, 0x21, 0x18, 0, 0, 0, 0, // UDP: destination 8472
            0x08, 0, 0, 0, 0, 0, 1, 0, // VXLAN: I flag, VNI 1
        ];
        assert_eq!(t.bytes(), &expected);
    }

    #[test]
    fn vxlan_encap_bytes() {
        let inner = udp_frame(40000, 53);
        let mut buf = with_headroom(64, &inner);
        let span = encap_vxlan(
            &mut buf,
            64,
            inner.len(),
            &VxlanTemplate::new(&peer(false)).unwrap(),
            0xabcd,
        )
        .unwrap();
        assert_eq!(
            span,
            FrameSpan {
                start: 14,
                len: 50 + inner.len()
            }
        );
        let out = &buf[span.range()];
        let ip_len = (36 + inner.len()) as u16;
        let sport = flow_src_port(&inner);
        #[rustfmt::skip]
        let mut expected: Vec<u8> = vec![
            0x02, 0x77, 0, 0, 0, 0x02, 0x02, 0x77, 0, 0, 0, 0x01, 0x08, 0x00,
            0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0xab, 0xcd, 0, 0, 64, 17, 0, 0,
            192, 168, 77, 1, 192, 168, 77, 2,
            (sport >> 8) as u8, sport as u8, 0x21, 0x18,
            ((ip_len - 20) >> 8) as u8, (ip_len - 20) as u8, 0, 0,
            0x08, 0, 0, 0, 0, 0, 1, 0,
        ];
        // The checksum by hand: RFC 1071 over the header with the field zero.
        let c = !checksum::sum(&expected[14..34]);
        expected[24..26].copy_from_slice(&c.to_be_bytes());
        expected.extend_from_slice(&inner);
        assert_eq!(out, &expected[..]);
        assert_eq!(checksum::sum(&out[14..34]), 0xffff);
        assert_eq!(&out[40..42], &[0, 0], "UDP checksum disabled");
        assert_eq!(&buf[..14], &[0xee; 14], "nothing written before the span");
    }

    #[test]
    fn vxlan_udp_checksum_computed() {
        let t = VxlanTemplate::new(&peer(true)).unwrap();
        for (len, id) in [
            (0usize, 0u16),
            (1, 1),
            (7, 0xffff),
            (200, 0x8000),
            (1401, 3),
        ] {
            let inner = udp_frame(1000 + len as u16, 80);
            let mut inner = inner;
            inner.extend((0..len).map(|i| i as u8)); // odd lengths too: padding after the IP packet
            let mut buf = with_headroom(VXLAN_ENCAP_LEN, &inner);
            let span = encap_vxlan(&mut buf, VXLAN_ENCAP_LEN, inner.len(), &t, id).unwrap();
            let out = &buf[span.range()];
            assert_eq!(span.start, 0);
            assert_ne!(&out[40..42], &[0, 0]);
            assert!(udp_checksum_ok(out), "inner length {}", inner.len());
            assert_eq!(checksum::sum(&out[14..34]), 0xffff);
        }
    }

    #[test]
    fn vxlan_udp_checksum_zero_is_sent_as_ffff() {
        // Find a source port for which the computed checksum is 0: it must go out as 0xffff.
        let t = VxlanTemplate::new(&peer(true)).unwrap();
        let inner = udp_frame(1, 2);
        let mut found = false;
        for port in 0..=u16::MAX {
            let mut buf = with_headroom(50, &inner);
            let span = encap_vxlan_with_src_port(&mut buf, 50, inner.len(), &t, 7, port).unwrap();
            let out = &buf[span.range()];
            assert!(udp_checksum_ok(out));
            assert_ne!(&out[40..42], &[0, 0], "port {port}");
            if out[40..42] == [0xff, 0xff] {
                found = true;
                // A full recomputation gives 0 here, and 0xffff is its other representation.
                let mut copy = out.to_vec();
                copy[40..42].copy_from_slice(&[0, 0]);
                let pseudo =
                    checksum::pseudo_header_v4(NODE_A, NODE_B, 17, (copy.len() - 34) as u16);
                assert_eq!(!checksum::combine(&[pseudo, checksum::sum(&copy[34..])]), 0);
            }
        }
        assert!(found, "some port yields a computed checksum of 0");
    }

    #[test]
    fn vxlan_ecn_from_inner() {
        let t = VxlanTemplate::new(&peer(true)).unwrap();
        for (tos, outer) in [
            (0x00, 0x00),
            (0xc0, 0x00),
            (0x01, 0x01),
            (0x02, 0x02),
            (0xbb, 0x02),
        ] {
            let inner = ipv4_frame(
                OUR_VTEP,
                REMOTE_VTEP,
                POD_A,
                POD_B,
                tos,
                0x4000,
                9,
                1,
                &[8, 0, 0, 0],
            );
            let mut buf = with_headroom(50, &inner);
            let span = encap_vxlan(&mut buf, 50, inner.len(), &t, 1).unwrap();
            let out = &buf[span.range()];
            assert_eq!(out[15], outer, "inner TOS {tos:#04x}");
            assert_eq!(
                (out[20], out[21], out[22]),
                (0, 0, 64),
                "DF clear, TTL 64 always"
            );
            assert_eq!(checksum::sum(&out[14..34]), 0xffff);
            assert!(udp_checksum_ok(out));
        }
        // An inner frame that is not IPv4 (ARP) is carried with ECN 0.
        let mut arp = vec![0; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp[15] = 0x03; // would be CE if read as an IPv4 TOS
        let mut buf = with_headroom(50, &arp);
        let span = encap_vxlan(&mut buf, 50, arp.len(), &t, 1).unwrap();
        assert_eq!(buf[span.start + 15], 0);
    }

    #[test]
    fn vxlan_src_port_hash() {
        // The README's vectors, checked by hand there.
        let pod_b5 = Ipv4Addr::new(10, 244, 2, 5);
        let mut l4 = [0u8; 8];
        l4[..4].copy_from_slice(&[0x9c, 0x40, 0x13, 0x88]); // 40000 -> 5000
        let udp = ipv4_frame(OUR_VTEP, REMOTE_VTEP, POD_A, pod_b5, 0, 0x4000, 64, 17, &l4);
        assert_eq!(flow_src_port(&udp), 62873);
        let icmp = ipv4_frame(
            OUR_VTEP,
            REMOTE_VTEP,
            POD_A,
            pod_b5,
            0,
            0,
            64,
            1,
            &[8, 0, 1, 2, 3, 4, 5, 6],
        );
        assert_eq!(flow_src_port(&icmp), 62370);

        let a = udp_frame(40000, 53);
        let b = udp_frame(40001, 53);
        let pa = flow_src_port(&a);
        assert!((SRC_PORT_MIN..=SRC_PORT_MAX).contains(&pa));
        assert_eq!(pa, flow_src_port(&a.clone()), "stable");
        assert_ne!(pa, flow_src_port(&b), "two flows, two ports");
        assert_ne!(pa, flow_src_port(&udp_frame(40000, 54)));

        // The payload, TTL, TOS and IP ID are not part of the flow.
        let mut c = a.clone();
        c[14 + 8] = 1;
        c[14 + 4] = 0x99;
        c[14 + 1] = 0x03;
        *c.last_mut().unwrap() ^= 0xff;
        assert_eq!(flow_src_port(&c), pa);

        // ICMP: no ports; the ICMP header varies (checksum, sequence) but the port does not.
        let e1 = ipv4_frame(
            OUR_VTEP,
            REMOTE_VTEP,
            POD_A,
            POD_B,
            0,
            0,
            64,
            1,
            &[8, 0, 0x12, 0x34, 0, 1, 0, 1],
        );
        let e2 = ipv4_frame(
            OUR_VTEP,
            REMOTE_VTEP,
            POD_A,
            POD_B,
            0,
            0,
            64,
            1,
            &[8, 0, 0x56, 0x78, 0, 1, 0, 2],
        );
        assert_eq!(flow_src_port(&e1), flow_src_port(&e2));

        // Fragments have no ports (a later fragment has no L4 header to read).
        for flags_frag in [0x2000u16, 0x0010] {
            let mut frag = a.clone();
            frag[14 + 6..14 + 8].copy_from_slice(&flags_frag.to_be_bytes());
            let mut frag2 = b.clone();
            frag2[14 + 6..14 + 8].copy_from_slice(&flags_frag.to_be_bytes());
            assert_eq!(flow_src_port(&frag), flow_src_port(&frag2));
        }
        // Ports cut off by the end of the frame count as 0.
        let mut no_ports = a.clone();
        no_ports.truncate(14 + 20 + 3);
        let mut zero_ports = a.clone();
        zero_ports[34..38].copy_from_slice(&[0; 4]);
        assert_eq!(flow_src_port(&no_ports), flow_src_port(&zero_ports));

        // Flows spread over the range: 4096 source ports hit many distinct ports in all quarters.
        let mut quarters = [0; 4];
        let mut seen = std::collections::HashSet::new();
        for sport in 32768..32768 + 4096u16 {
            let p = flow_src_port(&udp_frame(sport, 443));
            assert!(p >= SRC_PORT_MIN);
            quarters[usize::from((p - SRC_PORT_MIN) / 4096)] += 1;
            seen.insert(p);
        }
        assert!(quarters.iter().all(|&q| q > 850), "{quarters:?}");
        assert!(seen.len() > 3000, "{} distinct ports", seen.len());

        // Frames without IPv4 all hash to the bottom of the range.
        let mut arp = [0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        for frame in [&[][..], &[1, 2, 3], &arp, &a[..33]] {
            assert_eq!(flow_src_port(frame), SRC_PORT_MIN);
        }
    }

    #[test]
    fn vxlan_errors_leave_the_buffer_alone() {
        let t = VxlanTemplate::new(&peer(true)).unwrap();
        let inner = udp_frame(1, 2);
        let mut buf = with_headroom(49, &inner);
        let before = buf.clone();
        assert_eq!(
            encap_vxlan(&mut buf, 49, inner.len(), &t, 1),
            Err(EncapError::NoHeadroom {
                needed: 50,
                available: 49
            })
        );
        assert_eq!(
            encap_vxlan(&mut buf, 49, inner.len() + 1, &t, 1),
            Err(EncapError::OutOfBounds)
        );
        assert_eq!(
            encap_vxlan(&mut buf, usize::MAX, 2, &t, 1),
            Err(EncapError::OutOfBounds)
        );
        let mut buf2 = with_headroom(50, &inner[..13]);
        assert_eq!(
            encap_vxlan(&mut buf2, 50, 13, &t, 1),
            Err(EncapError::InnerTruncated)
        );
        assert_eq!(buf, before);
        // The largest inner frame fits in a 65535-byte outer packet, one more byte does not.
        let mut big = vec![0u8; 50 + 65535 - 36 + 1];
        assert!(encap_vxlan(&mut big, 50, 65535 - 36, &t, 1).is_ok());
        assert_eq!(
            encap_vxlan(&mut big, 50, 65535 - 35, &t, 1),
            Err(EncapError::TooLong)
        );
        // A VNI wider than 24 bits has no template.
        let wide = VxlanPeer {
            vni: 1 << 24,
            ..peer(true)
        };
        assert_eq!(VxlanTemplate::new(&wide), Err(EncapError::BadVni(1 << 24)));
        assert!(VxlanTemplate::new(&VxlanPeer {
            vni: VNI_MAX,
            ..peer(true)
        })
        .is_ok());
    }

    #[test]
    fn template_next_hop_update() {
        let mut t = VxlanTemplate::new(&peer(true)).unwrap();
        t.set_outer_dst_mac([2, 0, 0, 0, 0, 9]);
        assert_eq!(
            t,
            VxlanTemplate::new(&VxlanPeer {
                outer_dst_mac: [2, 0, 0, 0, 0, 9],
                ..peer(true)
            })
            .unwrap()
        );
        let ipip_peer = IpipPeer {
            outer_src_mac: OUR_MAC,
            outer_dst_mac: NEXT_HOP_MAC,
            src_ip: NODE_A,
            dst_ip: NODE_B,
        };
        let mut t = IpipTemplate::new(&ipip_peer);
        t.set_outer_dst_mac([2, 0, 0, 0, 0, 9]);
        assert_eq!(
            t,
            IpipTemplate::new(&IpipPeer {
                outer_dst_mac: [2, 0, 0, 0, 0, 9],
                ..ipip_peer
            })
        );
    }

    fn ipip_template() -> IpipTemplate {
        IpipTemplate::new(&IpipPeer {
            outer_src_mac: OUR_MAC,
            outer_dst_mac: NEXT_HOP_MAC,
            src_ip: NODE_A,
            dst_ip: NODE_B,
        })
    }

    #[test]
    fn ipip_encap_bytes() {
        let frame = udp_frame(40000, 53);
        let mut buf = with_headroom(20, &frame);
        let span = encap_ipip(&mut buf, 20, frame.len(), &ipip_template(), 0x0102).unwrap();
        assert_eq!(
            span,
            FrameSpan {
                start: 0,
                len: frame.len() + 20
            }
        );
        let ip_len = (frame.len() - 14 + 20) as u16;
        #[rustfmt::skip]
        let mut expected = vec![
            0x02, 0x77, 0, 0, 0, 0x02, 0x02, 0x77, 0, 0, 0, 0x01, 0x08, 0x00,
            0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0x01, 0x02, 0x40, 0, 63, 4, 0, 0,
            192, 168, 77, 1, 192, 168, 77, 2,
        ];
        let c = !checksum::sum(&expected[14..34]);
        expected[24..26].copy_from_slice(&c.to_be_bytes());
        expected.extend_from_slice(&frame[14..]);
        assert_eq!(&buf[span.range()], &expected[..]);

        // The same header as the ipip module's Repr emits.
        let repr = ipip::outer_repr_for_inner(NODE_A, NODE_B, 0x0102, &frame[14..]).unwrap();
        let mut header = [0; 20];
        repr.emit(&mut ipip::OuterPacket::new_unchecked(&mut header[..]));
        assert_eq!(&buf[14..34], &header);
    }

    #[test]
    fn ipip_ttl_df_ecn_propagate() {
        let t = ipip_template();
        for (tos, flags, ttl, outer_tos, outer_flags) in [
            (0x00, 0x4000, 64, 0x00, 0x40),
            (0x00, 0x0000, 1, 0x00, 0x00),
            (0xb8, 0x4000, 255, 0x00, 0x40), // DSCP not copied
            (0x01, 0x0000, 17, 0x01, 0x00),  // ECT(1)
            (0x02, 0x4000, 17, 0x02, 0x40),  // ECT(0)
            (0x03, 0x4000, 17, 0x02, 0x40),  // CE -> ECT(0)
            (0x00, 0x2000, 5, 0x00, 0x00),   // inner MF: the outer is a whole packet
        ] {
            let frame = ipv4_frame(
                OUR_MAC, OUR_VTEP, POD_A, POD_B, tos, flags, ttl, 17, &[0; 8],
            );
            let mut buf = with_headroom(32, &frame);
            let span = encap_ipip(&mut buf, 32, frame.len(), &t, 9).unwrap();
            let out = &buf[span.range()];
            assert_eq!(span.start, 12);
            assert_eq!(
                (out[15], out[20], out[21], out[22]),
                (outer_tos, outer_flags, 0, ttl),
                "inner {tos:#x} {flags:#x} {ttl}"
            );
            assert_eq!(checksum::sum(&out[14..34]), 0xffff);
            assert_eq!(&out[34..], &frame[14..], "inner packet untouched");
        }
    }

    #[test]
    fn ipip_drops_ethernet_padding() {
        // A 28-byte ICMP packet in a 60-byte frame: 18 bytes of padding are not encapsulated.
        let mut frame = ipv4_frame(
            OUR_MAC,
            OUR_VTEP,
            POD_A,
            POD_B,
            0,
            0,
            64,
            1,
            &[8, 0, 0xf7, 0xff, 0, 0, 0, 0],
        );
        frame.resize(60, 0);
        let mut buf = with_headroom(20, &frame);
        let span = encap_ipip(&mut buf, 20, 60, &ipip_template(), 1).unwrap();
        assert_eq!(span.len, 14 + 20 + 28);
        assert_eq!(u16::from_be_bytes([buf[16], buf[17]]), 48);
    }

    #[test]
    fn ipip_errors() {
        let t = ipip_template();
        let frame = udp_frame(1, 2);
        let mut buf = with_headroom(19, &frame);
        let before = buf.clone();
        let len = frame.len();
        assert_eq!(
            encap_ipip(&mut buf, 19, len, &t, 1),
            Err(EncapError::NoHeadroom {
                needed: 20,
                available: 19
            })
        );
        assert_eq!(
            encap_ipip(&mut buf, 20, len, &t, 1),
            Err(EncapError::OutOfBounds)
        );
        assert_eq!(buf, before);

        let run = |f: &[u8]| {
            let mut buf = with_headroom(20, f);
            let r = encap_ipip(&mut buf, 20, f.len(), &t, 1);
            if r.is_err() {
                assert_eq!(&buf[20..], f, "nothing written on error");
            }
            r
        };
        assert_eq!(run(&frame[..13]), Err(EncapError::InnerTruncated));
        assert_eq!(run(&frame[..33]), Err(EncapError::InnerTruncated)); // 19 bytes of IPv4
        assert_eq!(run(&frame[..len - 1]), Err(EncapError::InnerTruncated)); // total length past the end
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&arp), Err(EncapError::NotIpv4));
        let mut v6 = frame.clone();
        v6[14] = 0x65;
        assert_eq!(run(&v6), Err(EncapError::NotIpv4));
        let mut ihl = frame.clone();
        ihl[14] = 0x44;
        assert_eq!(run(&ihl), Err(EncapError::InnerBadHeaderLen));
        ihl[14] = 0x4f; // 60 bytes of header in a 36-byte packet
        assert_eq!(run(&ihl), Err(EncapError::InnerBadHeaderLen));
    }

    proptest::proptest! {
        /// Any buffer, start and length give a value, never a panic; an encapsulated frame lies
        /// within the buffer.
        #[test]
        fn never_panics(
            mut buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            start in 0usize..320,
            len in 0usize..320,
            ipv4 in proptest::prelude::any::<bool>(),
        ) {
            if ipv4 && start + 15 < buf.len() {
                buf[start + 12..start + 14].copy_from_slice(&[0x08, 0x00]);
                buf[start + 14] = 0x45;
            }
            let vxlan = VxlanTemplate::new(&peer(true)).unwrap();
            let n = buf.len();
            if let Ok(span) = encap_vxlan(&mut buf, start, len, &vxlan, 1) {
                proptest::prop_assert!(span.end() <= n);
            }
            if let Ok(span) = encap_ipip(&mut buf, start, len, &ipip_template(), 1) {
                proptest::prop_assert!(span.end() <= n);
            }
        }
    }
}
