//! pcap-replay conformance: run a case's input pcaps through the pipeline and compare bytes.
//!
//! Contract: a case is a folder (layout and rules in `tests/pcap/README.md`): `case.toml`
//! describes the switch and the drops it must count, `<port>.in.pcap` holds what each port
//! receives and `<port>.expected.pcap` what it must transmit. [`Case::run`] replays the inputs
//! in capture order on [`PcapPort`]s through one [`Pipeline`] and [`Outcome::compare`] checks
//! every output frame byte for byte and every drop counter, explaining the first mismatch
//! readably (field names, hex dump with the differing bytes marked). A run also fails if any
//! frame buffer leaked.
//!
//! Non-goals: producing expectations. Expected frames come from `tests/pcap/gen_cases.py`,
//! never from this engine.

use crate::frame::{Desc, FrameArena, FrameLayout};
use crate::mac::MacAddr;
use crate::pipeline::parse::parse_frame;
use crate::pipeline::{Pipeline, PipelineConfig, L3, MAX_BATCH};
use crate::policy::selector::Labels;
use crate::policy::spec::parse_policies;
use crate::policy::{Endpoint, Inventory, PolicySet};
use crate::port::pcap::{read_pcap, PcapError, PcapPort};
use crate::reason::{DropReason, Event};
use crate::stats::{PortStats, WorkerStats};
use crate::tables::{PortId, PortInfo, PortKind, SwitchConfig, TableError, Tables, TunnelEntry};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a case could not be loaded or run (as opposed to running and mismatching).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// case.toml unreadable.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// case.toml malformed.
    #[error("{0}: {1}")]
    Toml(String, toml::de::Error),
    /// The switch description was refused.
    #[error("{0}: {1}")]
    Tables(String, TableError),
    /// A pcap could not be read.
    #[error(transparent)]
    Pcap(#[from] PcapError),
    /// Something else in the case is inconsistent.
    #[error("{0}: {1}")]
    Invalid(String, String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    description: String,
    #[serde(default = "default_aging")]
    fdb_aging_secs: u64,
    switch: SwitchConfig,
    port: Vec<CasePort>,
    #[serde(default)]
    tunnel: Vec<CaseTunnel>,
    #[serde(default)]
    policy: Option<CasePolicy>,
    #[serde(default)]
    expect: Expect,
}

/// NetworkPolicy of a case: YAML files in the case folder, namespace labels, remote pods.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePolicy {
    #[serde(default = "default_policy_files")]
    files: Vec<String>,
    #[serde(default)]
    conntrack_max: Option<usize>,
    #[serde(default)]
    namespaces: BTreeMap<String, Labels>,
    #[serde(default)]
    endpoint: Vec<CaseEndpoint>,
    #[serde(default)]
    node_addresses: Vec<Ipv4Addr>,
}

fn default_policy_files() -> Vec<String> {
    vec!["policy.yaml".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseEndpoint {
    ip: Ipv4Addr,
    namespace: String,
    #[serde(default)]
    labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseTunnel {
    name: String,
    kind: String,
    remote: Ipv4Addr,
    subnet: ipnet::Ipv4Net,
    #[serde(default)]
    vni: Option<u32>,
    #[serde(default)]
    vtep_mac: Option<MacAddr>,
    #[serde(default)]
    port: Option<u16>,
    next_hop_mac: MacAddr,
}

impl CaseTunnel {
    fn entry(&self) -> Result<TunnelEntry, String> {
        let kind: vtep::table::TunnelKind = self.kind.parse().map_err(|e| format!("{e}"))?;
        let mut tunnel = match kind {
            vtep::table::TunnelKind::Vxlan => {
                let mac = self.vtep_mac.ok_or("a vxlan tunnel needs vtep_mac")?;
                vtep::table::Tunnel::vxlan(&self.name, self.remote, self.subnet, mac.0)
            }
            vtep::table::TunnelKind::Ipip => {
                vtep::table::Tunnel::ipip(&self.name, self.remote, self.subnet)
            }
        };
        if let Some(v) = self.vni {
            tunnel.vni = v;
        }
        if let Some(p) = self.port {
            tunnel.port = p;
        }
        Ok(TunnelEntry {
            tunnel,
            next_hop_mac: Some(self.next_hop_mac),
        })
    }
}

fn default_aging() -> u64 {
    PipelineConfig::default().fdb_aging_secs
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePort {
    name: String,
    kind: PortKind,
    mac: MacAddr,
    ip: Option<Ipv4Addr>,
    mtu: u16,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    labels: Labels,
}

fn default_namespace() -> String {
    "default".into()
}

type Named = BTreeMap<String, BTreeMap<String, u64>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    drops: Named,
    #[serde(default)]
    counters: Named,
}

/// One conformance case, loaded.
#[derive(Debug)]
pub struct Case {
    /// Folder name.
    pub name: String,
    /// What the case proves.
    pub description: String,
    dir: PathBuf,
    file: CaseFile,
}

impl Case {
    /// Loads `dir/case.toml`.
    pub fn load(dir: &Path) -> Result<Case, ReplayError> {
        let path = dir.join("case.toml");
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| ReplayError::Io(shown.clone(), e))?;
        let file: CaseFile =
            toml::from_str(&text).map_err(|e| ReplayError::Toml(shown.clone(), e))?;
        let names: Vec<&str> = file.port.iter().map(|p| p.name.as_str()).collect();
        for (what, map) in [
            ("drops", &file.expect.drops),
            ("counters", &file.expect.counters),
        ] {
            if let Some(bad) = map.keys().find(|k| !names.contains(&k.as_str())) {
                let msg = format!("expect.{what} names port {bad:?}, which the case does not have");
                return Err(ReplayError::Invalid(shown, msg));
            }
        }
        Ok(Case {
            name: dir
                .file_name()
                .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned()),
            description: file.description.clone(),
            dir: dir.to_path_buf(),
            file,
        })
    }

    /// Every case under `root` (folders with a case.toml), sorted by name.
    pub fn load_all(root: &Path) -> Result<Vec<Case>, ReplayError> {
        let entries =
            std::fs::read_dir(root).map_err(|e| ReplayError::Io(root.display().to_string(), e))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("case.toml").is_file())
            .collect();
        dirs.sort();
        dirs.iter().map(|d| Case::load(d)).collect()
    }

    fn tables(&self) -> Result<Tables, ReplayError> {
        let ports = self
            .file
            .port
            .iter()
            .enumerate()
            .map(|(i, p)| PortInfo {
                id: PortId(i as u16),
                name: p.name.clone(),
                kind: p.kind,
                mac: p.mac,
                ip: p.ip,
                mtu: p.mtu,
            })
            .collect();
        let shown = self.dir.join("case.toml").display().to_string();
        let tunnels = self
            .file
            .tunnel
            .iter()
            .map(CaseTunnel::entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReplayError::Invalid(shown.clone(), e))?;
        let mut tables = Tables::build_with_tunnels(self.file.switch.clone(), ports, tunnels)
            .map_err(|e| ReplayError::Tables(shown.clone(), e))?;
        if let Some(policy) = &self.file.policy {
            tables.policy = self
                .policy_set(policy)
                .map_err(|e| ReplayError::Invalid(shown, e))?;
            tables.node_addresses = policy.node_addresses.clone();
        }
        Ok(tables)
    }

    fn policy_set(&self, case: &CasePolicy) -> Result<PolicySet, String> {
        let mut policies = Vec::new();
        for f in &case.files {
            let path = self.dir.join(f);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let parsed = parse_policies(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            policies.extend(parsed.into_iter().map(|(_, p)| p));
        }
        let local = self.file.port.iter().enumerate().filter_map(|(i, p)| {
            Some(Endpoint {
                ip: p.ip.filter(|_| p.kind == PortKind::Pod)?,
                namespace: p.namespace.clone(),
                labels: p.labels.clone(),
                port: Some(PortId(i as u16)),
            })
        });
        let remote = case.endpoint.iter().map(|e| Endpoint {
            ip: e.ip,
            namespace: e.namespace.clone(),
            labels: e.labels.clone(),
            port: None,
        });
        let inventory = Inventory {
            namespaces: case.namespaces.clone(),
            endpoints: local.chain(remote).collect(),
        };
        Ok(PolicySet::compile(&policies, &inventory, None))
    }

    /// Replays the inputs and collects what every port transmitted and counted.
    pub fn run(&self) -> Result<Outcome, ReplayError> {
        let tables = self.tables()?;
        let mut ports = Vec::new();
        let mut schedule = Vec::new();
        for (i, p) in self.file.port.iter().enumerate() {
            let port = PcapPort::open(Some(&self.dir.join(format!("{}.in.pcap", p.name))))?;
            let times: Vec<u64> = port.pending_times().collect();
            if times.windows(2).any(|w| w[1] < w[0]) {
                let msg = format!("timestamps of {}.in.pcap go backwards", p.name);
                return Err(ReplayError::Invalid(self.name.clone(), msg));
            }
            schedule.extend(times.into_iter().map(|t| (t, i)));
            ports.push(Some(port));
        }
        schedule.sort_by_key(|&(t, i)| (t, i));

        let stats = Arc::new(WorkerStats::default());
        let mut config = PipelineConfig {
            fdb_aging_secs: self.file.fdb_aging_secs,
            ..PipelineConfig::default()
        };
        if let Some(max) = self.file.policy.as_ref().and_then(|p| p.conntrack_max) {
            config.conntrack.max_entries = max;
        }
        let mut pipeline = Pipeline::new(config, Arc::clone(&stats));
        let mut arena = FrameArena::with_heap(FrameLayout::DEFAULT, 4 * MAX_BATCH)
            .expect("the default layout is valid");
        let mut rx = [Desc::default(); MAX_BATCH];
        let mut at = 0;
        while at < schedule.len() {
            let (now, port_index) = schedule[at];
            let run = schedule[at..]
                .iter()
                .take(MAX_BATCH)
                .take_while(|&&(_, i)| i == port_index)
                .count();
            let id = PortId(port_index as u16);
            let port = ports[port_index].as_mut().expect("every case port is open");
            let n = pipeline.receive(&mut arena, id, port, &mut rx[..run]);
            pipeline.process(&tables, &mut arena, id, &rx[..n], now);
            pipeline.transmit(&mut arena, ports.as_mut_slice());
            at += run;
        }
        let leaked = arena.pool.in_use();
        let per_port = self
            .file
            .port
            .iter()
            .zip(ports.iter_mut())
            .enumerate()
            .map(|(i, (p, port))| {
                let tx = port.as_mut().map(PcapPort::take_tx).unwrap_or_default();
                (p.name.clone(), tx, stats.snapshot(PortId(i as u16)))
            })
            .collect();
        Ok(Outcome { per_port, leaked })
    }

    /// Runs the case and compares; `Err` carries the readable explanation of what differed.
    pub fn verify(&self) -> Result<Outcome, String> {
        let outcome = self.run().map_err(|e| e.to_string())?;
        outcome.compare(self)?;
        Ok(outcome)
    }

    fn expected(&self, port: &str) -> Result<Vec<Vec<u8>>, String> {
        let path = self.dir.join(format!("{port}.expected.pcap"));
        if !path.is_file() {
            return Err(format!(
                "{} is missing (every port needs one)",
                path.display()
            ));
        }
        let frames = read_pcap(&path).map_err(|e| e.to_string())?;
        Ok(frames.into_iter().map(|(_, f)| f).collect())
    }
}

/// What a replay produced.
#[derive(Debug)]
pub struct Outcome {
    /// Per port, in case order: name, transmitted frames, counters.
    pub per_port: Vec<(String, Vec<Vec<u8>>, PortStats)>,
    /// Frame buffers not back in the pool after the run (must be 0).
    pub leaked: usize,
}

impl Outcome {
    /// Frames transmitted on all ports.
    pub fn frames_out(&self) -> usize {
        self.per_port.iter().map(|(_, f, _)| f.len()).sum()
    }

    /// Drops counted on all ports.
    pub fn drops(&self) -> u64 {
        self.per_port.iter().map(|(_, _, s)| s.total_drops()).sum()
    }

    /// Frames received on all ports.
    pub fn frames_in(&self) -> u64 {
        self.per_port.iter().map(|(_, _, s)| s.rx_packets).sum()
    }

    /// Checks this outcome against the case's expectations.
    pub fn compare(&self, case: &Case) -> Result<(), String> {
        if self.leaked != 0 {
            return Err(format!(
                "{} frame buffers leaked (not returned to the pool)",
                self.leaked
            ));
        }
        for (name, got, stats) in &self.per_port {
            let want = case.expected(name)?;
            compare_frames(name, &want, got).map_err(|e| e + &self.drop_summary())?;
            let want_drops = case
                .file
                .expect
                .drops
                .get(name)
                .cloned()
                .unwrap_or_default();
            let got_drops: BTreeMap<String, u64> = stats
                .drops
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            for reason in want_drops.keys() {
                if DropReason::from_name(reason).is_none() {
                    return Err(format!(
                        "expect.drops.{name}: unknown drop reason {reason:?}"
                    ));
                }
            }
            if want_drops != got_drops {
                return Err(format!(
                    "port {name}: drop counters differ\n  expected: {want_drops:?}\n  counted:  {got_drops:?}"
                ));
            }
            for (event, n) in case.file.expect.counters.get(name).into_iter().flatten() {
                let e = Event::from_name(event)
                    .ok_or_else(|| format!("expect.counters.{name}: unknown counter {event:?}"))?;
                let got = stats
                    .events
                    .iter()
                    .find(|(k, _)| *k == e.name())
                    .map_or(0, |(_, v)| *v);
                if got != *n {
                    return Err(format!(
                        "port {name}: counter {event} expected {n}, counted {got}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn drop_summary(&self) -> String {
        let mut s = String::from("\n  drops counted:");
        if self.per_port.iter().all(|(_, _, st)| st.drops.is_empty()) {
            s.push_str(" none");
        }
        for (name, _, st) in self
            .per_port
            .iter()
            .filter(|(_, _, st)| !st.drops.is_empty())
        {
            let _ = write!(s, " {name}: {:?};", st.drops);
        }
        s
    }
}

fn compare_frames(port: &str, want: &[Vec<u8>], got: &[Vec<u8>]) -> Result<(), String> {
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if w != g {
            return Err(frame_diff(port, i, want.len(), w, g));
        }
    }
    if want.len() != got.len() {
        let mut s = format!(
            "port {port}: expected {} frame(s), the switch sent {}",
            want.len(),
            got.len()
        );
        for (i, f) in want.iter().enumerate().skip(got.len()) {
            let _ = write!(s, "\n  missing frame {i}: {}", describe(f));
        }
        for (i, f) in got.iter().enumerate().skip(want.len()) {
            let _ = write!(s, "\n  extra frame {i}: {}", describe(f));
        }
        return Err(s);
    }
    Ok(())
}

/// A readable explanation of how frame `index` on `port` differs.
pub fn frame_diff(port: &str, index: usize, of: usize, want: &[u8], got: &[u8]) -> String {
    let mut s = format!("port {port}: frame {index} (of {of} expected) differs\n");
    let _ = writeln!(s, "  expected {:>5} bytes: {}", want.len(), describe(want));
    let _ = writeln!(s, "  got      {:>5} bytes: {}", got.len(), describe(got));
    let first = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    match (want.get(first), got.get(first)) {
        (Some(a), Some(b)) => {
            let _ = writeln!(
                s,
                "  first difference at byte {first} ({}): expected {a:#04x}, got {b:#04x}",
                field_at(want, first)
            );
        }
        _ => {
            let _ = writeln!(s, "  frames agree for {first} bytes, then one ends");
        }
    }
    let rows = want.len().max(got.len()).div_ceil(16);
    for row in 0..rows {
        let range = row * 16..(row + 1) * 16;
        let differs = range.clone().any(|i| want.get(i) != got.get(i));
        if !differs {
            continue;
        }
        let hex = |f: &[u8]| -> String {
            range
                .clone()
                .map(|i| f.get(i).map_or("  ".into(), |b| format!("{b:02x}")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let marks: String = range
            .clone()
            .map(|i| {
                if want.get(i) != got.get(i) {
                    "^^"
                } else {
                    "  "
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(s, "  {:04x} expected {}", row * 16, hex(want));
        let _ = writeln!(s, "       got      {}", hex(got));
        let _ = writeln!(s, "                {}", marks.trim_end());
    }
    s
}

/// One line saying what a frame is.
pub fn describe(frame: &[u8]) -> String {
    match parse_frame(frame) {
        Err(DropReason::BadIpv4Checksum) => {
            // Show the fields anyway: parse a copy whose header checksum is recomputed.
            let mut fixed = frame.to_vec();
            let ihl = (fixed[14] & 0xf) as usize * 4;
            fixed[24..26].fill(0);
            let c = !vtep::checksum::sum(&fixed[14..14 + ihl]);
            fixed[24..26].copy_from_slice(&c.to_be_bytes());
            describe(&fixed) + " [bad IPv4 header checksum]"
        }
        Err(reason) => format!("unparsable ({reason})"),
        Ok(m) => {
            let head = format!("{} > {}", m.src_mac, m.dst_mac);
            match m.l3 {
                L3::Arp(a) => format!(
                    "{head} ARP {} {} ({}) asks/tells {}",
                    if a.op == 1 { "request" } else { "reply" },
                    a.sender_ip,
                    a.sender_mac,
                    a.target_ip
                ),
                L3::Ipv4(ip) => format!(
                    "{head} IPv4 {} > {} ttl {} proto {} len {}{}",
                    ip.src,
                    ip.dst,
                    ip.ttl,
                    ip.protocol,
                    ip.total_len,
                    ip.icmp_type
                        .map_or(String::new(), |t| format!(" icmp type {t}"))
                ),
                L3::None => head,
            }
        }
    }
}

/// The header field that byte `at` of `frame` belongs to.
pub fn field_at(frame: &[u8], at: usize) -> &'static str {
    const IPV4: [(usize, &str); 11] = [
        (1, "IPv4 version/IHL"),
        (2, "IPv4 TOS"),
        (4, "IPv4 total length"),
        (6, "IPv4 identification"),
        (8, "IPv4 flags/fragment offset"),
        (9, "IPv4 TTL"),
        (10, "IPv4 protocol"),
        (12, "IPv4 header checksum"),
        (16, "IPv4 source"),
        (20, "IPv4 destination"),
        (usize::MAX, ""),
    ];
    match at {
        0..=5 => return "Ethernet destination",
        6..=11 => return "Ethernet source",
        12..=13 => return "EtherType",
        _ => {}
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let off = at - 14;
    match ethertype {
        0x0806 => match off {
            0..=7 => "ARP header",
            8..=13 => "ARP sender MAC",
            14..=17 => "ARP sender IP",
            18..=23 => "ARP target MAC",
            24..=27 => "ARP target IP",
            _ => "padding",
        },
        0x0800 => {
            let ihl = frame.get(14).map_or(20, |b| (b & 0xf) as usize * 4);
            if off < 20 {
                return IPV4
                    .iter()
                    .find(|(end, _)| off < *end)
                    .map_or("IPv4", |(_, n)| n);
            }
            if off < ihl {
                return "IPv4 options";
            }
            match (frame.get(23), off - ihl) {
                (Some(1), 0) => "ICMP type",
                (Some(1), 1) => "ICMP code",
                (Some(1), 2..=3) => "ICMP checksum",
                (Some(1), 4..=7) => "ICMP rest of header",
                _ => "IPv4 payload",
            }
        }
        _ => "payload",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_the_field_and_marks_the_byte() {
        let want = crate::testing::ipv4_frame(
            crate::testing::GW_MAC,
            crate::testing::POD2_MAC,
            "10.244.1.2".parse().unwrap(),
            "10.244.1.3".parse().unwrap(),
            63,
            17,
            &[0; 8],
        );
        let mut got = want.clone();
        got[22] = 64;
        let d = frame_diff("pod2", 0, 1, &want, &got);
        assert!(
            d.contains("first difference at byte 22 (IPv4 TTL): expected 0x3f, got 0x40"),
            "{d}"
        );
        assert!(d.contains("^^"), "{d}");
        assert_eq!(field_at(&want, 34), "IPv4 payload");
    }
}
