//! Security on real AF_XDP ports: what a hostile pod, a stranger on the underlay or an
//! unprivileged user of the node can do to the switch, and must not be able to.
//!
//! - A pod cannot send as another pod: frames with another source IP or MAC never reach their
//!   destination and are counted (`spoofed_source_ip`, `spoofed_source_mac`).
//! - A pod cannot poison ARP: gratuitous ARP and ARP replies or requests claiming the gateway's
//!   or another pod's address reach neither the other pods nor the node, whose neighbour
//!   tables stay as they were; the attempts are counted.
//! - A pod cannot inject through a tunnel: VXLAN or IPIP it sends to its own node or to a peer
//!   node is never decapsulated as if a peer had sent it.
//! - Tunnel packets from a host of the underlay that is no configured peer (or a peer of
//!   another tunnel kind) are dropped on the uplink (`tunnel_unknown_peer`).
//! - The control socket serves root only: an unprivileged user (an unused uid, switched to
//!   with `setpriv`, no user account created) gets a clear permission error and exit code 3
//!   from `vswitchctl`, a raw connect is refused, and even through a socket file opened up to
//!   everyone the daemon answers that user with a refusal.
//!
//! Every attack is crafted byte by byte in python3 (AF_PACKET, raw and UDP sockets) inside the
//! attacker's namespace, and every "not received" is backed by a positive control: the same
//! path delivers a well-formed frame, seen by the same sniffer. Needs root, `ip`, `ping`,
//! `ethtool`, `sysctl`, `setpriv` (util-linux) and python3; nothing is skipped. Every test
//! builds its own namespaces (prefix `vt<pid>x<n>-`; pods in 10.244.N.0/24, the underlay in
//! 192.168.77.0/24) and removes them when it ends, pass or fail (see `common`).

mod common;

use common::{addr, pods, python, Conf, Lab, Node, Underlay};
use ctl::proto::{NodeInfo, Reply, Request, Response, TunnelKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Packet builders shared by every script: `eth`, `ipv4`, `ip_udp`, `arp`, `vxlan`, `tag`.
const PY_LIB: &str = r#"
import json, os, socket, struct, sys, time

def mac(s):
    return bytes.fromhex(s.replace(':', ''))

def ip(s):
    return socket.inet_aton(s)

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def eth(dst, src, typ, payload):
    return mac(dst) + mac(src) + struct.pack('!H', typ) + payload

def ipv4(src, dst, proto, payload, ttl=64):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 0x1234, 0x4000, ttl, proto,
                    0, ip(src), ip(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + payload

def udp(src, dst, sport, dport, payload):
    n = 8 + len(payload)
    h = struct.pack('!HHHH', sport, dport, n, 0)
    c = csum(ip(src) + ip(dst) + struct.pack('!BBH', 0, 17, n) + h + payload) or 0xffff
    return h[:6] + struct.pack('!H', c) + payload

def ip_udp(src, dst, sport, dport, payload):
    return ipv4(src, dst, 17, udp(src, dst, sport, dport, payload))

def arp(op, sha, spa, tha, tpa):
    return struct.pack('!HHBBH', 1, 0x0800, 6, 4, op) + mac(sha) + ip(spa) + mac(tha) + ip(tpa)

def vxlan(vni, inner):
    return struct.pack('!II', 0x08000000, vni << 8) + inner

def tag(t):
    return b'VSWSEC-' + t.encode() + b'.'

def send_frames(frames, count):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(('eth0', 0))
    for _ in range(count):
        for f in frames:
            s.send(f)
            time.sleep(0.002)
"#;

/// Records every frame received on eth0 that carries a `tag(...)` marker anywhere, and every
/// ARP frame; stops half a second after the first tag `END` (senders repeat it), or after SECS.
/// Touches READY once listening. It also holds UDP port 9999 (where the tagged datagrams go),
/// so that the pod's kernel answers them with no ICMP error (which would travel back through
/// the switch and tunnels, and make the pod ARP for the sender).
const SNIFFER: &str = r#"
ready, secs = sys.argv[1], float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('0.0.0.0', 9999))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(('eth0', 0))
s.settimeout(0.1)
open(ready, 'w').close()
tags, arps = [], []
end = time.monotonic() + secs
while time.monotonic() < end:
    try:
        d, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    if a[2] == socket.PACKET_OUTGOING:
        continue
    if d[12:14] == b'\x08\x06' and len(d) >= 42:
        arps.append({'src': d[6:12].hex(':'), 'op': struct.unpack('!H', d[20:22])[0],
                     'sha': d[22:28].hex(':'), 'spa': socket.inet_ntoa(d[28:32])})
    i = d.find(b'VSWSEC-')
    if i >= 0:
        j = d.find(b'.', i)
        t = d[i + 7:j].decode(errors='replace')
        tags.append(t)
        if t == 'END':
            end = min(end, time.monotonic() + 0.5)
print(json.dumps({'tags': tags, 'arps': arps}))
"#;

/// What a sniffer saw.
#[derive(Debug, Deserialize)]
struct Sniffed {
    tags: Vec<String>,
    arps: Vec<SeenArp>,
}

impl Sniffed {
    /// The tags seen, in order, without the `END` markers.
    fn tags(&self) -> Vec<&str> {
        self.tags
            .iter()
            .map(String::as_str)
            .filter(|t| *t != "END")
            .collect()
    }

    /// Whether the end marker arrived (the path to this sniffer works).
    fn saw_end(&self) -> bool {
        self.tags.iter().any(|t| t == "END")
    }
}

/// An ARP frame a sniffer saw.
#[derive(Debug, Deserialize)]
struct SeenArp {
    /// Ethernet source.
    src: String,
    op: u16,
    /// Sender hardware and protocol address.
    sha: String,
    spa: String,
}

/// Runs `PY_LIB` + `code` with `args` in `ns`; asserts success; stdout.
fn py(lab: &Lab, ns: &str, code: &str, args: &[&str]) -> String {
    let script = format!("{PY_LIB}\n{code}");
    let mut cmd = vec![python(), "-c", &script];
    cmd.extend_from_slice(args);
    let out = lab.exec(ns, &cmd);
    assert!(out.ok(), "python in {ns}: {}\n{code}", out.text());
    out.stdout
}

/// Sends the frames of the python list expression `frames` `count` times from `ns`'s eth0.
fn send_frames(lab: &Lab, ns: &str, frames: &str, count: usize) {
    py(lab, ns, &format!("send_frames({frames}, {count})"), &[]);
}

/// Starts a sniffer in each of `namespaces`, runs `attack` once all listen, and returns what
/// each saw (each stops at a frame tagged `END`, which `attack` must send to each, or after
/// 15 s).
fn sniffing(lab: &Lab, namespaces: &[&str], attack: impl FnOnce()) -> Vec<Sniffed> {
    std::thread::scope(|s| {
        let sniffers: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let ready = lab.dir.join(format!("sniffer-{i}-ready"));
                let _ = std::fs::remove_file(&ready);
                let handle = s.spawn(move || {
                    let ready_arg = ready.to_str().unwrap().to_string();
                    let script = format!("{PY_LIB}\n{SNIFFER}");
                    lab.exec(ns, &[python(), "-c", &script, &ready_arg, "15"])
                });
                (lab.dir.join(format!("sniffer-{i}-ready")), handle)
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        for (ready, _) in &sniffers {
            while !ready.exists() {
                assert!(Instant::now() < deadline, "a sniffer did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        attack();
        sniffers
            .into_iter()
            .zip(namespaces)
            .map(|((_, h), ns)| {
                let out = h.join().unwrap();
                assert!(out.ok(), "sniffer in {ns}: {}", out.text());
                serde_json::from_str(out.stdout.trim())
                    .unwrap_or_else(|e| panic!("sniffer in {ns} ({e}): {}", out.text()))
            })
            .collect()
    })
}

fn node_info(node: &Node) -> NodeInfo {
    match node.call(&Request::Node {}) {
        Response::Ok {
            result: Reply::Node(n),
        } => n,
        other => panic!("node: {other:?}"),
    }
}

/// A counter of port `port`: `drop:<reason>`, `event:<name>`, `rx` or `tx`.
fn counter(node: &Node, port: &str, name: &str) -> u64 {
    let c = node.port_stats(port);
    if let Some(reason) = name.strip_prefix("drop:") {
        c.drops.get(reason).copied().unwrap_or(0)
    } else if let Some(event) = name.strip_prefix("event:") {
        c.events.get(event).copied().unwrap_or(0)
    } else if name == "rx" {
        c.rx_packets
    } else {
        c.tx_packets
    }
}

/// The given counters of `port`, by name.
fn counters(node: &Node, port: &str, names: &[&str]) -> BTreeMap<String, u64> {
    names
        .iter()
        .map(|n| (n.to_string(), counter(node, port, n)))
        .collect()
}

/// How much each counter grew since `before`.
fn grown(node: &Node, port: &str, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    before
        .iter()
        .map(|(n, b)| (n.clone(), counter(node, port, n) - b))
        .collect()
}

/// `ip neigh show dev DEV` in `ns` as address -> lladdr (entries with one).
fn neighbours(lab: &Lab, ns: &str, dev: &str) -> BTreeMap<String, String> {
    lab.ip(ns, &["neigh", "show", "dev", dev])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = f.iter().position(|w| *w == "lladdr")?;
            Some((f[0].to_string(), f.get(at + 1)?.to_string()))
        })
        .collect()
}

/// Pod MAC of a 0a:58 address.
const FAKE_MAC: &str = "0a:58:0a:f4:01:fe";

#[test]
fn pods_cannot_send_as_another_pod() {
    let lab = Lab::new();
    let node = lab.node("node", &Conf::default());
    let pods = pods(&lab, &node, &["a", "v", "w"]);
    let (ns_a, a) = &pods[0];
    let (ns_v, v) = &pods[1];
    let (_, w) = &pods[2];
    let gw_mac = node_info(&node).gateway_mac;
    lab.assert_ping(ns_a, &addr(v));
    let names = ["drop:spoofed_source_ip", "drop:spoofed_source_mac", "rx"];
    let before = counters(&node, &a.host_ifname, &names);
    let udp = |dst_mac: &str, src_mac: &str, src_ip: &str, what: &str| {
        format!(
            "eth('{dst_mac}', '{src_mac}', 0x0800, ip_udp('{src_ip}', '{}', 40000, 9999, tag('{what}')))",
            addr(v)
        )
    };
    // Another pod's IP, to the victim directly and through the gateway; another pod's MAC
    // and IP; a made-up MAC with our own IP; then our own identity, which must pass.
    let spoofed_ip = [
        udp(&v.mac, &a.mac, &addr(w), "ip-as-w"),
        udp(&gw_mac, &a.mac, &addr(w), "ip-as-w-routed"),
        udp(&gw_mac, &a.mac, "10.244.7.7", "ip-foreign"),
    ];
    let spoofed_mac = [
        udp(&v.mac, &w.mac, &addr(w), "mac-and-ip-as-w"),
        udp(&v.mac, FAKE_MAC, &addr(a), "mac-made-up"),
    ];
    const COUNT: usize = 5;
    let seen = sniffing(&lab, &[ns_v], || {
        let all = spoofed_ip.iter().chain(&spoofed_mac).cloned();
        let frames = format!("[{}]", all.collect::<Vec<_>>().join(", "));
        send_frames(&lab, ns_a, &frames, COUNT);
        let legit = udp(&v.mac, &a.mac, &addr(a), "legit");
        let end = udp(&v.mac, &a.mac, &addr(a), "END");
        send_frames(&lab, ns_a, &format!("[{legit}]"), 1);
        send_frames(&lab, ns_a, &format!("[{end}]"), 3);
    });
    let got = grown(&node, &a.host_ifname, &before);
    eprintln!(
        "spoofing from {} ({}, {}): the victim saw {:?}; attacker port counters grew {got:?}",
        a.id, a.ip, a.mac, seen[0].tags
    );
    assert!(seen[0].saw_end(), "{:?}", seen[0]);
    assert_eq!(
        seen[0].tags(),
        ["legit"],
        "only our own identity passes, and it does"
    );
    assert_eq!(
        got["drop:spoofed_source_ip"],
        (COUNT * spoofed_ip.len()) as u64
    );
    assert_eq!(
        got["drop:spoofed_source_mac"],
        (COUNT * spoofed_mac.len()) as u64
    );
    // The victim's socket-level view: nothing from the impersonated pod arrived.
    let v_drops = node.port_stats(&v.host_ifname);
    assert!(
        v_drops.drops.keys().all(|k| !k.starts_with("spoofed")),
        "{v_drops:?}"
    );
}

#[test]
fn pods_cannot_poison_arp() {
    let lab = Lab::new();
    let node = lab.node("node", &Conf::default());
    lab.ip(&node.ns, &["addr", "add", "192.168.77.1/32", "dev", "lo"]);
    let pods = pods(&lab, &node, &["a", "v", "w"]);
    let (ns_a, a) = &pods[0];
    let (ns_v, v) = &pods[1];
    let (_, w) = &pods[2];
    let info = node_info(&node);
    let (gw, gw_mac) = (info.gateway.to_string(), info.gateway_mac.clone());
    // The most gullible neighbours: accept gratuitous ARP even for addresses they do not
    // know yet, on the victim pod and on the node's host port.
    for (ns, dev) in [(ns_v.as_str(), "eth0"), (node.ns.as_str(), "vsw0")] {
        let out = lab.exec(
            ns,
            &["sysctl", "-w", &format!("net.ipv4.conf.{dev}.arp_accept=1")],
        );
        assert!(out.ok(), "{}", out.text());
    }
    // The views to protect: the victim's entries for the gateway and the other pod, the
    // node's entries for the pods.
    lab.assert_ping(ns_v, &gw);
    lab.assert_ping(ns_v, &addr(w));
    lab.assert_ping(&node.ns, &addr(v));
    lab.assert_ping(&node.ns, &addr(w));
    let v_before = neighbours(&lab, ns_v, "eth0");
    let node_before = neighbours(&lab, &node.ns, "vsw0");
    assert_eq!(v_before.get(&gw), Some(&gw_mac), "{v_before:?}");
    assert_eq!(v_before.get(&addr(w)), Some(&w.mac), "{v_before:?}");
    assert_eq!(node_before.get(&addr(v)), Some(&gw_mac), "{node_before:?}");
    let host_mac = lab
        .ip(&node.ns, &["-o", "link", "show", "vsw0"])
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("vsw0's MAC")
        .to_string();

    let bcast = "ff:ff:ff:ff:ff:ff";
    let zero = "00:00:00:00:00:00";
    let frame = |dst: &str, src: &str, arp: String| format!("eth('{dst}', '{src}', 0x0806, {arp})");
    let arp = |op: u8, sha: &str, spa: &str, tha: &str, tpa: &str| {
        format!("arp({op}, '{sha}', '{spa}', '{tha}', '{tpa}')")
    };
    let (am, vm, wm) = (a.mac.as_str(), v.mac.as_str(), w.mac.as_str());
    let (ai, vi, wi) = (addr(a), addr(v), addr(w));
    // Claims to someone else's address, with our MAC: spoofed_source_ip.
    let claim_ip = [
        // gratuitous ARP (request and reply forms) for the gateway
        frame(bcast, am, arp(1, am, &gw, zero, &gw)),
        frame(bcast, am, arp(2, am, &gw, bcast, &gw)),
        // an ARP reply to the victim: "the gateway is at my MAC", "w is at my MAC"
        frame(vm, am, arp(2, am, &gw, vm, &vi)),
        frame(vm, am, arp(2, am, &wi, vm, &vi)),
        // a request to the victim from "w" (a kernel learns the sender of a request for it)
        frame(bcast, am, arp(1, am, &wi, zero, &vi)),
        // a reply to the node's host port: "v is at my MAC"
        frame(&host_mac, am, arp(2, am, &vi, &host_mac, "192.168.77.1")),
    ];
    // Claims with a MAC that is not ours: spoofed_source_mac.
    let claim_mac = [
        frame(vm, am, arp(2, FAKE_MAC, &gw, vm, &vi)),
        frame(bcast, wm, arp(1, wm, &wi, zero, &wi)),
    ];
    // Our own identity: an unsolicited reply is dropped, a gratuitous ARP is consumed; neither
    // is passed on.
    let own_reply = [frame(vm, am, arp(2, am, &ai, vm, &vi))];
    let own_gratuitous = [frame(bcast, am, arp(1, am, &ai, zero, &ai))];
    let names = [
        "drop:spoofed_source_ip",
        "drop:spoofed_source_mac",
        "drop:unexpected_arp_reply",
        "event:gratuitous_arp",
    ];
    let before = counters(&node, &a.host_ifname, &names);
    const COUNT: usize = 5;
    let seen = sniffing(&lab, &[ns_v], || {
        let all: Vec<String> = claim_ip
            .iter()
            .chain(&claim_mac)
            .chain(&own_reply)
            .chain(&own_gratuitous)
            .cloned()
            .collect();
        send_frames(&lab, ns_a, &format!("[{}]", all.join(", ")), COUNT);
        // The path from the attacker to the victim works: this one arrives.
        let end =
            format!("eth('{vm}', '{am}', 0x0800, ip_udp('{ai}', '{vi}', 40000, 9999, tag('END')))");
        send_frames(&lab, ns_a, &format!("[{end}]"), 3);
    });
    let got = grown(&node, &a.host_ifname, &before);
    eprintln!(
        "ARP poisoning from {} ({ai}, {am}): the victim saw ARP {:?}; attacker port counters \
         grew {got:?}",
        a.id, seen[0].arps
    );
    assert!(seen[0].saw_end(), "{:?}", seen[0]);
    let truth: BTreeMap<&str, &str> = [
        (gw.as_str(), gw_mac.as_str()),
        (ai.as_str(), am),
        (vi.as_str(), vm),
        (wi.as_str(), wm),
    ]
    .into_iter()
    .collect();
    for arp in &seen[0].arps {
        assert!(
            arp.src != am && arp.sha != am && arp.sha != FAKE_MAC,
            "an ARP frame of the attacker reached the victim: {arp:?}"
        );
        assert_eq!(
            truth.get(arp.spa.as_str()).copied(),
            Some(arp.sha.as_str()),
            "the victim was told a lie (op {}): {arp:?}",
            arp.op
        );
    }
    assert_eq!(
        got["drop:spoofed_source_ip"],
        (COUNT * claim_ip.len()) as u64
    );
    assert_eq!(
        got["drop:spoofed_source_mac"],
        (COUNT * claim_mac.len()) as u64
    );
    assert_eq!(got["drop:unexpected_arp_reply"], COUNT as u64);
    assert_eq!(got["event:gratuitous_arp"], COUNT as u64);

    // Nobody's view changed.
    let v_after = neighbours(&lab, ns_v, "eth0");
    let node_after = neighbours(&lab, &node.ns, "vsw0");
    for (who, before, after) in [
        ("the victim", &v_before, &v_after),
        ("the node", &node_before, &node_after),
    ] {
        for (ip, mac) in before {
            assert_eq!(
                after.get(ip),
                Some(mac),
                "{who}'s neighbour entry for {ip}: {after:?}"
            );
        }
        assert!(
            after.values().all(|m| m != am && m != FAKE_MAC),
            "{who} learned the attacker's MAC: {after:?}"
        );
    }
    assert!(
        !v_after.contains_key(&ai),
        "the victim learned the attacker from its ARP: {v_after:?}"
    );
    lab.assert_ping(ns_v, &gw);
    lab.assert_ping(ns_v, &addr(w));
    lab.assert_ping(&node.ns, &addr(v));
}

/// `tunnel_decapsulated` summed over every port of `node`.
fn decapsulated(node: &Node) -> u64 {
    node.stats()
        .ports
        .iter()
        .map(|p| p.events.get("tunnel_decapsulated").copied().unwrap_or(0))
        .sum()
}

#[test]
fn pods_cannot_inject_through_tunnels() {
    let lab = Lab::new();
    let ul = Underlay::new(&lab);
    let n1 = ul.vswitch_node(1);
    let n2 = ul.vswitch_node(2);
    // A node forwards what its pods send to the world (and to other nodes).
    let out = lab.exec(&n1.ns, &["sysctl", "-w", "net.ipv4.ip_forward=1"]);
    assert!(out.ok(), "{}", out.text());
    let (i1, i2) = (node_info(&n1), node_info(&n2));
    n1.tunnel_add("n2", TunnelKind::Vxlan, 2, Some(i2.vtep_mac.clone()));
    n2.tunnel_add("n1", TunnelKind::Vxlan, 1, Some(i1.vtep_mac.clone()));
    n1.wait_tunnels_resolved();
    n2.wait_tunnels_resolved();
    let local = pods(&lab, &n1, &["a", "v"]);
    let (ns_a, a) = &local[0];
    let (ns_v, v) = &local[1];
    let ns_r = lab.netns("r");
    let r = n2.port_add(&ns_r, &format!("{}-r", lab.id));
    // The tunnel works both ways.
    lab.assert_ping(&ns_r, &addr(v));
    lab.assert_ping(ns_a, &addr(&r));

    let (ai, vi, ri) = (addr(a), addr(v), addr(&r));
    let (am, gw1) = (a.mac.as_str(), i1.gateway_mac.as_str());
    // Inner packets as a peer would send them: from a pod of the peer's subnet.
    let inner_vx = |to_vtep: &str, from_vtep: &str, dst: &str, what: &str| {
        format!(
            "eth('{to_vtep}', '{from_vtep}', 0x0800, ip_udp('10.244.2.77', '{dst}', 40000, 9999, tag('{what}')))"
        )
    };
    let inner_ip = |src: &str, dst: &str, what: &str| {
        format!("ip_udp('{src}', '{dst}', 40000, 9999, tag('{what}'))")
    };
    // Outer packets from pod a, through its gateway.
    let vx = |outer_src: &str, outer_dst: &str, inner: String| {
        format!(
            "eth('{gw1}', '{am}', 0x0800, ip_udp('{outer_src}', '{outer_dst}', 43210, 8472, vxlan(1, {inner})))"
        )
    };
    let ipip = |outer_src: &str, outer_dst: &str, inner: String| {
        format!("eth('{gw1}', '{am}', 0x0800, ipv4('{outer_src}', '{outer_dst}', 4, {inner}))")
    };
    let (m1, m2) = (i1.vtep_mac.as_str(), i2.vtep_mac.as_str());
    // To our own node, as ourselves: routed to the host port like any packet for the node,
    // where the kernel has no tunnel endpoint; never decapsulated.
    let to_own_node = [
        vx(
            &ai,
            "192.168.77.1",
            inner_vx(m1, m2, &vi, "vxlan-to-own-node"),
        ),
        ipip(
            &ai,
            "192.168.77.1",
            inner_ip("10.244.2.77", &vi, "ipip-to-own-node"),
        ),
    ];
    // As the peer node: spoofed_source_ip at our port.
    let as_peer = [
        vx(
            "192.168.77.2",
            "192.168.77.1",
            inner_vx(m1, m2, &vi, "vxlan-as-peer"),
        ),
        ipip(
            "192.168.77.2",
            "192.168.77.1",
            inner_ip("10.244.2.77", &vi, "ipip-as-peer"),
        ),
    ];
    // To the peer node (forwarded out of the uplink by our node): the peer drops them, we
    // are no peer of it (tunnel_unknown_peer).
    let to_peer_node = [
        vx(
            &ai,
            "192.168.77.2",
            inner_vx(m2, m1, &ri, "vxlan-to-peer-node"),
        ),
        ipip(
            &ai,
            "192.168.77.2",
            inner_ip("10.244.1.77", &ri, "ipip-to-peer-node"),
        ),
    ];
    let a_names = ["drop:spoofed_source_ip", "rx"];
    let a_before = counters(&n1, &a.host_ifname, &a_names);
    let host_before = counters(&n1, "vsw0-sw", &["tx"]);
    let n2_before = counters(&n2, "eth0", &["drop:tunnel_unknown_peer"]);
    let (d1, d2) = (decapsulated(&n1), decapsulated(&n2));
    const COUNT: usize = 5;
    let seen = sniffing(&lab, &[ns_v, &ns_r], || {
        let all: Vec<String> = to_own_node
            .iter()
            .chain(&as_peer)
            .chain(&to_peer_node)
            .cloned()
            .collect();
        send_frames(&lab, ns_a, &format!("[{}]", all.join(", ")), COUNT);
        // The paths work: a's plain packets reach v (same node) and r (through the tunnel).
        let end = |dst: &str, dst_mac: &str| {
            format!("eth('{dst_mac}', '{am}', 0x0800, ip_udp('{ai}', '{dst}', 40000, 9999, tag('END')))")
        };
        let ends = format!("[{}, {}]", end(&vi, &v.mac), end(&ri, gw1));
        send_frames(&lab, ns_a, &ends, 3);
    });
    // The packets to the peer cross the underlay after our node's kernel forwarded them.
    let deadline = Instant::now() + Duration::from_secs(3);
    while counter(&n2, "eth0", "drop:tunnel_unknown_peer") - n2_before["drop:tunnel_unknown_peer"]
        < (COUNT * to_peer_node.len()) as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let a_got = grown(&n1, &a.host_ifname, &a_before);
    let host_got = grown(&n1, "vsw0-sw", &host_before);
    let n2_got = grown(&n2, "eth0", &n2_before);
    let (d1, d2) = (decapsulated(&n1) - d1, decapsulated(&n2) - d2);
    eprintln!(
        "tunnel injection from {} ({ai}): v saw {:?}, r saw {:?}; a's port {a_got:?}, n1's host \
         port {host_got:?}; n2's uplink {n2_got:?}; decapsulated: n1 {d1}, n2 {d2}",
        a.id, seen[0].tags, seen[1].tags
    );
    for (who, s) in [("v (same node)", &seen[0]), ("r (peer node)", &seen[1])] {
        assert!(s.saw_end(), "the plain packets reach {who}: {s:?}");
        assert!(
            s.tags().is_empty(),
            "tunnel packets of a pod reached {who}: {s:?}"
        );
    }
    assert_eq!(d1, 0, "n1 decapsulated a pod's packets");
    assert!(
        (1..=3).contains(&d2),
        "n2 decapsulated only our plain packets to r: {d2}"
    );
    assert_eq!(
        a_got["drop:spoofed_source_ip"],
        (COUNT * as_peer.len()) as u64
    );
    assert!(
        host_got["tx"] >= (COUNT * (to_own_node.len() + to_peer_node.len())) as u64,
        "the tunnel packets to the nodes went to the host stack: {host_got:?}"
    );
    assert_eq!(
        n2_got["drop:tunnel_unknown_peer"],
        (COUNT * to_peer_node.len()) as u64,
        "the peer dropped what our pod sent it as an unknown peer's"
    );
}

#[test]
fn unknown_tunnel_peers_are_dropped_on_the_uplink() {
    let lab = Lab::new();
    let ul = Underlay::new(&lab);
    let n1 = ul.vswitch_node(1);
    // Configured peers: a VXLAN peer at .2 and an IPIP peer at .3 (plain hosts that craft
    // their tunnel packets), and a stranger at .9.
    let vx_peer = ul.host("peer2", 2);
    let ipip_peer = ul.host("peer3", 3);
    let stranger = ul.host("evil", 9);
    let peer_vtep = "0e:00:00:77:02:02";
    n1.tunnel_add("n2", TunnelKind::Vxlan, 2, Some(peer_vtep.into()));
    n1.tunnel_add("n3", TunnelKind::Ipip, 3, None);
    let local = pods(&lab, &n1, &["v"]);
    let (ns_v, v) = &local[0];
    let vi = addr(v);
    let m1 = node_info(&n1).vtep_mac;
    let vxlan_to_v = |what: &str, src: &str| {
        format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             inner = eth('{m1}', '{peer_vtep}', 0x0800, ip_udp('{src}', '{vi}', 40000, 9999, tag('{what}')))\n\
             for i in range(int(sys.argv[1])):\n    s.sendto(vxlan(1, inner), ('192.168.77.1', 8472))\n    time.sleep(0.002)\n"
        )
    };
    let ipip_to_v = |what: &str, src: &str| {
        format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)\n\
             inner = ip_udp('{src}', '{vi}', 40000, 9999, tag('{what}'))\n\
             for i in range(int(sys.argv[1])):\n    s.sendto(inner, ('192.168.77.1', 0))\n    time.sleep(0.002)\n"
        )
    };
    const COUNT: usize = 5;
    let count = COUNT.to_string();
    let names = [
        "drop:tunnel_unknown_peer",
        "event:tunnel_decapsulated",
        "rx",
    ];
    let before = counters(&n1, "eth0", &names);
    let seen = sniffing(&lab, &[ns_v], || {
        // The stranger, as the VXLAN and as the IPIP peer would send it.
        py(
            &lab,
            &stranger,
            &vxlan_to_v("vxlan-stranger", "10.244.2.7"),
            &[&count],
        );
        py(
            &lab,
            &stranger,
            &ipip_to_v("ipip-stranger", "10.244.3.7"),
            &[&count],
        );
        // Each configured peer speaking the other peer's kind is no peer of that kind.
        py(
            &lab,
            &ipip_peer,
            &vxlan_to_v("vxlan-from-ipip-peer", "10.244.3.7"),
            &[&count],
        );
        py(
            &lab,
            &vx_peer,
            &ipip_to_v("ipip-from-vxlan-peer", "10.244.2.7"),
            &[&count],
        );
        // The same packets from the right peers are decapsulated and delivered.
        py(
            &lab,
            &vx_peer,
            &vxlan_to_v("vxlan-peer", "10.244.2.7"),
            &["1"],
        );
        py(
            &lab,
            &ipip_peer,
            &ipip_to_v("ipip-peer", "10.244.3.7"),
            &["1"],
        );
        py(&lab, &vx_peer, &vxlan_to_v("END", "10.244.2.7"), &["3"]);
    });
    let got = grown(&n1, "eth0", &before);
    eprintln!(
        "tunnel packets to 192.168.77.1 from the underlay: v saw {:?}; uplink counters grew \
         {got:?}",
        seen[0].tags
    );
    assert!(seen[0].saw_end(), "{:?}", seen[0]);
    assert_eq!(
        seen[0].tags(),
        ["vxlan-peer", "ipip-peer"],
        "only the configured peers' packets are delivered"
    );
    assert_eq!(got["drop:tunnel_unknown_peer"], (4 * COUNT) as u64);
    assert!(
        (3..=5).contains(&got["event:tunnel_decapsulated"]),
        "{got:?}"
    );
}

/// An unused uid (and gid) to run as: no account, no group, no process.
fn unused_id() -> u32 {
    let taken = |db: &str, id: u32| {
        std::process::Command::new("getent")
            .args([db, &id.to_string()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(true)
    };
    (61_000..62_000)
        .find(|id| !taken("passwd", *id) && !taken("group", *id))
        .expect("an unused uid in 61000..62000")
}

/// The `vswitchctl` under test, copied where any user may run it (the build tree may sit
/// under a directory only root can enter).
fn vswitchctl_for_anyone(lab: &Lab) -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let built = BIN.get_or_init(|| common::build_ctl_binary("vswitchctl"));
    let copy = lab.dir.join("vswitchctl");
    std::fs::copy(built, &copy).expect("copy vswitchctl");
    copy
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Runs `cmd` as `uid` (and gid, no supplementary groups) with `setpriv`; when `uid` is 0,
/// as root.
fn run_as(uid: u32, cmd: &[&str]) -> common::Out {
    let mut c = std::process::Command::new(if uid == 0 { cmd[0] } else { "setpriv" });
    if uid == 0 {
        c.args(&cmd[1..]);
    } else {
        let id = uid.to_string();
        c.args(["--reuid", &id, "--regid", &id, "--clear-groups", "--"])
            .args(cmd);
    }
    let out = c
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    common::Out {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Connects to SOCKET, sends a `node` request and prints the answer line; prints
/// `refused: <error>` and exits 3 when the connection itself is refused.
const RAW_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print('refused:', repr(e))
    sys.exit(3)
s.sendall(sys.argv[2].encode() + b'\n')
print(s.makefile().readline().strip())
"#;

#[test]
fn control_socket_refuses_non_root_users() {
    let lab = Lab::new();
    let node = lab.node("node", &Conf::default());
    let pods = pods(&lab, &node, &["p1"]);
    let (_, p1) = &pods[0];
    let ctl = vswitchctl_for_anyone(&lab);
    let ctl = ctl.to_str().unwrap();
    // Only the socket's own mode guards it: its directories are open to everyone.
    chmod(&lab.dir, 0o755);
    chmod(node.socket.parent().unwrap(), 0o755);
    chmod(Path::new(ctl), 0o755);
    let socket = node.socket.to_str().unwrap();
    let uid = unused_id();
    let node_req = r#"{"verb":"node"}"#;
    let del_req = format!(r#"{{"verb":"port_del","id":"{}"}}"#, p1.id);

    let root = run_as(0, &[ctl, "--socket", socket, "node"]);
    assert!(root.ok(), "root: {}", root.text());

    // The socket file is 0600: the kernel refuses the connection.
    let user = run_as(uid, &[ctl, "--socket", socket, "node"]);
    eprintln!("vswitchctl as uid {uid}: {}", user.text());
    assert_eq!(user.status.code(), Some(3), "{}", user.text());
    assert!(
        user.stderr.contains("Permission denied")
            && user.stderr.contains("root-only: run vswitchctl as root"),
        "a clear permission message: {}",
        user.stderr
    );
    assert_eq!(user.stderr.trim().lines().count(), 1, "{}", user.stderr);
    for req in [node_req, del_req.as_str()] {
        let raw = run_as(uid, &[python(), "-c", RAW_CLIENT, socket, req]);
        eprintln!("raw connect as uid {uid}: {}", raw.text());
        assert_eq!(raw.status.code(), Some(3), "{}", raw.text());
        assert!(raw.stdout.contains("PermissionError"), "{}", raw.text());
    }

    // Even with the file opened to everyone (an operator's mistake), the daemon checks the
    // peer's credentials and serves no one but root.
    chmod(&node.socket, 0o666);
    let raw = run_as(uid, &[python(), "-c", RAW_CLIENT, socket, &del_req]);
    let user = run_as(
        uid,
        &[ctl, "--socket", socket, "port", "del", "--id", &p1.id],
    );
    chmod(&node.socket, 0o600);
    eprintln!(
        "through a 0666 socket as uid {uid}: raw {}; vswitchctl {}",
        raw.text(),
        user.text()
    );
    assert!(raw.ok(), "{}", raw.text());
    let answer: Response =
        serde_json::from_str(raw.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", raw.text()));
    assert!(
        matches!(&answer, Response::Error { code: ctl::proto::ErrorCode::PermissionDenied, message }
            if message.contains("only root may use the vswitch control socket")),
        "{answer:?}"
    );
    assert_eq!(user.status.code(), Some(1), "{}", user.text());
    assert!(
        user.stderr
            .contains("only root may use the vswitch control socket"),
        "{}",
        user.text()
    );
    // Nothing was done for them; root is still served.
    assert_eq!(node.port_list().len(), 1, "the pod is still attached");
    let root = run_as(0, &[ctl, "--socket", socket, "port", "list"]);
    assert!(root.ok() && root.stdout.contains(&p1.id), "{}", root.text());
}
