//! ICMP messages the switch writes: echo replies and errors, in place in a frame's IPv4 bytes.
//!
//! Contract: [`echo_reply`] turns a valid echo request into its reply where it lies;
//! [`build_error`] turns an offending packet into the ICMP error about it, moving the quoted
//! bytes (its header and first 8 payload bytes, RFC 792) behind the new headers. Formats are
//! specified in `tests/pcap/README.md`. Both work on the bytes after the Ethernet header.

use super::IcmpError;
use smoltcp::wire::{Icmpv4DstUnreachable, Icmpv4Message, Icmpv4TimeExceeded};
use smoltcp::wire::{IpProtocol, Ipv4Packet};
use std::net::Ipv4Addr;
use vtep::checksum;

/// IPv4 header (20) + ICMP header (8).
const ERROR_HEADERS: usize = 28;
/// Time to live of packets the switch originates.
const ORIGIN_TTL: u8 = 64;
/// TOS of ICMP errors: precedence "internetwork control", as Linux sends them.
const ICMP_ERROR_TOS: u8 = 0xc0;

/// ICMP echo header: type, code, checksum, identifier, sequence number.
const ECHO_HEADER: usize = 8;

/// Why an echo request to the gateway is not answered.
#[derive(Debug, PartialEq, Eq)]
pub enum EchoError {
    /// Not an echo request after all: the message is shorter than the 8-byte echo header, or
    /// its code is not 0.
    NotEchoRequest,
    /// The ICMP checksum of the request did not verify.
    BadChecksum,
}

/// Bytes of the offending packet an ICMP error quotes: its header and up to 8 payload bytes.
pub fn quote_len(header_len: u8, total_len: u16) -> usize {
    let header = header_len as usize;
    header + (total_len as usize - header).min(8)
}

/// Length of the Ethernet frame carrying an ICMP error that quotes `quote` bytes.
pub fn error_frame_len(quote: usize) -> usize {
    14 + ERROR_HEADERS + quote
}

/// Turns the echo request in `ip` (header of `header_len` bytes, `ip.len()` = total length)
/// into its reply: addresses swapped, TTL 64, type 0, both checksums recomputed. A message
/// shorter than the echo header or with a code other than 0 is refused before its checksum.
pub fn echo_reply(ip: &mut [u8], header_len: usize) -> Result<(), EchoError> {
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let ip = &mut ip[..total];
    if ip.len() < header_len + ECHO_HEADER || ip[header_len + 1] != 0 {
        return Err(EchoError::NotEchoRequest);
    }
    if checksum::sum(&ip[header_len..]) != 0xffff {
        return Err(EchoError::BadChecksum);
    }
    let (addrs_src, addrs_dst) = ip[12..20].split_at_mut(4);
    addrs_src.swap_with_slice(addrs_dst);
    ip[8] = ORIGIN_TTL;
    fill_header_checksum(&mut ip[..header_len]);
    let icmp = &mut ip[header_len..];
    icmp[0] = 0;
    icmp[2..4].fill(0);
    let c = !checksum::sum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Replaces the offending packet at the start of `ip` with an ICMP `error` from `from` to `to`
/// that quotes its first `quote` bytes. `ip` must hold `28 + quote` bytes.
pub fn build_error(ip: &mut [u8], quote: usize, error: IcmpError, from: Ipv4Addr, to: Ipv4Addr) {
    ip.copy_within(0..quote, ERROR_HEADERS);
    let total = ERROR_HEADERS + quote;
    {
        let mut hdr = Ipv4Packet::new_unchecked(&mut ip[..20]);
        hdr.set_version(4);
        hdr.set_header_len(20);
        hdr.set_dscp(ICMP_ERROR_TOS >> 2);
        hdr.set_ecn(0);
        hdr.set_total_len(total as u16);
        hdr.set_ident(0);
        hdr.clear_flags();
        hdr.set_frag_offset(0);
        hdr.set_hop_limit(ORIGIN_TTL);
        hdr.set_next_header(IpProtocol::Icmp);
        hdr.set_src_addr(from);
        hdr.set_dst_addr(to);
    }
    fill_header_checksum(&mut ip[..20]);
    let (msg_type, code, rest) = match error {
        IcmpError::TimeExceeded => (
            Icmpv4Message::TimeExceeded,
            Icmpv4TimeExceeded::TtlExpired.into(),
            0u32,
        ),
        IcmpError::FragmentationNeeded { mtu } => (
            Icmpv4Message::DstUnreachable,
            Icmpv4DstUnreachable::FragRequired.into(),
            u32::from(mtu),
        ),
    };
    let msg = &mut ip[20..total];
    msg[0] = msg_type.into();
    msg[1] = code;
    msg[2..4].fill(0);
    msg[4..8].copy_from_slice(&rest.to_be_bytes());
    let c = !checksum::sum(msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

fn fill_header_checksum(header: &mut [u8]) {
    header[10..12].fill(0);
    let c = !checksum::sum(header);
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (IHL 5, protocol 1) followed by `icmp`, total length set.
    fn packet(icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 244, 1, 2, 10, 244, 1, 1,
        ];
        p.extend_from_slice(icmp);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        fill_header_checksum(&mut p[..20]);
        p
    }

    /// `head` with its checksum field (bytes 2..4) set so the message verifies.
    fn with_checksum(mut head: Vec<u8>) -> Vec<u8> {
        head[2..4].fill(0);
        let c = !checksum::sum(&head);
        head[2..4].copy_from_slice(&c.to_be_bytes());
        head
    }

    #[test]
    fn answers_a_valid_echo_request() {
        let mut p = packet(&with_checksum(vec![8, 0, 0, 0, 0x42, 0x42, 0, 1, 0xaa]));
        assert_eq!(echo_reply(&mut p, 20), Ok(()));
        assert_eq!((p[20], &p[12..16]), (0, &[10, 244, 1, 1][..]));
        assert_eq!(checksum::sum(&p[20..]), 0xffff);
    }

    #[test]
    fn refuses_what_is_no_echo_request_without_panicking() {
        // 3 ICMP bytes whose checksum verifies (0x08ff + 0xf700 = 0xffff): once a panic.
        let mut short = packet(&[0x08, 0xff, 0xf7]);
        assert_eq!(checksum::sum(&short[20..]), 0xffff);
        assert_eq!(echo_reply(&mut short, 20), Err(EchoError::NotEchoRequest));
        for n in 0..8 {
            let mut cut = packet(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0][..n]);
            assert_eq!(
                echo_reply(&mut cut, 20),
                Err(EchoError::NotEchoRequest),
                "{n} bytes"
            );
        }
        let mut code1 = packet(&with_checksum(vec![8, 1, 0, 0, 0x42, 0x42, 0, 1]));
        assert_eq!(echo_reply(&mut code1, 20), Err(EchoError::NotEchoRequest));
        let mut bad = packet(&[8, 0, 0x12, 0x34, 0x42, 0x42, 0, 1]);
        assert_eq!(echo_reply(&mut bad, 20), Err(EchoError::BadChecksum));
    }
}
