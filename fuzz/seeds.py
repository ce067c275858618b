#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into OUT/<target>/ (default: fuzz/seeds-raw).

Sources: the pcap conformance cases (tests/pcap/*/*.pcap: every frame alone for the frame
targets; each case's inputs as one pipeline run), the reference captures of /work/shared/pcaps
that were made or crafted for this project or come from tcpdump's tests (when present),
config.toml, the example conflist and NetworkPolicies, the cases' policy files, and hand-written
control requests, CNI invocations and trace descriptions.

The committed corpus (fuzz/corpus/<target>/) is this, minimized by libFuzzer (`-merge=1`), plus
what campaigns found; see fuzz/README.md. Standard library only (no scapy needed).
"""

import hashlib
import json
import pathlib
import struct
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path("/work/shared/pcaps")
SHARED_FILES = ["flannel_vxlan.pcap", "ipip_calico.pcap", "vxlan_port_8472.pcap", "vxlan.pcap"]

# Mirrors vswitch_fuzz::STEPS_NS.
STEPS_NS = [0, 10**6, 10**8, 10**9, 3 * 10**9, 30 * 10**9, 121 * 10**9, 301 * 10**9]


def read_pcap(path):
    """[(timestamp_ns, frame)] of a classic pcap file (either byte order, us or ns)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    endian, nanos = {
        b"\xd4\xc3\xb2\xa1": ("<", False),
        b"\xa1\xb2\xc3\xd4": (">", False),
        b"\x4d\x3c\xb2\xa1": ("<", True),
        b"\xa1\xb2\x3c\x4d": (">", True),
    }[magic]
    out, at = [], 24
    while at + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[at : at + 16])
        at += 16
        out.append((sec * 10**9 + (frac if nanos else frac * 1000), data[at : at + incl]))
        at += incl
    return out


class Corpus:
    def __init__(self, out):
        self.out = out
        self.count = {}

    def add(self, target, data):
        if isinstance(data, str):
            data = data.encode()
        d = self.out / target
        d.mkdir(parents=True, exist_ok=True)
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        self.count[target] = self.count.get(target, 0) + 1


def step_index(delta_ns):
    """The largest step not above `delta_ns` (0 for none)."""
    return max(i for i, s in enumerate(STEPS_NS) if s <= max(delta_ns, 0))


def pipeline_seed(case_dir):
    """(mode byte, [(ctl, frame)]) for a case's inputs, in the order the replay runs them."""
    case = tomllib.loads((case_dir / "case.toml").read_text())
    ports = case["port"]
    pods = [i for i, p in enumerate(ports) if p["kind"] == "pod"]
    slot = {}
    for i, p in enumerate(ports):
        slot[i] = {"host": 2, "uplink": 3}.get(p["kind"], pods.index(i) % 2 if i in pods else 0)
    schedule = []
    for i, p in enumerate(ports):
        f = case_dir / f"{p['name']}.in.pcap"
        if f.is_file():
            schedule += [(t, i, n, frame) for n, (t, frame) in enumerate(read_pcap(f))]
    schedule.sort(key=lambda s: (s[0], s[1], s[2]))
    mode = 2 if "policy" in case else 1 if case.get("tunnel") else 0
    records, last_t, last_port, run = [], None, None, 0
    for t, i, _, frame in schedule:
        same = last_port == i and last_t is not None and run < 64
        run = run + 1 if same else 1
        step = 0 if last_t is None else step_index(t - last_t)
        ctl = slot[i] | (4 if same and step == 0 else 0) | (step << 3)
        records.append((ctl, frame))
        last_t, last_port = t, i
    return mode, records


def encode(records):
    return b"".join(bytes([c]) + struct.pack(">H", len(f)) + f for c, f in records)


REQUESTS = [
    {"verb": "port_add", "netns": "/var/run/netns/cni-1", "id": "abc", "ifname": "eth0"},
    {"verb": "port_add", "netns": "pod1", "id": "c1", "ip": "10.244.1.7/24",
     "mac": "0a:58:0a:f4:01:07", "namespace": "prod", "labels": {"app": "web"}},
    {"verb": "port_del", "id": "abc"},
    {"verb": "port_del", "id": "abc", "ifname": "net1"},
    {"verb": "port_list"}, {"verb": "stats"}, {"verb": "node"},
    {"verb": "tunnel_add", "name": "node2", "kind": "vxlan", "remote": "192.168.77.2",
     "subnet": "10.244.2.0/24", "vni": 1, "vtep_mac": "0e:00:00:00:00:02", "port": 8472},
    {"verb": "tunnel_add", "name": "node3", "kind": "ipip", "remote": "192.168.77.3",
     "subnet": "10.244.3.0/24"},
    {"verb": "tunnel_del", "name": "node2"}, {"verb": "tunnel_list"},
    {"verb": "port_check", "id": "abc", "ifname": "eth0"},
    {"verb": "gc", "valid": [{"id": "abc", "ifname": "eth0"}]},
    {"verb": "fdb_show"}, {"verb": "route_show"},
    {"verb": "capture", "port": "vsw0-sw", "count": 5, "timeout_ms": 100},
    {"verb": "trace", "port": "pod1", "frame": "icmp 10.244.1.2 > 10.244.1.3 ttl 1"},
    {"verb": "policy_apply", "yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
     "metadata: {name: deny}\nspec: {podSelector: {}}\n"},
    {"verb": "policy_list"}, {"verb": "policy_delete", "namespace": "default", "name": "deny"},
    {"verb": "endpoint_add", "ip": "10.244.2.7", "namespace": "prod", "labels": {"app": "db"}},
    {"verb": "endpoint_del", "ip": "10.244.2.7"}, {"verb": "endpoint_list"},
    {"verb": "namespace_set", "name": "prod", "labels": {"team": "a"}},
    {"verb": "namespace_list"},
]

RESPONSES = [
    {"status": "error", "code": "bad_request", "message": "cannot decode request"},
    {"status": "ok", "result": {"kind": "removed", "data": True}},
    {"status": "ok", "result": {"kind": "port", "data": {
        "id": "abc", "ifname": "eth0", "netns": "/var/run/netns/cni-1",
        "host_ifname": "vswa1b2c3", "host_mac": "02:00:00:00:00:01", "port": 3,
        "mac": "0a:58:0a:f4:01:05", "ip": "10.244.1.5/24", "gateway": "10.244.1.1", "mtu": 1450,
        "namespace": "default", "labels": {"app": "web"}}}},
    {"status": "ok", "result": {"kind": "node", "data": {
        "name": "node1", "node_ip": "192.168.77.1", "pod_cidr": "10.244.1.0/24",
        "cluster_cidr": "10.244.0.0/16", "gateway": "10.244.1.1",
        "gateway_mac": "0a:58:0a:f4:01:01", "pod_mtu": 1450, "vtep_mac": "0e:00:00:00:00:01",
        "vni": 1, "vxlan_port": 8472}}},
    {"status": "ok", "result": {"kind": "frames", "data": ["0a58"]}},
]

NETCONF = {"cniVersion": "1.0.0", "name": "vswitch", "type": "vswitch-cni",
           "socket": "/run/vswitch/vswitch.sock"}
PREV_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "vswa1b2c3", "mac": "02:00:00:00:00:01"},
                   {"name": "eth0", "mac": "0a:58:0a:f4:01:05",
                    "sandbox": "/var/run/netns/cni-fuzz"}],
    "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
    "dns": {},
}

# Selector bytes of the cni target: mode 2 (an invocation), CNI_COMMAND index << 2.
ADD, DEL, CHECK, VERSION, STATUS, GC = (2 | (i << 2) for i in range(6))

TRACES = [
    "icmp 10.244.1.2 > 10.244.1.3 ttl 5",
    "icmp 10.244.1.2 > 10.244.2.5 len 1500",
    "udp 10.244.1.3 > 10.244.2.53 port 53",
    "tcp 10.244.2.5 > 10.244.1.2 port 5432 dst-mac 0a:58:0a:f4:01:01",
    "tcp 10.244.1.3 > 8.8.8.8 port 443 ttl 1",
    "arp 10.244.1.2 > 10.244.1.1",
    "0a 58 0a f4 01 01 0a 58 0a f4 01 02 08 00 45 00 00 1c 12 34 40 00 40 01 00 00 0a f4 01 02 "
    "0a f4 01 03 08 00 f7 ff 00 00 00 00",
]


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds-raw"
    c = Corpus(out)

    pcaps = sorted((ROOT / "tests" / "pcap").glob("*/*.pcap"))
    pcaps += [SHARED / f for f in SHARED_FILES if (SHARED / f).is_file()]
    for p in pcaps:
        for _, frame in read_pcap(p):
            for target in ("vxlan", "ipip", "parse_frame"):
                c.add(target, frame)
            c.add("checksum", b"\x00\x00\x00\x00\x00\x00\x00" + frame)

    for case_dir in sorted((ROOT / "tests" / "pcap").iterdir()):
        if not (case_dir / "case.toml").is_file():
            continue
        mode, records = pipeline_seed(case_dir)
        if records:
            c.add("pipeline", bytes([mode]) + encode(records))
            if mode == 1:
                c.add("pipeline", bytes([3]) + encode(records))

    for r in REQUESTS + RESPONSES:
        c.add("ctl_request", json.dumps(r) + "\n")

    config = (ROOT / "config.toml").read_text()
    c.add("config", config)
    c.add("config", '[node]\nname = "n"\npod_cidr = "10.244.1.0/24"\n'
          'cluster_cidr = "10.244.0.0/16"\nnode_ip = "192.168.77.1"\n')
    c.add("config", config + '\n[[tunnel]]\nname = "node2"\nkind = "vxlan"\n'
          'remote = "192.168.77.2"\nsubnet = "10.244.2.0/24"\nvtep_mac = "0e:00:00:00:00:02"\n'
          '\n[[tunnel]]\nname = "node3"\nkind = "ipip"\nremote = "192.168.77.3"\n'
          'subnet = "10.244.3.0/24"\n\n[conntrack]\nmax_entries = 1024\nudp_secs = 30\n')

    conflist = (ROOT / "ctl" / "examples" / "10-vswitch.conflist").read_bytes()
    c.add("cni", b"\x00" + conflist)
    c.add("cni", b"\x00" + json.dumps(dict(NETCONF, prevResult=PREV_RESULT)).encode())
    c.add("cni", b"\x01K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-1;VSWITCH_LABELS=app=web,tier=fe;")
    netconf = json.dumps(dict(NETCONF, args={"cni": {"labels": [{"key": "app", "value": "web"}]}}))
    env = "CNI_ARGS=K8S_POD_NAMESPACE=prod;VSWITCH_LABELS=app=web\n"
    for sel, conf in [
        (ADD, netconf), (DEL, netconf), (VERSION, netconf),
        (CHECK, json.dumps(dict(NETCONF, prevResult=PREV_RESULT))),
        (STATUS, json.dumps(dict(NETCONF, cniVersion="1.1.0"))),
        (GC, json.dumps(dict(NETCONF, cniVersion="1.1.0", **{
            "cni.dev/valid-attachments": [{"containerID": "abc", "ifname": "eth0"}]}))),
    ]:
        c.add("cni", bytes([sel]) + env.encode() + b"\x00" + conf.encode())

    policies = sorted((ROOT / "ctl" / "examples" / "networkpolicy").glob("*.yaml"))
    policies += sorted((ROOT / "tests" / "pcap").glob("*/*.yaml"))
    for p in policies:
        c.add("policy", p.read_bytes())

    for i, t in enumerate(TRACES):
        c.add("trace_frame", bytes([i % 4]) + t.encode())

    for target, n in sorted(c.count.items()):
        print(f"{target}: {n} seeds (before deduplication)")


if __name__ == "__main__":
    main()
