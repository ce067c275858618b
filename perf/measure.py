#!/usr/bin/python3
"""One 64-byte UDP load measurement for perf/run.sh; prints one JSON object.

trafgen (netsniff-ng: AF_PACKET mmap TX ring, qdisc bypass) runs pinned to the generator CPU in
the sending pod; after a warm-up, counters are read twice, SECS apart:

  offered    the sending pod's eth0: tx_packets + tx_dropped (everything trafgen put on the veth)
  delivered  the receiving pod's UDP layer: Udp InDatagrams + NoPorts + InErrors from that pod's
             /proc/net/snmp (a sink socket that never reads is bound to the port, so packets end
             as RcvbufErrors and no ICMP goes back)
  switch     --switch-pid: utime + stime of that process (/proc/PID/stat, all threads); with
             several (two vswitch nodes), their sum
  machine    /proc/stat, all CPUs: user+nice+system+irq+softirq, minus user+nice+system of the
             generator CPU (the generator's own work; softirq on that CPU, i.e. kernel
             forwarding done inline after trafgen's sends, stays in)

  foreign    CPU time of processes outside the harness's namespaces (other work on the machine)
  the switch's own view: vswitchd (--vswitch-sock): share of worker polls that found frames and
             frames per busy poll (64 = full batches: saturated); ovs-vswitchd (--ovs-rundir):
             pmd-stats-show processing-cycles share and cycles per packet, cleared at the start

Costs are CPU nanoseconds per delivered packet. Nothing is asserted.
Usage: measure.py udp --ns NS --cfg FILE --sink-pid PID [--switch-pid PID] [--secs S] ...
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def cpu_times():
    """{cpu index: (busy, user+nice+system, all, irq+softirq) ticks}; the sum under key 'all'."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            v = [int(x) for x in vals]
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            key = "all" if name == "cpu" else int(name[3:])
            out[key] = (user + nice + system + irq + softirq, user + nice + system,
                        user + nice + system + idle + iowait + irq + softirq + steal, irq + softirq)
    return out


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def udp_rx(pid):
    """Udp InDatagrams + NoPorts + InErrors in the network namespace of PID."""
    with open(f"/proc/{pid}/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Udp:")]
    d = dict(zip(lines[0][1:], (int(x) for x in lines[1][1:])))
    return d["InDatagrams"] + d["NoPorts"] + d["InErrors"]


def link_tx(ns, dev):
    out = subprocess.run(["ip", "-j", "-s", "-n", ns, "link", "show", "dev", dev],
                         check=True, capture_output=True, text=True).stdout
    tx = json.loads(out)[0]["stats64"]["tx"]
    return tx["packets"] + tx["dropped"]


def our_netns(prefix):
    """Inodes of the harness's network namespaces (/run/netns/<prefix>*)."""
    if not prefix:
        return set()
    return {os.stat(os.path.join("/run/netns", n)).st_ino for n in os.listdir("/run/netns")
            if n.startswith(prefix)}


def foreign_ticks(ours):
    """utime + stime of the processes that are not the harness's: not in one of its namespaces,
    not a kernel thread (softirq work done for us by ksoftirqd is ours), not this script.
    Processes that exit inside the window are not seen, so this is a lower bound."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[6]) & 0x00200000:  # PF_KTHREAD
                continue
            if os.stat(f"/proc/{pid}/ns/net").st_ino in ours:
                continue
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return total


def vswitch_polls(a):
    """Summed over the given vswitchds: frames received, busy polls, idle polls."""
    rx = busy = idle_ = 0
    for sock in a.vswitch_sock or []:
        out = subprocess.run([a.vswitchctl, "--socket", sock, "--json", "stats"], check=True,
                             capture_output=True, text=True).stdout
        d = json.loads(out)
        rx += sum(p["rx_packets"] for p in d["ports"])
        busy += sum(w["busy_polls"] for w in d["workers"])
        idle_ += sum(w["idle_polls"] for w in d["workers"])
    return rx, busy, idle_


def ovs_appctl(a, *args):
    env = dict(os.environ, OVS_RUNDIR=a.ovs_rundir)
    return subprocess.run(["ovs-appctl", *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def snapshot(a):
    s = {"t": time.monotonic(), "cpu": cpu_times(), "rx": udp_rx(a.sink_pid),
         "tx": link_tx(a.ns, a.dev), "foreign": foreign_ticks(a.ours)}
    if a.switch_pid:
        s["sw"] = sum(proc_ticks(pid) for pid in a.switch_pid)
    if a.vswitch_sock:
        s["polls"] = vswitch_polls(a)
    return s


def start_trafgen(a):
    cmd = ["ip", "netns", "exec", a.ns, "taskset", "-c", str(a.gen_cpu), "trafgen", "-o", a.dev,
           "-i", a.cfg, "-P", "1", "--no-sock-mem", "-Q"]
    # Its own process group: trafgen forks a sender per CPU and does not pass SIGINT on to it.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def stop_trafgen(gen):
    try:
        os.killpg(gen.pid, signal.SIGINT)
        return gen.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        os.killpg(gen.pid, signal.SIGKILL)
        return gen.communicate()[0] + "\n(trafgen ignored SIGINT: killed)"
    except ProcessLookupError:
        return gen.communicate()[0]


def udp(a):
    # trafgen gives up ("Flushing TX_RING failed: Resource temporarily unavailable") when its
    # socket's send buffer is full of frames the veth has not consumed yet (--no-sock-mem: we do
    # not raise the machine-wide wmem defaults for it). It is restarted at once; the counters
    # below do not depend on it, and the restarts are reported.
    a.ours = our_netns(a.netns_prefix)
    gen, restarts, first_error = start_trafgen(a), 0, None

    def run_for(secs):
        nonlocal gen, restarts, first_error
        end = time.monotonic() + secs
        while time.monotonic() < end:
            time.sleep(min(0.02, max(0.0, end - time.monotonic())))
            if gen.poll() is not None:
                out = gen.communicate()[0]
                first_error = first_error or out.strip().splitlines()[-1:]
                restarts += 1
                if restarts > 50:
                    sys.exit(f"trafgen keeps exiting: {out}")
                gen = start_trafgen(a)

    try:
        run_for(a.warmup)
        if a.ovs_rundir:
            ovs_appctl(a, "dpif-netdev/pmd-stats-clear")
        s0 = snapshot(a)
        run_for(a.secs)
        s1 = snapshot(a)
        pmd = ovs_appctl(a, "dpif-netdev/pmd-stats-show") if a.ovs_rundir else ""
    finally:
        out = stop_trafgen(gen)
    dt = s1["t"] - s0["t"]
    # Elapsed time as the CPUs' tick counters saw it: if the VM was paused inside the window the
    # monotonic clock jumps while no packet moves; then the tick-based duration is the right one.
    ncpu = len(s0["cpu"]) - 1
    dt_ticks = (s1["cpu"]["all"][2] - s0["cpu"]["all"][2]) / HZ / ncpu
    clock_jump = abs(dt - dt_ticks) > 0.03 * dt
    if clock_jump:
        dt = dt_ticks
    offered, delivered = s1["tx"] - s0["tx"], s1["rx"] - s0["rx"]
    tick_ns = 1e9 / HZ
    busy = s1["cpu"]["all"][0] - s0["cpu"]["all"][0]
    gen_own = s1["cpu"][a.gen_cpu][1] - s0["cpu"][a.gen_cpu][1]
    r = {
        "secs": round(dt, 3),
        "clock_jump": clock_jump,
        "offered_pps": offered / dt,
        "delivered_pps": delivered / dt,
        "loss_pct": 100.0 * (offered - delivered) / offered if offered else None,
        "machine_ns": (busy - gen_own) * tick_ns / delivered if delivered else None,
        "gen_cpu_pct": 100.0 * gen_own * tick_ns / (dt * 1e9),
    }
    r["foreign_cpu_pct"] = round(100.0 * (s1["foreign"] - s0["foreign"]) * tick_ns / (dt * 1e9), 1)
    # per CPU, % of the window: process context (user + system) and interrupt context (softirq)
    r["cpu_pct"] = {str(k): [round(100.0 * (s1["cpu"][k][i] - s0["cpu"][k][i]) * tick_ns / (dt * 1e9), 1)
                             for i in (1, 3)] for k in s0["cpu"] if k != "all"}
    if a.switch_pid:
        r["switch_ns"] = (s1["sw"] - s0["sw"]) * tick_ns / delivered if delivered else None
        r["switch_cpu_pct"] = 100.0 * (s1["sw"] - s0["sw"]) * tick_ns / (dt * 1e9)
    m = re.search(r"(\d+) packets outgoing", out)
    t = re.search(r"(\d+) sec, (\d+) usec on CPU", out)
    if "killed)" in out:
        r["trafgen_killed"] = True
    # The switch's own view of how busy it was (saturation: full batches, few idle polls)
    if a.vswitch_sock:
        rx, busy_polls, idle_polls = (x1 - x0 for x0, x1 in zip(s0["polls"], s1["polls"]))
        r["vswitch_busy_poll_pct"] = 100.0 * busy_polls / (busy_polls + idle_polls) if busy_polls + idle_polls else None
        r["vswitch_frames_per_busy_poll"] = rx / busy_polls if busy_polls else None
    if pmd:
        share = re.search(r"processing cycles: \d+ \(([\d.]+)%\)", pmd)
        per_pkt = re.search(r"avg processing cycles per packet: ([\d.]+)", pmd)
        r["ovs_processing_pct"] = float(share.group(1)) if share else None
        r["ovs_cycles_per_pkt"] = float(per_pkt.group(1)) if per_pkt else None
    if restarts:
        r["trafgen_restarts"] = restarts
        r["trafgen_error"] = " ".join(first_error or [])
    elif m and t:  # trafgen's own count over its whole run (a cross-check of "offered")
        r["trafgen_pps"] = int(m.group(1)) / (int(t.group(1)) + int(t.group(2)) / 1e6)
    print(json.dumps(r))


def idle(a):
    """Busy % of each CPU over SECS while the harness runs nothing (foreign load)."""
    c0 = cpu_times()
    time.sleep(a.secs)
    c1 = cpu_times()
    pct = {k: 100.0 * (c1[k][0] - c0[k][0]) / (HZ * a.secs) for k in c0 if k != "all"}
    print(json.dumps({"busy_pct": pct}))


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops trafgen
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("udp")
    u.add_argument("--ns", required=True, help="the sending pod's netns")
    u.add_argument("--dev", default="eth0")
    u.add_argument("--cfg", required=True, help="trafgen packet configuration")
    u.add_argument("--sink-pid", type=int, required=True, help="a process in the receiving pod")
    u.add_argument("--switch-pid", type=int, action="append",
                   help="a forwarding process (vswitchd, ovs-vswitchd); repeat for several, summed")
    u.add_argument("--vswitch-sock", action="append", help="a vswitchd control socket (repeatable)")
    u.add_argument("--vswitchctl", default="vswitchctl")
    u.add_argument("--ovs-rundir", help="OVS_RUNDIR of the ovs-vswitchd under test")
    u.add_argument("--netns-prefix", help="the harness's netns names start with this (foreign load)")
    u.add_argument("--gen-cpu", type=int, default=0)
    u.add_argument("--secs", type=float, default=5.0)
    u.add_argument("--warmup", type=float, default=0.5)
    i = sub.add_parser("idle")
    i.add_argument("--secs", type=float, default=1.0)
    a = p.parse_args()
    {"udp": udp, "idle": idle}[a.cmd](a)


if __name__ == "__main__":
    main()
