//! Stage 2, check: destination class and source check.
//!
//! Contract: drops broadcast frames that are not ARP (`non_arp_broadcast`) and other multicast
//! destinations (`multicast_unsupported`); on pod ports, drops frames whose Ethernet source, ARP
//! sender MAC, IPv4 source or ARP sender IP is not the pod's own (`spoofed_source_mac`,
//! `spoofed_source_ip`). The host port is trusted: it carries kube-proxy's DNATed traffic whose
//! sources are other pods and clients.

use super::{PacketCtx, StageEnv, Verdict, L3};
use crate::reason::DropReason;
use crate::tables::{PortInfo, PortKind};

/// Checks every pending packet of `batch`.
pub fn run(env: StageEnv<'_>, batch: &mut [PacketCtx]) {
    let Some(port) = env.tables.port(env.in_port) else {
        for p in batch.iter_mut().filter(|p| p.verdict == Verdict::Pending) {
            p.verdict = Verdict::Drop(DropReason::PortGone);
        }
        return;
    };
    for p in batch.iter_mut().filter(|p| p.verdict == Verdict::Pending) {
        if let Err(reason) = check_packet(port, p) {
            p.verdict = Verdict::Drop(reason);
        }
    }
}

fn check_packet(port: &PortInfo, p: &PacketCtx) -> Result<(), DropReason> {
    let m = &p.meta;
    let is_arp = matches!(m.l3, L3::Arp(_));
    if m.dst_mac.is_broadcast() && !is_arp {
        return Err(DropReason::NonArpBroadcast);
    }
    if m.dst_mac.is_multicast() && !m.dst_mac.is_broadcast() {
        return Err(DropReason::MulticastUnsupported);
    }
    if port.kind != PortKind::Pod {
        return Ok(());
    }
    if m.src_mac != port.mac {
        return Err(DropReason::SpoofedSourceMac);
    }
    let (sender_mac, sender_ip) = match m.l3 {
        L3::Arp(a) => (a.sender_mac, a.sender_ip),
        L3::Ipv4(ip) => (port.mac, ip.src),
        L3::None => return Ok(()),
    };
    if sender_mac != port.mac {
        return Err(DropReason::SpoofedSourceMac);
    }
    if Some(sender_ip) != port.ip {
        return Err(DropReason::SpoofedSourceIp);
    }
    Ok(())
}
