//! Frame builders and a small switch (two pods and a host port) for tests and benchmarks.
//!
//! Contract: builders return well-formed frames (valid IPv4 header and ICMP checksums) unless a
//! caller patches them; nothing here is used by the datapath.

use crate::mac::MacAddr;
use crate::tables::{PortId, PortInfo, PortKind, SwitchConfig, Tables};
use std::net::Ipv4Addr;

/// Test topology constant.
pub const GW_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01]);
/// Test topology constant.
pub const POD1_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02]);
/// Test topology constant.
pub const POD2_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x03]);
/// Test topology constant.
pub const HOST_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x00, 0xfe]);
/// Test topology constant.
pub const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
/// Test topology constant.
pub const POD1_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
/// Test topology constant.
pub const POD2_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
/// Test topology constant.
pub const POD1: PortId = PortId(0);
/// Test topology constant.
pub const POD2: PortId = PortId(1);
/// Test topology constant.
pub const HOST: PortId = PortId(2);

/// pod1 (port 0), pod2 (port 1), host (port 2); gateway 10.244.1.1.
pub fn tables() -> Tables {
    let port = |id: PortId, name: &str, kind, mac, ip| PortInfo {
        id,
        name: name.into(),
        kind,
        mac,
        ip,
        mtu: 1500,
    };
    Tables::build(
        SwitchConfig {
            gateway_ip: GW_IP,
            gateway_mac: GW_MAC,
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            node_ip: None,
            vtep_mac: None,
            vxlan_udp_checksum: true,
        },
        vec![
            port(POD1, "pod1", PortKind::Pod, POD1_MAC, Some(POD1_IP)),
            port(POD2, "pod2", PortKind::Pod, POD2_MAC, Some(POD2_IP)),
            port(HOST, "host", PortKind::Host, HOST_MAC, None),
        ],
    )
    .unwrap()
}

/// [`tables`] with `yaml`'s NetworkPolicies compiled in (a new policy generation each call);
/// pod1 and pod2 are in namespace `default`, labelled `app=<apps[0]>` and `app=<apps[1]>`.
pub fn policy_tables(yaml: &str, apps: [&str; 2]) -> Tables {
    use crate::policy::{spec::parse_policies, Endpoint, Inventory, Policy, PolicySet};
    let policies: Vec<Policy> = parse_policies(yaml)
        .expect("valid test policies")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let pod = |ip, app: &str, port| Endpoint {
        ip,
        namespace: "default".into(),
        labels: [("app".to_string(), app.to_string())].into(),
        port: Some(port),
    };
    let inventory = Inventory {
        endpoints: vec![pod(POD1_IP, apps[0], POD1), pod(POD2_IP, apps[1], POD2)],
        ..Inventory::default()
    };
    let mut t = tables();
    t.policy = PolicySet::compile(&policies, &inventory, None);
    t
}

/// An Ethernet + IPv4 frame with a valid header checksum.
pub fn ipv4_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
    ]);
    f.extend_from_slice(&[ttl, protocol, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let c = !vtep::checksum::sum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ICMP echo request payload (type 8) with a valid checksum.
pub fn echo_request(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = !vtep::checksum::sum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A broadcast ARP request from `mac`/`ip` for `target`.
pub fn arp_request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// `frame` with byte `at` replaced by `value`.
pub fn patched(frame: &[u8], at: usize, value: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[at] = value;
    f
}
