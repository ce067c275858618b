//! `ctl`: the control-plane side of vswitch that clients share with the daemon.
//!
//! Contract: [`proto`] defines the control protocol (one JSON request per line on the daemon's
//! Unix socket, one JSON response line back); [`client`] speaks it. The binaries `vswitchctl`
//! and `vswitch-cni` are built on the client; [`cni`] is the CNI plugin's logic. Non-goals: any
//! forwarding logic; this crate depends on no engine code (the daemon depends on it for the
//! protocol types).

pub mod client;
pub mod cni;
pub mod proto;
pub mod render;
