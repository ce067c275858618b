//! End-to-end tests of the `vswitch-cni` binary through the raw CNI protocol (environment and
//! stdin in; stdout and exit status out) against a fake daemon: a Unix listener in a thread that
//! records each request line and answers with canned response lines. No root needed.

mod common;

use common::{FakeDaemon, TempDir};
use ctl::proto::{ErrorCode, NodeInfo, PortInfo, Reply, Response};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the plugin with exactly `env` (nothing inherited) and `stdin`.
fn cni(env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vswitch-cni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn conf(version: &str, socket: &Path) -> String {
    json!({
        "cniVersion": version,
        "name": "vswitch",
        "type": "vswitch-cni",
        "socket": socket,
    })
    .to_string()
}

fn attachment_env<'a>(command: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "3f2a9c"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-0;VSWITCH_LABELS=app=web",
        ),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn port(netns: &str) -> PortInfo {
    PortInfo {
        id: "3f2a9c".into(),
        ifname: "eth0".into(),
        netns: netns.into(),
        host_ifname: "vsw0123456789a".into(),
        host_mac: "02:00:00:00:00:02".into(),
        port: 2,
        mac: "0a:58:0a:f4:01:05".into(),
        ip: "10.244.1.5/24".parse().unwrap(),
        gateway: "10.244.1.1".parse().unwrap(),
        mtu: 1450,
        namespace: "default".into(),
        labels: Default::default(),
    }
}

fn ok(result: Reply) -> Response {
    Response::Ok { result }
}

fn success(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The error object of a failed run: exit status 1 and the spec's keys with their types.
fn failure(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    assert!(v["cniVersion"].is_string(), "{v}");
    assert!(v["code"].is_u64(), "{v}");
    assert!(v["msg"].is_string(), "{v}");
    assert!(v.get("details").is_none_or(Value::is_string), "{v}");
    v
}

#[test]
fn add_prints_the_result_in_the_asked_version() {
    let netns = "/var/run/netns/web-0";
    for version in ["1.0.0", "1.1.0"] {
        let daemon = FakeDaemon::start(vec![ok(Reply::Port(port(netns)))]);
        let out = cni(
            &attachment_env("ADD", netns),
            &conf(version, &daemon.socket),
        );
        let result: Value = serde_json::from_str(&success(&out)).unwrap();
        let mut pod = json!({"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": netns});
        if version == "1.1.0" {
            pod["mtu"] = json!(1450);
        }
        assert_eq!(
            result,
            json!({
                "cniVersion": version,
                "interfaces": [{"name": "vsw0123456789a", "mac": "02:00:00:00:00:02"}, pod],
                "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
                "dns": {}
            })
        );
        assert_eq!(
            daemon.request_values(),
            vec![
                json!({"verb": "port_add", "netns": netns, "id": "3f2a9c", "ifname": "eth0",
                "namespace": "web", "labels": {"app": "web"}})
            ]
        );
    }
}

#[test]
fn add_ignores_a_prev_result_and_copies_dns() {
    let netns = "/var/run/netns/web-0";
    let daemon = FakeDaemon::start(vec![ok(Reply::Port(port(netns)))]);
    let mut c: Value = serde_json::from_str(&conf("1.0.0", &daemon.socket)).unwrap();
    c["prevResult"] = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "x"}]});
    c["dns"] = json!({"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]});
    let out = cni(&attachment_env("ADD", netns), &c.to_string());
    let result: Value = serde_json::from_str(&success(&out)).unwrap();
    assert_eq!(result["interfaces"].as_array().unwrap().len(), 2);
    assert_eq!(result["dns"], c["dns"]);
    daemon.request_values();
}

#[test]
fn missing_environment_is_error_4_naming_the_variables() {
    let socket = Path::new("/nonexistent/vswitch.sock");
    let out = cni(
        &[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")],
        &conf("1.0.0", socket),
    );
    let e = failure(&out);
    assert_eq!(e["code"], 4);
    assert_eq!(e["cniVersion"], "1.0.0", "the configuration's version");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("CNI_CONTAINERID") && msg.contains("CNI_NETNS"),
        "{msg}"
    );
    assert!(!msg.contains("CNI_IFNAME"), "{msg}");
    let e = failure(&cni(&[], &conf("1.0.0", socket)));
    assert_eq!(e["code"], 4);
    assert!(e["msg"].as_str().unwrap().contains("CNI_COMMAND"));
    let e = failure(&cni(&[("CNI_COMMAND", "FROB")], &conf("1.0.0", socket)));
    assert_eq!(e["code"], 4);
    let mut bad_id = attachment_env("DEL", "/var/run/netns/x");
    bad_id[1] = ("CNI_CONTAINERID", "../etc");
    let e = failure(&cni(&bad_id, &conf("1.0.0", socket)));
    assert_eq!(e["code"], 4);
    assert!(e["msg"].as_str().unwrap().contains("CNI_CONTAINERID"));
}

#[test]
fn undecodable_and_invalid_configurations_are_errors_6_and_7() {
    let env = attachment_env("ADD", "/var/run/netns/x");
    let e = failure(&cni(&env, "{\"cniVersion\": "));
    assert_eq!(e["code"], 6);
    assert_eq!(e["cniVersion"], "1.1.0", "no version to echo: the latest");
    for (conf, what) in [
        (
            json!({"cniVersion": "1.0.0", "type": "vswitch-cni"}),
            "name",
        ),
        (json!({"cniVersion": "1.0.0", "name": "n"}), "type"),
        (json!({"name": "n", "type": "vswitch-cni"}), "cniVersion"),
        (
            json!({"cniVersion": "1.0.0", "name": ["n"], "type": "vswitch-cni"}),
            "name",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "type": "vswitch-cni", "socket": 7}),
            "socket",
        ),
    ] {
        let e = failure(&cni(&env, &conf.to_string()));
        assert_eq!(e["code"], 7, "{conf}: {e}");
        assert!(e["msg"].as_str().unwrap().contains(what), "{conf}: {e}");
    }
    let e = failure(&cni(
        &env,
        &json!({"cniVersion": "0.4.0", "name": "n", "type": "vswitch-cni"}).to_string(),
    ));
    assert_eq!(e["code"], 1);
    assert_eq!(e["cniVersion"], "0.4.0");
    assert!(e["details"].as_str().unwrap().contains("1.0.0, 1.1.0"));
}

#[test]
fn an_unreachable_daemon_is_error_11_for_add_del_check_and_50_for_status() {
    let dir = TempDir::new();
    let socket = dir.0.join("absent.sock");
    let netns = "/var/run/netns/x";
    for command in ["ADD", "DEL"] {
        let e = failure(&cni(
            &attachment_env(command, netns),
            &conf("1.0.0", &socket),
        ));
        assert_eq!(e["code"], 11, "{command}: {e}");
        assert!(
            e["details"]
                .as_str()
                .unwrap()
                .contains(socket.to_str().unwrap()),
            "{e}"
        );
    }
    let mut c: Value = serde_json::from_str(&conf("1.0.0", &socket)).unwrap();
    c["prevResult"] = ctl::render::cni_result(&port(netns));
    let e = failure(&cni(&attachment_env("CHECK", netns), &c.to_string()));
    assert_eq!(e["code"], 11);
    let e = failure(&cni(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0", &socket)));
    assert_eq!(e["code"], 50);
    assert_eq!(e["msg"], "The plugin is not available");
}

#[test]
fn del_is_idempotent_and_needs_no_namespace() {
    let daemon = FakeDaemon::start(vec![ok(Reply::Removed(true)), ok(Reply::Removed(false))]);
    let c = conf("1.0.0", &daemon.socket);
    let env = attachment_env("DEL", "/var/run/netns/web-0");
    assert_eq!(success(&cni(&env, &c)), "");
    // The second DEL, after the namespace is gone (the runtime leaves CNI_NETNS empty).
    let mut gone = env.clone();
    gone[2] = ("CNI_NETNS", "");
    assert_eq!(success(&cni(&gone, &c)), "");
    let del = json!({"verb": "port_del", "id": "3f2a9c", "ifname": "eth0"});
    assert_eq!(daemon.request_values(), vec![del.clone(), del]);
}

#[test]
fn check_passes_silently_and_reports_the_daemons_mismatch() {
    let netns = "/var/run/netns/web-0";
    let daemon = FakeDaemon::start(vec![
        ok(Reply::Port(port(netns))),
        Response::error(
            ErrorCode::Mismatch,
            "3f2a9c/eth0: pod interface eth0 in web-0: address 10.244.1.5/24 missing (has: none)",
        ),
        Response::error(ErrorCode::NotFound, "3f2a9c/eth0 is not attached"),
    ]);
    let mut c: Value = serde_json::from_str(&conf("1.0.0", &daemon.socket)).unwrap();
    c["prevResult"] = ctl::render::cni_result(&port(netns));
    let env = attachment_env("CHECK", netns);
    assert_eq!(success(&cni(&env, &c.to_string())), "");
    let e = failure(&cni(&env, &c.to_string()));
    assert_eq!(e["code"], 999);
    assert!(e["msg"].as_str().unwrap().contains("address"), "{e}");
    assert_eq!(e["details"], "vswitchd refused the request (mismatch)");
    let e = failure(&cni(&env, &c.to_string()));
    assert_eq!(e["code"], 3);
    let check = json!({"verb": "port_check", "id": "3f2a9c", "ifname": "eth0"});
    assert_eq!(
        daemon.request_values(),
        vec![check.clone(), check.clone(), check]
    );
    // Without prevResult there is nothing to check against.
    let e = failure(&cni(&env, &conf("1.0.0", Path::new("/nonexistent"))));
    assert_eq!(e["code"], 7);
}

#[test]
fn version_lists_the_supported_versions_without_a_daemon() {
    for (stdin, echoed) in [
        (r#"{"cniVersion": "1.0.0"}"#, "1.0.0"),
        (r#"{"cniVersion": "1.1.0"}"#, "1.1.0"),
        ("", "1.1.0"),
    ] {
        let out = cni(&[("CNI_COMMAND", "VERSION")], stdin);
        let v: Value = serde_json::from_str(&success(&out)).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": echoed, "supportedVersions": ["1.0.0", "1.1.0"]})
        );
    }
}

#[test]
fn status_and_gc_speak_1_1_0() {
    let node = NodeInfo {
        name: "n1".into(),
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
        ok(Reply::Node(node)),
        ok(Reply::Ports(vec![port("/var/run/netns/old")])),
    ]);
    let out = cni(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0", &daemon.socket));
    assert_eq!(success(&out), "");
    let mut c: Value = serde_json::from_str(&conf("1.1.0", &daemon.socket)).unwrap();
    c["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let out = cni(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        &c.to_string(),
    );
    assert_eq!(success(&out), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 3f2a9c/eth0"));
    assert_eq!(
        daemon.request_values(),
        vec![
            json!({"verb": "node"}),
            json!({"verb": "gc", "valid": [{"id": "keep", "ifname": "eth0"}]}),
        ]
    );
    // Both verbs are unknown to a 1.0.0 configuration.
    let socket = Path::new("/nonexistent");
    for command in ["STATUS", "GC"] {
        let e = failure(&cni(&[("CNI_COMMAND", command)], &conf("1.0.0", socket)));
        assert_eq!(e["code"], 1, "{command}");
    }
}

#[test]
fn the_example_conflist_yields_configurations_the_plugin_accepts() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/10-vswitch.conflist"
    ))
    .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let plugins = list["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["type"], "vswitch-cni");
    assert_eq!(plugins[0]["socket"], ctl::proto::DEFAULT_SOCKET);
    let versions: Vec<&str> = list["cniVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(versions.contains(&list["cniVersion"].as_str().unwrap()));
    assert_eq!(versions, ctl::cni::SUPPORTED_VERSIONS);
    let netns = "/var/run/netns/web-0";
    let daemon = FakeDaemon::start(vec![
        ok(Reply::Port(port(netns))),
        ok(Reply::Port(port(netns))),
    ]);
    for version in versions {
        // What a runtime sends: the plugin's object with the list's name and the chosen version.
        let mut conf = plugins[0].clone();
        conf["cniVersion"] = json!(version);
        conf["name"] = list["name"].clone();
        conf["socket"] = json!(daemon.socket);
        let out = cni(&attachment_env("ADD", netns), &conf.to_string());
        let result: Value = serde_json::from_str(&success(&out)).unwrap();
        assert_eq!(result["cniVersion"], version);
    }
    assert_eq!(daemon.request_values().len(), 2);
}
