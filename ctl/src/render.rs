//! Rendering of control-protocol results for people (tables, summaries) and for CNI.
//!
//! Contract: pure functions from the [`proto`](crate::proto) types to a `String` (or a JSON
//! value); no I/O. Tables have a header row, columns separated by two spaces, text columns
//! left-aligned and number columns right-aligned, and no trailing whitespace; every rendered
//! text ends with a newline. [`cni_result`] is the CNI 1.0.0 result shape shared by
//! `vswitchctl port add --json` and the `vswitch-cni` plugin.

use crate::proto::{
    NodeInfo, PortCounters, PortInfo, Stats, TunnelInfo, TunnelKind, WorkerCounters,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The CNI spec version of [`cni_result`].
pub const CNI_VERSION: &str = "1.0.0";

/// How a table column lines up its cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left.
    Right,
}

/// Renders `rows` under `columns` (header text, alignment) as an aligned table.
///
/// Rows shorter than the header are padded with empty cells; extra cells are ignored.
pub fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    fn cell(row: &[String], i: usize) -> &str {
        row.get(i).map(String::as_str).unwrap_or("")
    }
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (head, _))| {
            rows.iter()
                .map(|r| cell(r, i).chars().count())
                .chain(std::iter::once(head.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, ((_, align), text)) in columns.iter().zip(cells).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = widths[i].saturating_sub(text.chars().count());
            match align {
                Align::Left => {
                    l.push_str(text);
                    l.push_str(&" ".repeat(pad));
                }
                Align::Right => {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(text);
                }
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for row in rows {
        line((0..columns.len()).map(|i| cell(row, i)).collect());
    }
    out
}

/// Renders `key: value` lines with the values lined up.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:")))
        .collect()
}

/// The `port add` summary for people.
pub fn port_summary(p: &PortInfo) -> String {
    let mut out = format!("attached {}/{} at port {}\n", p.id, p.ifname, p.port);
    for line in key_values(&[
        ("id", p.id.clone()),
        ("ifname", p.ifname.clone()),
        ("netns", p.netns.clone()),
        ("host interface", p.host_ifname.clone()),
        ("ip", p.ip.to_string()),
        ("gateway", p.gateway.to_string()),
        ("mac", p.mac.clone()),
        ("mtu", p.mtu.to_string()),
    ])
    .lines()
    {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `port list` table.
pub fn port_table(ports: &[PortInfo]) -> String {
    use Align::*;
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.ifname.clone(),
                p.host_ifname.clone(),
                p.port.to_string(),
                p.ip.to_string(),
                p.mac.clone(),
                p.mtu.to_string(),
                p.netns.clone(),
            ]
        })
        .collect();
    table(
        &[
            ("ID", Left),
            ("IFNAME", Left),
            ("HOST IF", Left),
            ("PORT", Right),
            ("IP", Left),
            ("MAC", Left),
            ("MTU", Right),
            ("NETNS", Left),
        ],
        &rows,
    )
}

/// Indented `reason  count` lines under a heading, counts lined up.
fn reasons(heading: &str, counts: &BTreeMap<String, u64>) -> String {
    let name_w = counts.keys().map(String::len).max().unwrap_or(0);
    let num_w = counts
        .values()
        .map(|n| n.to_string().len())
        .max()
        .unwrap_or(0);
    let mut out = format!("{heading}:\n");
    for (reason, n) in counts {
        out.push_str(&format!("  {reason:<name_w$}  {n:>num_w$}\n"));
    }
    out
}

fn port_label(p: &PortCounters) -> String {
    format!("port {} ({})", p.port, p.name)
}

fn worker_row(w: &WorkerCounters) -> Vec<String> {
    vec![
        w.worker.to_string(),
        w.cpu.map_or_else(|| "-".into(), |c| c.to_string()),
        w.busy_polls.to_string(),
        w.idle_polls.to_string(),
        w.sleeps.to_string(),
        format!("{}/{}", w.frames_in_use, w.frames_total),
        w.conntrack_entries.to_string(),
    ]
}

/// The `stats` report: the port table, drop reasons and events of the ports that have any, then
/// the worker table; sections are separated by a blank line.
pub fn stats(s: &Stats) -> String {
    use Align::*;
    let rows: Vec<Vec<String>> = s
        .ports
        .iter()
        .map(|p| {
            vec![
                p.port.to_string(),
                p.name.clone(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                p.drops.values().sum::<u64>().to_string(),
            ]
        })
        .collect();
    let mut sections = vec![table(
        &[
            ("PORT", Right),
            ("NAME", Left),
            ("RX PKTS", Right),
            ("RX BYTES", Right),
            ("TX PKTS", Right),
            ("TX BYTES", Right),
            ("DROPS", Right),
        ],
        &rows,
    )];
    for p in s.ports.iter().filter(|p| !p.drops.is_empty()) {
        sections.push(reasons(&format!("drops on {}", port_label(p)), &p.drops));
    }
    for p in s.ports.iter().filter(|p| !p.events.is_empty()) {
        sections.push(reasons(&format!("events on {}", port_label(p)), &p.events));
    }
    let rows: Vec<Vec<String>> = s.workers.iter().map(worker_row).collect();
    sections.push(table(
        &[
            ("WORKER", Right),
            ("CPU", Right),
            ("BUSY POLLS", Right),
            ("IDLE POLLS", Right),
            ("SLEEPS", Right),
            ("FRAMES IN USE/TOTAL", Right),
            ("CONNS", Right),
        ],
        &rows,
    ));
    if !s.policies.is_empty() {
        let rows: Vec<Vec<String>> = s
            .policies
            .iter()
            .map(|p| {
                vec![
                    format!("{}/{}", p.namespace, p.name),
                    p.allowed.to_string(),
                    p.denied.to_string(),
                ]
            })
            .collect();
        sections.push(table(
            &[("POLICY", Left), ("ALLOWED", Right), ("DENIED", Right)],
            &rows,
        ));
    }
    sections.join("\n")
}

fn labels(l: &BTreeMap<String, String>) -> String {
    if l.is_empty() {
        return "-".into();
    }
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `policy list` table.
pub fn policy_table(policies: &[crate::proto::PolicyInfo]) -> String {
    use Align::*;
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.namespace.clone(),
                p.name.clone(),
                p.pod_selector.clone(),
                p.types.join(","),
                format!("{}/{}", p.ingress_rules, p.egress_rules),
                if p.ports.is_empty() {
                    "-".into()
                } else {
                    p.ports.join(",")
                },
                p.allowed.to_string(),
                p.denied.to_string(),
            ]
        })
        .collect();
    table(
        &[
            ("NAMESPACE", Left),
            ("NAME", Left),
            ("POD SELECTOR", Left),
            ("TYPES", Left),
            ("RULES IN/OUT", Right),
            ("PORTS", Left),
            ("ALLOWED", Right),
            ("DENIED", Right),
        ],
        &rows,
    )
}

/// The `endpoint list` table.
pub fn endpoint_table(endpoints: &[crate::proto::EndpointSpec]) -> String {
    use Align::*;
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            vec![
                e.ip.to_string(),
                e.namespace.clone(),
                labels(&e.labels),
                e.port.clone().unwrap_or_else(|| "remote".into()),
            ]
        })
        .collect();
    table(
        &[
            ("IP", Left),
            ("NAMESPACE", Left),
            ("LABELS", Left),
            ("PORT", Left),
        ],
        &rows,
    )
}

/// The `namespace list` table.
pub fn namespace_table(namespaces: &[crate::proto::NamespaceSpec]) -> String {
    let rows: Vec<Vec<String>> = namespaces
        .iter()
        .map(|n| vec![n.name.clone(), labels(&n.labels)])
        .collect();
    table(
        &[("NAMESPACE", Align::Left), ("LABELS", Align::Left)],
        &rows,
    )
}

/// The `node` report: `key: value` lines.
pub fn node(n: &NodeInfo) -> String {
    key_values(&[
        ("name", n.name.clone()),
        ("node ip", n.node_ip.to_string()),
        ("pod cidr", n.pod_cidr.to_string()),
        ("cluster cidr", n.cluster_cidr.to_string()),
        ("gateway", n.gateway.to_string()),
        ("gateway mac", n.gateway_mac.clone()),
        ("pod mtu", n.pod_mtu.to_string()),
        ("vtep mac", n.vtep_mac.clone()),
        ("vni", n.vni.to_string()),
        ("vxlan port", n.vxlan_port.to_string()),
    ])
}

/// `tunnel list` for people: one row per tunnel.
pub fn tunnel_table(tunnels: &[TunnelInfo]) -> String {
    let kind = |k: TunnelKind| match k {
        TunnelKind::Vxlan => "vxlan",
        TunnelKind::Ipip => "ipip",
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = tunnels
        .iter()
        .map(|t| {
            vec![
                t.spec.name.clone(),
                kind(t.spec.kind).into(),
                t.spec.remote.to_string(),
                t.spec.subnet.to_string(),
                opt(t.spec.vni.map(|v| v.to_string())),
                opt(t.spec.vtep_mac.clone()),
                opt(t.spec.port.map(|p| p.to_string())),
                t.next_hop_mac
                    .clone()
                    .unwrap_or_else(|| "unresolved".into()),
            ]
        })
        .collect();
    table(
        &[
            ("NAME", Align::Left),
            ("KIND", Align::Left),
            ("REMOTE", Align::Left),
            ("SUBNET", Align::Left),
            ("VNI", Align::Right),
            ("VTEP MAC", Align::Left),
            ("PORT", Align::Right),
            ("NEXT HOP", Align::Left),
        ],
        &rows,
    )
}

/// The `port del` outcome for people.
pub fn removed(id: &str, ifname: &str, removed: bool) -> String {
    if removed {
        format!("detached {id}/{ifname}\n")
    } else {
        format!("{id}/{ifname} was not attached; nothing to do\n")
    }
}

/// A pod attachment as a CNI 1.0.0 result: the host veth (interface 0, no sandbox; its MAC is
/// omitted when the daemon does not know it), the pod interface (interface 1, in the sandbox),
/// the pod address with its gateway, a default route via the gateway, and empty DNS.
pub fn cni_result(p: &PortInfo) -> Value {
    cni_result_version(p, CNI_VERSION)
}

/// [`cni_result`] for CNI spec `version` (1.0.0 or 1.1.0, whose results have the same shape):
/// from 1.1.0 on the pod interface also carries its `mtu` (a field 1.0.0 does not have).
pub fn cni_result_version(p: &PortInfo, version: &str) -> Value {
    let mut host = json!({ "name": p.host_ifname });
    if !p.host_mac.is_empty() {
        host["mac"] = json!(p.host_mac);
    }
    let mut pod = json!({ "name": p.ifname, "mac": p.mac, "sandbox": p.netns });
    if version != CNI_VERSION {
        pod["mtu"] = json!(p.mtu);
    }
    json!({
        "cniVersion": version,
        "interfaces": [host, pod],
        "ips": [
            { "address": p.ip.to_string(), "gateway": p.gateway.to_string(), "interface": 1 },
        ],
        "routes": [
            { "dst": "0.0.0.0/0", "gw": p.gateway.to_string() },
        ],
        "dns": {},
    })
}

/// `fdb show` for people.
pub fn fdb_table(entries: &[crate::proto::FdbEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.mac.clone(),
                e.port.to_string(),
                e.port_name.clone(),
                e.kind.clone(),
                e.age_secs.map_or_else(|| "-".into(), |a| a.to_string()),
            ]
        })
        .collect();
    table(
        &[
            ("MAC", Align::Left),
            ("PORT", Align::Right),
            ("NAME", Align::Left),
            ("KIND", Align::Left),
            ("AGE S", Align::Right),
        ],
        &rows,
    )
}

/// `route show` for people.
pub fn route_table(routes: &[crate::proto::RouteEntry]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| vec![r.prefix.to_string(), r.next_hop.clone()])
        .collect();
    table(&[("PREFIX", Align::Left), ("NEXT HOP", Align::Left)], &rows)
}

/// `trace` for people: one line per stage, then the outcome.
pub fn trace(t: &crate::proto::Trace) -> String {
    let width = t.steps.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in &t.steps {
        out.push_str(&format!("{:<width$}  {}\n", s.stage, s.verdict));
    }
    match (&t.output_port, &t.output) {
        (Some(port), Some(frame)) => out.push_str(&format!("=> sent on {port}: {frame}\n")),
        _ => out.push_str("=> not sent\n"),
    }
    out
}

/// Writes hex-encoded Ethernet frames as a pcap file (timestamps 1 µs apart from now).
pub fn write_pcap(path: &std::path::Path, frames: &[String]) -> std::io::Result<()> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let header = PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = PcapWriter::with_header(file, header).map_err(|e| invalid(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    for (i, hex) in frames.iter().enumerate() {
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|j| u8::from_str_radix(&hex[2 * j..2 * j + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let ts = now + std::time::Duration::from_micros(i as u64);
        w.write_packet(&PcapPacket::new(ts, bytes.len() as u32, &bytes))
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(id: &str, host: &str, port: u16, ip: &str, netns: &str) -> PortInfo {
        PortInfo {
            id: id.into(),
            ifname: "eth0".into(),
            netns: netns.into(),
            host_ifname: host.into(),
            host_mac: "02:00:00:00:00:01".into(),
            port,
            mac: "0a:58:0a:f4:01:05".into(),
            ip: ip.parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            mtu: 1450,
            namespace: "default".into(),
            labels: Default::default(),
        }
    }

    /// Byte offset of each column's first character in a line, found from the header words.
    fn starts(header: &str, heads: &[&str]) -> Vec<usize> {
        heads.iter().map(|h| header.find(h).unwrap()).collect()
    }

    #[test]
    fn a_table_of_two_ports_is_aligned_under_its_header() {
        let out = port_table(&[
            port("c1", "vsw1", 1, "10.244.1.5/24", "/var/run/netns/pod-a"),
            port(
                "0123456789abcdef",
                "vsw12345",
                12,
                "10.244.1.123/24",
                "/var/run/netns/b",
            ),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ID  "), "{out}");
        let heads = [
            "IFNAME", "HOST IF", "IP", "MAC", "NETNS", // left-aligned columns
        ];
        let at = starts(lines[0], &heads);
        for row in &lines[1..] {
            for (h, &col) in heads.iter().zip(&at) {
                let before = &row[..col];
                assert!(
                    before.ends_with("  ") && !row[col..].starts_with(' '),
                    "column {h} misaligned in\n{out}"
                );
            }
        }
        // Right-aligned numbers end where their header ends.
        let port_end = lines[0].find("PORT").unwrap() + "PORT".len();
        assert_eq!(&lines[1][port_end - 1..port_end], "1", "{out}");
        assert_eq!(&lines[2][port_end - 2..port_end], "12", "{out}");
        assert!(lines[1].contains("10.244.1.5/24"));
        assert!(lines[2].ends_with("/var/run/netns/b"));
        assert!(out.lines().all(|l| l == l.trim_end()), "trailing blanks");
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(
            port_table(&[]),
            "ID  IFNAME  HOST IF  PORT  IP  MAC  MTU  NETNS\n"
        );
    }

    #[test]
    fn stats_with_drops_list_the_reasons_and_events() {
        let s = Stats {
            ports: vec![
                PortCounters {
                    name: "vsw1".into(),
                    port: 1,
                    rx_packets: 10,
                    rx_bytes: 1000,
                    tx_packets: 7,
                    tx_bytes: 700,
                    drops: BTreeMap::from([
                        ("spoofed_source_ip".into(), 3),
                        ("ttl_expired".into(), 120),
                    ]),
                    events: BTreeMap::from([("arp_reply".into(), 2)]),
                },
                PortCounters {
                    name: "uplink".into(),
                    port: 0,
                    rx_packets: 5,
                    ..Default::default()
                },
            ],
            workers: vec![WorkerCounters {
                worker: 0,
                cpu: Some(2),
                busy_polls: 9,
                idle_polls: 100,
                sleeps: 4,
                sleep_ns: 0,
                frames_in_use: 64,
                frames_total: 4096,
                conntrack_entries: 12,
            }],
            policies: vec![crate::proto::PolicyCounters {
                namespace: "default".into(),
                name: "deny-all".into(),
                allowed: 0,
                denied: 7,
            }],
        };
        let out = stats(&s);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("PORT  NAME"), "{out}");
        assert!(lines[0].ends_with("DROPS"), "{out}");
        // The total of the drops is in the DROPS column.
        assert!(lines[1].ends_with("123"), "{out}");
        assert!(lines[2].ends_with(" 0"), "{out}");
        assert!(out.contains("drops on port 1 (vsw1):\n"), "{out}");
        assert!(out.contains("\n  spoofed_source_ip    3\n"), "{out}");
        assert!(out.contains("\n  ttl_expired        120\n"), "{out}");
        assert!(
            out.contains("events on port 1 (vsw1):\n  arp_reply  2\n"),
            "{out}"
        );
        assert!(
            !out.contains("(uplink):"),
            "no section for a port without drops: {out}"
        );
        let w = lines.iter().position(|l| l.starts_with("WORKER")).unwrap();
        assert!(lines[w].ends_with("FRAMES IN USE/TOTAL  CONNS"), "{out}");
        assert!(lines[w + 1].ends_with("64/4096     12"), "{out}");
        let p = lines.iter().position(|l| l.starts_with("POLICY")).unwrap();
        assert!(lines[p + 1].starts_with("default/deny-all"), "{out}");
        assert!(lines[p + 1].ends_with(" 7"), "{out}");
        assert!(lines[w + 1].starts_with("     0    2"), "{out}");
    }

    #[test]
    fn node_is_key_value_lines() {
        let out = node(&NodeInfo {
            name: "n1".into(),
            node_ip: "192.168.0.10".parse().unwrap(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            gateway_mac: "0a:58:0a:f4:01:01".into(),
            pod_mtu: 1450,
            vtep_mac: "0e:00:00:00:00:01".into(),
            vni: 1,
            vxlan_port: 8472,
        });
        assert!(out.starts_with("name:          n1\n"), "{out}");
        assert!(out.contains("\npod cidr:      10.244.1.0/24\n"), "{out}");
        assert!(out.contains("\npod mtu:       1450\n"), "{out}");
        assert!(out.ends_with("vxlan port:    8472\n"), "{out}");
    }

    #[test]
    fn the_port_summary_names_every_field() {
        let out = port_summary(&port("c1", "vsw1", 3, "10.244.1.5/24", "/run/netns/p"));
        for want in [
            "c1/eth0",
            "port 3",
            "/run/netns/p",
            "vsw1",
            "10.244.1.5/24",
            "10.244.1.1",
            "0a:58:0a:f4:01:05",
            "1450",
        ] {
            assert!(out.contains(want), "{want} missing in {out}");
        }
    }

    #[test]
    fn the_cni_result_has_the_spec_shape() {
        let v = cni_result(&port("c1", "vsw1", 3, "10.244.1.5/24", "/run/netns/p"));
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "vsw1", "mac": "02:00:00:00:00:01"},
                    {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/run/netns/p"}
                ],
                "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn a_1_1_0_result_adds_the_mtu_and_an_unknown_host_mac_is_omitted() {
        let mut p = port("c1", "vsw1", 3, "10.244.1.5/24", "/run/netns/p");
        p.host_mac = String::new();
        let v = cni_result_version(&p, "1.1.0");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][0], json!({"name": "vsw1"}));
        assert_eq!(v["interfaces"][1]["mtu"], 1450);
        assert_eq!(v["interfaces"][1]["sandbox"], "/run/netns/p");
        assert!(cni_result(&p)["interfaces"][1].get("mtu").is_none());
    }
}
