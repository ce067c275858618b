//! End-to-end tests of the `vswitchctl` binary against a fake daemon: a Unix listener in a thread
//! that records each request line and answers with canned response lines.

mod common;

use common::{accept_within, FakeDaemon, TempDir};
use ctl::proto::{ErrorCode, NodeInfo, PortCounters, PortInfo, Reply, Response, Stats};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::process::{Command, Output};
use std::time::Duration;

fn vswitchctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(args)
        .env_remove("VSWITCH_SOCKET")
        .output()
        .unwrap()
}

fn with_socket<'a>(daemon: &'a FakeDaemon, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--socket", daemon.socket.to_str().unwrap()];
    v.extend_from_slice(args);
    v
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn request_json(line: &str) -> Value {
    assert!(line.ends_with('\n'), "one line: {line:?}");
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    serde_json::from_str(line).unwrap()
}

fn port(id: &str, host: &str, slot: u16, ip: &str) -> PortInfo {
    PortInfo {
        id: id.into(),
        ifname: "eth0".into(),
        netns: format!("/var/run/netns/{id}"),
        host_ifname: host.into(),
        host_mac: "02:00:00:00:00:01".into(),
        port: slot,
        mac: "0a:58:0a:f4:01:05".into(),
        ip: ip.parse().unwrap(),
        gateway: "10.244.1.1".parse().unwrap(),
        mtu: 1450,
        namespace: "default".into(),
        labels: Default::default(),
    }
}

fn ok(result: Reply) -> Response {
    Response::Ok { result }
}

#[test]
fn port_list_renders_a_table() {
    let daemon = FakeDaemon::start(vec![ok(Reply::Ports(vec![
        port("c1", "vsw1", 1, "10.244.1.5/24"),
        port("longer-container-id", "vsw2abcdef", 17, "10.244.1.200/24"),
    ]))]);
    let out = vswitchctl(&with_socket(&daemon, &["port", "list"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("ID ")
            && ["IFNAME", "HOST IF", "PORT", "IP", "MAC", "MTU", "NETNS"]
                .iter()
                .all(|h| lines[0].contains(h)),
        "{text}"
    );
    // Every row's NETNS starts where the header's does.
    let netns = lines[0].find("NETNS").unwrap();
    assert_eq!(&lines[1][netns..], "/var/run/netns/c1", "{text}");
    assert_eq!(
        &lines[2][netns..],
        "/var/run/netns/longer-container-id",
        "{text}"
    );
    assert!(lines[2].starts_with("longer-container-id  eth0"), "{text}");
    let requests = daemon.requests();
    assert_eq!(request_json(&requests[0]), json!({"verb": "port_list"}));
}

#[test]
fn port_list_json_is_the_list() {
    let ports = vec![port("c1", "vsw1", 1, "10.244.1.5/24")];
    let daemon = FakeDaemon::start(vec![ok(Reply::Ports(ports.clone()))]);
    let out = vswitchctl(&with_socket(&daemon, &["port", "list", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<PortInfo> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(got, ports);
}

#[test]
fn port_add_json_sends_the_request_and_prints_a_cni_result() {
    let mut p = port("c9", "vsw9", 9, "10.244.1.9/24");
    p.ifname = "eth1".into();
    p.mac = "0a:58:0a:f4:01:09".into();
    p.netns = "/var/run/netns/pod9".into();
    let daemon = FakeDaemon::start(vec![ok(Reply::Port(p))]);
    let out = vswitchctl(&with_socket(
        &daemon,
        &[
            "--json",
            "port",
            "add",
            "--netns",
            "pod9",
            "--id",
            "c9",
            "--ifname",
            "eth1",
            "--ip",
            "10.244.1.9/24",
            "--mac",
            "0A:58:0A:F4:01:09",
            "--namespace",
            "prod",
            "--label",
            "app=web",
            "--label",
            "tier=front",
        ],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = daemon.requests();
    assert_eq!(
        request_json(&requests[0]),
        json!({
            "verb": "port_add",
            "netns": "pod9",
            "id": "c9",
            "ifname": "eth1",
            "ip": "10.244.1.9/24",
            "mac": "0a:58:0a:f4:01:09",
            "namespace": "prod",
            "labels": {"app": "web", "tier": "front"}
        })
    );
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        printed,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "vsw9", "mac": "02:00:00:00:00:01"},
                {"name": "eth1", "mac": "0a:58:0a:f4:01:09", "sandbox": "/var/run/netns/pod9"}
            ],
            "ips": [{"address": "10.244.1.9/24", "gateway": "10.244.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            "dns": {}
        })
    );
}

#[test]
fn port_add_defaults_and_summary_for_people() {
    let daemon = FakeDaemon::start(vec![ok(Reply::Port(port(
        "c1",
        "vsw1",
        1,
        "10.244.1.5/24",
    )))]);
    let out = vswitchctl(&with_socket(
        &daemon,
        &["port", "add", "--netns", "/var/run/netns/c1", "--id", "c1"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in ["c1/eth0", "vsw1", "10.244.1.5/24", "10.244.1.1", "1450"] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
    let requests = daemon.requests();
    assert_eq!(
        request_json(&requests[0]),
        json!({
            "verb": "port_add",
            "netns": "/var/run/netns/c1",
            "id": "c1",
            "ifname": "eth0",
            "namespace": "default"
        })
    );
}

#[test]
fn port_del_reports_whether_something_was_removed() {
    let daemon = FakeDaemon::start(vec![ok(Reply::Removed(true)), ok(Reply::Removed(false))]);
    let out = vswitchctl(&with_socket(&daemon, &["port", "del", "--id", "c1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "detached c1/eth0\n");
    let out = vswitchctl(&with_socket(
        &daemon,
        &["--json", "port", "del", "--id", "c2", "--ifname", "eth1"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        printed,
        json!({"id": "c2", "ifname": "eth1", "removed": false})
    );
    let requests = daemon.requests();
    assert_eq!(
        request_json(&requests[0]),
        json!({"verb": "port_del", "id": "c1", "ifname": "eth0"})
    );
    assert_eq!(
        request_json(&requests[1]),
        json!({"verb": "port_del", "id": "c2", "ifname": "eth1"})
    );
}

#[test]
fn stats_and_node_render_for_people_and_scripts() {
    let stats = Stats {
        ports: vec![PortCounters {
            name: "vsw1".into(),
            port: 1,
            rx_packets: 4,
            drops: std::collections::BTreeMap::from([("ttl_expired".into(), 2)]),
            ..Default::default()
        }],
        workers: vec![],
        policies: vec![],
    };
    let node = NodeInfo {
        name: "node-a".into(),
        node_ip: "192.168.1.10".parse().unwrap(),
        pod_cidr: "10.244.1.0/24".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        gateway: "10.244.1.1".parse().unwrap(),
        gateway_mac: "0a:58:0a:f4:01:01".into(),
        pod_mtu: 1450,
        vtep_mac: "0e:00:00:00:00:01".into(),
        vni: 1,
        vxlan_port: 8472,
    };
    let daemon = FakeDaemon::start(vec![
        ok(Reply::Stats(stats.clone())),
        ok(Reply::Stats(stats.clone())),
        ok(Reply::Node(node.clone())),
    ]);
    let out = vswitchctl(&with_socket(&daemon, &["stats"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("PORT  NAME"), "{text}");
    assert!(text.contains("\n  ttl_expired  2\n"), "{text}");
    assert!(text.contains("WORKER"), "{text}");
    let out = vswitchctl(&with_socket(&daemon, &["stats", "--json"]));
    assert_eq!(serde_json::from_str::<Stats>(&stdout(&out)).unwrap(), stats);
    let out = vswitchctl(&with_socket(&daemon, &["node"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("name:") && text.contains("node-a\n"),
        "{text}"
    );
    assert!(text.contains("10.244.0.0/16"), "{text}");
    let requests = daemon.requests();
    let verbs: Vec<Value> = requests
        .iter()
        .map(|l| request_json(l)["verb"].clone())
        .collect();
    assert_eq!(verbs, vec![json!("stats"), json!("stats"), json!("node")]);
}

#[test]
fn an_error_response_exits_1_with_the_message_on_one_line() {
    let daemon = FakeDaemon::start(vec![Response::error(
        ErrorCode::Conflict,
        "10.244.1.5 is already used by pod c0",
    )]);
    let out = vswitchctl(&with_socket(
        &daemon,
        &[
            "port",
            "add",
            "--netns",
            "p",
            "--id",
            "c1",
            "--ip",
            "10.244.1.5/24",
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "vswitchctl: 10.244.1.5 is already used by pod c0 (conflict)\n"
    );
    assert!(out.stdout.is_empty());
    daemon.requests();
}

#[test]
fn a_missing_socket_exits_3_with_a_one_line_hint() {
    let dir = TempDir::new();
    let socket = dir.0.join("absent.sock");
    let out = vswitchctl(&["--socket", socket.to_str().unwrap(), "port", "list"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("vswitchctl: "), "{err}");
    assert!(err.contains(socket.to_str().unwrap()), "{err}");
    assert!(err.contains("vswitchd is running"), "{err}");
    assert!(err.contains("--socket"), "{err}");
}

#[test]
fn the_socket_can_come_from_the_environment() {
    let daemon = FakeDaemon::start(vec![ok(Reply::Ports(vec![]))]);
    let out = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(["port", "list"])
        .env("VSWITCH_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ID "));
    daemon.requests();
}

#[test]
fn a_silent_daemon_times_out_with_exit_1() {
    let dir = TempDir::new();
    let socket = dir.0.join("silent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let holder = std::thread::spawn(move || {
        let stream = accept_within(&listener, Duration::from_secs(20));
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        // Keep the connection open, answering nothing, until the client gives up.
        let mut rest = String::new();
        let _ = BufReader::new(&stream).read_line(&mut rest);
    });
    let out = vswitchctl(&[
        "--socket",
        socket.to_str().unwrap(),
        "--timeout",
        "0.3",
        "node",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("vswitchctl: "), "{err}");
    holder.join().unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let out = vswitchctl(&["port", "add", "--id", "c1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = vswitchctl(&["port", "add", "--netns", "p", "--id", "c1", "--ip", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = vswitchctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb in [
        &["--help"][..],
        &["port", "--help"],
        &["port", "add", "--help"],
        &["port", "del", "--help"],
        &["port", "list", "--help"],
        &["stats", "--help"],
        &["node", "--help"],
        &["completions", "--help"],
    ] {
        let out = vswitchctl(verb);
        assert!(out.status.success(), "{verb:?}");
        assert!(
            stdout(&out).contains("Examples:\n  vswitchctl "),
            "{verb:?}"
        );
    }
}

#[test]
fn completions_print_a_script_without_a_daemon() {
    let out = vswitchctl(&[
        "--socket",
        "/nonexistent/vswitch.sock",
        "completions",
        "bash",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(script.contains("_vswitchctl"), "{script}");
    assert!(script.contains("complete "), "{script}");
    assert!(script.contains("port"), "{script}");
    for shell in ["zsh", "fish"] {
        let out = vswitchctl(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(stdout(&out).contains("vswitchctl"), "{shell}");
    }
}
