//! `vtep`: the pure tunnel code of vswitch.
//!
//! Contract: everything a node needs to speak flannel's VXLAN and Calico's IPIP on its uplink,
//! over byte buffers the caller owns:
//!
//! - [`vxlan`]: the VXLAN header as flannel uses it (UDP 8472, VNI 1), validated as strictly as
//!   the Linux kernel's receive path;
//! - [`ipip`]: the outer IPv4 header of Calico's IPIP (protocol 4), and the outer header the
//!   kernel's `tunl0` would build for an inner packet;
//! - [`checksum`]: the Internet checksum and its incremental update;
//! - [`encap`]: prebuilt outer headers per peer ([`VxlanTemplate`], [`IpipTemplate`]) written in
//!   place into a frame's headroom and patched per packet ([`encap_vxlan`], [`encap_ipip`]);
//! - [`decap`]: the checks a received tunnel frame must pass, each failure a named
//!   [`DecapError`], and where its inner frame is ([`decap_vxlan`], [`decap_ipip`]);
//! - [`table`]: the [`TunnelTable`], remote pod subnet -> tunnel (longest prefix match) and
//!   outer source -> peer (the "only from configured peers" check).
//!
//! Each header has a view `Packet<T: AsRef<[u8]>>` (`new_unchecked`, `new_checked`,
//! `into_inner`, getters, setters when `T: AsMut<[u8]>`) and an owned `Repr` (`parse`,
//! `buffer_len`, `emit`). Everything is pure: no I/O, no clock, no `unsafe`, and a failure is a
//! value of the module's error enum, never a panic (accessors of views made with `new_unchecked`
//! excepted). The per-packet functions (views, encapsulation, decapsulation, table lookups)
//! allocate nothing; templates and tables are built on the control path, then only read.
//!
//! Non-goals: I/O and buffer management (the switch owns frames and headroom), choosing the IPv4
//! identification and resolving the underlay next hop's MAC (the caller passes them), the MTU
//! check and ICMP errors, drop counters (each [`DecapError`] variant maps to one), RFC 6040 ECN
//! decapsulation, outer fragment reassembly, VXLAN extensions (GBP, GPE, RCO), and IPv6.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod decap;
pub mod encap;
pub mod ipip;
pub mod table;
pub mod vxlan;

pub use decap::{decap_ipip, decap_vxlan, DecapError, IpipDecap, VxlanDecap, VxlanExpect};
pub use encap::{
    encap_ipip, encap_vxlan, encap_vxlan_with_src_port, flow_src_port, EncapError, FrameSpan,
    IpipPeer, IpipTemplate, VxlanPeer, VxlanTemplate, IPIP_ENCAP_LEN, IPIP_HEADROOM,
    VXLAN_ENCAP_LEN,
};
pub use ipip::{
    outer_repr_for_inner, Error as IpipError, OuterPacket as IpipPacket, Repr as IpipRepr,
    IPIP_MTU_OVERHEAD, IPPROTO_IPIP,
};
pub use table::{TableError, Tunnel, TunnelId, TunnelKind, TunnelTable, UnknownTunnelKind};
pub use vxlan::{
    Error as VxlanError, Packet as VxlanPacket, Repr as VxlanRepr, FLANNEL_UDP_PORT, FLANNEL_VNI,
    VXLAN_MTU_OVERHEAD,
};
