//! Frames: the memory the engine forwards from, descriptors into it, and the free pool.
//!
//! Contract: a [`FrameArena`] is one contiguous region cut into equal, power-of-two sized frames
//! (the AF_XDP UMEM layout in aligned mode). A [`Desc`] names the live bytes of one frame by
//! absolute offset and length; the bytes before `addr` inside the same frame are headroom that a
//! stage may claim to prepend headers in place ([`FrameArena::push_front`]). The [`FramePool`]
//! owns every frame that is neither in a port's ring nor in flight in the pipeline; it detects a
//! double free and can say how many frames are out, so leaks can be asserted on.
//!
//! Non-goals: the arena does not know about sockets. An AF_XDP backend supplies its UMEM mapping
//! as the region ([`FrameMemory`]); test ports use a boxed slice.

use thiserror::Error;

/// A frame descriptor: `len` bytes of packet data starting at absolute offset `addr` in the arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the first data byte from the start of the arena.
    pub addr: u64,
    /// Number of data bytes.
    pub len: u32,
}

/// Geometry of the frames in an arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Bytes per frame; a power of two (AF_XDP aligned mode: 2048 or 4096).
    pub frame_size: u32,
    /// Bytes reserved in front of received data for headers prepended in place.
    pub headroom: u32,
}

impl FrameLayout {
    /// The default layout: 4096-byte frames with 256 bytes of headroom (XDP_PACKET_HEADROOM).
    pub const DEFAULT: FrameLayout = FrameLayout {
        frame_size: 4096,
        headroom: 256,
    };

    /// Longest frame a port can receive into this layout.
    pub const fn max_data(&self) -> u32 {
        self.frame_size - self.headroom
    }

    /// The start of the frame that contains `addr`.
    pub const fn frame_base(&self, addr: u64) -> u64 {
        addr & !(self.frame_size as u64 - 1)
    }
}

/// Errors building an arena.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The frame size is not a power of two of at least 2048 bytes.
    #[error("frame size {0} must be a power of two >= 2048")]
    BadFrameSize(u32),
    /// The headroom leaves no room for an MTU-sized frame.
    #[error("headroom {headroom} leaves less than 1600 bytes of a {frame_size}-byte frame")]
    BadHeadroom {
        /// Requested headroom.
        headroom: u32,
        /// Frame size it was requested for.
        frame_size: u32,
    },
    /// The region is smaller than one frame or not a whole number of frames.
    #[error("a region of {len} bytes is not a whole, non-zero number of {frame_size}-byte frames")]
    BadRegion {
        /// Region length.
        len: usize,
        /// Frame size.
        frame_size: u32,
    },
}

/// Memory that backs an arena: a boxed slice for test ports, the UMEM mapping for AF_XDP.
pub trait FrameMemory: Send {
    /// The whole region.
    fn bytes(&self) -> &[u8];
    /// The whole region, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl FrameMemory for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Who holds a frame that is out of the pool: the pipeline, or a port (by slot) whose ring it
/// sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Taken from the pool by the worker: being received into, processed or transmitted.
    InFlight,
    /// In a ring of the port with this slot (an AF_XDP fill or TX ring).
    Port(u16),
}

const FREE: u16 = u16::MAX;
const IN_FLIGHT: u16 = u16::MAX - 1;

/// The free frames of an arena, as a stack of frame base addresses, and who holds the others.
///
/// Allocation and release are O(1) and never allocate: the stack has room for every frame.
/// Every frame has exactly one holder at a time; handing a frame to a port ([`FramePool::give`])
/// and taking it back ([`FramePool::take`]) check the holder, so a frame the kernel returns twice
/// or from the wrong ring is caught, and frames stranded in a closed socket's rings can be
/// reclaimed ([`FramePool::reclaim`]).
#[derive(Debug)]
pub struct FramePool {
    free: Vec<u64>,
    holder: Vec<u16>,
    frame_shift: u32,
}

impl FramePool {
    fn new(layout: FrameLayout, frames: usize) -> Self {
        let frame_shift = layout.frame_size.trailing_zeros();
        FramePool {
            free: (0..frames as u64).rev().map(|i| i << frame_shift).collect(),
            holder: vec![FREE; frames],
            frame_shift,
        }
    }

    #[inline]
    fn index(&self, addr: u64) -> usize {
        let i = (addr >> self.frame_shift) as usize;
        assert!(
            i < self.holder.len(),
            "frame address {addr:#x} outside the arena"
        );
        i
    }

    /// Takes a free frame (now [`Holder::InFlight`]); `None` when every frame is out.
    #[inline]
    pub fn alloc(&mut self) -> Option<u64> {
        let base = self.free.pop()?;
        let i = (base >> self.frame_shift) as usize;
        self.holder[i] = IN_FLIGHT;
        Some(base)
    }

    /// Returns the in-flight frame that contains `addr` to the pool.
    ///
    /// # Panics
    /// On a double free, a frame still held by a port, or an address outside the arena: engine
    /// bugs that would make two packets share a buffer, so they stop the worker rather than
    /// corrupt traffic.
    #[inline]
    pub fn free(&mut self, addr: u64) {
        let i = self.index(addr);
        assert!(
            self.holder[i] == IN_FLIGHT,
            "free of frame {i} (addr {addr:#x}) held by {:?}",
            self.holder(addr)
        );
        self.holder[i] = FREE;
        self.free.push((i as u64) << self.frame_shift);
    }

    /// Hands the in-flight frame containing `addr` to port `slot` (into one of its rings).
    #[inline]
    pub fn give(&mut self, addr: u64, slot: u16) {
        let i = self.index(addr);
        assert!(
            self.holder[i] == IN_FLIGHT,
            "give of frame {i} not in flight"
        );
        self.holder[i] = slot;
    }

    /// Takes back from port `slot` the frame containing `addr` (received, or TX completed).
    ///
    /// Returns `false`, changing nothing, when the port does not hold that frame (a descriptor
    /// the kernel should never return): the caller counts it and ignores the descriptor.
    #[inline]
    #[must_use]
    pub fn take(&mut self, addr: u64, slot: u16) -> bool {
        let i = (addr >> self.frame_shift) as usize;
        if i >= self.holder.len() || self.holder[i] != slot {
            return false;
        }
        self.holder[i] = IN_FLIGHT;
        true
    }

    /// Returns every frame held by port `slot` to the pool (its socket is closed); how many.
    pub fn reclaim(&mut self, slot: u16) -> usize {
        let mut n = 0;
        for i in 0..self.holder.len() {
            if self.holder[i] == slot {
                self.holder[i] = FREE;
                self.free.push((i as u64) << self.frame_shift);
                n += 1;
            }
        }
        n
    }

    /// Who holds the frame containing `addr`; `None` when it is free.
    pub fn holder(&self, addr: u64) -> Option<Holder> {
        match self.holder[self.index(addr)] {
            FREE => None,
            IN_FLIGHT => Some(Holder::InFlight),
            slot => Some(Holder::Port(slot)),
        }
    }

    /// Whether the frame containing `addr` is in the pool.
    pub fn is_free(&self, addr: u64) -> bool {
        self.holder(addr).is_none()
    }

    /// Frames held by port `slot`.
    pub fn held_by(&self, slot: u16) -> usize {
        self.holder.iter().filter(|h| **h == slot).count()
    }

    /// Frames in the pool.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Frames out of the pool (in rings or in flight).
    pub fn in_use(&self) -> usize {
        self.holder.len() - self.free.len()
    }

    /// Frames in the arena.
    pub fn total(&self) -> usize {
        self.holder.len()
    }
}

/// A region of frames, its layout and its free pool: what one worker forwards from.
pub struct FrameArena {
    mem: Box<dyn FrameMemory>,
    layout: FrameLayout,
    /// The frames not owned by a port or the pipeline.
    pub pool: FramePool,
}

impl std::fmt::Debug for FrameArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameArena")
            .field("layout", &self.layout)
            .field("pool", &self.pool)
            .finish()
    }
}

impl FrameArena {
    /// An arena over heap memory with `frames` frames of `layout`.
    pub fn with_heap(layout: FrameLayout, frames: usize) -> Result<Self, FrameError> {
        let len = frames.saturating_mul(layout.frame_size as usize);
        Self::new(vec![0u8; len].into_boxed_slice(), layout)
    }

    /// An arena over `mem`, whose length must be a whole number of frames.
    pub fn new(mem: impl FrameMemory + 'static, layout: FrameLayout) -> Result<Self, FrameError> {
        if !layout.frame_size.is_power_of_two() || layout.frame_size < 2048 {
            return Err(FrameError::BadFrameSize(layout.frame_size));
        }
        if layout.headroom + 1600 > layout.frame_size {
            return Err(FrameError::BadHeadroom {
                headroom: layout.headroom,
                frame_size: layout.frame_size,
            });
        }
        let len = mem.bytes().len();
        if len == 0 || !len.is_multiple_of(layout.frame_size as usize) {
            return Err(FrameError::BadRegion {
                len,
                frame_size: layout.frame_size,
            });
        }
        let frames = len / layout.frame_size as usize;
        Ok(FrameArena {
            mem: Box::new(mem),
            layout,
            pool: FramePool::new(layout, frames),
        })
    }

    /// The frame geometry.
    pub fn layout(&self) -> FrameLayout {
        self.layout
    }

    /// The whole region (for stages that work on many descriptors at once).
    pub fn region_mut(&mut self) -> &mut [u8] {
        self.mem.bytes_mut()
    }

    /// The live bytes of `desc`.
    #[inline]
    pub fn data(&self, desc: Desc) -> &[u8] {
        &self.mem.bytes()[desc.addr as usize..desc.addr as usize + desc.len as usize]
    }

    /// The live bytes of `desc`, writable.
    #[inline]
    pub fn data_mut(&mut self, desc: Desc) -> &mut [u8] {
        &mut self.mem.bytes_mut()[desc.addr as usize..desc.addr as usize + desc.len as usize]
    }

    /// Takes a free frame and copies `bytes` into it after the headroom.
    ///
    /// `None` when the pool is empty or `bytes` is longer than [`FrameLayout::max_data`].
    pub fn alloc_copy(&mut self, bytes: &[u8]) -> Option<Desc> {
        if bytes.len() > self.layout.max_data() as usize {
            return None;
        }
        let base = self.pool.alloc()?;
        let addr = base + self.layout.headroom as u64;
        let desc = Desc {
            addr,
            len: bytes.len() as u32,
        };
        self.data_mut(desc).copy_from_slice(bytes);
        Some(desc)
    }

    /// Returns `desc`'s frame to the pool.
    #[inline]
    pub fn release(&mut self, desc: Desc) {
        self.pool.free(desc.addr);
    }
}

/// Claims `n` bytes of headroom in front of `desc`; `None` if the frame has fewer left.
#[inline]
pub fn push_front(layout: FrameLayout, desc: Desc, n: u32) -> Option<Desc> {
    let room = desc.addr - layout.frame_base(desc.addr);
    (room >= n as u64).then(|| Desc {
        addr: desc.addr - n as u64,
        len: desc.len + n,
    })
}

/// Grows (or shrinks) `desc` to `len` bytes; `None` if the frame has no room for that many.
#[inline]
pub fn resize(layout: FrameLayout, desc: Desc, len: u32) -> Option<Desc> {
    let end = desc.addr - layout.frame_base(desc.addr) + len as u64;
    (end <= layout.frame_size as u64).then_some(Desc { len, ..desc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_each_frame_once_and_accounts() {
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 4).unwrap();
        let a = arena.alloc_copy(b"hello").unwrap();
        let b = arena.alloc_copy(b"world").unwrap();
        assert_ne!(
            FrameLayout::DEFAULT.frame_base(a.addr),
            FrameLayout::DEFAULT.frame_base(b.addr)
        );
        assert_eq!(arena.data(a), b"hello");
        assert_eq!(a.addr % 4096, 256, "data starts after the headroom");
        assert_eq!(arena.pool.in_use(), 2);
        arena.release(a);
        assert!(arena.pool.is_free(a.addr));
        assert_eq!(arena.pool.in_use(), 1);
    }

    #[test]
    fn ports_hold_frames_and_closed_ports_give_them_back() {
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 4).unwrap();
        let a = arena.pool.alloc().unwrap();
        let b = arena.pool.alloc().unwrap();
        arena.pool.give(a, 7);
        arena.pool.give(b, 7);
        assert_eq!(arena.pool.holder(a), Some(Holder::Port(7)));
        assert!(!arena.pool.take(a, 8), "another port's frame is refused");
        assert!(arena.pool.take(a, 7));
        assert!(!arena.pool.take(a, 7), "a frame returned twice is refused");
        assert_eq!(arena.pool.held_by(7), 1);
        assert_eq!(arena.pool.reclaim(7), 1);
        arena.pool.free(a);
        assert_eq!(arena.pool.in_use(), 0);
    }

    #[test]
    #[should_panic(expected = "free of frame")]
    fn double_free_is_caught() {
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 2).unwrap();
        let a = arena.alloc_copy(b"x").unwrap();
        arena.release(a);
        arena.release(a);
    }

    #[test]
    fn exhausted_pool_and_oversize_return_none() {
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 1).unwrap();
        assert!(arena.alloc_copy(&[0; 3841]).is_none());
        assert!(arena.alloc_copy(&[0; 3840]).is_some());
        assert!(arena.alloc_copy(b"x").is_none());
    }

    #[test]
    fn headroom_can_be_claimed_up_to_the_frame_start() {
        let l = FrameLayout::DEFAULT;
        let d = Desc {
            addr: 4096 + 256,
            len: 100,
        };
        assert_eq!(
            push_front(l, d, 50),
            Some(Desc {
                addr: 4096 + 206,
                len: 150
            })
        );
        assert_eq!(push_front(l, d, 257), None);
        assert_eq!(resize(l, d, 3840).map(|d| d.len), Some(3840));
        assert_eq!(resize(l, d, 3841), None);
    }

    #[test]
    fn bad_geometry_is_refused() {
        let bad = FrameLayout {
            frame_size: 3000,
            headroom: 256,
        };
        assert_eq!(
            FrameArena::with_heap(bad, 1).unwrap_err(),
            FrameError::BadFrameSize(3000)
        );
        let mem: Box<[u8]> = vec![0; 5000].into_boxed_slice();
        assert!(matches!(
            FrameArena::new(mem, FrameLayout::DEFAULT),
            Err(FrameError::BadRegion { .. })
        ));
    }
}
