//! Offload switches through the legacy `SIOCETHTOOL` ioctl (`ETHTOOL_S*` one-feature commands).
//!
//! The ioctl acts in the namespace of the socket it is issued on, and the socket belongs to the
//! namespace of the thread that created it: callers run this on a thread that is already in the
//! right namespace. All `unsafe` of the module is here.

use std::{
    ffi::c_void,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// An offload that can be switched on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offload {
    /// `tx-checksumming` (the kernel drops TSO with it: TSO needs TX checksums).
    TxChecksum,
    /// `tcp-segmentation-offload`.
    Tso,
    /// `generic-segmentation-offload`.
    Gso,
}

impl Offload {
    fn set_cmd(self) -> u32 {
        const ETHTOOL_STXCSUM: u32 = 0x17;
        const ETHTOOL_STSO: u32 = 0x1f;
        const ETHTOOL_SGSO: u32 = 0x24;
        match self {
            Offload::TxChecksum => ETHTOOL_STXCSUM,
            Offload::Tso => ETHTOOL_STSO,
            Offload::Gso => ETHTOOL_SGSO,
        }
    }
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union, padded to the kernel's size (40 bytes
/// on 64-bit targets; never smaller than it).
#[repr(C)]
struct IfReqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut c_void,
    _pad: [u8; 16],
}

/// Switches `offload` on `ifname` in the current thread's network namespace.
pub(crate) fn set_offload(ifname: &str, offload: Offload, on: bool) -> io::Result<()> {
    let mut value = EthtoolValue {
        cmd: offload.set_cmd(),
        data: u32::from(on),
    };
    let mut req = IfReqData {
        name: ifname_bytes(ifname)?,
        data: (&mut value as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    let sock = control_socket()?;
    // SAFETY: SIOCETHTOOL reads an `ifreq` whose `ifr_data` points to an `ethtool_value`; both
    // live on this stack frame for the whole call and have the kernel's layout (see above).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A NUL-terminated interface name for `ifr_name`.
fn ifname_bytes(ifname: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, src) in name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(name)
}

/// A datagram socket to issue the ioctl on, in the current thread's namespace.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created, open descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
