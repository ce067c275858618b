//! Counters: per port and per worker, written by one worker, read by anyone.
//!
//! Contract: a worker owns one [`WorkerStats`] and is its only writer; increments are a relaxed
//! load and store (no lock, no atomic read-modify-write), so a reader may see a value a few
//! packets old but never a torn one. [`WorkerStats::snapshot`] copies everything out for the
//! control side; summing snapshots of all workers gives the switch's totals.
//!
//! Ports are identified by their slot (`PortId`), so the counter table never reallocates while
//! workers run; a port added later finds its counters already there.

use crate::reason::{DropReason, Event};
use crate::tables::{PortId, MAX_PORTS};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A single-writer counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Sets the counter back to zero (when a port slot is reused).
    pub fn reset(&self) {
        self.set(0);
    }

    /// Sets a gauge. Only the owning worker may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
}

/// One port's counters, as kept by one worker.
#[derive(Debug)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames transmitted.
    pub tx_packets: Counter,
    /// Bytes transmitted.
    pub tx_bytes: Counter,
    drops: [Counter; DropReason::COUNT],
    events: [Counter; Event::COUNT],
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            events: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl PortCounters {
    /// Counts one dropped frame.
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        self.drops[reason as usize].add(1);
    }

    /// Counts `n` frames dropped for the same reason.
    #[inline]
    pub fn drop_n(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    /// Counts one event.
    #[inline]
    pub fn event(&self, event: Event) {
        self.events[event as usize].add(1);
    }

    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// Events counted for `event`.
    pub fn events(&self, event: Event) -> u64 {
        self.events[event as usize].get()
    }

    fn reset(&self) {
        for c in [
            &self.rx_packets,
            &self.rx_bytes,
            &self.tx_packets,
            &self.tx_bytes,
        ]
        .into_iter()
        .chain(&self.drops)
        .chain(&self.events)
        {
            c.reset();
        }
    }

    fn snapshot(&self) -> PortStats {
        PortStats {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            drops: nonzero(DropReason::ALL, &self.drops, |r| r.name()),
            events: nonzero(Event::ALL, &self.events, |e| e.name()),
        }
    }
}

fn nonzero<T: Copy>(
    all: &[T],
    counters: &[Counter],
    name: impl Fn(T) -> &'static str,
) -> Vec<(&'static str, u64)> {
    all.iter()
        .zip(counters)
        .filter(|(_, c)| c.get() != 0)
        .map(|(v, c)| (name(*v), c.get()))
        .collect()
}

/// A copy of one port's counters; drops and events list only the non-zero ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Non-zero drop counters by reason name.
    pub drops: Vec<(&'static str, u64)>,
    /// Non-zero event counters by event name.
    pub events: Vec<(&'static str, u64)>,
}

impl PortStats {
    /// Total drops over all reasons.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum()
    }

    /// Adds `other` into `self` (summing workers).
    pub fn merge(&mut self, other: &PortStats) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        merge_named(&mut self.drops, &other.drops);
        merge_named(&mut self.events, &other.events);
    }
}

fn merge_named(into: &mut Vec<(&'static str, u64)>, from: &[(&'static str, u64)]) {
    for (name, n) in from {
        match into.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v += n,
            None => into.push((name, *n)),
        }
    }
}

/// Every counter one worker keeps.
#[derive(Debug)]
pub struct WorkerStats {
    ports: Box<[PortCounters]>,
    /// Poll rounds that moved at least one frame.
    pub busy_polls: Counter,
    /// Poll rounds that found nothing to do.
    pub idle_polls: Counter,
    /// Times the worker blocked in poll(2) (adaptive idle).
    pub sleeps: Counter,
    /// Nanoseconds the worker spent blocked in poll(2).
    pub sleep_ns: Counter,
    /// Gauge: frames of the worker's arena out of its pool.
    pub frames_in_use: Counter,
    /// Gauge: frames in the worker's arena.
    pub frames_total: Counter,
    /// Descriptors a kernel ring returned that the port did not hold (ignored).
    pub bad_descriptors: Counter,
    /// Gauge: connections tracked (including expired ones not yet swept).
    pub conntrack_entries: Counter,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            busy_polls: Counter::default(),
            idle_polls: Counter::default(),
            sleeps: Counter::default(),
            sleep_ns: Counter::default(),
            frames_in_use: Counter::default(),
            frames_total: Counter::default(),
            bad_descriptors: Counter::default(),
            conntrack_entries: Counter::default(),
        }
    }
}

impl WorkerStats {
    /// The counters of port `id`.
    #[inline]
    pub fn port(&self, id: PortId) -> &PortCounters {
        &self.ports[id.index()]
    }

    /// Zeroes a slot's counters before the slot is given to a new port.
    pub fn reset_port(&self, id: PortId) {
        self.ports[id.index()].reset();
    }

    /// A copy of port `id`'s counters.
    pub fn snapshot(&self, id: PortId) -> PortStats {
        self.ports[id.index()].snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots_only_nonzero() {
        let s = WorkerStats::default();
        let p = PortId(3);
        s.port(p).drop(DropReason::NoRoute);
        s.port(p).drop(DropReason::NoRoute);
        s.port(p).event(Event::ArpReplies);
        s.port(p).rx_packets.add(5);
        let snap = s.snapshot(p);
        assert_eq!(snap.drops, vec![("no_route", 2)]);
        assert_eq!(snap.events, vec![("arp_replies", 1)]);
        assert_eq!(snap.total_drops(), 2);
        let mut sum = snap.clone();
        sum.merge(&snap);
        assert_eq!(sum.drops, vec![("no_route", 4)]);
        assert_eq!(sum.rx_packets, 10);
        s.reset_port(p);
        assert_eq!(s.snapshot(p), PortStats::default());
    }
}
