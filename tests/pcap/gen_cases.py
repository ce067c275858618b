#!/usr/bin/python3
"""Craft the pcap conformance cases of tests/pcap/ (see README.md next to this file).

Every case is a function below: it declares the switch (ports), feeds input frames to ports and
states, from the README rules alone, which frames must come out of which port and which drops and
counters the run must record. The expected frames are built with scapy, never by running the
engine.

    gen_cases.py            (re)write tests/pcap/<case>/ and delete stale case folders
    gen_cases.py --check    generate into a temporary directory and compare byte for byte with
                            the committed case folders; exit 1 on any difference

Determinism: frames are plain bytes with every header field given explicitly (IP IDs, ports,
sequence numbers, payloads); pcaps are written by `write_pcap` with integer microsecond
timestamps, so re-running produces identical files.
"""

import argparse
import os
import shutil
import struct
import sys
import tempfile
import textwrap

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoRequest, IPOption_EOL,
                       IPOption_NOP, IPOption_Router_Alert, IPv6, Raw)
from scapy.utils import checksum

HERE = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------------------------
# Default topology

GW_IP, GW_MAC = "10.244.1.1", "0a:58:0a:f4:01:01"
POD_CIDR, CLUSTER_CIDR = "10.244.1.0/24", "10.244.0.0/16"
BCAST = "ff:ff:ff:ff:ff:ff"
HOST_MAC = "0a:58:0a:f4:00:fe"      # node-side interface of the host port
HOST_SRC_IP = "192.168.1.10"        # the node's own address, behind the host port
EXT_MAC = "02:00:00:00:00:0a"       # a MAC behind the host port, learned by the FDB
P1MAC, P1IP = "0a:58:0a:f4:01:02", "10.244.1.2"
P2MAC, P2IP = "0a:58:0a:f4:01:03", "10.244.1.3"
UNKNOWN_POD_IP = "10.244.1.50"      # inside pod_cidr, no such pod
REMOTE_POD_IP = "10.244.2.5"        # a pod of another node (cluster_cidr, not pod_cidr)
EXTERNAL_IP = "8.8.8.8"


def pod(name, mac, ip, mtu=1500, namespace=None, labels=None):
    """A pod port; namespace and labels (README 'NetworkPolicy ...') are written when given."""
    p = {"name": name, "kind": "pod", "mac": mac, "ip": ip, "mtu": mtu}
    if namespace is not None:
        p["namespace"] = namespace
    if labels is not None:
        p["labels"] = labels
    return p


def host(mtu=1500):
    return {"name": "host", "kind": "host", "mac": HOST_MAC, "mtu": mtu}


def default_ports(mtu=1500, pod2_mtu=None):
    return [pod("pod1", P1MAC, P1IP, mtu), pod("pod2", P2MAC, P2IP, pod2_mtu or mtu), host(mtu)]


# ----------------------------------------------------------------------------------------------
# Frame construction helpers (all return bytes)

def data(n, seed=0):
    """Deterministic payload of n bytes."""
    return bytes((seed + i) % 256 for i in range(n))


def eth(dst, src, payload, etype=0x0800):
    return bytes(Ether(dst=dst, src=src, type=etype)) + bytes(payload)


def ip(src, dst, l4, ttl=64, id=0x1000, flags="DF", frag=0, tos=0, options=None, proto=None):
    """A scapy IPv4 packet; lengths and checksums (IP and L4) are filled in by scapy.
    `proto` is needed when l4 is Raw (fragments, odd payloads)."""
    kw = {"options": options} if options else {}
    if proto is not None:
        kw["proto"] = proto
    return IP(src=src, dst=dst, ttl=ttl, id=id, flags=flags, frag=frag, tos=tos, **kw) / l4


def udp(src, dst, n=32, sport=40000, dport=5000, seed=0, **ipkw):
    return ip(src, dst, UDP(sport=sport, dport=dport) / Raw(data(n, seed)), **ipkw)


def tcp(src, dst, payload=b"", flags="PA", sport=41000, dport=8080, seq=1000, ack=2000,
        options=(), **ipkw):
    seg = TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=64240,
              options=list(options))
    return ip(src, dst, seg / Raw(payload) if payload else seg, **ipkw)


def echo(src, dst, n=56, ident=0x4242, seq=1, **ipkw):
    return ip(src, dst, ICMP(type=8, code=0, id=ident, seq=seq) / Raw(data(n, 0x30)), **ipkw)


def pad(frame, size=60, fill=b"\xa5"):
    """Ethernet padding up to `size` bytes (non-zero filler, so 'kept unchanged' is visible)."""
    return frame + fill * (size - len(frame))


def fix_ip_checksum(frame):
    """Recompute the IPv4 header checksum of a raw frame (used on deliberately odd headers)."""
    f = bytearray(frame)
    ihl = (f[14] & 0x0F) * 4
    f[24:26] = b"\0\0"
    f[24:26] = struct.pack("!H", checksum(bytes(f[14:14 + ihl])))
    return bytes(f)


def patch(frame, offset, value, fix_checksum=True):
    """Overwrite bytes of a raw frame (offset counted from the frame start)."""
    f = frame[:offset] + value + frame[offset + len(value):]
    return fix_ip_checksum(f) if fix_checksum else f


def ip_parts(frame):
    """(IPv4 header bytes, IPv4 payload bytes up to total length) of a received frame."""
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack("!H", frame[16:18])[0]
    return frame[14:14 + ihl], frame[14 + ihl:14 + total]


def rebuild_header(hdr, **changes):
    """Parse an IPv4 header with scapy, apply field changes, let scapy recompute the checksum.
    Only the header is rebuilt (no payload), so L4 checksums can never be touched."""
    h = IP(hdr)
    h.remove_payload()
    assert bytes(h) == hdr, "scapy header round trip must be exact"
    for k, v in changes.items():
        setattr(h, k, v)
    del h.chksum
    out = bytes(h)
    assert len(out) == len(hdr)
    return out


def trimmed(frame):
    """`frame` cut to max(60, 14 + IPv4 total length): padding beyond a minimum frame is not
    forwarded (README 'IPv4')."""
    total = int.from_bytes(frame[16:18], "big")
    return frame[:max(60, 14 + total)]


def routed(frame, dst_mac):
    """The routed copy of `frame`: Ethernet dst = next hop MAC, src = gateway MAC, TTL - 1,
    header checksum recomputed; options and L4 bytes untouched, padding kept up to a minimum
    frame."""
    ihl = (frame[14] & 0x0F) * 4
    hdr = rebuild_header(frame[14:14 + ihl], ttl=frame[22] - 1)
    return trimmed(eth(dst_mac, GW_MAC, hdr + frame[14 + ihl:]))


def icmp_error(frame, type, code, mtu=0):
    """ICMP error about a received frame, sent back to its source (README 'ICMP errors')."""
    hdr, payload = ip_parts(frame)
    quote = hdr + payload[:8]
    src_mac = Ether(frame).src
    src_ip = IP(hdr).src
    msg = ICMP(type=type, code=code, nexthopmtu=mtu) if type == 3 else ICMP(type=type, code=code)
    pkt = IP(version=4, ihl=5, tos=0xC0, id=0, flags=0, frag=0, ttl=64, proto=1, src=GW_IP,
             dst=src_ip) / msg / Raw(quote)
    return eth(src_mac, GW_MAC, pkt)


def time_exceeded(frame):
    return icmp_error(frame, 11, 0)


def frag_needed(frame, mtu):
    return icmp_error(frame, 3, 4, mtu)


def echo_reply(frame):
    """Echo reply built from a request: IP header kept (TOS, ID, flags, options) with addresses
    swapped and TTL 64, ICMP type 0, both checksums recomputed, Ethernet padding dropped."""
    hdr, payload = ip_parts(frame)
    h = IP(hdr)
    new_hdr = rebuild_header(hdr, src=h.dst, dst=h.src, ttl=64)
    icmp = ICMP(payload)
    icmp.type, icmp.code = 0, 0
    del icmp.chksum
    msg = bytes(icmp)
    assert len(msg) == len(payload)
    return eth(Ether(frame).src, GW_MAC, new_hdr + msg)


def arp(op, eth_src, sha, spa, tpa, tha="00:00:00:00:00:00", eth_dst=BCAST):
    return eth(eth_dst, eth_src, ARP(op=op, hwsrc=sha, psrc=spa, hwdst=tha, pdst=tpa), 0x0806)


def arp_request(src_mac, src_ip, target_ip, **kw):
    return arp(1, src_mac, src_mac, src_ip, target_ip, **kw)


def arp_answer(request, answered_mac):
    """The switch's ARP reply (42 bytes) to a request frame."""
    req = Ether(request)
    a = req[ARP]
    return arp(2, answered_mac, answered_mac, a.pdst, a.psrc, tha=a.hwsrc, eth_dst=req.src)


def raw_arp(htype=1, ptype=0x0800, hlen=6, plen=4, op=1, sha=b"", spa=b"", tha=b"", tpa=b""):
    """ARP body from raw fields, for malformed variants scapy would 'correct'."""
    return struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + sha + spa + tha + tpa


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def ip_bytes(addr):
    return bytes(int(x) for x in addr.split("."))


# ----------------------------------------------------------------------------------------------
# Case model and output

T0_US = 1_700_000_000 * 1_000_000   # pcap clock of the first frame, in microseconds


class Case:
    def __init__(self, name, description):
        self.name, self.description = name, description
        self.ports = default_ports()
        self.aging = None                 # fdb_aging_secs, written only when set
        self.inputs, self.outputs = {}, {}  # port -> [(usec, frame)]
        self.drops, self.counters = {}, {}  # port -> {reason: n}
        self.clock = T0_US - 1000
        self.last_rx = T0_US
        # tunnels (README 'Tunnels'); all written only when set, see tunnel_topology()
        self.node_ip = self.vtep_mac = None
        self.vxlan_udp_checksum = None    # None: key absent (default true)
        self.tunnels = []
        self.outer_id = 0                 # the switch's outer IPv4 ID counter, per case run
        # NetworkPolicy (README 'NetworkPolicy and connection tracking'); see policy_topology()
        self.policy = None

    def rx(self, port, frame, after=0.001):
        """Frame received on `port`, `after` seconds after the previous input frame."""
        assert port in [p["name"] for p in self.ports]
        self.clock += round(after * 1_000_000)
        self.last_rx = self.clock
        self.inputs.setdefault(port, []).append((self.clock, frame))
        return frame

    def tx(self, port, frame):
        """Frame the switch must emit on `port` (in emission order)."""
        self.outputs.setdefault(port, []).append((self.last_rx, frame))

    def drop(self, port, reason, n=1):
        self.drops.setdefault(port, {}).setdefault(reason, 0)
        self.drops[port][reason] += n

    def count(self, port, counter, n=1):
        self.counters.setdefault(port, {}).setdefault(counter, 0)
        self.counters[port][counter] += n

    def toml(self):
        assert '"' not in self.description and "\\" not in self.description
        out = [f'description = "{self.description}"']
        if self.aging is not None:
            out.append(f"fdb_aging_secs = {self.aging}")
        out += ["", "[switch]", f'gateway_ip = "{GW_IP}"', f'gateway_mac = "{GW_MAC}"',
                f'pod_cidr = "{POD_CIDR}"', f'cluster_cidr = "{CLUSTER_CIDR}"']
        if self.node_ip is not None:
            out.append(f'node_ip = "{self.node_ip}"')
        if self.vtep_mac is not None:
            out.append(f'vtep_mac = "{self.vtep_mac}"')
        if self.vxlan_udp_checksum is not None:
            out.append(f"vxlan_udp_checksum = {'true' if self.vxlan_udp_checksum else 'false'}")
        for p in self.ports:
            out += ["", "[[port]]", f'name = "{p["name"]}"', f'kind = "{p["kind"]}"',
                    f'mac = "{p["mac"]}"']
            if p["kind"] == "pod":
                out.append(f'ip = "{p["ip"]}"')
            out.append(f'mtu = {p["mtu"]}')
            if "namespace" in p:
                out.append(f'namespace = "{p["namespace"]}"')
            if "labels" in p:
                out.append(f'labels = {toml_labels(p["labels"])}')
        for t in self.tunnels:
            out += ["", "[[tunnel]]", f'name = "{t["name"]}"', f'kind = "{t["kind"]}"',
                    f'remote = "{t["remote"]}"', f'subnet = "{t["subnet"]}"']
            if t["kind"] == "vxlan":
                out += [f'vni = {t["vni"]}', f'vtep_mac = "{t["vtep_mac"]}"',
                        f'port = {t["port"]}']
            out.append(f'next_hop_mac = "{t["next_hop_mac"]}"')
        if self.policy is not None:
            pol = self.policy
            out += ["", "[policy]"]
            if list(pol["files"]) != ["policy.yaml"]:
                out.append("files = [" + ", ".join(f'"{f}"' for f in pol["files"]) + "]")
            if pol["conntrack_max"] is not None:
                out.append(f'conntrack_max = {pol["conntrack_max"]}')
            if pol["node_addresses"]:
                out.append("node_addresses = [" +
                           ", ".join(f'"{a}"' for a in pol["node_addresses"]) + "]")
            if pol["namespaces"]:
                out += ["", "[policy.namespaces]"]
                out += [f"{toml_key(ns)} = {toml_labels(labels)}"
                        for ns, labels in sorted(pol["namespaces"].items())]
            for e in pol["endpoints"]:
                out += ["", "[[policy.endpoint]]", f'ip = "{e["ip"]}"',
                        f'namespace = "{e["namespace"]}"']
                if e["labels"]:
                    out.append(f'labels = {toml_labels(e["labels"])}')

        def table(header, per_port):
            lines = ["", header]
            for p in self.ports:
                if p["name"] in per_port:
                    kv = ", ".join(f"{k} = {v}" for k, v in sorted(per_port[p["name"]].items()))
                    lines.append(f'{p["name"]} = {{ {kv} }}')
            return lines

        out += table("[expect.drops]", self.drops)
        if self.counters:
            out += table("[expect.counters]", self.counters)
        return "\n".join(out) + "\n"

    def write(self, root):
        d = os.path.join(root, self.name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        with open(os.path.join(d, "case.toml"), "w") as f:
            f.write(self.toml())
        for p in self.ports:
            name = p["name"]
            if name in self.inputs:
                write_pcap(os.path.join(d, f"{name}.in.pcap"), self.inputs[name])
            write_pcap(os.path.join(d, f"{name}.expected.pcap"), self.outputs.get(name, []))
        for fname, docs in (self.policy or {}).get("files", {}).items():
            with open(os.path.join(d, fname), "w") as f:
                f.write("---\n".join(docs))


def toml_key(key):
    """A TOML key: bare when it can be, quoted otherwise (label keys like a.b/c)."""
    bare = key and all(ch.isalnum() or ch in "-_" for ch in key)
    return key if bare else f'"{key}"'


def toml_labels(labels):
    """An inline TOML table of labels, keys sorted."""
    if not labels:
        return "{}"
    return "{ " + ", ".join(f'{toml_key(k)} = "{v}"' for k, v in sorted(labels.items())) + " }"


def write_pcap(path, records):
    """Classic pcap, microsecond timestamps, linktype 1 (Ethernet)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for usec, frame in records:
            f.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame),
                                len(frame)))
            f.write(frame)


CASES = []


def case(fn):
    """Register a case; its name is the function name, its description the docstring."""
    CASES.append(fn)
    return fn


# ----------------------------------------------------------------------------------------------
# L2 switching

@case
def l2_unicast_pod_to_pod(c):
    """frames addressed to a pod MAC are switched unchanged (TTL untouched, even TTL 1)"""
    c.tx("pod2", c.rx("pod1", eth(P2MAC, P1MAC, udp(P1IP, P2IP, 100))))
    c.tx("pod2", c.rx("pod1", eth(P2MAC, P1MAC, udp(P1IP, P2IP, 20, ttl=1, id=0x1001))))
    c.tx("pod1", c.rx("pod2", eth(P1MAC, P2MAC, tcp(P2IP, P1IP, b"hello pod1", id=0x2000))))


@case
def l2_hairpin(c):
    """a frame whose destination MAC lives on its ingress port is dropped as hairpin"""
    c.rx("pod1", eth(P1MAC, P1MAC, udp(P1IP, P2IP)))
    c.drop("pod1", "hairpin")
    # host teaches EXT_MAC, then sends a frame to EXT_MAC: it would go back out of the host port
    c.tx("pod1", routed(c.rx("host", eth(GW_MAC, EXT_MAC, udp(HOST_SRC_IP, P1IP))), P1MAC))
    c.rx("host", eth(EXT_MAC, HOST_MAC, udp(HOST_SRC_IP, "192.168.1.20", id=0x1001)))
    c.drop("host", "hairpin")


@case
def unknown_unicast(c):
    """a destination MAC that is neither the gateway nor in the FDB is dropped, never flooded"""
    c.rx("pod1", eth("0a:58:0a:f4:01:77", P1MAC, udp(P1IP, P2IP)))
    c.rx("host", eth("02:00:00:00:00:99", HOST_MAC, udp(HOST_SRC_IP, P1IP)))
    c.drop("pod1", "unknown_unicast")
    c.drop("host", "unknown_unicast")


@case
def fdb_learning(c):
    """a source MAC seen on the host port is learned: a pod frame to it is switched to the host"""
    c.tx("pod1", routed(c.rx("host", eth(GW_MAC, EXT_MAC, udp(HOST_SRC_IP, P1IP))), P1MAC))
    c.tx("host", c.rx("pod1", eth(EXT_MAC, P1MAC, udp(P1IP, HOST_SRC_IP, id=0x2000)), after=1))


@case
def fdb_aging(c):
    """a learned MAC is forgotten fdb_aging_secs after it was last seen: then unknown_unicast"""
    c.aging = 30
    c.tx("pod1", routed(c.rx("host", eth(GW_MAC, EXT_MAC, udp(HOST_SRC_IP, P1IP))), P1MAC))
    c.tx("host", c.rx("pod1", eth(EXT_MAC, P1MAC, udp(P1IP, HOST_SRC_IP, id=0x2000)), after=5))
    # pod2 frame at +20 s: still known (also separates the two pod1 batches)
    c.tx("host", c.rx("pod2", eth(EXT_MAC, P2MAC, udp(P2IP, HOST_SRC_IP, id=0x3000)), after=15))
    # +40 s, 40 s after the last refresh: aged out
    c.rx("pod1", eth(EXT_MAC, P1MAC, udp(P1IP, HOST_SRC_IP, id=0x2001)), after=20)
    c.drop("pod1", "unknown_unicast")


@case
def fdb_refresh(c):
    """every host-port frame from a MAC refreshes its FDB entry, postponing the aging"""
    c.aging = 30
    c.tx("pod1", routed(c.rx("host", eth(GW_MAC, EXT_MAC, udp(HOST_SRC_IP, P1IP))), P1MAC))
    # a pod2 frame between the two host frames, so the refresh is its own batch (now = +20 s)
    c.tx("pod1", c.rx("pod2", eth(P1MAC, P2MAC, udp(P2IP, P1IP, id=0x3000)), after=10))
    c.tx("pod1", routed(c.rx("host", eth(GW_MAC, EXT_MAC, udp(HOST_SRC_IP, P1IP, id=0x1001)),
                             after=10), P1MAC))
    # +40 s: 40 s after learning but 20 s after the refresh: still known
    c.tx("host", c.rx("pod1", eth(EXT_MAC, P1MAC, udp(P1IP, HOST_SRC_IP, id=0x2000)), after=20))


# ----------------------------------------------------------------------------------------------
# ARP

@case
def arp_request_gateway(c):
    """ARP request for the gateway IP from a pod is answered with the gateway MAC"""
    c.tx("pod1", arp_answer(c.rx("pod1", arp_request(P1MAC, P1IP, GW_IP)), GW_MAC))
    c.count("pod1", "arp_replies")


@case
def arp_request_local_pod(c):
    """ARP request for another local pod (broadcast or unicast probe) is answered with its MAC"""
    c.tx("pod1", arp_answer(c.rx("pod1", arp_request(P1MAC, P1IP, P2IP)), P2MAC))
    # Linux reachability probe: unicast to the cached MAC, target MAC filled in
    req = arp(1, P1MAC, P1MAC, P1IP, P2IP, tha=P2MAC, eth_dst=P2MAC)
    c.tx("pod1", arp_answer(c.rx("pod1", req), P2MAC))
    c.count("pod1", "arp_replies", 2)


@case
def arp_request_from_host(c):
    """ARP from the host port for a pod IP or the gateway is answered with the gateway MAC"""
    c.tx("host", arp_answer(c.rx("host", arp_request(HOST_MAC, HOST_SRC_IP, P1IP)), GW_MAC))
    # 60-byte padded request whose Ethernet source differs from the ARP sender MAC: the reply
    # goes to the Ethernet source and targets the ARP sender
    req = pad(arp(1, EXT_MAC, HOST_MAC, HOST_SRC_IP, GW_IP))
    c.tx("host", arp_answer(c.rx("host", req), GW_MAC))
    c.count("host", "arp_replies", 2)


@case
def arp_request_unknown_target(c):
    """ARP requests for IPs that are neither the gateway nor a local pod are not answered"""
    c.rx("pod1", arp_request(P1MAC, P1IP, UNKNOWN_POD_IP))
    c.rx("pod1", arp_request(P1MAC, P1IP, EXTERNAL_IP))
    c.rx("host", arp_request(HOST_MAC, HOST_SRC_IP, REMOTE_POD_IP))
    c.drop("pod1", "arp_unknown_target", 2)
    c.drop("host", "arp_unknown_target")


@case
def arp_gratuitous_own_ip(c):
    """gratuitous ARP (request and reply forms) for the sender's own IP is accepted silently"""
    c.rx("pod1", arp(1, P1MAC, P1MAC, P1IP, P1IP))
    c.rx("pod1", arp(2, P1MAC, P1MAC, P1IP, P1IP, tha=BCAST))
    c.rx("host", arp(1, HOST_MAC, HOST_MAC, HOST_SRC_IP, HOST_SRC_IP))
    c.count("pod1", "gratuitous_arp", 2)
    c.count("host", "gratuitous_arp")


@case
def arp_gratuitous_spoofed_ip(c):
    """gratuitous ARP from a pod claiming another pod's IP fails the source check"""
    c.rx("pod1", arp(1, P1MAC, P1MAC, P2IP, P2IP))
    c.drop("pod1", "spoofed_source_ip")


@case
def arp_source_check(c):
    """ARP from a pod with a foreign Ethernet source, ARP sender MAC or ARP sender IP is dropped"""
    c.rx("pod1", arp(1, P2MAC, P2MAC, P1IP, GW_IP))        # Ethernet source
    c.rx("pod1", arp(1, P1MAC, P2MAC, P1IP, GW_IP))        # ARP sender MAC
    c.rx("pod1", arp(1, P1MAC, P1MAC, P2IP, GW_IP))        # ARP sender IP
    c.drop("pod1", "spoofed_source_mac", 2)
    c.drop("pod1", "spoofed_source_ip")


@case
def arp_unexpected_reply(c):
    """a non-gratuitous ARP reply sent to the switch is dropped"""
    c.rx("pod1", arp(2, P1MAC, P1MAC, P1IP, GW_IP, tha=GW_MAC, eth_dst=GW_MAC))
    c.drop("pod1", "unexpected_arp_reply")


@case
def arp_malformed(c):
    """ARP with hlen 8, a body shorter than 28 bytes, or an unknown opcode is malformed"""
    sha, spa, tpa = mac_bytes(P1MAC), ip_bytes(P1IP), ip_bytes(GW_IP)
    body = raw_arp(hlen=8, sha=sha + b"\0\0", spa=spa, tha=b"\0" * 8, tpa=tpa)
    c.rx("pod1", eth(BCAST, P1MAC, body, 0x0806))
    body = raw_arp(sha=sha, spa=spa, tha=b"\0" * 6, tpa=tpa)[:20]
    c.rx("pod1", eth(BCAST, P1MAC, body, 0x0806))
    body = raw_arp(op=3, sha=sha, spa=spa, tha=b"\0" * 6, tpa=tpa)
    c.rx("pod1", eth(BCAST, P1MAC, body, 0x0806))
    c.drop("pod1", "malformed_arp", 3)


# ----------------------------------------------------------------------------------------------
# IPv4 routing

@case
def routed_udp_pod_to_pod(c):
    """UDP to the gateway MAC for a local pod: MAC rewrite, TTL - 1, header checksum updated"""
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 200))), P2MAC))


@case
def routed_tcp_pod_to_pod(c):
    """routed TCP segments (SYN with options, data) keep their L4 bytes"""
    syn = tcp(P1IP, P2IP, flags="S", seq=0x11111111, ack=0,
              options=[("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)])
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, syn)), P2MAC))
    seg = tcp(P2IP, P1IP, b"GET / HTTP/1.1\r\nHost: pod1\r\n\r\n", sport=8080, dport=41000,
              id=0x2000, ttl=63)
    c.tx("pod1", routed(c.rx("pod2", eth(GW_MAC, P2MAC, seg)), P1MAC))


@case
def routed_icmp_echo_pod_to_pod(c):
    """an ICMP echo between pods is routed like any packet (not answered by the switch)"""
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, echo(P1IP, P2IP))), P2MAC))


@case
def routed_checksum_zero(c):
    """routing yields header checksum 0x0000 (a full recompute never gives 0xffff)"""
    for ident in range(0x10000):
        f = eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 8, id=ident))
        out = routed(f, P2MAC)
        if out[24:26] == b"\0\0":
            break
    else:
        raise AssertionError("no IP ID gives a zero routed checksum")
    c.tx("pod2", routed(c.rx("pod1", f), P2MAC))


@case
def routed_to_host_external(c):
    """a pod packet for an address outside the cluster is routed to the host port MAC"""
    c.tx("host", routed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, EXTERNAL_IP))),
                        HOST_MAC))


@case
def routed_to_host_remote_pod(c):
    """a pod packet for a pod of another node (cluster_cidr, not pod_cidr) goes to the host port"""
    c.tx("host", routed(c.rx("pod1", eth(GW_MAC, P1MAC, tcp(P1IP, REMOTE_POD_IP, b"x"))),
                        HOST_MAC))


@case
def routed_no_route_in_pod_cidr(c):
    """a destination inside pod_cidr without a pod is no_route (never sent to the host)"""
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, UNKNOWN_POD_IP)))
    c.drop("pod1", "no_route")


@case
def routed_no_host_port(c):
    """without a host port, a non-pod destination is no_route"""
    c.ports = default_ports()[:2]
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, EXTERNAL_IP)))
    c.drop("pod1", "no_route")


@case
def routed_host_to_pod(c):
    """the host port (trusted, any source IP) reaches a pod through the gateway MAC"""
    c.tx("pod1", routed(c.rx("host", eth(GW_MAC, HOST_MAC, tcp(HOST_SRC_IP, P1IP, b"hi"))), P1MAC))
    c.tx("pod2", routed(c.rx("host", eth(GW_MAC, HOST_MAC,
                                         udp("172.16.5.5", P2IP, id=0x1001))), P2MAC))


@case
def ipv4_options_routed(c):
    """a header with options (IHL 7) is routed with the options intact"""
    opts = [IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP(),
            IPOption_EOL()]
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, options=opts)))
    assert f[14] == 0x47
    c.tx("pod2", routed(f, P2MAC))


@case
def ipv4_fragments_routed(c):
    """first (MF, offset 0) and non-first fragments are routed intact with TTL - 1"""
    whole = bytes(udp(P1IP, P2IP, 1000))[20:]     # the UDP datagram, checksum over all of it
    first = ip(P1IP, P2IP, Raw(whole[:504]), flags="MF", frag=0, id=0x3333, proto=17)
    rest = ip(P1IP, P2IP, Raw(whole[504:]), flags=0, frag=504 // 8, id=0x3333, proto=17)
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, first)), P2MAC))
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, rest)), P2MAC))


@case
def ethernet_padding_routed(c):
    """a 60-byte frame carrying a 29-byte IPv4 packet is routed with its padding kept"""
    f = pad(eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1)))
    assert len(f) == 60
    c.tx("pod2", routed(c.rx("pod1", f), P2MAC))


@case
def ethernet_padding_trimmed(c):
    """padding beyond a minimum frame is cut when forwarding: routed and switched frames leave as
    max(60, 14 + total length) bytes, so a padded full-MTU packet still fits the egress link"""
    small = pad(eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1)), size=200)
    c.tx("pod2", routed(c.rx("pod1", small), P2MAC))
    full = pad(eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1500 - 28, id=0x1001)), size=1514 + 18)
    c.tx("pod2", routed(c.rx("pod1", full), P2MAC))
    switched = pad(eth(P2MAC, P1MAC, udp(P1IP, P2IP, 40, id=0x1002)), size=300)
    c.tx("pod2", trimmed(c.rx("pod1", switched)))


# ----------------------------------------------------------------------------------------------
# TTL

@case
def ttl_expired(c):
    """TTL 1 or 0 is not forwarded: ICMP time exceeded quoting the header and 8 payload bytes"""
    for pkt in (udp(P1IP, P2IP, 100, ttl=1), tcp(P1IP, P2IP, b"data", ttl=0, id=0x1001),
                echo(P1IP, P2IP, 4, ttl=1, id=0x1002)):   # echo: payload 12 bytes, quote 8
        c.tx("pod1", time_exceeded(c.rx("pod1", eth(GW_MAC, P1MAC, pkt))))
    # a payload shorter than 8 bytes is quoted whole
    c.tx("host", time_exceeded(c.rx("host", eth(GW_MAC, HOST_MAC,
                                                ip(HOST_SRC_IP, P1IP, Raw(b"abc"), ttl=1,
                                                                   proto=253)))))
    c.drop("pod1", "ttl_expired", 3)
    c.drop("host", "ttl_expired")


@case
def ttl_expired_icmp_suppressed(c):
    """TTL expiry of an ICMP error, a non-first fragment or a 0.0.0.0/multicast source: no ICMP"""
    inner = bytes(IP(src=P2IP, dst=P1IP, id=7) / UDP(sport=1, dport=2))
    c.rx("pod1", eth(GW_MAC, P1MAC, ip(P1IP, P2IP, ICMP(type=11, code=0) / Raw(inner), ttl=1)))
    c.rx("pod1", eth(GW_MAC, P1MAC, ip(P1IP, P2IP, ICMP(type=3, code=3) / Raw(inner), ttl=1,
                                       id=0x1001)))
    frag = ip(P1IP, P2IP, Raw(data(64)), ttl=1, flags=0, frag=100, id=0x1002, proto=17)
    c.rx("pod1", eth(GW_MAC, P1MAC, frag))
    c.rx("host", eth(GW_MAC, HOST_MAC, udp("0.0.0.0", P1IP, ttl=1)))
    c.rx("host", eth(GW_MAC, HOST_MAC, udp("224.0.0.9", P1IP, ttl=1, id=0x1001)))
    c.rx("host", eth(GW_MAC, HOST_MAC, udp("255.255.255.255", P1IP, ttl=1, id=0x1002)))
    c.drop("pod1", "ttl_expired", 3)
    c.drop("host", "ttl_expired", 3)


# ----------------------------------------------------------------------------------------------
# The gateway IP

@case
def icmp_echo_gateway(c):
    """an echo request to the gateway IP is answered in place"""
    c.tx("pod1", echo_reply(c.rx("pod1", eth(GW_MAC, P1MAC, echo(P1IP, GW_IP)))))
    c.count("pod1", "icmp_echo_replies")


@case
def icmp_echo_gateway_padded_options(c):
    """echo reply keeps TOS, ID, flags and options, and drops the request's Ethernet padding"""
    opts = [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()]
    req = pad(eth(GW_MAC, HOST_MAC, echo(HOST_SRC_IP, GW_IP, 0, seq=9, tos=0x10, flags=0,
                                         ttl=5, id=0xBEEF, options=opts)))
    assert len(req) == 60
    c.tx("host", echo_reply(c.rx("host", req)))
    c.count("host", "icmp_echo_replies")


@case
def icmp_echo_gateway_bad_checksum(c):
    """an echo request to the gateway with a wrong ICMP checksum is dropped"""
    f = eth(GW_MAC, P1MAC, echo(P1IP, GW_IP))
    c.rx("pod1", patch(f, 36, bytes([f[36] ^ 0x11, f[37] ^ 0x11]), fix_checksum=False))
    c.drop("pod1", "bad_icmp_checksum")


@case
def to_gateway_unsupported(c):
    """TCP, UDP, a fragmented echo or an echo reply to the gateway IP are not handled"""
    c.rx("pod1", eth(GW_MAC, P1MAC, tcp(P1IP, GW_IP, flags="S", dport=22, seq=1, ack=0)))
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, GW_IP, id=0x1001)))
    c.rx("pod1", eth(GW_MAC, P1MAC, echo(P1IP, GW_IP, flags="MF", id=0x1002)))
    c.rx("pod1", eth(GW_MAC, P1MAC, ip(P1IP, GW_IP, ICMP(type=0, id=1, seq=1), id=0x1003)))
    c.drop("pod1", "to_gateway_unsupported", 4)


# ----------------------------------------------------------------------------------------------
# Source and destination checks

@case
def spoofed_source_ip(c):
    """a pod sending with another source IP is dropped (routed or switched)"""
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P2IP, EXTERNAL_IP)))
    c.rx("pod1", eth(P2MAC, P1MAC, udp("10.244.1.99", P2IP, id=0x1001)))
    c.drop("pod1", "spoofed_source_ip", 2)


@case
def spoofed_source_mac(c):
    """a pod sending with another source MAC is dropped (checked before the source IP)"""
    c.rx("pod1", eth(GW_MAC, P2MAC, udp(P1IP, EXTERNAL_IP)))
    c.rx("pod1", eth(P2MAC, "0a:58:0a:f4:01:99", udp("10.244.1.99", P2IP, id=0x1001)))
    c.drop("pod1", "spoofed_source_mac", 2)


@case
def non_arp_broadcast(c):
    """broadcast IPv4 (e.g. DHCP) is dropped, before any source check"""
    dhcp = udp("0.0.0.0", "255.255.255.255", 300, sport=68, dport=67, flags=0)
    c.rx("pod1", eth(BCAST, P1MAC, dhcp))
    c.rx("host", eth(BCAST, HOST_MAC, udp(HOST_SRC_IP, "192.168.1.255", flags=0)))
    c.drop("pod1", "non_arp_broadcast")
    c.drop("host", "non_arp_broadcast")


@case
def multicast_unsupported(c):
    """frames to multicast MACs (IPv4 multicast, even ARP) are dropped"""
    c.rx("pod1", eth("01:00:5e:00:00:fb", P1MAC, udp(P1IP, "224.0.0.251",
                                                      ttl=255)))
    c.rx("pod1", arp(1, P1MAC, P1MAC, P1IP, GW_IP, eth_dst="01:00:5e:00:00:01"))
    c.drop("pod1", "multicast_unsupported", 2)


# ----------------------------------------------------------------------------------------------
# Parse errors

@case
def truncated_ethernet(c):
    """frames shorter than 14 bytes are dropped"""
    f = eth(GW_MAC, P1MAC, udp(P1IP, P2IP))
    c.rx("pod1", f[:10])
    c.rx("pod1", f[:13])
    c.drop("pod1", "truncated_ethernet", 2)


@case
def unsupported_ethertypes(c):
    """VLAN (0x8100, 0x88a8), IPv6 and other ethertypes are dropped by reason"""
    inner = udp(P1IP, P2IP)
    c.rx("pod1", bytes(Ether(dst=GW_MAC, src=P1MAC) / Dot1Q(vlan=100) / inner))
    c.rx("pod1", bytes(Ether(dst=GW_MAC, src=P1MAC, type=0x88A8) / Dot1Q(vlan=200) / inner))
    c.rx("pod1", bytes(Ether(dst=GW_MAC, src=P1MAC) /
                       IPv6(src="fe80::858:aff:fef4:102", dst="fe80::858:aff:fef4:101") /
                       ICMPv6EchoRequest(id=1, seq=1, data=b"ping")))
    c.rx("pod1", eth(GW_MAC, P1MAC, data(46), 0x88B5))     # local experimental ethertype
    c.drop("pod1", "vlan_unsupported", 2)
    c.drop("pod1", "ipv6_unsupported")
    c.drop("pod1", "unsupported_ethertype")


@case
def ipv4_truncated_header(c):
    """fewer than 20 bytes of IPv4 after Ethernet, or fewer than IHL*4, is truncated_ipv4"""
    f = eth(GW_MAC, P1MAC, udp(P1IP, P2IP))
    c.rx("pod1", f[:24])
    # IHL 15 (60-byte header) but only 40 bytes of IPv4 in the frame
    c.rx("pod1", patch(f, 14, b"\x4f", fix_checksum=False)[:54])
    c.drop("pod1", "truncated_ipv4", 2)


@case
def ipv4_bad_version(c):
    """an IPv4 ethertype carrying version 6 in the header is dropped"""
    c.rx("pod1", patch(eth(GW_MAC, P1MAC, udp(P1IP, P2IP)), 14, b"\x65"))
    c.drop("pod1", "bad_ipv4_version")


@case
def ipv4_ihl_below_5(c):
    """an IHL below 5 is a bad header length"""
    c.rx("pod1", patch(eth(GW_MAC, P1MAC, udp(P1IP, P2IP)), 14, b"\x44", fix_checksum=False))
    c.drop("pod1", "bad_ipv4_header_length")


@case
def ipv4_bad_total_length(c):
    """total length beyond the frame, or below the header length, is rejected"""
    f = eth(GW_MAC, P1MAC, udp(P1IP, P2IP))               # total length 60
    c.rx("pod1", patch(f, 16, struct.pack("!H", 61)))
    c.rx("pod1", patch(f, 16, struct.pack("!H", 19)))
    c.drop("pod1", "bad_ipv4_total_length", 2)


@case
def ipv4_bad_header_checksum(c):
    """a wrong IPv4 header checksum is dropped"""
    f = eth(GW_MAC, P1MAC, udp(P1IP, P2IP))
    c.rx("pod1", patch(f, 24, bytes([f[24] ^ 0x11, f[25] ^ 0x11]), fix_checksum=False))
    c.drop("pod1", "bad_ipv4_checksum")


# ----------------------------------------------------------------------------------------------
# MTU and frame size

@case
def mtu_fragmentation_needed(c):
    """DF packet above the egress MTU: ICMP 3/4 with the MTU; a packet of exactly the MTU passes"""
    c.ports = default_ports(pod2_mtu=1400)
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1372))), P2MAC))
    c.tx("pod1", frag_needed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1472, id=0x1001))),
                             1400))
    c.drop("pod1", "fragmentation_needed")


@case
def mtu_fragmentation_needed_switched(c):
    """the MTU rule also applies to L2-switched frames, with the same ICMP 3/4"""
    c.ports = default_ports(pod2_mtu=1400)
    c.tx("pod1", frag_needed(c.rx("pod1", eth(P2MAC, P1MAC, tcp(P1IP, P2IP, data(1460)))), 1400))
    c.drop("pod1", "fragmentation_needed")


@case
def mtu_exceeded_no_df(c):
    """a packet above the egress MTU without DF is dropped silently (no fragmentation)"""
    c.ports = default_ports(pod2_mtu=1400)
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1472, flags=0)))
    c.drop("pod1", "exceeds_mtu")


@case
def mtu_ttl_checked_first(c):
    """an oversize DF packet with TTL 1 gets time exceeded, not fragmentation needed"""
    c.ports = default_ports(pod2_mtu=1400)
    c.tx("pod1", time_exceeded(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1472, ttl=1)))))
    c.drop("pod1", "ttl_expired")


@case
def jumbo_routed(c):
    """with MTU 3000 ports a 3014-byte frame (3000-byte packet) is routed"""
    c.ports = default_ports(mtu=3000)
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 2972)))
    assert len(f) == 3014
    c.tx("pod2", routed(f, P2MAC))


@case
def jumbo_frame_too_long(c):
    """a 9014-byte frame exceeds the 3840-byte buffer even with MTU 9000 ports"""
    c.ports = default_ports(mtu=9000)
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 8972)))
    assert len(f) == 9014
    c.drop("pod1", "frame_too_long")


@case
def frame_length_limit(c):
    """a 3840-byte frame is carried, a 3841-byte frame is frame_too_long"""
    c.ports = default_ports(mtu=9000)
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 3798)))
    assert len(f) == 3840
    c.tx("pod2", routed(f, P2MAC))
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 3799, id=0x1001)))
    c.drop("pod1", "frame_too_long")


# ----------------------------------------------------------------------------------------------
# A mixed run: batches alternate between ports; per-port output order follows input order

@case
def mixed_batches(c):
    """ten frames of various kinds in four batches over two ports, outputs in order"""
    # batch 1, pod1: ARP, routed, spoofed, switched
    c.tx("pod1", arp_answer(c.rx("pod1", arp_request(P1MAC, P1IP, GW_IP)), GW_MAC))
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 10))), P2MAC))
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P2IP, P2IP, 10, id=0x1001)))
    c.tx("pod2", c.rx("pod1", eth(P2MAC, P1MAC, tcp(P1IP, P2IP, b"switched", id=0x1002))))
    # batch 2, pod2: echo to the gateway, routed to the host
    c.tx("pod2", echo_reply(c.rx("pod2", eth(GW_MAC, P2MAC, echo(P2IP, GW_IP, 16)))))
    c.tx("host", routed(c.rx("pod2", eth(GW_MAC, P2MAC, udp(P2IP, EXTERNAL_IP, 20,
                                                             id=0x2001))), HOST_MAC))
    # batch 3, pod1: TTL expiry, multicast
    c.tx("pod1", time_exceeded(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 30, ttl=1,
                                                                 id=0x1003)))))
    c.rx("pod1", eth("01:00:5e:00:00:fb", P1MAC, udp(P1IP, "224.0.0.251", id=0x1004)))
    # batch 4, pod2: switched to pod1, ARP for pod1
    c.tx("pod1", c.rx("pod2", eth(P1MAC, P2MAC, udp(P2IP, P1IP, 40, id=0x2002))))
    c.tx("pod2", arp_answer(c.rx("pod2", arp_request(P2MAC, P2IP, P1IP)), P1MAC))
    c.drop("pod1", "spoofed_source_ip")
    c.drop("pod1", "ttl_expired")
    c.drop("pod1", "multicast_unsupported")
    c.count("pod1", "arp_replies")
    c.count("pod2", "icmp_echo_replies")
    c.count("pod2", "arp_replies")


# ----------------------------------------------------------------------------------------------
# Tunnels (README 'Tunnels (VXLAN, flannel's wire format; IPIP, Calico's)')
#
# Topology: the default pods (MTU 1450, as behind VXLAN) and host port, plus the uplink port;
# node2 is reached over VXLAN, node3 over IPIP. Every outer frame is built here with struct and
# scapy's `checksum` from the README rules, never from the engine's output.

NODE_IP = "192.168.77.1"
VTEP_MAC = "0e:00:00:00:00:01"      # our VTEP MAC
UPLINK_MAC = "02:00:00:00:77:01"
STRANGER_IP = "192.168.77.9"        # an underlay address that is no tunnel's remote
NODE2 = {"name": "node2", "kind": "vxlan", "remote": "192.168.77.2", "subnet": "10.244.2.0/24",
         "vni": 1, "vtep_mac": "0e:00:00:00:00:02", "port": 8472,
         "next_hop_mac": "02:00:00:00:77:02"}
NODE3 = {"name": "node3", "kind": "ipip", "remote": "192.168.77.3", "subnet": "10.244.3.0/24",
         "next_hop_mac": "02:00:00:00:77:03"}
NODE2_POD = REMOTE_POD_IP           # 10.244.2.5, a pod behind node2
NODE3_POD = "10.244.3.5"            # a pod behind node3
VXLAN_OVERHEAD, IPIP_OVERHEAD = 50, 20


def uplink(mtu=1500):
    return {"name": "uplink", "kind": "uplink", "mac": UPLINK_MAC, "mtu": mtu}


def tunnel_topology(c, pod1_mtu=1450, udp_checksum=None):
    """Switch of the tunnel cases: pod1/pod2 (MTU 1450), host, uplink; tunnels node2 and node3."""
    c.ports = [pod("pod1", P1MAC, P1IP, pod1_mtu), pod("pod2", P2MAC, P2IP, 1450), host(1500),
               uplink()]
    c.node_ip, c.vtep_mac = NODE_IP, VTEP_MAC
    c.vxlan_udp_checksum = udp_checksum
    c.tunnels = [NODE2, NODE3]


def next_outer_id(c):
    """The per-switch outer IPv4 ID counter: 0, 1, 2, ... for every encapsulated packet."""
    ident = c.outer_id
    c.outer_id = (c.outer_id + 1) % 65536
    return ident


def ipv4_header(src, dst, proto, payload_len, ident, tos=0, flags_frag=0, ttl=64):
    """A 20-byte IPv4 header (version 4, IHL 5) with a correct header checksum."""
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, ident, flags_frag, ttl, proto,
                    0, ip_bytes(src), ip_bytes(dst))
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:]


def udp_checksum_raw(src, dst, segment):
    """Internet checksum over the UDP pseudo-header and `segment` (its checksum field zero),
    before the 0 -> 0xffff substitution."""
    pseudo = ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, 17, len(segment))
    return checksum(pseudo + segment)


def udp_segment(src, dst, sport, dport, payload, csum=True):
    """UDP header + payload. csum: True = computed (0 sent as 0xffff), False = 0, an int = that
    value as is (for deliberately wrong checksums)."""
    length = 8 + len(payload)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    if csum is True:
        value = udp_checksum_raw(src, dst, seg) or 0xFFFF
    elif csum is False:
        value = 0
    else:
        value = csum
    return seg[:6] + struct.pack("!H", value) + seg[8:]


def vxlan_header(vni, flags=0x08, reserved=b"\0\0\0", reserved2=0):
    """flags, 3 reserved bytes, 24-bit VNI, 1 reserved byte."""
    return bytes([flags]) + reserved + vni.to_bytes(3, "big") + bytes([reserved2])


def source_port_hash(src, dst, proto, sport, dport):
    """README: h = src ^ dst ^ (protocol << 16) ^ ((sport << 16) | dport);
    h = (h * 0x9e3779b1) mod 2^32; port = 49152 + ((h >> 16) mod 16384)."""
    h = src ^ dst ^ (proto << 16) ^ ((sport << 16) | dport)
    h = (h * 0x9E3779B1) % 2**32
    return 49152 + ((h >> 16) % 16384)


# Checked by hand (the multiplications also with `bc`):
#  UDP 10.244.1.2:40000 -> 10.244.2.5:5000: src ^ dst = 0x0af40102 ^ 0x0af40205 = 0x00000307;
#    proto << 16 = 0x00110000; (40000 << 16) | 5000 = 0x9c401388; h = 0x9c51108f;
#    0x9c51108f * 0x9e3779b1 = 0x609be7f1_359909df -> 0x359909df; h >> 16 = 0x3599 = 13721
#    (< 16384); port = 49152 + 13721 = 62873
#  ICMP (proto 1, no ports) 10.244.1.2 -> 10.244.2.5: h = 0x307 ^ 0x10000 = 0x00010307;
#    0x10307 * 0x9e3779b1 = 0xa016_73a266d7 -> 0x73a266d7; 0x73a2 = 29602, mod 16384 = 13218;
#    port = 49152 + 13218 = 62370
assert source_port_hash(0x0AF40102, 0x0AF40205, 17, 40000, 5000) == 62873
assert source_port_hash(0x0AF40102, 0x0AF40205, 1, 0, 0) == 62370


def vxlan_source_port(pkt):
    """Outer UDP source port for an inner IPv4 packet (bytes): L4 ports only for TCP, UDP and
    SCTP packets that are not fragments."""
    ihl = (pkt[0] & 0x0F) * 4
    proto = pkt[9]
    flags_frag = struct.unpack("!H", pkt[6:8])[0]
    sport = dport = 0
    if proto in (6, 17, 132) and flags_frag & 0x3FFF == 0:      # MF clear, offset 0
        sport, dport = struct.unpack("!HH", pkt[ihl:ihl + 4])
    src, dst = struct.unpack("!II", pkt[12:20])
    return source_port_hash(src, dst, proto, sport, dport)


def routed_packet(frame):
    """The inner IPv4 packet after the routed rewrite (TTL - 1, header checksum). Encapsulation
    cases never use Ethernet padding (whether it would be carried is not specified)."""
    total = struct.unpack("!H", frame[16:18])[0]
    assert len(frame) == 14 + total, "no Ethernet padding in encapsulated frames"
    return routed(frame, GW_MAC)[14:]


def vxlan_payload(pkt, tun):
    """VXLAN header + inner frame (dst = the peer's VTEP MAC, src = ours)."""
    return vxlan_header(tun["vni"]) + eth(tun["vtep_mac"], VTEP_MAC, pkt)


def outer_tos(pkt):
    """Outer TOS of both kinds: the inner packet's ECN bits, CE (3) sent as ECT(0) (2), DSCP 0."""
    ecn = pkt[1] & 0x03
    return 0x02 if ecn == 0x03 else ecn


def encap_vxlan(c, frame, tun=NODE2):
    """The frame the uplink must send for a routed frame toward `tun` (a VXLAN tunnel)."""
    pkt = routed_packet(frame)
    payload = vxlan_payload(pkt, tun)
    seg = udp_segment(NODE_IP, tun["remote"], vxlan_source_port(pkt), tun["port"], payload,
                      csum=c.vxlan_udp_checksum is not False)
    if c.vxlan_udp_checksum is not False:     # cross-check the checksum with scapy's own
        ref = bytes(IP(src=NODE_IP, dst=tun["remote"]) /
                    UDP(sport=vxlan_source_port(pkt), dport=tun["port"]) / Raw(payload))[20:]
        assert ref == seg
    outer = ipv4_header(NODE_IP, tun["remote"], 17, len(seg), next_outer_id(c),
                        tos=outer_tos(pkt))
    out = eth(tun["next_hop_mac"], UPLINK_MAC, outer + seg)
    assert len(out) == len(frame) + VXLAN_OVERHEAD
    return out


def encap_ipip(c, frame, tun=NODE3):
    """The frame the uplink must send for a routed frame toward `tun` (an IPIP tunnel)."""
    pkt = routed_packet(frame)
    df = struct.unpack("!H", pkt[6:8])[0] & 0x4000   # DF copied, MF and offset not
    outer = ipv4_header(NODE_IP, tun["remote"], 4, len(pkt), next_outer_id(c), tos=outer_tos(pkt),
                        flags_frag=df, ttl=pkt[8])   # TTL: the inner TTL after the decrement
    out = eth(tun["next_hop_mac"], UPLINK_MAC, outer + pkt)
    assert len(out) == len(frame) + IPIP_OVERHEAD
    return out


def from_node2(pkt, dst_mac=VTEP_MAC):
    """An inner frame as node2's VTEP sends it (to our VTEP MAC by default)."""
    return eth(dst_mac, NODE2["vtep_mac"], pkt)


def vxlan_in(inner, src=NODE2["remote"], vni=1, flags=0x08, reserved=b"\0\0\0", reserved2=0,
             sport=None, dport=8472, csum=True, ident=0x7000, src_mac=NODE2["next_hop_mac"],
             flags_frag=0):
    """A VXLAN frame received on the uplink (outer Ethernet dst = the uplink MAC). sport:
    default as the peer would hash it (49999 when the inner frame holds no IPv4 header).
    csum: as udp_segment, or "bad": the valid checksum with bits flipped (neither 0 nor valid)."""
    if sport is None:
        inner_ip = inner[14:]
        ok = inner[12:14] == b"\x08\x00" and len(inner_ip) >= 20
        ok = ok and len(inner_ip) >= (inner_ip[0] & 0x0F) * 4 + 4
        sport = vxlan_source_port(inner_ip) if ok else 49999
    payload = vxlan_header(vni, flags, reserved, reserved2) + inner
    if csum == "bad":
        good = struct.unpack("!H", udp_segment(src, NODE_IP, sport, dport, payload)[6:8])[0]
        csum = good ^ 0x1111
        assert csum not in (0, 0xFFFF, good)
    seg = udp_segment(src, NODE_IP, sport, dport, payload, csum)
    return eth(UPLINK_MAC, src_mac, ipv4_header(src, NODE_IP, 17, len(seg), ident,
                                                flags_frag=flags_frag) + seg)


def ipip_in(pkt, src=NODE3["remote"], ident=0x7000, src_mac=NODE3["next_hop_mac"],
            flags_frag=None):
    """An IPIP frame received on the uplink; outer DF copied from the inner packet unless
    flags_frag is given."""
    if flags_frag is None:
        flags_frag = struct.unpack("!H", pkt[6:8])[0] & 0x4000 if len(pkt) >= 8 else 0
    return eth(UPLINK_MAC, src_mac, ipv4_header(src, NODE_IP, 4, len(pkt), ident,
                                                flags_frag=flags_frag) + pkt)


def decapsulated(pkt, dst_mac):
    """A decapsulated inner IPv4 packet (bytes) routed to a local pod."""
    return routed(eth(VTEP_MAC, NODE2["vtep_mac"], pkt), dst_mac)


def csum_of(frame):
    """Outer UDP checksum field of a VXLAN frame (IHL 5)."""
    return struct.unpack("!H", frame[40:42])[0]


# --- VXLAN encapsulation

@case
def vxlan_encap(c):
    """a routed packet for node2's subnet leaves the uplink VXLAN-encapsulated (outer ID 0, 1)"""
    tunnel_topology(c)
    c.tx("uplink", encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE2_POD, 100)))))
    # inner DSCP/ECN, and a DF-clear inner packet: the VXLAN outer header is always TOS 0, DF 0
    c.tx("uplink", encap_vxlan(c, c.rx("pod2", eth(GW_MAC, P2MAC, udp(
        P2IP, "10.244.2.9", 60, sport=53000, dport=7000, tos=0xB9, flags=0, ttl=5, id=0x2000)))))


@case
def vxlan_encap_udp_checksum_zero(c):
    """with vxlan_udp_checksum = false the outer UDP checksum is sent as 0"""
    tunnel_topology(c, udp_checksum=False)
    for pkt in (udp(P1IP, NODE2_POD, 100), echo(P1IP, NODE2_POD, id=0x1001)):
        out = encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, pkt)))
        assert csum_of(out) == 0
        c.tx("uplink", out)


@case
def vxlan_encap_udp_checksum_ffff(c):
    """an outer UDP checksum that computes to 0 is sent as 0xffff"""
    tunnel_topology(c)
    # Inner UDP without checksum (0) whose first two payload bytes are chosen so that the outer
    # checksum computes to 0 (they sit at an even offset of the outer UDP segment: 8 + 8 + 14 +
    # 20 + 8 = 58). The outer source port only depends on the inner addresses and ports.

    def frame(adjust):
        seg = UDP(sport=40000, dport=5000, chksum=0) / Raw(adjust + data(40))
        return eth(GW_MAC, P1MAC, ip(P1IP, NODE2_POD, seg))

    pkt = routed_packet(frame(b"\0\0"))
    payload = vxlan_payload(pkt, NODE2)
    seg = struct.pack("!HHHH", vxlan_source_port(pkt), NODE2["port"], 8 + len(payload), 0)
    adjust = udp_checksum_raw(NODE_IP, NODE2["remote"], seg + payload)
    out = encap_vxlan(c, c.rx("pod1", frame(struct.pack("!H", adjust))))
    assert csum_of(out) == 0xFFFF
    assert udp_checksum_raw(NODE_IP, NODE2["remote"], out[34:40] + b"\0\0" + out[42:]) == 0
    c.tx("uplink", out)


@case
def vxlan_encap_tcp_source_ports(c):
    """two TCP flows get two different outer source ports, stable per flow; outer IDs 0..3"""
    tunnel_topology(c)
    flows = [(41000, 8080, 1000), (41001, 8080, 5000)]    # (sport, dport, first seq)
    ports = {}
    for i in range(4):
        sport, dport, seq = flows[i % 2]
        f = eth(GW_MAC, P1MAC, tcp(P1IP, NODE2_POD, data(10, i), sport=sport, dport=dport,
                                   seq=seq + 10 * (i // 2), id=0x1000 + i))
        out = encap_vxlan(c, c.rx("pod1", f))
        assert struct.unpack("!H", out[18:20])[0] == i                 # outer ID
        ports.setdefault(sport, set()).add(struct.unpack("!H", out[34:36])[0])
        c.tx("uplink", out)
    assert all(len(p) == 1 for p in ports.values()) and len(set.union(*ports.values())) == 2


@case
def vxlan_encap_source_port_no_l4(c):
    """ICMP and fragments (first with MF, non-first) hash with ports 0 for the outer source port"""
    tunnel_topology(c)
    c.tx("uplink", encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, echo(P1IP, NODE2_POD)))))
    whole = bytes(udp(P1IP, NODE2_POD, 1000))[20:]
    first = ip(P1IP, NODE2_POD, Raw(whole[:504]), flags="MF", frag=0, id=0x3333, proto=17)
    rest = ip(P1IP, NODE2_POD, Raw(whole[504:]), flags=0, frag=504 // 8, id=0x3333, proto=17)
    outs = [encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, p))) for p in (first, rest)]
    src, dst = struct.unpack("!II", ip_bytes(P1IP) + ip_bytes(NODE2_POD))
    for out in outs:
        assert struct.unpack("!H", out[34:36])[0] == source_port_hash(src, dst, 17, 0, 0)
        c.tx("uplink", out)


# --- VXLAN decapsulation

@case
def vxlan_decap(c):
    """VXLAN from node2 (VNI 1, inner dst our VTEP MAC) is decapsulated and routed to the pods"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE2_POD, P1IP, 100, ttl=63))
    c.rx("uplink", vxlan_in(from_node2(pkt)))
    c.tx("pod1", decapsulated(pkt, P1MAC))
    pkt = bytes(tcp("10.244.2.9", P2IP, b"hello pod2", ttl=63, id=0x2000))
    c.rx("uplink", vxlan_in(from_node2(pkt), ident=0x7001))
    c.tx("pod2", decapsulated(pkt, P2MAC))


@case
def tunnel_decap_limits_send_no_icmp(c):
    """a decapsulated packet with TTL 1, or too big for the pod with DF, is dropped and counted
    with no ICMP error (it would have to go back through the tunnel)"""
    tunnel_topology(c)
    c.rx("uplink", vxlan_in(from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=1)))))
    c.drop("uplink", "ttl_expired")
    c.count("uplink", "tunnel_decapsulated")
    big = bytes(udp(NODE3_POD, P2IP, 1450 - 28 + 1, ttl=63, id=0x2001))
    c.rx("uplink", ipip_in(big, ident=0x7001))
    c.drop("uplink", "fragmentation_needed")
    c.count("uplink", "tunnel_decapsulated")


@case
def tunnel_decap_inner_arp_dropped(c):
    """ARP inside VXLAN (a request for the gateway, one for a pod) is dropped, never answered
    raw on the underlay"""
    tunnel_topology(c)
    for ident, target in ((0x7001, GW_IP), (0x7002, P1IP)):
        req = bytes(ARP(op=1, hwsrc=NODE2["vtep_mac"], psrc=NODE2_POD, pdst=target))
        c.rx("uplink", vxlan_in(eth(VTEP_MAC, NODE2["vtep_mac"], req, etype=0x0806),
                                ident=ident))
        c.drop("uplink", "tunnel_inner_arp")
        c.count("uplink", "tunnel_decapsulated")


@case
def vxlan_decap_checksum_zero_accepted(c):
    """an outer UDP checksum of 0 (no checksum, Linux's default for VXLAN over IPv4) is accepted"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE2_POD, P1IP, 100, ttl=63))
    f = c.rx("uplink", vxlan_in(from_node2(pkt), csum=False))
    assert csum_of(f) == 0
    c.tx("pod1", decapsulated(pkt, P1MAC))


@case
def vxlan_decap_checksum_valid_accepted(c):
    """a valid nonzero outer UDP checksum is accepted, also 0xffff for a sum computing to 0"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE2_POD, P1IP, 100, ttl=63))
    f = c.rx("uplink", vxlan_in(from_node2(pkt)))
    assert csum_of(f) not in (0, 0xFFFF)
    c.tx("pod1", decapsulated(pkt, P1MAC))
    # choose the (peer-chosen) outer source port so that the checksum computes to 0
    pkt = bytes(udp(NODE2_POD, P1IP, 60, ttl=63, id=0x1001))
    sport = csum_of(vxlan_in(from_node2(pkt), sport=0))
    f = c.rx("uplink", vxlan_in(from_node2(pkt), sport=sport, ident=0x7001))
    assert csum_of(f) == 0xFFFF and udp_checksum_raw(NODE2["remote"], NODE_IP,
                                                    f[34:40] + b"\0\0" + f[42:]) == 0
    c.tx("pod1", decapsulated(pkt, P1MAC))


@case
def vxlan_decap_bad_checksum(c):
    """an outer UDP checksum that is neither 0 nor valid is tunnel_bad_checksum"""
    tunnel_topology(c)
    c.rx("uplink", vxlan_in(from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63))), csum="bad"))
    c.drop("uplink", "tunnel_bad_checksum")


@case
def vxlan_decap_wrong_vni(c):
    """VXLAN from node2 with a VNI other than node2's (2, and 0x000101) is tunnel_wrong_vni"""
    tunnel_topology(c)
    inner = from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63)))
    c.rx("uplink", vxlan_in(inner, vni=2))
    c.rx("uplink", vxlan_in(inner, vni=0x101, ident=0x7001))
    c.drop("uplink", "tunnel_wrong_vni", 2)


@case
def vxlan_decap_unknown_peer(c):
    """VXLAN from an unknown underlay address, or from node3 (an IPIP peer) is unknown_peer"""
    tunnel_topology(c)
    inner = from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63)))
    c.rx("uplink", vxlan_in(inner, src=STRANGER_IP, src_mac="02:00:00:00:77:09"))
    c.rx("uplink", vxlan_in(inner, src=NODE3["remote"], src_mac=NODE3["next_hop_mac"]))
    c.drop("uplink", "tunnel_unknown_peer", 2)


@case
def vxlan_decap_bad_flags(c):
    """VXLAN flags 0x0c or 0x00, or nonzero reserved bytes, are tunnel_bad_header"""
    tunnel_topology(c)
    inner = from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63)))
    c.rx("uplink", vxlan_in(inner, flags=0x0C))
    c.rx("uplink", vxlan_in(inner, flags=0x00, ident=0x7001))
    c.rx("uplink", vxlan_in(inner, reserved=b"\0\x01\0", ident=0x7002))
    c.rx("uplink", vxlan_in(inner, reserved2=0x80, ident=0x7003))
    c.drop("uplink", "tunnel_bad_header", 4)


@case
def vxlan_decap_wrong_inner_mac(c):
    """an inner destination MAC other than our VTEP MAC (gateway, pod, broadcast) is dropped"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE2_POD, P1IP, 100, ttl=63))
    for i, mac in enumerate((GW_MAC, P1MAC, BCAST)):
        c.rx("uplink", vxlan_in(from_node2(pkt, dst_mac=mac), ident=0x7000 + i))
    c.drop("uplink", "tunnel_wrong_inner_mac", 3)


@case
def vxlan_decap_truncated(c):
    """outer UDP header cut (6 bytes), VXLAN header cut (4 bytes), inner frame of 13 bytes"""
    tunnel_topology(c)
    full = vxlan_in(from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63))), csum=False)
    seg = full[34:]

    def outer(payload, ident):
        return eth(UPLINK_MAC, NODE2["next_hop_mac"],
                   ipv4_header(NODE2["remote"], NODE_IP, 17, len(payload), ident) + payload)

    # the UDP datagram cut after its destination port and length (the port is still visible)
    c.rx("uplink", outer(seg[:6], 0x7000))
    # complete UDP header (length 12), 4 of the 8 VXLAN header bytes
    c.rx("uplink", outer(udp_segment(NODE2["remote"], NODE_IP, 50000, 8472,
                                     vxlan_header(1)[:4], csum=False), 0x7001))
    # complete VXLAN header, 13 bytes of inner frame
    c.rx("uplink", outer(udp_segment(NODE2["remote"], NODE_IP, 50000, 8472,
                                     vxlan_header(1) + from_node2(b"")[:13], csum=False), 0x7002))
    c.drop("uplink", "tunnel_malformed", 3)


@case
def vxlan_decap_truncated_inner_ip(c):
    """an inner frame whose IPv4 header is cut (10 of 20 bytes; IHL 6 with 20) is truncated_ipv4"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE2_POD, P1IP, 100, ttl=63))
    c.rx("uplink", vxlan_in(from_node2(pkt[:10])))
    cut = fix_ip_checksum(b"\0" * 14 + b"\x46" + pkt[1:20])[14:]    # claims 24 bytes, has 20
    c.rx("uplink", vxlan_in(from_node2(cut), ident=0x7001))
    c.drop("uplink", "truncated_ipv4", 2)


@case
def vxlan_decap_inner_parse_errors(c):
    """inner parse errors use the ordinary reasons: bad header checksum, IPv6, total length"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE2_POD, P1IP, 100, ttl=63))
    bad = pkt[:10] + bytes([pkt[10] ^ 0x11, pkt[11] ^ 0x11]) + pkt[12:]
    c.rx("uplink", vxlan_in(from_node2(bad)))
    c.rx("uplink", vxlan_in(eth(VTEP_MAC, NODE2["vtep_mac"], data(60), 0x86DD), ident=0x7001))
    long = fix_ip_checksum(b"\0" * 14 + pkt[:2] + struct.pack("!H", len(pkt) + 1) + pkt[4:])[14:]
    c.rx("uplink", vxlan_in(from_node2(long), ident=0x7002))
    c.drop("uplink", "bad_ipv4_checksum")
    c.drop("uplink", "ipv6_unsupported")
    c.drop("uplink", "bad_ipv4_total_length")


@case
def vxlan_decap_not_local(c):
    """decapsulated packets only reach local pods: node2's subnet, 8.8.8.8 or a free pod IP"""
    tunnel_topology(c)
    for i, dst in enumerate(("10.244.2.7", EXTERNAL_IP, UNKNOWN_POD_IP)):
        c.rx("uplink", vxlan_in(from_node2(bytes(udp(NODE2_POD, dst, 100, ttl=63))),
                                ident=0x7000 + i))
    c.drop("uplink", "tunnel_not_local", 3)


@case
def vxlan_decap_check_order(c):
    """a frame failing several VXLAN checks is dropped by the first in README order"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE2_POD, P1IP, 100, ttl=63))
    inner = from_node2(pkt)
    # malformed (inner frame 13 bytes) from an unknown peer, bad checksum and flags
    c.rx("uplink", vxlan_in(inner[:13], src=STRANGER_IP, csum="bad", flags=0))
    # unknown peer with a bad checksum and bad flags
    c.rx("uplink", vxlan_in(inner, src=STRANGER_IP, csum="bad", flags=0x0C, ident=0x7001))
    # bad checksum, bad flags, wrong VNI
    c.rx("uplink", vxlan_in(inner, csum="bad", flags=0x0C, vni=2, ident=0x7002))
    # bad flags, wrong VNI, wrong inner MAC
    c.rx("uplink", vxlan_in(from_node2(pkt, GW_MAC), flags=0x00, vni=2, ident=0x7003))
    # wrong VNI, wrong inner MAC
    c.rx("uplink", vxlan_in(from_node2(pkt, GW_MAC), vni=2, ident=0x7004))
    c.drop("uplink", "tunnel_malformed")
    c.drop("uplink", "tunnel_unknown_peer")
    c.drop("uplink", "tunnel_bad_checksum")
    c.drop("uplink", "tunnel_bad_header")
    c.drop("uplink", "tunnel_wrong_vni")


@case
def vxlan_fragmentation_needed(c):
    """toward VXLAN the MTU is 1500 - 50: 1450 passes; 1460 DF gets ICMP 3/4 1450; no DF drops"""
    tunnel_topology(c, pod1_mtu=1500)
    c.tx("uplink", encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE2_POD, 1422)))))
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE2_POD, 1432, id=0x1001)))
    assert len(f) == 14 + 1460
    c.tx("pod1", frag_needed(f, 1500 - VXLAN_OVERHEAD))
    c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE2_POD, 1432, id=0x1002, flags=0)))
    c.drop("pod1", "fragmentation_needed")
    c.drop("pod1", "exceeds_mtu")


# --- IPIP

@case
def ipip_encap(c):
    """IPIP outer header: TOS = inner ECN with CE as ECT(0), DSCP 0; DF copied; TTL after the hop"""
    tunnel_topology(c)
    # (inner TOS, DF?, TTL): ECN 0..3 under various DSCPs, DF set and clear, TTL 2 -> 1
    for i, (tos, df, ttl) in enumerate(((0x00, True, 64), (0xB9, True, 64), (0x2A, False, 10),
                                        (0x03, True, 2), (0xFF, False, 64))):
        f = eth(GW_MAC, P1MAC, udp(P1IP, NODE3_POD, 50 + i, tos=tos, flags="DF" if df else 0,
                                   ttl=ttl, id=0x1000 + i))
        out = encap_ipip(c, c.rx("pod1", f))
        assert out[15] == {0: 0, 1: 1, 2: 2, 3: 2}[tos & 3] and out[22] == ttl - 1
        c.tx("uplink", out)


@case
def ipip_decap(c):
    """IPIP from node3 is decapsulated and routed to the pods (TTL - 1, gateway MAC source)"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE3_POD, P1IP, 100, ttl=63))
    c.rx("uplink", ipip_in(pkt))
    c.tx("pod1", decapsulated(pkt, P1MAC))
    pkt = bytes(tcp("10.244.3.9", P2IP, b"hello pod2", ttl=63, flags="A", id=0x2000))
    c.rx("uplink", ipip_in(pkt, ident=0x7001))
    c.tx("pod2", decapsulated(pkt, P2MAC))


@case
def ipip_decap_unknown_peer(c):
    """IPIP from an unknown underlay address, or from node2 (a VXLAN peer), is unknown_peer"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE3_POD, P1IP, 100, ttl=63))
    c.rx("uplink", ipip_in(pkt, src=STRANGER_IP, src_mac="02:00:00:00:77:09"))
    c.rx("uplink", ipip_in(pkt, src=NODE2["remote"], src_mac=NODE2["next_hop_mac"],
                           ident=0x7001))
    c.drop("uplink", "tunnel_unknown_peer", 2)


@case
def ipip_decap_truncated_inner(c):
    """IPIP whose inner packet is under 20 bytes or claims more than the outer payload"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE3_POD, P1IP, 100, ttl=63))
    c.rx("uplink", ipip_in(pkt[:19]))
    c.rx("uplink", ipip_in(pkt[:-1], ident=0x7001))       # total length 1 byte beyond
    c.drop("uplink", "tunnel_malformed", 2)


@case
def ipip_decap_malformed_inner(c):
    """IPIP whose inner header has version 6, IHL 4 or a wrong checksum is tunnel_malformed"""
    tunnel_topology(c)
    pkt = bytes(udp(NODE3_POD, P1IP, 100, ttl=63))
    v6 = fix_ip_checksum(b"\0" * 14 + b"\x65" + pkt[1:])[14:]
    ihl4 = b"\x44" + pkt[1:]
    bad = pkt[:10] + bytes([pkt[10] ^ 0x11, pkt[11] ^ 0x11]) + pkt[12:]
    for i, inner in enumerate((v6, ihl4, bad)):
        c.rx("uplink", ipip_in(inner, ident=0x7000 + i))
    c.drop("uplink", "tunnel_malformed", 3)


@case
def ipip_decap_not_local(c):
    """decapsulated IPIP packets for node3's subnet or outside the cluster are not_local"""
    tunnel_topology(c)
    for i, dst in enumerate(("10.244.3.7", EXTERNAL_IP)):
        c.rx("uplink", ipip_in(bytes(udp(NODE3_POD, dst, 100, ttl=63)), ident=0x7000 + i))
    c.drop("uplink", "tunnel_not_local", 2)


@case
def ipip_fragmentation_needed(c):
    """toward IPIP the MTU is 1500 - 20: 1480 passes; 1481 with DF gets ICMP 3/4 with MTU 1480"""
    tunnel_topology(c, pod1_mtu=1500)
    c.tx("uplink", encap_ipip(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE3_POD, 1452)))))
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE3_POD, 1453, id=0x1001)))
    assert len(f) == 14 + 1481
    c.tx("pod1", frag_needed(f, 1500 - IPIP_OVERHEAD))
    c.drop("pod1", "fragmentation_needed")


# --- Both tunnels, the uplink

@case
def tunnel_route_selection(c):
    """node2's subnet goes over VXLAN, node3's over IPIP, other cluster IPs to host, pods local"""
    tunnel_topology(c)
    c.tx("uplink", encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE2_POD)))))
    c.tx("uplink", encap_ipip(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE3_POD,
                                                                       id=0x1001)))))
    c.tx("host", routed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, "10.244.4.5", id=0x1002))),
                        HOST_MAC))
    c.tx("pod2", routed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, id=0x1003))), P2MAC))
    c.tx("host", routed(c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, EXTERNAL_IP, id=0x1004))),
                        HOST_MAC))


@case
def tunnel_outer_id_counter(c):
    """one outer ID counter for both kinds, in processing order, across ports and batches"""
    tunnel_topology(c)
    c.tx("uplink", encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE2_POD)))))
    c.tx("uplink", encap_ipip(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE3_POD,
                                                                       id=0x1001)))))
    # not encapsulated (TTL expiry): no ID used
    c.tx("pod2", time_exceeded(c.rx("pod2", eth(GW_MAC, P2MAC, udp(P2IP, NODE2_POD, ttl=1)))))
    c.tx("uplink", encap_ipip(c, c.rx("pod2", eth(GW_MAC, P2MAC, tcp(P2IP, NODE3_POD, b"x",
                                                                       id=0x2001)))))
    c.tx("uplink", encap_vxlan(c, c.rx("host", eth(GW_MAC, HOST_MAC,
                                                   udp(HOST_SRC_IP, NODE2_POD, id=0x3000)))))
    c.tx("uplink", encap_vxlan(c, c.rx("pod1", eth(GW_MAC, P1MAC, echo(P1IP, "10.244.2.6",
                                                                        id=0x1002)))))
    assert c.outer_id == 5
    c.drop("pod2", "ttl_expired")


@case
def tunnel_decap_outer_fragment(c):
    """fragmented outer packets (VXLAN first fragment, IPIP non-first) are tunnel_malformed"""
    tunnel_topology(c)
    c.rx("uplink", vxlan_in(from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63))),
                            flags_frag=0x2000))                        # MF, offset 0
    c.rx("uplink", ipip_in(data(64), flags_frag=1480 // 8, ident=0x7001))
    c.drop("uplink", "tunnel_malformed", 2)


@case
def uplink_host_gw(c):
    """IPv4 for a local pod arriving on the uplink (host-gw routing by a peer) is routed"""
    tunnel_topology(c)
    f = c.rx("uplink", eth(UPLINK_MAC, NODE2["next_hop_mac"], udp(NODE2_POD, P1IP, 100, ttl=63)))
    c.tx("pod1", routed(f, P1MAC))
    f = c.rx("uplink", eth(UPLINK_MAC, NODE3["next_hop_mac"],
                           tcp(NODE3_POD, P2IP, b"hi", ttl=63, id=0x2000)))
    c.tx("pod2", routed(f, P2MAC))


@case
def uplink_unexpected(c):
    """SSH to the node IP, ARP, UDP 4789 to the node IP, a remote pod IP on the uplink: dropped"""
    tunnel_topology(c)
    c.rx("uplink", eth(UPLINK_MAC, NODE2["next_hop_mac"],
                       tcp(NODE2["remote"], NODE_IP, flags="S", sport=50022, dport=22, seq=1,
                           ack=0)))
    c.rx("uplink", arp_request(NODE2["next_hop_mac"], NODE2["remote"], NODE_IP))
    c.rx("uplink", vxlan_in(from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63))), dport=4789,
                            ident=0x7001))
    c.rx("uplink", eth(UPLINK_MAC, NODE3["next_hop_mac"], udp(NODE3_POD, NODE2_POD, id=0x7002)))
    c.drop("uplink", "uplink_unexpected", 4)


@case
def uplink_outer_parse_errors(c):
    """outer frames are parsed like any frame: bad header checksum, header cut short"""
    tunnel_topology(c)
    f = vxlan_in(from_node2(bytes(udp(NODE2_POD, P1IP, 100, ttl=63))))
    c.rx("uplink", patch(f, 24, bytes([f[24] ^ 0x11, f[25] ^ 0x11]), fix_checksum=False))
    c.rx("uplink", f[:30])
    c.drop("uplink", "bad_ipv4_checksum")
    c.drop("uplink", "truncated_ipv4")


@case
def ttl_expiry_before_encap(c):
    """TTL 1 or 0 toward a tunnel (even oversize) gets time exceeded, nothing is encapsulated"""
    tunnel_topology(c, pod1_mtu=1500)
    for pkt in (udp(P1IP, NODE2_POD, 100, ttl=1), tcp(P1IP, NODE3_POD, b"x", ttl=0, id=0x1001),
                udp(P1IP, NODE2_POD, 1432, ttl=1, id=0x1002)):
        c.tx("pod1", time_exceeded(c.rx("pod1", eth(GW_MAC, P1MAC, pkt))))
    c.drop("pod1", "ttl_expired", 3)


# ----------------------------------------------------------------------------------------------
# NetworkPolicy and connection tracking (README 'NetworkPolicy and connection tracking')
#
# Pods get a namespace and labels, the case a [policy] table, policy.yaml holds Kubernetes
# NetworkPolicy documents. Expected frames are the plain forwarding rules' (routed, switched,
# encapsulated, decapsulated); a frame the policy rules deny has no output and counts
# `policy_denied` on the port it arrived on.

P3MAC, P3IP = "0a:58:0a:f4:01:04", "10.244.1.4"
MACS = {"pod1": P1MAC, "pod2": P2MAC, "pod3": P3MAC, "host": HOST_MAC}
DENIED = "policy_denied"


def policy_topology(c, pod1, pod2, pod3=None, tunnels=False, conntrack_max=None,
                    namespaces=None):
    """Pods pod1, pod2 (and pod3 when given) as (namespace, labels), the host port (and, with
    tunnels, the uplink and tunnels of tunnel_topology); policies on."""
    if tunnels:
        tunnel_topology(c)
        for p, (ns, labels) in zip(c.ports, (pod1, pod2)):
            p["namespace"], p["labels"] = ns, labels
    else:
        c.ports = [pod("pod1", P1MAC, P1IP, namespace=pod1[0], labels=pod1[1]),
                   pod("pod2", P2MAC, P2IP, namespace=pod2[0], labels=pod2[1])]
        if pod3 is not None:
            c.ports.append(pod("pod3", P3MAC, P3IP, namespace=pod3[0], labels=pod3[1]))
        c.ports.append(host())
    c.policy = {"files": {}, "conntrack_max": conntrack_max, "namespaces": namespaces or {},
                "endpoints": [], "node_addresses": [HOST_SRC_IP]}


def netpol(c, name, spec, namespace="default", file="policy.yaml"):
    """Add a NetworkPolicy document (spec: the YAML under `spec:`, any indentation) to `file`."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    c.policy["files"].setdefault(file, []).append(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
        f"  name: {name}\n  namespace: {namespace}\nspec:\n{body}\n")


def endpoint(c, ip, namespace, labels=None):
    """A pod of another node, known to the policy inventory ([[policy.endpoint]])."""
    c.policy["endpoints"].append({"ip": ip, "namespace": namespace, "labels": labels or {}})


def route(c, src, pkt, to, after=0.001):
    """`pkt` received on port `src` (pod or host) addressed to the gateway MAC. `to`: the port
    its routed copy must leave on, or a drop reason counted on `src`."""
    f = c.rx(src, eth(GW_MAC, MACS[src], pkt), after=after)
    if to in MACS:
        c.tx(to, routed(f, MACS[to]))
    else:
        c.drop(src, to)
    return f


def syn(src, dst, sport=41000, dport=8080, seq=1000, **ipkw):
    return tcp(src, dst, flags="S", sport=sport, dport=dport, seq=seq, ack=0, **ipkw)


def echo_answer(src, dst, n=56, ident=0x4242, seq=1, **ipkw):
    """An ICMP echo reply as a pod sends it (not the switch's own reply)."""
    return ip(src, dst, ICMP(type=0, code=0, id=ident, seq=seq) / Raw(data(n, 0x30)), **ipkw)


def pod_icmp_error(src, dst, received, type, code, **ipkw):
    """An ICMP error a pod sends about a frame it received: the quote is that packet's IPv4
    header and its first 8 payload bytes, as received."""
    hdr, payload = ip_parts(received)
    return ip(src, dst, ICMP(type=type, code=code) / Raw(hdr + payload[:8]), flags=0, **ipkw)


DENY_DB_INGRESS = """
    podSelector:
      matchLabels:
        app: db
    policyTypes:
    - Ingress
"""


@case
def policy_not_selected_allows(c):
    """with policies in force, pods no policy selects (other labels, other namespace) pass all"""
    policy_topology(c, ("default", {"app": "web"}), ("default", {"app": "client"}))
    netpol(c, "deny-all", """
        podSelector: {}
        policyTypes:
        - Ingress
        - Egress
    """, namespace="prod")
    netpol(c, "db-deny-ingress", DENY_DB_INGRESS)
    route(c, "pod2", syn(P2IP, P1IP), "pod1")
    # a UDP "reply" and an echo reply nothing asked for: unselected pods are not protected
    route(c, "pod1", udp(P1IP, P2IP, sport=5353, dport=40000, id=0x1001), "pod2")
    route(c, "pod1", echo_answer(P1IP, P2IP, id=0x1002), "pod2")
    c.tx("pod2", c.rx("pod1", eth(P2MAC, P1MAC, udp(P1IP, P2IP, id=0x1003))))    # switched
    route(c, "host", udp(REMOTE_POD_IP, P1IP, id=0x3000), "pod1")
    route(c, "pod1", udp(P1IP, HOST_SRC_IP, dport=53, id=0x1004), "host")


@case
def policy_default_deny_ingress(c):
    """the documentation's default-deny-ingress: new flows into every pod are policy_denied"""
    policy_topology(c, ("default", {"app": "web"}), ("default", {"app": "client"}))
    netpol(c, "default-deny-ingress", """
        podSelector: {}
        policyTypes:
        - Ingress
    """)
    route(c, "pod2", syn(P2IP, P1IP), DENIED)
    route(c, "pod1", udp(P1IP, P2IP), DENIED)
    c.rx("pod1", eth(P2MAC, P1MAC, udp(P1IP, P2IP, id=0x1001)))                 # switched
    c.drop("pod1", DENIED)
    route(c, "pod2", echo(P2IP, P1IP, id=0x2001), DENIED)
    route(c, "host", udp(REMOTE_POD_IP, P1IP, id=0x3000), DENIED)     # cluster source via host
    # egress is not covered: a pod reaches the node; the gateway still answers its ping
    route(c, "pod1", udp(P1IP, HOST_SRC_IP, dport=53, id=0x1002), "host")
    c.tx("pod1", echo_reply(c.rx("pod1", eth(GW_MAC, P1MAC, echo(P1IP, GW_IP, id=0x1003)))))
    c.count("pod1", "icmp_echo_replies")


@case
def policy_default_deny_egress(c):
    """the documentation's default-deny-egress: new flows out of every pod are policy_denied"""
    policy_topology(c, ("default", {"app": "web"}), ("default", {"app": "client"}))
    netpol(c, "default-deny-egress", """
        podSelector: {}
        policyTypes:
        - Egress
    """)
    route(c, "pod1", udp(P1IP, P2IP), DENIED)
    c.rx("pod1", eth(P2MAC, P1MAC, udp(P1IP, P2IP, id=0x1001)))                 # switched
    c.drop("pod1", DENIED)
    route(c, "pod1", udp(P1IP, HOST_SRC_IP, dport=53, id=0x1002), DENIED)
    route(c, "pod2", syn(P2IP, P1IP, id=0x2000), DENIED)
    # the switch's own answers are not judged
    c.tx("pod1", arp_answer(c.rx("pod1", arp_request(P1MAC, P1IP, GW_IP)), GW_MAC))
    c.tx("pod1", echo_reply(c.rx("pod1", eth(GW_MAC, P1MAC, echo(P1IP, GW_IP, id=0x1003)))))
    c.count("pod1", "arp_replies")
    c.count("pod1", "icmp_echo_replies")
    # ingress is not covered; the reply of an accepted connection passes the egress policy
    route(c, "host", syn(REMOTE_POD_IP, P1IP, dport=80, id=0x3000), "pod1")
    route(c, "pod1", tcp(P1IP, REMOTE_POD_IP, flags="SA", sport=80, dport=41000, seq=7000,
                         ack=1001, id=0x1004), "host")


@case
def policy_allow_pod_label(c):
    """ingress from podSelector app=api: api pods (local, remote) pass any protocol; others not"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}),
                    ("default", {"app": "web"}))
    endpoint(c, REMOTE_POD_IP, "default", {"app": "api"})
    netpol(c, "db-from-api", """
        podSelector:
          matchLabels:
            app: db
        ingress:
        - from:
          - podSelector:
              matchLabels:
                app: api
    """)
    route(c, "pod2", syn(P2IP, P1IP, dport=5432), "pod1")
    route(c, "pod2", udp(P2IP, P1IP, id=0x2001), "pod1")
    route(c, "pod2", echo(P2IP, P1IP, id=0x2002), "pod1")
    route(c, "pod3", syn(P3IP, P1IP, dport=5432, id=0x3000), DENIED)
    route(c, "host", syn(REMOTE_POD_IP, P1IP, dport=5432, id=0x4000), "pod1")
    route(c, "host", syn("10.244.2.6", P1IP, dport=5432, id=0x4001), DENIED)  # not an endpoint
    route(c, "pod1", udp(P1IP, P3IP, id=0x1000), "pod3")              # egress not selected


@case
def policy_pod_selector_own_namespace(c):
    """a podSelector peer only matches pods of the policy's namespace, even with the right label"""
    policy_topology(c, ("default", {"app": "db"}), ("other", {"app": "api"}))
    endpoint(c, REMOTE_POD_IP, "other", {"app": "api"})
    endpoint(c, "10.244.2.6", "default", {"app": "api"})
    netpol(c, "db-from-api", """
        podSelector:
          matchLabels:
            app: db
        ingress:
        - from:
          - podSelector:
              matchLabels:
                app: api
    """)
    route(c, "pod2", syn(P2IP, P1IP, dport=5432), DENIED)
    route(c, "host", syn(REMOTE_POD_IP, P1IP, dport=5432, id=0x4000), DENIED)
    route(c, "host", syn("10.244.2.6", P1IP, dport=5432, id=0x4001), "pod1")


@case
def policy_namespace_selector(c):
    """namespaceSelector by namespace label and by kubernetes.io/metadata.name, local and remote"""
    policy_topology(c, ("default", {"app": "db"}), ("prod", {"app": "api"}),
                    ("default", {"app": "api"}),
                    namespaces={"prod": {"team": "a"}, "dev": {"team": "b"}})
    endpoint(c, REMOTE_POD_IP, "prod")
    endpoint(c, "10.244.2.6", "dev", {"app": "api"})
    endpoint(c, "10.244.2.7", "monitoring", {"app": "prometheus"})
    netpol(c, "db-from-team-a", """
        podSelector:
          matchLabels:
            app: db
        ingress:
        - from:
          - namespaceSelector:
              matchLabels:
                team: a
        - from:
          - namespaceSelector:
              matchLabels:
                kubernetes.io/metadata.name: monitoring
          ports:
          - protocol: TCP
            port: 9100
    """)
    route(c, "pod2", syn(P2IP, P1IP, dport=5432), "pod1")                 # prod: team=a
    route(c, "pod3", syn(P3IP, P1IP, dport=5432, id=0x3000), DENIED)      # default: no team
    route(c, "host", syn(REMOTE_POD_IP, P1IP, dport=5432, id=0x4000), "pod1")
    route(c, "host", syn("10.244.2.6", P1IP, dport=5432, id=0x4001), DENIED)        # dev
    route(c, "host", syn("10.244.2.7", P1IP, dport=9100, id=0x4002), "pod1")        # monitoring
    route(c, "host", syn("10.244.2.7", P1IP, dport=80, id=0x4003), DENIED)


@case
def policy_namespace_and_pod_selector(c):
    """namespaceSelector and podSelector in one peer: both must match (team=a and app=api)"""
    policy_topology(c, ("default", {"app": "db"}), ("prod", {"app": "api"}),
                    ("prod", {"app": "web"}),
                    namespaces={"prod": {"team": "a"}, "dev": {"team": "b"}})
    endpoint(c, REMOTE_POD_IP, "dev", {"app": "api"})
    endpoint(c, "10.244.2.6", "prod", {"app": "api"})
    endpoint(c, "10.244.2.7", "default", {"app": "api"})
    netpol(c, "db-from-team-a-api", """
        podSelector:
          matchLabels:
            app: db
        ingress:
        - from:
          - namespaceSelector:
              matchLabels:
                team: a
            podSelector:
              matchLabels:
                app: api
    """)
    route(c, "pod2", syn(P2IP, P1IP, dport=5432), "pod1")
    route(c, "pod3", syn(P3IP, P1IP, dport=5432, id=0x3000), DENIED)      # team=a, app=web
    route(c, "host", syn(REMOTE_POD_IP, P1IP, dport=5432, id=0x4000), DENIED)   # team=b
    route(c, "host", syn("10.244.2.6", P1IP, dport=5432, id=0x4001), "pod1")
    route(c, "host", syn("10.244.2.7", P1IP, dport=5432, id=0x4002), DENIED)    # no team


@case
def policy_ipblock_except(c):
    """ipBlock with except, ingress (pod and host-port sources) and egress (node network)"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}))
    netpol(c, "db-blocks", """
        podSelector:
          matchLabels:
            app: db
        policyTypes:
        - Ingress
        - Egress
        ingress:
        - from:
          - ipBlock:
              cidr: 10.244.0.0/16
              except:
              - 10.244.2.0/24
        egress:
        - to:
          - ipBlock:
              cidr: 192.168.1.0/24
              except:
              - 192.168.1.128/25
    """)
    route(c, "pod2", syn(P2IP, P1IP, dport=5432), "pod1")
    route(c, "host", syn("10.244.4.9", P1IP, dport=5432, id=0x4000), "pod1")
    route(c, "host", syn("10.244.2.9", P1IP, dport=5432, id=0x4001), DENIED)   # excepted
    route(c, "pod1", udp(P1IP, HOST_SRC_IP, dport=53), "host")
    route(c, "pod1", udp(P1IP, "192.168.1.200", dport=53, id=0x1001), DENIED)  # excepted
    route(c, "pod1", udp(P1IP, P2IP, id=0x1002), DENIED)                # not in the egress block
    # the reply to pod2's connection passes the egress policy
    route(c, "pod1", tcp(P1IP, P2IP, flags="SA", sport=5432, dport=41000, seq=7000, ack=1001,
                         id=0x1003), "pod2")


@case
def policy_port_range(c):
    """TCP port 32000 endPort 32768 and UDP 53: inside and both edges pass; outside and other
    protocols (UDP 32000, TCP 53, ICMP) are denied"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}))
    netpol(c, "db-ports", """
        podSelector:
          matchLabels:
            app: db
        ingress:
        - ports:
          - protocol: TCP
            port: 32000
            endPort: 32768
          - protocol: UDP
            port: 53
    """)
    for i, (pkt, to) in enumerate((
            (syn(P2IP, P1IP, dport=31999), DENIED),
            (syn(P2IP, P1IP, dport=32000), "pod1"),
            (syn(P2IP, P1IP, dport=32400), "pod1"),
            (syn(P2IP, P1IP, dport=32768), "pod1"),
            (syn(P2IP, P1IP, dport=32769), DENIED),
            (udp(P2IP, P1IP, dport=32000), DENIED),
            (udp(P2IP, P1IP, dport=53), "pod1"),
            (syn(P2IP, P1IP, dport=53), DENIED),
            (echo(P2IP, P1IP), DENIED))):
        pkt.id = 0x2000 + i
        route(c, "pod2", pkt, to)


@case
def policy_tcp_reply(c):
    """a connection the policy allowed passes both ways (handshake, data, FIN) though the server
    may not send new flows; a new connection from the server is denied"""
    policy_topology(c, ("default", {"app": "client"}), ("default", {"app": "web"}))
    netpol(c, "web", """
        podSelector:
          matchLabels:
            app: web
        policyTypes:
        - Ingress
        - Egress
        ingress:
        - from:
          - podSelector:
              matchLabels:
                app: client
          ports:
          - protocol: TCP
            port: 8080
    """)
    conv = [("pod1", "S", 1000, 0, b""), ("pod2", "SA", 5000, 1001, b""),
            ("pod1", "A", 1001, 5001, b""), ("pod1", "PA", 1001, 5001, b"GET / HTTP/1.1\r\n\r\n"),
            ("pod2", "PA", 5001, 1019, b"HTTP/1.1 200 OK\r\n\r\n"), ("pod2", "FA", 5020, 1019, b""),
            ("pod1", "FA", 1019, 5021, b""), ("pod2", "A", 5021, 1020, b"")]
    for i, (side, flags, seq, ack, payload) in enumerate(conv):
        if side == "pod1":
            pkt = tcp(P1IP, P2IP, payload, flags=flags, seq=seq, ack=ack, id=0x1000 + i)
            route(c, "pod1", pkt, "pod2")
        else:
            pkt = tcp(P2IP, P1IP, payload, flags=flags, sport=8080, dport=41000, seq=seq,
                      ack=ack, id=0x2000 + i)
            route(c, "pod2", pkt, "pod1")
    route(c, "pod2", syn(P2IP, P1IP, sport=42000, dport=8080, id=0x2010), DENIED)   # egress
    route(c, "pod1", syn(P1IP, P2IP, sport=41001, dport=9090, id=0x1010), DENIED)   # port


@case
def policy_reply_without_connection(c):
    """a SYN-ACK, UDP or echo reply toward a protected pod without a prior connection is judged
    as new and denied; the real reply of a tracked UDP flow passes"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}))
    netpol(c, "db-deny-ingress", DENY_DB_INGRESS)
    route(c, "pod2", tcp(P2IP, P1IP, flags="SA", sport=8080, dport=41000, seq=5000, ack=1001),
          DENIED)
    route(c, "pod2", udp(P2IP, P1IP, sport=5000, dport=40000, id=0x2001), DENIED)
    route(c, "pod2", echo_answer(P2IP, P1IP, id=0x2002), DENIED)
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5000), "pod2")
    route(c, "pod2", udp(P2IP, P1IP, sport=5000, dport=40000, id=0x2003), "pod1")
    route(c, "pod2", udp(P2IP, P1IP, sport=5001, dport=40000, id=0x2004), DENIED)  # other port


@case
def policy_icmp_related(c):
    """ICMP errors quoting a tracked flow pass as related (policy_related); one quoting an
    unknown flow is a new ICMP flow and denied"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}))
    netpol(c, "db-deny-ingress", DENY_DB_INGRESS)
    u = route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5000), "pod2")
    route(c, "pod2", pod_icmp_error(P2IP, P1IP, routed(u, P2MAC), 3, 3, id=0x2000), "pod1")
    t = route(c, "pod1", syn(P1IP, P2IP, dport=9, id=0x1001), "pod2")
    route(c, "pod2", pod_icmp_error(P2IP, P1IP, routed(t, P2MAC), 3, 13, id=0x2001), "pod1")
    c.count("pod2", "policy_related", 2)
    never = routed(eth(GW_MAC, P1MAC, udp(P1IP, P2IP, sport=40001, dport=5001, id=0x1002)),
                   P2MAC)
    route(c, "pod2", pod_icmp_error(P2IP, P1IP, never, 3, 3, id=0x2002), DENIED)


@case
def policy_egress(c):
    """egress rules: pods by label on a port, an ipBlock on UDP 53; other destinations denied;
    replies to connections into the pod still pass"""
    policy_topology(c, ("default", {"app": "client"}), ("default", {"app": "web"}),
                    ("default", {"app": "db"}))
    netpol(c, "client-egress", """
        podSelector:
          matchLabels:
            app: client
        policyTypes:
        - Egress
        egress:
        - to:
          - podSelector:
              matchLabels:
                app: web
          ports:
          - protocol: TCP
            port: 8080
        - to:
          - ipBlock:
              cidr: 192.168.1.0/24
          ports:
          - protocol: UDP
            port: 53
    """)
    route(c, "pod1", syn(P1IP, P2IP, dport=8080), "pod2")
    route(c, "pod1", syn(P1IP, P2IP, sport=41001, dport=9090, id=0x1001), DENIED)
    route(c, "pod1", syn(P1IP, P3IP, sport=41002, dport=8080, id=0x1002), DENIED)
    route(c, "pod1", udp(P1IP, "192.168.1.53", dport=53, id=0x1003), "host")
    route(c, "pod1", udp(P1IP, "192.168.2.53", dport=53, id=0x1004), DENIED)
    route(c, "pod1", echo(P1IP, P2IP, id=0x1005), DENIED)
    route(c, "pod2", tcp(P2IP, P1IP, flags="SA", sport=8080, dport=41000, seq=5000, ack=1001,
                         id=0x2000), "pod1")
    route(c, "pod3", syn(P3IP, P1IP, sport=43000, dport=22, id=0x3000), "pod1")   # ingress open
    route(c, "pod1", tcp(P1IP, P3IP, flags="SA", sport=22, dport=43000, seq=9000, ack=1001,
                         id=0x1006), "pod3")


@case
def policy_tunnel_ingress(c):
    """ingress judged on decapsulated traffic: VXLAN and IPIP sources by endpoint labels;
    replies are encapsulated"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "web"}), tunnels=True)
    endpoint(c, NODE2_POD, "default", {"app": "frontend"})
    endpoint(c, "10.244.2.6", "default", {"app": "batch"})
    endpoint(c, NODE3_POD, "default", {"app": "frontend"})
    netpol(c, "db-from-frontend", """
        podSelector:
          matchLabels:
            app: db
        ingress:
        - from:
          - podSelector:
              matchLabels:
                app: frontend
    """)
    pkt = bytes(syn(NODE2_POD, P1IP, dport=6379, ttl=63))
    c.rx("uplink", vxlan_in(from_node2(pkt)))
    c.tx("pod1", decapsulated(pkt, P1MAC))
    reply = c.rx("pod1", eth(GW_MAC, P1MAC, tcp(P1IP, NODE2_POD, flags="SA", sport=6379,
                                                  dport=41000, seq=5000, ack=1001)))
    c.tx("uplink", encap_vxlan(c, reply))
    pkt = bytes(udp("10.244.2.6", P1IP, 100, ttl=63, id=0x2000))            # app=batch
    c.rx("uplink", vxlan_in(from_node2(pkt), ident=0x7001))
    c.drop("uplink", DENIED)
    pkt = bytes(udp(NODE3_POD, P1IP, 100, ttl=63, id=0x3000))
    c.rx("uplink", ipip_in(pkt, ident=0x7002))
    c.tx("pod1", decapsulated(pkt, P1MAC))
    pkt = bytes(udp("10.244.3.6", P1IP, 100, ttl=63, id=0x3001))            # not an endpoint
    c.rx("uplink", ipip_in(pkt, ident=0x7003))
    c.drop("uplink", DENIED)
    c.rx("uplink", eth(UPLINK_MAC, NODE3["next_hop_mac"],                   # host-gw style
                       udp("10.244.3.6", P1IP, 100, ttl=63, id=0x3002)))
    c.drop("uplink", DENIED)
    pkt = bytes(udp("10.244.2.6", P2IP, 100, ttl=63, id=0x2001))            # pod2: unselected
    c.rx("uplink", vxlan_in(from_node2(pkt), ident=0x7004))
    c.tx("pod2", decapsulated(pkt, P2MAC))
    c.tx("uplink", encap_ipip(c, c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, NODE3_POD,
                                                                       id=0x1001)))))


@case
def policy_conntrack_full(c):
    """conntrack_max = 4 (one bucket): with four replied flows a fifth new flow (UDP, TCP, ICMP
    echo) is dropped as conntrack_full; the tracked flows keep working"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}), conntrack_max=4)
    netpol(c, "db-deny-ingress", DENY_DB_INGRESS)
    for p in (5001, 5002, 5003, 5004):
        route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=p, id=0x1000 + p - 5000), "pod2")
    for p in (5001, 5002, 5003, 5004):
        route(c, "pod2", udp(P2IP, P1IP, sport=p, dport=40000, id=0x2000 + p - 5000), "pod1")
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5005, id=0x1005), "conntrack_full")
    route(c, "pod1", syn(P1IP, P2IP, id=0x1006), "conntrack_full")
    route(c, "pod1", echo(P1IP, P2IP, id=0x1007), "conntrack_full")
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5001, id=0x1008), "pod2")
    route(c, "pod2", udp(P2IP, P1IP, sport=5005, dport=40000, id=0x2005), DENIED)  # not tracked


@case
def policy_conntrack_evict(c):
    """a new flow in a full bucket evicts the unreplied flow expiring first (conntrack_evicted);
    the evicted flow's late reply is then judged and denied"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}), conntrack_max=4)
    netpol(c, "db-deny-ingress", DENY_DB_INGRESS)

    def out(p, ident, to="pod2"):
        route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=p, id=ident), to, after=1)

    def back(p, ident, to="pod1"):
        route(c, "pod2", udp(P2IP, P1IP, sport=p, dport=40000, id=ident), to, after=1)

    # flows A..D one second apart, each in its own batch: A and C replied, B and D not
    out(5001, 0x1001)
    back(5001, 0x2001)
    out(5002, 0x1002)
    back(5001, 0x2002)
    out(5003, 0x1003)
    back(5003, 0x2003)
    out(5004, 0x1004)
    back(5003, 0x2004)
    out(5005, 0x1005)                 # E evicts B (unreplied, expires before D)
    c.count("pod1", "conntrack_evicted")
    back(5002, 0x2005, DENIED)        # B's reply: no connection any more
    back(5004, 0x2006)                # D is still tracked
    back(5005, 0x2007)
    out(5006, 0x1006, "conntrack_full")     # A, C, D, E all replied


@case
def policy_external_client_via_host(c):
    """a client outside the cluster reaching a pod through the host port (a Service DNAT-ed by
    the node) is judged at ingress by ipBlock; only the node's own addresses are node traffic"""
    policy_topology(c, ("default", {"app": "web"}), ("default", {"app": "api"}))
    netpol(c, "web-from-lan", """
        podSelector:
          matchLabels:
            app: web
        ingress:
        - from:
          - ipBlock:
              cidr: 192.168.50.0/24
              except:
              - 192.168.50.128/25
          ports:
          - port: 8080
    """)
    route(c, "host", syn("192.168.50.7", P1IP, sport=50000), "pod1")
    route(c, "pod1", tcp(P1IP, "192.168.50.7", flags="SA", sport=8080, dport=50000, seq=5000,
                         ack=1001), "host")
    route(c, "host", syn("192.168.50.200", P1IP, sport=50001, id=0x3001), DENIED)
    route(c, "host", syn("192.168.60.7", P1IP, sport=50002, id=0x3002), DENIED)
    route(c, "host", syn("192.168.50.7", P1IP, sport=50003, dport=22, id=0x3003), DENIED)
    route(c, "host", syn(HOST_SRC_IP, P1IP, sport=50004, dport=22, id=0x3004), "pod1")
    route(c, "host", syn("192.168.60.7", P2IP, sport=50005, id=0x3005), "pod2")


@case
def policy_node_to_pod(c):
    """traffic from the node (host port, non-cluster source) reaches a pod denying all, and the
    pod's replies pass; the pod's own new flows and cluster sources are denied"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}))
    netpol(c, "db-deny-all", """
        podSelector:
          matchLabels:
            app: db
        policyTypes:
        - Ingress
        - Egress
    """)
    route(c, "host", syn(HOST_SRC_IP, P1IP, sport=50000, dport=8080), "pod1")
    route(c, "pod1", tcp(P1IP, HOST_SRC_IP, flags="SA", sport=8080, dport=50000, seq=5000,
                         ack=1001, id=0x1000), "host")
    route(c, "host", tcp(HOST_SRC_IP, P1IP, flags="A", sport=50000, dport=8080, seq=1001,
                         ack=5001, id=0x3001), "pod1")
    route(c, "host", echo(HOST_SRC_IP, P1IP, id=0x3002), "pod1")
    route(c, "pod1", echo_answer(P1IP, HOST_SRC_IP, id=0x1001), "host")
    route(c, "pod1", udp(P1IP, HOST_SRC_IP, dport=53, id=0x1002), DENIED)
    route(c, "host", syn(REMOTE_POD_IP, P1IP, sport=50001, id=0x3003), DENIED)


K8S_DOCS_EXAMPLE = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
"""


@case
def policy_k8s_docs_example(c):
    """the Kubernetes documentation's test-network-policy, verbatim: ipBlock with except,
    namespaceSelector, podSelector on TCP 6379; egress to 10.0.0.0/24 on TCP 5978"""
    policy_topology(c, ("default", {"role": "db"}), ("default", {"role": "frontend"}),
                    tunnels=True, namespaces={"myproject": {"project": "myproject"}})
    endpoint(c, NODE2_POD, "myproject")
    endpoint(c, "10.244.2.6", "other", {"role": "frontend"})
    c.policy["files"]["policy.yaml"] = [K8S_DOCS_EXAMPLE]
    # ipBlock: a client of the 172.17.0.0/16 network routed to us on the uplink (host-gw)
    f = c.rx("uplink", eth(UPLINK_MAC, NODE2["next_hop_mac"],
                           syn("172.17.0.9", P1IP, dport=6379, ttl=63, id=0x7000)))
    c.tx("pod1", routed(f, P1MAC))
    c.rx("uplink", eth(UPLINK_MAC, NODE2["next_hop_mac"],
                       syn("172.17.1.9", P1IP, dport=6379, ttl=63, id=0x7001)))
    c.drop("uplink", DENIED)
    # namespaceSelector project=myproject; a role=frontend pod of another namespace
    pkt = bytes(syn(NODE2_POD, P1IP, dport=6379, ttl=63, id=0x2000))
    c.rx("uplink", vxlan_in(from_node2(pkt), ident=0x7002))
    c.tx("pod1", decapsulated(pkt, P1MAC))
    pkt = bytes(syn("10.244.2.6", P1IP, dport=6379, ttl=63, id=0x2001))
    c.rx("uplink", vxlan_in(from_node2(pkt), ident=0x7003))
    c.drop("uplink", DENIED)
    # podSelector role=frontend: TCP 6379 only
    route(c, "pod2", syn(P2IP, P1IP, dport=6379), "pod1")
    route(c, "pod2", syn(P2IP, P1IP, sport=41001, dport=6380, id=0x1001), DENIED)
    route(c, "pod2", udp(P2IP, P1IP, dport=6379, id=0x1002), DENIED)
    # egress: replies pass; new flows only to 10.0.0.0/24 TCP 5978
    route(c, "pod1", tcp(P1IP, P2IP, flags="SA", sport=6379, dport=41000, seq=5000, ack=1001),
          "pod2")
    route(c, "pod1", tcp(P1IP, "172.17.0.9", flags="SA", sport=6379, dport=41000, seq=6000,
                         ack=1001, id=0x1001), "host")
    route(c, "pod1", syn(P1IP, "10.0.0.7", sport=42000, dport=5978, id=0x1002), "host")
    route(c, "pod1", syn(P1IP, "10.0.0.7", sport=42001, dport=5979, id=0x1003), DENIED)
    route(c, "pod1", syn(P1IP, "10.0.1.7", sport=42002, dport=5978, id=0x1004), DENIED)
    route(c, "pod1", udp(P1IP, P2IP, id=0x1005), DENIED)


@case
def policy_udp_expiry(c):
    """an unreplied UDP flow lives 30 s (a reply at +31 s is judged and denied), a replied one
    120 s after its last frame"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}))
    netpol(c, "db-deny-ingress", DENY_DB_INGRESS)
    t0 = c.clock + 1000
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5001), "pod2")           # A, now = t0
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5002, id=0x1001), "pod2")   # B, same batch
    route(c, "pod2", udp(P2IP, P1IP, sport=5002, dport=40000, id=0x2000), "pod1",
          after=29 - 0.001)                                                         # B at +29 s
    # pod1 frames between pod2's keep every pod2 frame in a batch of its own (now = its time)
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5003, id=0x1002), "pod2", after=1)
    route(c, "pod2", udp(P2IP, P1IP, sport=5001, dport=40000, id=0x2001), DENIED, after=1)
    assert c.clock - t0 == 31_000_000                                               # A at +31 s
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5003, id=0x1003), "pod2", after=69)
    route(c, "pod2", udp(P2IP, P1IP, sport=5002, dport=40000, id=0x2002), "pod1", after=48)
    assert c.clock - t0 == 148_000_000            # B at +148 s: 119 s after its last frame
    route(c, "pod1", udp(P1IP, P2IP, sport=40000, dport=5003, id=0x1004), "pod2", after=60)
    route(c, "pod2", udp(P2IP, P1IP, sport=5002, dport=40000, id=0x2003), DENIED, after=61)
    assert c.clock - t0 == 269_000_000            # B at +269 s: 121 s after its last frame


@case
def policy_fragments(c):
    """non-first fragments carry no ports: only a rule without ports allows them"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}),
                    ("default", {"app": "admin"}))
    netpol(c, "db-ingress", """
        podSelector:
          matchLabels:
            app: db
        ingress:
        - from:
          - podSelector:
              matchLabels:
                app: api
          ports:
          - protocol: UDP
            port: 5000
        - from:
          - podSelector:
              matchLabels:
                app: admin
    """)
    for port, src, ident, to in (("pod2", P2IP, 0x2000, DENIED), ("pod3", P3IP, 0x3000, "pod1")):
        whole = bytes(udp(src, P1IP, 1000))[20:]
        first = ip(src, P1IP, Raw(whole[:504]), flags="MF", frag=0, id=ident, proto=17)
        rest = ip(src, P1IP, Raw(whole[504:]), flags=0, frag=504 // 8, id=ident, proto=17)
        route(c, port, first, "pod1")
        route(c, port, rest, to)


@case
def policy_before_limits(c):
    """policy is applied before TTL and MTU: a denied packet gets no ICMP error; an allowed one
    does, and the switch's own ICMP errors reach a pod whose ingress denies all"""
    policy_topology(c, ("default", {"app": "db"}), ("default", {"app": "api"}))
    for p in c.ports[:2]:
        p["mtu"] = 1400
    netpol(c, "db-deny-ingress", DENY_DB_INGRESS)
    route(c, "pod2", udp(P2IP, P1IP, ttl=1), DENIED)
    route(c, "pod2", udp(P2IP, P1IP, 1400, id=0x2001), DENIED)      # 1428 > 1400, DF
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, ttl=1, id=0x1000)))
    c.tx("pod1", time_exceeded(f))
    f = c.rx("pod1", eth(GW_MAC, P1MAC, udp(P1IP, P2IP, 1400, id=0x1001)))
    c.tx("pod1", frag_needed(f, 1400))
    c.drop("pod1", "ttl_expired")
    c.drop("pod1", "fragmentation_needed")


# ----------------------------------------------------------------------------------------------

def generate(root):
    names = []
    for fn in CASES:
        c = Case(fn.__name__, " ".join(fn.__doc__.split()))
        fn(c)
        c.write(root)
        names.append(c.name)
    assert len(set(names)) == len(names)
    return names


def case_dirs(root):
    return sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "case.toml")))


def compare(generated, committed):
    diffs = []
    gen, com = set(case_dirs(generated)), set(case_dirs(committed))
    diffs += [f"missing case folder: {d}" for d in sorted(gen - com)]
    diffs += [f"stale case folder (not generated): {d}" for d in sorted(com - gen)]
    for d in sorted(gen & com):
        gf = set(os.listdir(os.path.join(generated, d)))
        cf = set(os.listdir(os.path.join(committed, d)))
        diffs += [f"{d}/{f}: missing" for f in sorted(gf - cf)]
        diffs += [f"{d}/{f}: not generated" for f in sorted(cf - gf)]
        for f in sorted(gf & cf):
            with open(os.path.join(generated, d, f), "rb") as a, \
                    open(os.path.join(committed, d, f), "rb") as b:
                if a.read() != b.read():
                    diffs.append(f"{d}/{f}: content differs")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="compare a fresh generation with the committed cases, exit 1 if any differ")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            diffs = compare(tmp, HERE)
        for d in diffs:
            print(d)
        print(f"{len(diffs)} difference(s)" if diffs else "pcap cases up to date")
        return 1 if diffs else 0
    names = generate(HERE)
    for d in case_dirs(HERE):
        if d not in names:
            shutil.rmtree(os.path.join(HERE, d))
            print(f"removed stale case {d}")
    print(f"wrote {len(names)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
