#!/usr/bin/python3
"""Craft the malformed-frame corpora of tests/malformed/ (see README.md next to this file).

Two corpora, each a pcap and a manifest that states, frame by frame and from the written rules
of tests/pcap/README.md alone (never from running the engine), what the switch must do with it:

    pod.pcap      replayed from inside pod1's namespace onto its eth0 (the pod port)
    uplink.pcap   replayed from the underlay peer onto the node's uplink (tunnel traffic)
    *.expect.json one entry per frame: its length, what it is, and its fate: transmitted on a
                  port (`to`), dropped with a reason (`drop`), events counted (`events`), handed
                  to the node's kernel by the uplink XDP program (`kernel`), and whether a UDP
                  sink on port 5000 of the destination pod must receive it (`sink`)

Frames longer than a link carries (the veths drop them, or the sender's kernel refuses them)
keep the fate the rules give them; the replay test decides from `len` which ones can arrive.

    gen_corpus.py            (re)write the corpora next to this file
    gen_corpus.py --check    generate into a temporary directory and compare byte for byte with
                             the committed files; exit 1 on any difference

Determinism: every header field is given explicitly; pcaps are written with integer microsecond
timestamps 1 ms apart (tcpreplay replays them at that pace), so re-running produces identical
files.
"""

import argparse
import json
import os
import struct
import sys
import tempfile

from scapy.all import IP, TCP, UDP, IPv6, Raw
from scapy.utils import checksum

HERE = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------------------------
# The node the replay test builds (node index 1 of the integration harness)

GW_IP, GW_MAC = "10.244.1.1", "0a:58:0a:f4:01:01"
P1IP, P1MAC = "10.244.1.2", "0a:58:0a:f4:01:02"     # the replaying pod
P2IP, P2MAC = "10.244.1.3", "0a:58:0a:f4:01:03"     # the destination pod
UNKNOWN_POD_IP = "10.244.1.77"                       # inside the pod CIDR, no such pod
HOST_DST = "192.168.50.7"                           # routed to the host port (not a node address)
CLUSTER_OTHER = "10.244.9.5"                         # cluster CIDR, no tunnel: the host port
NODE_IP = "192.168.77.1"
UPLINK_MAC = "02:00:00:00:77:01"                     # the node's uplink eth0
PEER_MAC = "02:00:00:00:77:02"                       # the underlay peer (both tunnel remotes)
VTEP_MAC = "0e:00:00:00:00:01"                       # our VTEP MAC (seeded in the state file)
NODE2 = {"name": "node2", "kind": "vxlan", "remote": "192.168.77.2", "subnet": "10.244.2.0/24",
         "vni": 1, "vtep_mac": "0e:00:00:00:00:02", "port": 8472}
NODE3 = {"name": "node3", "kind": "ipip", "remote": "192.168.77.3", "subnet": "10.244.3.0/24"}
NODE2_POD, NODE3_POD = "10.244.2.5", "10.244.3.5"
STRANGER_IP = "192.168.77.9"                         # an underlay address that is no peer
POD_MTU, UPLINK_MTU = 1450, 1500                     # VXLAN encapsulation: pods get 1500 - 50
VXLAN_MTU, IPIP_MTU = UPLINK_MTU - 50, UPLINK_MTU - 20
SINK_PORT = 5000
BCAST = "ff:ff:ff:ff:ff:ff"
BUFFER = 3840                                        # frame buffer: 4096 - 256 headroom

TOPOLOGY = {
    "gateway_ip": GW_IP, "gateway_mac": GW_MAC,
    "pod1": {"ip": P1IP, "mac": P1MAC, "mtu": POD_MTU},
    "pod2": {"ip": P2IP, "mac": P2MAC, "mtu": POD_MTU},
    "node_ip": NODE_IP, "uplink_mac": UPLINK_MAC, "uplink_mtu": UPLINK_MTU,
    "peer_mac": PEER_MAC, "vtep_mac": VTEP_MAC, "tunnels": [NODE2, NODE3],
    "sink_port": SINK_PORT,
}

# ----------------------------------------------------------------------------------------------
# Bytes


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def ip_bytes(addr):
    return bytes(int(x) for x in addr.split("."))


def data(n, seed=0):
    """Deterministic payload of n bytes."""
    return bytes((seed + i) % 256 for i in range(n))


def eth(dst, src, payload, etype=0x0800):
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", etype) + bytes(payload)


def ipv4(src, dst, proto, payload, ttl=64, ident=0x1000, df=True, mf=False, frag=0, tos=0,
         options=b"", total=None, ihl=None, version=4, csum=None):
    """An IPv4 packet from raw fields. `total`, `ihl`, `version`, `csum` override the computed
    values (the checksum is computed over the header as given unless `csum` is set)."""
    assert len(options) % 4 == 0
    hlen = 20 + len(options)
    ihl = hlen // 4 if ihl is None else ihl
    total = hlen + len(payload) if total is None else total
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag
    h = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, tos, total, ident, flags, ttl, proto,
                    0, ip_bytes(src), ip_bytes(dst)) + options
    value = checksum(h) if csum is None else csum
    return h[:10] + struct.pack("!H", value) + h[12:] + payload


def fix_ip_checksum(frame, at=14):
    """Recompute the IPv4 header checksum of the header starting at `at`."""
    f = bytearray(frame)
    ihl = (f[at] & 0x0F) * 4
    f[at + 10:at + 12] = b"\0\0"
    f[at + 10:at + 12] = struct.pack("!H", checksum(bytes(f[at:at + ihl])))
    return bytes(f)


def pseudo(src, dst, proto, length):
    return ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, proto, length)


def udp(src, dst, payload, sport=40000, dport=SINK_PORT, csum=True, length=None):
    """UDP header + payload. csum: True = computed (0 sent as 0xffff), False = 0, int = as is."""
    length = 8 + len(payload) if length is None else length
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    if csum is True:
        value = checksum(pseudo(src, dst, 17, len(seg)) + seg) or 0xFFFF
    elif csum is False:
        value = 0
    else:
        value = csum
    return seg[:6] + struct.pack("!H", value) + seg[8:]


def udp_pkt(src, dst, n=32, seed=0, sport=40000, dport=SINK_PORT, csum=True, **ipkw):
    return ipv4(src, dst, 17, udp(src, dst, data(n, seed), sport, dport, csum), **ipkw)


def tcp_pkt(src, dst, flags="S", sport=41000, dport=80, payload=b"", **ipkw):
    """A TCP segment (checksum computed by scapy over the pseudo-header) in an IPv4 packet."""
    seg = bytes(IP(src=src, dst=dst) /
                TCP(sport=sport, dport=dport, seq=1000, ack=0 if flags == "S" else 2000,
                    flags=flags, window=64240) / Raw(payload))[20:]
    return ipv4(src, dst, 6, seg, **ipkw)


def icmp_msg(type_, code=0, ident=0x4242, seq=1, n=56, rest=None):
    """An ICMP message with a correct checksum; `rest` replaces id/seq/data when given."""
    body = struct.pack("!HH", ident, seq) + data(n, 0x30) if rest is None else rest
    m = struct.pack("!BBH", type_, code, 0) + body
    return m[:2] + struct.pack("!H", checksum(m)) + m[4:]


def echo_pkt(src, dst, n=56, code=0, **ipkw):
    return ipv4(src, dst, 1, icmp_msg(8, code, n=n), **ipkw)


def icmp_with_valid_sum(head):
    """`head` plus two bytes chosen so that the Internet checksum of the whole (short) message
    verifies: an ICMP message too short to be an echo request that still checks out."""
    for a in range(256):
        for b in range(256):
            m = head + bytes([a, b])
            if checksum(m) == 0:
                return m
    raise AssertionError("no checksum completion")


def arp_body(htype=1, ptype=0x0800, hlen=6, plen=4, op=1, sha=P1MAC, spa=P1IP,
             tha="00:00:00:00:00:00", tpa=GW_IP):
    return (struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + mac_bytes(sha) + ip_bytes(spa)
            + mac_bytes(tha) + ip_bytes(tpa))


def arp_frame(op=1, eth_src=P1MAC, eth_dst=BCAST, **kw):
    return eth(eth_dst, eth_src, arp_body(op=op, **kw), 0x0806)


def tagged(dst, src, tpid, vid, inner_type, payload):
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!HHH", tpid, vid, inner_type) + payload


def ipv6_udp(src, dst):
    return bytes(IPv6(src=src, dst=dst, hlim=64) / UDP(sport=40000, dport=SINK_PORT) /
                 Raw(data(16)))


def pad_to(frame, size, fill=b"\xa5"):
    assert len(frame) <= size
    return frame + fill * (size - len(frame))


def fragments(pkt_fields, payload, pieces):
    """Raw IPv4 fragments of one datagram: `pieces` = [(offset_bytes, length, more)]."""
    src, dst, proto, ident = pkt_fields
    out = []
    for off, n, more in pieces:
        assert off % 8 == 0
        out.append(ipv4(src, dst, proto, payload[off:off + n], ident=ident, df=False, mf=more,
                        frag=off // 8))
    return out


# ----------------------------------------------------------------------------------------------
# Tunnel frames (received on the uplink)


def vxlan_header(vni, flags=0x08, reserved=b"\0\0\0", reserved2=0):
    return bytes([flags]) + reserved + vni.to_bytes(3, "big") + bytes([reserved2])


def inner_frame(pkt, dst_mac=VTEP_MAC, src_mac=NODE2["vtep_mac"], etype=0x0800):
    """An inner Ethernet frame as node2's VTEP sends it (to our VTEP MAC by default)."""
    return eth(dst_mac, src_mac, pkt, etype)


def vxlan_in(inner, src=NODE2["remote"], vni=1, flags=0x08, reserved=b"\0\0\0", reserved2=0,
             sport=50000, dport=8472, csum=False, ident=0x7000, df=False, mf=False, frag=0,
             udp_length=None, dst=NODE_IP, outer_dst_mac=UPLINK_MAC, options=b""):
    """A VXLAN frame on the uplink. csum: False = 0 (flannel), True = valid, "bad" = wrong."""
    payload = vxlan_header(vni, flags, reserved, reserved2) + inner
    if csum == "bad":
        good = struct.unpack("!H", udp(src, dst, payload, sport, dport)[6:8])[0]
        csum = good ^ 0x1111
    seg = udp(src, dst, payload, sport, dport, csum, udp_length)
    return eth(outer_dst_mac, PEER_MAC, ipv4(src, dst, 17, seg, ident=ident, df=df, mf=mf,
                                             frag=frag, options=options))


def ipip_in(pkt, src=NODE3["remote"], ident=0x7100, mf=False, frag=0, total=None):
    return eth(UPLINK_MAC, PEER_MAC, ipv4(src, NODE_IP, 4, pkt, ident=ident, df=False, mf=mf,
                                          frag=frag, total=total))


def host_gw(pkt, dst_mac=UPLINK_MAC):
    """A routed IPv4 frame for the pod CIDR, as a host-gw peer sends it."""
    return eth(dst_mac, PEER_MAC, pkt)


# ----------------------------------------------------------------------------------------------
# Corpus model and output

T0_US = 1_700_000_000 * 1_000_000
GAP_US = 1000
EVENTS = ("arp_replies", "icmp_echo_replies", "icmp_errors_sent", "gratuitous_arp",
          "tunnel_encapsulated", "tunnel_decapsulated")
PORTS = ("pod1", "pod2", "host", "uplink")


class Corpus:
    def __init__(self, name, ingress, description):
        self.name, self.ingress, self.description = name, ingress, description
        self.frames = []     # (bytes, entry)

    def add(self, frame, what, to=None, drop=None, events=(), sink=None, kernel=False,
            decap=False):
        """One frame and its fate. `to`: the port it (or the switch's answer) leaves on;
        `drop`: the reason counted; `events`: counted events; `sink`: the pod whose UDP socket
        on port 5000 receives a datagram from it; `kernel`: the uplink XDP program passes it to
        the node's kernel (the switch never sees it); `decap`: it passes decapsulation."""
        events = list(events)
        if decap:
            events.append("tunnel_decapsulated")
        if to == "uplink" and self.ingress != "uplink" and not events:
            events.append("tunnel_encapsulated")
        assert to in (None,) + PORTS and all(e in EVENTS for e in events), what
        if kernel:
            assert to is None and drop is None and not events and sink is None, what
        else:
            assert to is not None or drop is not None or "gratuitous_arp" in events, what
        if "icmp_errors_sent" in events:
            assert to == self.ingress and drop in ("ttl_expired", "fragmentation_needed"), what
        if drop is not None and "icmp_errors_sent" not in events:
            assert to is None, what
        entry = {"index": len(self.frames), "len": len(frame), "what": what}
        if kernel:
            entry["kernel"] = True
        if to is not None:
            entry["to"] = to
        if drop is not None:
            entry["drop"] = drop
        if events:
            entry["events"] = sorted(events)
        if sink is not None:
            entry["sink"] = sink
        self.frames.append((bytes(frame), entry))
        return frame

    # shorthands
    def fwd(self, frame, what, to, sink=None, **kw):
        return self.add(frame, what, to=to, sink=sink, **kw)

    def drop(self, frame, what, reason, **kw):
        return self.add(frame, what, drop=reason, **kw)

    def icmp_error(self, frame, what, reason, **kw):
        return self.add(frame, what, to=self.ingress, drop=reason, events=["icmp_errors_sent"],
                        **kw)

    def reply(self, frame, what, event, **kw):
        return self.add(frame, what, to=self.ingress, events=[event], **kw)

    def kernel(self, frame, what):
        return self.add(frame, what, kernel=True)

    def manifest(self):
        head = {"corpus": self.name, "ingress": self.ingress, "description": self.description,
                "topology": TOPOLOGY, "frames": len(self.frames)}
        text = json.dumps(head, indent=1, sort_keys=True)
        rows = ",\n".join("  " + json.dumps(e, sort_keys=True) for _, e in self.frames)
        # the frame list last, one frame per line
        return text[:-2] + ',\n "expect": [\n' + rows + "\n ]\n}\n"

    def write(self, root):
        write_pcap(os.path.join(root, f"{self.name}.pcap"),
                   [(T0_US + i * GAP_US, f) for i, (f, _) in enumerate(self.frames)])
        with open(os.path.join(root, f"{self.name}.expect.json"), "w") as f:
            f.write(self.manifest())


def write_pcap(path, records):
    """Classic pcap, microsecond timestamps, linktype 1 (Ethernet), snaplen 65535."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for usec, frame in records:
            f.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame),
                                len(frame)))
            f.write(frame)


# ----------------------------------------------------------------------------------------------
# The pod corpus: everything pod1 could put on its eth0


def pod_corpus():
    c = Corpus("pod", "pod1", "frames a pod sends on its eth0, replayed onto the pod port")

    def routed(pkt):
        """A frame from pod1 to the gateway MAC (routed by the switch)."""
        return eth(GW_MAC, P1MAC, pkt)

    good = udp_pkt(P1IP, P2IP, 32)

    # -- valid traffic, forwarded or answered
    c.fwd(routed(udp_pkt(P1IP, P2IP, 100)), "valid: routed UDP to pod2", "pod2", "pod2")
    c.fwd(eth(P2MAC, P1MAC, udp_pkt(P1IP, P2IP, 64, ident=0x1001)), "valid: switched UDP to pod2",
          "pod2", "pod2")
    c.fwd(pad_to(routed(udp_pkt(P1IP, P2IP, 4, ident=0x1002)), 60),
          "valid: 46-byte UDP with Ethernet padding to 60", "pod2", "pod2")
    c.fwd(pad_to(routed(udp_pkt(P1IP, P2IP, 12, ident=0x1003)), 400),
          "valid: total length far below the frame (padding kept)", "pod2", "pod2")
    c.fwd(routed(udp_pkt(P1IP, P2IP, 20, ident=0x1004, options=b"\x01\x01\x01\x00")),
          "valid: IPv4 options (NOP NOP NOP EOL)", "pod2", "pod2")
    c.fwd(routed(udp_pkt(P1IP, P2IP, 20, ident=0x1005, options=b"\x01" * 40)),
          "valid: IHL 15, 40 bytes of NOP options", "pod2", "pod2")
    c.fwd(routed(udp_pkt(P1IP, P2IP, 20, ident=0x1006, csum=False)),
          "valid: UDP checksum 0 (none)", "pod2", "pod2")
    c.fwd(routed(udp_pkt(P1IP, P2IP, POD_MTU - 28, ident=0x1007)),
          "valid: full pod MTU (1450) with DF", "pod2", "pod2")
    c.fwd(eth(P2MAC, P1MAC, udp_pkt(P1IP, P2IP, 8, ttl=1, ident=0x1008)),
          "valid: switched with TTL 1 (switching keeps TTL)", "pod2", "pod2")
    c.fwd(routed(ipv4(P1IP, P2IP, 1, icmp_msg(0, n=8))), "valid: echo reply to pod2", "pod2")
    c.fwd(routed(tcp_pkt(P1IP, P2IP, "R", dport=5001)), "valid: TCP RST to pod2", "pod2")
    c.fwd(routed(udp_pkt(P1IP, NODE2_POD, 100)), "valid: UDP into the VXLAN tunnel", "uplink")
    c.fwd(routed(udp_pkt(P1IP, NODE3_POD, 100)), "valid: UDP into the IPIP tunnel", "uplink")
    c.fwd(routed(tcp_pkt(P1IP, NODE2_POD, "S")), "valid: TCP SYN into the VXLAN tunnel", "uplink")
    c.fwd(routed(udp_pkt(P1IP, NODE2_POD, VXLAN_MTU - 28, ident=0x1009)),
          "valid: VXLAN tunnel MTU (1450) with DF", "uplink")
    c.fwd(routed(udp_pkt(P1IP, NODE3_POD, POD_MTU - 28 + 4, ident=0x100a)),
          "valid: 1454 bytes into IPIP (tunnel MTU 1480), the longest frame the pod veth carries",
          "uplink")
    c.fwd(pad_to(routed(udp_pkt(P1IP, NODE2_POD, 12, ident=0x100b)), POD_MTU + 18),
          "valid: padded to 1468 bytes into VXLAN", "uplink")
    c.fwd(routed(udp_pkt(P1IP, HOST_DST, 40)), "valid: UDP to a non-pod address: host port",
          "host")
    c.fwd(routed(tcp_pkt(P1IP, HOST_DST, "S")), "valid: TCP SYN to a non-pod address", "host")
    c.fwd(routed(udp_pkt(P1IP, CLUSTER_OTHER, 40)),
          "valid: cluster CIDR without a tunnel: host port", "host")
    c.fwd(routed(udp_pkt(P1IP, "224.0.0.251", 40, dport=5353)),
          "valid: multicast IP in a frame to the gateway MAC: routed to the host port", "host")
    c.fwd(routed(tcp_pkt(P1IP, HOST_DST, "FSRPAUEC")), "valid: TCP with every flag, to the host",
          "host")
    c.fwd(routed(ipv4(P1IP, HOST_DST, 6, b"\0" * 20)),
          "valid: TCP header of zeros (data offset 0) to the host: L4 is not parsed", "host")
    c.fwd(routed(ipv4(P1IP, HOST_DST, 253, data(30))), "valid: IP protocol 253 to the host",
          "host")
    c.reply(routed(echo_pkt(P1IP, GW_IP)), "valid: echo request to the gateway",
            "icmp_echo_replies")
    c.reply(routed(echo_pkt(P1IP, GW_IP, n=0, ident=0x1010)),
            "valid: echo request with no data (8-byte ICMP)", "icmp_echo_replies")
    c.reply(pad_to(routed(echo_pkt(P1IP, GW_IP, n=0, ident=0x1011)), 60),
            "valid: padded echo request", "icmp_echo_replies")
    c.reply(arp_frame(), "valid: ARP request for the gateway", "arp_replies")
    c.reply(arp_frame(tpa=P2IP), "valid: ARP request for pod2", "arp_replies")
    c.reply(pad_to(arp_frame(eth_dst=GW_MAC), 60), "valid: unicast padded ARP request",
            "arp_replies")
    c.add(arp_frame(tpa=P1IP), "valid: gratuitous ARP request", events=["gratuitous_arp"])
    c.add(arp_frame(op=2, tpa=P1IP, tha=BCAST), "valid: gratuitous ARP reply",
          events=["gratuitous_arp"])

    # fragments: a complete datagram in two, a complete one in 8-byte fragments, overlaps
    payload = udp(P1IP, P2IP, data(40, 7))                   # 48 bytes of UDP
    for i, f in enumerate(fragments((P1IP, P2IP, 17, 0x2000), payload,
                                    [(0, 24, True), (24, 24, False)])):
        c.fwd(routed(f), f"fragments: complete datagram in 2, part {i}", "pod2",
              "pod2" if i == 1 else None)
    tiny = [(o, 8, o + 8 < 48) for o in range(0, 48, 8)]
    for i, f in enumerate(fragments((P1IP, P2IP, 17, 0x2001), payload, tiny)):
        c.fwd(routed(f), f"fragments: tiny 8-byte fragments, part {i}", "pod2",
              "pod2" if i == len(tiny) - 1 else None)
    payload2 = udp(P1IP, P2IP, data(40, 9))
    for i, f in enumerate(fragments((P1IP, P2IP, 17, 0x2002), payload2,
                                    [(0, 24, True), (8, 40, False)])):
        c.fwd(routed(f), f"fragments: overlapping (the kernel discards both), part {i}", "pod2")
    c.fwd(routed(ipv4(P1IP, P2IP, 17, data(32), ident=0x2003, df=False, frag=8189)),
          "fragments: beyond 65535 bytes (ping of death), no first fragment", "pod2")
    c.fwd(routed(ipv4(P1IP, P2IP, 17, b"", ident=0x2004, df=False, mf=True, frag=3)),
          "fragments: middle fragment with no data", "pod2")
    c.fwd(routed(ipv4(P1IP, P2IP, 17, data(16), ident=0x2005, df=True, mf=True)),
          "fragments: DF and MF both set", "pod2")
    c.fwd(routed(ipv4(P1IP, NODE2_POD, 17, payload[:16], ident=0x2006, df=False, mf=True)),
          "fragments: first fragment into VXLAN", "uplink")
    c.fwd(routed(ipv4(P1IP, NODE3_POD, 17, payload[16:], ident=0x2006, df=False, frag=2)),
          "fragments: non-first fragment into IPIP", "uplink")

    # -- truncation at every header boundary (raw cuts: the length fields still claim more)
    full = routed(good)                         # 14 + 20 + 8 + 32
    for n in (1, 6, 12, 13):
        c.drop(full[:n], f"truncated: {n} bytes of Ethernet", "truncated_ethernet")
    for n in (14, 15, 24, 33):
        c.drop(full[:n], f"truncated: Ethernet + {n - 14} bytes of IPv4 header",
               "truncated_ipv4")
    for n in (34, 38, 41, 42, 60):
        c.drop(full[:n], f"truncated: cut at {n} bytes, total length claims {len(full) - 14}",
               "bad_ipv4_total_length")
    # consistent cuts: total length matches, the L4 header is what is cut short (L4 is not
    # parsed when forwarding: the pod's kernel drops them)
    for name, proto, l4 in (("UDP", 17, udp(P1IP, P2IP, data(8))),
                            ("TCP", 6, tcp_pkt(P1IP, P2IP, "R")[20:]),
                            ("ICMP", 1, icmp_msg(0, n=8))):
        for n in (0, 1, 4, 7):
            c.fwd(routed(ipv4(P1IP, P2IP, proto, l4[:n], ident=0x3000 + n)),
                  f"truncated {name}: {n} bytes of its header", "pod2")
    c.fwd(routed(ipv4(P1IP, P2IP, 17, udp(P1IP, P2IP, data(8), length=40), ident=0x3010)),
          "truncated UDP: UDP length beyond the IPv4 payload", "pod2")
    c.fwd(routed(ipv4(P1IP, NODE2_POD, 17, b"\x9c", ident=0x3011)),
          "truncated UDP: 1 byte of UDP into VXLAN (no ports to hash)", "uplink")
    c.fwd(routed(ipv4(P1IP, NODE3_POD, 6, b"", ident=0x3012)),
          "truncated TCP: no TCP header into IPIP", "uplink")

    # -- IPv4 header fields
    for v in (0, 6, 15):
        c.drop(routed(udp_pkt(P1IP, P2IP, version=v)), f"IPv4: version {v}", "bad_ipv4_version")
    for ihl in (0, 4):
        c.drop(routed(udp_pkt(P1IP, P2IP, ihl=ihl)), f"IPv4: IHL {ihl}",
               "bad_ipv4_header_length")
    c.drop(routed(udp_pkt(P1IP, P2IP, 8, ihl=15)), "IPv4: IHL 15 but a 20-byte header in 36",
           "truncated_ipv4")
    c.drop(routed(udp_pkt(P1IP, P2IP, 40, ihl=15, total=40)),
           "IPv4: IHL 15 (60 bytes) with total length 40", "bad_ipv4_total_length")
    for total in (0, 19, len(good) + 1, 65535):
        c.drop(routed(udp_pkt(P1IP, P2IP, total=total)), f"IPv4: total length {total}",
               "bad_ipv4_total_length")
    for csum in (0x0000, 0xFFFF, 0x1234):
        c.drop(routed(bad_header_sum(udp_pkt(P1IP, P2IP, ident=0x3100), csum)),
               f"IPv4: header checksum {csum:#06x} (wrong)", "bad_ipv4_checksum")
    c.fwd(routed(udp_pkt(P1IP, P2IP, 20, ident=0x3101, options=b"\x07\x00\x04\x00")),
          "IPv4: malformed record-route option (length 0): options are not parsed", "pod2")
    c.fwd(routed(udp_pkt(P1IP, P2IP, 20, ident=0x3102, csum=0x1234)),
          "UDP: wrong UDP checksum (not checked when forwarding)", "pod2")

    # -- TTL and MTU limits
    for ttl in (0, 1):
        c.icmp_error(routed(udp_pkt(P1IP, P2IP, ttl=ttl, ident=0x3200 + ttl)),
                     f"TTL {ttl}, routed to pod2", "ttl_expired")
    c.icmp_error(routed(udp_pkt(P1IP, NODE2_POD, ttl=1, ident=0x3202)), "TTL 1 into VXLAN",
                 "ttl_expired")
    c.icmp_error(routed(udp_pkt(P1IP, HOST_DST, ttl=1, ident=0x3203)), "TTL 1 to the host port",
                 "ttl_expired")
    c.drop(routed(ipv4(P1IP, P2IP, 1, icmp_msg(3, 3, rest=b"\0" * 4 + good[:28]), ttl=1)),
           "TTL 1 on an ICMP error: no ICMP about it", "ttl_expired")
    c.drop(routed(ipv4(P1IP, P2IP, 17, data(16), ttl=1, df=False, frag=4, ident=0x3204)),
           "TTL 1 on a non-first fragment: no ICMP about it", "ttl_expired")
    c.icmp_error(routed(udp_pkt(P1IP, P2IP, POD_MTU - 27, ident=0x3205)),
                 "1451 bytes with DF to pod2 (MTU 1450)", "fragmentation_needed")
    c.icmp_error(eth(P2MAC, P1MAC, udp_pkt(P1IP, P2IP, POD_MTU - 24, ident=0x3206)),
                 "1454 bytes with DF, switched to pod2", "fragmentation_needed")
    c.drop(routed(udp_pkt(P1IP, P2IP, POD_MTU - 27, df=False, ident=0x3207)),
           "1451 bytes without DF to pod2", "exceeds_mtu")
    c.icmp_error(routed(udp_pkt(P1IP, NODE2_POD, VXLAN_MTU - 27, ident=0x3208)),
                 "1451 bytes with DF into VXLAN (tunnel MTU 1450)", "fragmentation_needed")

    # -- oversize frames: beyond the MTU, beyond what the veth carries, beyond a frame buffer
    for n in (POD_MTU + 19, 1514, 2000, 3000, 3520, 3600, BUFFER + 1, 4000, 9000):
        pkt = udp_pkt(P1IP, P2IP, n - 42, ident=0x3300 + n % 256)
        if n > BUFFER:
            c.drop(routed(pkt), f"oversize: {n}-byte frame", "frame_too_long")
        else:
            c.icmp_error(routed(pkt), f"oversize: {n}-byte frame with DF",
                         "fragmentation_needed")
    c.drop(routed(udp_pkt(P1IP, P2IP, 2000 - 42, df=False, ident=0x3400)),
           "oversize: 2000-byte frame without DF", "exceeds_mtu")

    # -- ethertypes, VLAN, IPv6
    c.drop(tagged(GW_MAC, P1MAC, 0x8100, 5, 0x0800, good), "VLAN: 802.1Q tag 5",
           "vlan_unsupported")
    c.drop(tagged(GW_MAC, P1MAC, 0x8100, 0, 0x0800, good), "VLAN: priority tag (VID 0)",
           "vlan_unsupported")
    c.drop(tagged(GW_MAC, P1MAC, 0x88A8, 7, 0x8100, struct.pack("!HH", 5, 0x0800) + good),
           "VLAN: 802.1ad + 802.1Q (QinQ)", "vlan_unsupported")
    c.drop(tagged(BCAST, P1MAC, 0x8100, 5, 0x0806, arp_body()), "VLAN: tagged ARP request",
           "vlan_unsupported")
    c.drop(pad_to(tagged(GW_MAC, P1MAC, 0x8100, 5, 0x0800, udp_pkt(P1IP, P2IP, 1400)),
                  POD_MTU + 18), "VLAN: tagged 1468-byte frame", "vlan_unsupported")
    c.drop(eth(GW_MAC, P1MAC, ipv6_udp("fd00::2", "fd00::3"), 0x86DD), "IPv6 unicast",
           "ipv6_unsupported")
    c.drop(eth("33:33:00:00:00:01", P1MAC, ipv6_udp("fe80::2", "ff02::1"), 0x86DD),
           "IPv6 to all-nodes multicast (parsed before the destination class)",
           "ipv6_unsupported")
    c.drop(eth(GW_MAC, P1MAC, b"", 0x86DD), "IPv6 ethertype, no payload", "ipv6_unsupported")
    for etype, what in ((0x88CC, "LLDP"), (0x8035, "RARP"), (0x88E5, "MACsec"),
                        (0x8847, "MPLS"), (0x0000, "ethertype 0"), (0xFFFF, "ethertype 0xffff"),
                        (0x05DC, "802.3 length 1500"), (0x002E, "802.3 length 46 (LLC)")):
        dst = "01:80:c2:00:00:0e" if etype == 0x88CC else GW_MAC
        c.drop(pad_to(eth(dst, P1MAC, data(30), etype), 60), f"ethertype: {what}",
               "unsupported_ethertype")

    # -- destination classes
    c.drop(eth(BCAST, P1MAC, udp_pkt(P1IP, "10.244.1.255")), "broadcast IPv4 frame",
           "non_arp_broadcast")
    c.drop(eth(BCAST, P1MAC, udp_pkt(P1IP, "255.255.255.255")),
           "limited broadcast in a broadcast frame", "non_arp_broadcast")
    c.drop(eth("01:00:5e:00:00:fb", P1MAC, udp_pkt(P1IP, "224.0.0.251", dport=5353)),
           "IPv4 multicast frame", "multicast_unsupported")
    c.drop(eth("33:33:00:00:00:01", P1MAC, good), "IPv4 in an IPv6-multicast MAC",
           "multicast_unsupported")
    c.drop(eth("01:80:c2:00:00:00", P1MAC, good), "IPv4 to the STP group MAC",
           "multicast_unsupported")
    c.drop(eth("0a:58:0a:f4:01:77", P1MAC, good), "unknown unicast MAC", "unknown_unicast")
    c.drop(eth("00:00:00:00:00:00", P1MAC, good), "all-zero destination MAC", "unknown_unicast")
    c.drop(eth(P1MAC, P1MAC, good), "to its own MAC", "hairpin")
    for dst in (UNKNOWN_POD_IP, "10.244.1.0", "10.244.1.255"):
        c.drop(routed(udp_pkt(P1IP, dst)), f"routed to {dst}: no such pod", "no_route")

    # -- the gateway
    c.drop(routed(udp_pkt(P1IP, GW_IP)), "UDP to the gateway", "to_gateway_unsupported")
    c.drop(routed(tcp_pkt(P1IP, GW_IP, "S", dport=22)), "TCP SYN to the gateway",
           "to_gateway_unsupported")
    c.drop(routed(echo_pkt(P1IP, GW_IP, mf=True, df=False, ident=0x4000)),
           "first fragment of an echo request to the gateway", "to_gateway_unsupported")
    c.drop(routed(ipv4(P1IP, GW_IP, 1, icmp_msg(8)[:8], df=False, frag=2, ident=0x4000)),
           "non-first fragment of ICMP to the gateway", "to_gateway_unsupported")
    c.drop(routed(ipv4(P1IP, GW_IP, 1, icmp_msg(0))), "echo reply to the gateway",
           "to_gateway_unsupported")
    c.drop(routed(ipv4(P1IP, GW_IP, 1, icmp_msg(13, rest=data(16)))),
           "timestamp request to the gateway", "to_gateway_unsupported")
    c.drop(routed(echo_pkt(P1IP, GW_IP, code=1)), "echo request with code 1",
           "to_gateway_unsupported")
    c.drop(routed(ipv4(P1IP, GW_IP, 1, b"")), "ICMP with no bytes to the gateway",
           "to_gateway_unsupported")
    for head in (b"\x08", b"\x08\x00\xf7"):
        c.drop(routed(ipv4(P1IP, GW_IP, 1, head)),
               f"echo request cut to {len(head)} ICMP bytes", "to_gateway_unsupported")
    for head in (b"\x08", b"\x08\x00\x00\x00\x42"):
        msg = icmp_with_valid_sum(head)
        c.drop(routed(ipv4(P1IP, GW_IP, 1, msg)),
               f"echo request cut to {len(msg)} ICMP bytes whose checksum verifies",
               "to_gateway_unsupported")
    bad = bytearray(routed(echo_pkt(P1IP, GW_IP, ident=0x4001)))
    bad[36] ^= 0x11
    c.drop(bytes(bad), "echo request with a wrong ICMP checksum", "bad_icmp_checksum")

    # -- spoofing
    c.drop(eth(GW_MAC, P2MAC, good), "source MAC of pod2", "spoofed_source_mac")
    c.drop(eth(GW_MAC, "01:00:5e:00:00:01", good), "multicast source MAC", "spoofed_source_mac")
    c.drop(eth(GW_MAC, "00:00:00:00:00:00", good), "all-zero source MAC", "spoofed_source_mac")
    for src in (P2IP, GW_IP, "0.0.0.0", "255.255.255.255", "10.244.2.5", "192.168.77.1"):
        c.drop(routed(udp_pkt(src, P2IP)), f"source IP {src}", "spoofed_source_ip")
    c.drop(eth(P2MAC, P1MAC, udp_pkt(UNKNOWN_POD_IP, P2IP)), "switched with a foreign source IP",
           "spoofed_source_ip")
    c.drop(arp_frame(eth_src=P2MAC, sha=P2MAC), "ARP from pod2's MAC", "spoofed_source_mac")
    c.drop(arp_frame(sha=P2MAC), "ARP with pod2's MAC as sender", "spoofed_source_mac")
    c.drop(arp_frame(spa=P2IP), "ARP with pod2's IP as sender", "spoofed_source_ip")
    c.drop(arp_frame(spa=P2IP, tpa=P2IP), "gratuitous ARP for pod2's address",
           "spoofed_source_ip")
    c.drop(arp_frame(spa="0.0.0.0"), "ARP probe (sender 0.0.0.0)", "spoofed_source_ip")

    # -- ARP
    for n in (0, 8, 27):
        c.drop(arp_frame()[:14 + n], f"ARP cut to {n} bytes", "malformed_arp")
    for field, kw in (("htype 6", {"htype": 6}), ("ptype IPv6", {"ptype": 0x86DD}),
                      ("hlen 8", {"hlen": 8}), ("plen 16", {"plen": 16}),
                      ("hlen 0 plen 0", {"hlen": 0, "plen": 0}),
                      ("hlen 255 plen 255", {"hlen": 255, "plen": 255})):
        c.drop(pad_to(arp_frame(**kw), 60), f"ARP with {field}", "malformed_arp")
    for op in (0, 3, 4, 8, 9, 0xFFFF):
        c.drop(arp_frame(op=op), f"ARP opcode {op}", "malformed_arp")
    c.drop(arp_frame(op=2, eth_dst=GW_MAC, tha=GW_MAC), "ARP reply nobody asked for",
           "unexpected_arp_reply")
    for tpa in (UNKNOWN_POD_IP, NODE2_POD, NODE_IP, "0.0.0.0"):
        c.drop(arp_frame(tpa=tpa), f"ARP request for {tpa}", "arp_unknown_target")

    # -- the switch still forwards after all of the above
    c.fwd(routed(udp_pkt(P1IP, P2IP, 100, ident=0x4f00)), "valid, last: routed UDP to pod2",
          "pod2", "pod2")
    c.fwd(routed(udp_pkt(P1IP, NODE2_POD, 100, ident=0x4f01)), "valid, last: UDP into VXLAN",
          "uplink")
    c.reply(routed(echo_pkt(P1IP, GW_IP, ident=0x4f02)), "valid, last: echo to the gateway",
            "icmp_echo_replies")
    return c


def bad_header_sum(pkt, value):
    """`pkt` with its IPv4 header checksum set to `value` (which must be wrong)."""
    right = struct.unpack("!H", pkt[10:12])[0]
    # 0x0000 and 0xffff are the same number in one's complement: keep clear of both
    assert right not in (0, 0xFFFF) and value != right
    return pkt[:10] + struct.pack("!H", value) + pkt[12:]


# ----------------------------------------------------------------------------------------------
# The uplink corpus: what the underlay could put on the node's uplink


def uplink_corpus():
    c = Corpus("uplink", "uplink", "frames from the underlay peer, replayed onto the uplink")
    to_p1 = udp_pkt(NODE2_POD, P1IP, 64, ident=0x5000)
    to_p2 = udp_pkt(NODE2_POD, P2IP, 64, ident=0x5001)
    ipip_p2 = udp_pkt(NODE3_POD, P2IP, 64, ident=0x5002)

    # -- valid tunnel traffic
    c.fwd(vxlan_in(inner_frame(to_p1)), "valid: VXLAN to pod1 (UDP checksum 0)", "pod1",
          "pod1", decap=True)
    c.fwd(vxlan_in(inner_frame(to_p2), csum=True), "valid: VXLAN to pod2 (UDP checksum set)",
          "pod2", "pod2", decap=True)
    c.fwd(ipip_in(ipip_p2), "valid: IPIP to pod2", "pod2", "pod2", decap=True)
    c.fwd(host_gw(udp_pkt("10.244.5.5", P1IP, 64, ident=0x5003)),
          "valid: host-gw routed IPv4 to pod1", "pod1", "pod1")
    c.fwd(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, 20, ident=0x5004,
                                       options=b"\x01\x01\x01\x00"))),
          "valid: VXLAN, inner IPv4 options", "pod2", "pod2", decap=True)
    c.fwd(vxlan_in(pad_to(inner_frame(udp_pkt(NODE2_POD, P2IP, 4, ident=0x5005)), 60)),
          "valid: VXLAN, inner frame with Ethernet padding", "pod2", "pod2", decap=True)
    c.fwd(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, 16, ident=0x5006)),
                   options=b"\x01\x01\x01\x00"),
          "valid: VXLAN, outer IPv4 options (IHL 6)", "pod2", "pod2", decap=True)
    c.fwd(ipip_in(udp_pkt(NODE3_POD, P2IP, POD_MTU - 28, ident=0x5007)),
          "valid: IPIP, inner packet at the pod MTU", "pod2", "pod2", decap=True)
    c.fwd(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, POD_MTU - 28, ident=0x5008))),
          "valid: VXLAN, inner packet at the pod MTU", "pod2", "pod2", decap=True)
    pl = udp(NODE2_POD, P2IP, data(40, 3))
    for i, f in enumerate(fragments((NODE2_POD, P2IP, 17, 0x5009), pl,
                                    [(0, 24, True), (24, 24, False)])):
        c.fwd(vxlan_in(inner_frame(f)), f"valid: VXLAN, inner fragment {i} of 2", "pod2",
              "pod2" if i == 1 else None, decap=True)
    c.fwd(ipip_in(pad_to(udp_pkt(NODE3_POD, P2IP, 8, ident=0x500a), 100)),
          "valid: IPIP, bytes after the inner total length", "pod2", "pod2", decap=True)
    c.fwd(host_gw(udp_pkt("10.244.5.5", P2IP, 64, ident=0x500b), dst_mac="02:00:00:00:99:99"),
          "host-gw frame to another host's MAC: routed as it is (a veth delivers it)", "pod2",
          "pod2")
    c.reply(host_gw(echo_pkt("10.244.5.5", GW_IP)), "host-gw echo request to the gateway",
            "icmp_echo_replies")

    # -- what the uplink XDP program passes to the node's kernel (never the switch's)
    c.kernel(arp_frame(eth_src=PEER_MAC, sha=PEER_MAC, spa=NODE2["remote"], tpa=NODE_IP),
             "kernel: ARP request for the node IP")
    c.kernel(pad_to(arp_frame(eth_src=PEER_MAC, sha=PEER_MAC, spa=NODE2["remote"],
                              tpa=NODE_IP, hlen=8), 60), "kernel: ARP with hlen 8")
    c.kernel(eth(UPLINK_MAC, PEER_MAC, ipv6_udp("fd00::2", "fd00::1"), 0x86DD), "kernel: IPv6")
    c.kernel(tagged(UPLINK_MAC, PEER_MAC, 0x8100, 5, 0x0800,
                    vxlan_in(inner_frame(to_p2))[14:]), "kernel: VLAN-tagged VXLAN")
    c.kernel(pad_to(eth("01:80:c2:00:00:0e", PEER_MAC, data(30), 0x88CC), 60), "kernel: LLDP")
    v = vxlan_in(inner_frame(to_p2))
    for n in (14, 20, 33):
        c.kernel(v[:n], f"kernel: VXLAN cut to {n} bytes (no full IPv4 header)")
    for n in (34, 38, 41):
        c.kernel(v[:n], f"kernel: VXLAN cut to {n} bytes (no full UDP header)")
    c.kernel(eth(UPLINK_MAC, PEER_MAC, ipv4(NODE2["remote"], NODE_IP, 17, b"", ident=0x5100)),
             "kernel: UDP to the node IP with no UDP header")
    c.kernel(eth(UPLINK_MAC, PEER_MAC, ipv4(NODE2["remote"], NODE_IP, 1, icmp_msg(8))),
             "kernel: echo request to the node IP")
    c.kernel(eth(UPLINK_MAC, PEER_MAC, udp_pkt(NODE2["remote"], NODE_IP, 16, dport=53)),
             "kernel: UDP to the node IP, port 53")
    c.kernel(eth(UPLINK_MAC, PEER_MAC, tcp_pkt(NODE2["remote"], NODE_IP, "S", dport=22)),
             "kernel: TCP SYN to the node's SSH")
    c.kernel(vxlan_in(inner_frame(to_p2), dport=4789), "kernel: VXLAN to UDP 4789 (IANA port)")
    c.kernel(vxlan_in(inner_frame(to_p2), frag=3, ident=0x5101),
             "kernel: non-first fragment to the VXLAN port")
    c.kernel(eth(UPLINK_MAC, PEER_MAC, udp_pkt(NODE2["remote"], NODE_IP, 16, ihl=4)),
             "kernel: IHL 4 UDP to the node IP")
    c.kernel(eth(UPLINK_MAC, PEER_MAC, udp_pkt(NODE2["remote"], NODE_IP, 16, ihl=15)[:50]),
             "kernel: IHL 15 UDP cut before its UDP header")
    for dst in ("192.168.77.50", NODE2_POD, "192.168.77.255", "224.0.0.1"):
        mac = "01:00:5e:00:00:01" if dst.startswith("224") else UPLINK_MAC
        mac = BCAST if dst.endswith("255") else mac
        c.kernel(eth(mac, PEER_MAC, udp_pkt(NODE2["remote"], dst, 16)),
                 f"kernel: IPv4 to {dst} (neither the node IP nor the pod CIDR)")

    # -- truncation at every VXLAN header boundary, lengths kept consistent
    inner = inner_frame(to_p2)              # 14 + 20 + 8 + 64
    for n, reason in ((0, "tunnel_malformed"), (4, "tunnel_malformed"),
                      (8, "tunnel_malformed"), (8 + 13, "tunnel_malformed")):
        payload = (vxlan_header(1) + inner)[:n]
        seg = udp(NODE2["remote"], NODE_IP, payload, 50000, 8472, False)
        c.drop(eth(UPLINK_MAC, PEER_MAC, ipv4(NODE2["remote"], NODE_IP, 17, seg, df=False)),
               f"VXLAN: UDP payload cut to {n} bytes", reason)
    c.drop(vxlan_in(inner[:14]), "VXLAN: inner frame is an Ethernet header only",
           "truncated_ipv4", decap=True)
    c.drop(vxlan_in(inner[:24]), "VXLAN: inner IPv4 header cut to 10 bytes", "truncated_ipv4",
           decap=True)
    for n in (34, 38, 42, 60):
        c.drop(vxlan_in(inner[:n]), f"VXLAN: inner frame cut to {n} (total length claims more)",
               "bad_ipv4_total_length", decap=True)
    for n in (0, 4, 8):
        pkt = ipv4(NODE2_POD, P2IP, 17, udp(NODE2_POD, P2IP, data(8))[:n], ident=0x5200 + n)
        c.fwd(vxlan_in(inner_frame(pkt)), f"VXLAN: inner UDP cut to {n} bytes (consistent)",
              "pod2", decap=True)
    # raw cuts of the whole VXLAN frame: the outer total length claims more
    for n in (42, 50, 64, 84):
        c.drop(v[:n], f"VXLAN cut to {n} bytes (outer total length claims more)",
               "bad_ipv4_total_length")

    # -- VXLAN header and outer checks
    for flags in (0x00, 0x0C, 0x88, 0xFF):
        c.drop(vxlan_in(inner, flags=flags), f"VXLAN flags {flags:#04x}", "tunnel_bad_header")
    c.drop(vxlan_in(inner, reserved=b"\0\0\x01"), "VXLAN reserved bits after the flags",
           "tunnel_bad_header")
    c.drop(vxlan_in(inner, reserved2=1), "VXLAN reserved byte after the VNI",
           "tunnel_bad_header")
    for vni in (0, 2, 0xFFFFFF):
        c.drop(vxlan_in(inner, vni=vni), f"VXLAN VNI {vni}", "tunnel_wrong_vni")
    for src in (STRANGER_IP, NODE3["remote"], NODE_IP, "0.0.0.0", "10.244.2.1"):
        c.drop(vxlan_in(inner, src=src), f"VXLAN from {src} (no VXLAN peer)",
               "tunnel_unknown_peer")
    c.drop(vxlan_in(inner, src=STRANGER_IP, csum="bad"),
           "VXLAN from a stranger with a bad checksum (peer checked first)",
           "tunnel_unknown_peer")
    c.drop(vxlan_in(inner, csum="bad"), "VXLAN with a wrong UDP checksum", "tunnel_bad_checksum")
    c.drop(vxlan_in(inner, csum="bad", flags=0), "bad checksum and bad flags (checksum first)",
           "tunnel_bad_checksum")
    for mac, what in ((NODE2["vtep_mac"], "the peer's VTEP MAC"), (BCAST, "broadcast"),
                      (GW_MAC, "the gateway MAC"), (P2MAC, "pod2's MAC")):
        c.drop(vxlan_in(inner_frame(to_p2, dst_mac=mac)), f"VXLAN inner destination {what}",
               "tunnel_wrong_inner_mac")
    c.drop(vxlan_in(inner, mf=True, ident=0x5300), "VXLAN outer first fragment",
           "tunnel_malformed")
    c.drop(vxlan_in(inner, udp_length=7), "VXLAN UDP length 7", "tunnel_malformed")
    c.drop(vxlan_in(inner, udp_length=8 + 8 + len(inner) + 1), "VXLAN UDP length beyond the packet",
           "tunnel_malformed")
    c.drop(vxlan_in(inner, udp_length=8 + 8 + 10), "VXLAN UDP length leaves a 10-byte inner frame",
           "tunnel_malformed")
    c.drop(fix_ip_checksum(patch(v, 16, struct.pack("!H", 1400))),
           "VXLAN outer total length beyond the frame", "bad_ipv4_total_length")
    c.drop(patch(v, 24, b"\x12\x34"), "VXLAN outer header checksum wrong", "bad_ipv4_checksum")

    # -- decapsulated, then the ordinary rules
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, UNKNOWN_POD_IP))),
           "VXLAN inner to a pod that does not exist", "tunnel_not_local", decap=True)
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, HOST_DST))), "VXLAN inner to a non-pod address",
           "tunnel_not_local", decap=True)
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, "10.244.2.9"))),
           "VXLAN inner back into the tunnel's own subnet", "tunnel_not_local", decap=True)
    c.drop(vxlan_in(inner_frame(echo_pkt(NODE2_POD, GW_IP))), "VXLAN inner echo to the gateway",
           "tunnel_not_local", decap=True)
    c.drop(vxlan_in(inner_frame(bad_header_sum(to_p2, 0x1234))), "VXLAN inner header checksum",
           "bad_ipv4_checksum", decap=True)
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, version=5))), "VXLAN inner version 5",
           "bad_ipv4_version", decap=True)
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, ihl=3))), "VXLAN inner IHL 3",
           "bad_ipv4_header_length", decap=True)
    c.drop(vxlan_in(inner_frame(ipv6_udp("fd00::2", "fd00::3"), etype=0x86DD)),
           "VXLAN inner IPv6", "ipv6_unsupported", decap=True)
    c.drop(vxlan_in(tagged(VTEP_MAC, NODE2["vtep_mac"], 0x8100, 1, 0x0800, to_p2)),
           "VXLAN inner VLAN tag", "vlan_unsupported", decap=True)
    c.drop(vxlan_in(pad_to(inner_frame(data(30), etype=0x88CC), 60)), "VXLAN inner LLDP",
           "unsupported_ethertype", decap=True)
    c.drop(vxlan_in(inner_frame(arp_body(hlen=8), etype=0x0806)), "VXLAN inner ARP, hlen 8",
           "malformed_arp", decap=True)
    c.drop(vxlan_in(inner_frame(arp_body(op=2, sha=NODE2["vtep_mac"], spa=NODE2_POD, tpa=P2IP),
                                etype=0x0806)),
           "VXLAN inner ARP reply", "tunnel_inner_arp", decap=True)
    c.drop(vxlan_in(inner_frame(arp_body(sha=NODE2["vtep_mac"], spa=NODE2_POD,
                                         tpa=UNKNOWN_POD_IP), etype=0x0806)),
           "VXLAN inner ARP request for an unknown address", "tunnel_inner_arp", decap=True)
    c.drop(vxlan_in(inner_frame(arp_body(sha=NODE2["vtep_mac"], spa=NODE2_POD, tpa=GW_IP),
                                etype=0x0806)),
           "VXLAN inner ARP request for the gateway: not answered raw on the underlay",
           "tunnel_inner_arp", decap=True)
    # No ICMP error about a decapsulated packet (it would have to go back encapsulated).
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, ttl=1, ident=0x5400))),
           "VXLAN inner TTL 1", "ttl_expired", decap=True)
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, POD_MTU - 27, ident=0x5401))),
           "VXLAN inner 1451 bytes with DF to pod2 (MTU 1450)", "fragmentation_needed",
           decap=True)
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, POD_MTU - 27, df=False,
                                        ident=0x5402))),
           "VXLAN inner 1451 bytes without DF", "exceeds_mtu", decap=True)
    c.drop(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P2IP, POD_MTU - 24, df=False,
                                        ident=0x5403))),
           "VXLAN of 1518 bytes (the longest the uplink carries), inner 1454 without DF",
           "exceeds_mtu", decap=True)

    # -- IPIP
    for src in (STRANGER_IP, NODE2["remote"], NODE_IP):
        c.drop(ipip_in(ipip_p2, src=src), f"IPIP from {src} (no IPIP peer)",
               "tunnel_unknown_peer")
    for n in (0, 1, 10, 19):
        c.drop(ipip_in(ipip_p2[:n]), f"IPIP inner packet cut to {n} bytes (outer consistent)",
               "tunnel_malformed")
    for n in (20, 27, 60):
        c.drop(ipip_in(ipip_p2[:n]), f"IPIP inner cut to {n} (inner total length claims more)",
               "tunnel_malformed")
    c.drop(ipip_in(udp_pkt(NODE3_POD, P2IP, version=6)), "IPIP inner version 6",
           "tunnel_malformed")
    c.drop(ipip_in(udp_pkt(NODE3_POD, P2IP, ihl=4)), "IPIP inner IHL 4", "tunnel_malformed")
    c.drop(ipip_in(udp_pkt(NODE3_POD, P2IP, 8, ihl=15)), "IPIP inner IHL 15 beyond its total",
           "tunnel_malformed")
    c.drop(ipip_in(bad_header_sum(ipip_p2, 0x1234)), "IPIP inner header checksum",
           "tunnel_malformed")
    c.drop(ipip_in(udp_pkt(NODE3_POD, P2IP, total=0)), "IPIP inner total length 0",
           "tunnel_malformed")
    c.drop(ipip_in(ipip_p2, mf=True), "IPIP outer first fragment", "tunnel_malformed")
    c.drop(ipip_in(ipip_p2, frag=5), "IPIP outer non-first fragment", "tunnel_malformed")
    c.drop(ipip_in(ipip_p2, total=20 + len(ipip_p2) + 10), "IPIP outer total beyond the frame",
           "bad_ipv4_total_length")
    c.drop(eth(UPLINK_MAC, PEER_MAC, ipv4(NODE3["remote"], NODE_IP, 4, ipip_p2, ihl=4)),
           "IPIP outer IHL 4", "bad_ipv4_header_length")
    c.drop(eth(UPLINK_MAC, PEER_MAC, ipv4(NODE3["remote"], NODE_IP, 4, ipip_p2, version=6)),
           "IPIP outer version 6", "bad_ipv4_version")
    c.drop(eth(UPLINK_MAC, PEER_MAC, ipv4(NODE3["remote"], NODE_IP, 4, b"", ihl=6)),
           "IPIP outer IHL 6 in a 20-byte header", "truncated_ipv4")
    c.drop(ipip_in(udp_pkt(NODE3_POD, UNKNOWN_POD_IP)), "IPIP inner to a pod that does not exist",
           "tunnel_not_local", decap=True)
    c.drop(ipip_in(udp_pkt(NODE3_POD, P2IP, ttl=1, ident=0x5500)), "IPIP inner TTL 1",
           "ttl_expired", decap=True)
    c.drop(ipip_in(ipv4(NODE3_POD, P2IP, 1, icmp_msg(11, rest=b"\0" * 4 + to_p2[:28]), ttl=1)),
           "IPIP inner ICMP error with TTL 1: no ICMP about it", "ttl_expired", decap=True)
    c.fwd(ipip_in(ipv4(NODE3_POD, P2IP, 17, b"", ident=0x5501)),
          "IPIP inner IPv4 header only (consistent)", "pod2", decap=True)

    # -- host-gw (IPv4 for the pod CIDR, routed as it is)
    c.drop(host_gw(udp_pkt("10.244.5.5", UNKNOWN_POD_IP)), "host-gw to a pod that does not exist",
           "no_route")
    c.drop(host_gw(udp_pkt("10.244.5.5", "10.244.1.255")), "host-gw to the pod CIDR broadcast",
           "no_route")
    c.drop(host_gw(bad_header_sum(udp_pkt("10.244.5.5", P2IP), 0x1234)),
           "host-gw header checksum", "bad_ipv4_checksum")
    c.drop(host_gw(udp_pkt("10.244.5.5", P2IP, total=200)), "host-gw total length beyond",
           "bad_ipv4_total_length")
    c.icmp_error(host_gw(udp_pkt("10.244.5.5", P2IP, ttl=1, ident=0x5600)), "host-gw TTL 1",
                 "ttl_expired")
    c.drop(host_gw(udp_pkt("10.244.5.5", P2IP, ident=0x5601), dst_mac=BCAST),
           "host-gw IPv4 in a broadcast frame", "non_arp_broadcast")
    c.drop(host_gw(udp_pkt("10.244.5.5", P2IP, ident=0x5602), dst_mac="01:00:5e:00:00:01"),
           "host-gw IPv4 in a multicast frame", "multicast_unsupported")
    c.fwd(pad_to(host_gw(udp_pkt("10.244.5.5", P2IP, 12, ident=0x5603)), POD_MTU + 18),
          "host-gw padded to 1468 bytes, the most pod2's link carries", "pod2", "pod2")
    # Forwarded frames keep at most a minimum frame's padding: this 1518-byte frame (a
    # 40-byte packet) leaves for pod2 as 60 bytes, though pod2's link carries only 1450 + 18.
    c.fwd(pad_to(host_gw(udp_pkt("10.244.5.5", P2IP, 12, ident=0x5604)), UPLINK_MTU + 18),
          "host-gw padded to 1518 bytes: padding cut to a minimum frame", "pod2", "pod2")

    # -- oversize frames on the uplink
    for n in (UPLINK_MTU + 19, 2000, 3520, 3600, 4000, 9000):
        inner = inner_frame(udp_pkt(NODE2_POD, P2IP, n - 50 - 42, ident=0x5700 + n % 256))
        reason = "frame_too_long" if n > BUFFER else "fragmentation_needed"
        if reason == "frame_too_long":
            c.drop(vxlan_in(inner), f"oversize: {n}-byte VXLAN frame", reason)
        else:
            c.drop(vxlan_in(inner), f"oversize: {n}-byte VXLAN frame, inner DF", reason,
                   decap=True)

    # -- the switch still forwards after all of the above
    c.fwd(vxlan_in(inner_frame(udp_pkt(NODE2_POD, P1IP, 64, ident=0x5f00))),
          "valid, last: VXLAN to pod1", "pod1", "pod1", decap=True)
    c.fwd(ipip_in(udp_pkt(NODE3_POD, P2IP, 64, ident=0x5f01)), "valid, last: IPIP to pod2",
          "pod2", "pod2", decap=True)
    return c


def patch(frame, offset, value):
    return frame[:offset] + value + frame[offset + len(value):]


CORPORA = (pod_corpus, uplink_corpus)


def generate(root):
    names = []
    for make in CORPORA:
        c = make()
        c.write(root)
        names += [f"{c.name}.pcap", f"{c.name}.expect.json"]
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="compare a fresh generation with the committed files, exit 1 if any "
                         "differ")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            names = generate(tmp)
            diffs = []
            for n in names:
                committed = os.path.join(HERE, n)
                if not os.path.exists(committed):
                    diffs.append(f"{n}: missing")
                    continue
                with open(os.path.join(tmp, n), "rb") as a, open(committed, "rb") as b:
                    if a.read() != b.read():
                        diffs.append(f"{n}: content differs")
        for d in diffs:
            print(d)
        print(f"{len(diffs)} difference(s)" if diffs else "malformed-frame corpora up to date")
        return 1 if diffs else 0
    names = generate(HERE)
    print(f"wrote {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
