//! Kubernetes NetworkPolicy for the switch: the model, its compiled form and the classifier.
//!
//! Contract: the control side validates NetworkPolicy documents ([`spec`]) into [`Policy`]s and
//! compiles them with an [`Inventory`] (namespaces with labels, pod endpoints with labels, local
//! ones tied to their port) into a [`PolicySet`], which rides in the table snapshot. Selectors
//! are evaluated at compile time: each rule's peers become address sets and CIDR blocks, so
//! [`PolicySet::judge`] only compares addresses and ports. Semantics are Kubernetes':
//!
//! - a port selected by no policy for a direction allows everything in that direction;
//! - once selected, traffic passes only if some rule of some selecting policy allows it (rules
//!   are additive, order does not matter);
//! - a peer is pods (podSelector in the policy's namespace; namespaceSelector; both together),
//!   or an ipBlock minus its `except` blocks; a rule without peers matches every peer;
//! - a rule without ports matches every protocol and port; a port entry matches its protocol
//!   and number or `port..=endPort` range, or every port of the protocol when it has no number.
//!
//! A pod's address is known from its port (local pods) or from `endpoint add` (pods of other
//! nodes); an address the inventory does not know matches no pod selector, only ipBlocks.
//! Connection state lives in [`conntrack`]; the per-worker [`flow_cache`] keeps the per-packet
//! cost of judging flat in the number of rules. Every [`PolicySet`] has a fresh
//! [`PolicySet::generation`], which tells both that decisions made earlier may be stale.

pub mod conntrack;
pub mod flow_cache;
pub mod selector;
pub mod spec;

use crate::stats::Counter;
use crate::tables::PortId;
use ahash::{AHashMap, AHashSet};
use ipnet::Ipv4Net;
use selector::{Labels, Selector};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A validated policy, as the engine reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pods of `namespace` the policy applies to.
    pub selector: Selector,
    /// Ingress rules, `None` when the policy does not cover ingress.
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules, `None` when the policy does not cover egress.
    pub egress: Option<Vec<Rule>>,
}

/// One rule: traffic from/to any of `peers` on any of `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Empty: every peer.
    pub peers: Vec<Peer>,
    /// Empty: every protocol and port.
    pub ports: Vec<PortMatch>,
}

/// A peer of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Pods matching `pods` in namespaces matching `namespaces`, or, when `own_namespace` is
    /// set, in that namespace only (a podSelector without namespaceSelector).
    Pods {
        /// The policy's namespace, when the peer has no namespaceSelector.
        own_namespace: Option<String>,
        /// Namespaces by label.
        namespaces: Selector,
        /// Pods by label.
        pods: Selector,
    },
    /// An IPv4 block minus sub-blocks.
    Block {
        /// The block.
        net: Ipv4Net,
        /// Excluded sub-blocks.
        except: Vec<Ipv4Net>,
    },
    /// Matches nothing (an IPv6 block).
    Nothing,
}

/// A protocol and optionally a port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMatch {
    /// IP protocol number (6, 17, 132).
    pub proto: u8,
    /// Inclusive range; `None`: every port.
    pub range: Option<(u16, u16)>,
}

impl PortMatch {
    #[inline]
    fn matches(&self, proto: u8, port: Option<u16>) -> bool {
        self.proto == proto
            && match (self.range, port) {
                (None, _) => true,
                (Some((lo, hi)), Some(p)) => (lo..=hi).contains(&p),
                (Some(_), None) => false,
            }
    }
}

/// Traffic direction, from the selected pod's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Into the pod.
    Ingress,
    /// Out of the pod.
    Egress,
}

impl Direction {
    /// `ingress` / `egress`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// A pod's address and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: Labels,
    /// The switch port, for a pod of this node.
    pub port: Option<PortId>,
}

/// What policies are compiled against.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// Namespace labels (every namespace also has `kubernetes.io/metadata.name`).
    pub namespaces: BTreeMap<String, Labels>,
    /// Pods, local and remote. A local pod's entry wins over a remote one with its address.
    pub endpoints: Vec<Endpoint>,
}

/// The label Kubernetes puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Inventory {
    fn namespace_labels(&self, ns: &str) -> Labels {
        let mut l = self.namespaces.get(ns).cloned().unwrap_or_default();
        l.insert(NAMESPACE_NAME_LABEL.to_string(), ns.to_string());
        l
    }
}

/// Packets a policy decided, for `vswitchctl stats`.
#[derive(Debug, Default)]
pub struct PolicyCounters {
    /// Packets judged and allowed by one of its rules.
    pub allowed: Counter,
    /// Packets judged and denied at a port it selects.
    pub denied: Counter,
}

/// One policy's identity in a [`PolicySet`].
#[derive(Debug)]
pub struct PolicyEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its hit counters (carried over when the set is recompiled).
    pub counters: Arc<PolicyCounters>,
}

/// A compiled peer.
#[derive(Debug)]
enum PeerSet {
    Ips(AHashSet<Ipv4Addr>),
    Block { net: Ipv4Net, except: Vec<Ipv4Net> },
}

impl PeerSet {
    #[inline]
    fn contains(&self, ip: Ipv4Addr) -> bool {
        match self {
            PeerSet::Ips(set) => set.contains(&ip),
            PeerSet::Block { net, except } => {
                net.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
            }
        }
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct CompiledRule {
    /// Index into [`PolicySet::policies`].
    pub policy: u16,
    /// The direction it belongs to.
    pub direction: Direction,
    /// Its position among the policy's rules of that direction (0-based).
    pub index: u16,
    /// `None`: every peer.
    peers: Option<Vec<PeerSet>>,
    ports: Vec<PortMatch>,
}

impl CompiledRule {
    #[inline]
    fn matches(&self, peer: Ipv4Addr, proto: u8, port: Option<u16>) -> bool {
        self.peers
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.contains(peer)))
            && (self.ports.is_empty() || self.ports.iter().any(|m| m.matches(proto, port)))
    }
}

/// Which policies select a port in one direction, and their rules.
#[derive(Debug, Default)]
struct Selection {
    policies: Vec<u16>,
    rules: Vec<u32>,
}

#[derive(Debug, Default)]
struct Subject {
    ingress: Option<Selection>,
    egress: Option<Selection>,
}

/// What judging a packet at one port in one direction decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Judgement {
    /// No judging happened (no subject, or state decided).
    #[default]
    NotJudged,
    /// No policy selects the port in this direction: allowed.
    NotSelected,
    /// Allowed by this rule (index into [`PolicySet::rules`]).
    Allowed(u32),
    /// Selected, and no rule allows it.
    Denied,
}

impl Judgement {
    /// Whether the packet may pass.
    #[inline]
    pub fn passes(self) -> bool {
        !matches!(self, Judgement::Denied)
    }
}

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// Every policy, compiled for one table snapshot.
#[derive(Debug, Default)]
pub struct PolicySet {
    generation: u64,
    /// The policies, in the order given.
    pub policies: Vec<PolicyEntry>,
    /// Every rule of every policy.
    pub rules: Vec<CompiledRule>,
    subjects: AHashMap<PortId, Subject>,
}

impl PolicySet {
    /// Compiles `policies` against `inventory`. Hit counters of policies also in `previous`
    /// (same namespace and name) carry over.
    pub fn compile(
        policies: &[Policy],
        inventory: &Inventory,
        previous: Option<&PolicySet>,
    ) -> PolicySet {
        let mut set = PolicySet {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            ..PolicySet::default()
        };
        let mut seen = AHashSet::new();
        let local: Vec<&Endpoint> = inventory
            .endpoints
            .iter()
            .filter(|e| e.port.is_some())
            .collect();
        let endpoints: Vec<&Endpoint> = local
            .iter()
            .copied()
            .chain(inventory.endpoints.iter().filter(|e| e.port.is_none()))
            .filter(|e| seen.insert(e.ip))
            .collect();
        let ns_labels: AHashMap<&str, Labels> = endpoints
            .iter()
            .map(|e| e.namespace.as_str())
            .chain(inventory.namespaces.keys().map(String::as_str))
            .map(|ns| (ns, inventory.namespace_labels(ns)))
            .collect();
        for (pi, policy) in policies.iter().enumerate() {
            let counters = previous
                .and_then(|p| {
                    p.policies
                        .iter()
                        .find(|e| e.namespace == policy.namespace && e.name == policy.name)
                })
                .map_or_else(Arc::default, |e| Arc::clone(&e.counters));
            set.policies.push(PolicyEntry {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                counters,
            });
            let selected: Vec<PortId> = local
                .iter()
                .filter(|e| e.namespace == policy.namespace && policy.selector.matches(&e.labels))
                .filter_map(|e| e.port)
                .collect();
            for (direction, rules) in [
                (Direction::Ingress, &policy.ingress),
                (Direction::Egress, &policy.egress),
            ] {
                let Some(rules) = rules else { continue };
                let first = set.rules.len() as u32;
                for (ri, rule) in rules.iter().enumerate() {
                    set.rules.push(CompiledRule {
                        policy: pi as u16,
                        direction,
                        index: ri as u16,
                        peers: (!rule.peers.is_empty()).then(|| {
                            rule.peers
                                .iter()
                                .map(|p| compile_peer(p, &endpoints, &ns_labels))
                                .collect()
                        }),
                        ports: rule.ports.clone(),
                    });
                }
                let ids = first..set.rules.len() as u32;
                for port in &selected {
                    let subject = set.subjects.entry(*port).or_default();
                    let sel = match direction {
                        Direction::Ingress => &mut subject.ingress,
                        Direction::Egress => &mut subject.egress,
                    }
                    .get_or_insert_with(Selection::default);
                    sel.policies.push(pi as u16);
                    sel.rules.extend(ids.clone());
                }
            }
        }
        set
    }

    /// This compilation's number; unique per process, never 0 for a compiled set.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether any policy exists (if not, the switch tracks no connections and judges nothing).
    #[inline]
    pub fn is_active(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Judges traffic at `port` in `direction` with the other end `peer`, protocol `proto` and
    /// destination `dst_port` (`None` for protocols without ports and non-first fragments).
    /// Cost grows with the rules selecting `port`; [`flow_cache`] sits in front of it.
    pub fn judge(
        &self,
        port: PortId,
        direction: Direction,
        peer: Ipv4Addr,
        proto: u8,
        dst_port: Option<u16>,
    ) -> Judgement {
        let Some(sel) = self.selection(port, direction) else {
            return Judgement::NotSelected;
        };
        sel.rules
            .iter()
            .copied()
            .find(|&r| self.rules[r as usize].matches(peer, proto, dst_port))
            .map_or(Judgement::Denied, Judgement::Allowed)
    }

    fn selection(&self, port: PortId, direction: Direction) -> Option<&Selection> {
        let s = self.subjects.get(&port)?;
        match direction {
            Direction::Ingress => s.ingress.as_ref(),
            Direction::Egress => s.egress.as_ref(),
        }
    }

    /// Counts `judgement` against the policies concerned: the allowing rule's policy, or every
    /// policy selecting `port` in `direction` for a denial.
    #[inline]
    pub fn count(&self, port: PortId, direction: Direction, judgement: Judgement) {
        match judgement {
            Judgement::Allowed(r) => {
                let p = self.rules[r as usize].policy as usize;
                self.policies[p].counters.allowed.add(1);
            }
            Judgement::Denied => {
                if let Some(sel) = self.selection(port, direction) {
                    for &p in &sel.policies {
                        self.policies[p as usize].counters.denied.add(1);
                    }
                }
            }
            Judgement::NotJudged | Judgement::NotSelected => {}
        }
    }

    /// `namespace/name <direction> rule N` of rule `r`, for traces.
    pub fn describe_rule(&self, r: u32) -> String {
        match self.rules.get(r as usize) {
            Some(rule) => {
                let p = &self.policies[rule.policy as usize];
                format!(
                    "{}/{} {} rule {}",
                    p.namespace,
                    p.name,
                    rule.direction.name(),
                    rule.index
                )
            }
            None => format!("rule #{r} (gone)"),
        }
    }

    /// `namespace/name` of the policies selecting `port` in `direction`.
    pub fn selecting(&self, port: PortId, direction: Direction) -> Vec<String> {
        self.selection(port, direction)
            .map(|s| {
                s.policies
                    .iter()
                    .map(|&p| {
                        let e = &self.policies[p as usize];
                        format!("{}/{}", e.namespace, e.name)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn compile_peer(
    peer: &Peer,
    endpoints: &[&Endpoint],
    ns_labels: &AHashMap<&str, Labels>,
) -> PeerSet {
    match peer {
        Peer::Block { net, except } => PeerSet::Block {
            net: *net,
            except: except.clone(),
        },
        Peer::Nothing => PeerSet::Ips(AHashSet::new()),
        Peer::Pods {
            own_namespace,
            namespaces,
            pods,
        } => PeerSet::Ips(
            endpoints
                .iter()
                .filter(|e| match own_namespace {
                    Some(ns) => e.namespace == *ns,
                    None => ns_labels
                        .get(e.namespace.as_str())
                        .is_some_and(|l| namespaces.matches(l)),
                })
                .filter(|e| pods.matches(&e.labels))
                .map(|e| e.ip)
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::spec::parse_policies;
    use super::*;

    fn ep(ip: &str, ns: &str, labels: &[(&str, &str)], port: Option<u16>) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            namespace: ns.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            port: port.map(PortId),
        }
    }

    fn set(yaml: &str, inventory: &Inventory) -> PolicySet {
        let policies: Vec<Policy> = parse_policies(yaml)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        PolicySet::compile(&policies, inventory, None)
    }

    /// The `test-network-policy` example of the Kubernetes documentation, verbatim.
    const K8S_EXAMPLE: &str =
        include_str!("../../ctl/examples/networkpolicy/test-network-policy.yaml");

    fn example_inventory() -> Inventory {
        let mut inv = Inventory::default();
        inv.namespaces.insert(
            "myproject".into(),
            [("project".into(), "myproject".into())].into(),
        );
        inv.endpoints = vec![
            ep("10.244.1.2", "default", &[("role", "db")], Some(1)),
            ep("10.244.1.3", "default", &[("role", "frontend")], Some(2)),
            ep("10.244.2.5", "myproject", &[("app", "x")], None),
            ep("10.244.2.6", "other", &[("role", "frontend")], None),
        ];
        inv
    }

    #[test]
    fn the_kubernetes_documentation_example_behaves_as_documented() {
        let s = set(K8S_EXAMPLE, &example_inventory());
        let db = PortId(1);
        let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let ingress = |peer: &str, proto, port| {
            s.judge(db, Direction::Ingress, ip(peer), proto, Some(port))
                .passes()
        };
        assert!(ingress("172.17.0.9", 6, 6379), "ipBlock");
        assert!(!ingress("172.17.1.9", 6, 6379), "ipBlock except");
        assert!(ingress("10.244.2.5", 6, 6379), "namespaceSelector");
        assert!(ingress("10.244.1.3", 6, 6379), "podSelector, own namespace");
        assert!(
            !ingress("10.244.2.6", 6, 6379),
            "podSelector never crosses namespaces"
        );
        assert!(!ingress("10.244.1.3", 6, 6380), "other port");
        assert!(!ingress("10.244.1.3", 17, 6379), "other protocol");
        let egress = |peer: &str, port| {
            s.judge(db, Direction::Egress, ip(peer), 6, Some(port))
                .passes()
        };
        assert!(egress("10.0.0.7", 5978));
        assert!(!egress("10.0.1.7", 5978));
        assert!(!egress("10.0.0.7", 5979));
        assert_eq!(
            s.judge(PortId(2), Direction::Ingress, ip("1.2.3.4"), 6, Some(1)),
            Judgement::NotSelected,
            "frontend is not selected"
        );
        let Judgement::Allowed(r) =
            s.judge(db, Direction::Ingress, ip("10.244.2.5"), 6, Some(6379))
        else {
            panic!("allowed")
        };
        assert_eq!(
            s.describe_rule(r),
            "default/test-network-policy ingress rule 0"
        );
    }

    #[test]
    fn default_deny_and_allow_all_from_the_documentation() {
        let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny-ingress\nspec:\n  podSelector: {}\n  policyTypes:\n  - Ingress\n";
        let allow = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-all-ingress\nspec:\n  podSelector: {}\n  ingress:\n  - {}\n  policyTypes:\n  - Ingress\n";
        let inv = example_inventory();
        let peer: Ipv4Addr = "10.244.1.3".parse().unwrap();
        let s = set(deny, &inv);
        assert_eq!(
            s.judge(PortId(1), Direction::Ingress, peer, 6, Some(80)),
            Judgement::Denied
        );
        assert_eq!(
            s.judge(PortId(1), Direction::Egress, peer, 6, Some(80)),
            Judgement::NotSelected,
            "egress untouched"
        );
        let both = set(&format!("{deny}---\n{allow}"), &inv);
        assert!(both
            .judge(PortId(1), Direction::Ingress, peer, 1, None)
            .passes());
        both.count(PortId(1), Direction::Ingress, Judgement::Denied);
        assert_eq!(both.policies[0].counters.denied.get(), 1);
        assert_eq!(both.policies[1].counters.denied.get(), 1);
        let again = PolicySet::compile(
            &parse_policies(deny)
                .unwrap()
                .into_iter()
                .map(|(_, p)| p)
                .collect::<Vec<_>>(),
            &inv,
            Some(&both),
        );
        assert_eq!(
            again.policies[0].counters.denied.get(),
            1,
            "counters carry over"
        );
        assert!(again.generation() > both.generation());
    }

    #[test]
    fn port_ranges_and_protocol_wide_ports() {
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: r\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 32000\n      endPort: 32768\n    - protocol: UDP\n";
        let s = set(yaml, &example_inventory());
        let peer: Ipv4Addr = "10.244.9.9".parse().unwrap();
        let j = |proto, port| {
            s.judge(PortId(2), Direction::Ingress, peer, proto, port)
                .passes()
        };
        assert!(j(6, Some(32000)) && j(6, Some(32768)));
        assert!(!j(6, Some(31999)) && !j(6, Some(32769)));
        assert!(j(17, Some(1)) && j(17, None));
        assert!(!j(1, None), "ICMP matches no ported rule");
    }
}
