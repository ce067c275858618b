//! Pod plumbing over netlink: the veth pairs that connect pods (and the host stack) to the switch;
//! and the underlay next hop of a tunnel peer, which the switch needs to address outer frames.
//!
//! Contract:
//! - [`create_pod_link`] creates a veth pair in the caller's namespace, moves one end into the
//!   pod's network namespace as `ifname` with the requested MAC, MTU, address and default route,
//!   TX checksum offload off (frames leaving a pod must carry complete checksums: the switch sees
//!   them raw through AF_XDP), `lo` up; then the host end gets the MTU and is brought up. On any
//!   failure everything it created is deleted again and the error names the failed step.
//! - [`delete_link`] is idempotent; [`check_pod_link`] verifies a pod interface (CNI CHECK);
//!   [`ensure_host_port`] creates or reuses the host port pair and its route; [`link_info`] and
//!   [`set_tx_checksum`] are the small helpers the daemon needs around them.
//! - [`next_hop`] tells where packets to a tunnel peer leave the caller's namespace (`ip route
//!   get`) and the next hop's MAC if the neighbour table has a usable entry (`ip neigh get`); it
//!   changes nothing. [`trigger_resolution`] makes the kernel ARP for a next hop without one.
//! - Every function is synchronous and runs its netlink requests on a per-call current-thread
//!   tokio runtime with its own rtnetlink connection. Work inside a pod namespace runs on a
//!   short-lived thread that `setns`es into it first; the calling thread never changes namespace.
//!   "The caller's namespace" is that of the calling thread.
//! - Nothing here touches an interface it was not asked about: a name that already exists is a
//!   conflict, never something to delete.
//!
//! Notes:
//! - The peer is created under a temporary name (`vsp<pid><n>`), moved with `IFLA_NET_NS_FD` and
//!   renamed inside the pod namespace (a moved link arrives down, keeps its ifindex when it is
//!   free there, and is looked up by name after the move). If the process dies between creating
//!   and moving, a `vsp…` peer with its host end stays behind; `delete_link(host_ifname)` removes
//!   both.
//! - The legacy ethtool ioctls switch the classic feature groups only. On 6.18 the new
//!   `tx-tcp-accecn-segmentation` bit stays on after "TSO off", so `ethtool -k` still shows
//!   `tcp-segmentation-offload: on`; it cannot be used without `tx-tcp(6)-segmentation`, which
//!   are off, so the stack still segments in software.
//! - Next-hop MACs come from the kernel's neighbour table: the kernel does the ARP, so its
//!   replies must reach the kernel stack (the uplink XDP program passes everything but tunnel
//!   traffic). The single-entry neighbour lookup needs Linux 5.0 or later.
//!
//! Non-goals: no datapath code, no AF_XDP sockets, no XDP program attach (that is the AF_XDP
//! backend's business); no IPAM (addresses come in the request); IPv4 only for now.

mod error;
mod ethtool;
mod link;
mod neigh;
mod ns;

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use self::{
    error::{errno_of, At, IntoIo, StepResult},
    ethtool::Offload,
    link::LinkState,
    ns::CALLER_NS,
};
pub use error::NetlinkError;

/// Where `ip netns add NAME` puts named network namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// A network namespace given as a name under `/var/run/netns` or as a path (anything with a `/`).
pub fn netns_path(netns: &str) -> PathBuf {
    if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        Path::new(NETNS_DIR).join(netns)
    }
}

/// What [`create_pod_link`] builds.
#[derive(Debug, Clone, Copy)]
pub struct PodLinkRequest<'a> {
    /// The pod's network namespace (a path, see [`netns_path`]).
    pub netns: &'a Path,
    /// The interface name inside the pod, e.g. `eth0`.
    pub ifname: &'a str,
    /// The host-side veth name (at most 15 bytes), e.g. `vsw1a2b3c4d5e`.
    pub host_ifname: &'a str,
    pub pod_mac: [u8; 6],
    /// The pod's address and prefix, e.g. `10.244.1.2/24`.
    pub address: Ipv4Net,
    /// The default route's next hop; must lie inside `address`'s subnet.
    pub gateway: Ipv4Addr,
    /// MTU of both ends.
    pub mtu: u16,
}

/// The result of [`create_pod_link`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLink {
    pub host_ifindex: u32,
    pub host_mac: [u8; 6],
    /// ifindex of the pod end inside the pod's namespace.
    pub pod_ifindex: u32,
}

/// What [`ensure_host_port`] builds.
#[derive(Debug, Clone, Copy)]
pub struct HostPortRequest<'a> {
    /// The end the host stack uses, e.g. `vsw0`.
    pub kernel_ifname: &'a str,
    /// The end the switch attaches to, e.g. `vsw0-sw`.
    pub switch_ifname: &'a str,
    /// Routed to `kernel_ifname` (the cluster CIDR).
    pub route: Ipv4Net,
    pub mtu: u16,
}

/// The result of [`ensure_host_port`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub switch_ifindex: u32,
    pub kernel_mac: [u8; 6],
    pub switch_mac: [u8; 6],
}

/// Where packets to a tunnel peer leave the caller's namespace; the result of [`next_hop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// The output interface (ifindex in the caller's namespace).
    pub ifindex: u32,
    /// The next hop: the gateway of the route, or the peer itself when it is on-link.
    pub via: Ipv4Addr,
    /// `via`'s MAC if the kernel's neighbour table has a usable entry (REACHABLE, STALE, DELAY,
    /// PROBE or PERMANENT with a link-layer address); `None` means "not resolved (yet)", see
    /// [`trigger_resolution`].
    pub mac: Option<[u8; 6]>,
}

/// Creates the pod's veth pair and configures both ends (see the module docs for the steps).
/// On failure, deletes what it created and returns the failed step.
pub fn create_pod_link(req: &PodLinkRequest) -> Result<PodLink, NetlinkError> {
    validate_pod_request(req)?;
    let netns = ns::open_netns(req.netns)?;
    ensure_pod_ifname_free(&netns, req)?;
    let peer = temp_peer_name();
    let host_ifindex = create_and_move(req, &peer, &netns)?;
    let finished = configure_pod_end(&netns, req, &peer)
        .and_then(|pod_ifindex| Ok((pod_ifindex, finish_host_end(req, host_ifindex)?)));
    match finished {
        Ok((pod_ifindex, host_mac)) => Ok(PodLink {
            host_ifindex,
            host_mac,
            pod_ifindex,
        }),
        Err(e) => {
            rollback(req.host_ifname, host_ifindex);
            Err(e)
        }
    }
}

/// Deletes the host end (and so the pair). `Ok(false)` if it did not exist.
pub fn delete_link(host_ifname: &str) -> Result<bool, NetlinkError> {
    validate_ifname("interface", host_ifname)?;
    let at = At {
        ifname: host_ifname,
        netns: CALLER_NS,
    };
    ns::with_handle(CALLER_NS, |h| async move {
        let Some(found) = link::find(&h, host_ifname)
            .await
            .step("look up link", &at)?
        else {
            return Ok(false);
        };
        match link::delete(&h, found.index).await {
            Ok(()) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(at.fail("delete link", e.into_io())),
        }
    })
}

/// ifindex and MAC of an interface in the caller's namespace, if it exists (MAC all zero for a
/// link without a 6-byte hardware address).
pub fn link_info(ifname: &str) -> Result<Option<(u32, [u8; 6])>, NetlinkError> {
    validate_ifname("interface", ifname)?;
    let at = At {
        ifname,
        netns: CALLER_NS,
    };
    let found = ns::with_handle(CALLER_NS, |h| async move {
        link::find(&h, ifname).await.step("look up link", &at)
    })?;
    Ok(found.map(|l| (l.index, l.mac.unwrap_or_default())))
}

/// Every IPv4 address of the caller's namespace (the node's own addresses: what it sends pods
/// from them is node traffic, which NetworkPolicy never judges).
pub fn local_ipv4_addresses() -> Result<Vec<Ipv4Addr>, NetlinkError> {
    let at = At {
        ifname: "*",
        netns: CALLER_NS,
    };
    let nets = ns::with_handle(CALLER_NS, |h| async move {
        link::ipv4_addresses_where(&h, None)
            .await
            .step("list addresses", &at)
    })?;
    Ok(nets.into_iter().map(|n| n.addr()).collect())
}

/// Verifies a pod's interface: it exists in `netns`, is up, has `mac`, carries `address` and
/// there is a default route via `gateway` on it. Errors on the first mismatch.
pub fn check_pod_link(
    netns: &Path,
    ifname: &str,
    mac: [u8; 6],
    address: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<(), NetlinkError> {
    validate_ifname("pod interface", ifname)?;
    let ns_file = ns::open_netns(netns)?;
    let label = ns::label(netns);
    let at = At {
        ifname,
        netns: &label,
    };
    ns::in_netns(&ns_file, netns, || {
        ns::with_handle(&label, |h| async move {
            let found = check_link(&h, &at, mac).await?;
            check_address(&h, &at, found.index, address).await?;
            check_default_route(&h, &at, found.index, gateway).await
        })
    })
}

/// Creates (or, if both ends already exist as a veth pair, reuses) the host port and configures
/// it: both ends up with `mtu`; on the kernel end TX checksum, TSO and GSO off (what the host
/// stack sends goes to AF_XDP and must be complete, MTU-sized frames); `route dev kernel_ifname
/// scope link` (replaced if present). Idempotent.
pub fn ensure_host_port(req: &HostPortRequest) -> Result<HostPort, NetlinkError> {
    validate_host_port_request(req)?;
    ns::with_handle(CALLER_NS, |h| async move {
        let (kernel, switch, created) = find_or_create_host_port(&h, req).await?;
        match configure_host_port(&h, req, &kernel, &switch).await {
            Ok(port) => Ok(port),
            Err(e) => {
                if created {
                    rollback_with(&h, req.kernel_ifname, kernel.index).await;
                }
                Err(e)
            }
        }
    })
}

/// Sets TX checksum offload on an interface of the caller's namespace.
pub fn set_tx_checksum(ifname: &str, on: bool) -> Result<(), NetlinkError> {
    validate_ifname("interface", ifname)?;
    let at = At {
        ifname,
        netns: CALLER_NS,
    };
    ethtool::set_offload(ifname, Offload::TxChecksum, on).step("set TX checksum offload", &at)
}

/// Where packets to `dst` leave the caller's namespace: the output interface, the next hop (the
/// route's gateway, or `dst` itself when on-link) and that next hop's MAC if the kernel's
/// neighbour table has a usable entry. Same lookup as `ip route get dst` (so the same route a
/// packet from an unbound socket takes), then `ip neigh get via dev ifindex`. Read-only.
///
/// No usable unicast route (none, `unreachable`/`prohibit`/`blackhole`, or `dst` is a local,
/// broadcast or multicast address) is [`NetlinkError::NoRoute`].
pub fn next_hop(dst: Ipv4Addr) -> Result<NextHop, NetlinkError> {
    let target = dst.to_string();
    let at = At {
        ifname: &target,
        netns: CALLER_NS,
    };
    ns::with_handle(CALLER_NS, |h| async move {
        let (ifindex, via) = route_next_hop(&h, dst, &at).await?;
        let via_name = via.to_string();
        let via_at = At {
            ifname: &via_name,
            netns: CALLER_NS,
        };
        let neighbour = neigh::neigh_get(&h, ifindex, via)
            .await
            .step("look up next-hop neighbour", &via_at)?;
        Ok(NextHop {
            ifindex,
            via,
            mac: neighbour.and_then(|n| n.usable_mac()),
        })
    })
}

/// Asks the kernel to resolve the next hop towards `dst` (for when [`next_hop`] gave no MAC):
/// sends one empty UDP datagram to `dst` port 9 (discard) from a fresh, unconnected UDP socket
/// of the caller's namespace (wildcard address, ephemeral port, as an unbound socket's `sendto`
/// gets) and closes it. Sending makes the kernel route it exactly as [`next_hop`] looked up and
/// ARP for the next hop if its entry is missing, failed or stale; poll [`next_hop`] afterwards.
/// Returns immediately (non-blocking send, no waiting for the ARP); failures are only logged,
/// at debug level: the caller's poll notices them as a MAC that does not appear.
///
/// Harmless because: the datagram carries no payload (28 bytes on the wire, once per call);
/// while the ARP runs it waits in the neighbour's pending queue (bounded by `unres_qlen_bytes`)
/// and is dropped if resolution fails; it goes only where tunnel traffic to `dst` goes anyway;
/// port 9 is the discard service, so a peer drops it or at most answers ICMP port unreachable,
/// which an unconnected socket without `IP_RECVERR` ignores (and the socket is gone by then); no
/// local state stays behind beyond the neighbour entry it was meant to create (and a
/// short-lived conntrack entry, if conntrack is loaded).
pub fn trigger_resolution(dst: Ipv4Addr) {
    let sent = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).and_then(|sock| {
        sock.set_nonblocking(true)?;
        sock.send_to(&[], SocketAddrV4::new(dst, DISCARD_PORT))
    });
    if let Err(e) = sent {
        tracing::debug!("next-hop resolution: cannot send the trigger datagram to {dst}: {e}");
    }
}

/// The UDP discard service (RFC 863): whatever arrives there is dropped.
const DISCARD_PORT: u16 = 9;

// ---- create_pod_link steps ----

/// Fails with a conflict if `req.ifname` already exists in the pod namespace.
fn ensure_pod_ifname_free(netns: &File, req: &PodLinkRequest) -> Result<(), NetlinkError> {
    let label = ns::label(req.netns);
    let at = At {
        ifname: req.ifname,
        netns: &label,
    };
    let existing = ns::in_netns(netns, req.netns, || {
        ns::with_handle(&label, |h| async move {
            link::find(&h, req.ifname)
                .await
                .step("look up pod interface", &at)
        })
    })?;
    match existing {
        Some(_) => Err(conflict(req.ifname, &label)),
        None => Ok(()),
    }
}

/// Creates the pair in the caller's namespace and moves the peer into the pod's. Returns the
/// host end's ifindex; deletes the pair again if the move fails.
fn create_and_move(req: &PodLinkRequest, peer: &str, netns: &File) -> Result<u32, NetlinkError> {
    let at = At {
        ifname: req.host_ifname,
        netns: CALLER_NS,
    };
    let ns_fd = netns.as_raw_fd();
    ns::with_handle(CALLER_NS, |h| async move {
        link::add_veth(&h, req.host_ifname, peer)
            .await
            .step("create veth pair", &at)?;
        let host = link::find(&h, req.host_ifname)
            .await
            .step("look up host end", &at);
        let host_index = match host {
            Ok(Some(l)) => l.index,
            Ok(None) => return Err(at.fail("look up host end", enodev())),
            Err(e) => return Err(e),
        };
        if let Err(e) = move_peer(&h, peer, ns_fd, req).await {
            rollback_with(&h, req.host_ifname, host_index).await;
            return Err(e);
        }
        Ok(host_index)
    })
}

async fn move_peer(
    h: &Handle,
    peer: &str,
    ns_fd: i32,
    req: &PodLinkRequest<'_>,
) -> Result<(), NetlinkError> {
    let target = format!("{peer} (-> {})", req.netns.display());
    let at = At {
        ifname: &target,
        netns: CALLER_NS,
    };
    let found = link::find(h, peer).await.step("look up veth peer", &at)?;
    let index = found
        .ok_or_else(|| at.fail("look up veth peer", enodev()))?
        .index;
    link::move_to_netns(h, index, ns_fd)
        .await
        .step("move veth peer into the pod netns", &at)
}

/// Inside the pod namespace: rename, MAC, MTU, checksum offload, lo and link up, address and
/// default route. Returns the pod end's ifindex.
fn configure_pod_end(netns: &File, req: &PodLinkRequest, peer: &str) -> Result<u32, NetlinkError> {
    let label = ns::label(req.netns);
    let label = label.as_str();
    ns::in_netns(netns, req.netns, || {
        ns::with_handle(
            label,
            |h| async move { pod_steps(&h, req, peer, label).await },
        )
    })
}

async fn pod_steps(
    h: &Handle,
    req: &PodLinkRequest<'_>,
    peer: &str,
    label: &str,
) -> Result<u32, NetlinkError> {
    let index = rename_peer(h, req, peer, label).await?;
    let at = At {
        ifname: req.ifname,
        netns: label,
    };
    link::set_mac(h, index, req.pod_mac)
        .await
        .step("set pod MAC", &at)?;
    link::set_mtu(h, index, req.mtu)
        .await
        .step("set pod MTU", &at)?;
    ethtool::set_offload(req.ifname, Offload::TxChecksum, false)
        .step("turn off pod TX checksum offload", &at)?;
    bring_up_lo(h, label).await?;
    link::set_up(h, index)
        .await
        .step("bring up pod interface", &at)?;
    link::add_address(h, index, req.address)
        .await
        .step("add pod address", &at)?;
    link::add_default_route(h, index, req.gateway)
        .await
        .step("add pod default route", &at)?;
    Ok(index)
}

/// Renames the moved peer to `req.ifname`; a name taken meanwhile is a conflict.
async fn rename_peer(
    h: &Handle,
    req: &PodLinkRequest<'_>,
    peer: &str,
    label: &str,
) -> Result<u32, NetlinkError> {
    let at = At {
        ifname: peer,
        netns: label,
    };
    let found = link::find(h, peer).await.step("look up moved peer", &at)?;
    let index = found
        .ok_or_else(|| at.fail("look up moved peer", enodev()))?
        .index;
    match link::rename(h, index, req.ifname).await {
        Ok(()) => Ok(index),
        Err(e) if errno_of(&e) == Some(libc::EEXIST) => Err(conflict(req.ifname, label)),
        Err(e) => Err(at.fail("rename pod interface", e.into_io())),
    }
}

async fn bring_up_lo(h: &Handle, label: &str) -> Result<(), NetlinkError> {
    let at = At {
        ifname: "lo",
        netns: label,
    };
    let lo = link::find(h, "lo").await.step("look up lo", &at)?;
    let lo = lo.ok_or_else(|| at.fail("look up lo", enodev()))?;
    link::set_up(h, lo.index).await.step("bring up lo", &at)
}

/// MTU and up on the host end; returns its MAC.
fn finish_host_end(req: &PodLinkRequest, index: u32) -> Result<[u8; 6], NetlinkError> {
    let at = At {
        ifname: req.host_ifname,
        netns: CALLER_NS,
    };
    ns::with_handle(CALLER_NS, |h| async move {
        link::set_mtu(&h, index, req.mtu)
            .await
            .step("set host end MTU", &at)?;
        link::set_up(&h, index)
            .await
            .step("bring up host end", &at)?;
        let host = link::find(&h, req.host_ifname)
            .await
            .step("read host end MAC", &at)?;
        host.and_then(|l| l.mac)
            .ok_or_else(|| at.fail("read host end MAC", enodev()))
    })
}

/// Best-effort delete of a host end this call created (its peer goes with it).
fn rollback(host_ifname: &str, index: u32) {
    let done = ns::with_handle(CALLER_NS, |h| async move {
        rollback_with(&h, host_ifname, index).await;
        Ok(())
    });
    if let Err(e) = done {
        tracing::warn!("cleanup: could not delete {host_ifname}: {e}");
    }
}

async fn rollback_with(h: &Handle, ifname: &str, index: u32) {
    match link::delete(h, index).await {
        Ok(()) => {}
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => {}
        Err(e) => tracing::warn!("cleanup: could not delete {ifname} (ifindex {index}): {e}"),
    }
}

/// A unique name for the peer while it still lives in the caller's namespace: `vsp` + pid +
/// per-process counter, 15 bytes.
fn temp_peer_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "vsp{:07x}{:05x}",
        std::process::id() & 0xfff_ffff,
        n & 0xf_ffff
    )
}

// ---- check_pod_link steps ----

async fn check_link(h: &Handle, at: &At<'_>, mac: [u8; 6]) -> Result<LinkState, NetlinkError> {
    let found = link::find(h, at.ifname)
        .await
        .step("look up pod interface", at)?;
    let found = found.ok_or_else(|| at.mismatch("does not exist".into()))?;
    if found.mac != Some(mac) {
        let have = found.mac.map_or_else(|| "none".into(), fmt_mac);
        return Err(at.mismatch(format!("MAC is {have}, expected {}", fmt_mac(mac))));
    }
    if !found.up {
        return Err(at.mismatch("is down".into()));
    }
    Ok(found)
}

async fn check_address(
    h: &Handle,
    at: &At<'_>,
    index: u32,
    address: Ipv4Net,
) -> Result<(), NetlinkError> {
    let have = link::ipv4_addresses(h, index)
        .await
        .step("read pod addresses", at)?;
    if have.contains(&address) {
        return Ok(());
    }
    let list: Vec<String> = have.iter().map(Ipv4Net::to_string).collect();
    Err(at.mismatch(format!(
        "address {address} missing (has: {})",
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    )))
}

async fn check_default_route(
    h: &Handle,
    at: &At<'_>,
    index: u32,
    gateway: Ipv4Addr,
) -> Result<(), NetlinkError> {
    let routes = link::main_ipv4_routes(h)
        .await
        .step("read pod routes", at)?;
    let defaults: Vec<_> = routes
        .iter()
        .filter(|r| r.destination.prefix_len() == 0)
        .collect();
    if defaults
        .iter()
        .any(|r| r.gateway == Some(gateway) && r.oif == Some(index))
    {
        return Ok(());
    }
    let list: Vec<String> = defaults
        .iter()
        .map(|r| {
            r.gateway
                .map_or_else(|| "no gateway".into(), |g| format!("via {g}"))
        })
        .collect();
    Err(at.mismatch(format!(
        "no default route via {gateway} on it (default routes: {})",
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    )))
}

// ---- next_hop steps ----

/// The output interface and next hop of the route the kernel picks for `dst`; an unusable or
/// missing route is [`NetlinkError::NoRoute`].
async fn route_next_hop(
    h: &Handle,
    dst: Ipv4Addr,
    at: &At<'_>,
) -> Result<(u32, Ipv4Addr), NetlinkError> {
    let no_route = |reason: String| NetlinkError::NoRoute {
        dst,
        netns: CALLER_NS.into(),
        reason,
    };
    let route = match neigh::route_get(h, dst).await {
        Ok(Some(route)) => route,
        Ok(None) => return Err(no_route("the kernel answered without a route".into())),
        Err(e) => {
            return Err(match errno_of(&e).and_then(neigh::unroutable) {
                Some(reason) => no_route(reason.into()),
                None => at.fail("look up route", e.into_io()),
            })
        }
    };
    route.next_hop(dst).map_err(no_route)
}

// ---- ensure_host_port steps ----

/// Finds both ends (they must be a veth pair of each other) or creates the pair. Returns the
/// kernel end, the switch end and whether this call created them.
async fn find_or_create_host_port(
    h: &Handle,
    req: &HostPortRequest<'_>,
) -> Result<(LinkState, LinkState, bool), NetlinkError> {
    let at = At {
        ifname: req.kernel_ifname,
        netns: CALLER_NS,
    };
    let kernel = link::find(h, req.kernel_ifname)
        .await
        .step("look up host port", &at)?;
    let switch = link::find(h, req.switch_ifname)
        .await
        .step("look up host port", &at)?;
    match (kernel, switch) {
        (Some(k), Some(s)) if is_veth_pair(&k, &s) => Ok((k, s, false)),
        (None, None) => create_host_port(h, req, &at).await,
        (Some(_), _) => Err(host_port_conflict(req.kernel_ifname, req)),
        (None, Some(_)) => Err(host_port_conflict(req.switch_ifname, req)),
    }
}

fn is_veth_pair(a: &LinkState, b: &LinkState) -> bool {
    a.is_veth && b.is_veth && a.peer_index == Some(b.index) && b.peer_index == Some(a.index)
}

fn host_port_conflict(name: &str, req: &HostPortRequest) -> NetlinkError {
    NetlinkError::Conflict {
        ifname: format!(
            "{name} (not a veth pair {}/{})",
            req.kernel_ifname, req.switch_ifname
        ),
        netns: CALLER_NS.into(),
    }
}

async fn create_host_port(
    h: &Handle,
    req: &HostPortRequest<'_>,
    at: &At<'_>,
) -> Result<(LinkState, LinkState, bool), NetlinkError> {
    link::add_veth(h, req.kernel_ifname, req.switch_ifname)
        .await
        .step("create host port veth pair", at)?;
    let kernel = link::find(h, req.kernel_ifname).await;
    let switch = link::find(h, req.switch_ifname).await;
    match (kernel, switch) {
        (Ok(Some(k)), Ok(Some(s))) => Ok((k, s, true)),
        (kernel, _) => {
            if let Ok(Some(k)) = &kernel {
                rollback_with(h, req.kernel_ifname, k.index).await;
            }
            Err(at.fail("look up created host port", enodev()))
        }
    }
}

async fn configure_host_port(
    h: &Handle,
    req: &HostPortRequest<'_>,
    kernel: &LinkState,
    switch: &LinkState,
) -> Result<HostPort, NetlinkError> {
    let k_at = At {
        ifname: req.kernel_ifname,
        netns: CALLER_NS,
    };
    let s_at = At {
        ifname: req.switch_ifname,
        netns: CALLER_NS,
    };
    link::set_mtu(h, switch.index, req.mtu)
        .await
        .step("set MTU", &s_at)?;
    link::set_mtu(h, kernel.index, req.mtu)
        .await
        .step("set MTU", &k_at)?;
    host_port_offloads_off(req.kernel_ifname, &k_at)?;
    link::set_up(h, switch.index)
        .await
        .step("bring up", &s_at)?;
    link::set_up(h, kernel.index)
        .await
        .step("bring up", &k_at)?;
    link::replace_link_route(h, kernel.index, req.route)
        .await
        .step("replace cluster route", &k_at)?;
    Ok(HostPort {
        switch_ifindex: switch.index,
        kernel_mac: kernel.mac.ok_or_else(|| k_at.fail("read MAC", enodev()))?,
        switch_mac: switch.mac.ok_or_else(|| s_at.fail("read MAC", enodev()))?,
    })
}

fn host_port_offloads_off(ifname: &str, at: &At<'_>) -> Result<(), NetlinkError> {
    ethtool::set_offload(ifname, Offload::TxChecksum, false)
        .step("turn off TX checksum offload", at)?;
    ethtool::set_offload(ifname, Offload::Tso, false).step("turn off TSO", at)?;
    ethtool::set_offload(ifname, Offload::Gso, false).step("turn off GSO", at)
}

// ---- validation and small helpers ----

fn validate_pod_request(req: &PodLinkRequest) -> Result<(), NetlinkError> {
    validate_ifname("pod interface", req.ifname)?;
    validate_ifname("host interface", req.host_ifname)?;
    validate_mac(req.pod_mac)?;
    validate_mtu(req.mtu)?;
    let addr = req.address;
    if req.gateway == addr.addr() || !addr.contains(&req.gateway) {
        return Err(NetlinkError::InvalidRequest(format!(
            "gateway {} is not another address inside {addr}",
            req.gateway
        )));
    }
    Ok(())
}

fn validate_host_port_request(req: &HostPortRequest) -> Result<(), NetlinkError> {
    validate_ifname("host port kernel end", req.kernel_ifname)?;
    validate_ifname("host port switch end", req.switch_ifname)?;
    if req.kernel_ifname == req.switch_ifname {
        return Err(NetlinkError::InvalidRequest(format!(
            "host port ends must differ (both {})",
            req.kernel_ifname
        )));
    }
    validate_mtu(req.mtu)
}

/// Linux interface names: 1..=15 bytes, no `/`, `:`, whitespace or NUL, not `.`/`..`.
fn validate_ifname(what: &str, name: &str) -> Result<(), NetlinkError> {
    let bad_char = name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if name.is_empty() || name.len() > 15 || bad_char || name == "." || name == ".." {
        return Err(NetlinkError::InvalidRequest(format!(
            "{what} name {name:?} is not a valid interface name (1-15 bytes, no '/', ':' or spaces)"
        )));
    }
    Ok(())
}

fn validate_mac(mac: [u8; 6]) -> Result<(), NetlinkError> {
    if mac == [0; 6] || mac[0] & 1 == 1 {
        return Err(NetlinkError::InvalidRequest(format!(
            "pod MAC {} is not a unicast address",
            fmt_mac(mac)
        )));
    }
    Ok(())
}

fn validate_mtu(mtu: u16) -> Result<(), NetlinkError> {
    if mtu < 68 {
        return Err(NetlinkError::InvalidRequest(format!(
            "MTU {mtu} is below the IPv4 minimum of 68"
        )));
    }
    Ok(())
}

fn conflict(ifname: &str, netns: &str) -> NetlinkError {
    NetlinkError::Conflict {
        ifname: ifname.to_string(),
        netns: netns.to_string(),
    }
}

fn enodev() -> io::Error {
    io::Error::from_raw_os_error(libc::ENODEV)
}

fn fmt_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_path_names_and_paths() {
        assert_eq!(netns_path("pod1"), PathBuf::from("/var/run/netns/pod1"));
        assert_eq!(
            netns_path("/proc/123/ns/net"),
            PathBuf::from("/proc/123/ns/net")
        );
    }

    #[test]
    fn temp_peer_names_are_unique_and_short() {
        let a = temp_peer_name();
        let b = temp_peer_name();
        assert_ne!(a, b);
        assert!(a.len() <= 15 && validate_ifname("x", &a).is_ok());
    }

    #[test]
    fn ifname_validation() {
        assert!(validate_ifname("x", "eth0").is_ok());
        assert!(validate_ifname("x", "vsw1a2b3c4d5e6f").is_ok());
        for bad in ["", "vsw1a2b3c4d5e6f7", "a/b", "a b", "a:1", ".", ".."] {
            assert!(validate_ifname("x", bad).is_err(), "{bad:?}");
        }
    }
}
