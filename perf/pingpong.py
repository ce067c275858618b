#!/usr/bin/python3
"""UDP ping-pong for perf/run.sh: round-trip times between two pods.

  pingpong.py server [--port 7]                  echo every datagram back (runs until killed)
  pingpong.py client --dst IP [--port 7] [--count N] [--warmup W] [--payload 18]

The client sends one datagram, waits for its echo (--timeout, then counted as lost; the whole
run stops after --max-secs), and takes the
round trip from time.perf_counter_ns() before sendto and after recvfrom: one request in flight,
so the figure is the full path there and back, both pods' stacks included. It prints one JSON
object: p50/p99/p99.9/max in microseconds over COUNT round trips after WARMUP unmeasured ones.
"""
import argparse
import json
import socket
import struct
import time


def server(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", a.port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def pct(sorted_ns, q):
    i = min(len(sorted_ns) - 1, max(0, int(round(q / 100.0 * len(sorted_ns))) - 1))
    return sorted_ns[i] / 1000.0


def client(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(a.timeout)
    s.connect((a.dst, a.port))
    pad = b"\0" * max(0, a.payload - 8)
    rtts, lost, clock = [], 0, time.perf_counter_ns
    deadline, complete = time.monotonic() + a.max_secs, True
    for seq in range(a.warmup + a.count):
        if time.monotonic() > deadline:
            complete = False
            break
        msg = struct.pack("!Q", seq) + pad
        t0 = clock()
        s.send(msg)
        try:
            while True:  # skip a late echo of an earlier (timed-out) request
                data = s.recv(2048)
                if data[:8] == msg[:8]:
                    break
        except socket.timeout:
            lost += 1
            continue
        t1 = clock()
        if seq >= a.warmup:
            rtts.append(t1 - t0)
    rtts.sort()
    r = {"count": len(rtts), "lost": lost, "complete": complete}
    if rtts:
        r.update(p50_us=pct(rtts, 50), p99_us=pct(rtts, 99), p999_us=pct(rtts, 99.9),
                 max_us=rtts[-1] / 1000.0, mean_us=sum(rtts) / len(rtts) / 1000.0)
    print(json.dumps(r))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("server")
    sv.add_argument("--port", type=int, default=7)
    c = sub.add_parser("client")
    c.add_argument("--dst", required=True)
    c.add_argument("--port", type=int, default=7)
    c.add_argument("--count", type=int, default=20000)
    c.add_argument("--warmup", type=int, default=500)
    c.add_argument("--timeout", type=float, default=0.2, help="seconds before a request counts as lost")
    c.add_argument("--max-secs", type=float, default=60, help="stop early after this long")
    c.add_argument("--payload", type=int, default=18, help="UDP payload bytes (18 = 64-byte frames)")
    a = p.parse_args()
    server(a) if a.cmd == "server" else client(a)


if __name__ == "__main__":
    main()
