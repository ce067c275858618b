//! The AF_XDP backend: the worker's UMEM and one socket per port sharing it.
//!
//! Contract: [`XskBackend::create`] maps a worker's frame memory and registers it as one UMEM;
//! the same memory is the worker's `FrameArena`, so a frame received on one port is
//! transmitted on another by moving its descriptor, never by copying bytes. The first port
//! opened (the host port) binds the UMEM's own socket with copy mode and `need_wakeup`; every
//! later port binds a new socket with `XDP_SHARED_UMEM` and its own fill and completion
//! rings. An [`XskPort`] keeps its fill ring stocked from the pool, returns completed TX
//! frames to the pool, and records every frame it hands to the kernel in the pool's holder
//! table, so no frame is lost or used twice and a closed port's frames can be reclaimed.
//! Frames keep 256 bytes of headroom (the kernel writes received data after
//! XDP_PACKET_HEADROOM), so tunnel headers can be prepended in place.
//!
//! Non-goals: loading XDP programs (see `xdp`); copying frames between UMEMs.
//! All `unsafe` of this module is in [`Region`].

use crate::worker::{Backend, DevicePort, PortSpec};
use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use vswitch::frame::{Desc, FrameArena, FrameLayout, FrameMemory};
use vswitch::port::Port;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// Entries in every ring (fill, completion, RX, TX).
pub const RING_SIZE: u32 = 2048;
/// Fewest frames a port keeps in its fill ring (an idle port shrinks to this): four bursts, so
/// a TCP flow starting on an idle port does not find the ring empty before it grows.
pub const FILL_MIN: u32 = 256;
/// Most frames a port keeps in its fill ring (a busy port grows to this).
pub const FILL_MAX: u32 = 1024;
/// Empty receive rounds after which an idle port halves its fill target.
const FILL_SHRINK_ROUNDS: u32 = 100_000;
/// Most `sendto` kicks per TX burst (copy mode sends at most 32 frames per kick).
const MAX_TX_KICKS: u32 = 16;

/// An anonymous shared mapping holding a worker's frames.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory owned by exactly one worker at a time.
unsafe impl Send for Region {}

impl Region {
    /// Maps `len` bytes of zeroed, pre-faulted memory.
    pub fn map(len: usize) -> Result<Region, String> {
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "cannot map {len} bytes of UMEM: {} (lower datapath.frames?)",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Region {
            ptr: NonNull::new(p.cast()).expect("mmap never returns null on success"),
            len,
        })
    }

    fn as_nonnull_slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }
}

impl FrameMemory for Region {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference from userspace.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Opens AF_XDP sockets on the worker's UMEM.
pub struct XskBackend {
    umem: Umem,
    owner_bound: bool,
}

impl XskBackend {
    /// Maps `frames` frames of `layout`, registers them as a UMEM, and returns the arena over
    /// the same memory with the backend. Must run on the worker thread (a UMEM is not `Send`).
    pub fn create(layout: FrameLayout, frames: usize) -> Result<(FrameArena, XskBackend), String> {
        let region = Region::map(frames * layout.frame_size as usize)?;
        let config = UmemConfig {
            fill_size: RING_SIZE,
            complete_size: RING_SIZE,
            frame_size: layout.frame_size,
            headroom: layout.headroom.saturating_sub(XDP_PACKET_HEADROOM),
            flags: 0,
        };
        // SAFETY: the region outlives the UMEM: the worker drops its ports and backend
        // before its arena (field order), and the region is only accessed through the arena.
        let umem = unsafe { Umem::new(config, region.as_nonnull_slice()) }
            .map_err(|e| format!("cannot register the UMEM (XDP_UMEM_REG): {e:?}"))?;
        let arena = FrameArena::new(region, layout).map_err(|e| e.to_string())?;
        Ok((
            arena,
            XskBackend {
                umem,
                owner_bound: false,
            },
        ))
    }
}

/// Bytes the kernel keeps in front of received data in every frame.
pub const XDP_PACKET_HEADROOM: u32 = 256;

impl Backend for XskBackend {
    fn open(
        &mut self,
        arena: &mut FrameArena,
        spec: &PortSpec,
    ) -> Result<Box<dyn DevicePort>, String> {
        let fail = |what: &str, e: xdpilone::Errno| format!("{}: {what}: {e:?}", spec.ifname);
        let mut info = IfInfo::invalid();
        let name = CString::new(spec.ifname.as_str())
            .map_err(|_| format!("bad interface name {:?}", spec.ifname))?;
        info.from_name(&name)
            .map_err(|e| fail("no such interface", e))?;
        info.set_queue(0);
        // The UMEM's own socket is bound first and carries the bind flags; sockets sharing the
        // UMEM must bind with none (the kernel inherits copy mode and need_wakeup).
        let first = !self.owner_bound;
        let socket = if first {
            Socket::with_shared(&info, &self.umem)
        } else {
            Socket::new(&info)
        }
        .map_err(|e| fail("socket", e))?;
        let dev = self
            .umem
            .fq_cq(&socket)
            .map_err(|e| fail("fill/completion rings", e))?;
        let bind_flags = if first {
            SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP
        } else {
            0
        };
        let user = self
            .umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(RING_SIZE),
                    tx_size: NonZeroU32::new(RING_SIZE),
                    bind_flags,
                },
            )
            .map_err(|e| fail("rx/tx rings", e))?;
        let rx = user.map_rx().map_err(|e| fail("map rx ring", e))?;
        let tx = user.map_tx().map_err(|e| fail("map tx ring", e))?;
        self.umem
            .bind(&user)
            .map_err(|e| fail("bind (is another AF_XDP program on it?)", e))?;
        self.owner_bound = true;
        let mut port = XskPort {
            slot: spec.id.0,
            fd: user.as_raw_fd(),
            dev,
            rx,
            tx,
            _user: user,
            bad_descriptors: 0,
            fill_target: FILL_MIN,
            idle_rounds: 0,
        };
        port.refill(arena);
        Ok(Box::new(port))
    }
}

/// The kernel's drop counters of the AF_XDP socket `fd` (XDP_STATISTICS), by name: frames the
/// kernel could not hand to the switch (RX ring full, fill ring empty, invalid descriptors).
/// Read on the control path; `None` if the socket does not answer.
pub fn kernel_drops(fd: RawFd) -> Option<[(&'static str, u64); 5]> {
    const SOL_XDP: libc::c_int = 283;
    const XDP_STATISTICS: libc::c_int = 7;
    let mut st = xdpilone::xdp::XdpStatisticsV2::default();
    let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
    // SAFETY: `st` is a repr(C) xdp_statistics of `len` bytes, valid for writes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            (&mut st as *mut xdpilone::xdp::XdpStatisticsV2).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some([
        ("xsk_rx_dropped", st.rx_dropped),
        ("xsk_rx_ring_full", st.rx_ring_full),
        ("xsk_fill_ring_empty", st.rx_fill_ring_empty_descs),
        ("xsk_rx_invalid", st.rx_invalid_descs),
        ("xsk_tx_invalid", st.tx_invalid_descs),
    ])
}

/// One AF_XDP socket: a switch port.
pub struct XskPort {
    slot: u16,
    fd: RawFd,
    dev: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    _user: User,
    bad_descriptors: u64,
    /// Frames to keep in the fill ring: doubles after a full burst, halves after a long idle
    /// spell, so busy ports never starve and idle ones do not hoard the pool.
    fill_target: u32,
    idle_rounds: u32,
}

impl XskPort {
    /// Frames the kernel returned that this port did not hold (ignored).
    pub fn bad_descriptors(&self) -> u64 {
        self.bad_descriptors
    }

    /// Returns completed TX frames to the pool.
    fn reap(&mut self, arena: &mut FrameArena) {
        let mut done = self.dev.complete(RING_SIZE);
        while let Some(addr) = done.read() {
            if arena.pool.take(addr, self.slot) {
                arena.pool.free(addr);
            } else {
                self.bad_descriptors += 1;
            }
        }
        done.release();
    }

    /// Adapts the fill target to a burst of `received` frames out of `asked`: a full burst, or
    /// one that took half the target, doubles it.
    fn adapt_fill_target(&mut self, received: usize, asked: usize) {
        let heavy = received > 0 && (received == asked || received as u32 >= self.fill_target / 2);
        if heavy {
            self.fill_target = (self.fill_target * 2).min(FILL_MAX);
            self.idle_rounds = 0;
        } else if received == 0 {
            self.idle_rounds += 1;
            if self.idle_rounds >= FILL_SHRINK_ROUNDS {
                self.fill_target = (self.fill_target / 2).max(FILL_MIN);
                self.idle_rounds = 0;
            }
        }
    }

    /// Tops the fill ring up to the fill target from the pool.
    fn refill(&mut self, arena: &mut FrameArena) {
        let queued = self.dev.pending();
        if queued >= self.fill_target {
            return;
        }
        let mut fill = self.dev.fill(self.fill_target - queued);
        let mut n = 0;
        while n < fill.capacity() {
            let Some(base) = arena.pool.alloc() else {
                break;
            };
            if !fill.insert_once(base) {
                arena.pool.free(base);
                break;
            }
            arena.pool.give(base, self.slot);
            n += 1;
        }
        fill.commit();
        drop(fill);
        if n > 0 && self.dev.needs_wakeup() {
            self.dev.wake();
        }
    }
}

impl Port for XskPort {
    fn rx_burst(&mut self, arena: &mut FrameArena, out: &mut [Desc]) -> usize {
        self.reap(arena);
        let mut n = 0;
        {
            let mut ring = self.rx.receive(out.len() as u32);
            while let Some(d) = ring.read() {
                if arena.pool.take(d.addr, self.slot) {
                    out[n] = Desc {
                        addr: d.addr,
                        len: d.len,
                    };
                    n += 1;
                } else {
                    self.bad_descriptors += 1;
                }
            }
            ring.release();
        }
        self.adapt_fill_target(n, out.len());
        self.refill(arena);
        n
    }

    fn tx_burst(&mut self, arena: &mut FrameArena, frames: &[Desc]) -> usize {
        self.reap(arena);
        // `transmit` may grant fewer slots than are free (it re-reads the kernel's consumer
        // index only when its cached count runs out), so ask again until the ring truly is full.
        let mut sent = 0;
        while sent < frames.len() {
            let mut ring = self.tx.transmit((frames.len() - sent) as u32);
            let n = ring.insert(frames[sent..].iter().map(|d| XdpDesc {
                addr: d.addr,
                len: d.len,
                options: 0,
            }));
            ring.commit();
            if n == 0 {
                break;
            }
            sent += n as usize;
        }
        for d in &frames[..sent] {
            arena.pool.give(d.addr, self.slot);
        }
        // Copy mode transmits only inside sendto(), at most 32 frames per call.
        let mut kicks = 0;
        while self.tx.pending() > 0 && kicks < MAX_TX_KICKS && self.tx.needs_wakeup() {
            self.tx.wake();
            kicks += 1;
        }
        sent
    }
}

impl DevicePort for XskPort {
    fn fd(&self) -> RawFd {
        self.fd
    }
}
