//! The daemon's configuration parser, `vswitchd::config::Config::parse`, on arbitrary text.
//!
//! Invariants: no panic; a refusal names the file and a line that exists in the text; an
//! accepted configuration holds what the docs promise (pod CIDR inside the cluster CIDR, no host
//! bits, at least a /30; MTU 1280..=9000; one CPU per worker; batch 1..=64; frames a power of
//! two; host port name 1-12 bytes; every tunnel passes `check_tunnel` and names are unique) and
//! its derived values (gateway, gateway MAC, pod MTU) compute.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitchd::config::{check_tunnel, Config};

const PATH: &str = "/etc/vswitch/config.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, PATH) {
        Err(e) => {
            assert_eq!(e.path, PATH);
            if let Some(line) = e.line {
                let lines = text.split('\n').count();
                assert!(
                    line >= 1 && line <= lines,
                    "line {line} of a {lines}-line text: {e}"
                );
            }
            assert!(e.to_string().starts_with(PATH));
        }
        Ok(c) => {
            let node = &c.node;
            assert!(node.cluster_cidr.contains(&node.pod_cidr));
            assert_eq!(node.pod_cidr, node.pod_cidr.trunc());
            assert!(node.pod_cidr.prefix_len() <= 30);
            assert!((1280..=9000).contains(&node.mtu));
            assert!(!node.name.is_empty());
            let dp = &c.datapath;
            assert!((1..=64).contains(&dp.workers));
            assert_eq!(dp.cpus.len(), dp.workers);
            assert!((1..=vswitch::pipeline::MAX_BATCH).contains(&dp.batch));
            assert!(dp.frames.is_power_of_two() && (256..=1 << 20).contains(&dp.frames));
            assert!((1..=12).contains(&dp.host_port.len()));
            assert!(node.pod_cidr.contains(&c.gateway_ip()));
            let _ = c.gateway_mac();
            assert!(c.pod_mtu() <= node.mtu);
            for (i, t) in c.tunnels.iter().enumerate() {
                check_tunnel(
                    t,
                    node.encapsulation,
                    node.pod_cidr,
                    node.cluster_cidr,
                    node.node_ip,
                )
                .expect("accepted tunnels pass check_tunnel");
                assert!(c.tunnels[..i].iter().all(|o| o.name != t.name));
            }
            assert!(c.conntrack.max_entries >= 4);
            // Parsing is a function of the text.
            assert_eq!(Config::parse(text, PATH), Ok(c));
        }
    }
});
