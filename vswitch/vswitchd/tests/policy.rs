//! NetworkPolicy end to end: a real vswitchd, pods in network namespaces, real TCP and UDP
//! connections, policies applied with `vswitchctl policy apply -f` (root only: creates network
//! namespaces and veths, prefixed with a per-test id).

mod common;

use common::*;
use ctl::proto::{PortAdd, PortInfo, Reply, Request, Response};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Echoes one TCP message per connection and every UDP datagram, on ADDR PORT.
const ECHO_SERVER: &str = "import socket, sys, threading\n\
    addr, port = sys.argv[1], int(sys.argv[2])\n\
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, port))\n\
    t = socket.create_server((addr, port))\n\
    def udp():\n    while True:\n        d, a = u.recvfrom(2048); u.sendto(d, a)\n\
    threading.Thread(target=udp, daemon=True).start()\n\
    while True:\n    c, _ = t.accept(); c.settimeout(3)\n    try:\n        c.sendall(c.recv(100))\n    except OSError:\n        pass\n    c.close()\n";

/// Exits 0 when PROTO ADDR PORT echoes a message back within 2 s, 1 otherwise.
const PROBE: &str = "import socket, sys\n\
    proto, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
    try:\n    if proto == 'tcp':\n        s = socket.create_connection((addr, port), timeout=2); s.sendall(b'hi'); ok = s.recv(10) == b'hi'\n    else:\n        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'hi', (addr, port)); ok = s.recvfrom(10)[0] == b'hi'\n\
    except OSError:\n    ok = False\n\
    sys.exit(0 if ok else 1)\n";

fn vswitchctl() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_ctl_binary("vswitchctl"))
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ctl/examples/networkpolicy")
}

struct Pod {
    ns: String,
    info: PortInfo,
}

impl Pod {
    fn ip(&self) -> String {
        self.info.ip.addr().to_string()
    }
}

fn pod(lab: &Lab, node: &Node, name: &str, namespace: &str, labels: &[(&str, &str)]) -> Pod {
    let ns = lab.netns(name);
    let r = node.port_add_req(PortAdd {
        netns: ns.clone(),
        id: format!("{}-{name}", lab.id),
        ifname: "eth0".into(),
        ip: None,
        mac: None,
        namespace: Some(namespace.into()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    match r {
        Response::Ok {
            result: Reply::Port(info),
        } => Pod { ns, info },
        other => panic!("port add {name}: {other:?}"),
    }
}

/// Whether `from` gets an echo back from `to` over `proto` on `port`.
fn reaches(lab: &Lab, from: &Pod, to: &Pod, proto: &str, port: u16) -> bool {
    lab.exec(
        &from.ns,
        &[python(), "-c", PROBE, proto, &to.ip(), &port.to_string()],
    )
    .ok()
}

fn serve(lab: &Lab, pod: &Pod, port: u16) {
    lab.spawn(
        &pod.ns,
        &[python(), "-c", ECHO_SERVER, &pod.ip(), &port.to_string()],
    );
    lab.wait_listening(&pod.ns, port);
}

/// Runs vswitchctl against `node`; returns (success, stdout + stderr).
fn ctl(node: &Node, args: &[&str]) -> (bool, String) {
    let out = Command::new(vswitchctl())
        .arg("--socket")
        .arg(&node.socket)
        .args(args)
        .output()
        .expect("run vswitchctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn apply(lab: &Lab, node: &Node, name: &str, yaml: &str) {
    let file = lab.dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let (ok, text) = ctl(node, &["policy", "apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "policy apply {name}: {text}");
}

fn expect(lab: &Lab, cases: &[(&Pod, &Pod, &str, u16, bool, &str)]) {
    let mut wrong = Vec::new();
    for (from, to, proto, port, want, why) in cases {
        let got = reaches(lab, from, to, proto, *port);
        if got != *want {
            wrong.push(format!(
                "{} -> {} {proto}/{port}: {} ({why})",
                from.info.host_ifname,
                to.info.host_ifname,
                if got {
                    "passed, should be denied"
                } else {
                    "denied, should pass"
                }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const DB_ALLOW: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-allow
spec:
  podSelector:
    matchLabels:
      role: db
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: web
    ports:
    - port: 6379
    - protocol: UDP
      port: 6379
  - from:
    - namespaceSelector:
        matchLabels:
          team: x
    ports:
    - port: 6380
";

const WEB_EGRESS: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-egress
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: DB/32
    ports:
    - protocol: TCP
      port: 6379
";

#[test]
fn policies_allow_and_deny_real_tcp_and_udp_and_survive_a_restart() {
    let lab = Lab::new();
    let mut node = lab.node("node", &Conf::default());
    let web = pod(&lab, &node, "web", "default", &[("app", "web")]);
    let db = pod(&lab, &node, "db", "default", &[("role", "db")]);
    let stranger = pod(&lab, &node, "str", "other", &[("app", "web")]);
    for p in [6379, 6380] {
        serve(&lab, &db, p);
    }
    serve(&lab, &web, 8080);
    let (ok, text) = ctl(&node, &["namespace", "set", "other", "--label", "team=x"]);
    assert!(ok, "{text}");

    expect(
        &lab,
        &[
            (&web, &db, "tcp", 6379, true, "no policy: all allowed"),
            (&stranger, &db, "udp", 6380, true, "no policy: all allowed"),
        ],
    );

    apply(&lab, &node, "db-allow", DB_ALLOW);
    expect(
        &lab,
        &[
            (
                &web,
                &db,
                "tcp",
                6379,
                true,
                "podSelector app=web, TCP 6379",
            ),
            (
                &web,
                &db,
                "udp",
                6379,
                true,
                "podSelector app=web, UDP 6379",
            ),
            (
                &web,
                &db,
                "tcp",
                6380,
                false,
                "6380 only from namespace team=x",
            ),
            (
                &stranger,
                &db,
                "tcp",
                6379,
                false,
                "podSelector stays in its namespace",
            ),
            (
                &stranger,
                &db,
                "tcp",
                6380,
                true,
                "namespaceSelector team=x",
            ),
            (&stranger, &db, "udp", 6380, false, "6380 is TCP only"),
            (&db, &web, "tcp", 8080, true, "web is not selected"),
        ],
    );
    assert!(
        !lab.ping(&web.ns, &db.ip(), &[]).ok(),
        "ICMP is not allowed"
    );
    // The node's own traffic is never judged (from its node IP, or any other address of it).
    lab.ip(&node.ns, &["addr", "add", "192.168.77.1/32", "dev", "lo"]);
    lab.assert_ping(&node.ns, &db.ip());
    lab.ip(&node.ns, &["addr", "add", "192.168.66.1/32", "dev", "lo"]);
    std::thread::sleep(std::time::Duration::from_millis(1500)); // the daemon rereads addresses
    let other = lab.ping(&node.ns, &db.ip(), &["-I", "192.168.66.1"]);
    assert!(other.stdout.contains(" 0% packet loss"), "{}", other.text());

    apply(
        &lab,
        &node,
        "web-egress",
        &WEB_EGRESS.replace("DB", &db.ip()),
    );
    expect(
        &lab,
        &[
            (
                &web,
                &db,
                "tcp",
                6379,
                true,
                "egress ipBlock db/32 TCP 6379",
            ),
            (&web, &db, "udp", 6379, false, "egress allows TCP only"),
            (
                &db,
                &web,
                "tcp",
                8080,
                true,
                "replies pass web's egress policy",
            ),
            (&stranger, &web, "udp", 8080, true, "web's ingress is open"),
        ],
    );

    let (ok, text) = ctl(
        &node,
        &[
            "trace",
            "--port",
            &stranger.info.host_ifname,
            "tcp",
            &stranger.ip(),
            ">",
            &db.ip(),
            "port",
            "6379",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("denied (selected by default/db-allow; no rule allows it)"),
        "{text}"
    );
    let (ok, text) = ctl(
        &node,
        &[
            "trace",
            "--port",
            &web.info.host_ifname,
            "tcp",
            &web.ip(),
            ">",
            &db.ip(),
            "port",
            "6379",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("allowed by default/web-egress egress rule 0")
            && text.contains("allowed by default/db-allow ingress rule 0"),
        "{text}"
    );

    let (ok, list) = ctl(&node, &["policy", "list"]);
    assert!(ok, "{list}");
    let row = list
        .lines()
        .find(|l| l.contains("db-allow"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("role=db") && row.contains(&db.info.host_ifname),
        "{row}"
    );
    let stats = node.stats();
    let db_allow = stats
        .policies
        .iter()
        .find(|p| p.name == "db-allow")
        .expect("per-policy counters");
    assert!(
        db_allow.allowed >= 3 && db_allow.denied >= 3,
        "{db_allow:?}"
    );
    let (ok, text) = ctl(&node, &["stats"]);
    assert!(ok && text.contains("default/db-allow"), "{text}");

    let (ok, text) = ctl(&node, &["policy", "apply", "-f", "/dev/stdin"]);
    assert!(!ok, "an empty file is refused: {text}");
    let named = DB_ALLOW.replace("port: 6380", "port: redis");
    let file = lab.dir.join("named.yaml");
    std::fs::write(&file, named).unwrap();
    let (ok, text) = ctl(&node, &["policy", "apply", "-f", file.to_str().unwrap()]);
    assert!(
        !ok && text.contains("named port \"redis\" is not supported"),
        "{text}"
    );

    node.stop(std::time::Duration::from_secs(10));
    node.start();
    let (_, list) = ctl(&node, &["policy", "list"]);
    assert!(
        list.contains("db-allow") && list.contains("web-egress"),
        "{list}"
    );
    expect(
        &lab,
        &[
            (&web, &db, "udp", 6379, false, "web-egress persisted"),
            (
                &stranger,
                &db,
                "tcp",
                6380,
                true,
                "namespace labels persisted",
            ),
            (&stranger, &db, "tcp", 6379, false, "db-allow persisted"),
        ],
    );

    let (ok, text) = ctl(&node, &["policy", "delete", "default/db-allow"]);
    assert!(ok, "{text}");
    expect(
        &lab,
        &[(
            &stranger,
            &db,
            "tcp",
            6379,
            true,
            "db-allow deleted: open again",
        )],
    );
}

#[test]
fn the_kubernetes_documentation_examples_behave_as_documented() {
    let lab = Lab::new();
    let node = lab.node("node", &Conf::default());
    let frontend = pod(&lab, &node, "fe", "default", &[("role", "frontend")]);
    let db = pod(&lab, &node, "db", "default", &[("role", "db")]);
    let outsider = pod(&lab, &node, "out", "myproject", &[]);
    let stranger = pod(&lab, &node, "str", "elsewhere", &[("role", "frontend")]);
    for p in [6379, 6380] {
        serve(&lab, &db, p);
    }
    serve(&lab, &frontend, 80);
    let (ok, text) = ctl(
        &node,
        &[
            "namespace",
            "set",
            "myproject",
            "--label",
            "project=myproject",
        ],
    );
    assert!(ok, "{text}");
    let example = |name: &str| {
        let path = examples().join(name);
        let (ok, text) = ctl(&node, &["policy", "apply", "-f", path.to_str().unwrap()]);
        assert!(ok, "{name}: {text}");
    };

    example("test-network-policy.yaml");
    expect(
        &lab,
        &[
            (
                &frontend,
                &db,
                "tcp",
                6379,
                true,
                "podSelector role=frontend",
            ),
            (
                &outsider,
                &db,
                "tcp",
                6379,
                true,
                "namespaceSelector project=myproject",
            ),
            (
                &stranger,
                &db,
                "tcp",
                6379,
                false,
                "role=frontend of another namespace",
            ),
            (&frontend, &db, "tcp", 6380, false, "only TCP 6379"),
            (&frontend, &db, "udp", 6379, false, "only TCP 6379"),
            (
                &db,
                &frontend,
                "tcp",
                80,
                false,
                "db's egress: 10.0.0.0/24 TCP 5978 only",
            ),
        ],
    );

    example("default-deny-ingress.yaml");
    expect(
        &lab,
        &[
            (
                &db,
                &frontend,
                "tcp",
                80,
                false,
                "db's egress still limited",
            ),
            (
                &outsider,
                &frontend,
                "tcp",
                80,
                false,
                "default deny ingress in default",
            ),
            (
                &frontend,
                &db,
                "tcp",
                6379,
                true,
                "test-network-policy still allows it",
            ),
        ],
    );
    serve(&lab, &outsider, 81);
    expect(
        &lab,
        &[(
            &frontend,
            &outsider,
            "tcp",
            81,
            true,
            "default-deny covers namespace default only",
        )],
    );

    example("allow-all-ingress.yaml");
    expect(
        &lab,
        &[
            (
                &outsider,
                &frontend,
                "tcp",
                80,
                true,
                "allow all ingress wins over default deny",
            ),
            (
                &stranger,
                &db,
                "tcp",
                6380,
                true,
                "allow all ingress selects db too",
            ),
        ],
    );
    let policies = match node.call(&Request::PolicyList {}) {
        Response::Ok {
            result: Reply::Policies(p),
        } => p,
        other => panic!("{other:?}"),
    };
    let names: BTreeMap<String, usize> = policies
        .iter()
        .map(|p| (p.name.clone(), p.ports.len()))
        .collect();
    assert_eq!(
        names,
        BTreeMap::from([
            ("allow-all-ingress".into(), 2),
            ("default-deny-ingress".into(), 2),
            ("test-network-policy".into(), 1),
        ])
    );
}
