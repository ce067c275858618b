//! Node plumbing: a pod attachment made real with a veth (netlink), an AF_XDP socket on the
//! worker and our XDP program steering the veth's frames into it.
//!
//! Contract: implements [`PodPlumbing`] for the switch manager. `attach` creates the pod veth
//! and then attaches its host end, undoing the veth if attaching fails; `reattach` attaches an
//! existing host end after a restart; `detach` stops steering, closes the socket (the worker
//! reclaims its frames) and deletes the veth, each step idempotent.

use crate::netlink::{self, PodLinkRequest};
use crate::state::PodRecord;
use crate::switch::PodPlumbing;
use crate::worker::{PortSpec, WorkerHandle};
use crate::xdp::XdpPrograms;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use vswitch::mac::MacAddr;
use vswitch::tables::PortId;

/// Attaches interfaces of this node to the switch.
#[derive(Clone)]
pub struct NodePlumbing {
    /// The worker that owns the ports.
    pub worker: Arc<WorkerHandle>,
    /// Our XDP programs.
    pub xdp: Arc<Mutex<XdpPrograms>>,
    /// The socket of every attached port, by slot (for the kernel's drop counters).
    pub sockets: Arc<Mutex<std::collections::BTreeMap<u16, std::os::fd::RawFd>>>,
}

impl NodePlumbing {
    /// Opens a socket for interface `ifname` as port `id` and steers the interface into it.
    pub fn attach_interface(&self, id: PortId, ifname: &str, ifindex: u32) -> Result<(), String> {
        let spec = PortSpec {
            id,
            ifname: ifname.into(),
            ifindex,
        };
        let fd = self.worker.attach(spec)?;
        let steered = self
            .xdp
            .lock()
            .expect("xdp lock")
            .attach_port(ifindex, id.0, fd);
        if let Err(e) = steered {
            let _ = self.worker.detach(id);
            return Err(e);
        }
        self.record_socket(id, fd);
        Ok(())
    }

    /// Records the socket of port `id` (for the kernel's drop counters).
    pub fn record_socket(&self, id: PortId, fd: std::os::fd::RawFd) {
        self.sockets.lock().expect("sockets lock").insert(id.0, fd);
    }

    /// Stops steering `ifindex` and closes port `id`'s socket.
    pub fn detach_interface(&self, id: PortId, ifindex: Option<u32>) -> Result<(), String> {
        if let Some(ifindex) = ifindex {
            self.xdp
                .lock()
                .expect("xdp lock")
                .detach_port(ifindex, id.0)?;
        }
        self.sockets.lock().expect("sockets lock").remove(&id.0);
        let reclaimed = self.worker.detach(id)?;
        tracing::debug!(port = id.0, reclaimed, "port closed");
        Ok(())
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl PodPlumbing for NodePlumbing {
    fn node_addresses(&self) -> Vec<Ipv4Addr> {
        netlink::local_ipv4_addresses().unwrap_or_else(|e| {
            tracing::warn!("cannot list the node's addresses: {e}");
            Vec::new()
        })
    }

    fn attach(&mut self, pod: &PodRecord, gateway: Ipv4Addr) -> Result<MacAddr, String> {
        let link = netlink::create_pod_link(&PodLinkRequest {
            netns: Path::new(&pod.netns),
            ifname: &pod.ifname,
            host_ifname: &pod.host_ifname,
            pod_mac: pod.mac.0,
            address: pod.ip,
            gateway,
            mtu: pod.mtu,
        })
        .map_err(text)?;
        if let Err(e) = self.attach_interface(PortId(pod.slot), &pod.host_ifname, link.host_ifindex)
        {
            let _ = netlink::delete_link(&pod.host_ifname);
            return Err(e);
        }
        Ok(MacAddr(link.host_mac))
    }

    fn reattach(&mut self, pod: &PodRecord) -> Result<MacAddr, String> {
        let (ifindex, mac) = netlink::link_info(&pod.host_ifname)
            .map_err(text)?
            .ok_or_else(|| format!("its host interface {} is gone", pod.host_ifname))?;
        self.attach_interface(PortId(pod.slot), &pod.host_ifname, ifindex)?;
        Ok(MacAddr(mac))
    }

    fn learned_fdb(&self) -> Result<Vec<crate::worker::LearnedEntry>, String> {
        self.worker.learned_fdb()
    }

    fn capture(&self, tap: crate::worker::Tap) -> Result<(), String> {
        self.worker.capture(tap)
    }

    fn kernel_drops(&self, slot: u16) -> Vec<(&'static str, u64)> {
        let sockets = self.sockets.lock().expect("sockets lock");
        sockets
            .get(&slot)
            .and_then(|fd| crate::afxdp::kernel_drops(*fd))
            .map(|d| d.into_iter().filter(|(_, n)| *n > 0).collect())
            .unwrap_or_default()
    }

    fn detach(&mut self, pod: &PodRecord) -> Result<(), String> {
        let ifindex = netlink::link_info(&pod.host_ifname)
            .map_err(text)?
            .map(|(i, _)| i);
        self.detach_interface(PortId(pod.slot), ifindex)?;
        netlink::delete_link(&pod.host_ifname).map_err(text)?;
        Ok(())
    }
}
