//! Stage 3, lookup: answer ARP, learn source MACs, decide where IPv4 frames go.
//!
//! Contract: ARP is never forwarded, and ARP that arrived inside a tunnel is dropped
//! (`tunnel_inner_arp`). A gratuitous ARP is consumed (`gratuitous_arp`); a request
//! is answered for the gateway IP and for local pod IPs (pods get the pod's own MAC, the host
//! port gets the gateway MAC so it routes through the switch); anything else is dropped with a
//! reason. IPv4 to the gateway MAC is routed by destination IP ([`NextHop`]); other unicast is
//! switched by FDB (static pod entries, then entries learned on the host port); unknown
//! destinations are dropped, never flooded. Remote pod subnets go into their tunnel (dropped as
//! `tunnel_unresolved` until its next hop is known); decapsulated packets may only reach local
//! pods (`tunnel_not_local`). Decides only; `rewrite` edits the frames.

use super::{Action, ArpMeta, Ipv4Meta, PacketCtx, StageEnv, Verdict, L3};
use crate::fdb::{Learn, LearnedFdb};
use crate::mac::MacAddr;
use crate::reason::{DropReason, Event};
use crate::tables::{NextHop, PortKind, SwitchConfig};

/// Looks up every pending packet of `batch`.
pub fn run(env: StageEnv<'_>, fdb: &mut LearnedFdb, batch: &mut [PacketCtx]) {
    let Some(config) = env.tables.config.as_ref() else {
        for p in batch.iter_mut().filter(|p| p.verdict == Verdict::Pending) {
            p.verdict = Verdict::Drop(DropReason::NoRoute);
        }
        return;
    };
    let in_kind = env.tables.port(env.in_port).map(|p| p.kind);
    for p in batch.iter_mut().filter(|p| p.verdict == Verdict::Pending) {
        if in_kind == Some(PortKind::Host) {
            match fdb.learn(p.meta.src_mac, env.in_port, env.now) {
                Learn::Added => env.counters.event(Event::FdbLearned),
                Learn::Full => env.counters.event(Event::FdbFull),
                Learn::Refreshed => {}
            }
        }
        p.verdict = match p.meta.l3 {
            L3::Arp(_) if p.tunnel.is_some() => Verdict::Drop(DropReason::TunnelInnerArp),
            L3::Arp(arp) => arp_verdict(env, config, in_kind, &arp),
            L3::Ipv4(ip) => ipv4_verdict(env, config, fdb, p.meta.dst_mac, &ip, p.tunnel.is_some()),
            L3::None => Verdict::Drop(DropReason::UnsupportedEthertype),
        };
    }
}

fn arp_verdict(
    env: StageEnv<'_>,
    config: &SwitchConfig,
    in_kind: Option<PortKind>,
    arp: &ArpMeta,
) -> Verdict {
    let gratuitous = arp.sender_ip == arp.target_ip;
    match (arp.op, gratuitous) {
        (_, true) => return Verdict::Consume(Event::GratuitousArp),
        (2, false) => return Verdict::Drop(DropReason::UnexpectedArpReply),
        _ => {}
    }
    let pod = env.tables.routes.pod(arp.target_ip);
    let answer = if arp.target_ip == config.gateway_ip {
        Some(config.gateway_mac)
    } else if in_kind == Some(PortKind::Host) {
        pod.map(|_| config.gateway_mac)
    } else {
        pod.and_then(|id| env.tables.port(id)).map(|p| p.mac)
    };
    match answer {
        Some(mac) => Verdict::Forward(env.in_port, Action::ArpReply { mac }),
        None => Verdict::Drop(DropReason::ArpUnknownTarget),
    }
}

fn ipv4_verdict(
    env: StageEnv<'_>,
    config: &SwitchConfig,
    fdb: &mut LearnedFdb,
    dst_mac: MacAddr,
    ip: &Ipv4Meta,
    decapsulated: bool,
) -> Verdict {
    if decapsulated {
        // Tunnels only deliver to this node's pods: never onward, never to the host.
        return match env.tables.routes.lookup(ip.dst) {
            NextHop::Pod(_) => route(env, ip),
            _ => Verdict::Drop(DropReason::TunnelNotLocal),
        };
    }
    if dst_mac == config.gateway_mac {
        return route(env, ip);
    }
    let out = env
        .tables
        .fdb_static(dst_mac)
        .or_else(|| fdb.lookup(dst_mac, env.now));
    match out {
        Some(port) if port == env.in_port => Verdict::Drop(DropReason::Hairpin),
        Some(port) => Verdict::Forward(port, Action::Switch),
        None => Verdict::Drop(DropReason::UnknownUnicast),
    }
}

fn route(env: StageEnv<'_>, ip: &Ipv4Meta) -> Verdict {
    let to = |port| match env.tables.port(port) {
        Some(p) => Verdict::Forward(port, Action::Route { dst_mac: p.mac }),
        None => Verdict::Drop(DropReason::PortGone),
    };
    match env.tables.routes.lookup(ip.dst) {
        NextHop::Gateway => match ip.icmp_type {
            Some(8) if !ip.more_fragments => Verdict::Forward(env.in_port, Action::EchoReply),
            _ => Verdict::Drop(DropReason::ToGatewayUnsupported),
        },
        NextHop::Pod(port) | NextHop::Host(port) => to(port),
        NextHop::Tunnel(tunnel) => {
            let resolved = env
                .tables
                .tunnel_out(tunnel)
                .is_some_and(|t| t.template.is_some());
            match env.tables.uplink() {
                Some(_) if !resolved => Verdict::Drop(DropReason::TunnelUnresolved),
                Some(uplink) => Verdict::Forward(uplink, Action::Encap { tunnel }),
                None => Verdict::Drop(DropReason::NoRoute),
            }
        }
        NextHop::Unreachable => Verdict::Drop(DropReason::NoRoute),
    }
}
