//! Stage 6, rewrite: edit forwarded frames in place and build the switch's own replies.
//!
//! Contract: applies each forwarded packet's [`Action`] to its bytes: Ethernet padding beyond
//! the 60-byte minimum frame is cut from forwarded IPv4 frames (all of it from a frame going
//! into a tunnel), so padding never makes a frame longer than its link carries; routed frames get the
//! next hop's MAC, the gateway MAC as source, TTL - 1 and an incrementally updated header
//! checksum; ARP and ICMP echo replies and ICMP errors are built in the request's own frame (no
//! allocation, no second buffer). A packet routed into a tunnel gets the inner rewrite (VXLAN:
//! the peer's VTEP MAC as destination, ours as source) and then its tunnel's prebuilt outer
//! header, prepended in the frame's headroom. An echo request whose ICMP checksum does not
//! verify is dropped here (`bad_icmp_checksum`), the first stage that reads the ICMP body; one
//! shorter than the 8-byte echo header or with a code other than 0 is no echo request
//! (`to_gateway_unsupported`).

use super::icmp;
use super::{Action, PacketCtx, StageEnv, Verdict, L3};
use crate::frame::{resize, FrameArena};
use crate::mac::MacAddr;
use crate::reason::DropReason;
use crate::tables::TunnelTemplate;
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};
use vtep::checksum;

const ETH: usize = 14;
/// The shortest Ethernet frame without its FCS.
const MIN_FRAME: u32 = 60;

/// Cuts Ethernet padding: a forwarded frame keeps at most the minimum frame's padding (so a
/// padded frame never exceeds what the egress link carries for its IPv4 packet), an
/// encapsulated inner frame none.
fn trim_padding(desc: &mut crate::frame::Desc, total_len: u16, inner: bool) {
    let wire = ETH as u32 + u32::from(total_len);
    let keep = if inner { wire } else { wire.max(MIN_FRAME) };
    desc.len = desc.len.min(keep);
}

/// Rewrites every forwarded packet of `batch`; `ip_id` is the next outer IPv4 identification
/// of an encapsulated packet.
pub fn run(env: StageEnv<'_>, arena: &mut FrameArena, ip_id: &mut u16, batch: &mut [PacketCtx]) {
    let Some(config) = env.tables.config.as_ref() else {
        return;
    };
    let gw_mac = config.gateway_mac;
    let gw_ip = config.gateway_ip;
    let layout = arena.layout();
    for p in batch.iter_mut() {
        let Verdict::Forward(_, action) = p.verdict else {
            continue;
        };
        if let (Action::Switch | Action::Route { .. } | Action::Encap { .. }, L3::Ipv4(ip)) =
            (action, p.meta.l3)
        {
            trim_padding(
                &mut p.desc,
                ip.total_len,
                matches!(action, Action::Encap { .. }),
            );
        }
        match (action, p.meta.l3) {
            (Action::Switch, _) => {}
            (Action::Route { dst_mac }, L3::Ipv4(_)) => {
                route(arena.data_mut(p.desc), dst_mac, gw_mac);
            }
            (Action::Encap { tunnel }, L3::Ipv4(_)) => {
                let out = env.tables.tunnel_out(tunnel);
                let (Some(out), Some(vtep)) = (out, config.vtep_mac.or(Some(gw_mac))) else {
                    p.verdict = Verdict::Drop(DropReason::TunnelUnresolved);
                    continue;
                };
                let Some(template) = &out.template else {
                    p.verdict = Verdict::Drop(DropReason::TunnelUnresolved);
                    continue;
                };
                route(arena.data_mut(p.desc), out.inner_dst_mac, vtep);
                let base = layout.frame_base(p.desc.addr);
                let start = (p.desc.addr - base) as usize;
                let len = p.desc.len as usize;
                let frame = &mut arena.region_mut()
                    [base as usize..(base + layout.frame_size as u64) as usize];
                let encapsulated = match template {
                    TunnelTemplate::Vxlan(t) => {
                        vtep::encap::encap_vxlan(frame, start, len, t, *ip_id)
                    }
                    TunnelTemplate::Ipip(t) => {
                        vtep::encap::encap_ipip(frame, start, len, t, *ip_id)
                    }
                };
                match encapsulated {
                    Ok(span) => {
                        *ip_id = ip_id.wrapping_add(1);
                        p.desc.addr = base + span.start as u64;
                        p.desc.len = span.len as u32;
                    }
                    Err(_) => p.verdict = Verdict::Drop(DropReason::TunnelMalformed),
                }
            }
            (Action::ArpReply { mac }, L3::Arp(arp)) => {
                p.desc.len = ARP_FRAME_LEN as u32;
                let f = arena.data_mut(p.desc);
                write_eth(f, p.meta.src_mac, mac, 0x0806);
                ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: EthernetAddress(mac.0),
                    source_protocol_addr: arp.target_ip,
                    target_hardware_addr: EthernetAddress(arp.sender_mac.0),
                    target_protocol_addr: arp.sender_ip,
                }
                .emit(&mut ArpPacket::new_unchecked(&mut f[ETH..]));
            }
            (Action::EchoReply, L3::Ipv4(ip)) => {
                p.desc.len = (ETH + ip.total_len as usize) as u32;
                let f = arena.data_mut(p.desc);
                if let Err(e) = icmp::echo_reply(&mut f[ETH..], ip.header_len as usize) {
                    p.verdict = Verdict::Drop(match e {
                        icmp::EchoError::NotEchoRequest => DropReason::ToGatewayUnsupported,
                        icmp::EchoError::BadChecksum => DropReason::BadIcmpChecksum,
                    });
                    continue;
                }
                let requester = p.meta.src_mac;
                write_eth(f, requester, gw_mac, 0x0800);
            }
            (Action::IcmpError { error, .. }, L3::Ipv4(ip)) => {
                let quote = icmp::quote_len(ip.header_len, ip.total_len);
                let Some(desc) = resize(layout, p.desc, icmp::error_frame_len(quote) as u32) else {
                    p.verdict = Verdict::Drop(DropReason::FrameTooLong);
                    continue;
                };
                p.desc = desc;
                let f = arena.data_mut(desc);
                icmp::build_error(&mut f[ETH..], quote, error, gw_ip, ip.src);
                write_eth(f, p.meta.src_mac, gw_mac, 0x0800);
            }
            _ => unreachable!("lookup paired {action:?} with {:?}", p.meta.l3),
        }
    }
}

/// Length of an ARP reply frame: Ethernet + 28 bytes of ARP, no padding.
const ARP_FRAME_LEN: usize = ETH + 28;

fn write_eth(f: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Routed rewrite: MACs, TTL - 1, header checksum patched for the TTL/protocol word.
#[inline]
fn route(f: &mut [u8], dst: MacAddr, src: MacAddr) {
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    let ip = &mut f[ETH..];
    let old_word = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] -= 1;
    let new_word = u16::from_be_bytes([ip[8], ip[9]]);
    let old_csum = u16::from_be_bytes([ip[10], ip[11]]);
    let csum = checksum::update_u16(old_csum, old_word, new_word);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
}
