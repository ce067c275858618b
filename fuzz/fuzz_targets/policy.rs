//! The NetworkPolicy YAML parser, `vswitch::policy::spec::parse_policies`, on arbitrary text;
//! what it accepts is compiled (`PolicySet::compile`) against a small inventory and judged.
//!
//! Invariants: no panic; validation is a function of the document; an accepted document
//! written back as YAML parses to the same document and policy; for every port, direction,
//! peer, protocol and destination port of a grid, the compiled set's judgement equals a direct
//! reading of Kubernetes' semantics over the validated policies (selected by no policy: allowed;
//! selected: allowed exactly when some rule of a selecting policy matches the peer and the
//! port), an allowing rule belongs to a selecting policy of that direction, and the trace
//! helpers (`describe_rule`, `selecting`) name existing policies.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::sync::LazyLock;
use vswitch::policy::selector::Labels;
use vswitch::policy::spec::{parse_documents, parse_policies};
use vswitch::policy::{
    Direction, Endpoint, Inventory, Judgement, Peer, Policy, PolicySet, NAMESPACE_NAME_LABEL,
};
use vswitch::tables::PortId;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

static INVENTORY: LazyLock<Inventory> = LazyLock::new(|| {
    let ep = |ip: &str, ns: &str, l: &[(&str, &str)], port: Option<u16>| Endpoint {
        ip: ip.parse().unwrap(),
        namespace: ns.into(),
        labels: labels(l),
        port: port.map(PortId),
    };
    Inventory {
        namespaces: [
            (
                "prod".to_string(),
                labels(&[("team", "a"), ("env", "prod")]),
            ),
            ("default".to_string(), labels(&[("env", "dev")])),
        ]
        .into(),
        endpoints: vec![
            ep(
                "10.244.1.2",
                "default",
                &[("app", "db"), ("role", "db")],
                Some(0),
            ),
            ep(
                "10.244.1.3",
                "default",
                &[("app", "web"), ("role", "frontend")],
                Some(1),
            ),
            ep(
                "10.244.1.4",
                "prod",
                &[("app", "db"), ("tier", "backend")],
                Some(2),
            ),
            ep("10.244.1.5", "myproject", &[], Some(3)),
            ep("10.244.2.5", "default", &[("app", "frontend")], None),
            ep("10.244.3.7", "prod", &[("role", "client")], None),
            // A remote entry with a local pod's address: the local one wins.
            ep("10.244.1.3", "prod", &[("app", "frontend")], None),
        ],
    }
});

const PEERS: [Ipv4Addr; 9] = [
    Ipv4Addr::new(10, 244, 1, 2),
    Ipv4Addr::new(10, 244, 1, 3),
    Ipv4Addr::new(10, 244, 1, 4),
    Ipv4Addr::new(10, 244, 2, 5),
    Ipv4Addr::new(10, 244, 3, 7),
    Ipv4Addr::new(172, 17, 0, 1),
    Ipv4Addr::new(192, 168, 1, 10),
    Ipv4Addr::new(0, 0, 0, 0),
    Ipv4Addr::new(255, 255, 255, 255),
];
const PROTOS: [u8; 4] = [6, 17, 132, 1];
const DPORTS: [Option<u16>; 5] = [None, Some(0), Some(53), Some(6379), Some(65535)];

fn ns_labels(ns: &str) -> Labels {
    let mut l = INVENTORY.namespaces.get(ns).cloned().unwrap_or_default();
    l.insert(NAMESPACE_NAME_LABEL.into(), ns.into());
    l
}

/// The endpoint an address belongs to: a local pod first, else the first remote entry.
fn endpoint_of(ip: Ipv4Addr) -> Option<&'static Endpoint> {
    let e = &INVENTORY.endpoints;
    e.iter()
        .find(|e| e.ip == ip && e.port.is_some())
        .or_else(|| e.iter().find(|e| e.ip == ip))
}

fn peer_matches(peer: &Peer, ip: Ipv4Addr) -> bool {
    match peer {
        Peer::Block { net, except } => net.contains(&ip) && !except.iter().any(|e| e.contains(&ip)),
        Peer::Nothing => false,
        Peer::Pods {
            own_namespace,
            namespaces,
            pods,
        } => endpoint_of(ip).is_some_and(|e| {
            let ns_ok = match own_namespace {
                Some(ns) => e.namespace == *ns,
                None => namespaces.matches(&ns_labels(&e.namespace)),
            };
            ns_ok && pods.matches(&e.labels)
        }),
    }
}

/// Kubernetes' semantics, read directly: `None` when no policy selects the pod in `direction`,
/// else whether some rule of a selecting policy allows the packet.
fn oracle(
    policies: &[Policy],
    pod: &Endpoint,
    direction: Direction,
    peer: Ipv4Addr,
    proto: u8,
    dport: Option<u16>,
) -> Option<bool> {
    let mut selected = false;
    let mut allowed = false;
    for p in policies {
        if p.namespace != pod.namespace || !p.selector.matches(&pod.labels) {
            continue;
        }
        let rules = match direction {
            Direction::Ingress => &p.ingress,
            Direction::Egress => &p.egress,
        };
        let Some(rules) = rules else { continue };
        selected = true;
        allowed |= rules.iter().any(|r| {
            (r.peers.is_empty() || r.peers.iter().any(|x| peer_matches(x, peer)))
                && (r.ports.is_empty()
                    || r.ports.iter().any(|m| {
                        m.proto == proto
                            && match (m.range, dport) {
                                (None, _) => true,
                                (Some((lo, hi)), Some(d)) => (lo..=hi).contains(&d),
                                (Some(_), None) => false,
                            }
                    }))
        });
    }
    selected.then_some(allowed)
}

fn judge_grid(policies: &[Policy]) {
    let set = PolicySet::compile(policies, &INVENTORY, None);
    assert_eq!(set.is_active(), !policies.is_empty());
    assert_eq!(set.policies.len(), policies.len());
    for r in 0..set.rules.len() as u32 {
        assert!(!set.describe_rule(r).ends_with("(gone)"));
    }
    let locals = INVENTORY.endpoints.iter().filter(|e| e.port.is_some());
    for pod in locals {
        let port = pod.port.unwrap();
        for direction in [Direction::Ingress, Direction::Egress] {
            let selecting = set.selecting(port, direction);
            for peer in PEERS {
                for proto in PROTOS {
                    for dport in DPORTS {
                        let got = set.judge(port, direction, peer, proto, dport);
                        let want = oracle(policies, pod, direction, peer, proto, dport);
                        match (got, want) {
                            (Judgement::NotSelected, None) => assert!(selecting.is_empty()),
                            (Judgement::Denied, Some(false)) => assert!(!selecting.is_empty()),
                            (Judgement::Allowed(r), Some(true)) => {
                                let rule = &set.rules[r as usize];
                                assert_eq!(rule.direction, direction);
                                let e = &set.policies[usize::from(rule.policy)];
                                assert!(selecting.contains(&format!("{}/{}", e.namespace, e.name)));
                            }
                            (got, want) => panic!(
                                "{direction:?} at {} ({:?}) from/to {peer} proto {proto} port \
                                 {dport:?}: compiled set says {got:?}, the policies say {want:?}",
                                pod.ip, pod.labels
                            ),
                        }
                    }
                }
            }
        }
    }
    // A port no endpoint is on is selected by nothing.
    assert_eq!(
        set.judge(PortId(999), Direction::Ingress, PEERS[0], 6, Some(80)),
        Judgement::NotSelected
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = parse_documents(text);
    let Ok(parsed) = parse_policies(text) else {
        return;
    };
    assert_eq!(docs.as_ref().map(Vec::len), Ok(parsed.len()));
    let mut policies = Vec::new();
    for (doc, policy) in parsed {
        assert_eq!(doc.validate().as_ref(), Ok(&policy));
        let yaml = serde_yaml_ng::to_string(&doc).expect("a document serializes");
        let again = parse_policies(&yaml)
            .unwrap_or_else(|e| panic!("written back, it does not parse: {e}\n{yaml}"));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, doc, "document round trip through\n{yaml}");
        assert_eq!(again[0].1, policy, "policy round trip through\n{yaml}");
        policies.push(policy);
    }
    judge_grid(&policies);
});
