//! `vswitchd --config FILE`: the vswitch daemon.
//!
//! Starts the worker, attaches the host port (and the uplink when configured), re-attaches the
//! pods of the saved state, serves the control socket, and on SIGINT/SIGTERM detaches every XDP
//! program it attached and closes its sockets before exiting 0. Pod veths survive a stop.
//! Exit codes: 0 stopped cleanly, 1 failed to start or run, 2 bad configuration.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vswitch::frame::FrameLayout;
use vswitch::pipeline::PipelineConfig;
use vswitch::tables::{PortInfo, PortKind, TableHandle};
use vswitchd::afxdp::XskBackend;
use vswitchd::config::Config;
use vswitchd::control::ControlServer;
use vswitchd::netlink::{self, HostPortRequest};
use vswitchd::node::NodePlumbing;
use vswitchd::state::StateStore;
use vswitchd::switch::{Switch, HOST_SLOT, UPLINK_SLOT};
use vswitchd::worker::{WorkerConfig, WorkerHandle};
use vswitchd::xdp::XdpPrograms;

/// The vswitch node data plane daemon.
#[derive(Parser)]
#[command(
    version,
    about = "vswitchd: userspace AF_XDP switch for a Kubernetes node",
    after_help = "Examples:\n  vswitchd --config /etc/vswitch/config.toml\n  vswitchd --config config.toml --check    # validate the file and exit\n\nLogs go to stderr (RUST_LOG=debug for more). Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration."
)]
struct Args {
    /// The configuration file (see config.toml in the repository for every key).
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vswitchd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let store = StateStore::new(&config.control.state_dir);
    let state = store.load().map_err(|e| e.to_string())?;
    let xdp = Arc::new(Mutex::new(XdpPrograms::load(config.datapath.xdp_mode)?));
    let tables = TableHandle::default();
    let dp = &config.datapath;
    let frames = dp.frames;
    let worker = WorkerHandle::spawn(
        WorkerConfig {
            index: 0,
            cpu: dp.cpus.first().copied(),
            batch: dp.batch,
            idle: dp.idle,
            pipeline: PipelineConfig {
                conntrack: config.conntrack,
                ..PipelineConfig::default()
            },
        },
        move || XskBackend::create(FrameLayout::DEFAULT, frames),
        &tables,
    )?;
    let worker = Arc::new(worker);
    let plumbing = NodePlumbing {
        worker: Arc::clone(&worker),
        xdp: Arc::clone(&xdp),
        sockets: Arc::default(),
    };
    let mut fixed = Vec::new();

    // The host port first: its socket owns the UMEM.
    let switch_end = format!("{}-sw", dp.host_port);
    let host = netlink::ensure_host_port(&HostPortRequest {
        kernel_ifname: &dp.host_port,
        switch_ifname: &switch_end,
        route: config.node.cluster_cidr,
        mtu: config.pod_mtu(),
    })
    .map_err(|e| format!("host port: {e}"))?;
    plumbing.attach_interface(HOST_SLOT, &switch_end, host.switch_ifindex)?;
    fixed.push(PortInfo {
        id: HOST_SLOT,
        name: switch_end.clone(),
        kind: PortKind::Host,
        mac: vswitch::mac::MacAddr(host.kernel_mac),
        ip: None,
        mtu: config.pod_mtu(),
    });
    if let Some(uplink) = &config.node.uplink {
        let (ifindex, mac) = netlink::link_info(uplink)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("uplink {uplink} does not exist (set node.uplink, or remove it to run without one)"))?;
        let fd = worker.attach(vswitchd::worker::PortSpec {
            id: UPLINK_SLOT,
            ifname: uplink.clone(),
            ifindex,
        })?;
        plumbing.record_socket(UPLINK_SLOT, fd);
        xdp.lock().expect("xdp lock").attach_uplink(
            ifindex,
            fd,
            config.node.node_ip,
            config.node.pod_cidr,
            vtep::vxlan::FLANNEL_UDP_PORT,
        )?;
        fixed.push(PortInfo {
            id: UPLINK_SLOT,
            name: uplink.clone(),
            kind: PortKind::Uplink,
            mac: vswitch::mac::MacAddr(mac),
            ip: None,
            mtu: config.node.mtu,
        });
    }

    let socket = config.control.socket.clone();
    let metrics = config.control.metrics;
    let workers = vec![(Arc::clone(&worker.stats), worker.config.cpu)];
    let summary = format!(
        "node {} pod_cidr {} gateway {} ({}), host port {}, uplink {}, control {}",
        config.node.name,
        config.node.pod_cidr,
        config.gateway_ip(),
        config.gateway_mac(),
        dp.host_port,
        config.node.uplink.as_deref().unwrap_or("none"),
        socket.display()
    );
    let switch = Arc::new(Switch::new(
        config,
        store,
        state,
        Box::new(plumbing),
        fixed,
        tables,
        workers,
    ));
    let server = ControlServer::start(
        &socket,
        Arc::clone(&switch) as Arc<dyn vswitchd::control::Handler>,
    )?;
    let resolver = spawn_resolver(Arc::clone(&switch), Arc::clone(&stop));
    if let Some(addr) = metrics {
        let started = std::time::Instant::now();
        let source = Arc::clone(&switch);
        let render = Arc::new(move || {
            vswitchd::metrics::render(&source.stats_snapshot(), started.elapsed().as_secs_f64())
        });
        let server = vswitchd::metrics::MetricsServer::start(addr, render)?;
        tracing::info!("metrics on http://{}/metrics", server.addr);
    }
    tracing::info!("vswitchd ready: {summary}");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("stopping: detaching XDP programs and closing sockets (pod veths stay)");
    server.stop();
    let _ = resolver.join();
    xdp.lock().expect("xdp lock").detach_all();
    worker.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Keeps the tunnels' underlay next hops resolved from the kernel's route and neighbour tables
/// (asking the kernel to ARP for missing ones), and the node's address list current (for
/// policy's node traffic), once a second until `stop`.
fn spawn_resolver(switch: Arc<Switch>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("vswitch-resolver".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                switch.resolve_next_hops(&|remote| match netlink::next_hop(remote) {
                    Ok(hop) => {
                        if hop.mac.is_none() {
                            netlink::trigger_resolution(remote);
                        }
                        hop.mac.map(vswitch::mac::MacAddr)
                    }
                    Err(e) => {
                        tracing::debug!(%remote, "no next hop yet: {e}");
                        None
                    }
                });
                std::thread::sleep(Duration::from_secs(1));
            }
        })
        .expect("spawning the resolver thread")
}
