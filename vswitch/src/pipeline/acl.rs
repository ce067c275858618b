//! Stage 4, acl: NetworkPolicy, statefully, on frames `lookup` decided to forward.
//!
//! Contract: does nothing while no policy exists. Otherwise, for every forwarded IPv4 frame
//! (switched, routed or bound for a tunnel; not the switch's own ARP and echo answers):
//!
//! 1. A frame of a tracked connection passes: the original direction and replies alike, after
//!    the entry's TCP state and timeout are advanced. An entry made under an older policy
//!    generation is judged again, once, in its original direction; if the policies in force
//!    no longer allow it, the entry is removed and the frame dropped (`policy_denied`). A SYN
//!    over a closed connection starts a new one.
//! 2. An ICMP error quoting a tracked connection passes as related (`policy_related`).
//! 3. Anything else is a new flow, judged through the flow cache: egress at the sending pod's
//!    port (when it came from a pod), then ingress at the receiving pod's port (when it goes to
//!    a local pod and does not come from the node itself: the host port with the node IP or
//!    another of [`node_addresses`](crate::tables::Tables::node_addresses) as source; a client
//!    of a Service arriving through the host port with its own address is judged like any
//!    peer). Denied: dropped as `policy_denied` and counted against the policies selecting
//!    the port. Allowed: TCP (not RST), UDP, SCTP and ICMP echo requests become tracked
//!    connections; when the conntrack bucket is full of replied flows the frame is dropped as
//!    `conntrack_full`, and an unreplied flow evicted to make room counts `conntrack_evicted`.
//!
//! Frames of non-first fragments carry no ports: they are judged without them (only rules
//! without ports can allow them) and are never tracked. With `commit` off (traces) the stage
//! decides the same way but changes no state and counts nothing.

use super::{Action, Ipv4Meta, PacketCtx, StageEnv, Verdict, L3};
use crate::frame::FrameArena;
use crate::policy::conntrack::{tcp_flags, Conntrack, FlowKey, Insert, Side};
use crate::policy::flow_cache::FlowCache;
use crate::policy::{Direction, Judgement, PolicySet};
use crate::reason::{DropReason, Event};
use crate::tables::{PortId, PortKind};

/// How connection state decided a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CtNote {
    /// Not looked at (no policy, or not IPv4 forwarding).
    #[default]
    Untracked,
    /// A new flow (judged).
    New,
    /// The original direction of a tracked connection.
    Established,
    /// A reply of a tracked connection.
    Reply,
    /// An ICMP error about a tracked connection.
    Related,
}

impl CtNote {
    /// Lowercase name for traces.
    pub fn name(self) -> &'static str {
        match self {
            CtNote::Untracked => "untracked",
            CtNote::New => "new",
            CtNote::Established => "established",
            CtNote::Reply => "reply",
            CtNote::Related => "related",
        }
    }
}

/// What the stage decided about one frame, for traces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclNote {
    /// Connection state.
    pub ct: CtNote,
    /// The egress judgement (at `egress_port`).
    pub egress: Judgement,
    /// The port whose egress was judged.
    pub egress_port: Option<PortId>,
    /// The ingress judgement (at `ingress_port`).
    pub ingress: Judgement,
    /// The port whose ingress was judged.
    pub ingress_port: Option<PortId>,
}

/// A worker's policy state: connections and the flow cache.
pub struct AclState {
    /// Tracked connections.
    pub conntrack: Conntrack,
    /// Judgements.
    pub cache: FlowCache,
}

/// What the stage reads from a frame's transport header.
#[derive(Clone, Copy, Debug, Default)]
struct L4 {
    /// The flow, for protocols the tracker follows.
    flow: Option<FlowKey>,
    /// Destination port for judging.
    dst_port: Option<u16>,
    /// TCP flags.
    tcp: u8,
    /// Whether an allowed frame of an untracked flow starts an entry.
    starts: bool,
    /// ICMP error: the quoted packet's flow.
    quoted: Option<FlowKey>,
}

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

fn ports(b: &[u8]) -> Option<(u16, u16)> {
    Some((
        u16::from_be_bytes([*b.first()?, *b.get(1)?]),
        u16::from_be_bytes([*b.get(2)?, *b.get(3)?]),
    ))
}

/// Reads the transport header of an IPv4 packet (`l3` starts at its IPv4 header).
fn l4(l3: &[u8], ip: &Ipv4Meta) -> L4 {
    if ip.fragment_offset != 0 {
        return L4::default();
    }
    let end = (ip.total_len as usize).min(l3.len());
    let t = l3.get(ip.header_len as usize..end).unwrap_or_default();
    let key = |sport, dport| FlowKey {
        src: ip.src,
        dst: ip.dst,
        proto: ip.protocol,
        sport,
        dport,
    };
    match ip.protocol {
        TCP | UDP | SCTP => {
            let Some((sport, dport)) = ports(t) else {
                return L4::default();
            };
            let tcp = if ip.protocol == TCP {
                t.get(13).copied().unwrap_or(0)
            } else {
                0
            };
            L4 {
                flow: Some(key(sport, dport)),
                dst_port: Some(dport),
                tcp,
                starts: tcp & tcp_flags::RST == 0,
                quoted: None,
            }
        }
        ICMP => match (t.first(), t.get(4..6)) {
            (Some(&ty @ (0 | 8)), Some(id)) => {
                let id = u16::from_be_bytes([id[0], id[1]]);
                L4 {
                    flow: Some(key(id, id)),
                    starts: ty == 8,
                    ..L4::default()
                }
            }
            (Some(3 | 4 | 5 | 11 | 12), _) => L4 {
                quoted: t.get(8..).and_then(quoted_flow),
                ..L4::default()
            },
            _ => L4::default(),
        },
        _ => L4::default(),
    }
}

/// The flow of the packet an ICMP error quotes (its IPv4 header and first 8 bytes).
fn quoted_flow(q: &[u8]) -> Option<FlowKey> {
    let ihl = usize::from(q.first()? & 0x0f) * 4;
    if q[0] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let addr = |at: usize| -> Option<std::net::Ipv4Addr> {
        let b: [u8; 4] = q.get(at..at + 4)?.try_into().ok()?;
        Some(b.into())
    };
    let proto = *q.get(9)?;
    let t = q.get(ihl..)?;
    let (sport, dport) = match proto {
        TCP | UDP | SCTP => ports(t)?,
        ICMP => {
            let id = u16::from_be_bytes([*t.get(4)?, *t.get(5)?]);
            (id, id)
        }
        _ => return None,
    };
    Some(FlowKey {
        src: addr(12)?,
        dst: addr(16)?,
        proto,
        sport,
        dport,
    })
}

/// Judges a flow at its egress and ingress subjects; stops at the first denial.
fn judge_flow(
    set: &PolicySet,
    cache: &mut FlowCache,
    flow: &FlowKey,
    dst_port: Option<u16>,
    egress: Option<PortId>,
    ingress: Option<PortId>,
) -> (Judgement, Judgement) {
    let e = egress.map_or(Judgement::NotJudged, |port| {
        cache.judge(set, port, Direction::Egress, flow.dst, flow.proto, dst_port)
    });
    if !e.passes() {
        return (e, Judgement::NotJudged);
    }
    let i = ingress.map_or(Judgement::NotJudged, |port| {
        cache.judge(
            set,
            port,
            Direction::Ingress,
            flow.src,
            flow.proto,
            dst_port,
        )
    });
    (e, i)
}

/// Applies policy to every forwarded frame of `batch`; see the module contract.
pub fn run(
    env: StageEnv<'_>,
    arena: &FrameArena,
    state: &mut AclState,
    batch: &mut [PacketCtx],
    commit: bool,
) {
    let set = &env.tables.policy;
    if !set.is_active() {
        return;
    }
    let Some(config) = env.tables.config.as_ref() else {
        return;
    };
    let in_kind = env.tables.port(env.in_port).map(|p| p.kind);
    let from_pod = (in_kind == Some(PortKind::Pod)).then_some(env.in_port);
    for p in batch.iter_mut() {
        let (Verdict::Forward(out, action), L3::Ipv4(ip)) = (p.verdict, p.meta.l3) else {
            continue;
        };
        let to_pod = match action {
            Action::Switch | Action::Route { .. } => env
                .tables
                .port(out)
                .filter(|o| o.kind == PortKind::Pod)
                .map(|_| out)
                .filter(|_| {
                    in_kind != Some(PortKind::Host)
                        || !(config.node_ip == Some(ip.src)
                            || env.tables.node_addresses.contains(&ip.src))
                }),
            Action::Encap { .. } => None,
            _ => continue,
        };
        let frame = arena.data(p.desc);
        let l4 = l4(frame.get(14..).unwrap_or_default(), &ip);
        let dst_port = if ip.protocol == ICMP {
            None
        } else {
            l4.dst_port
        };
        let mut note = AclNote {
            ct: CtNote::New,
            egress_port: from_pod,
            ingress_port: to_pod,
            ..AclNote::default()
        };
        let ct = &mut state.conntrack;
        let tracked = l4
            .flow
            .and_then(|f| ct.lookup(&f, env.now))
            .filter(|&(i, side)| {
                let reopens = ct.reopens(i, side, l4.tcp);
                if reopens && commit {
                    ct.remove(i);
                }
                !reopens
            });
        if let Some((i, side)) = tracked {
            let entry = *ct.entry(i).expect("lookup returned a live slot");
            note.ct = match side {
                Side::Original => CtNote::Established,
                Side::Reply => CtNote::Reply,
            };
            (note.egress_port, note.ingress_port) = (entry.egress, entry.ingress);
            if entry.generation != set.generation() {
                let orig = entry.original();
                let orig_port = (orig.proto != ICMP).then_some(orig.dport);
                (note.egress, note.ingress) = judge_flow(
                    set,
                    &mut state.cache,
                    &orig,
                    orig_port,
                    entry.egress,
                    entry.ingress,
                );
                if !(note.egress.passes() && note.ingress.passes()) {
                    if commit {
                        state.conntrack.remove(i);
                    }
                    p.acl = note;
                    p.verdict = Verdict::Drop(DropReason::PolicyDenied);
                    continue;
                }
                if commit {
                    state.conntrack.set_generation(i, set.generation());
                }
            }
            if commit {
                state.conntrack.update(i, side, l4.tcp, env.now);
                if ip.protocol == ICMP {
                    state.conntrack.set_icmp_timeout(i, env.now);
                }
            }
            p.acl = note;
            continue;
        }
        if l4.quoted.is_some_and(|q| ct.lookup(&q, env.now).is_some()) {
            note.ct = CtNote::Related;
            if commit {
                env.counters.event(Event::PolicyRelated);
            }
            p.acl = note;
            continue;
        }
        let flow = l4.flow.unwrap_or(FlowKey {
            src: ip.src,
            dst: ip.dst,
            proto: ip.protocol,
            ..FlowKey::default()
        });
        (note.egress, note.ingress) =
            judge_flow(set, &mut state.cache, &flow, dst_port, from_pod, to_pod);
        p.acl = note;
        if commit {
            if let Some(port) = from_pod {
                set.count(port, Direction::Egress, note.egress);
            }
            if let Some(port) = to_pod {
                set.count(port, Direction::Ingress, note.ingress);
            }
        }
        if !(note.egress.passes() && note.ingress.passes()) {
            p.verdict = Verdict::Drop(DropReason::PolicyDenied);
            continue;
        }
        let (Some(f), true, true) = (l4.flow, l4.starts, commit) else {
            continue;
        };
        let inserted =
            state
                .conntrack
                .insert(&f, l4.tcp, set.generation(), from_pod, to_pod, env.now);
        match inserted {
            Insert::Full => p.verdict = Verdict::Drop(DropReason::ConntrackFull),
            Insert::Evicted(i) | Insert::Stored(i) => {
                if matches!(inserted, Insert::Evicted(_)) {
                    env.counters.event(Event::ConntrackEvicted);
                }
                if f.proto == ICMP {
                    state.conntrack.set_icmp_timeout(i, env.now);
                }
            }
        }
    }
}
