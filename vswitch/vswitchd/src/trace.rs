//! `vswitchctl trace`: what the pipeline would do with one frame, stage by stage.
//!
//! Contract: [`frame_from`] turns the operator's input (hex bytes, or a short description such
//! as `icmp 10.244.1.2 > 10.244.1.3 ttl 5`) into a frame as the given port would send it;
//! [`trace`] runs it through a private pipeline over the current table snapshot and reports
//! each stage's decision and the frame as it would leave. Nothing is transmitted and no
//! counter moves. The `acl` step says which policy rule allowed the frame, or which policies
//! denied it. Non-goals: the workers' learned FDB entries (the trace pipeline starts with none)
//! and connection state (every traced frame is judged as the first of its connection).

use ctl::proto::{Trace, TraceStep};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::frame::{FrameArena, FrameLayout};
use vswitch::mac::MacAddr;
use vswitch::pipeline::acl::{AclNote, CtNote};
use vswitch::pipeline::{PacketCtx, Pipeline, PipelineConfig, Verdict, L3};
use vswitch::policy::{Direction, Judgement};
use vswitch::tables::{PortId, PortInfo, Tables};
use vswitch::testing::{arp_request, echo_request, ipv4_frame};

/// The longest payload `len` may ask for: what a frame buffer holds (a longer frame could not
/// be traced anyway, and the operator's number must not size an allocation).
const MAX_LEN: usize = FrameLayout::DEFAULT.max_data() as usize;

/// The frame described by `input`, as sent by `port` (hex bytes are taken as they are).
pub fn frame_from(input: &str, port: &PortInfo, gateway_mac: MacAddr) -> Result<Vec<u8>, String> {
    let compact: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if compact.len() >= 28 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        return (0..compact.len() / 2)
            .map(|i| u8::from_str_radix(&compact[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| e.to_string());
    }
    let usage = "describe the frame as `icmp|udp|tcp|arp SRC > DST [ttl N] [len N] [port N] [dst-mac MAC]`, or give hex bytes";
    let words: Vec<&str> = input.split_whitespace().collect();
    let [proto, src, ">", dst, rest @ ..] = words.as_slice() else {
        return Err(usage.into());
    };
    let ip = |s: &str| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| format!("{s:?} is not an IPv4 address; {usage}"))
    };
    let (src, dst) = (ip(src)?, ip(dst)?);
    let (mut ttl, mut len, mut dst_mac) = (64u8, 0usize, gateway_mac);
    let mut dport: Option<u16> = None;
    for pair in rest.chunks(2) {
        match pair {
            ["ttl", v] => ttl = v.parse().map_err(|_| format!("bad ttl {v:?}"))?,
            ["len", v] => {
                len = v.parse().map_err(|_| format!("bad len {v:?}"))?;
                if len > MAX_LEN {
                    return Err(format!(
                        "len {len} is too long: a frame holds {MAX_LEN} bytes"
                    ));
                }
            }
            ["port", v] => dport = Some(v.parse().map_err(|_| format!("bad port {v:?}"))?),
            ["dst-mac", v] => {
                dst_mac = v
                    .parse()
                    .map_err(|e: vswitch::mac::ParseMacError| e.to_string())?
            }
            _ => return Err(usage.into()),
        }
    }
    let pad = |mut payload: Vec<u8>| {
        payload.resize(payload.len().max(len), 0);
        payload
    };
    Ok(match *proto {
        "icmp" => ipv4_frame(
            port.mac,
            dst_mac,
            src,
            dst,
            ttl,
            1,
            &echo_request(1, 1, &vec![0; len]),
        ),
        "udp" => ipv4_frame(
            port.mac,
            dst_mac,
            src,
            dst,
            ttl,
            17,
            &pad([
                &[0x9c, 0x40][..],
                &dport.unwrap_or(53).to_be_bytes(),
                &[0, 8, 0, 0],
            ]
            .concat()),
        ),
        "tcp" => {
            let [hi, lo] = dport.unwrap_or(80).to_be_bytes();
            let mut syn = vec![
                0x9c, 0x40, hi, lo, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
            ];
            syn = pad(syn);
            ipv4_frame(port.mac, dst_mac, src, dst, ttl, 6, &syn)
        }
        "arp" => arp_request(port.mac, src, dst),
        other => return Err(format!("unknown protocol {other:?}; {usage}")),
    })
}

/// Runs `frame`, received on `port`, through the pipeline over `tables`.
pub fn trace(tables: &Tables, port: &PortInfo, frame: &[u8]) -> Result<Trace, String> {
    let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 4).map_err(|e| e.to_string())?;
    let desc = arena
        .alloc_copy(frame)
        .ok_or_else(|| format!("a {}-byte frame does not fit a frame buffer", frame.len()))?;
    let mut pipeline = Pipeline::new(PipelineConfig::default(), Arc::default());
    let mut steps = Vec::new();
    let end = pipeline.trace(tables, &mut arena, port.id, desc, 0, &mut |stage, ctx| {
        let mut verdict = describe(tables, ctx);
        if stage == "acl" {
            verdict += &describe_acl(tables, &ctx.acl);
        }
        steps.push(TraceStep {
            stage: stage.into(),
            verdict,
        });
    });
    let (output, output_port) = match end.verdict {
        Verdict::Forward(out, _) => (
            Some(
                arena
                    .data(end.desc)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            ),
            tables.port(out).map(|p| p.name.clone()),
        ),
        _ => (None, None),
    };
    Ok(Trace {
        steps,
        output,
        output_port,
    })
}

/// How policy judged a frame: `; policy: new flow; egress at A: allowed by ns/p egress rule 0;
/// ingress at B: denied (selected by ns/q, no rule allows)`. Traces judge every frame as the
/// first of its connection: connection state lives in the workers.
fn describe_acl(tables: &Tables, note: &AclNote) -> String {
    if note.ct == CtNote::Untracked {
        return if tables.policy.is_active() {
            String::new()
        } else {
            "; policy: none applied (no NetworkPolicy)".into()
        };
    }
    let set = &tables.policy;
    let name = |id: PortId| {
        tables
            .port(id)
            .map_or_else(|| format!("port {}", id.0), |p| p.name.clone())
    };
    let mut out = format!("; policy: {} flow", note.ct.name());
    for (direction, port, judgement) in [
        (Direction::Egress, note.egress_port, note.egress),
        (Direction::Ingress, note.ingress_port, note.ingress),
    ] {
        let Some(port) = port else { continue };
        let what = match judgement {
            Judgement::NotJudged => continue,
            Judgement::NotSelected => "allowed (no policy selects it)".to_string(),
            Judgement::Allowed(r) => format!("allowed by {}", set.describe_rule(r)),
            Judgement::Denied => format!(
                "denied (selected by {}; no rule allows it)",
                set.selecting(port, direction).join(", ")
            ),
        };
        out += &format!("; {} at {}: {what}", direction.name(), name(port));
    }
    out
}

fn describe(tables: &Tables, ctx: &PacketCtx) -> String {
    let name = |id| {
        tables
            .port(id)
            .map_or_else(|| format!("port {}", id.0), |p| p.name.clone())
    };
    match ctx.verdict {
        Verdict::Pending => match ctx.meta.l3 {
            L3::Ipv4(ip) => format!(
                "continue: IPv4 {} > {} ttl {} proto {} len {}",
                ip.src, ip.dst, ip.ttl, ip.protocol, ip.total_len
            ),
            L3::Arp(a) => format!(
                "continue: ARP op {} {} asks for {}",
                a.op, a.sender_ip, a.target_ip
            ),
            L3::None => "continue".into(),
        },
        Verdict::Drop(reason) => format!("drop: {reason}"),
        Verdict::Consume(event) => format!("consumed: {event}"),
        Verdict::Forward(port, action) => format!("forward to {}: {action:?}", name(port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch::tables::PortKind;

    fn pod() -> PortInfo {
        PortInfo {
            id: PortId(0),
            name: "pod1".into(),
            kind: PortKind::Pod,
            mac: "0a:58:0a:f4:01:02".parse().unwrap(),
            ip: Some("10.244.1.2".parse().unwrap()),
            mtu: 1450,
        }
    }

    const GW: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01]);

    /// Found by `fuzz/fuzz_targets/trace_frame.rs`: `len` went straight into an allocation, so
    /// one `vswitchctl trace ... len 8198552921648689608` aborted the daemon (allocation
    /// failure), and a few billion made it zero and copy gigabytes.
    #[test]
    fn a_len_longer_than_a_frame_is_refused() {
        for input in [
            "icmp 10.244.1.2 > 10.244.1.3 len 8198552921648689608",
            "udp 10.244.1.2 > 10.244.1.3 len 4000000000",
            "tcp 10.244.1.2 > 10.244.1.3 len 3841",
        ] {
            let err = frame_from(input, &pod(), GW).unwrap_err();
            assert!(err.contains("len"), "{input}: {err}");
        }
        let frame = frame_from("udp 10.244.1.2 > 10.244.1.3 len 3800", &pod(), GW).unwrap();
        assert_eq!(frame.len(), 14 + 20 + 3800);
    }
}
