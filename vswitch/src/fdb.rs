//! Learned FDB entries: `MAC -> port`, with aging, bounded.
//!
//! Contract: each worker owns one [`LearnedFdb`]. Learning refreshes an entry's time; a lookup
//! ignores (and removes) an entry older than the aging time; the table never holds more than its
//! capacity (learning is skipped and reported when full after expired entries are swept). Time is
//! a parameter in nanoseconds (the pipeline's `now`), never read from a clock here.
//!
//! Non-goals: static entries (pod MACs live in the table snapshot) and sharing learned entries
//! between workers.

use crate::mac::MacAddr;
use crate::tables::PortId;
use ahash::AHashMap;

/// What learning a source MAC did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learn {
    /// A new entry.
    Added,
    /// An existing entry refreshed (or moved to another port).
    Refreshed,
    /// The table is full of live entries.
    Full,
}

/// Learned entries of one worker.
#[derive(Debug)]
pub struct LearnedFdb {
    entries: AHashMap<MacAddr, (PortId, u64)>,
    capacity: usize,
    aging_ns: u64,
}

impl LearnedFdb {
    /// A table for at most `capacity` entries that age out after `aging_secs`.
    pub fn new(capacity: usize, aging_secs: u64) -> Self {
        LearnedFdb {
            entries: AHashMap::with_capacity(capacity),
            capacity,
            aging_ns: aging_secs.saturating_mul(1_000_000_000),
        }
    }

    /// Records that `mac` was seen on `port` at `now`.
    #[inline]
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: u64) -> Learn {
        if let Some(e) = self.entries.get_mut(&mac) {
            *e = (port, now);
            return Learn::Refreshed;
        }
        if self.entries.len() >= self.capacity {
            self.sweep(now);
            if self.entries.len() >= self.capacity {
                return Learn::Full;
            }
        }
        self.entries.insert(mac, (port, now));
        Learn::Added
    }

    /// The port `mac` was last seen on, unless that was longer ago than the aging time.
    #[inline]
    pub fn lookup(&mut self, mac: MacAddr, now: u64) -> Option<PortId> {
        let (port, seen) = *self.entries.get(&mac)?;
        if now.saturating_sub(seen) > self.aging_ns {
            self.entries.remove(&mac);
            return None;
        }
        Some(port)
    }

    /// Forgets every entry pointing at `port` (the port was removed).
    pub fn forget_port(&mut self, port: PortId) {
        self.entries.retain(|_, (p, _)| *p != port);
    }

    /// Removes every expired entry.
    pub fn sweep(&mut self, now: u64) {
        let aging = self.aging_ns;
        self.entries
            .retain(|_, (_, seen)| now.saturating_sub(*seen) <= aging);
    }

    /// Live and not yet swept entries, for display.
    pub fn entries(&self) -> impl Iterator<Item = (MacAddr, PortId, u64)> + '_ {
        self.entries.iter().map(|(m, (p, t))| (*m, *p, *t))
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn mac(b: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, b])
    }

    #[test]
    fn learns_refreshes_and_ages() {
        let mut f = LearnedFdb::new(4, 300);
        assert_eq!(f.learn(mac(1), PortId(7), 0), Learn::Added);
        assert_eq!(f.lookup(mac(1), 300 * S), Some(PortId(7)));
        assert_eq!(f.learn(mac(1), PortId(8), 200 * S), Learn::Refreshed);
        assert_eq!(f.lookup(mac(1), 500 * S), Some(PortId(8)));
        assert_eq!(f.lookup(mac(1), 501 * S), None);
        assert!(f.is_empty());
    }

    #[test]
    fn bounded_and_sweeps_expired_when_full() {
        let mut f = LearnedFdb::new(2, 10);
        f.learn(mac(1), PortId(1), 0);
        f.learn(mac(2), PortId(1), 5 * S);
        assert_eq!(f.learn(mac(3), PortId(1), 6 * S), Learn::Full);
        assert_eq!(f.learn(mac(3), PortId(1), 11 * S), Learn::Added);
        assert_eq!(f.len(), 2);
        f.forget_port(PortId(1));
        assert!(f.is_empty());
    }
}
