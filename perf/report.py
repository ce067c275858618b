#!/usr/bin/python3
"""Turns perf/run.sh's raw measurements into perf/RESULTS.md and the chart.

  report.py --raw raw.jsonl --meta meta.json --md RESULTS.md --png results.png

Every figure is the median over the repetitions of that engine; ratios are ratios of medians.
The issue's targets are stated with met / not met: goals, never assertions.
"""
import argparse
import json
import statistics

LABEL = {
    "vswitch": "vswitch",
    "bridge": "Linux bridge",
    "ovs": "OVS-AF_XDP",
    "vswitch-vxlan": "vswitch VXLAN",
    "vswitch-ipip": "vswitch IPIP",
    "flannel": "kernel flannel (VXLAN)",
}
SECTIONS = {"same": ["vswitch", "bridge", "ovs"], "cross": ["vswitch-vxlan", "vswitch-ipip", "flannel"]}
# ACL scaling: the same-node vswitch without a policy (the reference, measured again in this
# section) and with one NetworkPolicy of N ingress rules selecting the receiving pod.
ACL_SIZES = [1, 100, 1000, 10000]
ACL_ENGINES = ["vswitch"] + [f"vswitch-acl{n}" for n in ACL_SIZES]
ACL_LABEL = {"vswitch": "vswitch, no policy",
             **{f"vswitch-acl{n}": f"vswitch, {n:,} rule{'s' if n != 1 else ''}" for n in ACL_SIZES}}
SECTION_ORDER = ["same", "cross", "acl"]


def label(r):
    return ACL_LABEL[r["engine"]] if r["section"] == "acl" else LABEL[r["engine"]]


def med(rows, get):
    vals = []
    for r in rows:
        try:
            v = get(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def fmt(v, spec="{:,.0f}", none="n/a"):
    return none if v is None else spec.format(v)


def size(n):
    if n is None:
        return "n/a"
    return f"{n:,.0f} B" if n < 10240 else f"{n / 1024:,.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def ratio(a, b):
    return a / b if a is not None and b else None


def notes(r):
    u, l, n = r["udp"], r["lat"], []
    for d in (u, l):
        if "error" in d:
            n.append(f"ERROR: {d['error']} (left out of the medians)")
    if r.get("tcp_gbps") is None:
        n.append("TCP: iperf3 failed")
    if u.get("trafgen_restarts"):
        n.append(f"trafgen restarted {u['trafgen_restarts']}x ({u.get('trafgen_error', '')})")
    if u.get("trafgen_killed"):
        n.append("trafgen needed SIGKILL")
    if u.get("clock_jump"):
        n.append("clock jump: tick-based window")
    if l.get("lost"):
        n.append(f"{l['lost']} RTT requests lost")
    if not l.get("complete", True):
        n.append(f"latency stopped at the time limit after {l['count']}")
    if r.get("foreign_pct", 0) > 15:
        n.append(f"foreign load {r['foreign_pct']} % before")
    if u.get("foreign_cpu_pct", 0) > 5:
        n.append(f"foreign load {u['foreign_cpu_pct']:.0f} % of a CPU during UDP")
    p = r.get("phases_s")
    acl = r.get("acl")
    if acl and acl.get("rules"):
        n.append(f"policy: {acl['yaml_bytes']:,} bytes of YAML applied in {acl['apply_s'] * 1e3:.0f} ms, probe"
                 f" +{acl['probe_allowed']} allowed / +{acl['probe_denied']} denied; during the"
                 f" measurements {acl['allowed']} flows allowed, {acl['denied']} packets denied;"
                 f" {acl['conntrack_entries']} conntrack entries after")
    elif acl:
        n.append(f"{acl['conntrack_entries']} conntrack entries after")
    if p:
        n.append("phases " + " ".join(f"{k} {v:g}" for k, v in p.items()) + " s")
    return "; ".join(n)


def summarize(raw, sections=None):
    """{engine: medians} over the rows of the given sections (default: same and cross)."""
    s = {}
    sections = sections or SECTIONS
    for sec, engines in sections.items():
        for e in engines:
            rows = [r for r in raw if r["section"] == sec and r["engine"] == e]
            if not rows:
                continue
            s[e] = {
                "n": len(rows),
                "offered": med(rows, lambda r: r["udp"]["offered_pps"]),
                "delivered": med(rows, lambda r: r["udp"]["delivered_pps"]),
                # counters are read a few ms apart: a lossless path can show -0.1 %
                "loss": med(rows, lambda r: max(0.0, r["udp"]["loss_pct"])),
                "switch_ns": med(rows, lambda r: r["udp"].get("switch_ns")),
                "switch_cpu": med(rows, lambda r: r["udp"].get("switch_cpu_pct")),
                "machine_ns": med(rows, lambda r: r["udp"]["machine_ns"]),
                "gen_cpu": med(rows, lambda r: r["udp"]["gen_cpu_pct"]),
                "trafgen": med(rows, lambda r: r["udp"].get("trafgen_pps")),
                "p50": med(rows, lambda r: r["lat"]["p50_us"]),
                "p99": med(rows, lambda r: r["lat"]["p99_us"]),
                "p999": med(rows, lambda r: r["lat"]["p999_us"]),
                "lost": sum(r["lat"].get("lost") or 0 for r in rows),
                "tcp": med(rows, lambda r: r["tcp_gbps"]),
                "busy_poll": med(rows, lambda r: r["udp"].get("vswitch_busy_poll_pct")),
                "batch": med(rows, lambda r: r["udp"].get("vswitch_frames_per_busy_poll")),
                "ovs_proc": med(rows, lambda r: r["udp"].get("ovs_processing_pct")),
                "ovs_cyc": med(rows, lambda r: r["udp"].get("ovs_cycles_per_pkt")),
                "cpu": {c: [med(rows, lambda r: r["udp"]["cpu_pct"][c][i]) for i in (0, 1)]
                        for c in sorted({c for r in rows for c in r["udp"].get("cpu_pct", {})})},
                "foreign": max(r.get("foreign_pct", 0) for r in rows),
                "acl_bytes": med(rows, lambda r: r["acl"]["yaml_bytes"]),
                "acl_apply": med(rows, lambda r: r["acl"]["apply_s"]),
                "acl_allowed": med(rows, lambda r: r["acl"]["allowed"]),
                "acl_denied": med(rows, lambda r: r["acl"]["denied"]),
                "conntrack": med(rows, lambda r: r["acl"]["conntrack_entries"]),
            }
    return s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--png", required=True)
    a = p.parse_args()
    raw = [json.loads(l) for l in open(a.raw) if l.strip()] if open(a.raw).read().strip() else []
    meta = json.load(open(a.meta))
    s = summarize(raw)
    acl = summarize(raw, {"acl": ACL_ENGINES})
    mhz = meta.get("cpu_mhz")
    cyc = lambda ns: ns * mhz / 1000.0 if ns is not None and mhz else None
    unavailable = {"ovs": meta["ovs_unavailable"]} if meta.get("ovs_unavailable") else {}

    out = []
    w = out.append
    foreign = [r.get("foreign_pct", 0) for r in raw]
    idle_max = max(foreign, default=0)
    during = [r["udp"].get("foreign_cpu_pct") or 0 for r in raw]
    disturbed = [r for r in raw if (r["udp"].get("foreign_cpu_pct") or 0) > 5]
    w("# vswitch benchmark results\n")
    args = meta.get("args", "--quick" if meta["mode"] == "quick" else "")
    w(f"Produced by `sudo perf/run.sh{' ' + args if args else ''}` on {meta['date']}"
      f" ({meta['mode']} mode, {meta['reps']} repetition{'s' if meta['reps'] != 1 else ''} per engine with the engines alternating inside"
      f" each repetition, medians; the run took {meta['elapsed_s'] // 60} min {meta['elapsed_s'] % 60} s).\n")
    w(f"- Machine: {meta['nproc']} CPUs (`nproc`), {meta['cpu_model']}"
      f"{f' at {mhz:.0f} MHz' if mhz else ''} (/proc/cpuinfo), kernel {meta['kernel']}")
    w(f"- Commit: `{meta['commit']}`{' with uncommitted changes outside perf/ in the working tree' if meta['dirty'] else ''}")
    w(f"- Generator: {meta['trafgen']}, 64-byte frames (60 + FCS: Ethernet, IPv4, UDP, 18 bytes of"
      f" payload; one flow), one process pinned to CPU {meta['gen_cpu']}; switch worker on CPU"
      f" {meta['sw_cpu']} (vswitchd `cpus = [{meta['sw_cpu']}]`, OVS `pmd-cpu-mask`)."
      f" Cross node: node1's worker (encapsulation) on CPU {meta['sw_cpu']}, node2's (decapsulation)"
      f" on CPU {meta['cross_rx_cpu']}{' with the generator and the pods' if meta['cross_rx_cpu'] == meta['gen_cpu'] else ''}:"
      f" two polling workers and a generator do not get a core each on a {meta['nproc']}-CPU machine.")
    w(f"- Durations: UDP {meta['secs']:g} s per measurement (after 0.5 s warm-up), TCP {meta['tcp_secs']} s,"
      f" latency {meta['rtts']} round trips (after 500 unmeasured).")
    w(f"- Peer: {meta['ovs']}. Foreign load (the busiest CPU over 0.3 s while nothing of the harness"
      f" ran, before each engine; waiting up to {meta['quiet_wait']} s for it to fall under 15 %):"
      f" median {statistics.median(foreign) if foreign else 0:.0f} %, max {idle_max:.0f} %"
      f"{' -- other work shared the machine during part of the run' if idle_max > 15 else ''}."
      f" CPU time of processes outside the harness's namespaces during the UDP windows: max"
      f" {max(during, default=0):.0f} % of a CPU"
      + (f"; above 5 % in {len(disturbed)} of {len(raw)} measurements"
         f" ({', '.join(sorted({'rep %d %s' % (r['rep'], label(r)) for r in disturbed}))}),"
         " which the medians absorb; see the notes column of the last table" if disturbed else "")
      + ".\n")

    def udp_table(sec, title):
        engines = SECTIONS[sec]
        present = [e for e in engines if e in s or e in unavailable]
        if not present:
            return
        w(f"## {title}\n")
        peers = [e for e in engines if e in s]
        w("| engine | offered pps | delivered pps | loss % | switch process ns/pkt (cycles) |"
          " machine ns/pkt excl. generator | " + " | ".join(f"delivered vs {LABEL[p]}" for p in peers) + " |")
        w("|---" * (6 + len(peers)) + "|")
        for e in present:
            if e in unavailable:
                w(f"| {LABEL[e]} | unavailable: {unavailable[e]} |" + " |" * (4 + len(peers)))
                continue
            r = s[e]
            sw = (f"{fmt(r['switch_ns'])} ({fmt(cyc(r['switch_ns']))})" if r["switch_ns"] is not None
                  else "kernel (see machine)")
            rat = " | ".join("—" if p == e else fmt(ratio(r["delivered"], s[p]["delivered"]), "{:.2f}x")
                             for p in peers)
            mark = " †" if r["loss"] is not None and r["loss"] < 2.0 else ""
            w(f"| {LABEL[e]} | {fmt(r['offered'])} | {fmt(r['delivered'])}{mark} | {fmt(r['loss'], '{:.1f}')} |"
              f" {sw} | {fmt(r['machine_ns'])} | {rat} |")
        w("")

    udp_table("same", "Same node: pod to pod, 64-byte UDP")
    udp_table("cross", "Cross node: pod to pod over the underlay, 64-byte UDP")
    if any(v["loss"] is not None and v["loss"] < 2.0 for v in s.values()):
        w("† took (nearly) everything offered: bound by the generator's CPU, not by the switch, so"
          " the delivered ratio between two such rows is not a capacity ratio (see the CPU table).\n")

    engines_ = [e for sec in SECTIONS.values() for e in sec if e in s]
    cpus = sorted({c for e in engines_ for c in s[e]["cpu"]}, key=int)
    if cpus:
        w("## CPU during the UDP window (% of each CPU, medians)\n")
        w("| engine | " + " | ".join(f"CPU {c} process | CPU {c} softirq" for c in cpus)
          + " | switch process | the switch's own view |")
        w("|---" * (3 + 2 * len(cpus)) + "|")
        for e in engines_:
            r = s[e]
            cells = " | ".join(f"{fmt(r['cpu'].get(c, [None, None])[0])} | {fmt(r['cpu'].get(c, [None, None])[1])}"
                               for c in cpus)
            view = "—"
            if r["batch"] is not None:
                view = (f"{r['batch']:.1f} frames per busy poll (batch 64), {fmt(r['busy_poll'], '{:.0f}')} %"
                        " of polls busy")
            elif r["ovs_proc"] is not None:
                view = (f"{fmt(r['ovs_cyc'])} processing cycles/pkt, {r['ovs_proc']:.0f} % of PMD cycles"
                        " processing (pmd-stats-show)")
            w(f"| {LABEL[e]} | {cells} | {fmt(r['switch_cpu'], none='kernel')} | {view} |")
        w(f"\nCPU {meta['gen_cpu']} process time is the generator (trafgen's sends into the veth); its"
          " softirq time is the first hop's receive work that the veth runs on the sender's CPU: XDP"
          " and the copy into the AF_XDP ring for the userspace switches, the whole bridge /"
          " flannel path for the kernel. When CPU 0 is full, that is what limits the offered rate."
          " A polling switch shows ~100 % \"switch process\" at any load; its own counters say how"
          " close to saturation it was: a saturated vswitch worker receives full batches.\n")

    engines = [e for sec in SECTIONS.values() for e in sec if e in s]
    if engines:
        w("## Latency: UDP ping-pong round trip (µs), 64-byte frames, one request in flight\n")
        w("| engine | p50 | p99 | p99.9 | p99 vs peers (same section) | lost |")
        w("|---|---|---|---|---|---|")
        for e in engines:
            r = s[e]
            sec = next(k for k, v in SECTIONS.items() if e in v)
            rat = ", ".join(f"{fmt(ratio(r['p99'], s[p]['p99']), '{:.2f}x')} {LABEL[p]}"
                            for p in SECTIONS[sec] if p != e and p in s)
            w(f"| {LABEL[e]} | {fmt(r['p50'], '{:.0f}')} | {fmt(r['p99'], '{:.0f}')} |"
              f" {fmt(r['p999'], '{:.0f}')} | {rat} | {r['lost']} |")
        for e in unavailable:
            w(f"| {LABEL[e]} | unavailable: {unavailable[e]} | | | | |")
        w("")
        if meta["cross_rx_cpu"] == meta["gen_cpu"] and any(e in s for e in ("vswitch-vxlan", "vswitch-ipip")):
            w(f"Cross-node vswitch rows: node2's polling worker shares CPU {meta['gen_cpu']} with both"
              " ping-pong ends (and node1's worker is on the other CPU), so a woken pod can wait for"
              " a scheduler slice (a few hundred µs): that, more than the switch, is their p99.\n")
        w("## TCP: iperf3, one stream, receiver Gbit/s\n")
        w("| engine | Gbit/s | vs peers (same section) |")
        w("|---|---|---|")
        for e in engines:
            r = s[e]
            sec = next(k for k, v in SECTIONS.items() if e in v)
            rat = ", ".join(f"{fmt(ratio(r['tcp'], s[p]['tcp']), '{:.2f}x')} {LABEL[p]}"
                            for p in SECTIONS[sec] if p != e and p in s)
            w(f"| {LABEL[e]} | {fmt(r['tcp'], '{:.2f}')} | {rat} |")
        for e in unavailable:
            w(f"| {LABEL[e]} | unavailable: {unavailable[e]} | |")
        w("")

    acl_table(w, acl, meta, cyc)

    # --- the targets ---------------------------------------------------------------
    g = lambda e, k: s.get(e, {}).get(k)

    def target(text, value, goal, spec, higher=True, note=""):
        if value is None:
            w(f"| {text} | not measured | — |")
        else:
            ok = value >= goal if higher else value <= goal
            w(f"| {text} | {spec.format(value)}{note} | {'met' if ok else 'not met'} |")

    bound = lambda e: e in s and s[e]["loss"] is not None and s[e]["loss"] < 2.0

    if s:   # an ACL-only run has nothing for these targets
        w("## Targets (issue 5, deliverable 7): goals of the benchmark, not assertions\n")
        w("| target | measured | |")
        w("|---|---|---|")
        target("same-node 64 B delivered pps >= 1.3x OVS-AF_XDP",
               ratio(g("vswitch", "delivered"), g("ovs", "delivered")), 1.3, "{:.2f}x",
               note=" (both rows †: generator-bound, so not a capacity ratio)" if bound("vswitch") and bound("ovs") else "")
        target("same-node 64 B delivered pps >= 1.6x the Linux bridge",
               ratio(g("vswitch", "delivered"), g("bridge", "delivered")), 1.6, "{:.2f}x")
        target("forwarding core <= 1000 cycles per packet (vswitchd process, same node)",
               cyc(g("vswitch", "switch_ns")), 1000, "{:,.0f} cycles", higher=False,
               note=" (a polling worker's whole core per delivered packet, below saturation: an upper"
                    " bound)" if bound("vswitch") else "")
        target("VXLAN >= 1.5x the kernel VXLAN path (delivered pps, cross node)",
               ratio(g("vswitch-vxlan", "delivered"), g("flannel", "delivered")), 1.5, "{:.2f}x",
               note=" (vswitch uses CPU 1 and part of CPU 0, the kernel path only CPU 0: see the CPU"
                    " table)" if "flannel" in s else "")
        target("p99 RTT <= 2x the bridge's (same node)",
               ratio(g("vswitch", "p99"), g("bridge", "p99")), 2.0, "{:.2f}x", higher=False)
        target("TCP >= 0.5x the bridge (same node)",
               ratio(g("vswitch", "tcp"), g("bridge", "tcp")), 0.5, "{:.2f}x")
        w("")

    w("## How it was measured\n")
    w("- **offered pps**: the sending pod's `eth0` tx_packets + tx_dropped over the window (what"
      " trafgen put on the veth). **delivered pps**: the receiving pod's UDP layer (`Udp` InDatagrams"
      " + NoPorts + InErrors of its /proc/net/snmp; a socket that never reads is bound to the port,"
      " so the packets end as RcvbufErrors). **loss %** = 1 - delivered / offered.")
    w("- **switch process ns/pkt**: utime + stime of the forwarding process (vswitchd; ovs-vswitchd;"
      " both vswitchds for cross node) from /proc/PID/stat over the window, per delivered packet;"
      f" cycles = ns x {mhz:.0f} MHz (no PMU in this VM, so no `perf` cycle counts). A polling worker"
      " at 100 % of its core makes this 1e9 / delivered pps. It includes the kernel work done in the"
      " process's own context (AF_XDP TX into the veth and, with it, the receiving pod's stack).")
    w(f"- **machine ns/pkt excl. generator**: /proc/stat of all CPUs, user + nice + system + irq +"
      f" softirq, minus user + nice + system of CPU {meta['gen_cpu']} (the generator's own sending),"
      f" per delivered packet. This is the only cost figure for the kernel paths, where forwarding"
      " runs in softirq, mostly inline on the generator's CPU right after each send (the veth"
      " \"wire\" is a CPU). It covers the forwarding, the XDP receive on the generator's CPU for the"
      " AF_XDP switches, and the receiving pod's stack; tick-based accounting (HZ), so +-1 tick.")
    w("- **latency**: perf/pingpong.py, Python UDP echo, client and server pinned to CPU"
      f" {meta['gen_cpu']}, `time.perf_counter_ns()` around send + receive, one request in flight;"
      " includes both pods' stacks and Python (~10-20 µs of the figure are the tool itself).")
    w("- **TCP**: `iperf3 -c -t N`, one stream, not pinned (pods may use both CPUs, as they would).")
    offers = [s[e]["offered"] for e in ("vswitch", "ovs") if e in s and s[e]["offered"]]
    cap = f" (about {max(offers) / 1e6:.2f} Mpps against an AF_XDP port here)," if offers else ","
    w("- **Generator: trafgen** (netsniff-ng), AF_PACKET with an mmap'ed TX ring and qdisc bypass,"
      " one process pinned to CPU 0. Why: it offers several times what `iperf3 -u` can (one sendmsg"
      " and a full UDP/IP stack pass per packet, ~0.1-0.2 Mpps), it is packaged, and it needs no"
      " code of ours; a Python AF_XDP generator cannot reach these rates, and this kernel has no"
      " pktgen. Where it falls short: a veth runs the receive side of its peer on the sender's CPU,"
      " so CPU 0 carries trafgen *and* the first hop's receive work (for the AF_XDP switches: the"
      " skb copy out of the TX ring, XDP and the copy into the AF_XDP ring, about half of CPU 0 in a"
      " `perf record -C 0` profile: skb_copy_ubufs, skb_pp_cow_data, veth_xdp_rcv_skb, xsk_rcv;"
      " for the kernel paths the whole forwarding). That caps what it can offer"
      f"{cap} and the rows marked † are bound by it.")
    w("")

    w("## Per repetition\n")
    w("| rep | engine | offered pps | delivered pps | switch ns/pkt | machine ns/pkt | RTT p50/p99/p99.9 µs | TCP Gbit/s | notes |")
    w("|---|---|---|---|---|---|---|---|---|")
    order = lambda r: (SECTION_ORDER.index(r["section"]),
                       (ACL_ENGINES if r["section"] == "acl" else list(LABEL)).index(r["engine"]), r["rep"])
    for r in sorted(raw, key=order):
        u, l = r["udp"], r["lat"]
        w(f"| {r['rep']} | {label(r)} | {fmt(u.get('offered_pps'))} | {fmt(u.get('delivered_pps'))} |"
          f" {fmt(u.get('switch_ns'))} | {fmt(u.get('machine_ns'))} |"
          f" {fmt(l.get('p50_us'))}/{fmt(l.get('p99_us'))}/{fmt(l.get('p999_us'))} | {fmt(r['tcp_gbps'], '{:.2f}')} |"
          f" {notes(r)} |")
    w("")
    open(a.md, "w").write("\n".join(out))

    chart(s, engines, acl, a.png, meta)


def acl_table(w, acl, meta, cyc):
    if not acl:
        w("## ACL scaling\n")
        w(f"Not measured in this run (`--only {meta.get('only')}`); `perf/run.sh` or `--only acl` measures it.\n")
        return
    base = acl.get("vswitch", {})
    w("## ACL scaling: one NetworkPolicy of N ingress rules on the receiving pod (same node)\n")
    w("| engine | delivered pps (offered) | loss % | delivered vs no policy | switch process ns/pkt"
      " (cycles) | worker: polls busy %, frames per busy poll | RTT p50 / p99 µs | p99 vs no policy |"
      " TCP Gbit/s | TCP vs no policy | policy: YAML, apply | during the measurements: flows allowed,"
      " packets denied | conntrack entries after |")
    w("|---" * 13 + "|")
    for e in ACL_ENGINES:
        if e not in acl:
            continue
        r = acl[e]
        mark = " †" if r["loss"] is not None and r["loss"] < 2.0 else ""
        poll = (f"{fmt(r['busy_poll'], '{:.0f}')} %, {fmt(r['batch'], '{:.1f}')}"
                if r["busy_poll"] is not None else "n/a")
        same = e == "vswitch"
        pol = "—" if same else f"{size(r['acl_bytes'])}, {fmt(r['acl_apply'] and r['acl_apply'] * 1e3, '{:,.0f}')} ms"
        cls = "—" if same else f"{fmt(r['acl_allowed'])}, {fmt(r['acl_denied'])}"
        rat = lambda k, spec="{:.2f}x": "—" if same else fmt(ratio(r[k], base.get(k)), spec)
        w(f"| {ACL_LABEL[e]} | {fmt(r['delivered'])}{mark} ({fmt(r['offered'])}) | {fmt(r['loss'], '{:.1f}')} |"
          f" {rat('delivered')} | {fmt(r['switch_ns'])} ({fmt(cyc(r['switch_ns']))}) | {poll} |"
          f" {fmt(r['p50'], '{:.0f}')} / {fmt(r['p99'], '{:.0f}')} | {rat('p99')} |"
          f" {fmt(r['tcp'], '{:.2f}')} | {rat('tcp')} | {pol} | {cls} | {fmt(r['conntrack'])} |")
    w("")
    w("- **Policy** (perf/acl_policy.py): one NetworkPolicy `perf-aclN` selecting pod b (`role=sink`)"
      " for ingress, with N ingress rules in order. Rules 1 .. N-1 miss the benchmark's traffic by one"
      " field: odd ones come from an ipBlock 172.16.X.Y/32 on the benchmark's ports, even ones from pod"
      " a (`role=source`) on UDP/TCP 20000 + i; the LAST rule allows pod a (podSelector) on UDP 9"
      " (the sink), UDP 7 (ping-pong) and TCP 5201 (iperf3), so a first-match linear classifier walks"
      " all N rules for every new flow of the benchmark. ICMP matches no rule. The pods, the CPUs and"
      " the three measurements are those of the same-node vswitch row; the \"no policy\" row is"
      " measured again in this section, alternating with the N-rule engines inside each repetition.")
    w("- **Checked before measuring**: the policy is applied (`vswitchctl policy apply -f`, the apply"
      " column: YAML size and the command's wall time) after the pods reached each other, `vswitchctl"
      " policy list` must show N rules on pod b's port alone, then pod a's neighbour table is flushed"
      " and a probe sends a new UDP flow to :9 and one to :10: the policy's allowed count must rise"
      " (ARP and the last rule work) and its denied count too (UDP :10 matches no rule), or the run"
      " stops. The counters column is what `vswitchctl --json stats` `policies` counted after that"
      " probe, over latency + UDP + TCP (medians): the classifier's allowed decisions (per flow) and"
      " denied packets; denied should be 0 (nothing the benchmark sends is refused).")
    w("- **Traffic pattern**: the UDP rows are one flow (trafgen's fixed 5-tuple 10.244.1.2:40000 ->"
      " 10.244.1.3:9): its first packet is classified (all N rules), every later one is a conntrack"
      " hit, whatever N is. Ping-pong and iperf3 are one flow each (iperf3: control + data"
      " connection), so the allowed count above is a handful. These rows therefore show the"
      " per-packet cost of an established connection under a policy (it should be flat in N), not"
      " the classifier's cost per new flow at N rules: for that, `cargo bench -p vswitch --bench"
      " pipeline -- acl` (new flows every batch, and `uncached`: every packet classified, at 0, 1 and"
      " 10,000 rules).")
    if any(v["loss"] is not None and v["loss"] < 2.0 for v in acl.values()):
        w("- † took (nearly) everything offered: bound by the generator, so the delivered ratio hides a"
          " cost difference; the worker columns do not (a saturated vswitch worker is 100 % busy polls"
          " with 64 frames per busy poll; a costlier packet raises both below saturation). The switch"
          " ns/pkt of a polling worker is its whole core per delivered packet (1e9 / delivered pps).")
    w("")


def chart(s, engines, acl, png, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acl_e = [e for e in ACL_ENGINES if e in acl]
    if not engines and not acl_e:
        return
    rows = (1 if engines else 0) + (1 if acl_e else 0)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 4.8 * rows), squeeze=False)
    if acl_e:
        acl_chart(acl, acl_e, axes[-1])
    if not engines:
        fig.suptitle(f"vswitch ACL scaling ({meta['mode']} run {meta['date']}, commit {meta['commit']})",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        return
    ax = axes[0]
    names = [LABEL[e].replace(" (", "\n(") for e in engines]
    color = ["#1f77b4" if e.startswith("vswitch") else "#999999" for e in engines]
    # same-node engines, a gap, cross-node engines
    x = [i + (0.6 if e in SECTIONS["cross"] else 0.0) for i, e in enumerate(engines)]
    same_x = [i for i, e in zip(x, engines) if e in SECTIONS["same"]]
    cross_x = [i for i, e in zip(x, engines) if e in SECTIONS["cross"]]
    gap = [(same_x[-1] + cross_x[0]) / 2] if same_x and cross_x else []
    ax[0].bar(x, [(s[e]["offered"] or 0) / 1e6 for e in engines], color="#dddddd", label="offered")
    ax[0].bar(x, [(s[e]["delivered"] or 0) / 1e6 for e in engines], color=color, width=0.6, label="delivered")
    ax[0].set_title("64-byte UDP, Mpps (median)")
    ax[1].bar(x, [s[e]["tcp"] or 0 for e in engines], color=color)
    ax[1].set_title("TCP iperf3, Gbit/s (median)")
    ax[2].bar(x, [s[e]["p99"] or 0 for e in engines], color=color)
    ax[2].set_title("UDP ping-pong RTT p99, µs (median)")
    for a_ in ax:
        a_.set_xticks(list(x))
        a_.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        a_.grid(axis="y", alpha=0.3)
        if gap:
            a_.axvline(gap[0], color="#444444", linestyle=":", linewidth=1)
            a_.text(0.01, 0.97, "same node", transform=a_.transAxes, fontsize=7, va="top")
            a_.text(gap[0] + 0.1, 0.97, "cross node", transform=a_.get_xaxis_transform(), fontsize=7, va="top")
    ax[0].legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.93))
    fig.suptitle(f"vswitch vs peers, same node and cross node{', ACL scaling' if acl_e else ''}"
                 f" ({meta['mode']} run {meta['date']}, commit {meta['commit']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def acl_chart(acl, engines, ax):
    x = list(range(len(engines)))
    names = [ACL_LABEL[e].removeprefix("vswitch, ") for e in engines]
    color = ["#999999" if e == "vswitch" else "#1f77b4" for e in engines]
    ax[0].bar(x, [(acl[e]["offered"] or 0) / 1e6 for e in engines], color="#dddddd", label="offered")
    ax[0].bar(x, [(acl[e]["delivered"] or 0) / 1e6 for e in engines], color=color, width=0.6, label="delivered")
    ax[0].set_title("ACL scaling: 64-byte UDP, one flow, Mpps (median)")
    ax[0].legend(fontsize=8, loc="lower right")
    ax[1].bar(x, [acl[e]["tcp"] or 0 for e in engines], color=color)
    ax[1].set_title("ACL scaling: TCP iperf3, Gbit/s (median)")
    ax[2].bar(x, [acl[e]["p99"] or 0 for e in engines], color=color)
    ax[2].set_title("ACL scaling: UDP ping-pong RTT p99, µs (median)")
    for a_ in ax:
        a_.set_xticks(x)
        a_.set_xticklabels(names, fontsize=8)
        a_.grid(axis="y", alpha=0.3)


if __name__ == "__main__":
    main()
