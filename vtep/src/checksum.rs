//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Contract: pure functions over bytes in network byte order. [`sum`], [`combine`] and
//! [`pseudo_header_v4`] return a folded ones'-complement *sum*, not yet complemented, so the sums
//! of several pieces compose with [`combine`]; the value that goes on the wire is `!sum`. A
//! received header or segment is intact when the sum over it, checksum field included, is
//! `0xffff`. [`update_u16`] and [`update_u32`] patch a wire checksum after one field changed,
//! without touching the rest of the data.
//!
//! Non-goals: offload hints, and the UDP rule that a computed checksum of 0 is sent as `0xffff`
//! (RFC 768), which belongs to whoever writes the UDP header.

use std::net::Ipv4Addr;

/// Folds a wide ones'-complement accumulator into 16 bits (end-around carry).
const fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Adds `word` to `acc` in 64-bit ones'-complement arithmetic (the carry wraps around).
const fn add(acc: u64, word: u64) -> u64 {
    let (sum, carry) = acc.overflowing_add(word);
    // No overflow here: after a carry, `sum` is at most `u64::MAX - 1`.
    sum + carry as u64
}

/// The folded ones'-complement sum of `bytes` taken as big-endian 16-bit words, an odd last byte
/// padded with a zero byte (RFC 1071).
///
/// Sums eight bytes at a time: the ones'-complement sum over 64-bit words folds to the same
/// 16-bit value as the sum over 16-bit words (RFC 1071 §2(B)).
pub fn sum(bytes: &[u8]) -> u16 {
    let mut chunks = bytes.chunks_exact(8);
    let mut acc = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        acc = add(acc, u64::from_be_bytes(word));
    }
    let rest = chunks.remainder();
    let mut word = [0; 8];
    word[..rest.len()].copy_from_slice(rest);
    fold(add(acc, u64::from_be_bytes(word)))
}

/// Combines partial sums (from [`sum`] or [`pseudo_header_v4`]) into one folded sum.
///
/// Each piece passed to [`sum`] must start at an even offset of the checksummed data, so that
/// its bytes fall on the same halves of the 16-bit words.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The folded sum of the IPv4 pseudo-header that UDP and TCP checksums cover (RFC 768, RFC 793):
/// source and destination address, zero, protocol, and `length`, the UDP or TCP length
/// (header and payload).
///
/// A UDP checksum over IPv4 is `!combine(&[pseudo_header_v4(..), sum(udp_header_and_payload)])`.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let src = u32::from(src);
    let dst = u32::from(dst);
    fold(
        u64::from(src >> 16)
            + u64::from(src & 0xffff)
            + u64::from(dst >> 16)
            + u64::from(dst & 0xffff)
            + u64::from(protocol)
            + u64::from(length),
    )
}

/// Patches the wire checksum `old_checksum` after one 16-bit word of the covered data changed
/// from `old_word` to `new_word`: RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`.
///
/// The result equals a recomputation from scratch unless the covered data was all zeros.
pub const fn update_u16(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !fold(!old_checksum as u64 + !old_word as u64 + new_word as u64)
}

/// Patches the wire checksum after a 32-bit field at an even offset (an IPv4 address) changed
/// from `old` to `new`: [`update_u16`] applied to both of its words at once.
pub const fn update_u32(old_checksum: u16, old: u32, new: u32) -> u16 {
    let (old_hi, old_lo) = ((old >> 16) as u16, old as u16);
    let (new_hi, new_lo) = ((new >> 16) as u16, new as u16);
    !fold(!old_checksum as u64 + !old_hi as u64 + !old_lo as u64 + new_hi as u64 + new_lo as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 as written: 16-bit words into a 32-bit accumulator, then fold.
    fn naive_sum(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            acc += u32::from(word);
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// The textbook IPv4 header 192.168.0.1 -> 192.168.0.199 (UDP, 115 bytes), checksum 0xb861.
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn header_verifies_and_recomputes() {
        assert_eq!(sum(&IPV4_HEADER), 0xffff);
        let mut header = IPV4_HEADER;
        header[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(!sum(&header), 0xb861);
    }

    #[test]
    fn odd_length_pads_last_byte_high() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x6834);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn pseudo_header() {
        let src = Ipv4Addr::new(192, 168, 77, 1);
        let dst = Ipv4Addr::new(192, 168, 77, 2);
        let bytes = [192, 168, 77, 1, 192, 168, 77, 2, 0, 17, 0, 114];
        assert_eq!(pseudo_header_v4(src, dst, 17, 114), naive_sum(&bytes));
    }

    #[test]
    fn update_ttl_decrement() {
        // The classic use: decrement TTL (the high byte of word 4) and patch the checksum.
        let mut header = IPV4_HEADER;
        let old_word = u16::from_be_bytes([header[8], header[9]]);
        header[8] -= 1;
        let new_word = u16::from_be_bytes([header[8], header[9]]);
        let patched = update_u16(0xb861, old_word, new_word);
        header[10..12].copy_from_slice(&patched.to_be_bytes());
        assert_eq!(sum(&header), 0xffff);
    }

    proptest! {
        #[test]
        fn sum_matches_naive(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            prop_assert_eq!(sum(&bytes), naive_sum(&bytes));
        }

        #[test]
        fn sums_combine(
            a in proptest::collection::vec(any::<[u8; 2]>(), 0..200),
            b in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let a: Vec<u8> = a.concat();
            let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(combine(&[sum(&a), sum(&b)]), sum(&whole));
        }

        #[test]
        fn update_matches_recompute(
            mut words in proptest::collection::vec(any::<u16>(), 1..40),
            index in any::<prop::sample::Index>(),
            new_word in any::<u16>(),
        ) {
            // A fixed non-zero first word: the incremental update is exact for non-zero data.
            words.insert(0, 0x4500);
            let bytes = |w: &[u16]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
            let old_checksum = !sum(&bytes(&words));
            let i = 1 + index.index(words.len() - 1);
            let old_word = std::mem::replace(&mut words[i], new_word);
            prop_assert_eq!(update_u16(old_checksum, old_word, new_word), !sum(&bytes(&words)));
        }

        #[test]
        fn update_u32_matches_recompute(
            mut header in any::<[u8; 20]>(),
            new_addr in any::<u32>(),
        ) {
            header[0] = 0x45;
            let old_checksum = !sum(&header);
            let old_addr = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
            header[12..16].copy_from_slice(&new_addr.to_be_bytes());
            prop_assert_eq!(update_u32(old_checksum, old_addr, new_addr), !sum(&header));
        }
    }
}
