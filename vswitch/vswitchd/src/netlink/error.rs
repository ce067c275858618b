//! The one error type of the netlink module, and the glue that turns a failed netlink or ioctl
//! call into an operator-readable line naming the step, the interface and the namespace.

use std::{io, net::Ipv4Addr, path::PathBuf};

/// A failure of pod or host-port plumbing or of next-hop resolution. `Display` is one line for
/// an operator: what failed, on which interface in which namespace, the kernel's reason and,
/// where it helps, what to check.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The request itself is unusable (bad name, gateway outside the subnet, ...); nothing was
    /// touched.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The pod network namespace cannot be opened or entered.
    #[error("network namespace {}: {reason}: {cause} (does the pod sandbox still exist?)", netns.display())]
    Netns {
        netns: PathBuf,
        reason: &'static str,
        cause: io::Error,
    },

    /// The interface name the request wants is already taken in that namespace.
    #[error(
        "interface {ifname} already exists in {netns} (conflict: remove it or use another name)"
    )]
    Conflict { ifname: String, netns: String },

    /// A netlink socket or its runtime could not be set up.
    #[error("cannot open a netlink socket in {netns}: {cause} (vswitchd needs CAP_NET_ADMIN)")]
    Socket { netns: String, cause: io::Error },

    /// One plumbing step failed; `step` names it.
    #[error("{step} for {ifname} in {netns} failed: {cause}{hint}", hint = hint(cause))]
    Step {
        step: &'static str,
        ifname: String,
        netns: String,
        cause: io::Error,
    },

    /// `check_pod_link` found the pod interface not as expected.
    #[error("pod interface {ifname} in {netns}: {what}")]
    Mismatch {
        ifname: String,
        netns: String,
        what: String,
    },

    /// `next_hop` found no usable unicast route to the address (no route, an `unreachable`,
    /// `prohibit` or `blackhole` route, or a local, broadcast or multicast address).
    #[error(
        "no usable route to {dst} in {netns}: {reason} (check the underlay: the uplink's \
         address and link state and the routes: `ip route get {dst}`)"
    )]
    NoRoute {
        dst: Ipv4Addr,
        netns: String,
        reason: String,
    },
}

impl NetlinkError {
    /// True for [`NetlinkError::Conflict`] (the CNI plugin maps it to its own error code).
    pub fn is_conflict(&self) -> bool {
        matches!(self, NetlinkError::Conflict { .. })
    }

    /// True when the namespace is missing or not a network namespace.
    pub fn is_netns_error(&self) -> bool {
        matches!(self, NetlinkError::Netns { .. })
    }

    /// True for [`NetlinkError::NoRoute`]: the peer is unreachable from this node as configured.
    pub fn is_no_route(&self) -> bool {
        matches!(self, NetlinkError::NoRoute { .. })
    }

    /// The kernel's errno behind a failed step, if there was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Step { cause, .. }
            | NetlinkError::Netns { cause, .. }
            | NetlinkError::Socket { cause, .. } => cause.raw_os_error(),
            _ => None,
        }
    }
}

/// What to check for the common errnos, appended to a failed step's line.
fn hint(cause: &io::Error) -> &'static str {
    match cause.raw_os_error() {
        Some(libc::EEXIST) => " (the name or entry already exists; remove the stale one)",
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root or CAP_NET_ADMIN)",
        Some(libc::ENODEV) => " (the interface does not exist or vanished meanwhile)",
        Some(libc::EINVAL) | Some(libc::ERANGE) => {
            " (the kernel rejected a value: check MTU, MAC and address)"
        }
        Some(libc::ENETUNREACH) | Some(libc::ENETDOWN) => {
            " (the gateway must be inside the interface's subnet and the link up)"
        }
        Some(libc::EOPNOTSUPP) => " (the driver does not support this)",
        _ => "",
    }
}

/// Where a step runs: the interface it acts on and a label of its namespace.
pub(crate) struct At<'a> {
    pub ifname: &'a str,
    pub netns: &'a str,
}

impl At<'_> {
    pub fn fail(&self, step: &'static str, cause: io::Error) -> NetlinkError {
        NetlinkError::Step {
            step,
            ifname: self.ifname.to_string(),
            netns: self.netns.to_string(),
            cause,
        }
    }

    pub fn mismatch(&self, what: String) -> NetlinkError {
        NetlinkError::Mismatch {
            ifname: self.ifname.to_string(),
            netns: self.netns.to_string(),
            what,
        }
    }
}

/// Errors of the calls the steps make, convertible to `io::Error` (errno where the kernel gave
/// one).
pub(crate) trait IntoIo {
    fn into_io(self) -> io::Error;
}

impl IntoIo for io::Error {
    fn into_io(self) -> io::Error {
        self
    }
}

impl IntoIo for rtnetlink::Error {
    fn into_io(self) -> io::Error {
        match self {
            rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
            other => io::Error::other(other.to_string()),
        }
    }
}

/// `result.step("bring up pod interface", &at)?`: names the step on failure.
pub(crate) trait StepResult<T> {
    fn step(self, step: &'static str, at: &At<'_>) -> Result<T, NetlinkError>;
}

impl<T, E: IntoIo> StepResult<T> for Result<T, E> {
    fn step(self, step: &'static str, at: &At<'_>) -> Result<T, NetlinkError> {
        self.map_err(|e| at.fail(step, e.into_io()))
    }
}

/// The errno of a failed call, for the few places that branch on it.
pub(crate) fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}
