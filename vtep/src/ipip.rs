//! IPIP (IPv4 in IPv4, IP protocol 4, RFC 2003) as Calico sends it, in the smoltcp `wire` style.
//!
//! ```text
//! +----------------------------+--------------------------------------------+
//! | outer IPv4 header, proto 4 | inner IPv4 packet (header and payload)     |
//! | src/dst = node IPs         | src/dst = pod IPs; no Ethernet in between  |
//! +----------------------------+--------------------------------------------+
//! ```
//!
//! Contract: [`OuterPacket`] is a zero-copy view over an outer IPv4 header and what follows it.
//! [`OuterPacket::new_checked`] guarantees that every accessor is in bounds and that the packet is
//! IPIP: version 4, IHL at least 5, a total length no shorter than the header and within the
//! buffer (bytes past it, such as Ethernet padding, are ignored), protocol 4. Outer IP options
//! are accepted, as the kernel accepts them. [`Repr`] is the outer header of a packet that can be
//! decapsulated as it is: checksum correct, not a fragment, and an inner IPv4 header whose total
//! length fits in the bytes present. [`outer_repr_for_inner`] derives the outer header the
//! kernel's `tunl0` writes for an inner packet.
//!
//! Non-goals: emitting IP options, reassembling outer fragments, validating the inner packet
//! beyond its version and length (the inner parser's job), and checking that the outer source is
//! a known peer (a policy check of the tunnel table: such a packet parses here).

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::checksum;

/// The IP protocol number of IPv4-in-IPv4 encapsulation.
pub const IPPROTO_IPIP: u8 = 4;
/// Length of the outer header [`Repr::emit`] writes: an IPv4 header without options.
pub const OUTER_HEADER_LEN: usize = MIN_HEADER_LEN;
/// Bytes IPIP encapsulation takes out of the uplink MTU: the outer IPv4 header without options.
/// Calico sets the pod MTU to the uplink MTU minus this.
pub const IPIP_MTU_OVERHEAD: usize = OUTER_HEADER_LEN;

/// Why an IPIP packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Error {
    /// The buffer ends before the outer header or before the outer total length.
    #[error("IPIP packet truncated: the buffer ends before the outer header or total length")]
    Truncated,
    /// The outer IP version is not 4.
    #[error("outer IP version {0}, expected 4")]
    BadVersion(u8),
    /// The outer IHL is below 5 (a header shorter than 20 bytes); the value is in bytes.
    #[error("outer IPv4 header length {0} bytes, below 20")]
    BadHeaderLen(u8),
    /// The outer total length is shorter than the outer header.
    #[error("outer IPv4 total length {0} shorter than its header")]
    BadTotalLen(u16),
    /// The outer protocol is not [`IPPROTO_IPIP`].
    #[error("outer IP protocol {0}, expected 4 (IPIP)")]
    WrongProtocol(u8),
    /// The outer header checksum is wrong.
    #[error("outer IPv4 header checksum mismatch")]
    BadChecksum,
    /// The outer packet is a fragment (more-fragments set or a non-zero offset).
    #[error("outer IPv4 packet is a fragment")]
    Fragmented,
    /// The inner packet is shorter than an IPv4 header, or than its own total length field.
    #[error("inner IPv4 packet truncated")]
    InnerTruncated,
    /// The inner packet's IP version is not 4.
    #[error("inner packet is not IPv4")]
    InnerNotIpv4,
    /// The inner packet is too long to fit in an outer IPv4 packet with it.
    #[error("inner IPv4 packet too long to encapsulate")]
    InnerTooLong,
}

/// The result of parsing or building an IPIP header.
pub type Result<T> = core::result::Result<T, Error>;

/// Byte positions of the IPv4 header fields, shared by the outer and inner headers.
mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;

    /// Masks of the flags and fragment offset word.
    pub const FLAG_RESERVED: u16 = 0x8000;
    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const OFFSET: u16 = 0x1fff;
}

/// Length of an IPv4 header without options, the shortest there is.
const MIN_HEADER_LEN: usize = 20;

/// ECN field values (RFC 3168) used by the encapsulation rule.
const ECN_MASK: u8 = 0b11;
const ECN_ECT0: u8 = 0b10;
const ECN_CE: u8 = 0b11;

fn read_u16(bytes: &[u8], range: core::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([bytes[range.start], bytes[range.start + 1]])
}

fn read_addr(bytes: &[u8], range: core::ops::Range<usize>) -> Ipv4Addr {
    let b = &bytes[range];
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Checks the start of an inner packet just enough to know its length: at least 20 bytes, IP
/// version 4, and a total length between 20 and the bytes present. Returns the total length.
fn inner_total_len(inner: &[u8]) -> Result<u16> {
    if inner.len() < MIN_HEADER_LEN {
        return Err(Error::InnerTruncated);
    }
    if inner[field::VER_IHL] >> 4 != 4 {
        return Err(Error::InnerNotIpv4);
    }
    let total_len = read_u16(inner, field::LENGTH);
    if usize::from(total_len) < MIN_HEADER_LEN || usize::from(total_len) > inner.len() {
        return Err(Error::InnerTruncated);
    }
    Ok(total_len)
}

/// A read/write view over an outer IPv4 header and the inner IPv4 packet that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> OuterPacket<T> {
    /// Wraps `buffer` without any check; accessors panic if the header is out of bounds.
    pub const fn new_unchecked(buffer: T) -> OuterPacket<T> {
        OuterPacket { buffer }
    }

    /// Wraps `buffer` after [`OuterPacket::check`].
    pub fn new_checked(buffer: T) -> Result<OuterPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// Checks, in this order: 20 bytes present, version 4, IHL at least 5, the whole header
    /// present, total length at least the header length and within the buffer, protocol 4.
    /// After it, no accessor panics.
    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion(self.version()));
        }
        let header_len = self.header_len();
        if usize::from(header_len) < MIN_HEADER_LEN {
            return Err(Error::BadHeaderLen(header_len));
        }
        if usize::from(header_len) > len {
            return Err(Error::Truncated);
        }
        let total_len = self.total_len();
        if total_len < u16::from(header_len) {
            return Err(Error::BadTotalLen(total_len));
        }
        if usize::from(total_len) > len {
            return Err(Error::Truncated);
        }
        if self.protocol() != IPPROTO_IPIP {
            return Err(Error::WrongProtocol(self.protocol()));
        }
        Ok(())
    }

    /// Unwraps the view into its buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The IP version (4 after [`OuterPacket::check`]).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL times 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP and ECN byte (formerly TOS).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length: header and inner packet, in bytes.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// The don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & field::FLAG_DF != 0
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & field::FLAG_MF != 0
    }

    /// The fragment offset, in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & field::OFFSET) * 8
    }

    /// Whether this is a fragment: more-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// The time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol of the payload ([`IPPROTO_IPIP`] after [`OuterPacket::check`]).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address (a node IP).
    pub fn src_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// The destination address (a node IP).
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Whether the header checksum, options included, is correct.
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        checksum::sum(header) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> OuterPacket<&'a T> {
    /// The payload: the inner IPv4 packet, from the end of the outer header to the outer total
    /// length (for a fragment, that fragment's part of it).
    pub fn inner(&self) -> &'a [u8] {
        let start = usize::from(self.header_len());
        &self.buffer.as_ref()[start..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> OuterPacket<T> {
    fn set_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    fn set_flags_offset(&mut self, value: u16) {
        self.set_u16(field::FLG_OFF, value);
    }

    /// Sets the IP version.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, len: u8) {
        debug_assert!(
            len.is_multiple_of(4) && len <= 60,
            "bad IPv4 header length {len}"
        );
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    /// Sets the DSCP and ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        self.set_u16(field::LENGTH, len);
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, ident: u16) {
        self.set_u16(field::IDENT, ident);
    }

    /// Clears the three flag bits (reserved, DF, MF), keeping the fragment offset.
    pub fn clear_flags(&mut self) {
        let value = self.flags_offset() & field::OFFSET;
        self.set_flags_offset(value);
    }

    /// Sets or clears the don't-fragment flag.
    pub fn set_dont_frag(&mut self, value: bool) {
        let old = self.flags_offset() & !field::FLAG_DF;
        self.set_flags_offset(old | if value { field::FLAG_DF } else { 0 });
    }

    /// Sets or clears the more-fragments flag.
    pub fn set_more_frags(&mut self, value: bool) {
        let old = self.flags_offset() & !field::FLAG_MF;
        self.set_flags_offset(old | if value { field::FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in bytes (a multiple of 8).
    pub fn set_frag_offset(&mut self, offset: u16) {
        debug_assert!(
            offset.is_multiple_of(8),
            "fragment offset {offset} not a multiple of 8"
        );
        let flags = self.flags_offset() & (field::FLAG_RESERVED | field::FLAG_DF | field::FLAG_MF);
        self.set_flags_offset(flags | (offset / 8));
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_u16(field::CHECKSUM, checksum);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum over the header length and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        let checksum = !checksum::sum(header);
        self.set_checksum(checksum);
    }

    /// The inner packet, mutably (see [`OuterPacket::inner`]).
    pub fn inner_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The outer IPv4 header of an IPIP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The source address: the sending node's IP.
    pub src_addr: Ipv4Addr,
    /// The destination address: the receiving node's IP.
    pub dst_addr: Ipv4Addr,
    /// The time to live.
    pub ttl: u8,
    /// The DSCP and ECN byte (formerly TOS).
    pub dscp_ecn: u8,
    /// The don't-fragment flag.
    pub dont_frag: bool,
    /// The identification field.
    pub ident: u16,
    /// The length of the inner packet, at most 65515.
    pub payload_len: usize,
}

impl Repr {
    /// Parses an outer header that can be decapsulated as it is: [`OuterPacket::check`], then
    /// checksum ([`Error::BadChecksum`]), not a fragment ([`Error::Fragmented`]), and an inner
    /// IPv4 header of at least 20 bytes whose total length fits in the payload
    /// ([`Error::InnerTruncated`], [`Error::InnerNotIpv4`]). Outer options are skipped, not kept.
    pub fn parse<T: AsRef<[u8]>>(packet: &OuterPacket<T>) -> Result<Repr> {
        packet.check()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(Error::Fragmented);
        }
        let inner = usize::from(packet.header_len())..usize::from(packet.total_len());
        let payload_len = inner.len();
        inner_total_len(&packet.buffer.as_ref()[inner])?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            dont_frag: packet.dont_frag(),
            ident: packet.ident(),
            payload_len,
        })
    }

    /// The number of bytes [`Repr::emit`] writes: the outer header, [`OUTER_HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        OUTER_HEADER_LEN
    }

    /// Writes the 20-byte outer header (no options, not a fragment, protocol 4, checksum filled)
    /// into the start of `packet`, leaving the inner packet after it untouched. Panics if the
    /// buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut OuterPacket<T>) {
        let total_len = OUTER_HEADER_LEN + self.payload_len;
        debug_assert!(total_len <= usize::from(u16::MAX), "IPIP packet too long");
        packet.set_version(4);
        packet.set_header_len(OUTER_HEADER_LEN as u8);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total_len as u16);
        packet.set_ident(self.ident);
        packet.set_flags_offset(0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(IPPROTO_IPIP);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

/// The outer DSCP/ECN byte the Linux kernel writes for a tunnel whose configured TOS is 0, from
/// the inner packet's DSCP/ECN byte `inner_dscp_ecn`: DSCP 0, and the inner ECN field except that
/// CE becomes ECT(0) (`INET_ECN_encapsulate`, the full-functionality option of RFC 3168 §9.1.1).
///
/// Both of the kernel's tunnels apply it: `tunl0` (IPIP, see [`outer_repr_for_inner`]) and a
/// VXLAN device such as flannel's `flannel.1` (`ip_tunnel_ecn_encap` in `vxlan_xmit_one`).
pub const fn encap_ecn(inner_dscp_ecn: u8) -> u8 {
    match inner_dscp_ecn & ECN_MASK {
        ECN_CE => ECN_ECT0,
        ecn => ecn,
    }
}

/// The outer header the Linux kernel's fallback IPIP device `tunl0` writes for `inner` (an IPv4
/// packet from its first byte; bytes past its total length are ignored), from node `src_addr` to
/// node `dst_addr`.
///
/// Calico uses `tunl0` as the ipip module creates it (Felix adds an `ipip` link named `tunl0`
/// with no parameters), and `ip_tunnel_init_net` creates it with all parameters zero: TTL 0
/// ("inherit"), TOS 0 (not "inherit"), no forced DF. For such a device `ip_tunnel_xmit` sets:
///
/// - TTL: the inner TTL (`ttl == 0` inherits);
/// - DF: the inner DF flag;
/// - DSCP: 0, the device's TOS; the inner DSCP is not copied;
/// - ECN: the inner ECN field, except that CE becomes ECT(0) ([`encap_ecn`]);
/// - identification: the kernel picks it; here the caller passes `ident`, which must vary
///   between packets that may be fragmented (those without DF).
///
/// Fails if `inner` is not an IPv4 packet whose total length fits in it
/// ([`Error::InnerTruncated`], [`Error::InnerNotIpv4`]) or too long to encapsulate
/// ([`Error::InnerTooLong`]).
pub fn outer_repr_for_inner(
    src_addr: Ipv4Addr,
    dst_addr: Ipv4Addr,
    ident: u16,
    inner: &[u8],
) -> Result<Repr> {
    let total_len = usize::from(inner_total_len(inner)?);
    if OUTER_HEADER_LEN + total_len > usize::from(u16::MAX) {
        return Err(Error::InnerTooLong);
    }
    Ok(Repr {
        src_addr,
        dst_addr,
        ttl: inner[field::TTL],
        dscp_ecn: encap_ecn(inner[field::DSCP_ECN]),
        dont_frag: read_u16(inner, field::FLG_OFF) & field::FLAG_DF != 0,
        ident,
        payload_len: total_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
    const NODE_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);

    /// Outer header (DF, TTL 63, ident 1, node A -> node B) and a 20-byte inner IPv4 header
    /// (DF, TTL 63, protocol 253, pod 10.244.1.2 -> 10.244.2.2, no payload).
    static PACKET_BYTES: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x3f, 0x04, 0x20, 0x7d, 0xc0, 0xa8, 0x4d,
        0x01, 0xc0, 0xa8, 0x4d, 0x02, // outer
        0x45, 0x00, 0x00, 0x14, 0x12, 0x34, 0x40, 0x00, 0x3f, 0xfd, 0x0f, 0xce, 0x0a, 0xf4, 0x01,
        0x02, 0x0a, 0xf4, 0x02, 0x02, // inner
    ];

    fn packet_repr() -> Repr {
        Repr {
            src_addr: NODE_A,
            dst_addr: NODE_B,
            ttl: 63,
            dscp_ecn: 0,
            dont_frag: true,
            ident: 1,
            payload_len: 20,
        }
    }

    fn inner_bytes() -> &'static [u8] {
        &PACKET_BYTES[20..]
    }

    #[test]
    fn deconstruct() {
        let packet = OuterPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.dscp_ecn(), 0);
        assert_eq!(packet.total_len(), 40);
        assert_eq!(packet.ident(), 1);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 63);
        assert_eq!(packet.protocol(), IPPROTO_IPIP);
        assert_eq!(packet.checksum(), 0x207d);
        assert_eq!(packet.src_addr(), NODE_A);
        assert_eq!(packet.dst_addr(), NODE_B);
        assert!(packet.verify_checksum());
        assert_eq!(packet.inner(), inner_bytes());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5; 40];
        let mut packet = OuterPacket::new_unchecked(&mut bytes[..]);
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_dscp_ecn(0);
        packet.set_total_len(40);
        packet.set_ident(1);
        packet.clear_flags();
        packet.set_frag_offset(0);
        packet.set_dont_frag(true);
        packet.set_more_frags(false);
        packet.set_ttl(63);
        packet.set_protocol(IPPROTO_IPIP);
        packet.set_src_addr(NODE_A);
        packet.set_dst_addr(NODE_B);
        packet.inner_mut().copy_from_slice(inner_bytes());
        packet.fill_checksum();
        assert_eq!(packet.into_inner(), &PACKET_BYTES[..]);
    }

    #[test]
    fn parse() {
        let packet = OuterPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(packet_repr()));
    }

    #[test]
    fn emit() {
        let repr = packet_repr();
        let mut bytes = [0xa5; 40];
        bytes[20..].copy_from_slice(inner_bytes());
        assert_eq!(repr.buffer_len(), OUTER_HEADER_LEN);
        repr.emit(&mut OuterPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut bytes = [0; 46];
        bytes[..40].copy_from_slice(&PACKET_BYTES);
        let packet = OuterPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.inner(), inner_bytes());
        assert_eq!(Repr::parse(&packet), Ok(packet_repr()));
    }

    #[test]
    fn options_are_accepted_and_skipped() {
        // IHL 6: four bytes of options (NOP NOP NOP EOL) between the two headers.
        let mut bytes = [0; 44];
        bytes[..20].copy_from_slice(&PACKET_BYTES[..20]);
        bytes[20..24].copy_from_slice(&[1, 1, 1, 0]);
        bytes[24..].copy_from_slice(inner_bytes());
        let mut packet = OuterPacket::new_unchecked(&mut bytes[..]);
        packet.set_header_len(24);
        packet.set_total_len(44);
        packet.fill_checksum();
        let packet = OuterPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.inner(), inner_bytes());
        assert_eq!(Repr::parse(&packet), Ok(packet_repr()));
    }

    /// Patches a copy of `PACKET_BYTES` (checksum refilled) and parses it.
    fn parse_with(patch: impl FnOnce(&mut OuterPacket<&mut [u8]>)) -> Result<Repr> {
        let mut bytes = PACKET_BYTES;
        let mut packet = OuterPacket::new_unchecked(&mut bytes[..]);
        patch(&mut packet);
        packet.fill_checksum();
        Repr::parse(&OuterPacket::new_checked(&bytes[..])?)
    }

    #[test]
    fn truncated() {
        for len in [0, 19] {
            assert_eq!(
                OuterPacket::new_checked(&PACKET_BYTES[..len]),
                Err(Error::Truncated)
            );
        }
        // The total length says 40, the buffer holds 39.
        assert_eq!(
            OuterPacket::new_checked(&PACKET_BYTES[..39]),
            Err(Error::Truncated)
        );
        // IHL 15 (60 bytes) in a 40-byte buffer.
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x4f;
        assert_eq!(OuterPacket::new_checked(&bytes[..]), Err(Error::Truncated));
        // Total length beyond the buffer.
        assert_eq!(parse_with(|p| p.set_total_len(41)), Err(Error::Truncated));
    }

    #[test]
    fn bad_version() {
        assert_eq!(parse_with(|p| p.set_version(6)), Err(Error::BadVersion(6)));
    }

    #[test]
    fn bad_ihl() {
        for ihl_bytes in [0, 16] {
            assert_eq!(
                parse_with(|p| p.set_header_len(ihl_bytes)),
                Err(Error::BadHeaderLen(ihl_bytes))
            );
        }
    }

    #[test]
    fn total_len_shorter_than_header() {
        assert_eq!(
            parse_with(|p| p.set_total_len(19)),
            Err(Error::BadTotalLen(19))
        );
    }

    #[test]
    fn wrong_protocol() {
        for protocol in [41, 17, 47] {
            assert_eq!(
                parse_with(|p| p.set_protocol(protocol)),
                Err(Error::WrongProtocol(protocol))
            );
        }
    }

    #[test]
    fn bad_checksum() {
        let mut bytes = PACKET_BYTES;
        bytes[8] = 64; // TTL changed, checksum not refilled
        let packet = OuterPacket::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Repr::parse(&packet), Err(Error::BadChecksum));
    }

    #[test]
    fn fragments() {
        assert_eq!(
            parse_with(|p| p.set_more_frags(true)),
            Err(Error::Fragmented)
        );
        let mut bytes = PACKET_BYTES;
        let mut packet = OuterPacket::new_unchecked(&mut bytes[..]);
        packet.set_frag_offset(1480);
        assert_eq!(packet.frag_offset(), 1480);
        assert!(packet.dont_frag(), "the offset setter keeps the flags");
        packet.fill_checksum();
        assert_eq!(Repr::parse(&packet), Err(Error::Fragmented));
    }

    #[test]
    fn bad_inner() {
        // Outer total length 36: only 16 bytes of inner header.
        assert_eq!(
            parse_with(|p| p.set_total_len(36)),
            Err(Error::InnerTruncated)
        );
        // The inner header claims more bytes than the outer packet carries.
        let mut bytes = PACKET_BYTES;
        bytes[23] = 0x15;
        let packet = OuterPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::InnerTruncated));
        // An inner IPv6 version nibble.
        bytes[20] = 0x60;
        let packet = OuterPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::InnerNotIpv4));
    }

    #[test]
    fn outer_for_inner_follows_tunl0() {
        let repr = outer_repr_for_inner(NODE_A, NODE_B, 1, inner_bytes());
        assert_eq!(repr, Ok(packet_repr()));

        let mut inner = [0; 20];
        inner.copy_from_slice(inner_bytes());
        inner[6] = 0; // no DF
        inner[8] = 5; // TTL
        for (tos, outer) in [
            (0x00, 0x00),
            (0xb8, 0x00),
            (0x01, 0x01),
            (0x02, 0x02),
            (0xbb, 0x02),
        ] {
            inner[1] = tos;
            let repr = outer_repr_for_inner(NODE_A, NODE_B, 7, &inner).unwrap();
            assert_eq!(repr.dscp_ecn, outer, "inner TOS {tos:#04x}");
            assert_eq!((repr.ttl, repr.dont_frag, repr.ident), (5, false, 7));
        }
    }

    #[test]
    fn outer_for_inner_rejects_bad_inner() {
        let inner = inner_bytes();
        let outer = |bytes: &[u8]| outer_repr_for_inner(NODE_A, NODE_B, 1, bytes);
        assert_eq!(outer(&inner[..19]), Err(Error::InnerTruncated));
        let mut bad = [0; 20];
        bad.copy_from_slice(inner);
        bad[3] = 0x15; // total length 21 > 20 bytes
        assert_eq!(outer(&bad), Err(Error::InnerTruncated));
        bad[3] = 0x13; // total length 19 < header
        assert_eq!(outer(&bad), Err(Error::InnerTruncated));
        bad[0] = 0x60;
        assert_eq!(outer(&bad), Err(Error::InnerNotIpv4));

        let mut jumbo = vec![0; usize::from(u16::MAX)];
        jumbo[..20].copy_from_slice(inner);
        jumbo[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(outer(&jumbo), Err(Error::InnerTooLong));
        jumbo[2..4].copy_from_slice(&(u16::MAX - 20).to_be_bytes());
        assert_eq!(outer(&jumbo).map(|r| r.payload_len), Ok(65515));
    }

    #[test]
    fn mtu_overhead() {
        assert_eq!(1500 - IPIP_MTU_OVERHEAD, 1480);
    }
}
