//! Stage 0, decap: frames from the uplink become the inner frames they carry.
//!
//! Contract: only frames received on the uplink port are touched. A VXLAN frame (UDP to our
//! node IP on a VXLAN tunnel's port) or an IPIP frame (protocol 4 to our node IP) from a
//! configured peer, passing every check of `vtep::decap`, is replaced in place by its inner
//! frame (the descriptor moves forward; for IPIP a fresh Ethernet header is written in front of
//! the inner packet) whose destination MAC becomes the gateway's, so it is routed like any
//! routed frame; `PacketCtx::tunnel` records the tunnel. IPv4 for the pod CIDR (host-gw style
//! peers) is routed as it is, after the destination class check (`non_arp_broadcast`,
//! `multicast_unsupported`) its destination MAC would otherwise skip. Everything else is
//! dropped with a named reason, in the order of `tests/pcap/README.md`.

use super::parse::parse_frame;
use super::{PacketCtx, StageEnv, Verdict, L3};
use crate::frame::FrameArena;
use crate::reason::{DropReason, Event};
use crate::tables::{PortKind, SwitchConfig, Tables};
use vtep::decap::{decap_ipip, decap_vxlan, DecapError, VxlanExpect};
use vtep::table::{TunnelId, TunnelKind};

const ETH: usize = 14;
const UDP: usize = 8;
const VXLAN: usize = 8;

/// Decapsulates every pending packet of `batch` that came in on the uplink.
pub fn run(env: StageEnv<'_>, arena: &mut FrameArena, batch: &mut [PacketCtx]) {
    if env.tables.port(env.in_port).map(|p| p.kind) != Some(PortKind::Uplink) {
        return;
    }
    let Some(config) = env.tables.config.as_ref() else {
        return;
    };
    for p in batch.iter_mut().filter(|p| p.verdict == Verdict::Pending) {
        match classify(env.tables, config, arena.data(p.desc)) {
            Ok(Inner::Routed) => {
                arena.data_mut(p.desc)[0..6].copy_from_slice(&config.gateway_mac.0);
            }
            Ok(Inner::Vxlan {
                offset,
                len,
                tunnel,
            }) => {
                p.desc.addr += offset as u64;
                p.desc.len = len as u32;
                arena.data_mut(p.desc)[0..6].copy_from_slice(&config.gateway_mac.0);
                p.tunnel = Some(tunnel);
                env.counters.event(Event::TunnelDecapsulated);
            }
            Ok(Inner::Ipip {
                ip_offset,
                len,
                tunnel,
            }) => {
                p.desc.addr += (ip_offset - ETH) as u64;
                p.desc.len = (ETH + len) as u32;
                let f = arena.data_mut(p.desc);
                let mut outer_src = [0u8; 6];
                outer_src.copy_from_slice(&f[0..6]);
                f[0..6].copy_from_slice(&config.gateway_mac.0);
                f[6..12].copy_from_slice(&outer_src);
                f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                p.tunnel = Some(tunnel);
                env.counters.event(Event::TunnelDecapsulated);
            }
            Err(reason) => p.verdict = Verdict::Drop(reason),
        }
    }
}

/// Where the frame to route is, after decapsulation.
enum Inner {
    /// The frame itself (IPv4 for the pod CIDR).
    Routed,
    /// The inner Ethernet frame of a VXLAN packet.
    Vxlan {
        offset: usize,
        len: usize,
        tunnel: TunnelId,
    },
    /// The inner IPv4 packet of an IPIP packet.
    Ipip {
        ip_offset: usize,
        len: usize,
        tunnel: TunnelId,
    },
}

fn classify(tables: &Tables, config: &SwitchConfig, frame: &[u8]) -> Result<Inner, DropReason> {
    let meta = parse_frame(frame)?;
    let L3::Ipv4(ip) = meta.l3 else {
        return Err(DropReason::UplinkUnexpected);
    };
    if Some(ip.dst) != config.node_ip {
        return if config.pod_cidr.contains(&ip.dst) {
            // Routed as it is, so its destination class is checked as for any frame, here:
            // `run` replaces the destination MAC with the gateway's before `check` sees it.
            if meta.dst_mac.is_broadcast() {
                return Err(DropReason::NonArpBroadcast);
            }
            if meta.dst_mac.is_multicast() {
                return Err(DropReason::MulticastUnsupported);
            }
            Ok(Inner::Routed)
        } else {
            Err(DropReason::UplinkUnexpected)
        };
    }
    let fragment = ip.fragment_offset != 0 || ip.more_fragments;
    let payload = &frame[ETH + ip.header_len as usize..ETH + ip.total_len as usize];
    match ip.protocol {
        17 => {
            if payload.len() < UDP {
                return Err(DropReason::TunnelMalformed);
            }
            let port = u16::from_be_bytes([payload[2], payload[3]]);
            let is_vxlan_port = tables
                .routes
                .tunnels
                .tunnels()
                .iter()
                .any(|t| t.kind == TunnelKind::Vxlan && t.port == port);
            if !is_vxlan_port {
                return Err(DropReason::UplinkUnexpected);
            }
            if fragment || payload.len() < UDP + VXLAN + ETH {
                return Err(DropReason::TunnelMalformed);
            }
            let (tunnel, peer) = tables
                .routes
                .tunnels
                .peer(TunnelKind::Vxlan, ip.src)
                .ok_or(DropReason::TunnelUnknownPeer)?;
            let expect = VxlanExpect {
                port,
                vni: peer.vni,
                vtep_mac: config.vtep_mac.unwrap_or_default().0,
            };
            let d = decap_vxlan(frame, &expect).map_err(reason)?;
            Ok(Inner::Vxlan {
                offset: d.inner_offset,
                len: d.inner_len,
                tunnel,
            })
        }
        4 => {
            if fragment {
                return Err(DropReason::TunnelMalformed);
            }
            let (tunnel, _) = tables
                .routes
                .tunnels
                .peer(TunnelKind::Ipip, ip.src)
                .ok_or(DropReason::TunnelUnknownPeer)?;
            let d = decap_ipip(frame).map_err(reason)?;
            Ok(Inner::Ipip {
                ip_offset: d.inner_offset,
                len: d.inner_len,
                tunnel,
            })
        }
        _ => Err(DropReason::UplinkUnexpected),
    }
}

/// The drop reason for a failed decapsulation check.
fn reason(e: DecapError) -> DropReason {
    match e {
        DecapError::BadUdpChecksum => DropReason::TunnelBadChecksum,
        DecapError::BadVxlanFlags(_) | DecapError::VxlanReservedBits => DropReason::TunnelBadHeader,
        DecapError::WrongVni(_) => DropReason::TunnelWrongVni,
        DecapError::WrongInnerMac(_) => DropReason::TunnelWrongInnerMac,
        _ => DropReason::TunnelMalformed,
    }
}
