//! The control protocol: requests, responses and their JSON encoding.
//!
//! Contract: a client writes one [`Request`] as a single JSON line (at most [`MAX_REQUEST_BYTES`]
//! bytes) and reads one [`Response`] line. Requests are tagged by `"verb"`; unknown verbs and
//! fields are errors, answered with [`ErrorCode::BadRequest`], never a dropped connection.
//! Addresses travel as strings in their usual text forms (`10.244.1.2/24`,
//! `0a:58:0a:f4:01:02`) so the protocol is readable with `socat` and stable across versions.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The longest request line the daemon reads; longer lines are refused.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitch.sock";

/// What a client asks the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Attach a pod: create its veth, address it, attach the host end (mirrors CNI ADD).
    PortAdd(PortAdd),
    /// Detach a pod and delete its veth (mirrors CNI DEL); unknown ids succeed.
    PortDel {
        /// Container id.
        id: String,
        /// Interface name inside the pod.
        #[serde(default = "default_ifname")]
        ifname: String,
    },
    /// Every attached port.
    PortList {},
    /// Counters per port and per worker.
    Stats {},
    /// The node's switch settings (what a peer needs to reach this node's pods).
    Node {},
    /// Add a tunnel to a peer node (or replace the one with this name).
    TunnelAdd(TunnelSpec),
    /// Remove a tunnel; unknown names succeed.
    TunnelDel {
        /// Tunnel name.
        name: String,
    },
    /// Every tunnel.
    TunnelList {},
    /// Verify a pod attachment (mirrors CNI CHECK): the pod's interface exists, is up and has
    /// its MAC, address and default route via the gateway, and the host end is attached.
    /// Answered with the attachment, or `not_found` / `mismatch`.
    PortCheck {
        /// Container id.
        id: String,
        /// Interface name inside the pod.
        #[serde(default = "default_ifname")]
        ifname: String,
    },
    /// Detach every pod whose (id, ifname) is not in `valid` (mirrors CNI GC); answered with
    /// the attachments it removed.
    Gc {
        /// The attachments to keep.
        valid: Vec<Attachment>,
    },
    /// The FDB: static entries (pod MACs) and entries learned on the host port.
    FdbShow {},
    /// The IPv4 route table the switch routes with.
    RouteShow {},
    /// Copies of up to `count` frames received or transmitted on a port, within `timeout_ms`.
    Capture {
        /// Port name (as in `stats`).
        port: String,
        /// Most frames to capture (1..=10000).
        count: usize,
        /// How long to wait for them, in milliseconds (default 10000).
        #[serde(default = "default_capture_timeout")]
        timeout_ms: u64,
    },
    /// What the pipeline would do with a frame received on a port (nothing is sent).
    Trace {
        /// Port name (as in `stats`).
        port: String,
        /// The frame: hex bytes, or a description like `icmp 10.244.1.2 > 10.244.1.3 ttl 5`
        /// (`icmp|udp|tcp|arp SRC > DST [ttl N] [len N] [port N] [dst-mac MAC]`; the frame comes from
        /// the port's MAC to the gateway MAC unless `dst-mac` is given).
        frame: String,
    },
    /// Apply Kubernetes NetworkPolicy documents (YAML, several per text): each replaces the
    /// policy of its namespace/name. All are validated first; if one is refused, none is applied.
    PolicyApply {
        /// The documents.
        yaml: String,
    },
    /// Every policy, with its hit counts.
    PolicyList {},
    /// Remove a policy; unknown ones succeed with `removed: false`.
    PolicyDelete {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Register (or replace) a pod of another node: its address, namespace and labels.
    EndpointAdd(EndpointSpec),
    /// Forget a registered pod; unknown addresses succeed with `removed: false`.
    EndpointDel {
        /// Its address.
        ip: Ipv4Addr,
    },
    /// Every pod policies can match: local ports and registered endpoints.
    EndpointList {},
    /// Set a namespace's labels (replacing the previous ones).
    NamespaceSet(NamespaceSpec),
    /// Every namespace with labels.
    NamespaceList {},
}

/// A pod policies can match by label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The local port, for pods of this node (set in replies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// A namespace and its labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    /// Name.
    pub name: String,
    /// Labels (`kubernetes.io/metadata.name` is implied).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A policy as `policy list` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The pod selector, in kubectl's syntax (`{}` selects every pod of the namespace).
    pub pod_selector: String,
    /// `Ingress`, `Egress`.
    pub types: Vec<String>,
    /// Number of ingress rules.
    pub ingress_rules: usize,
    /// Number of egress rules.
    pub egress_rules: usize,
    /// Local ports the policy selects.
    pub ports: Vec<String>,
    /// Packets a rule of this policy allowed (first packets of connections, and untracked ones).
    pub allowed: u64,
    /// Packets denied at a port this policy selects.
    pub denied: u64,
}

fn default_capture_timeout() -> u64 {
    10_000
}

/// One FDB entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// MAC address.
    pub mac: String,
    /// Port slot.
    pub port: u16,
    /// Port name.
    pub port_name: String,
    /// `static` (a pod's MAC) or `learned`.
    pub kind: String,
    /// Seconds since a learned entry was last refreshed.
    pub age_secs: Option<u64>,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// Destination prefix.
    pub prefix: Ipv4Net,
    /// Where it goes, for people (`pod vswab12 (port 3)`, `tunnel node2`, `host port`, ...).
    pub next_hop: String,
}

/// One step of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// Stage name.
    pub stage: String,
    /// The decision after the stage.
    pub verdict: String,
}

/// A trace's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The stages in order.
    pub steps: Vec<TraceStep>,
    /// The frame as it would leave (hex), when it would be sent.
    pub output: Option<String>,
    /// The port it would leave on.
    pub output_port: Option<String>,
}

/// One pod attachment's key: the container id and the interface inside the pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// Container id.
    pub id: String,
    /// Interface name inside the pod.
    pub ifname: String,
}

/// The encapsulation of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    /// VXLAN, flannel's wire format.
    Vxlan,
    /// IP in IP, Calico's wire format.
    Ipip,
}

/// A tunnel to a peer node: where its pods are and how to reach them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    /// A name for people (often the peer node's name).
    pub name: String,
    /// Encapsulation.
    pub kind: TunnelKind,
    /// The peer's node IP.
    pub remote: Ipv4Addr,
    /// The peer's pod CIDR.
    pub subnet: Ipv4Net,
    /// VXLAN network identifier (vxlan only; flannel uses 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// The peer's VTEP MAC (vxlan only; flannel publishes it as `VtepMAC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
    /// UDP destination port (vxlan only; flannel uses 8472).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A tunnel as `tunnel list` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// The tunnel, with defaults filled in.
    #[serde(flatten)]
    pub spec: TunnelSpec,
    /// The resolved underlay next hop MAC, if resolved.
    pub next_hop_mac: Option<String>,
}

fn default_ifname() -> String {
    "eth0".into()
}

/// `port add` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAdd {
    /// The pod's network namespace: a name under /var/run/netns or a path.
    pub netns: String,
    /// Container id (CNI_CONTAINERID).
    pub id: String,
    /// Interface name inside the pod.
    #[serde(default = "default_ifname")]
    pub ifname: String,
    /// A requested address (must be free and inside the pod CIDR); allocated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Net>,
    /// A requested MAC for the pod interface; derived from the IP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The pod's Kubernetes namespace (for NetworkPolicy; `default` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's labels (for NetworkPolicy).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A pod attachment, as `port add` and `port list` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Container id.
    pub id: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// The pod's network namespace path.
    pub netns: String,
    /// Host-side veth name (the switch port).
    pub host_ifname: String,
    /// Host-side veth MAC.
    pub host_mac: String,
    /// Switch port slot.
    pub port: u16,
    /// Pod interface MAC.
    pub mac: String,
    /// Pod address with prefix (`10.244.1.2/24`).
    pub ip: Ipv4Net,
    /// The pod's default gateway.
    pub gateway: Ipv4Addr,
    /// Pod interface MTU.
    pub mtu: u16,
    /// Kubernetes namespace.
    #[serde(default)]
    pub namespace: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One port's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Port name (host-side interface).
    pub name: String,
    /// Port slot.
    pub port: u16,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Non-zero drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Non-zero events (ARP replies, echo replies, ...).
    pub events: BTreeMap<String, u64>,
}

/// One worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounters {
    /// Worker index.
    pub worker: usize,
    /// CPU it is pinned to.
    pub cpu: Option<usize>,
    /// Poll rounds that moved frames.
    pub busy_polls: u64,
    /// Poll rounds that found nothing.
    pub idle_polls: u64,
    /// Times the worker slept in poll(2) (adaptive idle).
    pub sleeps: u64,
    /// Nanoseconds the worker slept in poll(2).
    #[serde(default)]
    pub sleep_ns: u64,
    /// Frames of the worker's UMEM out of its free pool.
    pub frames_in_use: u64,
    /// Frames in the worker's UMEM.
    pub frames_total: u64,
    /// Connections the worker tracks.
    #[serde(default)]
    pub conntrack_entries: u64,
}

/// One policy's hit counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounters {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Packets a rule of the policy allowed.
    pub allowed: u64,
    /// Packets denied at ports it selects.
    pub denied: u64,
}

/// `stats` result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Per port.
    pub ports: Vec<PortCounters>,
    /// Per worker.
    pub workers: Vec<WorkerCounters>,
    /// Per NetworkPolicy.
    #[serde(default)]
    pub policies: Vec<PolicyCounters>,
}

/// `node` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node IP on the underlay.
    pub node_ip: Ipv4Addr,
    /// This node's pod subnet.
    pub pod_cidr: Ipv4Net,
    /// The cluster's pod network.
    pub cluster_cidr: Ipv4Net,
    /// Gateway address of the pods.
    pub gateway: Ipv4Addr,
    /// Gateway MAC.
    pub gateway_mac: String,
    /// Pod MTU.
    pub pod_mtu: u16,
    /// Our VTEP MAC (flannel's `VtepMAC`).
    pub vtep_mac: String,
    /// VXLAN network identifier we use.
    pub vni: u32,
    /// VXLAN UDP port we listen on.
    pub vxlan_port: u16,
}

/// Why a request failed, in categories a script can branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be decoded or has invalid values.
    BadRequest,
    /// The request conflicts with existing state (address in use, ...).
    Conflict,
    /// Something the request names does not exist.
    NotFound,
    /// The pod CIDR has no free address.
    Exhausted,
    /// The daemon failed to carry the request out (netlink, AF_XDP, state file).
    Internal,
    /// A pod's plumbing is not as it was set up (`port_check`: interface, address or route).
    Mismatch,
    /// The client may not use the daemon (not root).
    PermissionDenied,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// Success, with the verb's result.
    Ok {
        /// The result.
        result: Reply,
    },
    /// Failure, with one line for people and a code for scripts.
    Error {
        /// Category.
        code: ErrorCode,
        /// One line saying what went wrong and what to do.
        message: String,
    },
}

/// Results by verb.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// `port add`.
    Port(PortInfo),
    /// `port del`: whether something was removed.
    Removed(bool),
    /// `port list`.
    Ports(Vec<PortInfo>),
    /// `stats`.
    Stats(Stats),
    /// `node`.
    Node(NodeInfo),
    /// `tunnel list`, and `tunnel add` (the one tunnel).
    Tunnels(Vec<TunnelInfo>),
    /// `fdb show`.
    Fdb(Vec<FdbEntry>),
    /// `route show`.
    Routes(Vec<RouteEntry>),
    /// `capture`: the frames, hex.
    Frames(Vec<String>),
    /// `trace`.
    Trace(Trace),
    /// `policy list` and `policy apply` (the applied ones).
    Policies(Vec<PolicyInfo>),
    /// `endpoint list`, and `endpoint add` (the one endpoint).
    Endpoints(Vec<EndpointSpec>),
    /// `namespace list`, and `namespace set` (the one namespace).
    Namespaces(Vec<NamespaceSpec>),
}

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json_lines() {
        let r = Request::PortAdd(PortAdd {
            netns: "pod1".into(),
            id: "c1".into(),
            ifname: "eth0".into(),
            ip: Some("10.244.1.5/24".parse().unwrap()),
            mac: None,
            namespace: None,
            labels: BTreeMap::new(),
        });
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.starts_with(r#"{"verb":"port_add","#), "{line}");
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let del: Request = serde_json::from_str(r#"{"verb":"port_del","id":"c1"}"#).unwrap();
        assert_eq!(
            del,
            Request::PortDel {
                id: "c1".into(),
                ifname: "eth0".into()
            }
        );
    }

    #[test]
    fn check_and_gc_requests_have_their_wire_form() {
        let check: Request = serde_json::from_str(r#"{"verb":"port_check","id":"c1"}"#).unwrap();
        assert_eq!(
            check,
            Request::PortCheck {
                id: "c1".into(),
                ifname: "eth0".into()
            }
        );
        let gc = Request::Gc {
            valid: vec![Attachment {
                id: "c1".into(),
                ifname: "eth0".into(),
            }],
        };
        let line = serde_json::to_string(&gc).unwrap();
        assert_eq!(
            line,
            r#"{"verb":"gc","valid":[{"id":"c1","ifname":"eth0"}]}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), gc);
        assert_eq!(
            serde_json::to_string(&ErrorCode::Mismatch).unwrap(),
            r#""mismatch""#
        );
    }

    #[test]
    fn unknown_verbs_and_fields_are_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"verb":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"verb":"port_list","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"verb":"port_del","id":5}"#).is_err());
    }
}
