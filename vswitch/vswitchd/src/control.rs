//! The control socket: a Unix stream socket speaking `ctl::proto` (one JSON request line, one
//! JSON response line, repeated until the client closes).
//!
//! Contract: [`ControlServer::start`] binds the socket with mode 0600 (replacing a stale socket
//! file, refusing to start when another daemon answers on it), accepts clients on a thread,
//! and serves each client on its own thread, at most [`MAX_CLIENTS`] at once. Only root peers
//! (SO_PEERCRED uid 0) are served. Every line gets an answer: an undecodable, oversized or
//! unknown request gets a `bad_request` error and the connection stays usable; nothing a client
//! sends can stop the daemon. The [`Handler`] does the work.

use ctl::proto::{ErrorCode, Request, Response, MAX_REQUEST_BYTES};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most clients served at once; more get an error line and are closed.
pub const MAX_CLIENTS: usize = 256;
/// How long a client over the limit waits for a slot before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);
/// A client that sends nothing for this long is disconnected.
pub const CLIENT_IDLE: Duration = Duration::from_secs(60);

/// Carries out control requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: Request) -> Response;
}

/// A running control socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    listener_fd: std::os::fd::RawFd,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (mode 0600) and starts serving `handler`.
    pub fn start(path: &Path, handler: Arc<dyn Handler>) -> Result<ControlServer, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "another vswitchd is answering on {}; stop it first or use another control.socket",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set mode 0600 on {}: {e}", path.display()))?;
        let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let thread = std::thread::Builder::new()
            .name("vswitch-control".into())
            .spawn(move || accept_loop(listener, handler, stop))
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            listener_fd,
            stopping,
            thread: Some(thread),
        })
    }

    /// Stops accepting, removes the socket file. Works even when the socket file is gone.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocked accept(2) (it then fails with EINVAL) without needing the path.
        // SAFETY: the listener is owned by the accept thread, alive until we join it below.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, handler: Arc<dyn Handler>, stopping: Arc<AtomicBool>) {
    let clients = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        if peer_uid(&stream) != Some(0) {
            refuse(
                stream,
                ErrorCode::PermissionDenied,
                "only root may use the vswitch control socket",
            );
            continue;
        }
        // A slot frees when a client's thread has seen it close; under load that lags the
        // close, so wait a little for one before refusing.
        let deadline = std::time::Instant::now() + SLOT_WAIT;
        while clients.load(Ordering::SeqCst) >= MAX_CLIENTS && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::SeqCst);
            refuse(
                stream,
                ErrorCode::Internal,
                "too many control clients; try again",
            );
            continue;
        }
        let handler = Arc::clone(&handler);
        let count = Arc::clone(&clients);
        let spawned = std::thread::Builder::new()
            .name("vswitch-client".into())
            .spawn(move || {
                serve_client(stream, handler.as_ref());
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            clients.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Answers a client we will not serve: its first request line is read (briefly) so that the
/// client, which writes before it reads, gets the answer instead of a broken pipe.
fn refuse(stream: UnixStream, code: ErrorCode, message: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut first = Vec::new();
    let _ = BufReader::new(stream)
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_until(b'\n', &mut first);
    let _ = reply(&mut writer, &Response::error(code, message));
}

fn peer_uid(stream: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

/// Serves one client until it closes, errs or idles out.
pub fn serve_client(stream: UnixStream, handler: &dyn Handler) {
    let _ = stream.set_read_timeout(Some(CLIENT_IDLE));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let limit = (MAX_REQUEST_BYTES + 1) as u64;
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = if line.len() > MAX_REQUEST_BYTES {
            // Skip the rest of the oversized line before answering.
            if skip_line(&mut reader).is_err() {
                return;
            }
            Response::error(
                ErrorCode::BadRequest,
                format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            )
        } else {
            match decode(&line) {
                Ok(request) => handler.handle(request),
                Err(why) => Response::error(ErrorCode::BadRequest, why),
            }
        };
        if reply(&mut writer, &response).is_err() {
            return;
        }
    }
}

fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            reader.consume(i + 1);
            return Ok(());
        }
        let n = buf.len();
        reader.consume(n);
    }
}

fn decode(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    serde_json::from_str(text.trim()).map_err(|e| format!("cannot decode request: {e}"))
}

fn reply(w: &mut impl Write, r: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(r).expect("responses serialize");
    out.push(b'\n');
    w.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctl::proto::{NodeInfo, Reply};

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, request: Request) -> Response {
            match request {
                Request::Node {} => Response::Ok {
                    result: Reply::Node(NodeInfo {
                        name: "n".into(),
                        node_ip: "192.168.77.1".parse().unwrap(),
                        pod_cidr: "10.244.1.0/24".parse().unwrap(),
                        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
                        gateway: "10.244.1.1".parse().unwrap(),
                        gateway_mac: "0a:58:0a:f4:01:01".into(),
                        pod_mtu: 1500,
                        vtep_mac: "0e:00:00:00:00:01".into(),
                        vni: 1,
                        vxlan_port: 8472,
                    }),
                },
                _ => Response::error(ErrorCode::NotFound, "nope"),
            }
        }
    }

    fn exchange(lines: &[&[u8]]) -> Vec<Response> {
        let (a, b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || serve_client(b, &Echo));
        let mut w = a.try_clone().unwrap();
        for l in lines {
            w.write_all(l).unwrap();
        }
        w.shutdown(std::net::Shutdown::Write).unwrap();
        let out: Vec<Response> = BufReader::new(a)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        server.join().unwrap();
        out
    }

    #[test]
    fn answers_every_line_even_garbage() {
        let big = vec![b'x'; MAX_REQUEST_BYTES + 10];
        let mut big_line = big.clone();
        big_line.push(b'\n');
        let out = exchange(&[
            b"{\"verb\":\"node\"}\n",
            b"garbage\n",
            b"{\"verb\":\"explode\"}\n",
            &big_line,
            b"{\"verb\":\"port_del\",\"id\":5}\n",
            b"{\"verb\":\"node\"}\n",
        ]);
        assert_eq!(out.len(), 6);
        assert!(matches!(out[0], Response::Ok { .. }));
        for r in &out[1..5] {
            assert!(
                matches!(
                    r,
                    Response::Error {
                        code: ErrorCode::BadRequest,
                        ..
                    }
                ),
                "{r:?}"
            );
        }
        assert!(
            matches!(out[5], Response::Ok { .. }),
            "still usable after abuse"
        );
    }

    #[test]
    fn socket_is_private_and_refuses_a_second_daemon() {
        let path = std::env::temp_dir().join(format!("vswitchd-ctl-{}.sock", std::process::id()));
        let server = ControlServer::start(&path, Arc::new(Echo)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Stopping must not depend on the socket file (an operator may have removed it).
        std::fs::remove_file(&path).unwrap();
        let stopped = std::thread::spawn(move || server.stop());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !stopped.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "stop hung without the socket file"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let server = ControlServer::start(&path, Arc::new(Echo)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(ControlServer::start(&path, Arc::new(Echo))
            .unwrap_err()
            .contains("another vswitchd"));
        let r = ctl::client::call(&path, &Request::Node {}, Duration::from_secs(5)).unwrap();
        assert!(matches!(r, Response::Ok { .. }));
        server.stop();
        assert!(!path.exists());
    }
}
