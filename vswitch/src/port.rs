//! Ports: where frames enter and leave the switch, in batches.
//!
//! Contract: a [`Port`] receives into and transmits from the worker's [`FrameArena`] through
//! caller-owned descriptor slices. `rx_burst` takes free frames from the arena's pool (or, for
//! AF_XDP, hands over frames the kernel filled); `tx_burst` takes ownership of the frames it
//! accepts (a prefix of the slice) and returns them to the pool once sent; the caller keeps the
//! rest. A port never allocates per frame on a real-socket backend; the test ports here do.
//!
//! Implementations here: [`memory::MemoryPort`] (frames pushed and collected by a test) and
//! [`pcap::PcapPort`] (frames from and to pcap files). The AF_XDP backend lives with the daemon.

pub mod memory;
pub mod pcap;

use crate::frame::{Desc, FrameArena};
use crate::tables::PortId;

/// A batch I/O port.
pub trait Port: Send {
    /// Receives up to `out.len()` frames; returns how many descriptors were written.
    fn rx_burst(&mut self, arena: &mut FrameArena, out: &mut [Desc]) -> usize;

    /// Transmits a prefix of `frames`; returns its length. Accepted frames belong to the port.
    fn tx_burst(&mut self, arena: &mut FrameArena, frames: &[Desc]) -> usize;

    /// Frames discarded at receive since the last call because no frame buffer could hold them
    /// (counted by the caller as `frame_too_long`).
    fn take_rx_oversize(&mut self) -> u64 {
        0
    }
}

/// Ports by id, as a worker holds them.
pub trait PortMap {
    /// The port in slot `id`, if this worker has it.
    fn port_mut(&mut self, id: PortId) -> Option<&mut dyn Port>;
}

impl<P: Port> PortMap for [Option<P>] {
    fn port_mut(&mut self, id: PortId) -> Option<&mut dyn Port> {
        self.get_mut(id.index())?
            .as_mut()
            .map(|p| p as &mut dyn Port)
    }
}

impl PortMap for [Option<Box<dyn Port>>] {
    fn port_mut(&mut self, id: PortId) -> Option<&mut dyn Port> {
        match self.get_mut(id.index())? {
            Some(port) => Some(&mut **port),
            None => None,
        }
    }
}
