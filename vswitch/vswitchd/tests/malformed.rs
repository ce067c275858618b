//! The malformed-frame corpora of `tests/malformed/` replayed with tcpreplay onto a real vswitchd.
//!
//! One node (pod CIDR 10.244.1.0/24, node IP 192.168.77.1) with two pods, the host port and an
//! uplink `eth0` whose other end, `ul0`, sits in a peer namespace that plays both tunnel peers
//! (VXLAN 192.168.77.2, IPIP 192.168.77.3: permanent neighbour entries on the node, no address
//! on the peer, so it never talks by itself). `pod.pcap` is replayed from inside pod1's
//! namespace onto its `eth0`, `uplink.pcap` from the peer onto `ul0`; `gen_corpus.py` crafted
//! both, with a manifest stating each frame's fate from the written rules.
//!
//! Nothing else may move while a corpus plays: IPv6 and forwarding are off in every namespace,
//! and the pods' kernels have a blackhole default route and no other route, so they receive (a
//! UDP sink on port 5000 counts datagrams) but never answer anything. The sender's MTU is the
//! receiver's + 4, so its kernel refuses (EMSGSIZE) exactly the frames the veth would drop
//! (longer than MTU + 18): tcpreplay would retry a veth drop (ENOBUFS) forever. Then, per
//! corpus, the test checks:
//!
//! - the sender: tcpreplay sent or failed every frame; exactly the frames the sender's kernel
//!   cannot send (under 14 bytes, over its MTU) failed, and the veth dropped none;
//! - every frame that reached the receiving veth is accounted for: seen by the switch (its
//!   port's `rx_packets`), dropped by the kernel's AF_XDP socket (`xsk_*`), or, on the uplink,
//!   passed to the node's kernel by the uplink XDP program (the rest of the veth's `rx_packets`);
//! - the switch's counters add up: `rx = Σ tx + Σ drops - icmp_errors_sent + gratuitous_arp`
//!   (an ICMP error is both a counted drop and a transmitted frame; a gratuitous ARP is consumed),
//!   with no frame received on any other port meanwhile;
//! - every drop reason, event and per-port transmission matches the manifest;
//! - what the switch transmitted arrived: each destination interface received exactly that many
//!   frames, less those the manifest marks `link_drop` (Ethernet padding kept by the rules makes
//!   them longer than the egress link carries: the switch-side veth's `tx_dropped` counts them),
//!   and each pod's UDP sink the datagrams the manifest names;
//! - the daemon still runs, answers `vswitchctl --json stats`, and no thread of it panicked.
//!
//! A summary (frames tried, sent, kernel drops, forwarded, drops by reason) goes to stderr.
//! Needs root, `ip`, `tcpreplay` and python3. Run with `cargo test -p vswitchd --test malformed`.

mod common;

use common::{build_ctl_binary, python, Conf, Lab, Node};
use ctl::proto::{PortAdd, PortCounters, PortInfo, Reply, Request, Response, Stats};
use ctl::proto::{TunnelKind, TunnelSpec};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The uplink's peer end, in the peer namespace.
const PEER_IF: &str = "ul0";
/// The host port's switch-side and node-side interfaces.
const HOST_PORT: &str = "vsw0-sw";
const HOST_IF: &str = "vsw0";
/// Link-layer bytes a veth lets through beyond its MTU (Ethernet header + one VLAN tag).
const VETH_SLACK: usize = 18;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/malformed")
}

/// `<corpus>.expect.json`, written by `gen_corpus.py`.
#[derive(Debug, Deserialize)]
struct Manifest {
    corpus: String,
    ingress: String,
    frames: usize,
    topology: Topology,
    expect: Vec<Fate>,
}

#[derive(Debug, Deserialize)]
struct Topology {
    gateway_mac: String,
    pod1: PodTopology,
    pod2: PodTopology,
    node_ip: String,
    uplink_mac: String,
    uplink_mtu: usize,
    peer_mac: String,
    vtep_mac: String,
    sink_port: u16,
    tunnels: Vec<TunnelTopology>,
}

#[derive(Debug, Deserialize)]
struct PodTopology {
    ip: String,
    mac: String,
    mtu: usize,
}

#[derive(Debug, Deserialize)]
struct TunnelTopology {
    name: String,
    kind: String,
    remote: String,
    subnet: String,
    vni: Option<u32>,
    vtep_mac: Option<String>,
    port: Option<u16>,
}

/// What the rules say becomes of one frame.
#[derive(Debug, Deserialize)]
struct Fate {
    index: usize,
    len: usize,
    what: String,
    /// The uplink XDP program hands it to the node's kernel.
    #[serde(default)]
    kernel: bool,
    /// The port it (or the switch's answer) leaves on.
    to: Option<String>,
    /// The drop reason counted for it.
    drop: Option<String>,
    /// Events counted for it.
    #[serde(default)]
    events: Vec<String>,
    /// The pod whose UDP sink receives a datagram from it.
    sink: Option<String>,
}

impl Manifest {
    fn load(name: &str) -> (Manifest, Vec<Vec<u8>>) {
        let dir = corpus_dir();
        let path = dir.join(format!("{name}.expect.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let m: Manifest =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        let frames = read_pcap(&dir.join(format!("{name}.pcap")));
        assert_eq!(m.corpus, name);
        assert_eq!(m.frames, m.expect.len(), "{name}: manifest frame count");
        assert_eq!(
            frames.len(),
            m.expect.len(),
            "{name}: pcap and manifest disagree"
        );
        for (i, (f, fate)) in frames.iter().zip(&m.expect).enumerate() {
            assert_eq!((fate.index, fate.len), (i, f.len()), "{name}: frame {i}");
        }
        (m, frames)
    }
}

/// The frames of a classic (microsecond, little-endian) pcap file.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        bytes.len() >= 24 && bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1],
        "{} is not a little-endian classic pcap",
        path.display()
    );
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let caplen = u32_at(at + 8);
        assert_eq!(caplen, u32_at(at + 12), "frame {} is cut", frames.len());
        frames.push(bytes[at + 16..at + 16 + caplen].to_vec());
        at += 16 + caplen;
    }
    frames
}

/// Kernel counters of one interface (`ip -s -j link show`).
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    rx_packets: u64,
    rx_dropped: u64,
    tx_packets: u64,
    tx_dropped: u64,
}

impl Link {
    fn minus(self, before: Link) -> Link {
        Link {
            rx_packets: self.rx_packets - before.rx_packets,
            rx_dropped: self.rx_dropped - before.rx_dropped,
            tx_packets: self.tx_packets - before.tx_packets,
            tx_dropped: self.tx_dropped - before.tx_dropped,
        }
    }
}

fn link_json(lab: &Lab, ns: &str, dev: &str, details: bool) -> serde_json::Value {
    let args: &[&str] = if details {
        &["-d", "-j", "link", "show", "dev", dev]
    } else {
        &["-s", "-j", "link", "show", "dev", dev]
    };
    let out = lab.ip(ns, args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
    v[0].clone()
}

fn link(lab: &Lab, ns: &str, dev: &str) -> Link {
    let v = link_json(lab, ns, dev, false);
    let n = |dir: &str, what: &str| {
        v["stats64"][dir][what]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats64.{dir}.{what} for {dev} in {ns}: {v}"))
    };
    Link {
        rx_packets: n("rx", "packets"),
        rx_dropped: n("rx", "dropped"),
        tx_packets: n("tx", "packets"),
        tx_dropped: n("tx", "dropped"),
    }
}

/// `sysctl -qw` each setting in `ns`.
fn sysctl(lab: &Lab, ns: &str, settings: &[&str]) {
    for s in settings {
        let out = lab.exec(ns, &["sysctl", "-qw", s]);
        assert!(out.ok(), "sysctl {s} in {ns}: {}", out.text());
    }
}

/// No IPv6 chatter; no forwarding (a node that forwarded the corpus's frames for other hosts
/// would answer some of them with ICMP errors through the host port).
const QUIET: &[&str] = &[
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
    "net.ipv4.ip_forward=0",
];

/// Receives UDP datagrams on a port and keeps their count in a file (atomically replaced).
const SINK: &str = "import os, socket, sys\n\
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
    s.bind(('0.0.0.0', int(sys.argv[2])))\n\
    n = 0\n\
    while True:\n    s.recv(65536)\n    n += 1\n\
    \x20   open(sys.argv[1] + '.tmp', 'w').write(str(n))\n\
    \x20   os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n";

/// One pod of the test node.
struct Pod {
    ns: String,
    info: PortInfo,
    sink: PathBuf,
}

impl Pod {
    fn datagrams(&self) -> u64 {
        std::fs::read_to_string(&self.sink)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The node under test: the daemon, its two pods, the uplink's peer.
struct World<'a> {
    lab: &'a Lab,
    node: Node<'a>,
    peer_ns: String,
    pods: BTreeMap<&'static str, Pod>,
}

impl<'a> World<'a> {
    fn new(lab: &'a Lab, topo: &Topology) -> World<'a> {
        let node_ns = lab.netns("node");
        let peer_ns = lab.netns("peer");
        for ns in [&node_ns, &peer_ns] {
            sysctl(lab, ns, QUIET);
        }
        lab.ip(
            &node_ns,
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", PEER_IF,
            ],
        );
        lab.ip(&node_ns, &["link", "set", PEER_IF, "netns", &peer_ns]);
        lab.ip(
            &node_ns,
            &["link", "set", "eth0", "address", &topo.uplink_mac],
        );
        let node_addr = format!("{}/24", topo.node_ip);
        lab.ip(&node_ns, &["addr", "add", &node_addr, "dev", "eth0"]);
        let mtu = topo.uplink_mtu.to_string();
        lab.ip(&node_ns, &["link", "set", "eth0", "mtu", &mtu, "up"]);
        lab.ip(
            &peer_ns,
            &["link", "set", PEER_IF, "address", &topo.peer_mac],
        );
        lab.ip(&peer_ns, &["link", "set", PEER_IF, "up"]);
        for t in &topo.tunnels {
            lab.ip(
                &node_ns,
                &[
                    "neigh",
                    "add",
                    &t.remote,
                    "lladdr",
                    &topo.peer_mac,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            );
        }
        // Our VTEP MAC is generated once and kept in the state file: seed it, so the corpus can
        // address VXLAN frames to it.
        let state = lab.dir.join("node").join("state");
        std::fs::create_dir_all(&state).expect("create the state dir");
        std::fs::write(
            state.join("state.json"),
            format!(
                "{{\"version\": 1, \"pods\": [], \"last_allocated\": null, \"vtep_mac\": \"{}\"}}",
                topo.vtep_mac
            ),
        )
        .expect("seed the state file");
        let conf = Conf {
            uplink: Some("eth0".into()),
            ..Conf::default()
        };
        let node = lab.node_in(&node_ns, "node", &conf);
        let info = match node.call(&Request::Node {}) {
            Response::Ok {
                result: Reply::Node(n),
            } => n,
            other => panic!("node: {other:?}"),
        };
        assert_eq!(info.vtep_mac, topo.vtep_mac, "the seeded VTEP MAC is used");
        assert_eq!(info.gateway_mac, topo.gateway_mac);
        assert_eq!(info.node_ip.to_string(), topo.node_ip);

        let mut pods = BTreeMap::new();
        for (name, p) in [("pod1", &topo.pod1), ("pod2", &topo.pod2)] {
            let ns = lab.netns(name);
            sysctl(lab, &ns, QUIET);
            let r = node.port_add_req(PortAdd {
                netns: ns.clone(),
                id: format!("{}-{name}", lab.id),
                ifname: "eth0".into(),
                ip: Some(format!("{}/24", p.ip).parse().unwrap()),
                mac: None,
                namespace: None,
                labels: Default::default(),
            });
            let Response::Ok {
                result: Reply::Port(info),
            } = r
            else {
                panic!("port add {name}: {r:?}\n{}", node.log())
            };
            assert_eq!(
                (info.mac.as_str(), usize::from(info.mtu)),
                (p.mac.as_str(), p.mtu)
            );
            // Receive everything, answer nothing: no route but a blackhole, no reverse-path
            // filter (which would drop what comes from blackholed sources).
            lab.ip(&ns, &["route", "flush", "table", "main"]);
            lab.ip(&ns, &["route", "add", "blackhole", "default"]);
            sysctl(
                lab,
                &ns,
                &[
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                    "net.ipv4.conf.eth0.rp_filter=0",
                ],
            );
            let sink = lab.dir.join(format!("{name}.datagrams"));
            let port = topo.sink_port.to_string();
            lab.spawn(&ns, &[python(), "-c", SINK, sink.to_str().unwrap(), &port]);
            pods.insert(name, Pod { ns, info, sink });
        }
        for t in &topo.tunnels {
            let kind = match t.kind.as_str() {
                "vxlan" => TunnelKind::Vxlan,
                "ipip" => TunnelKind::Ipip,
                other => panic!("tunnel kind {other}"),
            };
            let spec = TunnelSpec {
                name: t.name.clone(),
                kind,
                remote: t.remote.parse().unwrap(),
                subnet: t.subnet.parse().unwrap(),
                vni: t.vni,
                vtep_mac: t.vtep_mac.clone(),
                port: t.port,
            };
            match node.call(&Request::TunnelAdd(spec)) {
                Response::Ok { .. } => {}
                other => panic!("tunnel add {}: {other:?}", t.name),
            }
        }
        let world = World {
            lab,
            node,
            peer_ns,
            pods,
        };
        world.wait_resolved();
        for (name, pod) in &world.pods {
            world.wait_udp_listening(&pod.ns, topo.sink_port, name);
        }
        world
    }

    fn wait_resolved(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Response::Ok {
                result: Reply::Tunnels(list),
            } = self.node.call(&Request::TunnelList {})
            else {
                panic!("tunnel list failed")
            };
            if list.iter().all(|t| t.next_hop_mac.is_some()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "next hops unresolved after 10 s: {list:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_udp_listening(&self, ns: &str, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let want = format!(":{port}");
        loop {
            let out = self.lab.exec(ns, &["ss", "-Hlun"]);
            if out.stdout.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|local| local.ends_with(&want))
            }) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the UDP sink of {what} does not listen: {}",
                out.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The switch port a manifest port name stands for.
    fn port_name(&self, port: &str) -> String {
        match port {
            "host" => HOST_PORT.into(),
            "uplink" => "eth0".into(),
            pod => self.pods[pod].info.host_ifname.clone(),
        }
    }

    /// The interface that receives what the switch transmits on a manifest port.
    fn destination(&self, port: &str) -> (String, &'static str) {
        match port {
            "host" => (self.node.ns.clone(), HOST_IF),
            "uplink" => (self.peer_ns.clone(), PEER_IF),
            pod => (self.pods[pod].ns.clone(), "eth0"),
        }
    }

    /// The switch-side interface of a manifest port (where a veth drops what it cannot carry).
    fn egress(&self, port: &str) -> (String, String) {
        (self.node.ns.clone(), self.port_name(port))
    }

    /// Where a corpus is replayed from, and the switch-side interface that receives it.
    fn sender(&self, ingress: &str) -> ((String, &'static str), (String, String)) {
        match ingress {
            "uplink" => (
                (self.peer_ns.clone(), PEER_IF),
                (self.node.ns.clone(), "eth0".into()),
            ),
            pod => (
                (self.pods[pod].ns.clone(), "eth0"),
                (
                    self.node.ns.clone(),
                    self.pods[pod].info.host_ifname.clone(),
                ),
            ),
        }
    }

    /// Switch counters, by manifest port name.
    fn counters(&self) -> BTreeMap<&'static str, PortCounters> {
        let stats: Stats = self.node.stats();
        ["pod1", "pod2", "host", "uplink"]
            .into_iter()
            .map(|p| {
                let name = self.port_name(p);
                let c = stats
                    .ports
                    .iter()
                    .find(|c| c.name == name)
                    .cloned()
                    .unwrap_or_else(|| panic!("no port {name} in {stats:#?}"));
                (p, c)
            })
            .collect()
    }

    /// Polls the switch until its received-frame count has not moved for 300 ms (at most 5 s)
    /// and, given `before = (counters, n)`, `port` has received at least `n` frames since
    /// `counters` (frames seen plus kernel socket drops).
    fn settle(
        &self,
        port: &str,
        before: Option<(&PortCounters, u64)>,
    ) -> BTreeMap<&'static str, PortCounters> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let total = |c: &BTreeMap<&'static str, PortCounters>| -> u64 {
            c.values().map(|p| p.rx_packets + xsk(p)).sum()
        };
        let mut last = self.counters();
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.counters();
            if total(&now) != total(&last) {
                since = Instant::now();
            }
            let enough = before.is_none_or(|(b, want)| {
                let c = &now[port];
                c.rx_packets + xsk(c) - b.rx_packets - xsk(b) >= want
            });
            last = now;
            if (enough && since.elapsed() >= Duration::from_millis(300))
                || Instant::now() >= deadline
            {
                return last;
            }
        }
    }
}

/// A switch port's two ends: the switch-side interface it transmits from, and the interface that
/// receives what it transmits.
struct Dest {
    port: &'static str,
    to: (String, &'static str),
    from: (String, String),
}

/// Frames the kernel's AF_XDP socket of a port dropped before the switch saw them.
fn xsk(c: &PortCounters) -> u64 {
    c.drops
        .iter()
        .filter(|(r, _)| r.starts_with("xsk_"))
        .map(|(_, n)| n)
        .sum()
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// What tcpreplay reported.
#[derive(Debug)]
struct Replay {
    successful: u64,
    failed: u64,
}

fn tcpreplay(lab: &Lab, ns: &str, dev: &str, pcap: &Path) -> Replay {
    let out = lab.exec(ns, &["tcpreplay", "-i", dev, pcap.to_str().unwrap()]);
    assert!(out.ok(), "tcpreplay onto {dev} in {ns}: {}", out.text());
    let field = |name: &str| -> u64 {
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '{name}' in tcpreplay's report: {}", out.text()))
    };
    Replay {
        successful: field("Successful packets:"),
        failed: field("Failed packets:"),
    }
}

/// Sets the sender's MTU so that its kernel refuses (EMSGSIZE, which tcpreplay counts as
/// failed) every frame the veth would drop: a veth drops frames longer than the receiving end's
/// MTU + 18, and tcpreplay retries such a drop (ENOBUFS) forever. Returns the MTU.
fn match_sender_mtu(lab: &Lab, ns: &str, dev: &str, rx_mtu: usize) -> usize {
    let mtu = (rx_mtu + VETH_SLACK - 14).to_string();
    lab.ip(ns, &["link", "set", "dev", dev, "mtu", &mtu]);
    link_json(lab, ns, dev, true)["mtu"]
        .as_u64()
        .expect("an MTU") as usize
}

fn is_vlan_tagged(frame: &[u8]) -> bool {
    frame.len() >= 14 && matches!(u16::from_be_bytes([frame[12], frame[13]]), 0x8100 | 0x88a8)
}

/// Counts a name in a map.
fn bump(map: &mut BTreeMap<String, u64>, name: &str) {
    *map.entry(name.to_string()).or_default() += 1;
}

fn show(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replays corpus `name` and checks every frame's fate; panics with every failed check.
fn replay_corpus(name: &str) {
    let (manifest, frames) = Manifest::load(name);
    let lab = Lab::new();
    let mut world = World::new(&lab, &manifest.topology);
    let ingress = manifest.ingress.as_str();
    let ((tx_ns, tx_dev), (rx_ns, rx_dev)) = world.sender(ingress);

    // Link limits: the sender's kernel refuses frames under 14 bytes or over its MTU + 14 (+ 4
    // for a VLAN tag); a veth drops frames over the receiving end's MTU + 18.
    let rx_mtu = link_json(&lab, &rx_ns, &rx_dev, true)["mtu"]
        .as_u64()
        .expect("an MTU") as usize;
    let tx_mtu = match_sender_mtu(&lab, &tx_ns, tx_dev, rx_mtu);
    let sendable =
        |f: &[u8]| f.len() >= 14 && f.len() <= tx_mtu + 14 + if is_vlan_tagged(f) { 4 } else { 0 };
    let carried = |f: &[u8]| sendable(f) && f.len() <= rx_mtu + VETH_SLACK;

    // What must happen, from the manifest, over the frames that can arrive.
    let mut want_drops = BTreeMap::new();
    let mut want_events = BTreeMap::new();
    let mut want_tx = BTreeMap::new();
    let mut want_sink = BTreeMap::new();
    let (mut unsendable, mut too_long, mut want_kernel, mut want_seen) = (0, 0, 0, 0);
    for (f, fate) in frames.iter().zip(&manifest.expect) {
        assert!(
            !sendable(f) || carried(f),
            "frame #{} ({} bytes, {}) leaves the sender but not the veth: tcpreplay would retry \
             it forever",
            fate.index,
            f.len(),
            fate.what
        );
        if !sendable(f) {
            unsendable += 1;
            continue;
        }
        if !carried(f) {
            too_long += 1;
            continue;
        }
        if fate.kernel {
            want_kernel += 1;
            continue;
        }
        want_seen += 1;
        if let Some(r) = &fate.drop {
            bump(&mut want_drops, r);
        }
        for e in &fate.events {
            bump(&mut want_events, e);
        }
        if let Some(to) = &fate.to {
            bump(&mut want_tx, to);
        }
        if let Some(s) = &fate.sink {
            bump(&mut want_sink, s);
        }
    }

    // Quiet, then the baseline.
    let before = world.settle(ingress, None);
    let dests: Vec<Dest> = ["pod1", "pod2", "host", "uplink"]
        .into_iter()
        .map(|port| Dest {
            port,
            to: world.destination(port),
            from: world.egress(port),
        })
        .collect();
    let links = |lab: &Lab| -> Vec<(Link, Link)> {
        dests
            .iter()
            .map(|d| (link(lab, &d.to.0, d.to.1), link(lab, &d.from.0, &d.from.1)))
            .collect()
    };
    let dest_before = links(&lab);
    let tx_before = link(&lab, &tx_ns, tx_dev);
    let rx_before = link(&lab, &rx_ns, &rx_dev);
    let node_eth0_before = link(&lab, &world.node.ns, "eth0");
    let sink_before: BTreeMap<&str, u64> = world
        .pods
        .iter()
        .map(|(n, p)| (*n, p.datagrams()))
        .collect();

    let started = Instant::now();
    let pcap = corpus_dir().join(format!("{name}.pcap"));
    let replay = tcpreplay(&lab, &tx_ns, tx_dev, &pcap);
    let after = world.settle(ingress, Some((&before[ingress], want_seen)));
    // The sinks read on their own schedule.
    let sink_deadline = Instant::now() + Duration::from_secs(3);
    let sinks = loop {
        let now: BTreeMap<&str, u64> = world
            .pods
            .iter()
            .map(|(n, p)| (*n, p.datagrams() - sink_before[n]))
            .collect();
        let done = ["pod1", "pod2"]
            .iter()
            .all(|p| now[p] >= want_sink.get(*p).copied().unwrap_or(0));
        if done || Instant::now() >= sink_deadline {
            std::thread::sleep(Duration::from_millis(100));
            break world
                .pods
                .iter()
                .map(|(n, p)| (*n, p.datagrams() - sink_before[n]))
                .collect::<BTreeMap<&str, u64>>();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let dest_after = links(&lab);
    // Frames the switch transmitted that the egress veth dropped (too long for the link).
    let link_lost: BTreeMap<String, u64> = dests
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let n = dest_after[i].1.minus(dest_before[i].1).tx_dropped;
            (d.port.to_string(), n)
        })
        .filter(|(_, n)| *n != 0)
        .collect();
    let tx_link = link(&lab, &tx_ns, tx_dev).minus(tx_before);
    let rx_link = link(&lab, &rx_ns, &rx_dev).minus(rx_before);
    let node_eth0 = link(&lab, &world.node.ns, "eth0").minus(node_eth0_before);

    // The switch's deltas.
    let mut rx = BTreeMap::new();
    let mut tx = BTreeMap::new();
    let mut kernel_drops = BTreeMap::new();
    let mut drops = BTreeMap::new();
    let mut events = BTreeMap::new();
    for (p, a) in &after {
        let b = &before[p];
        rx.insert(*p, a.rx_packets - b.rx_packets);
        tx.insert(*p, a.tx_packets - b.tx_packets);
        for (r, n) in delta(&a.drops, &b.drops) {
            if r.starts_with("xsk_") {
                *kernel_drops.entry(format!("{p}:{r}")).or_default() += n;
            } else {
                *drops.entry(r).or_default() += n;
            }
        }
        for (e, n) in delta(&a.events, &b.events) {
            *events.entry(e).or_default() += n;
        }
    }
    let in_port = &after[ingress];
    let seen = rx[ingress];
    let xsk_dropped = xsk(in_port) - xsk(&before[ingress]);
    // Drops counted on the ingress port (the receive side) vs transmit-side ones elsewhere.
    let ingress_drops = delta(&in_port.drops, &before[ingress].drops);
    let total_drops: u64 = drops.values().sum();
    let icmp_errors = events.get("icmp_errors_sent").copied().unwrap_or(0);
    let consumed = events.get("gratuitous_arp").copied().unwrap_or(0);
    let transmitted: u64 = tx.values().sum();
    let kernel_passed = if ingress == "uplink" {
        rx_link.rx_packets.saturating_sub(seen + xsk_dropped)
    } else {
        0
    };

    // Summary for the README table.
    let mut summary = format!(
        "malformed corpus `{name}` ({} frames) replayed onto {ingress} in {:.1} s:\n\
         \x20 sender {tx_dev} (MTU {tx_mtu}): sent {}, refused by its kernel {}; receiver {rx_dev} \
         (MTU {rx_mtu}): veth dropped {} (longer than MTU + 18), received {}\n\
         \x20 uplink XDP passed to the node's kernel: {kernel_passed}; AF_XDP socket drops: {}\n\
         \x20 seen by the switch: {seen}; transmitted: {} (dropped by the egress veth: {})\n\
         \x20 dropped by reason ({total_drops}): {}\n\
         \x20 events: {}\n\
         \x20 UDP sink datagrams: {}\n",
        frames.len(),
        took.as_secs_f64(),
        replay.successful,
        replay.failed,
        tx_link.tx_dropped,
        rx_link.rx_packets,
        if kernel_drops.is_empty() {
            "0".into()
        } else {
            show(&kernel_drops)
        },
        tx.iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        show(&link_lost),
        show(&drops),
        show(&events),
        sinks
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );

    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };

    // The daemon survived and answers, also through the CLI.
    let alive = world.node.running();
    check(alive, "vswitchd died".into());
    let log = world.node.log();
    check(
        !log.contains("panicked"),
        format!("a vswitchd thread panicked:\n{log}"),
    );
    if alive {
        let ctl = build_ctl_binary("vswitchctl");
        let sock = world.node.socket.to_str().unwrap().to_string();
        let out = lab.exec(
            &world.node.ns,
            &[ctl.to_str().unwrap(), "--socket", &sock, "--json", "stats"],
        );
        let answered = out.ok()
            && serde_json::from_str::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v["ports"].as_array().is_some_and(|p| p.len() == 4));
        check(answered, format!("vswitchctl --json stats: {}", out.text()));
    }
    summary += &format!(
        "  daemon: {}\n",
        if alive { "running, answers" } else { "DEAD" }
    );
    eprintln!("{summary}");

    // Every frame went out or was refused, and the link limits explain every loss.
    check(
        replay.successful + replay.failed == frames.len() as u64,
        format!("tcpreplay handled {replay:?} of {} frames", frames.len()),
    );
    check(
        replay.failed == unsendable,
        format!(
            "the sender's kernel refused {} frames, {unsendable} are unsendable",
            replay.failed
        ),
    );
    check(
        tx_link.tx_dropped == too_long,
        format!(
            "the veth dropped {} frames, {too_long} are longer than MTU + 18",
            tx_link.tx_dropped
        ),
    );
    check(
        rx_link.rx_packets == replay.successful - too_long,
        format!(
            "{rx_dev} received {} of {} frames sent and carried",
            rx_link.rx_packets,
            replay.successful - too_long
        ),
    );
    // Every frame that arrived is the switch's, the kernel socket's, or the node kernel's.
    check(
        seen + xsk_dropped + kernel_passed == rx_link.rx_packets,
        format!(
            "{rx_dev} received {}: switch {seen} + AF_XDP drops {xsk_dropped} + kernel \
             {kernel_passed}",
            rx_link.rx_packets
        ),
    );
    check(
        seen == want_seen && kernel_passed == want_kernel,
        format!(
            "the switch saw {seen} frames ({want_seen} expected), the node's kernel got \
             {kernel_passed} ({want_kernel} expected)"
        ),
    );
    check(
        xsk_dropped == 0,
        format!("the kernel dropped frames before the switch: {kernel_drops:?}"),
    );
    // Nothing else moved.
    for (p, n) in &rx {
        if *p != ingress {
            check(*n == 0, format!("port {p} received {n} frames meanwhile"));
        }
    }
    // The switch's own accounting adds up.
    check(
        seen == transmitted + total_drops - icmp_errors + consumed,
        format!(
            "rx {seen} != tx {transmitted} + drops {total_drops} - icmp errors {icmp_errors} + \
             consumed {consumed}"
        ),
    );
    // ... and matches the rules frame by frame.
    let reasons: BTreeSet<&String> = want_drops.keys().chain(drops.keys()).collect();
    for reason in reasons {
        let (w, g) = (
            want_drops.get(reason).copied().unwrap_or(0),
            drops.get(reason).copied().unwrap_or(0),
        );
        let frames_of: Vec<String> = manifest
            .expect
            .iter()
            .zip(&frames)
            .filter(|(fate, f)| carried(f) && fate.drop.as_deref() == Some(reason.as_str()))
            .map(|(fate, _)| format!("#{} {}", fate.index, fate.what))
            .collect();
        check(
            w == g,
            format!("drop {reason}: {g} counted, {w} expected (frames: {frames_of:?})"),
        );
    }
    for (r, n) in &drops {
        if !ingress_drops.contains_key(r) {
            check(false, format!("drop {r} ({n}) counted on another port"));
        }
    }
    let names: BTreeSet<&String> = want_events.keys().chain(events.keys()).collect();
    for e in names {
        let (w, g) = (
            want_events.get(e).copied().unwrap_or(0),
            events.get(e).copied().unwrap_or(0),
        );
        check(w == g, format!("event {e}: {g} counted, {w} expected"));
    }
    for (p, n) in &tx {
        let w = want_tx.get(*p).copied().unwrap_or(0);
        let frames_to: Vec<String> = manifest
            .expect
            .iter()
            .zip(&frames)
            .filter(|(fate, f)| carried(f) && !fate.kernel && fate.to.as_deref() == Some(*p))
            .map(|(fate, _)| format!("#{} {}", fate.index, fate.what))
            .collect();
        check(
            *n == w,
            format!("transmitted on {p}: {n}, {w} expected (frames: {frames_to:?})"),
        );
    }
    // What the switch transmitted arrived.
    for (i, d) in dests.iter().enumerate() {
        let (p, (ns, dev), edev) = (&d.port, &d.to, &d.from.1);
        let got = dest_after[i].0.minus(dest_before[i].0).rx_packets;
        let lost = link_lost.get(*p).copied().unwrap_or(0);
        check(
            lost == 0,
            format!("{edev} dropped {lost} frames the switch sent, none expected"),
        );
        let sent = tx[p] - lost;
        if *p == "uplink" {
            // The node's kernel answers what the uplink XDP program passed it, on the same wire.
            check(
                got == node_eth0.tx_packets && (got == sent || ingress == "uplink"),
                format!(
                    "{dev} in {ns} received {got}; the switch sent {sent}, the node's eth0 {}",
                    node_eth0.tx_packets
                ),
            );
        } else {
            check(
                got == sent,
                format!("{dev} in {ns} received {got}, the switch transmitted {sent} to it (and {lost} its link dropped)"),
            );
        }
    }
    for (p, n) in &sinks {
        let w = want_sink.get(*p).copied().unwrap_or(0);
        check(
            *n == w,
            format!("the UDP sink of {p} got {n} datagrams, {w} expected"),
        );
    }
    assert!(
        failures.is_empty(),
        "corpus {name}: {} check(s) failed:\n- {}\n{summary}",
        failures.len(),
        failures.join("\n- ")
    );
    drop(world);
}

#[test]
fn pod_port_corpus() {
    replay_corpus("pod");
}

#[test]
fn uplink_corpus() {
    replay_corpus("uplink");
}
