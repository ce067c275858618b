//! The control protocol decoder: what the daemon does with one request line
//! (`serde_json::from_str::<ctl::proto::Request>`), and what clients do with a response line
//! (`Response`), on arbitrary bytes.
//!
//! Invariants: no panic; whatever decodes encodes, and the encoding decodes to the same value
//! (as a line: no raw newline in it) — so what a client sends is what the daemon reads.

#![no_main]

use ctl::proto::{Request, Response};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(line: &str) {
    let Ok(value) = serde_json::from_str::<T>(line) else {
        return;
    };
    let encoded = serde_json::to_string(&value).expect("a decoded value encodes");
    assert!(
        !encoded.contains('\n'),
        "an encoded line spans lines: {encoded}"
    );
    let again: T = serde_json::from_str(&encoded)
        .unwrap_or_else(|e| panic!("{encoded} does not decode: {e} (from {line:?})"));
    assert_eq!(again, value, "round trip of {line:?} through {encoded}");
    // Through serde_json::Value too (what tests and scripts do).
    let v = serde_json::to_value(&value).expect("to a JSON value");
    assert_eq!(
        serde_json::from_value::<T>(v).expect("from a JSON value"),
        value
    );
}

fuzz_target!(|data: &[u8]| {
    // The daemon reads bytes; a line that is not UTF-8 is refused by from_slice as well.
    let from_bytes = serde_json::from_slice::<Request>(data);
    let Ok(line) = std::str::from_utf8(data) else {
        assert!(from_bytes.is_err(), "decoded non-UTF-8 bytes");
        return;
    };
    assert_eq!(from_bytes.ok(), serde_json::from_str::<Request>(line).ok());
    // The daemon decodes the line trimmed (vswitchd::control::decode).
    round_trip::<Request>(line.trim());
    round_trip::<Response>(line);
});
