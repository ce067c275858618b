//! Persisted state: the attached pods and the IPAM, in one file written atomically.
//!
//! Contract: [`StateStore::load`] returns the state saved last (an empty state when there is no
//! file yet) or an error when the file is unreadable or corrupt: the daemon then refuses to
//! start rather than forget pods. [`StateStore::save`] writes a temporary file, fsyncs it,
//! renames it over the old one and fsyncs the directory, so a crash leaves either the old or
//! the new state, never a mix. [`State`] holds the pod records and the host-local style address
//! allocator: an address is never given to two pods, and after a release allocation continues
//! round-robin from the last one handed out, so a freed address is not reused at once.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use vswitch::mac::MacAddr;

/// The state file format version this daemon writes and reads.
pub const STATE_VERSION: u32 = 1;
const STATE_FILE: &str = "state.json";

/// One attached pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Container id.
    pub id: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// The pod's network namespace path.
    pub netns: String,
    /// Host-side veth name.
    pub host_ifname: String,
    /// Switch port slot.
    pub slot: u16,
    /// Pod interface MAC.
    pub mac: MacAddr,
    /// Pod address and prefix.
    pub ip: Ipv4Net,
    /// Pod MTU.
    pub mtu: u16,
    /// Kubernetes namespace (NetworkPolicy).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Labels (NetworkPolicy).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".into()
}

/// Everything the daemon persists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Attached pods.
    pub pods: Vec<PodRecord>,
    /// The address handed out last (allocation continues after it).
    pub last_allocated: Option<Ipv4Addr>,
    /// Our VTEP MAC, generated once and kept across restarts.
    #[serde(default)]
    pub vtep_mac: Option<MacAddr>,
    /// Tunnels added at run time (`tunnel add`); tunnels from the config are not stored.
    #[serde(default)]
    pub tunnels: Vec<ctl::proto::TunnelSpec>,
    /// NetworkPolicy documents (`policy apply`), in the order applied.
    #[serde(default)]
    pub policies: Vec<vswitch::policy::spec::NetworkPolicy>,
    /// Pods of other nodes (`endpoint add`).
    #[serde(default)]
    pub endpoints: Vec<ctl::proto::EndpointSpec>,
    /// Namespace labels (`namespace set`).
    #[serde(default)]
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why an address could not be given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    /// Every usable address is taken.
    #[error("pod CIDR {0} has no free address ({1} pods attached); remove pods or use a larger pod_cidr")]
    Exhausted(Ipv4Net, usize),
    /// The requested address is unusable.
    #[error("address {0} cannot be given to a pod: {1}")]
    Unusable(Ipv4Addr, &'static str),
    /// The requested address belongs to another pod.
    #[error("address {0} is already used by pod {1}")]
    InUse(Ipv4Addr, String),
}

impl State {
    /// The pod attached with this container id and interface.
    pub fn pod(&self, id: &str, ifname: &str) -> Option<&PodRecord> {
        self.pods.iter().find(|p| p.id == id && p.ifname == ifname)
    }

    /// Picks an address in `cidr` for a new pod: `requested` if usable and free, else the next
    /// free one after the last handed out (skipping network, gateway and broadcast addresses).
    pub fn allocate_ip(
        &mut self,
        cidr: Ipv4Net,
        gateway: Ipv4Addr,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let usable = |ip: Ipv4Addr| -> Result<(), &'static str> {
            if !cidr.contains(&ip) {
                Err("it is outside the pod CIDR")
            } else if ip == cidr.network() || ip == cidr.broadcast() {
                Err("it is the network or broadcast address")
            } else if ip == gateway {
                Err("it is the gateway")
            } else {
                Ok(())
            }
        };
        if let Some(ip) = requested {
            usable(ip).map_err(|why| IpamError::Unusable(ip, why))?;
            if let Some(p) = self.pods.iter().find(|p| p.ip.addr() == ip) {
                return Err(IpamError::InUse(ip, p.id.clone()));
            }
            self.last_allocated = Some(ip);
            return Ok(ip);
        }
        let first = u32::from(cidr.network());
        let size = 1u64 << (32 - cidr.prefix_len());
        let start = self
            .last_allocated
            .filter(|ip| cidr.contains(ip))
            .map_or(0, |ip| u64::from(u32::from(ip) - first) + 1);
        for step in 0..size {
            let ip = Ipv4Addr::from(first + ((start + step) % size) as u32);
            if usable(ip).is_ok() && !self.pods.iter().any(|p| p.ip.addr() == ip) {
                self.last_allocated = Some(ip);
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted(cidr, self.pods.len()))
    }

    /// The lowest slot at or above `first` that no pod uses.
    pub fn free_slot(&self, first: u16, max: u16) -> Option<u16> {
        (first..max).find(|s| !self.pods.iter().any(|p| p.slot == *s))
    }
}

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file exists but cannot be understood.
    #[error("state file {path} is corrupt ({reason}); vswitchd will not start without it, so that no attached pod is forgotten: restore it from a backup or, if no pod of this node is attached, move it away")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The state file in a state directory.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// The store in `dir` (created on first save).
    pub fn new(dir: &Path) -> Self {
        StateStore {
            dir: dir.to_path_buf(),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Loads the saved state; an empty one when nothing was saved yet.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.path();
        let shown = path.display().to_string();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: STATE_VERSION,
                    ..State::default()
                })
            }
            Err(source) => {
                return Err(StateError::Io {
                    path: shown,
                    source,
                })
            }
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: shown.clone(),
            reason,
        };
        let state: State = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(corrupt(format!(
                "version {} where {STATE_VERSION} is expected",
                state.version
            )));
        }
        Ok(state)
    }

    /// Saves `state` atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let path = self.path();
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut text = serde_json::to_vec_pretty(state).expect("state serializes");
        text.push(b'\n');
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str, ip: &str, slot: u16) -> PodRecord {
        PodRecord {
            id: id.into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/x".into(),
            host_ifname: format!("vsw{id}"),
            slot,
            mac: MacAddr([0x0a, 0x58, 0, 0, 0, slot as u8]),
            ip: ip.parse().unwrap(),
            mtu: 1500,
            namespace: "default".into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn allocates_round_robin_without_reuse_or_reserved_addresses() {
        let cidr: Ipv4Net = "10.244.1.0/29".parse().unwrap();
        let gw: Ipv4Addr = "10.244.1.1".parse().unwrap();
        let mut s = State::default();
        let a = s.allocate_ip(cidr, gw, None).unwrap();
        assert_eq!(a.to_string(), "10.244.1.2");
        s.pods.push(pod("a", "10.244.1.2/29", 2));
        let b = s.allocate_ip(cidr, gw, None).unwrap();
        assert_eq!(b.to_string(), "10.244.1.3");
        s.pods.push(pod("b", "10.244.1.3/29", 3));
        s.pods.retain(|p| p.id != "a"); // a leaves: .2 is not handed out next
        assert_eq!(
            s.allocate_ip(cidr, gw, None).unwrap().to_string(),
            "10.244.1.4"
        );
        for ip in ["10.244.1.4", "10.244.1.5", "10.244.1.6"] {
            s.pods.push(pod(ip, &format!("{ip}/29"), 9));
        }
        // .7 is broadcast, .0 network, .1 gateway: wraps around to the freed .2
        assert_eq!(
            s.allocate_ip(cidr, gw, None).unwrap().to_string(),
            "10.244.1.2"
        );
        s.pods.push(pod("c", "10.244.1.2/29", 4));
        assert!(matches!(
            s.allocate_ip(cidr, gw, None),
            Err(IpamError::Exhausted(..))
        ));
    }

    #[test]
    fn requested_addresses_are_checked() {
        let cidr: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let gw: Ipv4Addr = "10.244.1.1".parse().unwrap();
        let mut s = State::default();
        s.pods.push(pod("a", "10.244.1.9/24", 2));
        let req = |ip: &str| Some(ip.parse().unwrap());
        assert!(matches!(
            s.allocate_ip(cidr, gw, req("10.244.1.9")),
            Err(IpamError::InUse(..))
        ));
        assert!(matches!(
            s.allocate_ip(cidr, gw, req("10.244.1.1")),
            Err(IpamError::Unusable(..))
        ));
        assert!(matches!(
            s.allocate_ip(cidr, gw, req("10.9.1.1")),
            Err(IpamError::Unusable(..))
        ));
        assert_eq!(
            s.allocate_ip(cidr, gw, req("10.244.1.77"))
                .unwrap()
                .to_string(),
            "10.244.1.77"
        );
        assert_eq!(s.free_slot(2, 10), Some(3));
    }

    #[test]
    fn saves_atomically_and_refuses_corruption() {
        let dir = std::env::temp_dir().join(format!("vswitchd-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = StateStore::new(&dir);
        assert!(store.load().unwrap().pods.is_empty());
        let mut s = store.load().unwrap();
        s.pods.push(pod("a", "10.244.1.2/24", 2));
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        assert!(!dir.join("state.json.tmp").exists());
        fs::write(store.path(), "{\"version\": 1, \"pods\": [").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("will not start"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
