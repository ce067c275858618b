#!/usr/bin/python3
"""Writes the NetworkPolicy of perf/run.sh's ACL-scaling engines (vswitch-acl1 ... -acl10000).

  acl_policy.py --rules N [--name NAME] [--sink-label role=sink] [--source-label role=source]

One networking.k8s.io/v1 NetworkPolicy (namespace default) selecting the pods labelled
--sink-label for ingress, with N ingress rules. Rules 1 .. N-1 never match the benchmark's
traffic (pod a 10.244.1.2 -> pod b on UDP 9, UDP 7 and TCP 5201), and half of them miss it by one
field only, so a classifier cannot reject them on the first field it looks at:
  odd rules   from ipBlock 172.16.X.Y/32 (never a pod address) on the benchmark's ports
  even rules  from the benchmark's source pod (--source-label) on ports it never uses
              (UDP/TCP 20000 + i; 20000-29999 is free of the harness's ports)
The LAST rule allows the source pod on UDP 9 (the sink), UDP 7 (ping-pong) and TCP 5201 (iperf3).
ICMP matches no rule (NetworkPolicy ports are TCP/UDP/SCTP only), so a ping is denied.
Block-style YAML as `kubectl get -o yaml` writes it: about 1.9 MB for 10,000 rules (the control
socket takes at most 4 MiB per request).
"""
import argparse
import sys

BENCH_PORTS = (("UDP", 9), ("UDP", 7), ("TCP", 5201))


def label(s):
    k, _, v = s.partition("=")
    if not k or not v:
        raise argparse.ArgumentTypeError(f"{s!r} is not KEY=VALUE")
    return k, v


def ports(lines, pairs):
    lines.append("    ports:")
    for proto, port in pairs:
        lines += [f"    - protocol: {proto}", f"      port: {port}"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", type=int, required=True)
    p.add_argument("--name", default="perf-acl")
    p.add_argument("--sink-label", type=label, default=("role", "sink"))
    p.add_argument("--source-label", type=label, default=("role", "source"))
    a = p.parse_args()
    if not 1 <= a.rules <= 20000:
        p.error("--rules must be in 1..20000 (odd rules use 172.16.0.0/16, even rules ports 20000+)")
    sk, sv = a.sink_label
    ck, cv = a.source_label
    out = ["apiVersion: networking.k8s.io/v1", "kind: NetworkPolicy", "metadata:",
           f"  name: {a.name}", "  namespace: default", "spec:", "  podSelector:", "    matchLabels:",
           f"      {sk}: {sv}", "  policyTypes:", "  - Ingress", "  ingress:"]
    source = ["  - from:", "    - podSelector:", "        matchLabels:", f"          {ck}: {cv}"]
    for i in range(1, a.rules):
        if i % 2:   # wrong source, right ports
            out += ["  - from:", "    - ipBlock:", f"        cidr: 172.16.{i >> 8}.{i & 255}/32"]
            ports(out, BENCH_PORTS)
        else:       # right source, wrong ports
            out += source
            ports(out, (("UDP", 20000 + i), ("TCP", 20000 + i)))
    out += source
    ports(out, BENCH_PORTS)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
