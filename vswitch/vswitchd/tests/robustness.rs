//! vswitchd under abuse: `kill -9` in the middle of a transfer, a corrupt state file, a control
//! socket fed garbage by many clients while pods talk, and a capture that tcpdump must read.
//!
//! Needs root, `ip`, `ping`, `iperf3`, `ss`, `tcpdump` and python3; nothing is skipped. Every
//! test builds its own namespaces (prefix `vt<pid>x<n>-`), starts its own vswitchd inside its
//! node namespace (socket and state in its own temp dir) and removes all of it when it ends,
//! pass or fail (see `common`). `vswitchctl` belongs to the `ctl` package, so the capture test
//! builds it with the cargo that builds this test (a no-op when it is fresh) into the same
//! target directory. Run with `cargo test -p vswitchd --test robustness -- --test-threads=2`.

mod common;

use common::{addr, cpu_heavy, pods, Conf, Lab, Node, GATEWAY};
use ctl::proto::{ErrorCode, PortInfo, Reply, Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `port list`, in container id order.
fn sorted_ports(node: &Node) -> Vec<PortInfo> {
    let mut ports = node.port_list();
    ports.sort_by(|a, b| (&a.id, &a.ifname).cmp(&(&b.id, &b.ifname)));
    ports
}

/// Seconds since the epoch (the clock `ping -D` stamps its lines with).
fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The `[epoch]` stamps of the echo replies in `ping -D` output.
fn reply_stamps(ping_stdout: &str) -> Vec<f64> {
    ping_stdout
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// (transmitted, received) from ping's summary line.
fn ping_counts(ping_stdout: &str) -> (u64, u64) {
    let line = ping_stdout
        .lines()
        .find(|l| l.contains(" packets transmitted, "))
        .unwrap_or_else(|| panic!("no ping summary in: {ping_stdout}"));
    let number = |field: &str| -> u64 {
        line.split(", ")
            .find(|f| f.ends_with(field))
            .and_then(|f| f.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no '{field}' in {line}"))
    };
    (number("packets transmitted"), number("received"))
}

/// Whether an XDP program is attached to any interface of `ns`; the listing.
fn xdp_attached(lab: &Lab, ns: &str) -> (bool, String) {
    let links = lab.ip(ns, &["-d", "link", "show"]);
    (links.contains("xdp"), links)
}

/// Asserts that each pod's veth pair is still there, addressed as before.
fn assert_veths_intact(lab: &Lab, node: &Node, pods: &[(String, PortInfo)]) {
    for (ns, p) in pods {
        lab.ip(&node.ns, &["link", "show", &p.host_ifname]);
        let eth0 = lab.ip(ns, &["-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            eth0.contains(&format!("inet {}", p.ip)),
            "{} keeps its address: {eth0}",
            p.id
        );
    }
}

#[test]
fn kill_9_during_tcp_then_restart_resumes_quickly() {
    let lab = Lab::new();
    let mut node = lab.node("node", &Conf::default());
    let pods = pods(&lab, &node, &["p1", "p2"]);
    let (ns1, p1) = &pods[0];
    let (ns2, p2) = &pods[1];
    lab.assert_ping(ns1, &addr(p2));
    let before = sorted_ports(&node);
    assert_eq!(before.len(), 2, "{before:?}");
    let (attached, links) = xdp_attached(&lab, &node.ns);
    assert!(attached, "XDP attached while running: {links}");

    let _heavy = cpu_heavy();
    let dst = addr(p2);
    lab.spawn(ns2, &["iperf3", "-s", "-1", "-B", &dst]);
    lab.wait_listening(ns2, 5201);
    let (ping, iperf, kill_at, restart_at, ready_at, restart_took) = std::thread::scope(|s| {
        // A steady ping whose replies carry their arrival time, across kill and restart.
        let ping = s.spawn(|| {
            lab.exec(
                ns1,
                &["ping", "-D", "-n", "-i", "0.02", "-W", "1", "-w", "7", &dst],
            )
        });
        // A TCP transfer that is in flight when the daemon dies and must survive it.
        let iperf = s.spawn(|| {
            lab.exec(
                ns1,
                &[
                    "iperf3",
                    "-c",
                    &dst,
                    "-t",
                    "7",
                    "-i",
                    "1",
                    "-J",
                    "--connect-timeout",
                    "3000",
                ],
            )
        });
        std::thread::sleep(Duration::from_millis(1500));

        let kill_at = epoch_now();
        let status = node.kill9();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status}"
        );
        // The XDP programs hang on bpf_links owned by the dead process: the kernel detached
        // them when its files were closed, before it could be reaped.
        let (attached, links) = xdp_attached(&lab, &node.ns);
        assert!(!attached, "XDP left attached after kill -9: {links}");
        assert_veths_intact(&lab, &node, &pods);
        std::thread::sleep(Duration::from_millis(300));

        let restart_at = epoch_now();
        let started = Instant::now();
        node.start();
        let restart_took = started.elapsed();
        let ready_at = epoch_now();
        let after = sorted_ports(&node);
        assert_eq!(after, before, "port list after kill -9 and restart");
        (
            ping.join().unwrap(),
            iperf.join().unwrap(),
            kill_at,
            restart_at,
            ready_at,
            restart_took,
        )
    });

    let stamps = reply_stamps(&ping.stdout);
    let last_before = stamps
        .iter()
        .copied()
        .filter(|t| *t < kill_at)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    assert!(
        last_before.is_some(),
        "the ping worked before the kill: {}",
        ping.text()
    );
    // Nothing forwards while the daemon is dead (a reply in flight at the kill aside).
    let while_dead = stamps
        .iter()
        .filter(|t| **t > kill_at + 0.1 && **t < restart_at)
        .count();
    let first_after = stamps.iter().copied().find(|t| *t >= restart_at);
    let (sent, received) = ping_counts(&ping.stdout);
    eprintln!(
        "kill -9 at {kill_at:.3}; restart took {restart_took:?} (socket answered at \
         {ready_at:.3}); last reply before the kill {:.3}, first after the restart {}; \
         outage {}; {while_dead} replies while dead; ping {received}/{sent}",
        last_before.unwrap(),
        first_after.map_or("none".into(), |t| format!("{t:.3}")),
        first_after.map_or("-".into(), |t| format!(
            "{:.0} ms, {:+.0} ms after the socket answered",
            (t - last_before.unwrap()) * 1000.0,
            (t - ready_at) * 1000.0
        )),
    );
    assert_eq!(
        while_dead,
        0,
        "replies while no daemon ran: {}",
        ping.text()
    );
    let first_after = first_after.unwrap_or_else(|| {
        panic!(
            "no reply after the restart: {}\n{}",
            ping.text(),
            node.log()
        )
    });
    assert!(
        first_after <= ready_at + 1.0,
        "pod1 -> pod2 resumed {:.0} ms after the restarted daemon answered (limit 1000 ms)",
        (first_after - ready_at) * 1000.0
    );

    // The TCP connection that was open across the kill finished, still moving data at its end.
    let json: serde_json::Value = serde_json::from_str(&iperf.stdout)
        .unwrap_or_else(|e| panic!("iperf3 printed no JSON ({e}): {}", iperf.text()));
    assert!(
        iperf.ok() && json.get("error").is_none(),
        "iperf3 across the kill failed: {}",
        iperf.text()
    );
    let intervals: Vec<(f64, u64)> = json["intervals"]
        .as_array()
        .expect("iperf3 intervals")
        .iter()
        .map(|i| {
            (
                i["sum"]["end"].as_f64().unwrap_or(0.0),
                i["sum"]["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    eprintln!(
        "iperf3 across the kill (end s, MB per interval): {:?}",
        intervals
            .iter()
            .map(|(end, b)| (end.round() as u64, b >> 20))
            .collect::<Vec<_>>()
    );
    let last = intervals.last().copied().unwrap_or_default();
    assert!(
        last.1 > 0,
        "the TCP transfer moved data again after the restart: {intervals:?}"
    );
    let received = json["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 0, "{}", iperf.stdout);

    // A fresh connection after the restart delivers every byte.
    let exact = lab.tcp_transfer(ns2, &addr(p2), ns1, 32 << 20);
    assert_eq!(exact.received, exact.sent, "every byte arrived: {exact:?}");
    assert!(exact.intact, "the bytes arrived intact: {exact:?}");
    lab.assert_ping(ns2, &addr(p1));
    lab.assert_ping(ns1, GATEWAY);
}

#[test]
fn corrupted_state_is_refused() {
    let lab = Lab::new();
    let mut node = lab.node("node", &Conf::default());
    let pods = pods(&lab, &node, &["p1"]);
    let (ns1, _) = &pods[0];
    lab.assert_ping(ns1, GATEWAY);
    let before = sorted_ports(&node);
    let status = node.stop(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "SIGTERM: exit status {status:?} within 5 s\n{}",
        node.log()
    );
    let state_file = node.state_file();
    let good =
        std::fs::read(&state_file).unwrap_or_else(|e| panic!("{}: {e}", state_file.display()));
    let text = String::from_utf8(good.clone()).expect("state is text");
    assert!(text.contains(&before[0].id), "the pod is recorded: {text}");

    let half = good[..good.len() / 2].to_vec();
    let wrong_version = text
        .replacen("\"version\": 1", "\"version\": 99", 1)
        .into_bytes();
    assert_ne!(wrong_version, good, "the state names its version: {text}");
    for (what, corrupt) in [
        ("truncated to half", half),
        ("empty", Vec::new()),
        ("an unknown version", wrong_version),
    ] {
        std::fs::write(&state_file, &corrupt).unwrap();
        let started = Instant::now();
        let (status, log) = node.start_expect_failure(Duration::from_secs(10));
        let took = started.elapsed();
        eprintln!("state file {what}: refused in {took:?} with {status}");
        assert_eq!(status.code(), Some(1), "state file {what}: {status}\n{log}");
        assert!(
            took < Duration::from_secs(3),
            "state file {what}: refused only after {took:?}"
        );
        assert!(
            log.contains("corrupt") && log.contains(&state_file.display().to_string()),
            "state file {what}: the message says it is corrupt and names {}:\n{log}",
            state_file.display()
        );
        // Nothing forgotten, nothing deleted, nothing half set up.
        assert_eq!(
            std::fs::read(&state_file).unwrap(),
            corrupt,
            "state file {what}: the refused file is left as it was"
        );
        assert_veths_intact(&lab, &node, &pods);
        let (attached, links) = xdp_attached(&lab, &node.ns);
        assert!(!attached, "state file {what}: XDP attached: {links}");
        assert!(
            !node.socket.exists(),
            "state file {what}: a control socket was left at {}",
            node.socket.display()
        );
    }

    std::fs::write(&state_file, &good).unwrap();
    node.start();
    assert_eq!(sorted_ports(&node), before, "the pod is back");
    lab.assert_ping(ns1, GATEWAY);
}

/// One connection to the control socket, with a timeout on both directions.
fn connect(node: &Node) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(&node.socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", node.socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Reads one response line, which must be a well-formed response.
fn read_response(r: &mut BufReader<UnixStream>, what: &str) -> Response {
    let mut line = String::new();
    let n = r
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    assert!(n > 0, "{what}: the connection closed without an answer");
    assert!(
        line.ends_with('\n'),
        "{what}: an unterminated answer {line:?}"
    );
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{what}: a malformed answer ({e}): {line:?}"))
}

/// Asserts a `bad_request` error.
fn assert_bad_request(r: &Response, what: &str) {
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{what}: expected bad_request, got {r:?}"
    );
}

/// Asserts a successful answer of the kind `request` calls for.
fn assert_answered(request: &Request, r: &Response, what: &str) {
    assert!(
        answers(request, r),
        "{what}: {request:?} answered with {r:?}"
    );
}

/// The abusive requests, each on a connection that must stay usable afterwards.
fn abuse_once(node: &Node, pod_port: &str) {
    let node_req = b"{\"verb\":\"node\"}\n";
    let nested = format!("{}\n", "[".repeat(60_000));
    let bad_trace =
        format!("{{\"verb\":\"trace\",\"port\":\"{pod_port}\",\"frame\":\"zzz not a frame\"}}\n");
    let bad_lines: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"garbage\n".to_vec()),
        ("binary", b"\xff\xfe\x00\x01binary\n".to_vec()),
        ("an empty line", b"\n".to_vec()),
        ("a CRLF line", b"{\"verb\":\"explode\"}\r\n".to_vec()),
        ("an unknown verb", b"{\"verb\":\"explode\"}\n".to_vec()),
        ("no verb", b"{}\n".to_vec()),
        ("a JSON array", b"[]\n".to_vec()),
        ("JSON null", b"null\n".to_vec()),
        ("a number", b"42\n".to_vec()),
        (
            "a wrong type",
            b"{\"verb\":\"port_del\",\"id\":5}\n".to_vec(),
        ),
        (
            "a wrong type in capture",
            b"{\"verb\":\"capture\",\"port\":\"x\",\"count\":\"many\"}\n".to_vec(),
        ),
        (
            "a negative count",
            b"{\"verb\":\"capture\",\"port\":\"x\",\"count\":-1}\n".to_vec(),
        ),
        (
            "an unknown field",
            b"{\"verb\":\"port_list\",\"extra\":1}\n".to_vec(),
        ),
        (
            "a missing field",
            b"{\"verb\":\"port_add\",\"id\":\"x\"}\n".to_vec(),
        ),
        (
            "a bad CIDR",
            b"{\"verb\":\"tunnel_add\",\"name\":\"t\",\"kind\":\"ipip\",\"remote\":\"192.168.77.9\",\"subnet\":\"not-a-cidr\"}\n"
                .to_vec(),
        ),
        (
            "an unknown tunnel kind",
            b"{\"verb\":\"tunnel_add\",\"name\":\"t\",\"kind\":\"gre\",\"remote\":\"192.168.77.9\",\"subnet\":\"10.244.9.0/24\"}\n"
                .to_vec(),
        ),
        ("60000 nested arrays", nested.into_bytes()),
        (
            "a zero capture count",
            b"{\"verb\":\"capture\",\"port\":\"vsw0-sw\",\"count\":0}\n".to_vec(),
        ),
        ("a trace of garbage", bad_trace.into_bytes()),
    ];
    let (mut w, mut r) = connect(node);
    for (what, line) in &bad_lines {
        w.write_all(line).unwrap();
        let resp = read_response(&mut r, what);
        assert_bad_request(&resp, what);
        // The same connection still serves a good request.
        w.write_all(node_req).unwrap();
        assert_answered(&Request::Node {}, &read_response(&mut r, what), what);
    }
    // Valid requests naming nothing that exists: errors or no-ops, never a broken connection.
    for (what, line, want) in [
        (
            "capture of an unknown port",
            &b"{\"verb\":\"capture\",\"port\":\"nope\",\"count\":1,\"timeout_ms\":10}\n"[..],
            Some(ErrorCode::NotFound),
        ),
        (
            "trace of an unknown port",
            &b"{\"verb\":\"trace\",\"port\":\"nope\",\"frame\":\"icmp 10.244.1.2 > 10.244.1.3\"}\n"
                [..],
            Some(ErrorCode::NotFound),
        ),
        (
            "port del of an unknown pod",
            &b"{\"verb\":\"port_del\",\"id\":\"no-such-container\"}\n"[..],
            None,
        ),
        (
            "tunnel del of an unknown tunnel",
            &b"{\"verb\":\"tunnel_del\",\"name\":\"no-such-tunnel\"}\n"[..],
            None,
        ),
    ] {
        w.write_all(line).unwrap();
        let resp = read_response(&mut r, what);
        match want {
            Some(code) => assert!(
                matches!(&resp, Response::Error { code: c, .. } if *c == code),
                "{what}: expected {code:?}, got {resp:?}"
            ),
            None => assert!(
                matches!(
                    resp,
                    Response::Ok {
                        result: Reply::Removed(false)
                    }
                ),
                "{what}: {resp:?}"
            ),
        }
    }
    // Many requests in one write, good and bad interleaved: one answer each, in order.
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend_from_slice(if i % 2 == 0 { node_req } else { b"{nope\n" });
    }
    w.write_all(&batch).unwrap();
    for i in 0..100 {
        let what = format!("pipelined request {i}");
        let resp = read_response(&mut r, &what);
        if i % 2 == 0 {
            assert_answered(&Request::Node {}, &resp, &what);
        } else {
            assert_bad_request(&resp, &what);
        }
    }
    drop((w, r));

    // Past the request limit (which a 10,000-rule policy document must fit under).
    let mb = vec![b'x'; ctl::proto::MAX_REQUEST_BYTES + 4096];
    // An oversize line, then its newline a moment later: refused, and the connection goes on.
    let (mut w, mut r) = connect(node);
    w.write_all(&mb).unwrap();
    w.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    w.write_all(b"\n").unwrap();
    assert_bad_request(
        &read_response(&mut r, "an oversize line"),
        "an oversize line",
    );
    w.write_all(node_req).unwrap();
    let what = "after an oversize line";
    assert_answered(&Request::Node {}, &read_response(&mut r, what), what);
    // An oversize request that would be valid if it were not so long.
    let mut big = b"{\"verb\":\"port_del\",\"id\":\"".to_vec();
    big.extend_from_slice(&mb);
    big.extend_from_slice(b"\"}\n");
    w.write_all(&big).unwrap();
    let what = "an oversize port_del";
    assert_bad_request(&read_response(&mut r, what), what);
    w.write_all(node_req).unwrap();
    let what = "after an oversize port_del";
    assert_answered(&Request::Node {}, &read_response(&mut r, what), what);
    drop((w, r));

    // An oversize line that never ends: the end of the stream ends it, answered, then closed.
    let (mut w, mut r) = connect(node);
    w.write_all(&mb).unwrap();
    w.shutdown(std::net::Shutdown::Write).unwrap();
    let what = "an oversize line without a newline";
    assert_bad_request(&read_response(&mut r, what), what);
    let mut rest = String::new();
    r.read_line(&mut rest).unwrap();
    assert_eq!(rest, "", "{what}: nothing more after the answer");
    drop((w, r));

    // Half a request, then the client vanishes.
    let (mut w, r) = connect(node);
    w.write_all(b"{\"verb\":\"no").unwrap();
    drop((w, r));
}

/// Whether `r` is a successful answer of the kind `request` calls for.
fn answers(request: &Request, r: &Response) -> bool {
    match (request, r) {
        (Request::Node {}, Response::Ok { result }) => matches!(result, Reply::Node(_)),
        (Request::PortList {}, Response::Ok { result }) => matches!(result, Reply::Ports(_)),
        (Request::Stats {}, Response::Ok { result }) => matches!(result, Reply::Stats(_)),
        _ => false,
    }
}

/// `threads` clients at once, each sending `per_client` requests (node, port list, stats in
/// turn); odd clients use one connection for all of theirs, even ones a connection per request.
/// The number of requests answered as asked, and a description of every other outcome.
fn concurrent_clients(node: &Node, threads: usize, per_client: usize) -> (usize, Vec<String>) {
    let answered = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (answered, failures) = (&answered, &failures);
            s.spawn(move || {
                let mut conn = (t % 2 == 1).then(|| connect(node));
                for i in 0..per_client {
                    let request = match (t + i) % 3 {
                        0 => Request::Node {},
                        1 => Request::PortList {},
                        _ => Request::Stats {},
                    };
                    let what = format!("client {t} request {i}");
                    let outcome = match conn.as_mut() {
                        Some((w, r)) => {
                            let mut line = serde_json::to_vec(&request).unwrap();
                            line.push(b'\n');
                            w.write_all(&line).unwrap();
                            Ok(read_response(r, &what))
                        }
                        None => ctl::client::call(&node.socket, &request, Duration::from_secs(10)),
                    };
                    match outcome {
                        Ok(resp) if answers(&request, &resp) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{what}: {request:?} answered with {resp:?}")),
                        Err(e) => failures.lock().unwrap().push(format!("{what}: {e}")),
                    }
                }
            });
        }
    });
    (answered.into_inner(), failures.into_inner().unwrap())
}

/// The daemon's thread and open file counts.
fn threads_and_fds(node: &Node) -> (usize, usize) {
    let pid = node.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/PID/status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (threads, fds)
}

/// Clients sending good requests at once, and clients connected and silent meanwhile.
const CLIENTS: usize = 50;
const IDLE: usize = 5;

#[test]
fn control_socket_abuse_while_forwarding() {
    let lab = Lab::new();
    let mut node = lab.node("node", &Conf::default());
    let pods = pods(&lab, &node, &["p1", "p2"]);
    let (ns1, p1) = &pods[0];
    let (_, p2) = &pods[1];
    lab.assert_ping(ns1, &addr(p2));

    let meta = std::fs::symlink_metadata(&node.socket).unwrap();
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "the control socket is private to root"
    );
    let baseline = threads_and_fds(&node);

    let dst = addr(p2);
    let done = AtomicBool::new(false);
    let (ping, rounds, answered, failures) = std::thread::scope(|s| {
        let ping = s.spawn(|| {
            let out = lab.exec(ns1, &["ping", "-n", "-i", "0.02", "-c", "200", &dst]);
            done.store(true, Ordering::SeqCst);
            out
        });
        std::thread::sleep(Duration::from_millis(200));
        let mut rounds = 0;
        let mut answered = 0;
        let mut failures = Vec::new();
        // Clients that connect and say nothing hold their slots throughout.
        let idle: Vec<_> = (0..IDLE).map(|_| connect(&node)).collect();
        while rounds == 0 || !done.load(Ordering::SeqCst) {
            let node = &node;
            let abuse = s.spawn(move || abuse_once(node, &p1.host_ifname));
            let (n, failed) = concurrent_clients(node, CLIENTS, 20);
            answered += n;
            failures.extend(failed);
            abuse.join().unwrap();
            rounds += 1;
        }
        drop(idle);
        (ping.join().unwrap(), rounds, answered, failures)
    });
    let (sent, received) = ping_counts(&ping.stdout);
    eprintln!(
        "{rounds} round(s) of abuse, {answered} good requests answered; ping during the abuse: \
         {received}/{sent}"
    );
    // At most CLIENTS + IDLE + 1 (the abuser) connections are open at any time, fewer than
    // the daemon's limit: every good request must be served.
    assert!(
        failures.is_empty(),
        "{} of {} good requests from at most {} simultaneous clients (the daemon allows {}) \
         were not served, e.g.:\n{}",
        failures.len(),
        failures.len() + answered,
        CLIENTS + IDLE + 1,
        vswitchd::control::MAX_CLIENTS,
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        sent >= 150 && received * 100 >= sent * 95,
        "pod1 -> pod2 lost {} of {sent} pings (>= 5%) during the abuse: {}",
        sent - received,
        ping.text()
    );

    assert!(node.running(), "vswitchd died:\n{}", node.log());
    assert_answered(&Request::Node {}, &node.call(&Request::Node {}), "after");
    assert_eq!(sorted_ports(&node).len(), 2);
    // Every client thread and socket of the abuse is gone again.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut now = threads_and_fds(&node);
    while (now.0 > baseline.0 || now.1 > baseline.1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now = threads_and_fds(&node);
    }
    assert!(
        now.0 <= baseline.0 && now.1 <= baseline.1,
        "threads and open files: {baseline:?} before the abuse, {now:?} after"
    );
    let mode = std::fs::metadata(&node.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600);
    lab.assert_ping(ns1, &addr(p2));
    let status = node.stop(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "a clean stop after the abuse: {status:?}\n{}",
        node.log()
    );
}

/// The `vswitchctl` binary next to the `vswitchd` under test, built once per test run.
fn vswitchctl() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::build_ctl_binary("vswitchctl"))
}

#[test]
fn capture_is_readable_by_tcpdump() {
    let ctl = vswitchctl().to_str().expect("UTF-8 path").to_string();
    let lab = Lab::new();
    let node = lab.node("node", &Conf::default());
    let pods = pods(&lab, &node, &["p1", "p2"]);
    let (ns1, p1) = &pods[0];
    let (_, p2) = &pods[1];
    // Neighbours resolved first, so that the capture holds the echoes themselves.
    lab.assert_ping(ns1, &addr(p2));

    let pcap = lab.dir.join("p2.pcap");
    let pcap_arg = pcap.to_str().unwrap().to_string();
    let socket = node.socket.to_str().unwrap().to_string();
    let capture = std::thread::scope(|s| {
        let capture = s.spawn(|| {
            lab.exec(
                &node.ns,
                &[
                    &ctl,
                    "--socket",
                    &socket,
                    "capture",
                    "--port",
                    &p2.host_ifname,
                    "--count",
                    "4",
                    "--wait",
                    "10",
                    "-w",
                    &pcap_arg,
                ],
            )
        });
        // The tap is armed when the daemon has the request (not observable from here: give it
        // a moment); then ping until the capture has its frames.
        std::thread::sleep(Duration::from_millis(300));
        let deadline = Instant::now() + Duration::from_secs(8);
        while !capture.is_finished() && Instant::now() < deadline {
            lab.ping(ns1, &addr(p2), &["-c", "2", "-i", "0.1"]);
        }
        capture.join().unwrap()
    });
    assert!(capture.ok(), "vswitchctl capture: {}", capture.text());
    assert!(
        capture.stdout.contains("captured 4 frame(s)"),
        "{}",
        capture.text()
    );

    let read = lab.exec(
        &node.ns,
        &["tcpdump", "-nn", "-e", "-r", pcap.to_str().unwrap()],
    );
    assert!(read.ok(), "tcpdump -r: {}", read.text());
    assert!(
        read.stderr.contains("link-type EN10MB (Ethernet)"),
        "an Ethernet capture: {}",
        read.text()
    );
    let packets: Vec<&str> = read.stdout.lines().collect();
    eprintln!("tcpdump -nn -e -r {}:\n{}", pcap.display(), read.stdout);
    assert_eq!(packets.len(), 4, "4 packets: {}", read.text());
    let request = format!("{} > {}: ICMP echo request", addr(p1), addr(p2));
    let reply = format!("{} > {}: ICMP echo reply", addr(p2), addr(p1));
    assert!(
        packets
            .iter()
            .any(|l| l.contains(&request) || l.contains(&reply)),
        "ICMP echoes between the pods: {}",
        read.stdout
    );
    assert!(
        packets.iter().all(|l| l.contains(&p2.mac)),
        "every frame is to or from pod2's MAC {}: {}",
        p2.mac,
        read.stdout
    );
}
