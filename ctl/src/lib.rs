//! `ctl`: the control-plane side of vswitch that clients share with the daemon.
//!
//! Contract: the control protocol's request/response types (serde), the client that speaks it over
//! the daemon's Unix socket, and the binaries `vswitchctl` and `vswitch-cni` built on that client.
//! Non-goals: any forwarding logic; it depends on no engine code. The daemon (`vswitchd`) and the
//! CLI land with the AF_XDP node data plane issue; today this crate holds only the shared types.
