//! The `vswitch-cni` plugin's logic: CNI environment and network configuration parsing, the
//! verbs mapped onto control requests, and the spec's result and error JSON.
//!
//! Contract: [`run`] is one plugin invocation (CNI spec 1.0.0 and 1.1.0). It reads the
//! `CNI_*` variables through a lookup function and the network configuration from stdin, asks
//! the daemon through a caller-supplied function (the binary passes [`crate::client::call`]),
//! and returns what to print and the exit status:
//!
//! | `CNI_COMMAND` | request | success |
//! |---|---|---|
//! | `ADD` | `port_add` (netns = `CNI_NETNS`, id = `CNI_CONTAINERID`, ifname = `CNI_IFNAME`) | the result in the configuration's `cniVersion` |
//! | `DEL` | `port_del` (unknown attachments succeed) | nothing |
//! | `CHECK` | `port_check`, then the attachment is compared with `prevResult` | nothing |
//! | `VERSION` | none | `{"cniVersion", "supportedVersions": ["1.0.0", "1.1.0"]}` |
//! | `STATUS` (1.1.0) | `node` | nothing |
//! | `GC` (1.1.0) | `gc` with `cni.dev/valid-attachments` | nothing (stderr lists what was removed) |
//!
//! Failures print the spec's error object on stdout and exit 1. Codes: 1 unsupported
//! `cniVersion` (or STATUS/GC asked with a version before 1.1.0), 3 the daemon does not know the
//! attachment (CHECK) or the namespace (ADD), 4 a missing or invalid `CNI_*` variable (the
//! message names them), 5 stdin unreadable, 6 stdin is not a JSON object, 7 invalid network
//! configuration, 11 the daemon cannot be reached (try again later), 50 STATUS: the daemon does
//! not answer, 999 anything else (the daemon's message is the `msg`, its error code in
//! `details`). The error's `cniVersion` is the configuration's when it has one, else 1.1.0.
//!
//! Notes: the plugin is a main plugin: on ADD a `prevResult` is ignored (the result describes
//! only our interfaces). DEL with the daemon unreachable fails with 11 rather than claiming
//! success: only the daemon knows whether something is left to clean up, and the runtime retries
//! DEL. GC without a valid-attachments list is refused (it would detach every pod). ADD passes
//! the pod's namespace (`K8S_POD_NAMESPACE` in `CNI_ARGS`) and labels (`args.cni.labels` in the
//! configuration, plus `VSWITCH_LABELS=k=v,k2=v2` in `CNI_ARGS`) for NetworkPolicy. `CNI_PATH`
//! is not needed (nothing is delegated).

use crate::client::ClientError;
use crate::proto::{self, Attachment, ErrorCode, PortAdd, PortInfo, Reply, Request, Response};
use crate::render;
use ipnet::Ipv4Net;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The spec versions this plugin implements, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];
/// The newest of them: used when the input names no version.
pub const LATEST_VERSION: &str = "1.1.0";
/// The first spec version with STATUS and GC.
const STATUS_GC_VERSION: &str = "1.1.0";
/// The network configuration keys a runtime puts the valid attachments of a GC under (libcni
/// sends both: the spec's draft used the second).
const VALID_ATTACHMENTS_KEYS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];

/// The spec's well-known error codes (and 999 for everything else).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure (stdin).
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available.
    pub const NOT_AVAILABLE: u32 = 50;
    /// Any other failure.
    pub const INTERNAL: u32 = 999;
}

/// A failed invocation: the spec's error object without its `cniVersion`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniError {
    /// Error code (see [`code`]).
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation, if any.
    pub details: Option<String>,
}

impl CniError {
    /// An error without details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    /// The same error with `details`.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The spec's error object, `{"cniVersion", "code", "msg", "details"}` (`details` omitted
    /// when empty).
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if let Some(d) = &self.details {
            v["details"] = json!(d);
        }
        v
    }
}

fn invalid_config(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_NETWORK_CONFIG, msg)
}

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container.
    Del,
    /// Verify an attachment.
    Check,
    /// Report the supported versions.
    Version,
    /// Report readiness (1.1.0).
    Status,
    /// Remove stale attachments (1.1.0).
    Gc,
}

impl Command {
    /// Parses `CNI_COMMAND` (case-sensitive, as the spec spells the verbs).
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    /// Whether the verb works on one attachment (and so needs its environment variables).
    fn per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// Every pair, the two above included.
    pub all: BTreeMap<String, String>,
}

impl CniArgs {
    /// Parses `CNI_ARGS`; empty segments (a trailing `;`) are skipped, a segment without `=` or
    /// with an empty key is an error.
    pub fn parse(s: &str) -> Result<CniArgs, String> {
        let mut args = CniArgs::default();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("CNI_ARGS: invalid pair {pair:?} (expected KEY=VALUE)"))?;
            args.all.insert(k.to_string(), v.to_string());
        }
        args.pod_namespace = args
            .all
            .get("K8S_POD_NAMESPACE")
            .filter(|n| !n.is_empty())
            .cloned();
        args.pod_name = args.all.get("K8S_POD_NAME").cloned();
        Ok(args)
    }

    /// The pod's labels: `conf` (from `args.cni.labels`), then `VSWITCH_LABELS=k=v,k2=v2` on
    /// top (a runtime that cannot pass configuration args can pass these).
    pub fn labels(
        &self,
        conf: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut labels = conf.clone();
        if let Some(list) = self.all.get("VSWITCH_LABELS") {
            for pair in list.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    format!("CNI_ARGS: VSWITCH_LABELS entry {pair:?} is not KEY=VALUE")
                })?;
                labels.insert(k.to_string(), v.to_string());
            }
        }
        Ok(labels)
    }
}

fn invalid_args(msg: String) -> CniError {
    CniError::new(code::INVALID_ENVIRONMENT, msg)
}

/// The attachment the runtime names in the environment (ADD, DEL, CHECK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (required for ADD and CHECK, optional for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`, split at `:`.
    pub path: Vec<PathBuf>,
}

/// A container id as the spec allows it: an alphanumeric character, then alphanumerics, `_`,
/// `.` or `-`.
pub fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// An interface name as the spec allows it: 1-15 bytes, not `.` or `..`, no `/`, `:` or
/// whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl Env {
    /// Reads and checks the per-attachment variables `command` needs; one error names every
    /// missing or invalid variable (code 4). Empty variables count as missing.
    pub fn parse(command: Command, get: &dyn Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let mut missing = Vec::new();
        let mut invalid = Vec::new();
        let container_id = var("CNI_CONTAINERID");
        match &container_id {
            None => missing.push("CNI_CONTAINERID"),
            Some(id) if !valid_container_id(id) => invalid.push(format!(
                "CNI_CONTAINERID={id:?} (must start with a letter or digit, then letters, digits, '_', '.' or '-')"
            )),
            Some(_) => {}
        }
        let ifname = var("CNI_IFNAME");
        match &ifname {
            None => missing.push("CNI_IFNAME"),
            Some(n) if !valid_ifname(n) => invalid.push(format!(
                "CNI_IFNAME={n:?} (1-15 characters, not '.' or '..', without '/', ':' or spaces)"
            )),
            Some(_) => {}
        }
        let netns = var("CNI_NETNS");
        if command != Command::Del {
            match &netns {
                None => missing.push("CNI_NETNS"),
                Some(p) if !p.starts_with('/') => {
                    invalid.push(format!("CNI_NETNS={p:?} (must be an absolute path)"))
                }
                Some(_) => {}
            }
        }
        let args = match var("CNI_ARGS").map(|a| CniArgs::parse(&a)).transpose() {
            Ok(a) => a.unwrap_or_default(),
            Err(why) => {
                invalid.push(why);
                CniArgs::default()
            }
        };
        if !missing.is_empty() || !invalid.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing {}", missing.join(", ")));
            }
            if !invalid.is_empty() {
                parts.push(format!("invalid {}", invalid.join(", ")));
            }
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("invalid environment variables: {}", parts.join("; ")),
            ));
        }
        let path = var("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            container_id: container_id.unwrap_or_default(),
            netns,
            ifname: ifname.unwrap_or_default(),
            args,
            path,
        })
    }
}

/// The network configuration on stdin, as far as this plugin reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    /// `cniVersion`: one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `name`: the network name.
    pub name: String,
    /// `type`: the plugin's executable name.
    pub plugin_type: String,
    /// `socket`: the daemon's control socket (default [`proto::DEFAULT_SOCKET`]).
    pub socket: PathBuf,
    /// `prevResult`, when the runtime sent one.
    pub prev_result: Option<Map<String, Value>>,
    /// `dns`: copied into the ADD result (`{}` when absent).
    pub dns: Value,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// `args.cni.labels` (the CNI conventions' `[{"key", "value"}]`): the pod's labels.
    pub labels: BTreeMap<String, String>,
}

/// A network name as the spec allows it: an alphanumeric character, then alphanumerics, `_`,
/// `.` or `-`.
fn valid_network_name(name: &str) -> bool {
    valid_container_id(name)
}

/// `cniVersion` of a configuration that is at least a JSON object with that key as a string,
/// whatever else is wrong with it (errors echo it).
pub fn loose_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid_config(format!(
            "{key} must be a string, not {other}"
        ))),
    }
}

fn required_string(obj: &Map<String, Value>, key: &str) -> Result<String, CniError> {
    optional_string(obj, key)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_config(format!("missing {key} in the network configuration")))
}

fn attachments(v: &Value, key: &str) -> Result<Vec<Attachment>, CniError> {
    let bad = || {
        invalid_config(format!(
            "{key} must be a list of {{\"containerID\": string, \"ifname\": string}}"
        ))
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|a| {
            let field = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
            match (field("containerID"), field("ifname")) {
                (Some(id), Some(ifname)) => Ok(Attachment { id, ifname }),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// `args.cni.labels`, the CNI conventions' way to pass labels: `[{"key": k, "value": v}]`.
fn conf_labels(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, CniError> {
    let Some(list) = obj
        .get("args")
        .and_then(|a| a.get("cni"))
        .and_then(|c| c.get("labels"))
        .filter(|l| !l.is_null())
    else {
        return Ok(BTreeMap::new());
    };
    let bad =
        || invalid_config("args.cni.labels must be a list of {\"key\": string, \"value\": string}");
    list.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|l| {
            let field = |k: &str| l.get(k).and_then(Value::as_str).map(str::to_string);
            field("key").zip(field("value")).ok_or_else(bad)
        })
        .collect()
}

impl NetConf {
    /// Decodes and checks the configuration: not a JSON object is 6; a missing or mistyped
    /// `cniVersion`, `name`, `type` or optional key is 7; a version other than 1.0.0 or 1.1.0
    /// is 1.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODING_FAILURE,
                "cannot decode the network configuration",
            )
            .with_details(e.to_string())
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::new(
                code::DECODING_FAILURE,
                "the network configuration is not a JSON object",
            ));
        };
        let cni_version = required_string(&obj, "cniVersion")?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(
                CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI version").with_details(
                    format!(
                        "cniVersion {cni_version} is not supported; vswitch-cni supports {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                ),
            );
        }
        let name = required_string(&obj, "name")?;
        if !valid_network_name(&name) {
            return Err(invalid_config(format!(
                "invalid network name {name:?}: it must start with a letter or digit, then \
                 letters, digits, '_', '.' or '-'"
            )));
        }
        let plugin_type = required_string(&obj, "type")?;
        if plugin_type.contains(['/', '\\']) {
            return Err(invalid_config(format!(
                "invalid type {plugin_type:?}: a plugin name has no path separators"
            )));
        }
        let socket = match optional_string(&obj, "socket")? {
            None => PathBuf::from(proto::DEFAULT_SOCKET),
            Some(s) if s.is_empty() => return Err(invalid_config("socket must not be empty")),
            Some(s) => PathBuf::from(s),
        };
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err(invalid_config("prevResult must be an object")),
        };
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => json!({}),
            Some(d @ Value::Object(_)) => d.clone(),
            Some(_) => return Err(invalid_config("dns must be an object")),
        };
        let valid_attachments = VALID_ATTACHMENTS_KEYS
            .iter()
            .find_map(|k| obj.get(*k).filter(|v| !v.is_null()).map(|v| (k, v)))
            .map(|(k, v)| attachments(v, k))
            .transpose()?;
        let labels = conf_labels(&obj)?;
        Ok(NetConf {
            labels,
            cni_version,
            name,
            plugin_type,
            socket,
            prev_result,
            dns,
            valid_attachments,
        })
    }
}

/// The VERSION result: the input's `cniVersion` when it has one (as the spec asks), else
/// [`LATEST_VERSION`]; and the versions this plugin implements.
pub fn version_result(stdin: &[u8]) -> Value {
    let asked = loose_version(stdin).filter(|v| version_triple(v).is_some());
    json!({
        "cniVersion": asked.as_deref().unwrap_or(LATEST_VERSION),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

/// What an invocation prints and how it exits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// For stdout: a result, an error object, or nothing.
    pub stdout: String,
    /// For stderr: log lines (GC's removals), or nothing.
    pub stderr: String,
    /// Exit status: 0 on success, 1 on failure.
    pub exit: u8,
}

/// Asks the daemon at a socket; [`crate::client::call`] with a timeout in the binary.
pub type Ask<'a> = &'a dyn Fn(&Path, &Request) -> Result<Response, ClientError>;

/// One plugin invocation: environment through `get`, the configuration on `stdin`, the daemon
/// through `ask`.
pub fn run(get: &dyn Fn(&str) -> Option<String>, stdin: &mut dyn Read, ask: Ask) -> Outcome {
    let command_var = get("CNI_COMMAND").filter(|c| !c.is_empty());
    let mut input = Vec::new();
    let read = stdin.read_to_end(&mut input);
    let reply_version = loose_version(&input).unwrap_or_else(|| LATEST_VERSION.to_string());
    let failed = |e: CniError| Outcome {
        stdout: pretty(&e.to_json(&reply_version)),
        stderr: String::new(),
        exit: 1,
    };
    let Some(command_var) = command_var else {
        return failed(CniError::new(
            code::INVALID_ENVIRONMENT,
            "invalid environment variables: missing CNI_COMMAND",
        ));
    };
    let Some(command) = Command::parse(&command_var) else {
        return failed(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!(
                "invalid environment variables: CNI_COMMAND={command_var:?} is not one of ADD, \
                 DEL, CHECK, VERSION, STATUS, GC"
            ),
        ));
    };
    if command == Command::Version {
        return Outcome {
            stdout: pretty(&version_result(&input)),
            ..Outcome::default()
        };
    }
    let env = if command.per_attachment() {
        match Env::parse(command, get) {
            Ok(env) => Some(env),
            Err(e) => return failed(e),
        }
    } else {
        None
    };
    if let Err(e) = read {
        return failed(
            CniError::new(
                code::IO_FAILURE,
                "cannot read the network configuration from stdin",
            )
            .with_details(e.to_string()),
        );
    }
    let conf = match NetConf::parse(&input) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let result = match (command, env) {
        (Command::Add, Some(env)) => add(&conf, &env, ask).map(|v| (pretty(&v), String::new())),
        (Command::Del, Some(env)) => del(&conf, &env, ask).map(|()| Default::default()),
        (Command::Check, Some(env)) => check(&conf, &env, ask).map(|()| Default::default()),
        (Command::Status, _) => status(&conf, ask).map(|()| Default::default()),
        (Command::Gc, _) => gc(&conf, ask).map(|log| (String::new(), log)),
        _ => unreachable!("per-attachment verbs have their environment"),
    };
    match result {
        Ok((stdout, stderr)) => Outcome {
            stdout,
            stderr,
            exit: 0,
        },
        Err(e) => Outcome {
            stdout: pretty(&e.to_json(&conf.cni_version)),
            stderr: String::new(),
            exit: 1,
        },
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a JSON value serializes");
    s.push('\n');
    s
}

/// Sends `request`; the daemon's error responses and connection failures become CNI errors.
fn call(conf: &NetConf, ask: Ask, request: &Request) -> Result<Reply, CniError> {
    match ask(&conf.socket, request) {
        Ok(Response::Ok { result }) => Ok(result),
        Ok(Response::Error { code, message }) => Err(daemon_error(code, message)),
        Err(e) if e.is_unreachable() => Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "vswitchd is not reachable; try again later",
        )
        .with_details(e.to_string())),
        Err(e) => Err(
            CniError::new(code::INTERNAL, "vswitchd did not answer properly")
                .with_details(e.to_string()),
        ),
    }
}

/// The CNI error for a daemon's error response: `not_found` is 3 (nothing to clean up),
/// everything else 999 with the daemon's message.
pub fn daemon_error(code: ErrorCode, message: String) -> CniError {
    let name = serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{code:?}"));
    let cni = match code {
        ErrorCode::NotFound => code::UNKNOWN_CONTAINER,
        _ => code::INTERNAL,
    };
    CniError::new(cni, message).with_details(format!("vswitchd refused the request ({name})"))
}

fn unexpected(reply: &Reply) -> CniError {
    CniError::new(
        code::INTERNAL,
        "vswitchd answered with an unexpected result",
    )
    .with_details(format!("{reply:?}"))
}

/// Whether two namespace paths name the same namespace: equal paths, or the same file.
fn same_netns(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn add(conf: &NetConf, env: &Env, ask: Ask) -> Result<Value, CniError> {
    let netns = env.netns.clone().unwrap_or_default();
    let request = Request::PortAdd(PortAdd {
        netns: netns.clone(),
        id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        ip: None,
        mac: None,
        namespace: env.args.pod_namespace.clone(),
        labels: env.args.labels(&conf.labels).map_err(invalid_args)?,
    });
    let port = match call(conf, ask, &request)? {
        Reply::Port(p) => p,
        other => return Err(unexpected(&other)),
    };
    if port.id != env.container_id || port.ifname != env.ifname {
        return Err(unexpected(&Reply::Port(port)));
    }
    // The daemon answers an ADD of a known (id, ifname) with the existing attachment; one in
    // another namespace is a stale attachment, not this container's.
    if !same_netns(&port.netns, &netns) {
        return Err(CniError::new(
            code::INTERNAL,
            format!(
                "{}/{} is already attached in network namespace {}",
                port.id, port.ifname, port.netns
            ),
        )
        .with_details("DEL the old attachment first"));
    }
    Ok(add_result(&port, conf, &netns))
}

/// The ADD result for `port` in the configuration's version, with the pod interface's sandbox
/// the runtime's `CNI_NETNS` and the configuration's `dns`.
pub fn add_result(port: &PortInfo, conf: &NetConf, netns: &str) -> Value {
    let mut v = render::cni_result_version(port, &conf.cni_version);
    v["interfaces"][1]["sandbox"] = json!(netns);
    v["dns"] = conf.dns.clone();
    v
}

fn del(conf: &NetConf, env: &Env, ask: Ask) -> Result<(), CniError> {
    let request = Request::PortDel {
        id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    match call(conf, ask, &request)? {
        Reply::Removed(_) => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn check(conf: &NetConf, env: &Env, ask: Ask) -> Result<(), CniError> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        invalid_config("CHECK needs prevResult: the result of the container's ADD")
    })?;
    let request = Request::PortCheck {
        id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    let port = match call(conf, ask, &request)? {
        Reply::Port(p) => p,
        other => return Err(unexpected(&other)),
    };
    let netns = env.netns.as_deref().unwrap_or_default();
    if !same_netns(&port.netns, netns) {
        return Err(CniError::new(
            code::INTERNAL,
            format!(
                "{}/{} is attached in network namespace {}, not {netns}",
                port.id, port.ifname, port.netns
            ),
        ));
    }
    check_prev_result(prev, &port).map_err(|why| {
        CniError::new(code::INTERNAL, why).with_details(format!(
            "the attachment is {} with MAC {} on {}",
            port.ip, port.mac, port.host_ifname
        ))
    })
}

/// Compares the attachment with the `prevResult` of its ADD: the result lists the pod
/// interface in a sandbox, with the pod's MAC, and the pod's address on it. Later chained
/// plugins may have added things; only what this plugin created must be there.
pub fn check_prev_result(prev: &Map<String, Value>, port: &PortInfo) -> Result<(), String> {
    let interfaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .ok_or("prevResult has no interfaces")?;
    let index = interfaces
        .iter()
        .position(|i| {
            i.get("name").and_then(Value::as_str) == Some(port.ifname.as_str())
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })
        .ok_or_else(|| format!("prevResult lists no interface {} in a sandbox", port.ifname))?;
    if let Some(mac) = interfaces[index].get("mac").and_then(Value::as_str) {
        if !mac.eq_ignore_ascii_case(&port.mac) {
            return Err(format!(
                "interface {} has MAC {}, prevResult says {mac}",
                port.ifname, port.mac
            ));
        }
    }
    let on_it: Vec<Ipv4Net> = prev
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|ip| ip.get("interface").and_then(Value::as_u64) == Some(index as u64))
        .filter_map(|ip| ip.get("address")?.as_str()?.parse().ok())
        .collect();
    if !on_it.contains(&port.ip) {
        return Err(format!(
            "interface {} has address {}, prevResult lists {}",
            port.ifname,
            port.ip,
            if on_it.is_empty() {
                "none".to_string()
            } else {
                on_it
                    .iter()
                    .map(Ipv4Net::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    Ok(())
}

/// `major.minor.patch` as numbers.
fn version_triple(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

fn needs_1_1(conf: &NetConf, verb: &str) -> Result<(), CniError> {
    if version_triple(&conf.cni_version) < version_triple(STATUS_GC_VERSION) {
        return Err(
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI version").with_details(
                format!(
                "{verb} is a CNI {STATUS_GC_VERSION} verb; the configuration says cniVersion {}",
                conf.cni_version
            ),
            ),
        );
    }
    Ok(())
}

fn status(conf: &NetConf, ask: Ask) -> Result<(), CniError> {
    needs_1_1(conf, "STATUS")?;
    let not_available = |why: String| {
        CniError::new(code::NOT_AVAILABLE, "The plugin is not available").with_details(why)
    };
    match ask(&conf.socket, &Request::Node {}) {
        Ok(Response::Ok {
            result: Reply::Node(_),
        }) => Ok(()),
        Ok(Response::Ok { result }) => Err(not_available(format!(
            "vswitchd answered with an unexpected result: {result:?}"
        ))),
        Ok(Response::Error { message, .. }) => Err(not_available(message)),
        Err(e) => Err(not_available(e.to_string())),
    }
}

fn gc(conf: &NetConf, ask: Ask) -> Result<String, CniError> {
    needs_1_1(conf, "GC")?;
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        invalid_config(
            "GC needs cni.dev/valid-attachments (without it every attachment would be removed)",
        )
    })?;
    match call(conf, ask, &Request::Gc { valid })? {
        Reply::Ports(removed) => Ok(removed
            .iter()
            .map(|p| format!("vswitch-cni: gc removed {}/{} ({})\n", p.id, p.ifname, p.ip))
            .collect()),
        other => Err(unexpected(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn port() -> PortInfo {
        PortInfo {
            id: "c1".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/p1".into(),
            host_ifname: "vsw0123456789a".into(),
            host_mac: "02:00:00:00:00:07".into(),
            port: 2,
            mac: "0a:58:0a:f4:01:05".into(),
            ip: "10.244.1.5/24".parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            mtu: 1450,
            namespace: "default".into(),
            labels: Default::default(),
        }
    }

    const ADD_ENV: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/p1"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        ),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    /// Runs the plugin against canned daemon responses; returns the outcome and the requests.
    fn invoke(
        env: &[(&str, &str)],
        stdin: &str,
        answers: Vec<Result<Response, ClientError>>,
    ) -> (Outcome, Vec<Request>) {
        let answers = RefCell::new(answers.into_iter());
        let seen = RefCell::new(Vec::new());
        let ask = |_: &Path, r: &Request| {
            seen.borrow_mut().push(r.clone());
            answers.borrow_mut().next().expect("an answer per request")
        };
        let out = run(&env_of(env), &mut stdin.as_bytes(), &ask);
        (out, seen.into_inner())
    }

    fn error_of(out: &Outcome) -> Value {
        assert_eq!(out.exit, 1, "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"vswitch","type":"vswitch-cni"}"#;

    #[test]
    fn cni_args_are_parsed_and_malformed_pairs_refused() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p=1;").unwrap();
        assert_eq!(a.pod_namespace.as_deref(), Some("ns"));
        assert_eq!(a.pod_name.as_deref(), Some("p=1"));
        assert_eq!(a.all.len(), 3);
        assert!(CniArgs::parse("FOO").is_err());
        assert!(CniArgs::parse("=x").is_err());
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    #[test]
    fn names_follow_the_spec() {
        assert!(valid_container_id("3f2a9c_a.b-c"));
        assert!(!valid_container_id("-x"));
        assert!(!valid_container_id("a/b"));
        assert!(!valid_container_id(""));
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("a23456789012345"));
        assert!(!valid_ifname("a234567890123456"));
        assert!(!valid_ifname(".."));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname("a:b"));
    }

    #[test]
    fn env_errors_name_every_missing_and_invalid_variable() {
        let e = Env::parse(Command::Add, &env_of(&[("CNI_IFNAME", "eth0/1")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENVIRONMENT);
        for name in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            assert!(e.msg.contains(name), "{name} in {}", e.msg);
        }
        // DEL does not need the namespace.
        let del = Env::parse(
            Command::Del,
            &env_of(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]),
        )
        .unwrap();
        assert_eq!(del.netns, None);
        let e = Env::parse(
            Command::Check,
            &env_of(&[
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "relative"),
                ("CNI_ARGS", "broken"),
            ]),
        )
        .unwrap_err();
        assert!(
            e.msg.contains("CNI_NETNS") && e.msg.contains("CNI_ARGS"),
            "{}",
            e.msg
        );
        let ok = Env::parse(Command::Add, &env_of(ADD_ENV)).unwrap();
        assert_eq!(ok.args.pod_name.as_deref(), Some("web-0"));
        assert_eq!(ok.path.len(), 2);
    }

    #[test]
    fn netconf_errors_have_the_spec_codes() {
        let code_of = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code_of("{not json"), code::DECODING_FAILURE);
        assert_eq!(code_of("[1]"), code::DECODING_FAILURE);
        assert_eq!(
            code_of(r#"{"name":"n","type":"t"}"#),
            code::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","type":"t"}"#),
            code::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":5,"type":"t"}"#),
            code::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"n"}"#),
            code::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":1}"#),
            code::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":[]}"#),
            code::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"0.4.0","name":"n","type":"t"}"#),
            code::INCOMPATIBLE_VERSION
        );
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"t","socket":"/tmp/s",
                 "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}],
                 "dns":{"nameservers":["10.96.0.10"]}}"#,
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/s"));
        assert_eq!(
            c.valid_attachments,
            Some(vec![Attachment {
                id: "c1".into(),
                ifname: "eth0".into()
            }])
        );
        assert_eq!(c.dns["nameservers"][0], "10.96.0.10");
        let d = NetConf::parse(CONF.as_bytes()).unwrap();
        assert_eq!(d.socket, PathBuf::from(proto::DEFAULT_SOCKET));
        assert_eq!(d.dns, json!({}));
    }

    #[test]
    fn add_sends_the_attachment_and_prints_the_result() {
        let (out, seen) = invoke(
            ADD_ENV,
            CONF,
            vec![Ok(Response::Ok {
                result: Reply::Port(port()),
            })],
        );
        assert_eq!(out.exit, 0, "{out:?}");
        assert_eq!(
            seen,
            vec![Request::PortAdd(PortAdd {
                netns: "/var/run/netns/p1".into(),
                id: "c1".into(),
                ifname: "eth0".into(),
                ip: None,
                mac: None,
                namespace: Some("default".into()),
                labels: BTreeMap::new(),
            })]
        );
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v, render::cni_result(&port()));
    }

    #[test]
    fn add_passes_namespace_and_labels_from_args_and_cni_args() {
        let conf = r#"{"cniVersion":"1.0.0","name":"k8s","type":"vswitch-cni",
            "args":{"cni":{"labels":[{"key":"app","value":"web"},{"key":"role","value":"db"}]}}}"#;
        let mut env = ADD_ENV.to_vec();
        env[4] = (
            "CNI_ARGS",
            "K8S_POD_NAMESPACE=prod;VSWITCH_LABELS=app=api,tier=b",
        );
        let (out, seen) = invoke(
            &env,
            conf,
            vec![Ok(Response::Ok {
                result: Reply::Port(port()),
            })],
        );
        assert_eq!(out.exit, 0, "{out:?}");
        let Request::PortAdd(add) = &seen[0] else {
            panic!("{seen:?}")
        };
        assert_eq!(add.namespace.as_deref(), Some("prod"));
        let labels: Vec<(&str, &str)> = add
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("app", "api"), ("role", "db"), ("tier", "b")]);
        let bad = r#"{"cniVersion":"1.0.0","name":"k8s","type":"vswitch-cni","args":{"cni":{"labels":["app"]}}}"#;
        let (out, _) = invoke(ADD_ENV, bad, vec![]);
        assert_eq!(out.exit, 1);
        assert!(out.stdout.contains("args.cni.labels"), "{out:?}");
    }

    #[test]
    fn an_existing_attachment_in_another_namespace_is_refused() {
        let mut p = port();
        p.netns = "/var/run/netns/old-pod-that-is-gone".into();
        let (out, _) = invoke(
            ADD_ENV,
            CONF,
            vec![Ok(Response::Ok {
                result: Reply::Port(p),
            })],
        );
        let e = error_of(&out);
        assert_eq!(e["code"], code::INTERNAL);
        assert!(e["msg"].as_str().unwrap().contains("already attached"));
    }

    #[test]
    fn daemon_errors_map_to_cni_codes() {
        let refused = |code| {
            invoke(
                ADD_ENV,
                CONF,
                vec![Ok(Response::error(
                    code,
                    "network namespace x does not exist",
                ))],
            )
            .0
        };
        let e = error_of(&refused(ErrorCode::NotFound));
        assert_eq!(e["code"], code::UNKNOWN_CONTAINER);
        assert_eq!(e["msg"], "network namespace x does not exist");
        assert_eq!(e["details"], "vswitchd refused the request (not_found)");
        assert_eq!(e["cniVersion"], "1.0.0");
        let e = error_of(&refused(ErrorCode::Exhausted));
        assert_eq!(e["code"], code::INTERNAL);
        let unreachable = || {
            Err(ClientError::Connect {
                path: "/run/vswitch/vswitch.sock".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        };
        let e = error_of(&invoke(ADD_ENV, CONF, vec![unreachable()]).0);
        assert_eq!(e["code"], code::TRY_AGAIN_LATER);
        let mut del = ADD_ENV.to_vec();
        del[0] = ("CNI_COMMAND", "DEL");
        let e = error_of(&invoke(&del, CONF, vec![unreachable()]).0);
        assert_eq!(e["code"], code::TRY_AGAIN_LATER);
    }

    #[test]
    fn del_succeeds_silently_whether_or_not_something_was_attached() {
        let env = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ];
        for removed in [true, false] {
            let (out, seen) = invoke(
                &env,
                CONF,
                vec![Ok(Response::Ok {
                    result: Reply::Removed(removed),
                })],
            );
            assert_eq!(out, Outcome::default());
            assert_eq!(
                seen,
                vec![Request::PortDel {
                    id: "c1".into(),
                    ifname: "eth0".into()
                }]
            );
        }
    }

    #[test]
    fn check_needs_prev_result_and_compares_it() {
        let mut env = ADD_ENV.to_vec();
        env[0] = ("CNI_COMMAND", "CHECK");
        let (out, seen) = invoke(&env, CONF, vec![]);
        assert_eq!(error_of(&out)["code"], code::INVALID_NETWORK_CONFIG);
        assert!(seen.is_empty());
        let prev = render::cni_result(&port());
        let conf =
            json!({"cniVersion": "1.0.0", "name": "n", "type": "vswitch-cni", "prevResult": prev})
                .to_string();
        let answer = || {
            Ok(Response::Ok {
                result: Reply::Port(port()),
            })
        };
        let (out, seen) = invoke(&env, &conf, vec![answer()]);
        assert_eq!(out, Outcome::default());
        assert_eq!(
            seen,
            vec![Request::PortCheck {
                id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
        // A prevResult with another address or MAC does not describe this attachment.
        let mut other = port();
        other.ip = "10.244.1.9/24".parse().unwrap();
        let p = render::cni_result(&other);
        assert!(check_prev_result(p.as_object().unwrap(), &port())
            .unwrap_err()
            .contains("10.244.1.9/24"));
        other = port();
        other.mac = "0a:58:0a:f4:01:99".into();
        let p = render::cni_result(&other);
        assert!(check_prev_result(p.as_object().unwrap(), &port())
            .unwrap_err()
            .contains("MAC"));
        // The daemon's mismatch is the plugin's error.
        let (out, _) = invoke(
            &env,
            &conf,
            vec![Ok(Response::error(
                ErrorCode::Mismatch,
                "pod interface eth0 in p1: no default route via 10.244.1.1",
            ))],
        );
        let e = error_of(&out);
        assert_eq!(e["code"], code::INTERNAL);
        assert!(e["msg"].as_str().unwrap().contains("default route"));
    }

    #[test]
    fn version_echoes_the_asked_version_and_lists_ours() {
        let (out, _) = invoke(
            &[("CNI_COMMAND", "VERSION")],
            r#"{"cniVersion":"1.0.0"}"#,
            vec![],
        );
        assert_eq!(
            serde_json::from_str::<Value>(&out.stdout).unwrap(),
            json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]})
        );
        let (out, _) = invoke(&[("CNI_COMMAND", "VERSION")], "", vec![]);
        assert_eq!(
            serde_json::from_str::<Value>(&out.stdout).unwrap()["cniVersion"],
            "1.1.0"
        );
    }

    #[test]
    fn status_and_gc_are_1_1_0_verbs() {
        let conf = r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch-cni"}"#;
        let node = proto::NodeInfo {
            name: "n".into(),
            node_ip: "192.168.0.1".parse().unwrap(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            gateway_mac: "0a:58:0a:f4:01:01".into(),
            pod_mtu: 1450,
            vtep_mac: "0e:00:00:00:00:01".into(),
            vni: 1,
            vxlan_port: 8472,
        };
        let (out, seen) = invoke(
            &[("CNI_COMMAND", "STATUS")],
            conf,
            vec![Ok(Response::Ok {
                result: Reply::Node(node),
            })],
        );
        assert_eq!(out, Outcome::default());
        assert_eq!(seen, vec![Request::Node {}]);
        let (out, _) = invoke(
            &[("CNI_COMMAND", "STATUS")],
            conf,
            vec![Err(ClientError::Connect {
                path: "s".into(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            })],
        );
        let e = error_of(&out);
        assert_eq!(e["code"], code::NOT_AVAILABLE);
        assert_eq!(e["msg"], "The plugin is not available");
        let (out, seen) = invoke(&[("CNI_COMMAND", "STATUS")], CONF, vec![]);
        assert_eq!(error_of(&out)["code"], code::INCOMPATIBLE_VERSION);
        assert!(seen.is_empty());

        let (out, seen) = invoke(&[("CNI_COMMAND", "GC")], conf, vec![]);
        assert_eq!(error_of(&out)["code"], code::INVALID_NETWORK_CONFIG);
        assert!(seen.is_empty());
        let gc_conf = r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch-cni",
            "cni.dev/attachments":[{"containerID":"c2","ifname":"eth0"}]}"#;
        let (out, seen) = invoke(
            &[("CNI_COMMAND", "GC")],
            gc_conf,
            vec![Ok(Response::Ok {
                result: Reply::Ports(vec![port()]),
            })],
        );
        assert_eq!(out.exit, 0);
        assert!(out.stdout.is_empty());
        assert_eq!(
            out.stderr,
            "vswitch-cni: gc removed c1/eth0 (10.244.1.5/24)\n"
        );
        assert_eq!(
            seen,
            vec![Request::Gc {
                valid: vec![Attachment {
                    id: "c2".into(),
                    ifname: "eth0".into()
                }]
            }]
        );
    }

    #[test]
    fn command_errors_come_first_and_echo_the_configuration_version() {
        let (out, _) = invoke(&[], CONF, vec![]);
        let e = error_of(&out);
        assert_eq!(e["code"], code::INVALID_ENVIRONMENT);
        assert_eq!(e["cniVersion"], "1.0.0");
        assert!(e["msg"].as_str().unwrap().contains("CNI_COMMAND"));
        let (out, _) = invoke(&[("CNI_COMMAND", "add")], "{", vec![]);
        let e = error_of(&out);
        assert_eq!(e["code"], code::INVALID_ENVIRONMENT);
        assert_eq!(e["cniVersion"], LATEST_VERSION);
        assert!(e.get("details").is_none());
    }
}
