//! Why a frame did not go where it was addressed, and what else the switch counts.
//!
//! Contract: every drop site in the engine names a [`DropReason`]; every frame the switch
//! consumes on purpose (an ARP it answered, an echo it replied to) names an [`Event`]. Both index
//! fixed counter arrays, so adding a variant adds a counter, and `vswitchctl stats` shows it by
//! its [`DropReason::name`]. Names are stable: scripts and the conformance cases use them.

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// Every variant, in counter order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// Number of variants (the length of a counter array).
            pub const COUNT: usize = Self::ALL.len();
            /// The stable snake_case name.
            pub const fn name(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
            /// The variant with this name.
            pub fn from_name(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.name() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// Why a frame was dropped. Counted per port (ingress port, or egress port for TX drops).
    DropReason {
        /// Longer than a frame buffer can hold.
        FrameTooLong => "frame_too_long",
        /// Fewer than 14 bytes.
        TruncatedEthernet => "truncated_ethernet",
        /// 802.1Q / 802.1ad tagged.
        VlanUnsupported => "vlan_unsupported",
        /// IPv6 is not switched yet.
        Ipv6Unsupported => "ipv6_unsupported",
        /// Neither IPv4 nor ARP.
        UnsupportedEthertype => "unsupported_ethertype",
        /// ARP that is not Ethernet/IPv4, too short, or with an unknown opcode.
        MalformedArp => "malformed_arp",
        /// IPv4 header cut short.
        TruncatedIpv4 => "truncated_ipv4",
        /// IPv4 version field is not 4.
        BadIpv4Version => "bad_ipv4_version",
        /// IPv4 IHL below 5.
        BadIpv4HeaderLength => "bad_ipv4_header_length",
        /// IPv4 total length shorter than the header or longer than the frame.
        BadIpv4TotalLength => "bad_ipv4_total_length",
        /// IPv4 header checksum does not verify.
        BadIpv4Checksum => "bad_ipv4_checksum",
        /// Broadcast destination on a frame that is not ARP.
        NonArpBroadcast => "non_arp_broadcast",
        /// Multicast destination MAC.
        MulticastUnsupported => "multicast_unsupported",
        /// A pod sent with a MAC that is not its own.
        SpoofedSourceMac => "spoofed_source_mac",
        /// A pod sent with an IP that is not its own.
        SpoofedSourceIp => "spoofed_source_ip",
        /// ARP request for an address the switch does not answer for.
        ArpUnknownTarget => "arp_unknown_target",
        /// An ARP reply nobody asked for (the switch sends no requests to pods).
        UnexpectedArpReply => "unexpected_arp_reply",
        /// Destination MAC in no FDB entry; the switch never floods.
        UnknownUnicast => "unknown_unicast",
        /// A switched frame addressed to the port it came from.
        Hairpin => "hairpin",
        /// No route: inside the pod CIDR but no such pod, or no host port.
        NoRoute => "no_route",
        /// Addressed to the gateway IP, but not an ICMP echo request.
        ToGatewayUnsupported => "to_gateway_unsupported",
        /// ICMP echo request to the gateway with a bad checksum.
        BadIcmpChecksum => "bad_icmp_checksum",
        /// TTL ran out while routing (ICMP time exceeded sent where allowed).
        TtlExpired => "ttl_expired",
        /// Larger than the egress MTU with DF set (ICMP fragmentation needed sent where allowed).
        FragmentationNeeded => "fragmentation_needed",
        /// Larger than the egress MTU without DF; the switch does not fragment.
        ExceedsMtu => "exceeds_mtu",
        /// The egress port's TX ring was full.
        TxRingFull => "tx_ring_full",
        /// The egress port is gone (removed between lookup and transmit).
        PortGone => "port_gone",
        /// A tunnel frame cut short, fragmented, or with an invalid inner packet.
        TunnelMalformed => "tunnel_malformed",
        /// A VXLAN/IPIP frame from a source that is no configured peer.
        TunnelUnknownPeer => "tunnel_unknown_peer",
        /// A VXLAN frame whose outer UDP checksum is neither 0 nor valid.
        TunnelBadChecksum => "tunnel_bad_checksum",
        /// VXLAN flags other than exactly 0x08, or reserved bits set.
        TunnelBadHeader => "tunnel_bad_header",
        /// A VXLAN frame with another VNI than its peer's.
        TunnelWrongVni => "tunnel_wrong_vni",
        /// A VXLAN frame whose inner destination MAC is not our VTEP MAC.
        TunnelWrongInnerMac => "tunnel_wrong_inner_mac",
        /// A decapsulated packet for a destination that is not a pod of this node.
        TunnelNotLocal => "tunnel_not_local",
        /// The tunnel's underlay next hop is not resolved yet.
        TunnelUnresolved => "tunnel_unresolved",
        /// A frame on the uplink that is neither tunnel traffic nor for the pod CIDR.
        UplinkUnexpected => "uplink_unexpected",
        /// ARP inside a tunnel: peers resolve our pods statically, and an answer could not go
        /// back encapsulated.
        TunnelInnerArp => "tunnel_inner_arp",
        /// NetworkPolicy allows no such traffic.
        PolicyDenied => "policy_denied",
        /// A new connection found its conntrack bucket full of live, replied flows.
        ConntrackFull => "conntrack_full",
    }
}

named_enum! {
    /// Frames the switch consumed on purpose. Counted per ingress port.
    Event {
        /// ARP requests answered (ARP suppression).
        ArpReplies => "arp_replies",
        /// ICMP echo requests to the gateway answered.
        IcmpEchoReplies => "icmp_echo_replies",
        /// Gratuitous ARP for the sender's own address, accepted.
        GratuitousArp => "gratuitous_arp",
        /// ICMP errors generated (time exceeded, fragmentation needed).
        IcmpErrorsSent => "icmp_errors_sent",
        /// FDB entries learned.
        FdbLearned => "fdb_learned",
        /// FDB learning skipped because the table was full.
        FdbFull => "fdb_full",
        /// Packets encapsulated into a tunnel.
        TunnelEncapsulated => "tunnel_encapsulated",
        /// Tunnel packets decapsulated.
        TunnelDecapsulated => "tunnel_decapsulated",
        /// An ICMP error about a tracked connection passed policy as related.
        PolicyRelated => "policy_related",
        /// A never-replied connection was evicted to track a new one.
        ConntrackEvicted => "conntrack_evicted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for r in DropReason::ALL {
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(Event::from_name("arp_replies"), Some(Event::ArpReplies));
        assert_eq!(DropReason::from_name("nope"), None);
    }
}
