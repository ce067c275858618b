//! Our XDP programs: loaded once, attached to the switch's interfaces, fed with socket fds.
//!
//! Contract: [`XdpPrograms::load`] loads `bpf/port.c` (every frame of a port interface to the
//! port's AF_XDP socket, by ingress ifindex -> slot -> XSKMAP) and `bpf/uplink.c` (only VXLAN
//! and IPIP to the node IP and IPv4 to the pod CIDR to the switch; the rest passes to the
//! kernel). Attachments are bpf_links owned by this object: dropping it, or the process dying,
//! detaches every program this daemon attached, so nothing stays behind on the node.
//! Non-goals: sockets (see `afxdp`).

use crate::config::XdpMode as ConfigMode;
use aya::maps::{Array, HashMap as BpfHashMap, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{include_bytes_aligned, Ebpf};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

static PORT_OBJ: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/port.o"));
static UPLINK_OBJ: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uplink.o"));
const PORT_PROG: &str = "vswitch_port";
const UPLINK_PROG: &str = "vswitch_uplink";

/// Settings the uplink program steers by (layout shared with `bpf/uplink.c`).
#[repr(C)]
#[derive(Clone, Copy)]
struct UplinkCfg {
    node_ip: u32,
    pod_net: u32,
    pod_mask: u32,
    vxlan_port: u16,
    pad: u16,
}

// SAFETY: plain old data with no padding holes (4+4+4+2+2 bytes).
unsafe impl aya::Pod for UplinkCfg {}

/// The loaded programs and their attachments.
pub struct XdpPrograms {
    mode: XdpMode,
    port: Ebpf,
    uplink: Ebpf,
    links: HashMap<u32, (bool, aya::programs::xdp::XdpLinkId)>,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl XdpPrograms {
    /// Loads both programs into the kernel (not attached yet).
    pub fn load(mode: ConfigMode) -> Result<XdpPrograms, String> {
        let mut port = Ebpf::load(PORT_OBJ).map_err(|e| err("loading the port XDP program", e))?;
        let mut uplink =
            Ebpf::load(UPLINK_OBJ).map_err(|e| err("loading the uplink XDP program", e))?;
        for (bpf, name) in [(&mut port, PORT_PROG), (&mut uplink, UPLINK_PROG)] {
            let prog: &mut Xdp = program(bpf, name)?;
            prog.load()
                .map_err(|e| err(&format!("verifying {name}"), e))?;
        }
        let mode = match mode {
            ConfigMode::Native => XdpMode::Driver,
            ConfigMode::Generic => XdpMode::Skb,
        };
        Ok(XdpPrograms {
            mode,
            port,
            uplink,
            links: HashMap::new(),
        })
    }

    /// Steers every frame of `ifindex` to socket `fd` as port `slot`.
    pub fn attach_port(&mut self, ifindex: u32, slot: u16, fd: RawFd) -> Result<(), String> {
        let mut xsks: XskMap<_> = map(&mut self.port, "port_xsks")?;
        xsks.set(u32::from(slot), fd, 0)
            .map_err(|e| err("XSKMAP insert", e))?;
        let mut slots: BpfHashMap<_, u32, u32> = map(&mut self.port, "port_slots")?;
        slots
            .insert(ifindex, u32::from(slot), 0)
            .map_err(|e| err("slot map insert", e))?;
        self.attach(false, ifindex)
    }

    /// Stops steering `ifindex` (port `slot`) and detaches the program from it.
    pub fn detach_port(&mut self, ifindex: u32, slot: u16) -> Result<(), String> {
        let mut slots: BpfHashMap<_, u32, u32> = map(&mut self.port, "port_slots")?;
        let _ = slots.remove(&ifindex);
        let mut xsks: XskMap<_> = map(&mut self.port, "port_xsks")?;
        let _ = xsks.unset(u32::from(slot));
        self.detach(ifindex)
    }

    /// Steers tunnel and pod-CIDR traffic of the uplink `ifindex` to socket `fd`.
    pub fn attach_uplink(
        &mut self,
        ifindex: u32,
        fd: RawFd,
        node_ip: Ipv4Addr,
        pod_cidr: Ipv4Net,
        vxlan_port: u16,
    ) -> Result<(), String> {
        let cfg = UplinkCfg {
            node_ip: u32::from_ne_bytes(node_ip.octets()),
            pod_net: u32::from_ne_bytes(pod_cidr.network().octets()),
            pod_mask: u32::from_ne_bytes(pod_cidr.netmask().octets()),
            vxlan_port: vxlan_port.to_be(),
            pad: 0,
        };
        let mut c: Array<_, UplinkCfg> = map(&mut self.uplink, "uplink_cfg")?;
        c.set(0, cfg, 0).map_err(|e| err("uplink config", e))?;
        let mut xsks: XskMap<_> = map(&mut self.uplink, "uplink_xsks")?;
        xsks.set(0, fd, 0)
            .map_err(|e| err("uplink XSKMAP insert", e))?;
        self.attach(true, ifindex)
    }

    fn attach(&mut self, uplink: bool, ifindex: u32) -> Result<(), String> {
        if self.links.contains_key(&ifindex) {
            return Ok(());
        }
        let mode = self.mode;
        let link = self
            .program(uplink)?.attach_to_if_index(ifindex, mode).map_err(|e| {
            err(&format!("attaching XDP to interface {ifindex} (another XDP program there? try xdp_mode = \"generic\")"), e)
        })?;
        self.links.insert(ifindex, (uplink, link));
        Ok(())
    }

    fn detach(&mut self, ifindex: u32) -> Result<(), String> {
        let Some((uplink, link)) = self.links.remove(&ifindex) else {
            return Ok(());
        };
        self.program(uplink)?
            .detach(link)
            .map_err(|e| err("detaching XDP", e))
    }

    /// The uplink program or the port program.
    fn program(&mut self, uplink: bool) -> Result<&mut Xdp, String> {
        if uplink {
            program(&mut self.uplink, UPLINK_PROG)
        } else {
            program(&mut self.port, PORT_PROG)
        }
    }

    /// Detaches every program this object attached.
    pub fn detach_all(&mut self) {
        let ifindexes: Vec<u32> = self.links.keys().copied().collect();
        for ifindex in ifindexes {
            if let Err(e) = self.detach(ifindex) {
                tracing::warn!(ifindex, "{e}");
            }
        }
    }

    /// Interfaces with one of our programs attached.
    pub fn attached(&self) -> usize {
        self.links.len()
    }
}

fn program<'a>(bpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, String> {
    bpf.program_mut(name)
        .ok_or_else(|| format!("XDP object has no program {name}"))?
        .try_into()
        .map_err(|e| err(name, e))
}

fn map<'a, T>(bpf: &'a mut Ebpf, name: &str) -> Result<T, String>
where
    T: TryFrom<&'a mut aya::maps::Map>,
    T::Error: std::fmt::Display,
{
    bpf.map_mut(name)
        .ok_or_else(|| format!("XDP object has no map {name}"))?
        .try_into()
        .map_err(|e| err(name, e))
}
