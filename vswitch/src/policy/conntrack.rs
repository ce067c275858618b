//! Connection tracking: a bounded, set-associative table of flows with TCP state and timeouts.
//!
//! Contract: one [`Conntrack`] per worker, sized once ([`ConntrackConfig::max_entries`]), never
//! growing and never allocating after construction. A flow is keyed by its 5-tuple in either
//! direction (ICMP echo uses the identifier as both ports); [`Conntrack::lookup`] says whether a
//! packet belongs to a live entry and on which side (original or reply). Entries expire by state:
//! TCP half-open, closing and reset connections after `tcp_transitory_secs` (reset: at most 10 s),
//! established ones after `tcp_established_secs`; UDP/SCTP after `udp_secs` once replied (30 s at
//! most before); ICMP echo after `icmp_secs`. Expired entries are invisible and their slots reused.
//!
//! The table holds `max_entries` rounded up to a power of two (at least 4) in buckets of 4
//! slots. When a new flow finds its bucket full, the oldest
//! never-replied entry of the bucket is evicted ([`Insert::Evicted`], like Linux's early drop, so a
//! SYN flood cannot push out established connections); if every candidate has been replied to,
//! the insert fails ([`Insert::Full`]) and the caller drops and counts the packet.
//!
//! Non-goals: TCP sequence-window checks and reassembly; the policy stage decides what is allowed,
//! this module only remembers.

use crate::tables::PortId;
use std::net::Ipv4Addr;

const WAYS: usize = 4;
const SEC: u64 = 1_000_000_000;

/// Sizes and timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Most entries at once.
    pub max_entries: usize,
    /// Seconds an established TCP connection lives idle.
    pub tcp_established_secs: u64,
    /// Seconds a half-open or closing TCP connection lives idle.
    pub tcp_transitory_secs: u64,
    /// Seconds a replied UDP/SCTP flow lives idle.
    pub udp_secs: u64,
    /// Seconds an ICMP echo flow lives idle.
    pub icmp_secs: u64,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_entries: 65536,
            tcp_established_secs: 86400,
            tcp_transitory_secs: 120,
            udp_secs: 120,
            icmp_secs: 30,
        }
    }
}

/// A packet's flow, in the direction it travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub proto: u8,
    /// Source port (ICMP echo: identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: identifier).
    pub dport: u16,
}

impl Default for FlowKey {
    fn default() -> Self {
        FlowKey {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            proto: 0,
            sport: 0,
            dport: 0,
        }
    }
}

impl FlowKey {
    /// The same flow seen from the other end.
    #[inline]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// The direction-free key and whether `self` runs from its low end to its high end.
    #[inline]
    fn canonical(&self) -> (FlowKey, bool) {
        if (u32::from(self.src), self.sport) <= (u32::from(self.dst), self.dport) {
            (*self, true)
        } else {
            (self.reversed(), false)
        }
    }

    #[inline]
    fn hash(&self) -> u64 {
        let a = (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst));
        let b =
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto);
        // Every bit of the key must reach the low bits the bucket is taken from (murmur3's
        // finalizer): the connections of one client to one service differ in one port only.
        let mut h = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// TCP connection states the tracker distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// SYN seen.
    SynSent,
    /// SYN-ACK seen.
    SynReceived,
    /// Handshake done (or picked up mid-stream).
    Established,
    /// One side sent FIN.
    FinWait,
    /// Both sides sent FIN.
    Closing,
    /// RST seen.
    Closed,
}

/// An entry's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    /// TCP.
    Tcp(TcpState),
    /// UDP, SCTP or ICMP echo; `replied` once the other side answered.
    Datagram {
        /// Whether a reply was seen.
        replied: bool,
    },
}

impl FlowState {
    fn replied(self) -> bool {
        match self {
            FlowState::Tcp(s) => !matches!(s, TcpState::SynSent | TcpState::Closed),
            FlowState::Datagram { replied } => replied,
        }
    }

    /// A short lowercase name for operators.
    pub fn name(self) -> &'static str {
        match self {
            FlowState::Tcp(TcpState::SynSent) => "syn_sent",
            FlowState::Tcp(TcpState::SynReceived) => "syn_received",
            FlowState::Tcp(TcpState::Established) => "established",
            FlowState::Tcp(TcpState::FinWait) => "fin_wait",
            FlowState::Tcp(TcpState::Closing) => "closing",
            FlowState::Tcp(TcpState::Closed) => "closed",
            FlowState::Datagram { replied: false } => "unreplied",
            FlowState::Datagram { replied: true } => "replied",
        }
    }
}

/// Which way a packet travels relative to its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Like the packet that created the entry.
    Original,
    /// The other way.
    Reply,
}

/// TCP flag bits the tracker reads.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// One tracked flow.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    key: FlowKey,
    orig_is_low: bool,
    /// State.
    pub state: FlowState,
    fin_original: bool,
    fin_reply: bool,
    expires: u64,
    /// The policy generation the flow was last judged under.
    pub generation: u64,
    /// The pod whose egress the original direction was judged at.
    pub egress: Option<PortId>,
    /// The pod whose ingress the original direction was judged at.
    pub ingress: Option<PortId>,
}

impl Entry {
    /// The flow in its original direction.
    pub fn original(&self) -> FlowKey {
        if self.orig_is_low {
            self.key
        } else {
            self.key.reversed()
        }
    }

    /// Nanoseconds (on the worker's clock) at which the entry expires.
    pub fn expires(&self) -> u64 {
        self.expires
    }
}

/// What [`Conntrack::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Stored in a free slot.
    Stored(usize),
    /// Stored in place of an unreplied entry.
    Evicted(usize),
    /// No room: every candidate slot holds a replied, live flow.
    Full,
}

/// The table.
pub struct Conntrack {
    config: ConntrackConfig,
    slots: Vec<Option<Entry>>,
    mask: usize,
    live: usize,
    sweep_at: usize,
}

impl Conntrack {
    /// A table for `config.max_entries` flows, rounded up to a power of two (at least 4),
    /// allocated now.
    pub fn new(config: ConntrackConfig) -> Self {
        let buckets = config.max_entries.max(1).div_ceil(WAYS).next_power_of_two();
        Conntrack {
            config: ConntrackConfig {
                max_entries: buckets * WAYS,
                ..config
            },
            slots: vec![None; buckets * WAYS],
            mask: buckets - 1,
            live: 0,
            sweep_at: 0,
        }
    }

    /// Entries stored (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    #[inline]
    fn bucket(&self, canonical: &FlowKey) -> usize {
        (canonical.hash() as usize & self.mask) * WAYS
    }

    /// The live entry of `key`'s flow and the side `key` travels on.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, now: u64) -> Option<(usize, Side)> {
        let (c, low) = key.canonical();
        let b = self.bucket(&c);
        (b..b + WAYS).find_map(|i| match &self.slots[i] {
            Some(e) if e.key == c && e.expires > now => Some((
                i,
                if e.orig_is_low == low {
                    Side::Original
                } else {
                    Side::Reply
                },
            )),
            _ => None,
        })
    }

    /// The entry in slot `i`.
    #[inline]
    pub fn entry(&self, i: usize) -> Option<&Entry> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// Sets the generation of the entry in slot `i`.
    #[inline]
    pub fn set_generation(&mut self, i: usize, generation: u64) {
        if let Some(e) = self.slots[i].as_mut() {
            e.generation = generation;
        }
    }

    /// Forgets the entry in slot `i`.
    #[inline]
    pub fn remove(&mut self, i: usize) {
        if self.slots[i].take().is_some() {
            self.live -= 1;
        }
    }

    /// Starts tracking the flow `key` (its first packet, with `tcp` flags for TCP).
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        key: &FlowKey,
        tcp: u8,
        generation: u64,
        egress: Option<PortId>,
        ingress: Option<PortId>,
        now: u64,
    ) -> Insert {
        let (c, low) = key.canonical();
        let b = self.bucket(&c);
        let free = (b..b + WAYS).find(|&i| self.slots[i].is_none_or(|e| e.expires <= now));
        let (slot, outcome) = match free {
            Some(i) => (i, Insert::Stored(i)),
            None => {
                let victim = (b..b + WAYS)
                    .filter(|&i| self.slots[i].is_some_and(|e| !e.state.replied()))
                    .min_by_key(|&i| self.slots[i].map_or(0, |e| e.expires));
                match victim {
                    Some(i) => (i, Insert::Evicted(i)),
                    None => return Insert::Full,
                }
            }
        };
        let state = if key.proto == 6 {
            if tcp & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
                FlowState::Tcp(TcpState::SynSent)
            } else {
                FlowState::Tcp(TcpState::Established)
            }
        } else {
            FlowState::Datagram { replied: false }
        };
        if self.slots[slot].is_none() {
            self.live += 1;
        }
        let mut e = Entry {
            key: c,
            orig_is_low: low,
            state,
            fin_original: false,
            fin_reply: false,
            expires: 0,
            generation,
            egress,
            ingress,
        };
        e.expires = now + self.timeout(e.state);
        self.slots[slot] = Some(e);
        outcome
    }

    /// Whether a TCP packet with `flags` on `side` opens a new connection over a finished one
    /// in slot `i` (a SYN reusing the ports of a closed or closing connection).
    #[inline]
    pub fn reopens(&self, i: usize, side: Side, flags: u8) -> bool {
        side == Side::Original
            && flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
            && self.slots[i].is_some_and(|e| {
                matches!(
                    e.state,
                    FlowState::Tcp(TcpState::Closed | TcpState::Closing)
                )
            })
    }

    /// Advances the entry in slot `i` for a packet on `side` (TCP `flags`) and refreshes its
    /// timeout.
    #[inline]
    pub fn update(&mut self, i: usize, side: Side, flags: u8, now: u64) {
        let Some(mut e) = self.slots[i] else { return };
        e.state = match e.state {
            FlowState::Datagram { replied } => FlowState::Datagram {
                replied: replied || side == Side::Reply,
            },
            FlowState::Tcp(s) => {
                if flags & tcp_flags::FIN != 0 {
                    match side {
                        Side::Original => e.fin_original = true,
                        Side::Reply => e.fin_reply = true,
                    }
                }
                FlowState::Tcp(next_tcp(s, side, flags, e.fin_original && e.fin_reply))
            }
        };
        e.expires = now + self.timeout(e.state);
        self.slots[i] = Some(e);
    }

    fn timeout(&self, state: FlowState) -> u64 {
        let c = &self.config;
        SEC * match state {
            FlowState::Tcp(TcpState::Established) => c.tcp_established_secs,
            FlowState::Tcp(TcpState::Closed) => c.tcp_transitory_secs.min(10),
            FlowState::Tcp(_) => c.tcp_transitory_secs,
            FlowState::Datagram { replied: true } => c.udp_secs,
            FlowState::Datagram { replied: false } => c.udp_secs.min(30),
        }
    }

    /// Timeout of an ICMP echo entry (set by the caller after insert: echo flows are datagrams
    /// with their own timeout).
    #[inline]
    pub fn set_icmp_timeout(&mut self, i: usize, now: u64) {
        let t = SEC * self.config.icmp_secs;
        if let Some(e) = self.slots[i].as_mut() {
            e.expires = now + t;
        }
    }

    /// Frees expired entries among the next `budget` slots (call between bursts); returns how
    /// many were freed.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut freed = 0;
        for _ in 0..budget.min(self.slots.len()) {
            let i = self.sweep_at;
            self.sweep_at = (self.sweep_at + 1) % self.slots.len();
            if self.slots[i].is_some_and(|e| e.expires <= now) {
                self.slots[i] = None;
                self.live -= 1;
                freed += 1;
            }
        }
        freed
    }
}

fn next_tcp(s: TcpState, side: Side, flags: u8, both_fin: bool) -> TcpState {
    use tcp_flags::*;
    if flags & RST != 0 {
        return TcpState::Closed;
    }
    if both_fin {
        return TcpState::Closing;
    }
    if flags & FIN != 0 {
        return TcpState::FinWait;
    }
    match (s, side) {
        (TcpState::SynSent, Side::Reply) if flags & (SYN | ACK) == SYN | ACK => {
            TcpState::SynReceived
        }
        (TcpState::SynReceived, Side::Original) if flags & (SYN | ACK) == ACK => {
            TcpState::Established
        }
        (s, _) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            src: "10.244.1.2".parse().unwrap(),
            dst: "10.244.1.3".parse().unwrap(),
            proto: 6,
            sport,
            dport: 80,
        }
    }

    #[test]
    fn tcp_handshake_teardown_and_both_directions() {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let k = key(1000);
        assert!(ct.lookup(&k, 0).is_none());
        let Insert::Stored(i) = ct.insert(&k, SYN, 1, None, None, 0) else {
            panic!()
        };
        assert_eq!(ct.lookup(&k.reversed(), 1), Some((i, Side::Reply)));
        assert_eq!(ct.lookup(&k, 1), Some((i, Side::Original)));
        ct.update(i, Side::Reply, SYN | ACK, 1);
        ct.update(i, Side::Original, ACK, 2);
        assert_eq!(
            ct.entry(i).unwrap().state,
            FlowState::Tcp(TcpState::Established)
        );
        let day = ct.entry(i).unwrap().expires();
        assert_eq!(day, 2 + 86400 * SEC);
        ct.update(i, Side::Original, FIN | ACK, 3);
        assert_eq!(
            ct.entry(i).unwrap().state,
            FlowState::Tcp(TcpState::FinWait)
        );
        ct.update(i, Side::Reply, FIN | ACK, 4);
        assert_eq!(
            ct.entry(i).unwrap().state,
            FlowState::Tcp(TcpState::Closing)
        );
        assert!(ct.reopens(i, Side::Original, SYN));
        assert!(ct.lookup(&k, 4 + 120 * SEC).is_none(), "expired");
        assert_eq!(ct.sweep(4 + 120 * SEC, 1 << 20), 1);
        assert!(ct.is_empty());
    }

    #[test]
    fn full_bucket_evicts_unreplied_flows_and_refuses_when_all_replied() {
        let mut ct = Conntrack::new(ConntrackConfig {
            max_entries: 4,
            ..ConntrackConfig::default()
        });
        for p in 0..4 {
            assert!(matches!(
                ct.insert(&key(p), SYN, 1, None, None, p as u64),
                Insert::Stored(_)
            ));
        }
        let Insert::Evicted(i) = ct.insert(&key(9), SYN, 1, None, None, 10) else {
            panic!("evicts")
        };
        assert!(
            ct.lookup(&key(0), 10).is_none(),
            "the oldest unreplied one went"
        );
        assert_eq!(ct.lookup(&key(9), 10), Some((i, Side::Original)));
        for p in [1, 2, 3, 9] {
            let (i, _) = ct.lookup(&key(p), 10).unwrap();
            ct.update(i, Side::Reply, SYN | ACK, 10);
        }
        assert_eq!(ct.insert(&key(20), SYN, 1, None, None, 11), Insert::Full);
        assert_eq!(ct.len(), 4);
    }

    #[test]
    fn connections_differing_in_one_port_spread_over_buckets() {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        for p in 0..1024 {
            for k in [
                key(40000 + p),
                FlowKey {
                    dport: 1 + p,
                    ..key(80)
                },
            ] {
                let r = ct.insert(&k, SYN, 1, None, None, 0);
                let (Insert::Stored(i) | Insert::Evicted(i)) = r else {
                    panic!("{k:?}: {r:?}")
                };
                ct.update(i, Side::Reply, SYN | ACK, 0);
            }
        }
        assert!(
            ct.len() > 2000,
            "{} of 2048 replied connections kept",
            ct.len()
        );
    }

    #[test]
    fn datagrams_live_30s_until_replied() {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let k = FlowKey {
            proto: 17,
            ..key(5)
        };
        let Insert::Stored(i) = ct.insert(&k, 0, 1, None, None, 0) else {
            panic!()
        };
        assert_eq!(ct.entry(i).unwrap().expires(), 30 * SEC);
        ct.update(i, Side::Reply, 0, 1);
        assert_eq!(ct.entry(i).unwrap().expires(), 1 + 120 * SEC);
        assert_eq!(ct.entry(i).unwrap().state.name(), "replied");
    }
}
