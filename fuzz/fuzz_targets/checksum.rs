//! The Internet checksum: `sum` against RFC 1071 as written, `combine` of pieces split at an even
//! offset, `pseudo_header_v4` against the sum of the pseudo-header's bytes, and the incremental
//! updates (`update_u16`, `update_u32`) against recomputation from scratch.
//!
//! Input: `[offset u8][new word u16][new dword u32]` then the data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use vtep::checksum::{combine, pseudo_header_v4, sum, update_u16, update_u32};

/// RFC 1071 as written: 16-bit words into a wide accumulator, then fold.
fn naive_sum(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for pair in bytes.chunks(2) {
        acc += u64::from(u16::from_be_bytes([
            pair[0],
            pair.get(1).copied().unwrap_or(0),
        ]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// `incremental` is what an update produced for `data` (after the change): it must equal the
/// checksum computed from scratch, except that for all-zero data either zero is right.
fn same_checksum(incremental: u16, data: &[u8]) {
    let full = !sum(data);
    if data.iter().all(|&b| b == 0) {
        assert!(matches!(incremental, 0 | 0xffff), "{incremental:#06x}");
    } else {
        assert_eq!(
            incremental, full,
            "incremental update differs from recomputation"
        );
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 7 {
        return;
    }
    let offset = usize::from(input[0]);
    let new16 = u16::from_be_bytes([input[1], input[2]]);
    let new32 = u32::from_be_bytes([input[3], input[4], input[5], input[6]]);
    let data = &input[7..];

    let s = sum(data);
    assert_eq!(s, naive_sum(data));
    // A folded sum is zero only for all-zero data.
    assert_eq!(s == 0, data.iter().all(|&b| b == 0));

    // Pieces split at an even offset compose.
    let split = (offset * 2).min(data.len()) & !1;
    let (a, b) = data.split_at(split);
    assert_eq!(combine(&[sum(a), sum(b)]), s);
    assert_eq!(combine(&[s]), s);
    assert_eq!(combine(&[]), 0);

    // The pseudo-header's sum is the sum of its 12 bytes.
    if data.len() >= 11 {
        let src = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
        let dst = Ipv4Addr::new(data[4], data[5], data[6], data[7]);
        let (protocol, length) = (data[8], u16::from_be_bytes([data[9], data[10]]));
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&data[..8]);
        bytes[9] = protocol;
        bytes[10..12].copy_from_slice(&length.to_be_bytes());
        assert_eq!(pseudo_header_v4(src, dst, protocol, length), sum(&bytes));
    }

    // Data followed by its checksum verifies: the sum over both is 0xffff.
    let mut with_checksum = data.to_vec();
    if with_checksum.len() % 2 == 1 {
        with_checksum.push(0);
    }
    with_checksum.extend_from_slice(&(!s).to_be_bytes());
    assert_eq!(sum(&with_checksum), 0xffff);

    // Incremental updates.
    let old = !s;
    if data.len() >= 2 {
        let at = split.min(data.len() - 2) & !1;
        let mut changed = data.to_vec();
        let old16 = u16::from_be_bytes([changed[at], changed[at + 1]]);
        changed[at..at + 2].copy_from_slice(&new16.to_be_bytes());
        same_checksum(update_u16(old, old16, new16), &changed);
    }
    if data.len() >= 4 {
        let at = split.min(data.len() - 4) & !1;
        let mut changed = data.to_vec();
        let old32 = u32::from_be_bytes(changed[at..at + 4].try_into().unwrap());
        changed[at..at + 4].copy_from_slice(&new32.to_be_bytes());
        same_checksum(update_u32(old, old32, new32), &changed);
    }
});
