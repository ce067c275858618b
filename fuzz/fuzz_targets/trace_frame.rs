//! The `trace` control request: `vswitchd::trace::frame_from` parses the operator's frame (hex
//! bytes, or `icmp|udp|tcp|arp SRC > DST [ttl N] [len N] [port N] [dst-mac MAC]`) and
//! `vswitchd::trace::trace` runs it through a private pipeline over the tunnel topology with
//! NetworkPolicy in force, as the daemon does for `vswitchctl trace`.
//!
//! Input: a selector byte (the port the frame arrives on: pod1, pod2, host, uplink), then the
//! request's `frame` text.
//!
//! Invariants: no panic, no huge allocation; hex input gives exactly its bytes; a described frame
//! comes from the port's MAC; a trace reports every stage, in pipeline order, and a forwarded
//! frame's bytes as even-length hex with the port it leaves on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::tables::PortId;
use vswitchd::trace::{frame_from, trace};

const STAGES: [&str; 7] = [
    "decap", "parse", "check", "lookup", "acl", "limits", "rewrite",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (generations, _) = vswitch_fuzz::Mode::Policy.tables();
    let tables = &generations[0];
    let port = tables
        .port(PortId(u16::from(selector % 4)))
        .expect("port exists");
    let Ok(frame) = frame_from(text, port, vswitch_fuzz::GW_MAC) else {
        return;
    };
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if compact.len() >= 28 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        assert_eq!(frame.len(), compact.len() / 2);
    } else {
        assert_eq!(
            frame[6..12],
            port.mac.0,
            "a described frame comes from the port"
        );
    }
    let Ok(t) = trace(tables, port, &frame) else {
        assert!(frame.len() > 3840, "a {}-byte frame refused", frame.len());
        return;
    };
    let stages: Vec<&str> = t.steps.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages, STAGES);
    match (&t.output, &t.output_port) {
        (Some(hex), Some(name)) => {
            assert!(hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(tables.port_by_name(name).is_some());
        }
        (None, None) => {}
        (Some(_), None) => {} // a port missing from the tables cannot be named
        other => panic!("output port without output: {other:?}"),
    }
    let _ = ctl::render::trace(&t);
});
