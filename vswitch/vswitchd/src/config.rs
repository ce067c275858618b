//! vswitchd's configuration file: parsing, defaults and validation.
//!
//! Contract: [`Config::load`] reads a TOML file shaped like the repository's `config.toml`
//! (which documents every key), applies defaults, and validates every value; any problem comes
//! back as one [`ConfigError`] naming the file, the line and the key, saying what is wrong and
//! what would be accepted. Unknown keys are errors (a typo must not be silently ignored).
//! Non-goals: runtime state (ports, IPAM) lives in the state directory, not here.

use ctl::proto::{TunnelKind, TunnelSpec};
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use toml::Spanned;
use vswitch::mac::MacAddr;
use vswitch::policy::conntrack::ConntrackConfig;

/// A configuration the daemon refuses, with where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// How a worker waits when there is no traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdlePolicy {
    /// Poll without pause (lowest latency, one core at 100%).
    Busy,
    /// Poll while busy; after an idle spell block in poll(2) on the sockets (~0% CPU idle).
    Adaptive,
}

/// How XDP programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver mode (veth supports it; frames are copied into the UMEM).
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

/// Which tunnels this node may use; it sets the pods' MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    /// VXLAN (and IPIP, which fits in the same MTU): pod MTU = node MTU - 50.
    Vxlan,
    /// IPIP only: pod MTU = node MTU - 20.
    Ipip,
    /// No tunnels: pod MTU = node MTU.
    None,
}

impl Encapsulation {
    /// Bytes the largest allowed tunnel adds in front of a pod packet.
    pub fn overhead(self) -> u16 {
        match self {
            Encapsulation::Vxlan => vtep::vxlan::VXLAN_MTU_OVERHEAD as u16,
            Encapsulation::Ipip => vtep::ipip::IPIP_MTU_OVERHEAD as u16,
            Encapsulation::None => 0,
        }
    }

    /// Whether a tunnel of `kind` fits in the MTU this setting gives pods.
    pub fn allows(self, kind: TunnelKind) -> bool {
        matches!(
            (self, kind),
            (Encapsulation::Vxlan, _) | (Encapsulation::Ipip, TunnelKind::Ipip)
        )
    }
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node name (reported to peers).
    pub name: String,
    /// This node's pod subnet; the gateway is its first address.
    pub pod_cidr: Ipv4Net,
    /// The cluster's pod network (routed to the switch by the host port).
    pub cluster_cidr: Ipv4Net,
    /// The node's underlay address.
    pub node_ip: Ipv4Addr,
    /// The uplink NIC, if the switch should attach one.
    pub uplink: Option<String>,
    /// The uplink MTU; pod MTU is derived from it.
    pub mtu: u16,
    /// Tunnels allowed (and so the pod MTU).
    pub encapsulation: Encapsulation,
    /// Whether the outer UDP checksum of VXLAN packets is computed (else 0, which receivers
    /// accept for IPv4).
    pub vxlan_udp_checksum: bool,
}

/// `[datapath]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// Number of worker threads.
    pub workers: usize,
    /// CPU of each worker (same length as `workers`).
    pub cpus: Vec<usize>,
    /// Frames per burst.
    pub batch: usize,
    /// Idle policy.
    pub idle: IdlePolicy,
    /// XDP attach mode.
    pub xdp_mode: XdpMode,
    /// UMEM frames per worker.
    pub frames: usize,
    /// Name of the node-side interface of the host port.
    pub host_port: String,
}

/// `[control]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// Unix socket path.
    pub socket: PathBuf,
    /// Directory of the state file.
    pub state_dir: PathBuf,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
}

/// The whole configuration, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[node]`.
    pub node: NodeConfig,
    /// `[datapath]`.
    pub datapath: DatapathConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// Static tunnels (`[[tunnel]]`).
    pub tunnels: Vec<TunnelSpec>,
    /// `[conntrack]`: connection tracking size and timeouts (used once a policy exists).
    pub conntrack: ConntrackConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Spanned<RawNode>,
    #[serde(default)]
    datapath: Option<Spanned<RawDatapath>>,
    #[serde(default)]
    control: Option<RawControl>,
    #[serde(default)]
    tunnel: Vec<Spanned<TunnelSpec>>,
    #[serde(default)]
    conntrack: Option<RawConntrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    #[serde(default)]
    max_entries: Option<Spanned<usize>>,
    #[serde(default)]
    tcp_established_secs: Option<Spanned<u64>>,
    #[serde(default)]
    tcp_transitory_secs: Option<Spanned<u64>>,
    #[serde(default)]
    udp_secs: Option<Spanned<u64>>,
    #[serde(default)]
    icmp_secs: Option<Spanned<u64>>,
}

/// Most conntrack entries per worker `[conntrack] max_entries` may ask for.
pub const MAX_CONNTRACK_ENTRIES: usize = 1 << 24;
/// Longest conntrack timeout, in seconds (30 days).
pub const MAX_CONNTRACK_SECS: u64 = 30 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    pod_cidr: Spanned<Ipv4Net>,
    cluster_cidr: Spanned<Ipv4Net>,
    node_ip: Ipv4Addr,
    #[serde(default)]
    uplink: Option<String>,
    #[serde(default = "default_mtu")]
    mtu: Spanned<u16>,
    #[serde(default = "default_encapsulation")]
    encapsulation: Encapsulation,
    #[serde(default = "default_true")]
    vxlan_udp_checksum: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    #[serde(default = "one")]
    workers: Spanned<usize>,
    #[serde(default)]
    cpus: Option<Spanned<Vec<usize>>>,
    #[serde(default = "default_batch")]
    batch: Spanned<usize>,
    #[serde(default = "default_idle")]
    idle: IdlePolicy,
    #[serde(default = "default_xdp_mode")]
    xdp_mode: XdpMode,
    #[serde(default = "default_frames")]
    frames: Spanned<usize>,
    #[serde(default = "default_host_port")]
    host_port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default = "default_socket")]
    socket: PathBuf,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    metrics: Option<String>,
}

fn default_mtu() -> Spanned<u16> {
    Spanned::new(0..0, 1500)
}
fn default_true() -> bool {
    true
}
fn default_encapsulation() -> Encapsulation {
    Encapsulation::Vxlan
}
fn one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}
fn default_batch() -> Spanned<usize> {
    Spanned::new(0..0, 64)
}
fn default_idle() -> IdlePolicy {
    IdlePolicy::Adaptive
}
fn default_xdp_mode() -> XdpMode {
    XdpMode::Native
}
fn default_frames() -> Spanned<usize> {
    Spanned::new(0..0, 16384)
}
fn default_host_port() -> Spanned<String> {
    Spanned::new(0..0, "vsw0".into())
}
fn default_socket() -> PathBuf {
    ctl::proto::DEFAULT_SOCKET.into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/vswitch".into()
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            line: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration `text` (from the file `path`, for messages).
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let err = |span: std::ops::Range<usize>, message: String| ConfigError {
            path: path.to_string(),
            line: (span.end > 0).then(|| text[..span.start].matches('\n').count() + 1),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            err(e.span().unwrap_or(0..0), msg)
        })?;
        let node_span = raw.node.span();
        let node = raw.node.into_inner();
        let pod_cidr = *node.pod_cidr.get_ref();
        let cluster_cidr = *node.cluster_cidr.get_ref();
        if pod_cidr.prefix_len() > 30 {
            let msg = format!("node.pod_cidr {pod_cidr} is too small: it needs at least /30");
            return Err(err(node.pod_cidr.span(), msg));
        }
        if !cluster_cidr.contains(&pod_cidr) {
            let msg = format!(
                "node.pod_cidr {pod_cidr} must lie inside node.cluster_cidr {cluster_cidr}"
            );
            return Err(err(node.pod_cidr.span(), msg));
        }
        if pod_cidr != pod_cidr.trunc() {
            let msg = format!(
                "node.pod_cidr {pod_cidr} has host bits set; did you mean {}?",
                pod_cidr.trunc()
            );
            return Err(err(node.pod_cidr.span(), msg));
        }
        let mtu = *node.mtu.get_ref();
        if !(1280..=9000).contains(&mtu) {
            let msg = format!("node.mtu {mtu} is outside 1280..=9000");
            return Err(err(node.mtu.span(), msg));
        }
        if node.name.is_empty() {
            return Err(err(node_span, "node.name must not be empty".into()));
        }
        let dp = raw
            .datapath
            .map(Spanned::into_inner)
            .unwrap_or(RawDatapath {
                workers: one(),
                cpus: None,
                batch: default_batch(),
                idle: default_idle(),
                xdp_mode: default_xdp_mode(),
                frames: default_frames(),
                host_port: default_host_port(),
            });
        let workers = *dp.workers.get_ref();
        if !(1..=64).contains(&workers) {
            return Err(err(
                dp.workers.span(),
                format!("datapath.workers {workers} is outside 1..=64"),
            ));
        }
        let batch = *dp.batch.get_ref();
        if !(1..=vswitch::pipeline::MAX_BATCH).contains(&batch) {
            let msg = format!(
                "datapath.batch {batch} is outside 1..={}",
                vswitch::pipeline::MAX_BATCH
            );
            return Err(err(dp.batch.span(), msg));
        }
        let frames = *dp.frames.get_ref();
        if !(256..=1 << 20).contains(&frames) || !frames.is_power_of_two() {
            let msg = format!("datapath.frames {frames} must be a power of two in 256..=1048576");
            return Err(err(dp.frames.span(), msg));
        }
        let cpus = match dp.cpus {
            Some(c) => {
                let span = c.span();
                let cpus = c.into_inner();
                if cpus.len() != workers {
                    let msg = format!(
                        "datapath.cpus lists {} CPUs for {workers} workers; give one per worker",
                        cpus.len()
                    );
                    return Err(err(span, msg));
                }
                cpus
            }
            None => (0..workers).collect(),
        };
        let host_port = dp.host_port.get_ref().clone();
        if host_port.is_empty() || host_port.len() > 12 {
            let msg = format!("datapath.host_port {host_port:?} must be 1 to 12 characters (\"-sw\" is appended for the switch end)");
            return Err(err(dp.host_port.span(), msg));
        }
        let mut tunnels = Vec::new();
        for t in raw.tunnel {
            let span = t.span();
            let t = t.into_inner();
            check_tunnel(&t, node.encapsulation, pod_cidr, cluster_cidr, node.node_ip)
                .map_err(|m| err(span.clone(), format!("tunnel {:?}: {m}", t.name)))?;
            if tunnels.iter().any(|o: &TunnelSpec| o.name == t.name) {
                return Err(err(span, format!("two tunnels are named {:?}", t.name)));
            }
            tunnels.push(t);
        }
        let mut conntrack = ConntrackConfig::default();
        if let Some(ct) = raw.conntrack {
            if let Some(m) = ct.max_entries {
                let v = *m.get_ref();
                if !(4..=MAX_CONNTRACK_ENTRIES).contains(&v) {
                    let msg =
                        format!("conntrack.max_entries {v} is outside 4..={MAX_CONNTRACK_ENTRIES}");
                    return Err(err(m.span(), msg));
                }
                conntrack.max_entries = v;
            }
            for (name, value, slot) in [
                (
                    "tcp_established_secs",
                    ct.tcp_established_secs,
                    &mut conntrack.tcp_established_secs,
                ),
                (
                    "tcp_transitory_secs",
                    ct.tcp_transitory_secs,
                    &mut conntrack.tcp_transitory_secs,
                ),
                ("udp_secs", ct.udp_secs, &mut conntrack.udp_secs),
                ("icmp_secs", ct.icmp_secs, &mut conntrack.icmp_secs),
            ] {
                let Some(v) = value else { continue };
                let secs = *v.get_ref();
                if !(1..=MAX_CONNTRACK_SECS).contains(&secs) {
                    let msg =
                        format!("conntrack.{name} {secs} is outside 1..={MAX_CONNTRACK_SECS}");
                    return Err(err(v.span(), msg));
                }
                *slot = secs;
            }
        }
        let control = raw.control.unwrap_or(RawControl {
            socket: default_socket(),
            state_dir: default_state_dir(),
            metrics: None,
        });
        let metrics = match control.metrics.as_deref().filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(m.parse::<std::net::SocketAddr>().map_err(|_| ConfigError {
                path: path.to_string(),
                line: None,
                message: format!(
                    "control.metrics {m:?} is not an address:port like \"127.0.0.1:9469\""
                ),
            })?),
        };
        Ok(Config {
            node: NodeConfig {
                name: node.name,
                pod_cidr,
                cluster_cidr,
                node_ip: node.node_ip,
                uplink: node.uplink.filter(|u| !u.is_empty()),
                mtu,
                encapsulation: node.encapsulation,
                vxlan_udp_checksum: node.vxlan_udp_checksum,
            },
            datapath: DatapathConfig {
                workers,
                cpus,
                batch,
                idle: dp.idle,
                xdp_mode: dp.xdp_mode,
                frames,
                host_port,
            },
            control: ControlConfig {
                socket: control.socket,
                state_dir: control.state_dir,
                metrics,
            },
            tunnels,
            conntrack,
        })
    }

    /// The pods' gateway: the first address of the pod CIDR.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        let net = u32::from(self.node.pod_cidr.network());
        Ipv4Addr::from(net + 1)
    }

    /// The gateway MAC: `0a:58` followed by the gateway IP (the Kubernetes bridge plugin's scheme).
    pub fn gateway_mac(&self) -> MacAddr {
        mac_for_ip(self.gateway_ip())
    }

    /// Pod MTU: the node MTU less the largest tunnel overhead allowed.
    pub fn pod_mtu(&self) -> u16 {
        self.node.mtu - self.node.encapsulation.overhead()
    }
}

/// Checks one tunnel against the node's settings; the reason when it does not fit.
pub fn check_tunnel(
    t: &TunnelSpec,
    encapsulation: Encapsulation,
    pod_cidr: Ipv4Net,
    cluster_cidr: Ipv4Net,
    node_ip: Ipv4Addr,
) -> Result<(), String> {
    if t.name.is_empty() || t.name.len() > 64 {
        return Err("name must be 1-64 characters".into());
    }
    if !encapsulation.allows(t.kind) {
        return Err(format!(
            "kind {:?} needs node.encapsulation = \"vxlan\" (pods' MTU must leave room for it)",
            t.kind
        ));
    }
    if !cluster_cidr.contains(&t.subnet)
        || t.subnet.contains(&pod_cidr)
        || pod_cidr.contains(&t.subnet)
    {
        return Err(format!(
            "subnet {} must lie inside cluster_cidr {cluster_cidr} and not overlap pod_cidr {pod_cidr}",
            t.subnet
        ));
    }
    if t.remote == node_ip || t.remote.is_unspecified() || t.remote.is_multicast() {
        return Err(format!(
            "remote {} must be another node's unicast address",
            t.remote
        ));
    }
    match t.kind {
        TunnelKind::Vxlan => {
            let mac = t
                .vtep_mac
                .as_deref()
                .ok_or("a vxlan tunnel needs vtep_mac (the peer's VtepMAC)")?;
            let mac: MacAddr = mac
                .parse()
                .map_err(|e: vswitch::mac::ParseMacError| e.to_string())?;
            if mac.is_multicast() {
                return Err("vtep_mac must be unicast".into());
            }
            if t.vni.is_some_and(|v| v == 0 || v > vtep::vxlan::VNI_MAX) {
                return Err("vni must be 1..=16777215".into());
            }
            if t.port == Some(0) {
                return Err("port must not be 0".into());
            }
        }
        TunnelKind::Ipip => {
            if t.vni.is_some() || t.vtep_mac.is_some() || t.port.is_some() {
                return Err("vni, vtep_mac and port are for vxlan tunnels only".into());
            }
        }
    }
    Ok(())
}

/// The MAC vswitch gives an address: `0a:58` followed by its four bytes (locally administered).
pub fn mac_for_ip(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x0a, 0x58, o[0], o[1], o[2], o[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "node1"
pod_cidr = "10.244.1.0/24"
cluster_cidr = "10.244.0.0/16"
node_ip = "192.168.77.1"
uplink = "eth0"
mtu = 1500

[datapath]
workers = 1
cpus = [1]
batch = 64
idle = "adaptive"
xdp_mode = "native"
frames = 4096

[control]
socket = "/run/vswitch/vswitch.sock"
state_dir = "/var/lib/vswitch"
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(GOOD, "c.toml").unwrap();
        assert_eq!(c.gateway_ip(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(c.gateway_mac().to_string(), "0a:58:0a:f4:01:01");
        assert_eq!(c.datapath.cpus, vec![1]);
        assert_eq!(c.datapath.idle, IdlePolicy::Adaptive);
        assert_eq!(c.node.uplink.as_deref(), Some("eth0"));
    }

    #[test]
    fn the_repository_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config.toml");
        Config::load(Path::new(path)).unwrap();
    }

    fn error_of(edit: (&str, &str)) -> ConfigError {
        Config::parse(&GOOD.replace(edit.0, edit.1), "c.toml").unwrap_err()
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let e = error_of(("idle = \"adaptive\"", "idle = \"lazy\""));
        assert_eq!(e.line, Some(14), "{e}");
        assert!(
            e.message.contains("busy") && e.message.contains("adaptive"),
            "{e}"
        );
        let e = error_of(("cpus = [1]", "cpus = [1, 2]"));
        assert_eq!(e.line, Some(12), "{e}");
        assert!(
            e.to_string()
                .starts_with("c.toml:12: datapath.cpus lists 2 CPUs"),
            "{e}"
        );
        let e = error_of(("pod_cidr = \"10.244.1.0/24\"", "pod_cidr = \"10.9.1.0/24\""));
        assert!(e.message.contains("inside node.cluster_cidr"), "{e}");
        assert_eq!(e.line, Some(4));
        let e = error_of(("mtu = 1500", "mtu = 100000"));
        assert_eq!(e.line, Some(8), "{e}");
        let e = error_of(("frames = 4096", "frames = 4000"));
        assert!(e.message.contains("power of two"), "{e}");
        let e = error_of(("batch = 64", "batchh = 64"));
        assert!(e.message.contains("unknown field"), "{e}");
        let e = error_of(("node_ip = \"192.168.77.1\"", "node_ip = \"192.168.77\""));
        assert_eq!(e.line, Some(6), "{e}");
    }
}
