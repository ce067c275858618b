//! Harness for the node integration tests: namespaces, a vswitchd per node, helpers.
//!
//! Contract: a [`Lab`] is one test's world. Its names start with a prefix unique to the test
//! (`vt<pid>x<n>-`), its files live in its own temp dir, and its Drop kills only the helper
//! processes it spawned (by PID), deletes only the namespaces it created and removes its temp
//! dir, even when the test fails. A [`Node`] is one vswitchd started by the test inside a node
//! namespace of the lab; its Drop kills that daemon (by PID) if it still runs and, when the test
//! is failing, prints the daemon's log. Nothing here touches the root namespace: every command
//! runs under `ip netns exec`/`ip -n` in a lab namespace.

// Each test binary uses a different subset of this harness.
#![allow(dead_code)]

use ctl::proto::{ErrorCode, PortAdd, PortCounters, PortInfo, Reply, Request, Response, Stats};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The daemon under test.
pub const VSWITCHD: &str = env!("CARGO_BIN_EXE_vswitchd");
/// How long a control request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon may take to answer on its socket after start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for any helper command (ping, iperf3, ...), so nothing hangs a test.
const COMMAND_TIMEOUT_SECS: &str = "20";

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);
static CPU_HEAVY: Mutex<()> = Mutex::new(());

/// Held around phases that load the CPUs (iperf3) or measure CPU time, so that on a small
/// machine a busy-polling daemon and a bulk transfer of a parallel test do not distort each
/// other. Correctness never depends on it.
pub fn cpu_heavy() -> MutexGuard<'static, ()> {
    CPU_HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The CPU ordinary test daemons pin their worker to (the last one), and the one a
/// busy-polling daemon uses (the first one, away from the others).
pub fn quiet_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// Output of a command run in a namespace.
#[derive(Debug)]
pub struct Out {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Exited 0.
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Both streams, for messages.
    pub fn text(&self) -> String {
        format!(
            "[{}] stdout: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn output(cmd: &mut Command) -> Out {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One test's namespaces, temp dir and helper processes.
pub struct Lab {
    /// `vt<pid>x<n>`: every namespace is `<id>-<name>`.
    pub id: String,
    /// The test's temp dir (configs, sockets, state, logs).
    pub dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    helpers: Mutex<Vec<Child>>,
}

impl Lab {
    /// A fresh lab with a unique prefix and an empty temp dir.
    pub fn new() -> Lab {
        let id = format!(
            "vt{}x{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's temp dir");
        Lab {
            id,
            dir,
            namespaces: Mutex::new(Vec::new()),
            helpers: Mutex::new(Vec::new()),
        }
    }

    /// Creates namespace `<id>-<name>` with `lo` up and returns its name.
    pub fn netns(&self, name: &str) -> String {
        let ns = format!("{}-{name}", self.id);
        // A leftover of an earlier run with the same pid would make `add` fail.
        let _ = output(Command::new("ip").args(["netns", "del", &ns]));
        let out = output(Command::new("ip").args(["netns", "add", &ns]));
        assert!(out.ok(), "ip netns add {ns}: {}", out.text());
        self.namespaces.lock().unwrap().push(ns.clone());
        self.ip(&ns, &["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`, asserting success; stdout.
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        let out = self.try_ip(ns, args);
        assert!(out.ok(), "ip -n {ns} {args:?}: {}", out.text());
        out.stdout
    }

    /// `ip -n NS ARGS...`.
    pub fn try_ip(&self, ns: &str, args: &[&str]) -> Out {
        self.assert_ours(ns);
        output(Command::new("ip").args(["-n", ns]).args(args))
    }

    /// `ip netns exec NS timeout 20 CMD...`.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Out {
        self.assert_ours(ns);
        output(
            Command::new("ip")
                .args(["netns", "exec", ns, "timeout", COMMAND_TIMEOUT_SECS])
                .args(cmd),
        )
    }

    /// `ip netns exec NS timeout SECS CMD...`: [`Lab::exec`] for commands that run longer than
    /// its 20 s bound (a soak's traffic generators).
    pub fn exec_for(&self, ns: &str, secs: u64, cmd: &[&str]) -> Out {
        self.assert_ours(ns);
        output(
            Command::new("ip")
                .args(["netns", "exec", ns, "timeout", &secs.to_string()])
                .args(cmd),
        )
    }

    /// `ip netns exec NS timeout 20 CMD...` with `env` added to the environment and `stdin`
    /// written to its standard input (how a CNI runtime runs a plugin).
    pub fn exec_with(&self, ns: &str, cmd: &[&str], env: &[(&str, &str)], stdin: &str) -> Out {
        use std::io::Write;
        self.assert_ours(ns);
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", COMMAND_TIMEOUT_SECS])
            .args(cmd)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} in {ns}: {e}"));
        // A command that exits without reading its input is not an error here.
        let _ = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes());
        let out = child.wait_with_output().expect("wait for the command");
        Out {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `CMD...` in `ns` in the background; it is killed (by PID) when the lab drops.
    /// `ip netns exec` execs the command, so the child's PID is the command's.
    pub fn spawn(&self, ns: &str, cmd: &[&str]) -> u32 {
        self.assert_ours(ns);
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?} in {ns}: {e}"));
        let pid = child.id();
        self.helpers.lock().unwrap().push(child);
        pid
    }

    fn assert_ours(&self, ns: &str) {
        assert!(
            self.namespaces.lock().unwrap().iter().any(|n| n == ns),
            "{ns} is not a namespace of this test"
        );
    }

    /// The names of the network interfaces in `ns` (`ip -o link show`).
    pub fn links(&self, ns: &str) -> Vec<String> {
        self.ip(ns, &["-o", "link", "show"])
            .lines()
            .filter_map(|l| {
                let name = l.split(": ").nth(1)?;
                Some(name.split('@').next().unwrap_or(name).to_string())
            })
            .collect()
    }

    /// `ping -c 3 -i 0.2 -W 1 [EXTRA...] DST` from `ns`.
    pub fn ping(&self, ns: &str, dst: &str, extra: &[&str]) -> Out {
        let mut cmd = vec!["ping", "-c", "3", "-i", "0.2", "-W", "1"];
        cmd.extend_from_slice(extra);
        cmd.push(dst);
        self.exec(ns, &cmd)
    }

    /// Asserts that `ns` pings `dst` without loss.
    pub fn assert_ping(&self, ns: &str, dst: &str) {
        let out = self.ping(ns, dst, &[]);
        assert!(
            out.ok() && out.stdout.contains(" 0% packet loss"),
            "ping {ns} -> {dst} failed: {}",
            out.text()
        );
    }

    /// Waits until something in `ns` listens on TCP `port`.
    pub fn wait_listening(&self, ns: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let want = format!(":{port}");
        loop {
            let out = self.exec(ns, &["ss", "-Hltn"]);
            if out.stdout.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|local| local.ends_with(&want))
            }) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on TCP {port} in {ns}: {}",
                out.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A 2 s iperf3 TCP test: a one-shot server in `server_ns` bound to `addr`, the client in
    /// `client_ns`. Asserts that it completed; returns the client's JSON report.
    pub fn iperf(&self, server_ns: &str, addr: &str, client_ns: &str) -> Iperf {
        self.spawn(server_ns, &["iperf3", "-s", "-1", "-B", addr]);
        self.wait_listening(server_ns, 5201);
        let out = self.exec(
            client_ns,
            &[
                "iperf3",
                "-c",
                addr,
                "-t",
                "2",
                "-J",
                "--connect-timeout",
                "3000",
            ],
        );
        let json: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("iperf3 printed no JSON ({e}): {}", out.text()));
        assert!(
            out.ok() && json.get("error").is_none(),
            "iperf3 {client_ns} -> {addr} failed: {}",
            out.text()
        );
        let bytes = |which: &str| {
            json["end"][which]["bytes"]
                .as_u64()
                .unwrap_or_else(|| panic!("no end.{which}.bytes in {}", out.stdout))
        };
        Iperf {
            sent: bytes("sum_sent"),
            received: bytes("sum_received"),
        }
    }

    /// An exact TCP transfer: a one-shot receiver in `server_ns` on `addr`:5301 reads until
    /// EOF and answers with the byte count and SHA-256 of what it got; the sender in
    /// `client_ns` sends `bytes` pseudo-random bytes, half-closes and reads that answer.
    /// Unlike iperf3 (whose receiver stops counting when the sender's "test end" message
    /// arrives, while data may still be queued: esnet/iperf#382, #994), this compares
    /// everything that was written with everything that arrived.
    pub fn tcp_transfer(
        &self,
        server_ns: &str,
        addr: &str,
        client_ns: &str,
        bytes: usize,
    ) -> Transfer {
        const RECEIVER: &str = "import hashlib, socket, sys\n\
            l = socket.create_server((sys.argv[1], 5301))\n\
            c, _ = l.accept()\n\
            h = hashlib.sha256(); n = 0\n\
            while True:\n    b = c.recv(1 << 20)\n    if not b: break\n    n += len(b); h.update(b)\n\
            c.sendall(('%d %s\\n' % (n, h.hexdigest())).encode())\n\
            c.close()\n";
        const SENDER: &str = "import hashlib, os, random, socket, sys\n\
            total = int(sys.argv[2]); block = random.Random(7).randbytes(1 << 20)\n\
            h = hashlib.sha256(); n = 0\n\
            s = socket.create_connection((sys.argv[1], 5301), timeout=15)\n\
            while n < total:\n    b = block[:min(len(block), total - n)]\n    s.sendall(b); h.update(b); n += len(b)\n\
            s.shutdown(socket.SHUT_WR)\n\
            reply = s.makefile().readline().split()\n\
            print(n, h.hexdigest(), reply[0], reply[1])\n";
        self.spawn(server_ns, &[python(), "-c", RECEIVER, addr]);
        self.wait_listening(server_ns, 5301);
        let total = bytes.to_string();
        let out = self.exec(client_ns, &[python(), "-c", SENDER, addr, &total]);
        assert!(
            out.ok(),
            "TCP transfer {client_ns} -> {addr}: {}",
            out.text()
        );
        let f: Vec<&str> = out.stdout.split_whitespace().collect();
        assert_eq!(f.len(), 4, "{}", out.text());
        Transfer {
            sent: f[0].parse().unwrap(),
            received: f[2].parse().unwrap(),
            intact: f[1] == f[3],
        }
    }

    /// Starts a vswitchd in a new node namespace `<id>-<name>` with `conf`.
    pub fn node(&self, name: &str, conf: &Conf) -> Node<'_> {
        let ns = self.netns(name);
        self.node_in(&ns, name, conf)
    }

    /// Starts a vswitchd in the existing lab namespace `ns`; its files go to `<dir>/<name>/`.
    pub fn node_in(&self, ns: &str, name: &str, conf: &Conf) -> Node<'_> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).expect("create the node's dir");
        let config = dir.join("config.toml");
        let socket = dir.join("sock");
        std::fs::write(&config, conf.render(name, &socket, &dir.join("state")))
            .expect("write config.toml");
        let mut node = Node {
            lab: self,
            ns: ns.to_string(),
            config,
            socket,
            log: dir.join("log"),
            child: None,
        };
        node.start();
        node
    }

    /// Runs vswitchd in `ns` (to completion, at most 20 s) with `args`.
    pub fn run_vswitchd(&self, ns: &str, args: &[&str]) -> Out {
        let mut cmd = vec![VSWITCHD];
        cmd.extend_from_slice(args);
        self.exec(ns, &cmd)
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.helpers.lock().unwrap().drain(..) {
            // Kills by PID only a process this lab started (and reaps it); a no-op error if it
            // already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.lock().unwrap().drain(..).rev() {
            let out = output(Command::new("ip").args(["netns", "del", &ns]));
            if !out.ok() {
                eprintln!("cleanup: ip netns del {ns}: {}", out.text());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The parts of config.toml a test varies.
#[derive(Clone, Debug)]
pub struct Conf {
    /// `node.uplink`.
    pub uplink: Option<String>,
    /// `datapath.idle`.
    pub idle: &'static str,
    /// `datapath.cpus = [cpu]`.
    pub cpu: usize,
    /// Node number N: pod_cidr 10.244.N.0/24, node_ip 192.168.77.N.
    pub index: u8,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            uplink: None,
            idle: "adaptive",
            cpu: quiet_cpu(),
            index: 1,
        }
    }
}

impl Conf {
    /// The config file text.
    pub fn render(&self, name: &str, socket: &Path, state_dir: &Path) -> String {
        let uplink = self
            .uplink
            .as_ref()
            .map(|u| format!("uplink = \"{u}\"\n"))
            .unwrap_or_default();
        format!(
            "[node]\n\
             name = \"{name}\"\n\
             pod_cidr = \"10.244.{n}.0/24\"\n\
             cluster_cidr = \"10.244.0.0/16\"\n\
             node_ip = \"192.168.77.{n}\"\n\
             {uplink}\
             [datapath]\n\
             cpus = [{cpu}]\n\
             idle = \"{idle}\"\n\
             [control]\n\
             socket = \"{socket}\"\n\
             state_dir = \"{state}\"\n",
            n = self.index,
            cpu = self.cpu,
            idle = self.idle,
            socket = socket.display(),
            state = state_dir.display(),
        )
    }
}

/// The result of an iperf3 run, from the client's report.
#[derive(Debug)]
pub struct Iperf {
    /// `end.sum_sent.bytes`.
    pub sent: u64,
    /// `end.sum_received.bytes`.
    pub received: u64,
}

/// The result of [`Lab::tcp_transfer`].
#[derive(Debug)]
pub struct Transfer {
    /// Bytes the sender wrote.
    pub sent: u64,
    /// Bytes the receiver read before EOF.
    pub received: u64,
    /// Whether the SHA-256 of both sides match.
    pub intact: bool,
}

/// One vswitchd started by the test in a node namespace.
pub struct Node<'a> {
    lab: &'a Lab,
    /// The node namespace.
    pub ns: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node<'_> {
    /// Starts the daemon and waits until its socket answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "vswitchd already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the daemon log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, VSWITCHD, "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .expect("start vswitchd");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("wait") {
                self.child = None;
                panic!("vswitchd exited at start ({status}):\n{}", self.log());
            }
            if let Ok(Response::Ok { .. }) =
                ctl::client::call(&self.socket, &Request::Node {}, CALL_TIMEOUT)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd did not answer on {} within {START_TIMEOUT:?}:\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // `ip netns exec` execs: the child is the daemon itself, the only process we signal.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid())).unwrap();
        assert_eq!(comm.trim(), "vswitchd", "the started PID is vswitchd");
    }

    /// The daemon's PID (it must be running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("vswitchd is running").id()
    }

    /// Whether the daemon still runs.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("wait").is_none(),
            None => false,
        }
    }

    /// SIGTERM, then waits up to `within`; the exit status, or None if it is still running
    /// (the Drop kills it then).
    pub fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("vswitchd is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
        if child.try_wait().expect("wait").is_none() {
            // SAFETY: kill(2) on the PID of our own unreaped child: it cannot have been reused.
            let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
            assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (no chance to clean up), then reaps it; its exit status.
    pub fn kill9(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("vswitchd is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
        if child.try_wait().expect("wait").is_none() {
            // SAFETY: kill(2) on the PID of our own unreaped child: it cannot have been reused.
            let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
            assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        }
        let status = child.wait().expect("reap vswitchd");
        self.child = None;
        status
    }

    /// Starts the daemon expecting it to refuse to run: waits up to `within` for it to exit and
    /// returns its exit status and what it logged in this run. Panics (after killing it) if it
    /// is still running then.
    pub fn start_expect_failure(&mut self, within: Duration) -> (ExitStatus, String) {
        assert!(self.child.is_none(), "vswitchd already running");
        let offset = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the daemon log");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, VSWITCHD, "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .expect("start vswitchd");
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                // Our own child, by PID.
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "vswitchd still ran {within:?} after start, expected it to refuse:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = self.log();
        (status, text.get(offset..).unwrap_or(&text).to_string())
    }

    /// The daemon's state file (`<state_dir>/state.json`).
    pub fn state_file(&self) -> PathBuf {
        self.config
            .parent()
            .expect("config in the node's dir")
            .join("state")
            .join("state.json")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One control request.
    pub fn call(&self, request: &Request) -> Response {
        ctl::client::call(&self.socket, request, CALL_TIMEOUT)
            .unwrap_or_else(|e| panic!("control request {request:?}: {e}\n{}", self.log()))
    }

    /// `tunnel add` to node `peer` (192.168.77.PEER, pod subnet 10.244.PEER.0/24), asserting
    /// success.
    pub fn tunnel_add(
        &self,
        name: &str,
        kind: ctl::proto::TunnelKind,
        peer: u8,
        vtep_mac: Option<String>,
    ) {
        let spec = ctl::proto::TunnelSpec {
            name: name.into(),
            kind,
            remote: format!("192.168.77.{peer}").parse().unwrap(),
            subnet: format!("10.244.{peer}.0/24").parse().unwrap(),
            vni: None,
            vtep_mac,
            port: None,
        };
        match self.call(&Request::TunnelAdd(spec)) {
            Response::Ok { .. } => {}
            other => panic!("tunnel add {name}: {other:?}"),
        }
    }

    /// Waits until every tunnel has a resolved next hop.
    pub fn wait_tunnels_resolved(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Response::Ok {
                result: Reply::Tunnels(list),
            } = self.call(&Request::TunnelList {})
            else {
                panic!("tunnel list failed")
            };
            if list.iter().all(|t| t.next_hop_mac.is_some()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "next hops unresolved after 10 s: {list:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `port add` with every field given.
    pub fn port_add_req(&self, req: PortAdd) -> Response {
        self.call(&Request::PortAdd(req))
    }

    /// `port add --netns POD_NS --id ID`, asserting success.
    pub fn port_add(&self, pod_ns: &str, id: &str) -> PortInfo {
        let r = self.port_add_req(PortAdd {
            netns: pod_ns.into(),
            id: id.into(),
            ifname: "eth0".into(),
            ip: None,
            mac: None,
            namespace: None,
            labels: Default::default(),
        });
        match r {
            Response::Ok {
                result: Reply::Port(p),
            } => p,
            other => panic!("port add {id} in {pod_ns}: {other:?}\n{}", self.log()),
        }
    }

    /// `port del --id ID`: whether something was removed.
    pub fn port_del(&self, id: &str) -> bool {
        match self.call(&Request::PortDel {
            id: id.into(),
            ifname: "eth0".into(),
        }) {
            Response::Ok {
                result: Reply::Removed(r),
            } => r,
            other => panic!("port del {id}: {other:?}"),
        }
    }

    /// `port list`.
    pub fn port_list(&self) -> Vec<PortInfo> {
        match self.call(&Request::PortList {}) {
            Response::Ok {
                result: Reply::Ports(p),
            } => p,
            other => panic!("port list: {other:?}"),
        }
    }

    /// `stats`.
    pub fn stats(&self) -> Stats {
        match self.call(&Request::Stats {}) {
            Response::Ok {
                result: Reply::Stats(s),
            } => s,
            other => panic!("stats: {other:?}"),
        }
    }

    /// The counters of port `name` (its host-side interface name).
    pub fn port_stats(&self, name: &str) -> PortCounters {
        let stats = self.stats();
        stats
            .ports
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no port {name} in stats: {stats:#?}"))
    }

    /// Polls port `name`'s counters until `cond` holds (at most 3 s); the last counters.
    pub fn wait_port_stats(
        &self,
        name: &str,
        cond: impl Fn(&PortCounters) -> bool,
    ) -> PortCounters {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let c = self.port_stats(name);
            if cond(&c) || Instant::now() >= deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        proc_status_field(self.pid(), "VmRSS:")
    }

    /// The daemon's thread count (`Threads` of /proc/PID/status).
    pub fn threads(&self) -> u64 {
        proc_status_field(self.pid(), "Threads:")
    }

    /// How many files the daemon has open (entries of /proc/PID/fd).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Waits (at most 3 s) until the daemon serves no control client any more (no
    /// `vswitch-client` thread: the connection of a request that was just answered closes a
    /// moment after the answer), so that its thread and file counts are the quiet ones.
    pub fn wait_clients_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let task_dir = format!("/proc/{}/task", self.pid());
        loop {
            let clients = std::fs::read_dir(&task_dir)
                .map(|d| {
                    d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                        .filter(|comm| comm.trim() == "vswitch-client")
                        .count()
                })
                .unwrap_or(0);
            if clients == 0 || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first worker's `frames_in_use` gauge: frames of its UMEM out of the free pool (in
    /// fill, RX and TX rings and in flight). The worker updates it only after a poll round that
    /// moved frames, so a reading reflects the last burst of traffic.
    pub fn frames_in_use(&self) -> u64 {
        let stats = self.stats();
        stats
            .workers
            .first()
            .unwrap_or_else(|| panic!("no worker in stats: {stats:#?}"))
            .frames_in_use
    }

    /// CPU seconds (user + system, all threads) the daemon has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // Fields after the command name (which may hold spaces) start at field 3 ("state");
        // utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("comm in stat") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / clock_ticks() as f64
    }
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child, by PID; it detaches its XDP programs as it dies (bpf links).
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- vswitchd log of {} ----\n{}",
                self.ns,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let _ = &self.lab; // the lab outlives the node: it deletes the namespace afterwards
    }
}

/// A numeric field of /proc/PID/status (`VmRSS:` in kB, `Threads:`, ...).
pub fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

/// `getconf CLK_TCK`.
pub fn clock_ticks() -> u64 {
    let out = output(Command::new("getconf").arg("CLK_TCK"));
    assert!(out.ok(), "getconf CLK_TCK: {}", out.text());
    out.stdout.trim().parse().expect("CLK_TCK is a number")
}

/// The gateway of node 1's pods (pod CIDR 10.244.1.0/24).
pub const GATEWAY: &str = "10.244.1.1";

/// A pod's address, as text.
pub fn addr(p: &PortInfo) -> String {
    p.ip.addr().to_string()
}

/// Adds one pod per name, each in a new namespace `<id>-<name>` with container id `<id>-<name>`.
pub fn pods(lab: &Lab, node: &Node, names: &[&str]) -> Vec<(String, PortInfo)> {
    names
        .iter()
        .map(|name| {
            let ns = lab.netns(name);
            let info = node.port_add(&ns, &format!("{}-{name}", lab.id));
            (ns, info)
        })
        .collect()
}

/// The error code of a response, or None for success.
pub fn error_code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error { code, .. } => Some(*code),
        Response::Ok { .. } => None,
    }
}

/// A Python 3 interpreter (the system one, which `ip netns exec` finds without a user PATH).
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Builds binary `name` of the `ctl` package with the cargo, profile and target directory of the
/// `vswitchd` under test (a no-op when it is fresh) and returns its path.
pub fn build_ctl_binary(name: &str) -> PathBuf {
    let bin_dir = Path::new(VSWITCHD)
        .parent()
        .expect("vswitchd lives in a directory");
    let profile = match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory in {}", bin_dir.display()),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--locked", "-q", "-p", "ctl", "--bin", name])
        .args(["--profile", profile, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(bin_dir.parent().expect("a target directory"))
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build -p ctl --bin {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = bin_dir.join(name);
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// An underlay namespace with a bridge; hosts on it get `eth0` = 192.168.77.N/24.
pub struct Underlay<'a> {
    /// The lab it belongs to.
    pub lab: &'a Lab,
    /// The underlay namespace (holds the bridge `br0`).
    pub ns: String,
}

impl<'a> Underlay<'a> {
    /// A fresh underlay bridge in namespace `<id>-ul`.
    pub fn new(lab: &'a Lab) -> Underlay<'a> {
        let ns = lab.netns("ul");
        lab.ip(&ns, &["link", "add", "br0", "type", "bridge"]);
        lab.ip(&ns, &["link", "set", "br0", "up"]);
        Underlay { lab, ns }
    }

    /// A host namespace wired to the underlay as 192.168.77.`index`.
    pub fn host(&self, name: &str, index: u8) -> String {
        let ns = self.lab.netns(name);
        let port = format!("u{index}");
        self.lab.ip(
            &ns,
            &["link", "add", "eth0", "type", "veth", "peer", "name", &port],
        );
        self.lab.ip(&ns, &["link", "set", &port, "netns", &self.ns]);
        self.lab
            .ip(&self.ns, &["link", "set", &port, "master", "br0", "up"]);
        let addr = format!("192.168.77.{index}/24");
        self.lab.ip(&ns, &["addr", "add", &addr, "dev", "eth0"]);
        self.lab.ip(&ns, &["link", "set", "eth0", "up"]);
        // A veth hands its peer packets whose checksums the sender's stack left for the NIC to
        // finish; a real NIC finishes them on the wire. Make this underlay a faithful wire, so
        // tunnel packets from kernel nodes arrive with the checksums they carry on a network.
        let out = self.lab.exec(&ns, &["ethtool", "-K", "eth0", "tx", "off"]);
        assert!(out.ok(), "{}", out.text());
        ns
    }

    /// A vswitch node N (namespace `<id>-nN`) with uplink eth0 on the underlay.
    pub fn vswitch_node(&self, index: u8) -> Node<'a> {
        let ns = self.host(&format!("n{index}"), index);
        let conf = Conf {
            uplink: Some("eth0".into()),
            index,
            ..Conf::default()
        };
        self.lab.node_in(&ns, &format!("n{index}"), &conf)
    }
}
