//! NetworkPolicy on the control side: `policy apply|list|delete`, `endpoint add|del|list`,
//! `namespace set|list`, and compiling all of it into the table snapshot.
//!
//! Contract: every change is validated completely, saved to the state file, then published in a
//! new snapshot (a change refused at any step stores nothing). `policy apply` takes several
//! documents and applies all or none. Policies, endpoints and namespace labels persist across
//! restarts with the rest of the state. Bounded: at most [`MAX_POLICIES`] policies,
//! [`MAX_RULES`] rules in all, [`MAX_ENDPOINTS`] endpoints and [`MAX_NAMESPACES`] labelled
//! namespaces; beyond that requests are refused with `exhausted`.
//!
//! When policies change, new connections see the change at once; established connections are
//! judged again, under the new policies, at their next packet, and cut (their entry removed, the
//! packet dropped as `policy_denied`) if they are no longer allowed.

use super::{error, ok, Inner, Switch};
use crate::state::State;
use ctl::proto::{self, ErrorCode, Reply, Response};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use vswitch::policy::selector::check_label;
use vswitch::policy::spec::{parse_policies, NetworkPolicy};
use vswitch::policy::{Endpoint, Inventory, Policy, PolicySet};
use vswitch::tables::{PortInfo, PortKind};

/// Most policies stored.
pub const MAX_POLICIES: usize = 10_000;
/// Most rules (ingress plus egress) over all policies.
pub const MAX_RULES: usize = 100_000;
/// Most registered endpoints (pods of other nodes).
pub const MAX_ENDPOINTS: usize = 65_536;
/// Most namespaces with labels.
pub const MAX_NAMESPACES: usize = 10_000;

/// Checks a Kubernetes namespace name.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "namespace {ns:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"
        ))
    }
}

/// Checks a label map.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    labels.iter().try_for_each(|(k, v)| check_label(k, v))
}

fn validated(state: &State) -> Vec<Policy> {
    state
        .policies
        .iter()
        .filter_map(|d| match d.validate() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("stored policy {} is invalid, ignored: {e}", d.id());
                None
            }
        })
        .collect()
}

fn rule_count(p: &Policy) -> usize {
    p.ingress.as_ref().map_or(0, Vec::len) + p.egress.as_ref().map_or(0, Vec::len)
}

impl Switch {
    /// Compiles the stored policies against the attached pods (`ports`) and the registered
    /// endpoints and namespaces; counters carry over from the current snapshot.
    pub(super) fn policy_set(&self, state: &State, ports: &[PortInfo]) -> PolicySet {
        let policies = validated(state);
        let local = ports
            .iter()
            .filter(|p| p.kind == PortKind::Pod)
            .filter_map(|p| {
                let pod = state.pods.iter().find(|r| r.slot == p.id.0)?;
                Some(Endpoint {
                    ip: p.ip?,
                    namespace: pod.namespace.clone(),
                    labels: pod.labels.clone(),
                    port: Some(p.id),
                })
            });
        let remote = state.endpoints.iter().map(|e| Endpoint {
            ip: e.ip,
            namespace: e.namespace.clone(),
            labels: e.labels.clone(),
            port: None,
        });
        let inventory = Inventory {
            namespaces: state.namespaces.clone(),
            endpoints: local.chain(remote).collect(),
        };
        let current = self.tables.load();
        PolicySet::compile(&policies, &inventory, Some(&current.policy))
    }

    /// Saves `next` and publishes it; the error is the state file's.
    fn commit(&self, inner: &mut Inner, next: State, what: &str) -> Result<(), String> {
        self.store.save(&next).map_err(|e| e.to_string())?;
        inner.state = next;
        if let Err(e) = self.publish(inner) {
            tracing::error!("publishing tables after {what}: {e}");
        }
        Ok(())
    }

    pub(super) fn policy_apply(&self, yaml: &str) -> Response {
        let parsed = match parse_policies(yaml) {
            Ok(p) => p,
            Err(e) => return error(ErrorCode::BadRequest, e.to_string()),
        };
        let mut inner = self.inner.lock().expect("switch lock");
        let mut next = inner.state.clone();
        let mut applied = Vec::new();
        for (doc, _) in &parsed {
            next.policies.retain(|p| p.id() != doc.id());
            next.policies.push(doc.clone());
            applied.push(doc.id());
        }
        let policies = validated(&next);
        let rules: usize = policies.iter().map(rule_count).sum();
        if next.policies.len() > MAX_POLICIES || rules > MAX_RULES {
            return error(
                ErrorCode::Exhausted,
                format!(
                    "{} policies with {rules} rules would exceed the limits ({MAX_POLICIES} \
                     policies, {MAX_RULES} rules); delete unused ones first",
                    next.policies.len()
                ),
            );
        }
        if let Err(e) = self.commit(&mut inner, next, "applying policies") {
            return error(ErrorCode::Internal, e);
        }
        tracing::info!(policies = ?applied, "policies applied");
        let infos = self
            .policy_infos(&inner)
            .into_iter()
            .filter(|i| applied.contains(&format!("{}/{}", i.namespace, i.name)))
            .collect();
        ok(Reply::Policies(infos))
    }

    pub(super) fn policy_list(&self) -> Response {
        let inner = self.inner.lock().expect("switch lock");
        ok(Reply::Policies(self.policy_infos(&inner)))
    }

    pub(super) fn policy_delete(&self, namespace: &str, name: &str) -> Response {
        let mut inner = self.inner.lock().expect("switch lock");
        let id = format!("{namespace}/{name}");
        if !inner.state.policies.iter().any(|p| p.id() == id) {
            return ok(Reply::Removed(false));
        }
        let mut next = inner.state.clone();
        next.policies.retain(|p| p.id() != id);
        if let Err(e) = self.commit(&mut inner, next, "deleting a policy") {
            return error(ErrorCode::Internal, e);
        }
        tracing::info!(policy = id, "policy deleted");
        ok(Reply::Removed(true))
    }

    fn policy_infos(&self, inner: &Inner) -> Vec<proto::PolicyInfo> {
        let tables = self.tables.load();
        inner
            .state
            .policies
            .iter()
            .filter_map(|d: &NetworkPolicy| {
                let p = d.validate().ok()?;
                let counters = tables
                    .policy
                    .policies
                    .iter()
                    .find(|e| e.namespace == p.namespace && e.name == p.name)
                    .map(|e| (e.counters.allowed.get(), e.counters.denied.get()))
                    .unwrap_or_default();
                let ports = inner
                    .state
                    .pods
                    .iter()
                    .filter(|pod| pod.namespace == p.namespace && p.selector.matches(&pod.labels))
                    .map(|pod| pod.host_ifname.clone())
                    .collect();
                let mut types = Vec::new();
                if p.ingress.is_some() {
                    types.push("Ingress".to_string());
                }
                if p.egress.is_some() {
                    types.push("Egress".to_string());
                }
                Some(proto::PolicyInfo {
                    pod_selector: p.selector.to_string(),
                    types,
                    ingress_rules: p.ingress.as_ref().map_or(0, Vec::len),
                    egress_rules: p.egress.as_ref().map_or(0, Vec::len),
                    ports,
                    allowed: counters.0,
                    denied: counters.1,
                    namespace: p.namespace,
                    name: p.name,
                })
            })
            .collect()
    }

    /// Hit counts of every policy, for `stats`.
    pub(super) fn policy_counters(&self) -> Vec<proto::PolicyCounters> {
        self.tables
            .load()
            .policy
            .policies
            .iter()
            .map(|e| proto::PolicyCounters {
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                allowed: e.counters.allowed.get(),
                denied: e.counters.denied.get(),
            })
            .collect()
    }

    pub(super) fn endpoint_add(&self, spec: proto::EndpointSpec) -> Response {
        let checked = check_namespace(&spec.namespace)
            .and_then(|()| check_labels(&spec.labels))
            .and_then(|()| {
                let n = &self.config.node;
                if !n.cluster_cidr.contains(&spec.ip) || n.pod_cidr.contains(&spec.ip) {
                    return Err(format!(
                        "{} must be a pod address of another node: inside cluster_cidr {} and \
                         outside this node's pod_cidr {} (label local pods with `port add --label`)",
                        spec.ip, n.cluster_cidr, n.pod_cidr
                    ));
                }
                if spec.port.is_some() {
                    return Err("port is set by the switch, not in requests".into());
                }
                Ok(())
            });
        if let Err(why) = checked {
            return error(
                ErrorCode::BadRequest,
                format!("endpoint {}: {why}", spec.ip),
            );
        }
        let mut inner = self.inner.lock().expect("switch lock");
        let mut next = inner.state.clone();
        next.endpoints.retain(|e| e.ip != spec.ip);
        next.endpoints.push(spec.clone());
        if next.endpoints.len() > MAX_ENDPOINTS {
            return error(
                ErrorCode::Exhausted,
                format!("{MAX_ENDPOINTS} endpoints are registered already; delete unused ones"),
            );
        }
        if let Err(e) = self.commit(&mut inner, next, "adding an endpoint") {
            return error(ErrorCode::Internal, e);
        }
        ok(Reply::Endpoints(vec![spec]))
    }

    pub(super) fn endpoint_del(&self, ip: Ipv4Addr) -> Response {
        let mut inner = self.inner.lock().expect("switch lock");
        if !inner.state.endpoints.iter().any(|e| e.ip == ip) {
            return ok(Reply::Removed(false));
        }
        let mut next = inner.state.clone();
        next.endpoints.retain(|e| e.ip != ip);
        if let Err(e) = self.commit(&mut inner, next, "removing an endpoint") {
            return error(ErrorCode::Internal, e);
        }
        ok(Reply::Removed(true))
    }

    pub(super) fn endpoint_list(&self) -> Response {
        let inner = self.inner.lock().expect("switch lock");
        let local = inner.state.pods.iter().map(|p| proto::EndpointSpec {
            ip: p.ip.addr(),
            namespace: p.namespace.clone(),
            labels: p.labels.clone(),
            port: Some(p.host_ifname.clone()),
        });
        ok(Reply::Endpoints(
            local.chain(inner.state.endpoints.iter().cloned()).collect(),
        ))
    }

    pub(super) fn namespace_set(&self, spec: proto::NamespaceSpec) -> Response {
        if let Err(why) = check_namespace(&spec.name).and_then(|()| check_labels(&spec.labels)) {
            return error(ErrorCode::BadRequest, why);
        }
        let mut inner = self.inner.lock().expect("switch lock");
        let mut next = inner.state.clone();
        if spec.labels.is_empty() {
            next.namespaces.remove(&spec.name);
        } else {
            next.namespaces
                .insert(spec.name.clone(), spec.labels.clone());
        }
        if next.namespaces.len() > MAX_NAMESPACES {
            return error(
                ErrorCode::Exhausted,
                format!("{MAX_NAMESPACES} namespaces have labels already"),
            );
        }
        if let Err(e) = self.commit(&mut inner, next, "labelling a namespace") {
            return error(ErrorCode::Internal, e);
        }
        ok(Reply::Namespaces(vec![spec]))
    }

    pub(super) fn namespace_list(&self) -> Response {
        let inner = self.inner.lock().expect("switch lock");
        let mut names: BTreeMap<String, BTreeMap<String, String>> = inner.state.namespaces.clone();
        for ns in inner
            .state
            .pods
            .iter()
            .map(|p| &p.namespace)
            .chain(inner.state.endpoints.iter().map(|e| &e.namespace))
        {
            names.entry(ns.clone()).or_default();
        }
        ok(Reply::Namespaces(
            names
                .into_iter()
                .map(|(name, labels)| proto::NamespaceSpec { name, labels })
                .collect(),
        ))
    }
}
