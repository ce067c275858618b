//! `vswitch`: the forwarding engine of a Kubernetes node data plane.
//!
//! Contract: frames live in a [`frame::FrameArena`] (the UMEM layout); ports move descriptors in
//! and out of it in batches ([`port::Port`]); the [`pipeline`] turns a batch received on one port
//! into transmissions on others with pure stages (parse -> source check -> lookup -> rewrite ->
//! output) over immutable [`tables`] snapshots; every frame that does not leave is counted under a
//! named [`reason::DropReason`] in [`stats`].
//!
//! Non-goals: sockets of any kind. The AF_XDP backend and the daemon plug into the [`port::Port`]
//! trait from outside this crate; here live only the in-memory and pcap ports, so every behaviour
//! runs deterministically in tests.

pub mod fdb;
pub mod frame;
pub mod mac;
pub mod pipeline;
pub mod policy;
pub mod port;
pub mod reason;
pub mod replay;
pub mod stats;
pub mod tables;
pub mod testing;
