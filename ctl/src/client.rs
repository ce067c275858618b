//! The control client: one request, one response, over the daemon's Unix socket.
//!
//! Contract: [`call`] connects, writes the request line, reads the response line and returns it;
//! connection failures become a [`ClientError`] whose message tells the operator what to check
//! (is vswitchd running, the socket path, permissions).

use crate::proto::{Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listening.
    #[error("cannot reach vswitchd at {path}: {source} (is vswitchd running? is --socket right?)")]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The connection broke or the answer was not a response.
    #[error("vswitchd at {path} did not answer properly: {reason}")]
    Protocol {
        /// Socket path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl ClientError {
    /// Whether the daemon was not reachable at all (CNI maps this to "try again later").
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

/// Sends `request` to the daemon at `socket` and returns its response.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let proto = |reason: String| ClientError::Protocol {
        path: path.clone(),
        reason,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| proto(e.to_string()))?;
    let mut line = serde_json::to_string(request).map_err(|e| proto(e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| proto(format!("sending: {e}")))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| proto(format!("reading: {e}")))?;
    if answer.is_empty() {
        return Err(proto("the connection closed without an answer".into()));
    }
    serde_json::from_str(&answer).map_err(|e| proto(format!("undecodable answer: {e}")))
}
