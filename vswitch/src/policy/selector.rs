//! Kubernetes label selectors: `matchLabels` and `matchExpressions`, evaluated on label maps.
//!
//! Contract: a [`Selector`] is a conjunction of [`Expr`]s; the empty selector matches every
//! label set. `matchLabels: {k: v}` is `k In (v)`. Evaluation happens when policies are
//! compiled, never per packet.

use std::collections::BTreeMap;
use std::fmt;

/// Labels of a pod or a namespace.
pub type Labels = BTreeMap<String, String>;

/// A set-based operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// The label exists and has one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label exists.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// One requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    /// Label key.
    pub key: String,
    /// Operator.
    pub op: Operator,
    /// Values (In/NotIn).
    pub values: Vec<String>,
}

/// A label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// The requirements.
    pub exprs: Vec<Expr>,
}

impl Selector {
    /// The selector that matches everything (`{}`).
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.exprs.iter().all(|e| {
            let v = labels.get(&e.key);
            match e.op {
                Operator::In => v.is_some_and(|v| e.values.contains(v)),
                Operator::NotIn => v.is_none_or(|v| !e.values.contains(v)),
                Operator::Exists => v.is_some(),
                Operator::DoesNotExist => v.is_none(),
            }
        })
    }
}

impl fmt::Display for Selector {
    /// `kubectl`'s selector syntax: `app=web,tier in (a,b),!debug`; `{}` for everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exprs.is_empty() {
            return f.write_str("{}");
        }
        for (i, e) in self.exprs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match e.op {
                Operator::In if e.values.len() == 1 => write!(f, "{}={}", e.key, e.values[0])?,
                Operator::In => write!(f, "{} in ({})", e.key, e.values.join(","))?,
                Operator::NotIn => write!(f, "{} notin ({})", e.key, e.values.join(","))?,
                Operator::Exists => write!(f, "{}", e.key)?,
                Operator::DoesNotExist => write!(f, "!{}", e.key)?,
            }
        }
        Ok(())
    }
}

/// Parses `k=v` into a label, checking the key and value the way Kubernetes does (roughly:
/// `[prefix/]name`, alphanumerics with `-_.`, at most 63 characters each part).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))?;
    check_label(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Checks one label key and value.
pub fn check_label(k: &str, v: &str) -> Result<(), String> {
    let part_ok = |p: &str, empty_ok: bool| {
        (empty_ok || !p.is_empty())
            && p.len() <= 63
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let name = k.rsplit_once('/').map_or(k, |(prefix, name)| {
        if prefix.is_empty() || prefix.len() > 253 {
            ""
        } else {
            name
        }
    });
    if !part_ok(name, false) {
        return Err(format!(
            "label key {k:?} must be [prefix/]name with letters, digits, '-', '_', '.' (name at most 63)"
        ));
    }
    if !part_ok(v, true) {
        return Err(format!(
            "label value {v:?} (of {k}) may hold at most 63 letters, digits, '-', '_', '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators_follow_kubernetes() {
        let e = |key: &str, op, values: &[&str]| Expr {
            key: key.into(),
            op,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        let s = Selector {
            exprs: vec![
                e("app", Operator::In, &["web", "api"]),
                e("tier", Operator::NotIn, &["db"]),
                e("team", Operator::Exists, &[]),
                e("debug", Operator::DoesNotExist, &[]),
            ],
        };
        assert!(s.matches(&labels(&[("app", "web"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("team", "a"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("team", "a"), ("debug", "1")])));
        assert!(Selector::everything().matches(&Labels::new()));
        assert_eq!(
            s.to_string(),
            "app in (web,api),tier notin (db),team,!debug"
        );
    }

    #[test]
    fn labels_parse_and_bad_ones_explain() {
        assert_eq!(
            parse_label("app.kubernetes.io/name=web").unwrap(),
            ("app.kubernetes.io/name".into(), "web".into())
        );
        assert!(parse_label("app").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_label("a b=c").unwrap_err().contains("label key"));
        assert!(parse_label("app=x y").unwrap_err().contains("label value"));
    }
}
