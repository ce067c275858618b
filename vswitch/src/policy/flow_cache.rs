//! The per-worker exact-match cache in front of [`PolicySet::judge`].
//!
//! Contract: a direct-mapped array of [`FLOW_CACHE_SLOTS`] entries keyed by (port, direction,
//! peer address, protocol, destination port) remembering the [`Judgement`] and the policy
//! generation it was made under. A hit under the current generation costs one hash and one
//! compare whatever the number of rules; a miss (or an entry of an older generation) asks the
//! classifier and overwrites the slot. Allocated once; never grows.

use super::{Direction, Judgement, PolicySet};
use crate::tables::PortId;
use std::net::Ipv4Addr;

/// Slots in the cache (a power of two).
pub const FLOW_CACHE_SLOTS: usize = 8192;

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Key {
    port: u16,
    egress: bool,
    proto: u8,
    dst_port: Option<u16>,
    peer: u32,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: Key,
    generation: u64,
    judgement: Judgement,
}

/// Hits and misses, for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Judgements answered from the cache.
    pub hits: u64,
    /// Judgements the classifier made.
    pub misses: u64,
}

/// The cache.
pub struct FlowCache {
    slots: Box<[Slot]>,
    stats: CacheStats,
}

impl Default for FlowCache {
    fn default() -> Self {
        FlowCache {
            slots: vec![Slot::default(); FLOW_CACHE_SLOTS].into_boxed_slice(),
            stats: CacheStats::default(),
        }
    }
}

impl FlowCache {
    /// Judges like [`PolicySet::judge`], answering from the cache when it can.
    #[inline]
    pub fn judge(
        &mut self,
        set: &PolicySet,
        port: PortId,
        direction: Direction,
        peer: Ipv4Addr,
        proto: u8,
        dst_port: Option<u16>,
    ) -> Judgement {
        let key = Key {
            port: port.0,
            egress: direction == Direction::Egress,
            proto,
            dst_port,
            peer: u32::from(peer),
        };
        let h = (u64::from(key.peer) << 32
            | u64::from(dst_port.unwrap_or(0)) << 16
            | u64::from(key.port) << 1
            | u64::from(key.egress))
            ^ u64::from(proto) << 56;
        let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let i = (h >> 40) as usize & (FLOW_CACHE_SLOTS - 1);
        let slot = &mut self.slots[i];
        if slot.generation == set.generation() && slot.key == key {
            self.stats.hits += 1;
            return slot.judgement;
        }
        self.stats.misses += 1;
        let judgement = set.judge(port, direction, peer, proto, dst_port);
        *slot = Slot {
            key,
            generation: set.generation(),
            judgement,
        };
        judgement
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::parse_policies;
    use super::super::{Endpoint, Inventory, PolicySet};
    use super::*;

    #[test]
    fn hits_repeat_the_classifier_and_a_new_generation_misses() {
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: a\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 80\n";
        let policies: Vec<_> = parse_policies(yaml)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let inv = Inventory {
            endpoints: vec![Endpoint {
                ip: "10.244.1.2".parse().unwrap(),
                namespace: "default".into(),
                labels: Default::default(),
                port: Some(PortId(1)),
            }],
            ..Inventory::default()
        };
        let set = PolicySet::compile(&policies, &inv, None);
        let mut cache = FlowCache::default();
        let peer = "10.244.1.3".parse().unwrap();
        for _ in 0..3 {
            for port in [80, 81] {
                let j = cache.judge(&set, PortId(1), Direction::Ingress, peer, 6, Some(port));
                assert_eq!(
                    j,
                    set.judge(PortId(1), Direction::Ingress, peer, 6, Some(port))
                );
            }
        }
        assert_eq!(cache.stats(), CacheStats { hits: 4, misses: 2 });
        let newer = PolicySet::compile(&[], &inv, None);
        assert_eq!(
            cache.judge(&newer, PortId(1), Direction::Ingress, peer, 6, Some(81)),
            Judgement::NotSelected
        );
        assert_eq!(cache.stats().misses, 3);
    }
}
