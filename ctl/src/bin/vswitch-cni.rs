//! `vswitch-cni`: the CNI plugin (spec 1.0.0 and 1.1.0) that attaches pods to vswitchd.
//!
//! Contract: a container runtime executes it with `CNI_COMMAND` (ADD, DEL, CHECK, VERSION,
//! STATUS, GC) and the other `CNI_*` variables in the environment and the network configuration
//! on stdin (`cniVersion`, `name`, `type`, and `socket`, the daemon's control socket, default
//! `/run/vswitch/vswitch.sock`). It sends at most one request to the daemon and prints the
//! spec's result or error object on stdout; it exits 0 on success, 1 on failure. All the logic
//! is in [`ctl::cni`]; this file only wires the process to it.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How long the daemon may take to answer (ADD creates and configures a veth pair).
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let ask = |socket: &std::path::Path, request: &ctl::proto::Request| {
        ctl::client::call(socket, request, TIMEOUT)
    };
    let outcome = ctl::cni::run(&env, &mut std::io::stdin().lock(), &ask);
    // A runtime that stopped reading cannot be told anything more; the exit status still says it.
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    ExitCode::from(outcome.exit)
}
