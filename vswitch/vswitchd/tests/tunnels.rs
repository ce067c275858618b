//! Cross-node pod traffic on real AF_XDP uplinks (root): two vswitch nodes over VXLAN and over
//! IPIP, and a vswitch node beside a node wired exactly as flanneld wires one (kernel `vxlan`
//! device `flannel.1`, VNI 1, port 8472, nolearning, a /32 address, per-peer onlink route,
//! permanent neighbour and FDB entry, a `cni0` bridge with a pod). Every namespace is the
//! test's own (underlay 192.168.77.0/24 on a bridge in an underlay namespace) and is removed
//! afterwards, even on failure. The underlay veths have TX checksum offload off, so that they
//! carry finished checksums as a real wire does (see `Underlay::host`).

mod common;

use common::{addr, cpu_heavy, Lab, Node, Underlay};
use ctl::proto::{PortInfo, Reply, Request, Response, TunnelKind};
use std::time::{Duration, Instant};

/// A vswitch node N on `ul` with one pod: the node, the pod's namespace and its port.
fn node_with_pod<'a>(ul: &Underlay<'a>, index: u8) -> (Node<'a>, String, PortInfo) {
    let node = ul.vswitch_node(index);
    let pod_ns = ul.lab.netns(&format!("pod{index}"));
    let pod = node.port_add(&pod_ns, &format!("{}-pod{index}", ul.lab.id));
    (node, pod_ns, pod)
}

fn vtep_mac(node: &Node) -> String {
    match node.call(&Request::Node {}) {
        Response::Ok {
            result: Reply::Node(n),
        } => n.vtep_mac,
        other => panic!("node: {other:?}"),
    }
}

/// Ping, a full-MTU ping with DF, and an exact TCP transfer from `from_ns` to `to`.
fn assert_path(lab: &Lab, from_ns: &str, to_ns: &str, to: &str, mtu: u16) {
    lab.assert_ping(from_ns, to);
    let payload = (mtu - 28).to_string();
    let full = lab.ping(from_ns, to, &["-M", "do", "-s", &payload]);
    assert!(
        full.ok() && full.stdout.contains(" 0% packet loss"),
        "{mtu}-byte packets with DF {from_ns} -> {to}: {}",
        full.text()
    );
    let _heavy = cpu_heavy();
    let t = lab.tcp_transfer(to_ns, to, from_ns, 8 << 20);
    assert!(t.intact, "TCP {from_ns} -> {to} arrived intact: {t:?}");
}

/// The drop reasons counted anywhere on `node`, except the pods' own IPv6 and the kernel's
/// drops of frames that found a port's fill ring empty (`xsk_*`, when the worker lacked CPU),
/// which must stay under 5% of the frames the switch received.
fn unexplained_drops(node: &Node) -> Vec<(String, u64)> {
    let stats = node.stats();
    let received: u64 = stats.ports.iter().map(|p| p.rx_packets).sum();
    let drops = stats
        .ports
        .iter()
        .flat_map(|p| p.drops.iter().map(|(r, n)| (r.clone(), *n)));
    let kernel: u64 = drops
        .clone()
        .filter(|(r, _)| r == "xsk_rx_dropped")
        .map(|(_, n)| n)
        .sum();
    assert!(
        kernel * 20 < received,
        "kernel dropped {kernel} of {received} frames"
    );
    drops
        .filter(|(r, _)| r != "ipv6_unsupported" && !r.starts_with("xsk_"))
        .collect()
}

fn event(node: &Node, port: &str, name: &str) -> u64 {
    node.port_stats(port).events.get(name).copied().unwrap_or(0)
}

fn two_vswitch_nodes(kind: TunnelKind) {
    let lab = Lab::new();
    let ul = Underlay::new(&lab);
    let (n1, ns1, p1) = node_with_pod(&ul, 1);
    let (n2, ns2, p2) = node_with_pod(&ul, 2);
    let vxlan = kind == TunnelKind::Vxlan;
    let (m1, m2) = (vtep_mac(&n1), vtep_mac(&n2));
    n1.tunnel_add("n2", kind, 2, vxlan.then_some(m2));
    n2.tunnel_add("n1", kind, 1, vxlan.then_some(m1));
    n1.wait_tunnels_resolved();
    n2.wait_tunnels_resolved();

    assert_eq!(p1.mtu, 1450, "pods leave room for VXLAN");
    assert_path(&lab, &ns1, &ns2, &addr(&p2), p1.mtu);
    assert_path(&lab, &ns2, &ns1, &addr(&p1), p2.mtu);
    {
        let _heavy = cpu_heavy();
        let perf = lab.iperf(&ns2, &addr(&p2), &ns1);
        assert!(
            perf.received > 0 && perf.received <= perf.sent,
            "iperf3 across the tunnel: {perf:?}"
        );
    }

    for (node, pod) in [(&n1, &p1), (&n2, &p2)] {
        assert!(event(node, &pod.host_ifname, "tunnel_encapsulated") > 1000);
        assert!(event(node, "eth0", "tunnel_decapsulated") > 1000);
        assert_eq!(unexplained_drops(node), vec![], "{}", node.log());
    }
}

#[test]
fn two_vswitch_nodes_over_vxlan() {
    two_vswitch_nodes(TunnelKind::Vxlan);
}

#[test]
fn two_vswitch_nodes_over_ipip() {
    two_vswitch_nodes(TunnelKind::Ipip);
}

/// Node 3 as flanneld builds it, peered with vswitch node 1.
#[test]
fn interop_with_a_kernel_flannel_node() {
    let lab = Lab::new();
    let ul = Underlay::new(&lab);
    let (n1, ns1, p1) = node_with_pod(&ul, 1);
    let k = ul.host("k3", 3);
    let flannel_mac = "0e:00:00:77:03:03";
    let sh = |args: &[&str]| lab.ip(&k, args);
    sh(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "nolearning",
        "local",
        "192.168.77.3",
        "dev",
        "eth0",
    ]);
    sh(&[
        "link",
        "set",
        "flannel.1",
        "address",
        flannel_mac,
        "mtu",
        "1450",
        "up",
    ]);
    sh(&["addr", "add", "10.244.3.0/32", "dev", "flannel.1"]);
    sh(&["link", "add", "cni0", "type", "bridge"]);
    sh(&[
        "link",
        "set",
        "cni0",
        "address",
        "0a:58:0a:f4:03:01",
        "mtu",
        "1450",
        "up",
    ]);
    sh(&["addr", "add", "10.244.3.1/24", "dev", "cni0"]);
    let out = lab.exec(&k, &["sysctl", "-w", "net.ipv4.ip_forward=1"]);
    assert!(out.ok(), "{}", out.text());
    // The kernel node's pod on cni0.
    let kpod = lab.netns("kpod");
    sh(&[
        "link", "add", "veth3", "type", "veth", "peer", "name", "kp0",
    ]);
    sh(&["link", "set", "kp0", "netns", &kpod]);
    sh(&[
        "link", "set", "veth3", "master", "cni0", "mtu", "1450", "up",
    ]);
    lab.ip(&kpod, &["link", "set", "kp0", "name", "eth0"]);
    lab.ip(&kpod, &["addr", "add", "10.244.3.2/24", "dev", "eth0"]);
    lab.ip(&kpod, &["link", "set", "eth0", "mtu", "1450", "up"]);
    lab.ip(&kpod, &["route", "add", "default", "via", "10.244.3.1"]);
    // flanneld's per-peer entries for vswitch node 1.
    let m1 = vtep_mac(&n1);
    sh(&[
        "route",
        "add",
        "10.244.1.0/24",
        "via",
        "10.244.1.0",
        "dev",
        "flannel.1",
        "onlink",
    ]);
    sh(&[
        "neigh",
        "add",
        "10.244.1.0",
        "lladdr",
        &m1,
        "dev",
        "flannel.1",
        "nud",
        "permanent",
    ]);
    let fdb = lab.exec(
        &k,
        &[
            "bridge",
            "fdb",
            "append",
            &m1,
            "dev",
            "flannel.1",
            "dst",
            "192.168.77.1",
        ],
    );
    assert!(fdb.ok(), "{}", fdb.text());
    // And vswitch's tunnel to it, from the data flannel publishes (VtepMAC, PublicIP, subnet).
    n1.tunnel_add("k3", TunnelKind::Vxlan, 3, Some(flannel_mac.into()));
    n1.wait_tunnels_resolved();

    assert_path(&lab, &ns1, &kpod, "10.244.3.2", p1.mtu);
    assert_path(&lab, &kpod, &ns1, &addr(&p1), 1450);
    assert!(event(&n1, "eth0", "tunnel_decapsulated") > 1000);
    assert_eq!(unexplained_drops(&n1), vec![], "{}", n1.log());
}

/// IPIP frames captured on the underlay decode in tshark as IPv4-in-IPv4 with the node IPs
/// outside and the pod IPs inside.
#[test]
fn ipip_frames_decode_in_tshark() {
    let lab = Lab::new();
    let ul = Underlay::new(&lab);
    let (n1, ns1, p1) = node_with_pod(&ul, 1);
    let (n2, _ns2, p2) = node_with_pod(&ul, 2);
    n1.tunnel_add("n2", TunnelKind::Ipip, 2, None);
    n2.tunnel_add("n1", TunnelKind::Ipip, 1, None);
    n1.wait_tunnels_resolved();
    n2.wait_tunnels_resolved();
    let pcap = lab.dir.join("underlay.pcap");
    let pcap_s = pcap.display().to_string();
    let dump = lab.spawn(
        &ul.ns,
        &[
            "tcpdump",
            "-i",
            "u1",
            "-U",
            "-c",
            "6",
            "-w",
            &pcap_s,
            "ip proto 4",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    lab.assert_ping(&ns1, &addr(&p2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(&pcap).map_or(0, |m| m.len()) < 24 + 6 * 16 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = dump;
    let out = lab.exec(
        &ul.ns,
        &[
            "tshark",
            "-r",
            &pcap_s,
            "-Y",
            "ip.proto == 4",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "icmp.type",
        ],
    );
    assert!(out.ok(), "{}", out.text());
    let (a1, a2) = (addr(&p1), addr(&p2));
    let request = format!("192.168.77.1,{a1}\t192.168.77.2,{a2}\t8");
    let reply = format!("192.168.77.2,{a2}\t192.168.77.1,{a1}\t0");
    assert!(out.stdout.contains(&request), "{}", out.stdout);
    assert!(out.stdout.contains(&reply), "{}", out.stdout);
}
