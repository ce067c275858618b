//! `vtep`: the pure tunnel code of vswitch.
//!
//! Contract: header views and representations for the two tunnel wire formats vswitch speaks,
//! in the smoltcp `wire` style, over byte buffers the caller owns:
//!
//! - [`vxlan`]: the VXLAN header as flannel uses it (UDP 8472, VNI 1), validated as strictly as
//!   the Linux kernel's receive path;
//! - [`ipip`]: the outer IPv4 header of Calico's IPIP (protocol 4), and the outer header the
//!   kernel's `tunl0` would build for an inner packet;
//! - [`checksum`]: the Internet checksum and its incremental update.
//!
//! Each header has a view `Packet<T: AsRef<[u8]>>` (`new_unchecked`, `new_checked`,
//! `into_inner`, getters, setters when `T: AsMut<[u8]>`) and an owned `Repr` (`parse`,
//! `buffer_len`, `emit`). Everything is pure: no I/O, no clock, no allocation, no `unsafe`, and
//! a failure is a value of the module's `Error` enum, never a panic (accessors of views made with
//! `new_unchecked` excepted).
//!
//! Non-goals (for now): encapsulation/decapsulation over whole frames with headroom, the tunnel
//! table (remote subnet -> peer), prebuilt outer-header templates and peer checks: they come with
//! the tunnels issue, on top of these views.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod ipip;
pub mod vxlan;

pub use ipip::{
    outer_repr_for_inner, Error as IpipError, OuterPacket as IpipPacket, Repr as IpipRepr,
    IPIP_MTU_OVERHEAD, IPPROTO_IPIP,
};
pub use vxlan::{
    Error as VxlanError, Packet as VxlanPacket, Repr as VxlanRepr, FLANNEL_UDP_PORT, FLANNEL_VNI,
    VXLAN_MTU_OVERHEAD,
};
