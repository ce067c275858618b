//! Workers: core-pinned poll loops, each owning a frame arena (its UMEM), its ports, a
//! pipeline and counters.
//!
//! Contract: a worker thread runs `receive -> process -> transmit` for each of its ports in
//! turn, reading the table snapshot once per round (so a control change is picked up between
//! bursts and never pauses forwarding). The control side talks to it only through
//! [`WorkerHandle`] commands (attach a port, detach a port, stop), handled between rounds; a
//! port is opened on the worker thread by the worker's [`Backend`], because only the worker may
//! touch its arena. Idle policy: `busy` polls forever; `adaptive` blocks in poll(2) on the
//! ports' file descriptors after an idle spell (waking at least every [`IDLE_WAKE`] to serve
//! commands), so an idle switch costs ~0% CPU. Detaching a port returns every frame its rings
//! held to the pool.

use crate::config::IdlePolicy;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vswitch::frame::{Desc, FrameArena};
use vswitch::pipeline::{Pipeline, PipelineConfig, MAX_BATCH};
use vswitch::port::{Port, PortMap};
use vswitch::stats::WorkerStats;
use vswitch::tables::{PortId, TableHandle, MAX_PORTS};

/// Longest a sleeping worker takes to notice a command.
pub const IDLE_WAKE: Duration = Duration::from_millis(20);
/// How long a worker keeps polling after its last frame before it sleeps (adaptive idle).
pub const IDLE_SPIN: Duration = Duration::from_micros(200);

/// A port a worker can sleep on.
pub trait DevicePort: Port {
    /// The descriptor poll(2) waits on for received frames.
    fn fd(&self) -> RawFd;
}

/// What a worker needs to open a port.
#[derive(Clone, Debug)]
pub struct PortSpec {
    /// Slot.
    pub id: PortId,
    /// Interface name.
    pub ifname: String,
    /// Interface index.
    pub ifindex: u32,
}

/// Opens ports over a worker's arena (AF_XDP sockets sharing its UMEM, or test ports). Lives
/// on the worker thread (built there by the factory given to [`WorkerHandle::spawn`]).
pub trait Backend: 'static {
    /// Opens the port described by `spec`, filling its receive ring from `arena`'s pool.
    fn open(
        &mut self,
        arena: &mut FrameArena,
        spec: &PortSpec,
    ) -> Result<Box<dyn DevicePort>, String>;
}

enum Command {
    Attach {
        spec: PortSpec,
        done: Sender<Result<RawFd, String>>,
    },
    Detach {
        id: PortId,
        done: Sender<usize>,
    },
    LearnedFdb {
        done: Sender<Vec<LearnedEntry>>,
    },
    Capture {
        tap: Tap,
    },
    Stop,
}

/// A learned FDB entry as the worker holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedEntry {
    /// The learned source MAC.
    pub mac: vswitch::mac::MacAddr,
    /// The port it was seen on.
    pub port: PortId,
    /// Nanoseconds since it was last seen.
    pub age_ns: u64,
}

/// A packet capture on one port: copies of the frames it receives (before processing) and
/// transmits (after rewriting), up to `count` frames, sent to `sink`. Copying allocates; a
/// capture is a debugging tool, and a port without one pays a single branch per burst.
pub struct Tap {
    /// The captured port.
    pub port: PortId,
    /// Frames still to capture.
    pub count: usize,
    /// Where the copies go (the capture ends when the receiver is dropped).
    pub sink: Sender<Vec<u8>>,
}

/// How one worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Worker number.
    pub index: usize,
    /// CPU to pin to.
    pub cpu: Option<usize>,
    /// Frames per receive burst.
    pub batch: usize,
    /// Idle policy.
    pub idle: IdlePolicy,
    /// Pipeline settings.
    pub pipeline: PipelineConfig,
}

/// The control side's handle on a running worker.
pub struct WorkerHandle {
    commands: Sender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The worker's counters.
    pub stats: Arc<WorkerStats>,
    /// The worker's settings.
    pub config: WorkerConfig,
}

impl WorkerHandle {
    /// Starts a worker thread; `make` builds its arena and backend on that thread (an AF_XDP
    /// UMEM must not move between threads). Fails with `make`'s error.
    pub fn spawn<B, F>(
        config: WorkerConfig,
        make: F,
        tables: &TableHandle,
    ) -> Result<WorkerHandle, String>
    where
        B: Backend,
        F: FnOnce() -> Result<(FrameArena, B), String> + Send + 'static,
    {
        let (tx, rx) = bounded(16);
        let (ready_tx, ready) = bounded(1);
        let stats = Arc::new(WorkerStats::default());
        let reader = tables.reader();
        let (worker_stats, worker_config) = (Arc::clone(&stats), config.clone());
        let thread = std::thread::Builder::new()
            .name(format!("vswitch-worker-{}", config.index))
            .spawn(move || {
                let (arena, backend) = match make() {
                    Ok(made) => made,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                worker_stats.frames_total.set(arena.pool.total() as u64);
                let worker = Worker {
                    ports: Ports((0..MAX_PORTS).map(|_| None).collect()),
                    backend,
                    arena,
                    pipeline: Pipeline::new(worker_config.pipeline, Arc::clone(&worker_stats)),
                    config: worker_config,
                    active: Vec::with_capacity(MAX_PORTS),
                    commands: rx,
                    reader,
                    stats: worker_stats,
                    pollfds: Vec::with_capacity(MAX_PORTS),
                    started: Instant::now(),
                    tap: None,
                };
                let _ = ready_tx.send(Ok(()));
                worker.run();
            })
            .map_err(|e| format!("cannot start worker {}: {e}", config.index))?;
        let started = ready
            .recv()
            .unwrap_or_else(|_| Err(format!("worker {} died while starting", config.index)));
        if let Err(e) = started {
            let _ = thread.join();
            return Err(e);
        }
        Ok(WorkerHandle {
            commands: tx,
            thread: std::sync::Mutex::new(Some(thread)),
            stats,
            config,
        })
    }

    /// Opens the port on the worker; returns its file descriptor (for an XSKMAP).
    pub fn attach(&self, spec: PortSpec) -> Result<RawFd, String> {
        let (done, result) = bounded(1);
        self.send(Command::Attach { spec, done })?;
        result
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the worker did not answer within 10 s".to_string())?
    }

    /// Closes the port on the worker; returns how many frames its rings held (now reclaimed).
    pub fn detach(&self, id: PortId) -> Result<usize, String> {
        let (done, result) = bounded(1);
        self.send(Command::Detach { id, done })?;
        result
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the worker did not answer within 10 s".to_string())
    }

    /// The learned FDB entries of the worker.
    pub fn learned_fdb(&self) -> Result<Vec<LearnedEntry>, String> {
        let (done, result) = bounded(1);
        self.send(Command::LearnedFdb { done })?;
        result
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the worker did not answer within 10 s".to_string())
    }

    /// Starts capturing `tap.count` frames of `tap.port` into `tap.sink` (replacing any
    /// capture in progress).
    pub fn capture(&self, tap: Tap) -> Result<(), String> {
        self.send(Command::Capture { tap })
    }

    fn send(&self, c: Command) -> Result<(), String> {
        self.commands
            .send(c)
            .map_err(|_| format!("worker {} has stopped", self.config.index))
    }

    /// Stops the worker (closing its ports) and waits for it; later commands fail.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        let thread = self.thread.lock().map(|mut t| t.take());
        if let Ok(Some(t)) = thread {
            let _ = t.join();
        }
    }
}

struct Ports(Vec<Option<Box<dyn DevicePort>>>);

impl PortMap for Ports {
    fn port_mut(&mut self, id: PortId) -> Option<&mut dyn Port> {
        match self.0.get_mut(id.index())? {
            Some(p) => Some(p.as_mut()),
            None => None,
        }
    }
}

/// Field order is drop order: ports (sockets), then the backend (UMEM), then the arena
/// (the memory both point into).
struct Worker<B> {
    ports: Ports,
    backend: B,
    arena: FrameArena,
    config: WorkerConfig,
    active: Vec<PortId>,
    pipeline: Pipeline,
    commands: Receiver<Command>,
    reader: vswitch::tables::TableReader,
    stats: Arc<WorkerStats>,
    pollfds: Vec<libc::pollfd>,
    started: Instant,
    tap: Option<Tap>,
}

impl<B: Backend> Worker<B> {
    fn run(mut self) {
        if let Some(cpu) = self.config.cpu {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                tracing::warn!(
                    worker = self.config.index,
                    cpu,
                    "could not pin the worker to its CPU; running unpinned"
                );
            }
        }
        let started = self.started;
        let mut last_work = 0u64;
        let mut empty_rounds = 0u32;
        let mut rx = [Desc::default(); MAX_BATCH];
        let batch = self.config.batch.clamp(1, MAX_BATCH);
        let spin = IDLE_SPIN.as_nanos() as u64;
        loop {
            if !self.serve_commands() {
                break;
            }
            let tables = Arc::clone(self.reader.load());
            // The clock is read once per round that moved frames (a vDSO call is not free
            // when the loop spins), and once every 64 empty rounds for the idle decision.
            let mut now = None;
            for i in 0..self.active.len() {
                let id = self.active[i];
                let Some(port) = self.ports.port_mut(id) else {
                    continue;
                };
                let n = self
                    .pipeline
                    .receive(&mut self.arena, id, port, &mut rx[..batch]);
                if n == 0 {
                    continue;
                }
                let now = *now.get_or_insert_with(|| started.elapsed().as_nanos() as u64);
                if self.tap.is_some() {
                    self.capture_frames(id, &rx[..n]);
                }
                self.pipeline
                    .process(&tables, &mut self.arena, id, &rx[..n], now);
                if self.tap.is_some() {
                    self.capture_outputs();
                }
                self.pipeline.transmit(&mut self.arena, &mut self.ports);
            }
            if let Some(now) = now {
                self.stats.busy_polls.add(1);
                last_work = now;
                empty_rounds = 0;
                self.stats
                    .frames_in_use
                    .set(self.arena.pool.in_use() as u64);
            } else {
                self.stats.idle_polls.add(1);
                empty_rounds += 1;
                if empty_rounds.is_multiple_of(64) {
                    // Frames of a port closed while idle go back without traffic.
                    self.stats
                        .frames_in_use
                        .set(self.arena.pool.in_use() as u64);
                }
                if self.config.idle == IdlePolicy::Adaptive
                    && empty_rounds.is_multiple_of(64)
                    && (started.elapsed().as_nanos() as u64).saturating_sub(last_work) > spin
                {
                    self.sleep();
                    last_work = started.elapsed().as_nanos() as u64;
                }
            }
        }
        for id in std::mem::take(&mut self.active) {
            self.close(id);
        }
    }

    /// Handles pending commands; `false` when told to stop.
    fn serve_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Attach { spec, done }) => {
                    let _ = done.send(self.open(&spec));
                }
                Ok(Command::Detach { id, done }) => {
                    let _ = done.send(self.close(id));
                }
                Ok(Command::LearnedFdb { done }) => {
                    let now = self.started.elapsed().as_nanos() as u64;
                    let entries = self
                        .pipeline
                        .fdb()
                        .entries()
                        .map(|(mac, port, seen)| LearnedEntry {
                            mac,
                            port,
                            age_ns: now.saturating_sub(seen),
                        })
                        .collect();
                    let _ = done.send(entries);
                }
                Ok(Command::Capture { tap }) => self.tap = Some(tap),
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn open(&mut self, spec: &PortSpec) -> Result<RawFd, String> {
        if self.ports.0[spec.id.index()].is_some() {
            self.close(spec.id);
        }
        let port = self.backend.open(&mut self.arena, spec)?;
        let fd = port.fd();
        self.ports.0[spec.id.index()] = Some(port);
        self.active.push(spec.id);
        self.stats.reset_port(spec.id);
        Ok(fd)
    }

    fn close(&mut self, id: PortId) -> usize {
        self.active.retain(|p| *p != id);
        drop(self.ports.0[id.index()].take());
        self.arena.pool.reclaim(id.0)
    }

    /// Copies `frames` (received on `port`) to the capture, if it captures that port.
    fn capture_frames(&mut self, port: PortId, frames: &[Desc]) {
        let Some(tap) = self.tap.as_mut().filter(|t| t.port == port) else {
            return;
        };
        for d in frames {
            if tap.count == 0 || tap.sink.send(self.arena.data(*d).to_vec()).is_err() {
                self.tap = None;
                return;
            }
            tap.count -= 1;
        }
    }

    /// Copies the frames about to be transmitted on the captured port.
    fn capture_outputs(&mut self) {
        let Some(tap) = self.tap.as_mut() else { return };
        for o in self
            .pipeline
            .outputs()
            .iter()
            .filter(|o| o.port == tap.port)
        {
            if tap.count == 0 || tap.sink.send(self.arena.data(o.desc).to_vec()).is_err() {
                self.tap = None;
                return;
            }
            tap.count -= 1;
        }
    }

    /// Blocks in poll(2) on every port until one has frames or [`IDLE_WAKE`] passes.
    fn sleep(&mut self) {
        self.pollfds.clear();
        for id in &self.active {
            if let Some(Some(p)) = self.ports.0.get(id.index()) {
                let fd = p.fd();
                self.pollfds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        self.stats.sleeps.add(1);
        let slept = Instant::now();
        let timeout = IDLE_WAKE.as_millis() as i32;
        // SAFETY: `pollfds` holds `len()` initialised pollfd structs that outlive the call.
        unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                timeout,
            )
        };
        self.stats.sleep_ns.add(slept.elapsed().as_nanos() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use vswitch::frame::FrameLayout;
    use vswitch::testing::*;

    type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

    /// A port over shared queues; its fd is a pipe that is never readable.
    struct QueuePort {
        rx: Queue,
        tx: Queue,
        fd: RawFd,
    }

    impl Port for QueuePort {
        fn rx_burst(&mut self, arena: &mut FrameArena, out: &mut [Desc]) -> usize {
            let mut q = self.rx.lock().unwrap();
            let mut n = 0;
            while n < out.len() {
                let Some(f) = q.pop_front() else { break };
                out[n] = arena.alloc_copy(&f).unwrap();
                n += 1;
            }
            n
        }
        fn tx_burst(&mut self, arena: &mut FrameArena, frames: &[Desc]) -> usize {
            for d in frames {
                self.tx.lock().unwrap().push_back(arena.data(*d).to_vec());
                arena.release(*d);
            }
            frames.len()
        }
    }

    impl DevicePort for QueuePort {
        fn fd(&self) -> RawFd {
            self.fd
        }
    }

    #[derive(Default)]
    struct QueueBackend {
        queues: Arc<Mutex<Vec<(PortId, Queue, Queue)>>>,
        pipe: [RawFd; 2],
    }

    impl Backend for QueueBackend {
        fn open(
            &mut self,
            arena: &mut FrameArena,
            spec: &PortSpec,
        ) -> Result<Box<dyn DevicePort>, String> {
            // Pretend the socket's fill ring took two frames, as an AF_XDP port does.
            for _ in 0..2 {
                let f = arena.pool.alloc().unwrap();
                arena.pool.give(f, spec.id.0);
            }
            let (rx, tx) = (Queue::default(), Queue::default());
            self.queues
                .lock()
                .unwrap()
                .push((spec.id, rx.clone(), tx.clone()));
            Ok(Box::new(QueuePort {
                rx,
                tx,
                fd: self.pipe[0],
            }))
        }
    }

    #[test]
    fn forwards_between_attached_ports_and_reclaims_on_detach() {
        let handle = TableHandle::new(tables());
        let mut pipe = [0; 2];
        // SAFETY: `pipe` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        let backend = QueueBackend {
            pipe,
            ..QueueBackend::default()
        };
        let queues = Arc::clone(&backend.queues);
        let config = WorkerConfig {
            index: 0,
            cpu: None,
            batch: 32,
            idle: IdlePolicy::Adaptive,
            pipeline: PipelineConfig::default(),
        };
        let make = move || {
            Ok((
                FrameArena::with_heap(FrameLayout::DEFAULT, 64).unwrap(),
                backend,
            ))
        };
        let w = WorkerHandle::spawn(config, make, &handle).unwrap();
        for (id, name) in [(POD1, "pod1"), (POD2, "pod2")] {
            let spec = PortSpec {
                id,
                ifname: name.into(),
                ifindex: 0,
            };
            assert_eq!(w.attach(spec).unwrap(), pipe[0]);
        }
        let (pod1_rx, pod2_tx) = {
            let q = queues.lock().unwrap();
            (q[0].1.clone(), q[1].2.clone())
        };
        let frame = ipv4_frame(POD1_MAC, GW_MAC, POD1_IP, POD2_IP, 64, 17, &[0; 18]);
        let (sink, captured) = bounded(4);
        w.capture(Tap {
            port: POD2,
            count: 1,
            sink,
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(30)); // let the worker fall asleep first
        pod1_rx.lock().unwrap().push_back(frame);
        let deadline = Instant::now() + Duration::from_secs(5);
        while pod2_tx.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = pod2_tx.lock().unwrap().pop_front().expect("routed to pod2");
        assert_eq!(out[22], 63, "TTL decremented");
        let copy = captured
            .recv_timeout(Duration::from_secs(5))
            .expect("captured");
        assert_eq!(
            copy, out,
            "the capture sees the frame as transmitted on pod2"
        );
        assert!(
            w.learned_fdb().unwrap().is_empty(),
            "pods teach no FDB entries"
        );
        assert!(w.stats.sleeps.get() > 0, "adaptive idle slept");
        assert_eq!(
            w.detach(POD1).unwrap(),
            2,
            "the fill ring's frames come back"
        );
        assert_eq!(w.detach(POD2).unwrap(), 2);
        w.stop();
        // SAFETY: closing the pipe created above.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1])
        };
    }
}
