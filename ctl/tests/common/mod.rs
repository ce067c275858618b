//! Shared by the ctl integration tests: a fake vswitchd (a Unix listener in a thread that
//! records each request line and answers with canned response lines) and a private temp dir.

// Each test binary uses a different subset.
#![allow(dead_code)]

use ctl::proto::Response;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A private directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vswitch-ctl-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Accepts one connection, failing (rather than hanging the test) when none comes in time.
pub fn accept_within(listener: &UnixListener, limit: Duration) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(limit)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the client under test never connected"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A fake vswitchd answering one connection per canned response, in order.
pub struct FakeDaemon {
    /// Its socket.
    pub socket: PathBuf,
    thread: JoinHandle<Vec<String>>,
    _dir: TempDir,
}

impl FakeDaemon {
    /// Starts answering one connection per response, in order.
    pub fn start(responses: Vec<Response>) -> Self {
        let dir = TempDir::new();
        let socket = dir.0.join("vswitch.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for response in responses {
                let stream = accept_within(&listener, Duration::from_secs(20));
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                seen.push(line);
                let mut answer = serde_json::to_string(&response).unwrap();
                answer.push('\n');
                (&stream).write_all(answer.as_bytes()).unwrap();
            }
            seen
        });
        FakeDaemon {
            socket,
            thread,
            _dir: dir,
        }
    }

    /// The request lines received, once every canned response was sent.
    pub fn requests(self) -> Vec<String> {
        self.thread.join().unwrap()
    }

    /// The requests received, each checked to be one JSON line, once every canned response
    /// was sent.
    pub fn request_values(self) -> Vec<Value> {
        self.requests()
            .iter()
            .map(|line| {
                assert_eq!(line.lines().count(), 1, "one request line: {line:?}");
                serde_json::from_str(line).unwrap()
            })
            .collect()
    }
}
