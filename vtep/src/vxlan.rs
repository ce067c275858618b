//! The VXLAN header (RFC 7348) in the smoltcp `wire` style.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|                   Reserved                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          VXLAN Network Identifier (VNI)       |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Contract: [`Packet`] is a zero-copy view over a UDP payload, the 8 header bytes then the inner
//! Ethernet frame; [`Packet::new_checked`] guarantees only that the header is in bounds. [`Repr`]
//! is a header that passed [`Packet::check_flags`], which rejects exactly what the Linux kernel
//! drops on a plain VXLAN device (flannel's `flannel.1`: no GBP, GPE or remote checksum offload):
//! `vxlan_rcv` in `drivers/net/vxlan/vxlan_core.c`
//!
//! 1. drops a header without the I flag (`SKB_DROP_REASON_VXLAN_INVALID_HDR`), then
//! 2. clears the I flag and the 24 VNI bits from its copy of the header and drops the packet if
//!    any bit is left: the seven R flag bits, the 24 reserved bits after the flags, or the 8
//!    reserved bits after the VNI. The kernel says it is stricter than RFC 7348 §5 (which tells
//!    receivers to ignore reserved bits) on purpose, for robustness and for future extensions.
//!
//! Doing the same means a frame the kernel on a flannel node would drop is dropped here too.
//!
//! Non-goals: the outer Ethernet, IPv4 and UDP headers (the UDP port decides that a datagram is
//! VXLAN), the VNI-to-tunnel lookup, and the VXLAN extensions (GBP, GPE, RCO).

use thiserror::Error;

/// Length of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = 8;
/// UDP destination port flannel's VXLAN backend uses (the Linux kernel's historical default).
pub const FLANNEL_UDP_PORT: u16 = 8472;
/// UDP destination port IANA assigned to VXLAN (RFC 7348 §5).
pub const IANA_UDP_PORT: u16 = 4789;
/// The I flag: the VNI field is valid. The only flag a plain VXLAN header carries.
pub const FLAG_I: u8 = 0x08;
/// The VNI flannel uses for its VXLAN network (`flannel.1`).
pub const FLANNEL_VNI: u32 = 1;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// Bytes VXLAN encapsulation takes out of the uplink MTU: outer IPv4 header (20), UDP header (8),
/// VXLAN header (8) and inner Ethernet header (14). The outer Ethernet header is not counted: an
/// MTU counts from the IP header. flannel sets the pod MTU to the uplink MTU minus this.
pub const VXLAN_MTU_OVERHEAD: usize = 20 + 8 + VXLAN_HEADER_LEN + 14;

/// Why a VXLAN header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Error {
    /// The buffer is shorter than [`VXLAN_HEADER_LEN`].
    #[error("VXLAN header truncated: fewer than 8 bytes")]
    Truncated,
    /// The flags byte is not exactly [`FLAG_I`]: the I flag is clear or an R flag bit is set.
    #[error("bad VXLAN flags {0:#04x}: expected the I flag (0x08) alone")]
    BadFlags(u8),
    /// The 24 reserved bits after the flags or the 8 reserved bits after the VNI are not zero.
    #[error("VXLAN reserved bits set")]
    ReservedBitsSet,
}

/// The result of parsing a VXLAN header.
pub type Result<T> = core::result::Result<T, Error>;

mod field {
    use core::ops::{Range, RangeFrom};

    pub const FLAGS: usize = 0;
    pub const RESERVED0: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED1: usize = 7;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// A read/write view over a VXLAN header and the inner frame that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without any check; accessors panic if it is shorter than the header.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`]. The flags are not checked here (see
    /// [`Packet::check_flags`] and [`Repr::parse`]), so a bad header can still be inspected.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the whole header, so no accessor panics.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < VXLAN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Checks the flags and reserved fields as the Linux kernel does (see the module docs): the
    /// flags byte is exactly [`FLAG_I`] and both reserved fields are zero.
    pub fn check_flags(&self) -> Result<()> {
        let flags = self.flags();
        if flags != FLAG_I {
            return Err(Error::BadFlags(flags));
        }
        if self.reserved0() != 0 || self.reserved1() != 0 {
            return Err(Error::ReservedBitsSet);
        }
        Ok(())
    }

    /// Unwraps the view into its buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24 reserved bits after the flags byte.
    pub fn reserved0(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::RESERVED0];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The 24-bit VXLAN Network Identifier.
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The 8 reserved bits after the VNI.
    pub fn reserved1(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED1]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the header: the inner Ethernet frame.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the 24 reserved bits after the flags byte (the top 8 bits of `value` are ignored).
    pub fn set_reserved0(&mut self, value: u32) {
        self.buffer.as_mut()[field::RESERVED0].copy_from_slice(&value.to_be_bytes()[1..]);
    }

    /// Sets the VNI. It must fit in 24 bits (checked in debug builds; the top 8 bits are ignored).
    pub fn set_vni(&mut self, vni: u32) {
        debug_assert!(vni <= VNI_MAX, "VNI {vni:#x} wider than 24 bits");
        self.buffer.as_mut()[field::VNI].copy_from_slice(&vni.to_be_bytes()[1..]);
    }

    /// Sets the 8 reserved bits after the VNI.
    pub fn set_reserved1(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED1] = value;
    }

    /// The bytes after the header, mutably: where the inner Ethernet frame goes.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A valid VXLAN header: the I flag, a VNI, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The VXLAN Network Identifier, at most [`VNI_MAX`].
    pub vni: u32,
}

impl Repr {
    /// Parses and validates the header with [`Packet::check_len`] and [`Packet::check_flags`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        packet.check_flags()?;
        Ok(Repr { vni: packet.vni() })
    }

    /// The number of bytes [`Repr::emit`] writes: the header, [`VXLAN_HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        VXLAN_HEADER_LEN
    }

    /// Writes the header (I flag, reserved fields zero, the VNI) into the first 8 bytes of
    /// `packet`, leaving the payload untouched. Panics if the buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.set_reserved0(0);
        packet.set_vni(self.vni);
        packet.set_reserved1(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// flannel's header (I flag, VNI 1) followed by the first bytes of an inner Ethernet frame.
    static PACKET_BYTES: [u8; 12] = [0x08, 0, 0, 0, 0, 0, 0x01, 0, 0xaa, 0xbb, 0xcc, 0xdd];
    static PAYLOAD_BYTES: [u8; 4] = [0xaa, 0xbb, 0xcc, 0xdd];

    fn packet_repr() -> Repr {
        Repr { vni: FLANNEL_VNI }
    }

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.flags(), FLAG_I);
        assert_eq!(packet.reserved0(), 0);
        assert_eq!(packet.vni(), 1);
        assert_eq!(packet.reserved1(), 0);
        assert_eq!(packet.payload(), &PAYLOAD_BYTES[..]);
        assert_eq!(packet.check_flags(), Ok(()));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xff; 12];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_flags(FLAG_I);
        packet.set_reserved0(0);
        packet.set_vni(1);
        packet.set_reserved1(0);
        packet.payload_mut().copy_from_slice(&PAYLOAD_BYTES);
        assert_eq!(packet.into_inner(), &PACKET_BYTES[..]);
    }

    #[test]
    fn parse() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(packet_repr()));
    }

    #[test]
    fn emit() {
        let repr = packet_repr();
        let mut bytes = [0xff; 12];
        bytes[8..].copy_from_slice(&PAYLOAD_BYTES);
        assert_eq!(repr.buffer_len(), VXLAN_HEADER_LEN);
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn largest_vni_round_trips() {
        let mut bytes = [0; VXLAN_HEADER_LEN];
        Repr { vni: VNI_MAX }.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap());
        assert_eq!(repr, Ok(Repr { vni: VNI_MAX }));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..7]),
            Err(Error::Truncated)
        );
        // A bare header with no inner frame is a valid header.
        let packet = Packet::new_checked(&PACKET_BYTES[..8]).unwrap();
        assert!(packet.payload().is_empty());
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&PACKET_BYTES[..3])),
            Err(Error::Truncated)
        );
    }

    fn parse_with(patch: impl FnOnce(&mut Packet<&mut [u8]>)) -> Result<Repr> {
        let mut bytes = PACKET_BYTES;
        patch(&mut Packet::new_unchecked(&mut bytes[..]));
        Repr::parse(&Packet::new_checked(&bytes[..])?)
    }

    #[test]
    fn bad_flags() {
        // I clear (a header without a VNI), an R bit beside I, I clear with an R bit set.
        for flags in [0x00, 0x0c, 0x88, 0x80, 0xff] {
            assert_eq!(
                parse_with(|p| p.set_flags(flags)),
                Err(Error::BadFlags(flags))
            );
        }
    }

    #[test]
    fn reserved_bits_set() {
        for value in [0x80_0000, 0x00_0100, 0x00_0001] {
            assert_eq!(
                parse_with(|p| p.set_reserved0(value)),
                Err(Error::ReservedBitsSet)
            );
        }
        for value in [0x80, 0x01] {
            assert_eq!(
                parse_with(|p| p.set_reserved1(value)),
                Err(Error::ReservedBitsSet)
            );
        }
    }

    #[test]
    fn mtu_overhead() {
        assert_eq!(VXLAN_MTU_OVERHEAD, 50);
        assert_eq!(1500 - VXLAN_MTU_OVERHEAD, 1450);
    }
}
