//! Kubernetes `networking.k8s.io/v1` NetworkPolicy documents: parsing and validation.
//!
//! Contract: [`parse_documents`] reads one or more YAML (or JSON) documents, and
//! [`NetworkPolicy::validate`] turns each into the engine's [`Policy`] or explains, with the
//! field path, what is wrong: a named port, an `endPort` below `port`, an unknown protocol, a
//! malformed CIDR or an `except` outside its block, a peer with no selector, a label selector
//! with an unknown operator. Unknown fields inside `spec` are refused (so a typo cannot silently
//! widen a policy); `metadata` and `status` may carry anything.
//!
//! Defaults follow the API: no `namespace` means `default`; no `policyTypes` means `Ingress`
//! plus `Egress` when an `egress` section is present; a port without `protocol` is TCP; a rule
//! without `from`/`to` matches every peer, and without `ports` every port. IPv6 `ipBlock`s are
//! accepted and match nothing (the switch carries IPv4 only).

use super::selector::{Expr, Operator, Selector};
use super::{Peer, Policy, PortMatch, Rule};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use thiserror::Error;

/// IP protocol numbers a policy port may name.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// SCTP.
pub const SCTP: u8 = 132;

/// A NetworkPolicy document, as `kubectl` would accept it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// Must be `networking.k8s.io/v1`.
    pub api_version: String,
    /// Must be `NetworkPolicy`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: Metadata,
    /// The policy.
    pub spec: PolicySpec,
}

/// The part of `metadata` the switch reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Policy name.
    pub name: String,
    /// Namespace (`default` when absent).
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// `spec` of a NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// The pods (of the policy's namespace) the policy applies to; `{}` selects all.
    pub pod_selector: LabelSelector,
    /// `Ingress`, `Egress` or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<String>>,
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
}

/// One ingress rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// Allowed sources; absent or empty: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<PeerSpec>>,
    /// Allowed destination ports; absent or empty: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortSpec>>,
}

/// One egress rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    /// Allowed destinations; absent or empty: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<PeerSpec>>,
    /// Allowed destination ports; absent or empty: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortSpec>>,
}

/// A peer: pods by selector (and namespace selector), or an IP block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerSpec {
    /// Pods by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlockSpec>,
}

/// `ipBlock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlockSpec {
    /// The block.
    pub cidr: String,
    /// Sub-blocks excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}

/// A port (or range) of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Number (a name is refused); absent: every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// Last port of a range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

/// Kubernetes' IntOrString.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A name.
    Str(String),
}

/// A label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must be equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<RequirementSpec>>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementSpec {
    /// Label key.
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist.
    pub operator: String,
    /// Values for In/NotIn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A document that is not a valid NetworkPolicy, with where and why.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    /// Not YAML, or not shaped like a NetworkPolicy.
    #[error("document {index}: {message}")]
    Syntax {
        /// 1-based document number in the file.
        index: usize,
        /// The parser's message (with line and column).
        message: String,
    },
    /// Shaped right, but a value is refused.
    #[error("{policy}: {path}: {message}")]
    Invalid {
        /// `namespace/name`.
        policy: String,
        /// Field path, like `spec.ingress[0].ports[1].port`.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Every document in `text` (YAML, `---`-separated; JSON is YAML too). Empty documents are
/// skipped; a file with no policy at all is an error.
pub fn parse_documents(text: &str) -> Result<Vec<NetworkPolicy>, SpecError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| SpecError::Syntax {
            index: i + 1,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let policy: NetworkPolicy =
            serde_yaml_ng::from_value(value).map_err(|e| SpecError::Syntax {
                index: i + 1,
                message: e.to_string(),
            })?;
        out.push(policy);
    }
    if out.is_empty() {
        return Err(SpecError::Syntax {
            index: 1,
            message: "no NetworkPolicy documents found".into(),
        });
    }
    Ok(out)
}

/// Parses and validates every document of `text`.
pub fn parse_policies(text: &str) -> Result<Vec<(NetworkPolicy, Policy)>, SpecError> {
    parse_documents(text)?
        .into_iter()
        .map(|d| {
            let p = d.validate()?;
            Ok((d, p))
        })
        .collect()
}

struct Ctx<'a> {
    policy: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            policy: self.policy.to_string(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl NetworkPolicy {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    /// Checks every field and builds the engine's form of the policy.
    pub fn validate(&self) -> Result<Policy, SpecError> {
        let id = self.id();
        let cx = Ctx { policy: &id };
        if self.api_version != "networking.k8s.io/v1" {
            return Err(cx.err(
                "apiVersion",
                format!(
                    "{:?} is not supported; use networking.k8s.io/v1",
                    self.api_version
                ),
            ));
        }
        if self.kind != "NetworkPolicy" {
            return Err(cx.err("kind", format!("{:?} is not NetworkPolicy", self.kind)));
        }
        check_name(&cx, "metadata.name", &self.metadata.name)?;
        check_name(&cx, "metadata.namespace", &self.metadata.namespace)?;
        let spec = &self.spec;
        let (mut ingress_on, mut egress_on) = (true, spec.egress.is_some());
        if let Some(types) = &spec.policy_types {
            if types.is_empty() {
                return Err(cx.err("spec.policyTypes", "must list Ingress, Egress or both"));
            }
            (ingress_on, egress_on) = (false, false);
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => ingress_on = true,
                    "Egress" => egress_on = true,
                    other => {
                        return Err(cx.err(
                            format!("spec.policyTypes[{i}]"),
                            format!("{other:?} is neither Ingress nor Egress"),
                        ))
                    }
                }
            }
        }
        let selector = selector(&cx, "spec.podSelector", &spec.pod_selector)?;
        let ns = &self.metadata.namespace;
        let ingress = if ingress_on {
            let rules = spec.ingress.as_deref().unwrap_or_default();
            let mut out = Vec::with_capacity(rules.len());
            for (i, r) in rules.iter().enumerate() {
                let path = format!("spec.ingress[{i}]");
                out.push(rule(
                    &cx,
                    &path,
                    "from",
                    ns,
                    r.from.as_deref(),
                    r.ports.as_deref(),
                )?);
            }
            Some(out)
        } else {
            None
        };
        let egress = if egress_on {
            let rules = spec.egress.as_deref().unwrap_or_default();
            let mut out = Vec::with_capacity(rules.len());
            for (i, r) in rules.iter().enumerate() {
                let path = format!("spec.egress[{i}]");
                out.push(rule(
                    &cx,
                    &path,
                    "to",
                    ns,
                    r.to.as_deref(),
                    r.ports.as_deref(),
                )?);
            }
            Some(out)
        } else {
            None
        };
        Ok(Policy {
            namespace: ns.clone(),
            name: self.metadata.name.clone(),
            selector,
            ingress,
            egress,
        })
    }
}

fn check_name(cx: &Ctx<'_>, path: &str, name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(cx.err(
            path,
            format!("{name:?} is not a DNS name (lowercase letters, digits, '-', '.')"),
        ))
    }
}

fn rule(
    cx: &Ctx<'_>,
    path: &str,
    peers_field: &str,
    namespace: &str,
    peers: Option<&[PeerSpec]>,
    ports: Option<&[PortSpec]>,
) -> Result<Rule, SpecError> {
    let peers = peers
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| peer(cx, &format!("{path}.{peers_field}[{i}]"), namespace, p))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = ports
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| port(cx, &format!("{path}.ports[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule { peers, ports })
}

fn peer(cx: &Ctx<'_>, path: &str, namespace: &str, p: &PeerSpec) -> Result<Peer, SpecError> {
    match (&p.ip_block, &p.pod_selector, &p.namespace_selector) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(cx.err(
            path,
            "ipBlock cannot be combined with podSelector or namespaceSelector; use two peers",
        )),
        (Some(b), None, None) => ip_block(cx, &format!("{path}.ipBlock"), b),
        (None, None, None) => Err(cx.err(
            path,
            "a peer needs podSelector, namespaceSelector or ipBlock (omit from/to to allow all)",
        )),
        (None, pods, namespaces) => {
            let pods = match pods {
                Some(s) => selector(cx, &format!("{path}.podSelector"), s)?,
                None => Selector::everything(),
            };
            let namespaces = match namespaces {
                Some(s) => Some(selector(cx, &format!("{path}.namespaceSelector"), s)?),
                None => None,
            };
            Ok(Peer::Pods {
                own_namespace: namespaces.is_none().then(|| namespace.to_string()),
                namespaces: namespaces.unwrap_or_else(Selector::everything),
                pods,
            })
        }
    }
}

fn ip_block(cx: &Ctx<'_>, path: &str, b: &IpBlockSpec) -> Result<Peer, SpecError> {
    let parse = |path: String, s: &str| -> Result<Option<Ipv4Net>, SpecError> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| cx.err(&path, format!("{s:?} is not a CIDR like 10.0.0.0/8")))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| cx.err(&path, format!("{s:?} is not a CIDR like 10.0.0.0/8")))?;
        let len: u8 = len
            .parse()
            .map_err(|_| cx.err(&path, format!("{s:?} has a bad prefix length")))?;
        match addr {
            IpAddr::V4(a) => Ipv4Net::new(a, len)
                .map(|n| Some(n.trunc()))
                .map_err(|_| cx.err(&path, format!("{s:?}: prefix length over 32"))),
            IpAddr::V6(_) if len <= 128 => Ok(None),
            IpAddr::V6(_) => Err(cx.err(&path, format!("{s:?}: prefix length over 128"))),
        }
    };
    let net = parse(format!("{path}.cidr"), &b.cidr)?;
    let mut except = Vec::new();
    for (i, e) in b.except.as_deref().unwrap_or_default().iter().enumerate() {
        let epath = format!("{path}.except[{i}]");
        if let (Some(net), Some(x)) = (net, parse(epath.clone(), e)?) {
            if !net.contains(&x) || x == net {
                return Err(cx.err(
                    epath,
                    format!("{e:?} must be a strict subnet of the block {}", b.cidr),
                ));
            }
            except.push(x);
        }
    }
    Ok(match net {
        Some(net) => Peer::Block { net, except },
        None => Peer::Nothing,
    })
}

fn port(cx: &Ctx<'_>, path: &str, p: &PortSpec) -> Result<PortMatch, SpecError> {
    let proto = match p.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => TCP,
        "UDP" => UDP,
        "SCTP" => SCTP,
        other => {
            return Err(cx.err(
                format!("{path}.protocol"),
                format!("{other:?} is not TCP, UDP or SCTP"),
            ))
        }
    };
    let number = |v: i64, field: &str| -> Result<u16, SpecError> {
        u16::try_from(v).ok().filter(|n| *n > 0).ok_or_else(|| {
            cx.err(
                format!("{path}.{field}"),
                format!("{v} is not a port number (1-65535)"),
            )
        })
    };
    let start = match &p.port {
        None => None,
        Some(IntOrString::Int(v)) => Some(number(*v, "port")?),
        Some(IntOrString::Str(name)) => match name.parse::<i64>() {
            Ok(v) => Some(number(v, "port")?),
            Err(_) => {
                return Err(cx.err(
                    format!("{path}.port"),
                    format!(
                        "named port {name:?} is not supported: vswitch does not know container \
                         port names; use the port number"
                    ),
                ))
            }
        },
    };
    let range = match (start, p.end_port) {
        (None, None) => None,
        (Some(s), None) => Some((s, s)),
        (None, Some(_)) => {
            return Err(cx.err(
                format!("{path}.endPort"),
                "endPort needs a numeric port to start the range",
            ))
        }
        (Some(s), Some(e)) => {
            let e = number(e, "endPort")?;
            if e < s {
                return Err(cx.err(
                    format!("{path}.endPort"),
                    format!("endPort {e} is below port {s}"),
                ));
            }
            Some((s, e))
        }
    };
    Ok(PortMatch { proto, range })
}

fn selector(cx: &Ctx<'_>, path: &str, s: &LabelSelector) -> Result<Selector, SpecError> {
    let mut out = Selector::everything();
    for (k, v) in s.match_labels.iter().flatten() {
        out.exprs.push(Expr {
            key: k.clone(),
            op: Operator::In,
            values: vec![v.clone()],
        });
    }
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        let rpath = format!("{path}.matchExpressions[{i}]");
        let values = r.values.clone().unwrap_or_default();
        let op = match r.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(cx.err(
                    format!("{rpath}.operator"),
                    format!("{other:?} is not In, NotIn, Exists or DoesNotExist"),
                ))
            }
        };
        let wants_values = matches!(op, Operator::In | Operator::NotIn);
        if wants_values && values.is_empty() {
            return Err(cx.err(
                format!("{rpath}.values"),
                format!("{} needs at least one value", r.operator),
            ));
        }
        if !wants_values && !values.is_empty() {
            return Err(cx.err(
                format!("{rpath}.values"),
                format!("{} takes no values", r.operator),
            ));
        }
        out.exprs.push(Expr {
            key: r.key.clone(),
            op,
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> Result<Policy, SpecError> {
        parse_documents(yaml)?.remove(0).validate()
    }

    const HEAD: &str =
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n";

    #[test]
    fn defaults_follow_the_api() {
        let p = one(&format!("{HEAD}spec:\n  podSelector: {{}}\n")).unwrap();
        assert_eq!(p.namespace, "default");
        assert_eq!(p.ingress, Some(vec![]), "ingress on, no rules: deny all");
        assert_eq!(p.egress, None, "egress off without an egress section");
        let p = one(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  egress:\n  - ports:\n    - port: 53\n"
        ))
        .unwrap();
        assert_eq!(
            p.egress.unwrap()[0].ports,
            vec![PortMatch {
                proto: TCP,
                range: Some((53, 53))
            }]
        );
    }

    #[test]
    fn named_ports_and_bad_ranges_are_refused_with_the_path() {
        let named = one(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - port: http\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(named.contains("default/p: spec.ingress[0].ports[0].port: named port \"http\""));
        let range = one(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - port: 90\n      endPort: 80\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(range.contains("endPort 80 is below port 90"), "{range}");
    }

    #[test]
    fn typos_in_spec_and_bad_except_are_refused() {
        let typo = one(&format!("{HEAD}spec:\n  podselector: {{}}\n")).unwrap_err();
        assert!(matches!(typo, SpecError::Syntax { .. }), "{typo}");
        let except = one(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/16\n        except: [10.1.0.0/24]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(except.contains("strict subnet"), "{except}");
    }

    #[test]
    fn several_documents_in_one_file() {
        let text = format!(
            "{HEAD}spec:\n  podSelector: {{}}\n---\n---\n{}spec:\n  podSelector: {{}}\n",
            HEAD.replace("name: p", "name: q")
        );
        let docs = parse_documents(&text).unwrap();
        assert_eq!(
            docs.iter().map(|d| d.id()).collect::<Vec<_>>(),
            ["default/p", "default/q"]
        );
    }
}
