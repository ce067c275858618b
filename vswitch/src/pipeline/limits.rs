//! Stage 5, limits: TTL and MTU of forwarded IPv4 packets.
//!
//! Contract: a routed packet with TTL <= 1 becomes an ICMP time exceeded to its sender
//! (`ttl_expired`); a forwarded packet longer than the egress MTU becomes an ICMP fragmentation
//! needed when DF is set (`fragmentation_needed`) and is dropped otherwise (`exceeds_mtu`: the
//! switch does not fragment). TTL is checked before MTU. For a tunnel the MTU is the tunnel's
//! (uplink MTU less the encapsulation). No ICMP error is sent about an ICMP
//! error, a non-first fragment or a packet from an unspecified, broadcast or multicast source
//! (RFC 1122 3.2.2), nor about a packet that arrived through a tunnel (the error would have to
//! go back encapsulated; sent raw it would be garbage on the underlay); the original is still
//! counted.

use super::{Action, IcmpError, Ipv4Meta, PacketCtx, StageEnv, Verdict, L3};
use crate::reason::DropReason;

/// ICMP types that are error messages.
const ICMP_ERROR_TYPES: [u8; 5] = [3, 4, 5, 11, 12];

/// Applies TTL and MTU limits to every forwarded IPv4 packet of `batch`.
pub fn run(env: StageEnv<'_>, batch: &mut [PacketCtx]) {
    for p in batch.iter_mut() {
        let (Verdict::Forward(out, action), L3::Ipv4(ip)) = (p.verdict, p.meta.l3) else {
            continue;
        };
        let (routed, mtu) = match action {
            Action::Route { .. } => (true, env.tables.port(out).map_or(u16::MAX, |p| p.mtu)),
            Action::Switch => (false, env.tables.port(out).map_or(u16::MAX, |p| p.mtu)),
            Action::Encap { tunnel } => (
                true,
                env.tables.tunnel_out(tunnel).map_or(u16::MAX, |t| t.mtu),
            ),
            _ => continue,
        };
        let tunneled = p.tunnel.is_some();
        if routed && ip.ttl <= 1 {
            p.verdict = icmp_error(
                env,
                &ip,
                tunneled,
                IcmpError::TimeExceeded,
                DropReason::TtlExpired,
            );
        } else if ip.total_len > mtu {
            p.verdict = if ip.dont_fragment {
                icmp_error(
                    env,
                    &ip,
                    tunneled,
                    IcmpError::FragmentationNeeded { mtu },
                    DropReason::FragmentationNeeded,
                )
            } else {
                Verdict::Drop(DropReason::ExceedsMtu)
            };
        }
    }
}

fn icmp_error(
    env: StageEnv<'_>,
    ip: &Ipv4Meta,
    tunneled: bool,
    error: IcmpError,
    reason: DropReason,
) -> Verdict {
    let about_error = ip.icmp_type.is_some_and(|t| ICMP_ERROR_TYPES.contains(&t));
    let bad_source = ip.src.is_unspecified() || ip.src.is_broadcast() || ip.src.is_multicast();
    if about_error || ip.fragment_offset != 0 || bad_source || tunneled {
        Verdict::Drop(reason)
    } else {
        Verdict::Forward(env.in_port, Action::IcmpError { error, reason })
    }
}
