//! An optional Prometheus endpoint: `GET /metrics` on `control.metrics` (e.g. 127.0.0.1:9469).
//!
//! Contract: [`MetricsServer::start`] serves the text exposition format (0.0.4) of what
//! `vswitchctl stats` shows: per-port packet and byte counters, drops by reason (the kernel's
//! AF_XDP drops included), events, and per-worker polls, sleeps, time asleep and frames in use.
//! One short-lived thread per scrape, at most [`MAX_SCRAPES`] at once; any request path gets
//! the metrics. Non-goals: TLS and authentication (bind it to a private address).

use ctl::proto::Stats;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most scrapes served at once.
pub const MAX_SCRAPES: usize = 8;

/// The running endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` and answers scrapes with `render()`.
    pub fn start(
        addr: SocketAddr,
        render: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Result<MetricsServer, String> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let busy = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("vswitch-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut stream) = conn else { continue };
                    if busy.fetch_add(1, Ordering::SeqCst) >= MAX_SCRAPES {
                        busy.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let (render, busy) = (Arc::clone(&render), Arc::clone(&busy));
                    let _ = std::thread::Builder::new().spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut request = [0u8; 1024];
                        let _ = stream.read(&mut request);
                        let body = render();
                        let head = format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
                        busy.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(MetricsServer { addr })
    }
}

/// `stats` in the Prometheus text format; `uptime` is the daemon's age in seconds.
pub fn render(stats: &Stats, uptime: f64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(
            out,
            "# HELP vswitch_{name} {help}\n# TYPE vswitch_{name} {kind}"
        );
        for (labels, v) in samples {
            let _ = writeln!(out, "vswitch_{name}{{{labels}}} {v}");
        }
    };
    let port = |p: &ctl::proto::PortCounters| format!("port=\"{}\",slot=\"{}\"", p.name, p.port);
    for (name, help, get) in [
        (
            "port_rx_packets_total",
            "Frames received by a port.",
            (|p: &ctl::proto::PortCounters| p.rx_packets) as fn(&_) -> u64,
        ),
        ("port_rx_bytes_total", "Bytes received by a port.", |p| {
            p.rx_bytes
        }),
        (
            "port_tx_packets_total",
            "Frames transmitted by a port.",
            |p| p.tx_packets,
        ),
        ("port_tx_bytes_total", "Bytes transmitted by a port.", |p| {
            p.tx_bytes
        }),
    ] {
        family(
            name,
            "counter",
            help,
            stats.ports.iter().map(|p| (port(p), get(p))).collect(),
        );
    }
    family(
        "port_drops_total",
        "counter",
        "Frames dropped, by port and reason (xsk_* are drops counted by the kernel's AF_XDP socket).",
        stats
            .ports
            .iter()
            .flat_map(|p| p.drops.iter().map(move |(r, n)| (format!("{},reason=\"{r}\"", port(p)), *n)))
            .collect(),
    );
    family(
        "port_events_total",
        "counter",
        "Frames the switch consumed or generated on purpose, by port and event.",
        stats
            .ports
            .iter()
            .flat_map(|p| {
                p.events
                    .iter()
                    .map(move |(e, n)| (format!("{},event=\"{e}\"", port(p)), *n))
            })
            .collect(),
    );
    let worker = |w: &ctl::proto::WorkerCounters| format!("worker=\"{}\"", w.worker);
    for (name, kind, help, get) in [
        (
            "worker_busy_polls_total",
            "counter",
            "Poll rounds that moved frames.",
            (|w: &ctl::proto::WorkerCounters| w.busy_polls) as fn(&_) -> u64,
        ),
        (
            "worker_idle_polls_total",
            "counter",
            "Poll rounds that found nothing.",
            |w| w.idle_polls,
        ),
        (
            "worker_sleeps_total",
            "counter",
            "Times the worker blocked in poll(2).",
            |w| w.sleeps,
        ),
        (
            "worker_sleep_nanoseconds_total",
            "counter",
            "Time the worker spent blocked in poll(2) (idle); the rest of its uptime it polled.",
            |w| w.sleep_ns,
        ),
        (
            "worker_frames_in_use",
            "gauge",
            "UMEM frames out of the worker's free pool.",
            |w| w.frames_in_use,
        ),
        (
            "worker_frames",
            "gauge",
            "UMEM frames of the worker.",
            |w| w.frames_total,
        ),
        (
            "worker_conntrack_entries",
            "gauge",
            "Connections the worker tracks for NetworkPolicy.",
            |w| w.conntrack_entries,
        ),
    ] {
        family(
            name,
            kind,
            help,
            stats.workers.iter().map(|w| (worker(w), get(w))).collect(),
        );
    }
    let policy = |p: &ctl::proto::PolicyCounters| {
        format!("namespace=\"{}\",policy=\"{}\"", p.namespace, p.name)
    };
    family(
        "policy_allowed_packets_total",
        "counter",
        "Packets a rule of the NetworkPolicy allowed (first packets of connections).",
        stats
            .policies
            .iter()
            .map(|p| (policy(p), p.allowed))
            .collect(),
    );
    family(
        "policy_denied_packets_total",
        "counter",
        "Packets denied at ports the NetworkPolicy selects.",
        stats
            .policies
            .iter()
            .map(|p| (policy(p), p.denied))
            .collect(),
    );
    let _ = writeln!(
        out,
        "# HELP vswitch_uptime_seconds Seconds since vswitchd started.\n# TYPE vswitch_uptime_seconds gauge\nvswitch_uptime_seconds {uptime:.3}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctl::proto::{PortCounters, WorkerCounters};

    #[test]
    fn renders_counters_and_serves_them() {
        let stats = Stats {
            ports: vec![PortCounters {
                name: "vsw0-sw".into(),
                port: 0,
                rx_packets: 5,
                drops: [("ttl_expired".to_string(), 2)].into(),
                ..PortCounters::default()
            }],
            workers: vec![WorkerCounters {
                worker: 0,
                busy_polls: 7,
                conntrack_entries: 3,
                ..WorkerCounters::default()
            }],
            policies: vec![ctl::proto::PolicyCounters {
                namespace: "default".into(),
                name: "deny".into(),
                allowed: 0,
                denied: 4,
            }],
        };
        let text = render(&stats, 1.5);
        assert!(
            text.contains("vswitch_port_rx_packets_total{port=\"vsw0-sw\",slot=\"0\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "vswitch_port_drops_total{port=\"vsw0-sw\",slot=\"0\",reason=\"ttl_expired\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("vswitch_worker_busy_polls_total{worker=\"0\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "vswitch_policy_denied_packets_total{namespace=\"default\",policy=\"deny\"} 4\n"
            ),
            "{text}"
        );
        assert!(text.contains("vswitch_worker_conntrack_entries{worker=\"0\"} 3\n"));
        assert!(
            text.contains("# TYPE vswitch_worker_frames_in_use gauge"),
            "{text}"
        );

        let server = MetricsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(move || text.clone()),
        )
        .unwrap();
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200 OK"), "{answer}");
        assert!(answer.contains("vswitch_uptime_seconds 1.500"), "{answer}");
    }
}
