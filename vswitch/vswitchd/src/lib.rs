//! `vswitchd`: the vswitch daemon around the engine.
//!
//! Contract: everything the engine must not contain lives here: the configuration file, the
//! AF_XDP backend of the engine's `Port` trait, worker threads, pod plumbing over netlink, the
//! control socket and the persisted state. `main.rs` wires them together.

pub mod afxdp;
pub mod config;
pub mod control;
pub mod metrics;
pub mod netlink;
pub mod node;
pub mod state;
pub mod switch;
pub mod trace;
pub mod worker;
pub mod xdp;
