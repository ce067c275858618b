//! `vswitch-cni` beside the reference CNI plugins, through the raw CNI protocol: each plugin is
//! executed as a runtime executes it (`CNI_*` environment, network configuration on stdin,
//! result or error object on stdout) against a real vswitchd.
//!
//! Needs root, `ip`, and Debian's containernetworking-plugins (the reference `bridge` and
//! `host-local` in /usr/lib/cni); nothing is skipped. Every test builds its own namespaces
//! (prefix `vt<pid>x<n>-`, see `common`), runs plugins with `ip netns exec` inside a test node
//! namespace (the bridge plugin creates its bridge in the namespace it runs in: never the root
//! namespace), keeps host-local's leases in the test's temp dir and removes all of it when it
//! ends. `vswitch-cni` belongs to the `ctl` package, so the first test to need it builds it with
//! the cargo that builds this test (a no-op when it is fresh) and runs it from the same target
//! directory. Run with `cargo test -p vswitchd --test cni`.

mod common;

use common::{Conf, Lab, Out, GATEWAY};
use ipnet::IpNet;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Where Debian's containernetworking-plugins installs the reference plugins.
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The `vswitch-cni` binary next to the `vswitchd` under test, built once per test run.
fn vswitch_cni() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::build_ctl_binary("vswitch-cni"))
}

/// One attachment as a runtime names it.
struct Attachment<'a> {
    id: &'a str,
    /// The pod namespace's path (`CNI_NETNS`).
    netns: String,
    ifname: &'a str,
}

impl<'a> Attachment<'a> {
    fn new(id: &'a str, pod_ns: &str) -> Self {
        Attachment {
            id,
            netns: format!("/var/run/netns/{pod_ns}"),
            ifname: "eth0",
        }
    }
}

/// A plugin executable and the namespace a runtime would run it in.
struct Plugin<'a> {
    lab: &'a Lab,
    node_ns: String,
    exe: String,
}

impl Plugin<'_> {
    /// Runs `command` for `attachment` (if any) with `conf` on stdin.
    fn run(&self, command: &str, attachment: Option<&Attachment>, conf: &Value) -> Out {
        let pod_args = attachment.map(|a| {
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
                a.id
            )
        });
        let mut env = vec![("CNI_COMMAND", command), ("CNI_PATH", REFERENCE_PLUGINS)];
        if let (Some(a), Some(args)) = (attachment, pod_args.as_deref()) {
            env.extend([
                ("CNI_CONTAINERID", a.id),
                ("CNI_NETNS", a.netns.as_str()),
                ("CNI_IFNAME", a.ifname),
                ("CNI_ARGS", args),
            ]);
        }
        self.lab
            .exec_with(&self.node_ns, &[&self.exe], &env, &conf.to_string())
    }

    /// Runs `command`, asserting success; stdout.
    fn ok(&self, command: &str, attachment: Option<&Attachment>, conf: &Value) -> String {
        let out = self.run(command, attachment, conf);
        assert!(out.ok(), "{} {command} failed: {}", self.exe, out.text());
        out.stdout
    }

    /// Runs `command`, asserting a spec error object and a non-zero exit; the object.
    fn error(&self, command: &str, attachment: Option<&Attachment>, conf: &Value) -> Value {
        let out = self.run(command, attachment, conf);
        assert!(
            !out.ok(),
            "{} {command} succeeded: {}",
            self.exe,
            out.text()
        );
        let e: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|err| panic!("no error object ({err}): {}", out.text()));
        assert_error_schema(&e);
        e
    }

    /// ADD, asserting success; the result, checked against the schema.
    fn add(&self, a: &Attachment, conf: &Value) -> Value {
        let stdout = self.ok("ADD", Some(a), conf);
        let result: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("ADD printed no JSON ({e}): {stdout}"));
        let version = conf["cniVersion"].as_str().unwrap();
        assert_result_schema(&result, version, a);
        result
    }
}

/// `conf` with `prevResult` set, as a runtime sends it on CHECK and DEL.
fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn only_keys(what: &str, v: &Value, allowed: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    for k in obj.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{what} has key {k:?}, not in the spec: {v}"
        );
    }
}

fn string_list(what: &str, v: Option<&Value>) {
    if let Some(v) = v {
        let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        assert!(ok, "{what} must be a list of strings: {v}");
    }
}

/// Asserts that `r` is a CNI ADD success result of spec `version` (1.0.0 or 1.1.0): the keys
/// the spec defines with their types and formats, `ips[].interface` indexes within
/// `interfaces`, and the attachment's interface listed in its sandbox with an address on it.
fn assert_result_schema(r: &Value, version: &str, a: &Attachment) {
    let v1_1 = version == "1.1.0";
    only_keys(
        "result",
        r,
        &["cniVersion", "interfaces", "ips", "routes", "dns"],
    );
    assert_eq!(r["cniVersion"], version, "cniVersion: {r}");
    let interfaces = r["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("interfaces must be a list: {r}"));
    let mut interface_keys = vec!["name", "mac", "sandbox"];
    if v1_1 {
        interface_keys.extend(["mtu", "socketPath", "pciID"]);
    }
    for i in interfaces {
        only_keys("interface", i, &interface_keys);
        assert!(
            i["name"].as_str().is_some_and(|n| !n.is_empty()),
            "interface name: {i}"
        );
        if let Some(mac) = i.get("mac") {
            assert!(mac.as_str().is_some_and(is_mac), "interface mac: {i}");
        }
        if let Some(sandbox) = i.get("sandbox") {
            assert!(sandbox.is_string(), "interface sandbox: {i}");
        }
        if let Some(mtu) = i.get("mtu") {
            assert!(mtu.as_u64().is_some_and(|m| m > 0), "interface mtu: {i}");
        }
        for k in ["socketPath", "pciID"] {
            assert!(i.get(k).is_none_or(Value::is_string), "interface {k}: {i}");
        }
    }
    let ips = r["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("ips must be a list: {r}"));
    for ip in ips {
        only_keys("ip", ip, &["address", "gateway", "interface"]);
        let address = ip["address"].as_str().unwrap_or_default();
        assert!(address.parse::<IpNet>().is_ok(), "ip address (CIDR): {ip}");
        if let Some(gw) = ip.get("gateway") {
            assert!(
                gw.as_str().is_some_and(|g| g.parse::<IpAddr>().is_ok()),
                "ip gateway: {ip}"
            );
        }
        if let Some(index) = ip.get("interface") {
            let index = index
                .as_u64()
                .unwrap_or_else(|| panic!("ip interface is an index: {ip}"));
            assert!(
                (index as usize) < interfaces.len(),
                "ip interface {index} is not an index into interfaces: {r}"
            );
        }
    }
    let mut route_keys = vec!["dst", "gw"];
    if v1_1 {
        route_keys.extend(["mtu", "advmss", "priority", "table", "scope"]);
    }
    for route in r["routes"].as_array().into_iter().flatten() {
        only_keys("route", route, &route_keys);
        assert!(
            route["dst"]
                .as_str()
                .is_some_and(|d| d.parse::<IpNet>().is_ok()),
            "route dst (CIDR): {route}"
        );
        if let Some(gw) = route.get("gw") {
            assert!(
                gw.as_str().is_some_and(|g| g.parse::<IpAddr>().is_ok()),
                "route gw: {route}"
            );
        }
        for k in ["mtu", "advmss", "priority", "table", "scope"] {
            assert!(route.get(k).is_none_or(Value::is_u64), "route {k}: {route}");
        }
    }
    assert!(
        r.get("routes").is_none_or(Value::is_array),
        "routes must be a list: {r}"
    );
    if let Some(dns) = r.get("dns") {
        only_keys("dns", dns, &["nameservers", "domain", "search", "options"]);
        string_list("dns nameservers", dns.get("nameservers"));
        string_list("dns search", dns.get("search"));
        string_list("dns options", dns.get("options"));
        assert!(
            dns.get("domain").is_none_or(Value::is_string),
            "dns domain: {dns}"
        );
    }
    // The attachment: its interface in its sandbox, with an address.
    let pod = interfaces
        .iter()
        .position(|i| i["name"] == a.ifname && i["sandbox"] == a.netns.as_str())
        .unwrap_or_else(|| panic!("no interface {} in {}: {r}", a.ifname, a.netns));
    assert!(
        ips.iter().any(|ip| ip["interface"] == pod),
        "no address on the pod interface: {r}"
    );
}

/// Asserts the spec's error object: cniVersion, code, msg and optional details.
fn assert_error_schema(e: &Value) {
    only_keys("error", e, &["cniVersion", "code", "msg", "details"]);
    assert!(e["cniVersion"].is_string(), "{e}");
    assert!(e["code"].is_u64(), "{e}");
    assert!(e["msg"].is_string(), "{e}");
    assert!(e.get("details").is_none_or(Value::is_string), "{e}");
}

/// The address the result gives the pod interface, and that interface's MAC.
fn pod_address(result: &Value, a: &Attachment) -> (String, String) {
    let interfaces = result["interfaces"].as_array().unwrap();
    let index = interfaces
        .iter()
        .position(|i| i["name"] == a.ifname && i["sandbox"] == a.netns.as_str())
        .unwrap();
    let ip = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ip| ip["interface"] == index)
        .unwrap();
    (
        ip["address"].as_str().unwrap().to_string(),
        interfaces[index]["mac"].as_str().unwrap().to_string(),
    )
}

/// ADD -> CHECK -> DEL -> DEL for one attachment, with the kernel state checked after ADD and
/// after DEL; VERSION first. Returns the ADD result.
fn lifecycle(lab: &Lab, plugin: &Plugin, conf: &Value, pod_ns: &str, id: &str) -> Value {
    let version: Value = serde_json::from_str(&plugin.ok(
        "VERSION",
        None,
        &json!({"cniVersion": conf["cniVersion"]}),
    ))
    .unwrap();
    assert!(version["cniVersion"].is_string(), "{version}");
    let supported = version["supportedVersions"]
        .as_array()
        .unwrap_or_else(|| panic!("VERSION lists no supportedVersions: {version}"));
    assert!(
        supported.contains(&conf["cniVersion"]),
        "{} does not support {}: {version}",
        plugin.exe,
        conf["cniVersion"]
    );

    let a = Attachment::new(id, pod_ns);
    let result = plugin.add(&a, conf);
    let (address, mac) = pod_address(&result, &a);
    let link = lab.ip(pod_ns, &["addr", "show", "dev", "eth0"]);
    assert!(link.contains(&format!("inet {address} ")), "{link}");
    assert!(link.contains(&format!("link/ether {mac} ")), "{link}");

    let prev = with_prev(conf, &result);
    assert_eq!(
        plugin.ok("CHECK", Some(&a), &prev),
        "",
        "CHECK prints nothing"
    );
    assert_eq!(plugin.ok("DEL", Some(&a), &prev), "", "DEL prints nothing");
    let gone = lab.try_ip(pod_ns, &["link", "show", "dev", "eth0"]);
    assert!(!gone.ok(), "eth0 survived DEL: {}", gone.text());
    assert_eq!(
        plugin.ok("DEL", Some(&a), &prev),
        "",
        "a second DEL succeeds"
    );
    result
}

#[test]
fn reference_bridge_and_vswitch_cni_both_pass_add_check_del_del() {
    let lab = Lab::new();
    let node = lab.node("node", &Conf::default());

    // The reference: bridge + host-local, in a node namespace of its own.
    let ref_node = lab.netns("refnode");
    let ref_pod = lab.netns("refpod");
    let bridge = Plugin {
        lab: &lab,
        node_ns: ref_node.clone(),
        exe: format!("{REFERENCE_PLUGINS}/bridge"),
    };
    let bridge_conf = json!({
        "cniVersion": "1.0.0",
        "name": "refnet",
        "type": "bridge",
        "bridge": "cniref0",
        "isGateway": true,
        "ipam": {
            "type": "host-local",
            "subnet": "10.99.0.0/24",
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": lab.dir.join("host-local"),
        },
    });
    let reference = lifecycle(
        &lab,
        &bridge,
        &bridge_conf,
        &ref_pod,
        &format!("{}-ref", lab.id),
    );
    let links = lab.ip(&ref_node, &["link", "show", "type", "bridge"]);
    assert!(
        links.contains("cniref0"),
        "the bridge is in the test's node namespace: {links}"
    );

    // vswitch-cni, run in the vswitchd node's namespace.
    let pod = lab.netns("pod");
    let ours = Plugin {
        lab: &lab,
        node_ns: node.ns.clone(),
        exe: vswitch_cni().display().to_string(),
    };
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "vswitch",
        "type": "vswitch-cni",
        "socket": node.socket,
    });
    let result = lifecycle(&lab, &ours, &conf, &pod, &format!("{}-pod", lab.id));
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": GATEWAY}])
    );
    assert_eq!(result["ips"][0]["gateway"], GATEWAY);
    assert!(node.port_list().is_empty(), "DEL detached the pod");

    // Both results have the same shape: a host interface and a sandboxed one.
    for r in [&reference, &result] {
        let sandboxed = r["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i.get("sandbox").is_some_and(|s| s != ""))
            .count();
        assert_eq!(sandboxed, 1, "{r}");
    }

    let version: Value =
        serde_json::from_str(&ours.ok("VERSION", None, &json!({"cniVersion": "1.1.0"}))).unwrap();
    assert_eq!(
        version,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]})
    );
}

#[test]
fn check_finds_a_broken_route_link_or_address() {
    let lab = Lab::new();
    let node = lab.node("node", &Conf::default());
    let pod = lab.netns("pod");
    let ours = Plugin {
        lab: &lab,
        node_ns: node.ns.clone(),
        exe: vswitch_cni().display().to_string(),
    };
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": "vswitch",
        "type": "vswitch-cni",
        "socket": node.socket,
    });
    let id = format!("{}-pod", lab.id);
    let a = Attachment::new(&id, &pod);
    let result = ours.add(&a, &conf);
    assert_eq!(
        result["interfaces"][1]["mtu"], 1450,
        "1.1.0 results carry the MTU"
    );
    let (address, _) = pod_address(&result, &a);
    let prev = with_prev(&conf, &result);
    ours.ok("CHECK", Some(&a), &prev);

    let restore_route = || {
        lab.ip(
            &pod,
            &["route", "replace", "default", "via", GATEWAY, "dev", "eth0"],
        )
    };
    lab.ip(&pod, &["route", "del", "default"]);
    let e = ours.error("CHECK", Some(&a), &prev);
    assert_eq!(e["code"], 999, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("default route"), "{e}");
    assert_eq!(e["cniVersion"], "1.1.0");
    restore_route();
    ours.ok("CHECK", Some(&a), &prev);

    lab.ip(&pod, &["link", "set", "eth0", "down"]);
    let e = ours.error("CHECK", Some(&a), &prev);
    assert!(e["msg"].as_str().unwrap().contains("is down"), "{e}");
    lab.ip(&pod, &["link", "set", "eth0", "up"]);
    restore_route();
    ours.ok("CHECK", Some(&a), &prev);

    lab.ip(&pod, &["addr", "del", &address, "dev", "eth0"]);
    let e = ours.error("CHECK", Some(&a), &prev);
    assert!(e["msg"].as_str().unwrap().contains(&address), "{e}");
    lab.ip(&pod, &["addr", "add", &address, "dev", "eth0"]);
    restore_route();
    ours.ok("CHECK", Some(&a), &prev);

    // A prevResult that is not this attachment's.
    let mut other = result.clone();
    other["interfaces"][1]["mac"] = json!("0a:58:0a:f4:01:fe");
    let e = ours.error("CHECK", Some(&a), &with_prev(&conf, &other));
    assert!(e["msg"].as_str().unwrap().contains("MAC"), "{e}");

    ours.ok("DEL", Some(&a), &prev);
    let e = ours.error("CHECK", Some(&a), &prev);
    assert_eq!(e["code"], 3, "an unknown attachment: {e}");
}

#[test]
fn status_and_gc_follow_the_daemon() {
    let lab = Lab::new();
    let mut node = lab.node("node", &Conf::default());
    let ours = Plugin {
        lab: &lab,
        node_ns: node.ns.clone(),
        exe: vswitch_cni().display().to_string(),
    };
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": "vswitch",
        "type": "vswitch-cni",
        "socket": node.socket,
    });
    assert_eq!(ours.ok("STATUS", None, &conf), "", "STATUS prints nothing");

    let pods: Vec<String> = ["a", "b", "c"].iter().map(|n| lab.netns(n)).collect();
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("{}-{n}", lab.id))
        .collect();
    let attachments: Vec<Attachment> = ids
        .iter()
        .zip(&pods)
        .map(|(id, ns)| Attachment::new(id, ns))
        .collect();
    for a in &attachments {
        ours.add(a, &conf);
    }
    assert_eq!(node.port_list().len(), 3);

    // GC keeps a and c (and an attachment the daemon does not have), removes b.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": ids[0], "ifname": "eth0"},
        {"containerID": ids[2], "ifname": "eth0"},
        {"containerID": "gone", "ifname": "eth0"},
    ]);
    assert_eq!(ours.ok("GC", None, &gc), "", "GC prints nothing");
    let mut left: Vec<String> = node.port_list().into_iter().map(|p| p.id).collect();
    left.sort();
    assert_eq!(left, [ids[0].clone(), ids[2].clone()]);
    assert!(
        !lab.try_ip(&pods[1], &["link", "show", "dev", "eth0"]).ok(),
        "b's eth0 is gone"
    );
    assert!(
        lab.try_ip(&pods[0], &["link", "show", "dev", "eth0"]).ok(),
        "a's eth0 stays"
    );
    assert_eq!(ours.ok("GC", None, &gc), "", "nothing left to collect");
    assert_eq!(node.port_list().len(), 2);
    // Without the list GC is refused rather than removing everything.
    let e = ours.error("GC", None, &conf);
    assert_eq!(e["code"], 7, "{e}");
    assert_eq!(node.port_list().len(), 2);

    // The daemon stops: STATUS says unavailable, ADD and DEL ask to try again later.
    assert!(node
        .stop(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let e = ours.error("STATUS", None, &conf);
    assert_eq!(e["code"], 50, "{e}");
    assert_eq!(e["msg"], "The plugin is not available");
    for command in ["ADD", "DEL"] {
        let e = ours.error(command, Some(&attachments[0]), &conf);
        assert_eq!(e["code"], 11, "{command}: {e}");
    }

    // Back again: DEL completes (twice), STATUS is fine.
    node.start();
    ours.ok("STATUS", None, &conf);
    for a in [&attachments[0], &attachments[0], &attachments[2]] {
        ours.ok("DEL", Some(a), &conf);
    }
    assert!(node.port_list().is_empty());
}
