//! `vswitchctl`: the operator's command line for vswitchd.
//!
//! Contract: each invocation sends at most one request over the daemon's control socket and
//! prints the result, as tables for people or, with `--json`, as pretty JSON for scripts (the
//! verb's result; `port add` prints a CNI 1.0.0 result). Errors are one line on stderr,
//! `vswitchctl: <message>`, and an exit code: 1 when the daemon refused or failed the request
//! (or answered unintelligibly), 2 for usage errors, 3 when the daemon cannot be reached.
//! `completions` needs no daemon.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ctl::client::{self, ClientError};
use ctl::proto::{self, ErrorCode, PortAdd, Reply, Request, Response};
use ctl::render;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code: the daemon answered with an error (or an answer that made no sense).
const EXIT_FAILED: u8 = 1;
/// Exit code: the daemon could not be reached.
const EXIT_UNREACHABLE: u8 = 3;

const MAIN_EXAMPLES: &str = "\
Examples:
  vswitchctl port list
  vswitchctl port add --netns pod1 --id 3f2a9c --ip 10.244.1.5/24
  vswitchctl --json stats
  vswitchctl --socket /tmp/vswitch.sock node

Exit codes: 0 ok, 1 the daemon refused or failed the request, 2 usage error,
3 vswitchd cannot be reached.";

/// Control a running vswitchd over its Unix socket.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version, after_help = MAIN_EXAMPLES)]
struct Cli {
    /// The daemon's control socket.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        env = "VSWITCH_SOCKET",
        default_value = proto::DEFAULT_SOCKET
    )]
    socket: PathBuf,
    /// Print the daemon's result as pretty JSON instead of tables.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    /// How long to wait for the daemon's answer, in seconds (port add creates veths).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "SECS",
        default_value = "30",
        value_parser = parse_timeout
    )]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach, detach and list pod ports.
    #[command(
        subcommand,
        after_help = "Examples:\n  vswitchctl port add --netns pod1 --id 3f2a9c\n  \
                      vswitchctl port del --id 3f2a9c\n  vswitchctl port list"
    )]
    Port(PortCommand),
    /// Add, remove and list tunnels to peer nodes (VXLAN as flannel, IPIP as Calico).
    #[command(
        subcommand,
        after_help = "Examples:\n  vswitchctl tunnel add --name node2 --kind vxlan --remote 192.168.77.2 \\\n      --subnet 10.244.2.0/24 --vtep-mac 0e:00:00:00:00:02\n  \
                      vswitchctl tunnel add --name node3 --kind ipip --remote 192.168.77.3 --subnet 10.244.3.0/24\n  \
                      vswitchctl tunnel list\n  vswitchctl tunnel del --name node2"
    )]
    Tunnel(TunnelCommand),
    /// Show the FDB: pod MACs (static) and MACs learned on the host port.
    #[command(
        subcommand,
        after_help = "Examples:\n  vswitchctl fdb show\n  vswitchctl --json fdb show"
    )]
    Fdb(ShowCommand),
    /// Show the IPv4 routes the switch routes with.
    #[command(
        subcommand,
        after_help = "Examples:\n  vswitchctl route show\n  vswitchctl --json route show"
    )]
    Route(ShowCommand),
    /// Capture frames a port receives and transmits into a pcap file (tcpdump -r reads it).
    #[command(
        after_help = "Examples:\n  vswitchctl capture --port vsw0-sw --count 20 -w /tmp/host.pcap\n  \
                            vswitchctl capture --port eth0 -w uplink.pcap && tcpdump -r uplink.pcap -nn"
    )]
    Capture {
        /// Port name, as in `vswitchctl stats`.
        #[arg(long)]
        port: String,
        /// Frames to capture (1..=10000).
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Seconds to wait for them.
        #[arg(long, default_value_t = 10)]
        wait: u64,
        /// The pcap file to write.
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        write: std::path::PathBuf,
    },
    /// Show what the pipeline would do with a frame received on a port, stage by stage.
    #[command(
        after_help = "Examples:\n  vswitchctl trace --port vswab12cd34ef5 icmp 10.244.1.2 '>' 10.244.1.3\n  \
                            vswitchctl trace --port vswab12cd34ef5 udp 10.244.1.2 '>' 10.244.2.7 len 1500\n  \
                            vswitchctl trace --port vsw0-sw 0a580af40101....   # hex bytes of a frame"
    )]
    Trace {
        /// Port name, as in `vswitchctl stats`.
        #[arg(long)]
        port: String,
        /// The frame: hex bytes, or `icmp|udp|tcp|arp SRC > DST [ttl N] [len N] [port N] [dst-mac MAC]`.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        frame: Vec<String>,
    },
    /// Apply, list and delete Kubernetes NetworkPolicies (networking.k8s.io/v1 YAML).
    #[command(
        subcommand,
        after_help = "Examples:\n  vswitchctl policy apply -f deny-all.yaml\n  \
                      kubectl get networkpolicy -A -o yaml | vswitchctl policy apply -f -\n  \
                      vswitchctl policy list\n  vswitchctl policy delete default/deny-all"
    )]
    Policy(PolicyCommand),
    /// Register pods of other nodes (address, namespace, labels) for policy peers.
    #[command(
        subcommand,
        after_help = "Examples:\n  vswitchctl endpoint add --ip 10.244.2.7 --namespace prod --label app=db\n  \
                      vswitchctl endpoint list\n  vswitchctl endpoint del --ip 10.244.2.7"
    )]
    Endpoint(EndpointCommand),
    /// Label namespaces (for namespaceSelector peers).
    #[command(
        subcommand,
        after_help = "Examples:\n  vswitchctl namespace set prod --label team=a --label env=prod\n  \
                      vswitchctl namespace list"
    )]
    Namespace(NamespaceCommand),
    /// Show packet, drop and event counters per port and per worker.
    #[command(
        after_help = "Examples:\n  vswitchctl stats\n  vswitchctl --json stats | jq '.ports[] | select(.drops != [])'"
    )]
    Stats,
    /// Show the node's switch settings (pod CIDR, gateway, MTU, ...).
    #[command(
        after_help = "Examples:\n  vswitchctl node\n  vswitchctl --json node | jq -r .pod_cidr"
    )]
    Node,
    /// Print a shell completion script (needs no daemon).
    #[command(
        after_help = "Examples:\n  vswitchctl completions bash > /etc/bash_completion.d/vswitchctl\n  \
                            vswitchctl completions zsh > \"${fpath[1]}/_vswitchctl\"\n  \
                            vswitchctl completions fish > ~/.config/fish/completions/vswitchctl.fish"
    )]
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
enum PortCommand {
    /// Attach a pod: create its veth, address it and attach the host end (like CNI ADD).
    #[command(after_help = "Examples:\n  \
        vswitchctl port add --netns pod1 --id 3f2a9c\n  \
        vswitchctl port add --netns /var/run/netns/pod1 --id 3f2a9c --ip 10.244.1.5/24\n  \
        vswitchctl --json port add --netns pod1 --id 3f2a9c --ifname eth1 --mac 0a:58:0a:f4:01:05")]
    Add(AddArgs),
    /// Detach a pod and delete its veth (like CNI DEL; an unknown id is not an error).
    #[command(after_help = "Examples:\n  vswitchctl port del --id 3f2a9c\n  \
                            vswitchctl port del --id 3f2a9c --ifname eth1")]
    Del {
        /// Container id the port was added with.
        #[arg(long, value_name = "ID")]
        id: String,
        /// Interface name inside the pod.
        #[arg(long, value_name = "NAME", default_value = "eth0")]
        ifname: String,
    },
    /// List every attached port.
    #[command(
        after_help = "Examples:\n  vswitchctl port list\n  vswitchctl --json port list | jq -r '.[].ip'"
    )]
    List,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Apply every NetworkPolicy in a YAML file (several documents allowed; all or none).
    #[command(
        after_help = "Examples:\n  vswitchctl policy apply -f policies.yaml\n  \
                            cat p.yaml | vswitchctl policy apply -f -"
    )]
    Apply {
        /// The YAML file, or `-` for standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
    /// List policies with the ports they select and their hit counts.
    #[command(after_help = "Examples:\n  vswitchctl policy list\n  vswitchctl --json policy list")]
    List,
    /// Delete a policy (an unknown one is not an error).
    #[command(after_help = "Examples:\n  vswitchctl policy delete default/test-network-policy")]
    Delete {
        /// NAMESPACE/NAME (a bare NAME means namespace `default`).
        #[arg(value_name = "NAMESPACE/NAME")]
        policy: String,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointCommand {
    /// Register (or replace) a pod of another node.
    #[command(
        after_help = "Examples:\n  vswitchctl endpoint add --ip 10.244.2.7 --namespace prod --label app=db --label tier=backend"
    )]
    Add {
        /// The pod's address.
        #[arg(long, value_name = "IP")]
        ip: std::net::Ipv4Addr,
        /// The pod's namespace.
        #[arg(long, value_name = "NS", default_value = "default")]
        namespace: String,
        /// A label, KEY=VALUE (repeat for more).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Forget a registered pod (an unknown address is not an error).
    #[command(after_help = "Examples:\n  vswitchctl endpoint del --ip 10.244.2.7")]
    Del {
        /// The pod's address.
        #[arg(long, value_name = "IP")]
        ip: std::net::Ipv4Addr,
    },
    /// List local pods and registered pods with their namespaces and labels.
    #[command(after_help = "Examples:\n  vswitchctl endpoint list")]
    List,
}

#[derive(Debug, Subcommand)]
enum NamespaceCommand {
    /// Set a namespace's labels, replacing its previous ones (no --label clears them).
    #[command(after_help = "Examples:\n  vswitchctl namespace set prod --label project=myproject")]
    Set {
        /// Namespace name.
        name: String,
        /// A label, KEY=VALUE (repeat for more).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List namespaces and their labels.
    #[command(after_help = "Examples:\n  vswitchctl namespace list")]
    List,
}

#[derive(Debug, Subcommand)]
enum ShowCommand {
    /// Show the table.
    #[command(after_help = "Examples:\n  vswitchctl fdb show\n  vswitchctl --json route show")]
    Show,
}

#[derive(Debug, Subcommand)]
enum TunnelCommand {
    /// Add a tunnel to a peer node (replacing a run-time tunnel of the same name).
    #[command(after_help = "Examples:\n  \
        vswitchctl tunnel add --name node2 --kind vxlan --remote 192.168.77.2 --subnet 10.244.2.0/24 --vtep-mac 0e:00:00:00:00:02\n  \
        vswitchctl tunnel add --name node3 --kind ipip --remote 192.168.77.3 --subnet 10.244.3.0/24")]
    Add(TunnelArgs),
    /// Remove a tunnel added at run time (an unknown name is not an error).
    #[command(after_help = "Examples:\n  vswitchctl tunnel del --name node2")]
    Del {
        /// Tunnel name.
        #[arg(long)]
        name: String,
    },
    /// List every tunnel and its resolved underlay next hop.
    #[command(after_help = "Examples:\n  vswitchctl tunnel list\n  vswitchctl --json tunnel list")]
    List,
}

#[derive(Debug, Args)]
struct TunnelArgs {
    /// A name for people (often the peer node's name).
    #[arg(long)]
    name: String,
    /// Encapsulation: vxlan (flannel's wire format) or ipip (Calico's).
    #[arg(long, value_enum)]
    kind: KindArg,
    /// The peer's node IP.
    #[arg(long, value_name = "IP")]
    remote: std::net::Ipv4Addr,
    /// The peer's pod CIDR.
    #[arg(long, value_name = "CIDR")]
    subnet: Ipv4Net,
    /// VXLAN network identifier (vxlan only; default 1 as flannel).
    #[arg(long)]
    vni: Option<u32>,
    /// The peer's VTEP MAC (vxlan only; flannel's VtepMAC).
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    vtep_mac: Option<String>,
    /// UDP destination port (vxlan only; default 8472 as flannel).
    #[arg(long)]
    port: Option<u16>,
}

/// Tunnel kinds on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    Vxlan,
    Ipip,
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The pod's network namespace: a name under /var/run/netns or a path.
    #[arg(long, value_name = "NAME|PATH")]
    netns: String,
    /// Container id (CNI_CONTAINERID).
    #[arg(long, value_name = "ID")]
    id: String,
    /// Interface name inside the pod.
    #[arg(long, value_name = "NAME", default_value = "eth0")]
    ifname: String,
    /// Address with prefix, e.g. 10.244.1.5/24 (free, inside the pod CIDR); allocated if absent.
    #[arg(long, value_name = "CIDR")]
    ip: Option<Ipv4Net>,
    /// MAC of the pod interface, e.g. 0a:58:0a:f4:01:05; derived from the IP if absent.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    mac: Option<String>,
    /// The pod's Kubernetes namespace, for NetworkPolicy.
    #[arg(long, value_name = "NS", default_value = "default")]
    namespace: String,
    /// A pod label, KEY=VALUE, for NetworkPolicy (repeat for more).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a label like app=web")),
    }
}

fn read_policy_file(path: &std::path::Path) -> Result<String, Failure> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| Failure::new(2, format!("reading {}: {e}", path.display())))?;
    if text.len() > proto::MAX_REQUEST_BYTES - 1024 {
        return Err(Failure::new(
            2,
            format!(
                "{} is larger than {} bytes; split it into several files",
                path.display(),
                proto::MAX_REQUEST_BYTES - 1024
            ),
        ));
    }
    Ok(text)
}

/// Shells `completions` can write a script for.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 24.0 * 3600.0) {
        return Err(format!(
            "`{s}` must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("`{s}` is not a MAC address like 0a:58:0a:f4:01:05"))
    }
}

/// Why an invocation failed: the line to print and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Connect { path, source } => {
                let root = if source.kind() == std::io::ErrorKind::PermissionDenied {
                    " (the socket is root-only: run vswitchctl as root)"
                } else {
                    ""
                };
                Failure::new(
                    EXIT_UNREACHABLE,
                    format!(
                        "cannot reach vswitchd at {path}: {source}{root}; check that vswitchd is \
                         running and that --socket (or VSWITCH_SOCKET) names its control socket"
                    ),
                )
            }
            e => Failure::new(EXIT_FAILED, e.to_string()),
        }
    }
}

fn error_code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// Sends `request` and returns the daemon's result, or the failure to report.
fn ask(cli: &Cli, request: &Request) -> Result<Reply, Failure> {
    match client::call(&cli.socket, request, cli.timeout)? {
        Response::Ok { result } => Ok(result),
        Response::Error { code, message } => Err(Failure::new(
            EXIT_FAILED,
            format!("{} ({})", one_line(&message), error_code_name(code)),
        )),
    }
}

/// Keeps an error to its promised single line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn unexpected(reply: &Reply) -> Failure {
    let kind = serde_json::to_value(reply)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    Failure::new(
        EXIT_FAILED,
        format!("vswitchd answered with an unexpected `{kind}` result; are vswitchctl and vswitchd the same version?"),
    )
}

fn pretty<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Failure::new(EXIT_FAILED, format!("encoding JSON: {e}")))
}

/// Runs the command and returns what to print on stdout.
fn run(cli: &Cli) -> Result<String, Failure> {
    match &cli.command {
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vswitchctl", &mut out);
            String::from_utf8(out).map_err(|e| Failure::new(EXIT_FAILED, e.to_string()))
        }
        Command::Port(PortCommand::Add(a)) => {
            let request = Request::PortAdd(PortAdd {
                netns: a.netns.clone(),
                id: a.id.clone(),
                ifname: a.ifname.clone(),
                ip: a.ip,
                mac: a.mac.clone(),
                namespace: Some(a.namespace.clone()),
                labels: a.labels.iter().cloned().collect(),
            });
            match ask(cli, &request)? {
                Reply::Port(p) if cli.json => pretty(&render::cni_result(&p)),
                Reply::Port(p) => Ok(render::port_summary(&p)),
                other => Err(unexpected(&other)),
            }
        }
        Command::Port(PortCommand::Del { id, ifname }) => {
            let request = Request::PortDel {
                id: id.clone(),
                ifname: ifname.clone(),
            };
            match ask(cli, &request)? {
                Reply::Removed(removed) if cli.json => pretty(&serde_json::json!({
                    "id": id, "ifname": ifname, "removed": removed
                })),
                Reply::Removed(removed) => Ok(render::removed(id, ifname, removed)),
                other => Err(unexpected(&other)),
            }
        }
        Command::Port(PortCommand::List) => match ask(cli, &Request::PortList {})? {
            Reply::Ports(ports) if cli.json => pretty(&ports),
            Reply::Ports(ports) => Ok(render::port_table(&ports)),
            other => Err(unexpected(&other)),
        },
        Command::Tunnel(TunnelCommand::Add(t)) => {
            let spec = ctl::proto::TunnelSpec {
                name: t.name.clone(),
                kind: match t.kind {
                    KindArg::Vxlan => ctl::proto::TunnelKind::Vxlan,
                    KindArg::Ipip => ctl::proto::TunnelKind::Ipip,
                },
                remote: t.remote,
                subnet: t.subnet,
                vni: t.vni,
                vtep_mac: t.vtep_mac.clone(),
                port: t.port,
            };
            match ask(cli, &Request::TunnelAdd(spec))? {
                Reply::Tunnels(list) if cli.json => pretty(&list),
                Reply::Tunnels(list) => Ok(render::tunnel_table(&list)),
                other => Err(unexpected(&other)),
            }
        }
        Command::Tunnel(TunnelCommand::Del { name }) => {
            match ask(cli, &Request::TunnelDel { name: name.clone() })? {
                Reply::Removed(removed) if cli.json => {
                    pretty(&serde_json::json!({ "name": name, "removed": removed }))
                }
                Reply::Removed(true) => Ok(format!("removed tunnel {name}\n")),
                Reply::Removed(false) => Ok(format!("no tunnel {name}; nothing to do\n")),
                other => Err(unexpected(&other)),
            }
        }
        Command::Tunnel(TunnelCommand::List) => match ask(cli, &Request::TunnelList {})? {
            Reply::Tunnels(list) if cli.json => pretty(&list),
            Reply::Tunnels(list) => Ok(render::tunnel_table(&list)),
            other => Err(unexpected(&other)),
        },
        Command::Fdb(ShowCommand::Show) => match ask(cli, &Request::FdbShow {})? {
            Reply::Fdb(entries) if cli.json => pretty(&entries),
            Reply::Fdb(entries) => Ok(render::fdb_table(&entries)),
            other => Err(unexpected(&other)),
        },
        Command::Route(ShowCommand::Show) => match ask(cli, &Request::RouteShow {})? {
            Reply::Routes(routes) if cli.json => pretty(&routes),
            Reply::Routes(routes) => Ok(render::route_table(&routes)),
            other => Err(unexpected(&other)),
        },
        Command::Capture {
            port,
            count,
            wait,
            write,
        } => {
            let request = Request::Capture {
                port: port.clone(),
                count: *count,
                timeout_ms: wait.saturating_mul(1000),
            };
            match ask(cli, &request)? {
                Reply::Frames(frames) => {
                    let n = frames.len();
                    render::write_pcap(write, &frames).map_err(|e| {
                        Failure::new(EXIT_FAILED, format!("writing {}: {e}", write.display()))
                    })?;
                    Ok(format!(
                        "captured {n} frame(s) on {port} into {}\n",
                        write.display()
                    ))
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::Trace { port, frame } => {
            let request = Request::Trace {
                port: port.clone(),
                frame: frame.join(" "),
            };
            match ask(cli, &request)? {
                Reply::Trace(t) if cli.json => pretty(&t),
                Reply::Trace(t) => Ok(render::trace(&t)),
                other => Err(unexpected(&other)),
            }
        }
        Command::Policy(PolicyCommand::Apply { file }) => {
            let yaml = read_policy_file(file)?;
            match ask(cli, &Request::PolicyApply { yaml })? {
                Reply::Policies(list) if cli.json => pretty(&list),
                Reply::Policies(list) => Ok(list
                    .iter()
                    .map(|p| format!("networkpolicy {}/{} applied\n", p.namespace, p.name))
                    .collect()),
                other => Err(unexpected(&other)),
            }
        }
        Command::Policy(PolicyCommand::List) => match ask(cli, &Request::PolicyList {})? {
            Reply::Policies(list) if cli.json => pretty(&list),
            Reply::Policies(list) => Ok(render::policy_table(&list)),
            other => Err(unexpected(&other)),
        },
        Command::Policy(PolicyCommand::Delete { policy }) => {
            let (namespace, name) = policy.split_once('/').unwrap_or(("default", policy));
            let request = Request::PolicyDelete {
                namespace: namespace.into(),
                name: name.into(),
            };
            match ask(cli, &request)? {
                Reply::Removed(removed) if cli.json => pretty(&serde_json::json!({
                    "namespace": namespace, "name": name, "removed": removed
                })),
                Reply::Removed(true) => Ok(format!("networkpolicy {namespace}/{name} deleted\n")),
                Reply::Removed(false) => Ok(format!(
                    "no networkpolicy {namespace}/{name}; nothing to do\n"
                )),
                other => Err(unexpected(&other)),
            }
        }
        Command::Endpoint(EndpointCommand::Add {
            ip,
            namespace,
            labels,
        }) => {
            let spec = proto::EndpointSpec {
                ip: *ip,
                namespace: namespace.clone(),
                labels: labels.iter().cloned().collect(),
                port: None,
            };
            match ask(cli, &Request::EndpointAdd(spec))? {
                Reply::Endpoints(list) if cli.json => pretty(&list),
                Reply::Endpoints(list) => Ok(render::endpoint_table(&list)),
                other => Err(unexpected(&other)),
            }
        }
        Command::Endpoint(EndpointCommand::Del { ip }) => {
            match ask(cli, &Request::EndpointDel { ip: *ip })? {
                Reply::Removed(removed) if cli.json => {
                    pretty(&serde_json::json!({ "ip": ip, "removed": removed }))
                }
                Reply::Removed(true) => Ok(format!("endpoint {ip} removed\n")),
                Reply::Removed(false) => Ok(format!("no endpoint {ip}; nothing to do\n")),
                other => Err(unexpected(&other)),
            }
        }
        Command::Endpoint(EndpointCommand::List) => match ask(cli, &Request::EndpointList {})? {
            Reply::Endpoints(list) if cli.json => pretty(&list),
            Reply::Endpoints(list) => Ok(render::endpoint_table(&list)),
            other => Err(unexpected(&other)),
        },
        Command::Namespace(NamespaceCommand::Set { name, labels }) => {
            let spec = proto::NamespaceSpec {
                name: name.clone(),
                labels: labels.iter().cloned().collect(),
            };
            match ask(cli, &Request::NamespaceSet(spec))? {
                Reply::Namespaces(list) if cli.json => pretty(&list),
                Reply::Namespaces(list) => Ok(render::namespace_table(&list)),
                other => Err(unexpected(&other)),
            }
        }
        Command::Namespace(NamespaceCommand::List) => match ask(cli, &Request::NamespaceList {})? {
            Reply::Namespaces(list) if cli.json => pretty(&list),
            Reply::Namespaces(list) => Ok(render::namespace_table(&list)),
            other => Err(unexpected(&other)),
        },
        Command::Stats => match ask(cli, &Request::Stats {})? {
            Reply::Stats(s) if cli.json => pretty(&s),
            Reply::Stats(s) => Ok(render::stats(&s)),
            other => Err(unexpected(&other)),
        },
        Command::Node => match ask(cli, &Request::Node {})? {
            Reply::Node(n) if cli.json => pretty(&n),
            Reply::Node(n) => Ok(render::node(&n)),
            other => Err(unexpected(&other)),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                // `vswitchctl stats | head`: the reader left; that is not our failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vswitchctl: writing output: {e}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
        Err(f) => {
            eprintln!("vswitchctl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeouts_and_macs_are_checked() {
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
        assert_eq!(
            parse_mac("0A:58:0a:f4:01:05").as_deref(),
            Ok("0a:58:0a:f4:01:05")
        );
        assert!(parse_mac("0a:58:0a:f4:01").is_err());
        assert!(parse_mac("0a:58:0a:f4:01:zz").is_err());
    }

    #[test]
    fn every_verb_has_an_example() {
        let mut cmd = Cli::command();
        cmd.build();
        fn walk(c: &clap::Command, path: &str) {
            let help = c
                .get_after_help()
                .map(|s| s.to_string())
                .unwrap_or_default();
            assert!(help.contains("Examples:"), "{path} has no example");
            for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&cmd, "vswitchctl");
    }
}
