//! An in-memory port: a test pushes frames in and collects what the switch sent.
//!
//! Contract: `rx_burst` copies queued frames into free arena frames (a frame longer than a frame
//! buffer is discarded and reported through `take_rx_oversize`); `tx_burst` copies frames out
//! and returns them to the pool at once. Copies and allocation are fine here: this port exists
//! for tests and micro-benchmarks, not for the datapath.

use super::Port;
use crate::frame::{Desc, FrameArena};
use std::collections::VecDeque;

/// Frames in, frames out, in memory.
#[derive(Debug, Default)]
pub struct MemoryPort {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    oversize: u64,
}

impl MemoryPort {
    /// An empty port.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `frame` to be received.
    pub fn inject(&mut self, frame: impl Into<Vec<u8>>) {
        self.rx.push_back(frame.into());
    }

    /// Frames still queued for receive.
    pub fn pending_rx(&self) -> usize {
        self.rx.len()
    }

    /// Takes every frame transmitted so far.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }
}

impl Port for MemoryPort {
    fn rx_burst(&mut self, arena: &mut FrameArena, out: &mut [Desc]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(frame) = self.rx.front() else { break };
            if frame.len() > arena.layout().max_data() as usize {
                self.oversize += 1;
                self.rx.pop_front();
                continue;
            }
            let Some(desc) = arena.alloc_copy(frame) else {
                break; // pool empty: leave the frame queued, like a full fill ring
            };
            self.rx.pop_front();
            out[n] = desc;
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, arena: &mut FrameArena, frames: &[Desc]) -> usize {
        for d in frames {
            self.tx.push(arena.data(*d).to_vec());
            arena.release(*d);
        }
        frames.len()
    }

    fn take_rx_oversize(&mut self) -> u64 {
        std::mem::take(&mut self.oversize)
    }
}
