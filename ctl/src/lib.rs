//! `ctl`: the control-plane side of vswitch that clients share with the daemon.
//!
//! Contract: [`proto`] defines the control protocol (one JSON request per line on the daemon's
//! Unix socket, one JSON response line back); [`client`] speaks it. The binaries `vswitchctl`
//! and (later) `vswitch-cni` are built on the client. Non-goals: any forwarding logic; this
//! crate depends on no engine code (the daemon depends on it for the protocol types).

pub mod client;
pub mod proto;
pub mod render;
