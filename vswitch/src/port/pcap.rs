//! A pcap port: frames received from a pcap file, frames transmitted to one.
//!
//! Contract: [`PcapPort::open`] reads every record of an Ethernet pcap (a missing input means a
//! port that receives nothing) and the port then behaves like [`MemoryPort`], exposing each
//! queued frame's timestamp so a replay can interleave ports in capture order;
//! [`PcapPort::write`] saves what was transmitted as an Ethernet pcap that tcpdump reads.

use super::memory::MemoryPort;
use super::Port;
use crate::frame::{Desc, FrameArena};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;
use std::collections::VecDeque;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

/// Reads a pcap file into `(timestamp in ns, frame)` records.
pub fn read_pcap(path: &Path) -> Result<Vec<(u64, Vec<u8>)>, PcapError> {
    let file = File::open(path).map_err(|e| PcapError::new(path, e))?;
    let mut reader = PcapReader::new(file).map_err(|e| PcapError::new(path, e))?;
    let datalink = reader.header().datalink;
    if datalink != DataLink::ETHERNET {
        return Err(PcapError::new(
            path,
            format!("link type {datalink:?} is not Ethernet"),
        ));
    }
    let mut frames = Vec::new();
    while let Some(rec) = reader.next_packet() {
        let rec = rec.map_err(|e| PcapError::new(path, e))?;
        frames.push((rec.timestamp.as_nanos() as u64, rec.data.into_owned()));
    }
    Ok(frames)
}

/// Writes `frames` as an Ethernet pcap, one microsecond apart.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> Result<(), PcapError> {
    let file = File::create(path).map_err(|e| PcapError::new(path, e))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(BufWriter::new(file), header)
        .map_err(|e| PcapError::new(path, e))?;
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_micros(i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .map_err(|e| PcapError::new(path, e))?;
    }
    Ok(())
}

/// A pcap file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PcapError {
    path: String,
    reason: String,
}

impl PcapError {
    fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        PcapError {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A port fed from a pcap file that records what it transmits.
#[derive(Debug, Default)]
pub struct PcapPort {
    times: VecDeque<u64>,
    inner: MemoryPort,
}

impl PcapPort {
    /// A port that will receive the frames of `input` (none if `None` or the file is absent).
    pub fn open(input: Option<&Path>) -> Result<Self, PcapError> {
        let mut port = PcapPort::default();
        if let Some(path) = input.filter(|p| p.exists()) {
            for (ts, frame) in read_pcap(path)? {
                port.times.push_back(ts);
                port.inner.inject(frame);
            }
        }
        Ok(port)
    }

    /// Timestamps (ns) of the frames still to be received, in order.
    pub fn pending_times(&self) -> impl Iterator<Item = u64> + '_ {
        self.times.iter().copied()
    }

    /// Takes every frame transmitted so far.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        self.inner.take_tx()
    }

    /// Writes the frames transmitted so far to `path` (and keeps none).
    pub fn write(&mut self, path: &Path) -> Result<(), PcapError> {
        write_pcap(path, &self.take_tx())
    }
}

impl Port for PcapPort {
    fn rx_burst(&mut self, arena: &mut FrameArena, out: &mut [Desc]) -> usize {
        let before = self.inner.pending_rx();
        let n = self.inner.rx_burst(arena, out);
        let consumed = before - self.inner.pending_rx();
        self.times.drain(..consumed);
        n
    }

    fn tx_burst(&mut self, arena: &mut FrameArena, frames: &[Desc]) -> usize {
        self.inner.tx_burst(arena, frames)
    }

    fn take_rx_oversize(&mut self) -> u64 {
        self.inner.take_rx_oversize()
    }
}
