//! The CNI plugin's parsers and one whole invocation: `ctl::cni::NetConf::parse` (the network
//! configuration on stdin), `CniArgs::parse` (`CNI_ARGS`) and `labels`, and `ctl::cni::run`
//! with arbitrary environment and stdin against a fake daemon that answers properly, refuses,
//! is unreachable or answers nonsense.
//!
//! Input: a selector byte, then (mode 0) the configuration, (mode 1) `CNI_ARGS`, or (modes 2
//! and 3) `KEY=VALUE` lines overriding a default environment, a NUL byte, and stdin. Selector
//! bits 2-4 pick `CNI_COMMAND` (or leave it to the lines), bits 5-7 the daemon's behaviour.
//!
//! Invariants: no panic; an accepted configuration has a supported version, a valid name and
//! type, and `loose_version` agrees with it; `CNI_ARGS` re-encoded parses to the same pairs;
//! every invocation exits 0 or 1, a failure prints the spec's error object (`cniVersion`,
//! numeric `code`, `msg`), a success prints nothing or a JSON object; an ADD result has the
//! host and pod interfaces and the pod's address; and the plugin's own ADD result, given back as
//! `prevResult`, passes CHECK against the same daemon.

#![no_main]

use ctl::client::ClientError;
use ctl::cni::{self, CniArgs, NetConf, SUPPORTED_VERSIONS};
use ctl::proto::{ErrorCode, NodeInfo, PortInfo, Reply, Request, Response};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const NETNS: &str = "/var/run/netns/cni-fuzz";

fn port(id: &str, ifname: &str, netns: &str) -> PortInfo {
    PortInfo {
        id: id.into(),
        ifname: ifname.into(),
        netns: netns.into(),
        host_ifname: "vsw0a1b2c3d".into(),
        host_mac: "02:00:00:00:00:01".into(),
        port: 3,
        mac: "0a:58:0a:f4:01:05".into(),
        ip: "10.244.1.5/24".parse().unwrap(),
        gateway: "10.244.1.1".parse().unwrap(),
        mtu: 1450,
        namespace: "default".into(),
        labels: BTreeMap::new(),
    }
}

/// The fake daemon: `behaviour` 0 answers as vswitchd would, the others misbehave.
fn daemon(
    behaviour: u8,
    netns: String,
) -> impl Fn(&Path, &Request) -> Result<Response, ClientError> {
    move |socket: &Path, request: &Request| {
        let ok = |result| Ok(Response::Ok { result });
        match behaviour {
            1 => return Ok(Response::error(ErrorCode::NotFound, "no such pod")),
            2 => return Ok(Response::error(ErrorCode::Internal, "netlink said no")),
            3 => {
                return Err(ClientError::Connect {
                    path: socket.display().to_string(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })
            }
            4 => {
                return Err(ClientError::Protocol {
                    path: socket.display().to_string(),
                    reason: "garbage".into(),
                })
            }
            5 => return ok(Reply::Removed(true)),
            _ => {}
        }
        let other = |p: PortInfo| match behaviour {
            6 => PortInfo {
                id: format!("{}x", p.id),
                ..p
            },
            7 => PortInfo {
                netns: "/var/run/netns/someone-else".into(),
                ..p
            },
            _ => p,
        };
        match request {
            Request::PortAdd(a) => ok(Reply::Port(other(port(&a.id, &a.ifname, &a.netns)))),
            Request::PortCheck { id, ifname } => ok(Reply::Port(other(port(id, ifname, &netns)))),
            Request::PortDel { .. } => ok(Reply::Removed(false)),
            Request::Gc { valid } => ok(Reply::Ports(
                valid
                    .iter()
                    .take(2)
                    .map(|a| port(&a.id, &a.ifname, &netns))
                    .collect(),
            )),
            Request::Node {} => ok(Reply::Node(NodeInfo {
                name: "node1".into(),
                node_ip: "192.168.77.1".parse().unwrap(),
                pod_cidr: "10.244.1.0/24".parse().unwrap(),
                cluster_cidr: "10.244.0.0/16".parse().unwrap(),
                gateway: "10.244.1.1".parse().unwrap(),
                gateway_mac: "0a:58:0a:f4:01:01".into(),
                pod_mtu: 1450,
                vtep_mac: "0e:00:00:00:00:01".into(),
                vni: 1,
                vxlan_port: 8472,
            })),
            other => panic!("the plugin sent a request no CNI verb maps to: {other:?}"),
        }
    }
}

fn netconf(data: &[u8]) {
    let loose = cni::loose_version(data);
    let version = cni::version_result(data);
    assert!(version["cniVersion"].is_string());
    let Ok(conf) = NetConf::parse(data) else {
        return;
    };
    assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
    assert_eq!(loose.as_deref(), Some(conf.cni_version.as_str()));
    assert!(cni::valid_container_id(&conf.name));
    assert!(!conf.plugin_type.is_empty() && !conf.plugin_type.contains(['/', '\\']));
    assert!(conf.dns.is_object());
    if let Some(prev) = &conf.prev_result {
        let _ = cni::check_prev_result(prev, &port("abc", "eth0", NETNS));
    }
    let result = cni::add_result(&port("abc", "eth0", NETNS), &conf, NETNS);
    assert_eq!(result["interfaces"][1]["sandbox"], NETNS);
}

fn cni_args(text: &str) {
    let Ok(args) = CniArgs::parse(text) else {
        return;
    };
    let encoded: Vec<String> = args.all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let again = CniArgs::parse(&encoded.join(";")).expect("re-encoded CNI_ARGS parse");
    assert_eq!(again, args);
    if let Ok(labels) = args.labels(&BTreeMap::new()) {
        assert!(labels.len() <= text.len());
    }
}

/// Checks an invocation's outcome; returns the stdout JSON of a success, if any.
fn check_outcome(command: Option<&str>, out: &cni::Outcome) -> Option<Value> {
    assert!(out.exit <= 1, "exit {}", out.exit);
    if out.exit == 1 {
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("error output is not JSON ({e}): {}", out.stdout));
        assert!(v["cniVersion"].is_string(), "{v}");
        assert!(v["code"].is_u64(), "{v}");
        assert!(v["msg"].is_string(), "{v}");
        return None;
    }
    if out.stdout.is_empty() {
        assert_ne!(command, Some("ADD"), "ADD succeeded without a result");
        return None;
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("success output is not JSON ({e}): {}", out.stdout));
    assert!(v.is_object());
    if command == Some("ADD") {
        assert_eq!(v["interfaces"].as_array().map(Vec::len), Some(2), "{v}");
        assert_eq!(v["ips"][0]["address"], "10.244.1.5/24", "{v}");
    }
    Some(v)
}

fn invocation(selector: u8, data: &[u8]) {
    let (env_part, stdin) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut env: BTreeMap<String, String> = [
        ("CNI_CONTAINERID", "abc"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", NETNS),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    const COMMANDS: [Option<&str>; 8] = [
        Some("ADD"),
        Some("DEL"),
        Some("CHECK"),
        Some("VERSION"),
        Some("STATUS"),
        Some("GC"),
        Some("BOGUS"),
        None,
    ];
    if let Some(c) = COMMANDS[usize::from((selector >> 2) & 7)] {
        env.insert("CNI_COMMAND".into(), c.into());
    }
    for line in String::from_utf8_lossy(env_part).lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let command = env.get("CNI_COMMAND").cloned();
    let netns = env.get("CNI_NETNS").cloned().unwrap_or_default();
    let behaviour = selector >> 5;
    let ask = daemon(behaviour, netns);
    let get = |k: &str| env.get(k).cloned();
    let out = cni::run(&get, &mut &stdin[..], &ask);
    let result = check_outcome(command.as_deref(), &out);

    // The plugin's own ADD result passes its CHECK (with a daemon that tells the truth).
    let (Some(result), Some("ADD"), 0) = (result, command.as_deref(), behaviour) else {
        return;
    };
    let Ok(Value::Object(mut conf)) = serde_json::from_slice::<Value>(stdin) else {
        panic!("ADD succeeded on a configuration that is not an object");
    };
    conf.insert("prevResult".into(), result);
    let stdin = serde_json::to_vec(&conf).unwrap();
    env.insert("CNI_COMMAND".into(), "CHECK".into());
    let get = |k: &str| env.get(k).cloned();
    let out = cni::run(&get, &mut &stdin[..], &ask);
    check_outcome(Some("CHECK"), &out);
    assert_eq!(
        out.exit, 0,
        "CHECK refuses the plugin's own ADD result: {}",
        out.stdout
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector & 3 {
        0 => netconf(rest),
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                cni_args(text);
            }
        }
        _ => invocation(selector, rest),
    }
});
