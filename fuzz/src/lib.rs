//! Shared pieces of the fuzz targets: the switches the pipeline targets run, and the record
//! format of their inputs.
//!
//! Contract: [`Topology`] builds the table snapshots once (they are immutable and shared by every
//! iteration; each iteration gets a fresh pipeline, arena and ports, so runs stay independent).
//! [`records`] splits a fuzz input into frames with their input port, batching and time step;
//! `fuzz/gen_seeds.py` writes the same format from the pcap cases.

use std::net::Ipv4Addr;
use std::sync::LazyLock;
use vswitch::mac::MacAddr;
use vswitch::policy::spec::parse_policies;
use vswitch::policy::{Endpoint, Inventory, Policy, PolicySet};
use vswitch::tables::{PortId, PortInfo, PortKind, SwitchConfig, Tables, TunnelEntry};
use vtep::table::Tunnel;

/// Gateway of the tunnel topology (and of `vswitch::testing::tables()`).
pub const GW_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01]);
/// Our VTEP MAC in the tunnel topology.
pub const VTEP_MAC: MacAddr = MacAddr([0x0e, 0, 0, 0, 0, 0x01]);
/// Our node IP in the tunnel topology.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

/// NetworkPolicy of the `policy` topologies: default-deny ingress for every pod, db (pod1)
/// accepts anything from frontend pods (local or remote) and TCP 5432-5440 / UDP 53 from the
/// cluster except node3's subnet; web (pod2) may only send to the cluster and to DNS on the
/// host network. It mirrors `tests/pcap/policy_tunnel_ingress` plus egress, ports and ipBlocks.
pub const POLICIES: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-frontend, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: frontend}}
  - from:
    - ipBlock: {cidr: 10.244.0.0/16, except: [10.244.3.0/24]}
    ports:
    - {protocol: TCP, port: 5432, endPort: 5440}
    - {protocol: UDP, port: 53}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.244.0.0/16}
  - to:
    - namespaceSelector: {matchLabels: {team: infra}}
    - ipBlock: {cidr: 192.168.1.0/24}
    ports:
    - {protocol: UDP, port: 53}
";

/// Which switch a pipeline input runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `vswitch::testing::tables()`: pod1, pod2, host; no tunnels, no policy.
    Plain,
    /// pod1, pod2, host, uplink, and a pod port (pod3) this worker does not have; VXLAN to
    /// node2, IPIP to node3, VXLAN to node4 unresolved.
    Tunnels,
    /// [`Mode::Tunnels`] with [`POLICIES`] in force.
    Policy,
    /// [`Mode::Policy`], switching every 8 frames to a generation without the UDP 53 rules and
    /// back (established connections are judged again).
    PolicyChanges,
}

impl Mode {
    /// The mode a selector byte picks.
    pub fn from_byte(b: u8) -> Mode {
        match b % 4 {
            0 => Mode::Plain,
            1 => Mode::Tunnels,
            2 => Mode::Policy,
            _ => Mode::PolicyChanges,
        }
    }

    /// The table generations to cycle through, and after how many frames to switch.
    pub fn tables(self) -> (&'static [Tables], usize) {
        match self {
            Mode::Plain => (&PLAIN[..], usize::MAX),
            Mode::Tunnels => (&TUNNELS[..], usize::MAX),
            Mode::Policy => (&POLICY[..1], usize::MAX),
            Mode::PolicyChanges => (&POLICY[..], 8),
        }
    }

    /// Port slots frames can arrive on (every slot this worker has).
    pub fn input_ports(self) -> u16 {
        match self {
            Mode::Plain => 3,
            _ => 4,
        }
    }

    /// Port slots in the tables (the last one of the tunnel topologies has no port object).
    pub fn table_ports(self) -> u16 {
        match self {
            Mode::Plain => 3,
            _ => 5,
        }
    }
}

static PLAIN: LazyLock<[Tables; 1]> = LazyLock::new(|| [vswitch::testing::tables()]);
static TUNNELS: LazyLock<[Tables; 1]> = LazyLock::new(|| [tunnel_tables(None)]);
static POLICY: LazyLock<[Tables; 2]> = LazyLock::new(|| {
    let no_dns = POLICIES.replace("    - {protocol: UDP, port: 53}\n", "");
    assert_ne!(no_dns, POLICIES);
    [tunnel_tables(Some(POLICIES)), tunnel_tables(Some(&no_dns))]
});

fn mac(s: &str) -> MacAddr {
    s.parse().expect("valid MAC")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("valid address")
}

/// The tunnel topology, with `policy` (YAML) compiled in when given.
pub fn tunnel_tables(policy: Option<&str>) -> Tables {
    let port = |id: u16, name: &str, kind, mac, ip, mtu| PortInfo {
        id: PortId(id),
        name: name.into(),
        kind,
        mac,
        ip,
        mtu,
    };
    let ports = vec![
        port(
            0,
            "pod1",
            PortKind::Pod,
            self::mac("0a:58:0a:f4:01:02"),
            Some(ip("10.244.1.2")),
            1450,
        ),
        port(
            1,
            "pod2",
            PortKind::Pod,
            self::mac("0a:58:0a:f4:01:03"),
            Some(ip("10.244.1.3")),
            1450,
        ),
        port(
            2,
            "host",
            PortKind::Host,
            self::mac("0a:58:0a:f4:00:fe"),
            None,
            1500,
        ),
        port(
            3,
            "uplink",
            PortKind::Uplink,
            self::mac("02:00:00:00:77:01"),
            None,
            1500,
        ),
        port(
            4,
            "pod3",
            PortKind::Pod,
            self::mac("0a:58:0a:f4:01:04"),
            Some(ip("10.244.1.4")),
            1450,
        ),
    ];
    let tunnels = vec![
        TunnelEntry {
            tunnel: Tunnel::vxlan(
                "node2",
                ip("192.168.77.2"),
                "10.244.2.0/24".parse().unwrap(),
                [0x0e, 0, 0, 0, 0, 0x02],
            ),
            next_hop_mac: Some(mac("02:00:00:00:77:02")),
        },
        TunnelEntry {
            tunnel: Tunnel::ipip(
                "node3",
                ip("192.168.77.3"),
                "10.244.3.0/24".parse().unwrap(),
            ),
            next_hop_mac: Some(mac("02:00:00:00:77:03")),
        },
        TunnelEntry {
            tunnel: Tunnel::vxlan(
                "node4",
                ip("192.168.77.4"),
                "10.244.4.0/24".parse().unwrap(),
                [0x0e, 0, 0, 0, 0, 0x04],
            ),
            next_hop_mac: None,
        },
    ];
    let config = SwitchConfig {
        gateway_ip: ip("10.244.1.1"),
        gateway_mac: GW_MAC,
        pod_cidr: "10.244.1.0/24".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_ip: Some(NODE_IP),
        vtep_mac: Some(VTEP_MAC),
        vxlan_udp_checksum: true,
    };
    let mut tables = Tables::build_with_tunnels(config, ports, tunnels).expect("valid topology");
    if let Some(yaml) = policy {
        let policies: Vec<Policy> = parse_policies(yaml)
            .expect("valid policies")
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let ep = |ip_: &str, ns: &str, app: &str, port: Option<u16>| Endpoint {
            ip: ip(ip_),
            namespace: ns.into(),
            labels: [("app".to_string(), app.to_string())].into(),
            port: port.map(PortId),
        };
        let inventory = Inventory {
            namespaces: [(
                "kube-system".to_string(),
                [("team".to_string(), "infra".to_string())].into(),
            )]
            .into(),
            endpoints: vec![
                ep("10.244.1.2", "default", "db", Some(0)),
                ep("10.244.1.3", "default", "web", Some(1)),
                ep("10.244.1.4", "default", "frontend", Some(4)),
                ep("10.244.2.5", "default", "frontend", None),
                ep("10.244.2.6", "default", "batch", None),
                ep("10.244.3.5", "default", "frontend", None),
                ep("10.244.2.53", "kube-system", "dns", None),
            ],
        };
        tables.policy = PolicySet::compile(&policies, &inventory, None);
        tables.node_addresses = vec![ip("192.168.1.10")];
    }
    tables
}

/// One frame of a pipeline input.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Input port slot (already reduced modulo the mode's input ports).
    pub port: u16,
    /// Whether it joins the previous frame's batch (only when on the same port).
    pub same_batch: bool,
    /// Nanoseconds between the previous batch and this one (when it starts a batch).
    pub step_ns: u64,
    /// The frame.
    pub frame: &'a [u8],
}

/// Time steps a record can ask for: nothing, 1 ms, 100 ms, 1 s, 3 s, 30 s, 121 s (past the
/// default UDP and TCP transitory timeouts), 301 s (past FDB aging).
pub const STEPS_NS: [u64; 8] = [
    0,
    1_000_000,
    100_000_000,
    1_000_000_000,
    3_000_000_000,
    30_000_000_000,
    121_000_000_000,
    301_000_000_000,
];

/// Splits `data` into records: `[ctl][len u16 big-endian][len bytes]`, repeated; a short last
/// frame takes what is left. `ctl` bits 0-1: port (modulo `ports`), bit 2: same batch as the
/// previous frame, bits 3-5: time step index into [`STEPS_NS`].
pub fn records(mut data: &[u8], ports: u16) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let ctl = data[0];
        let len = usize::from(u16::from_be_bytes([data[1], data[2]]));
        let rest = &data[3..];
        let len = len.min(rest.len());
        out.push(Record {
            port: u16::from(ctl & 3) % ports,
            same_batch: ctl & 4 != 0,
            step_ns: STEPS_NS[usize::from((ctl >> 3) & 7)],
            frame: &rest[..len],
        });
        data = &rest[len..];
    }
    out
}

/// Encodes records (the inverse of [`records`], for seed generators and reproducers).
pub fn encode(records: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ctl, frame) in records {
        out.push(*ctl);
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(frame);
    }
    out
}
