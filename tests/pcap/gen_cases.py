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
HOST_SRC_IP = "192.168.1.10"        # a source behind the (trusted) host port, e.g. the node IP
EXT_MAC = "02:00:00:00:00:0a"       # a MAC behind the host port, learned by the FDB
P1MAC, P1IP = "0a:58:0a:f4:01:02", "10.244.1.2"
P2MAC, P2IP = "0a:58:0a:f4:01:03", "10.244.1.3"
UNKNOWN_POD_IP = "10.244.1.50"      # inside pod_cidr, no such pod
REMOTE_POD_IP = "10.244.2.5"        # a pod of another node (cluster_cidr, not pod_cidr)
EXTERNAL_IP = "8.8.8.8"


def pod(name, mac, ip, mtu=1500):
    return {"name": name, "kind": "pod", "mac": mac, "ip": ip, "mtu": mtu}


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


def routed(frame, dst_mac):
    """The routed copy of `frame`: Ethernet dst = next hop MAC, src = gateway MAC, TTL - 1,
    header checksum recomputed; options, L4 bytes and Ethernet padding untouched."""
    ihl = (frame[14] & 0x0F) * 4
    hdr = rebuild_header(frame[14:14 + ihl], ttl=frame[22] - 1)
    return eth(dst_mac, GW_MAC, hdr + frame[14 + ihl:])


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
        for p in self.ports:
            out += ["", "[[port]]", f'name = "{p["name"]}"', f'kind = "{p["kind"]}"',
                    f'mac = "{p["mac"]}"']
            if p["kind"] == "pod":
                out.append(f'ip = "{p["ip"]}"')
            out.append(f'mtu = {p["mtu"]}')

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
