//! Running netlink work: a current-thread tokio runtime and one rtnetlink connection per call,
//! either in the caller's namespace or, for a pod, on a short-lived thread that entered the pod's
//! network namespace first. The calling thread itself never changes namespace.

use std::{
    fs::File,
    future::Future,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
};

use rtnetlink::Handle;

use super::error::NetlinkError;

/// Label of the caller's namespace in error messages.
pub(crate) const CALLER_NS: &str = "the caller's netns";

/// Opens a network namespace file; the open file pins the namespace while we use it.
pub(crate) fn open_netns(netns: &Path) -> Result<File, NetlinkError> {
    File::open(netns).map_err(|cause| NetlinkError::Netns {
        netns: netns.to_path_buf(),
        reason: if cause.kind() == io::ErrorKind::NotFound {
            "does not exist"
        } else {
            "cannot be opened"
        },
        cause,
    })
}

/// Label of a pod namespace in error messages.
pub(crate) fn label(netns: &Path) -> String {
    format!("netns {}", netns.display())
}

/// Runs `f` with a fresh netlink connection in the current thread's namespace. If the calling
/// thread already drives a tokio runtime (where a nested `block_on` would panic), the work hops
/// to a scoped thread, which starts in the same namespace as its creator.
pub(crate) fn with_handle<T, F, Fut>(netns: &str, f: F) -> Result<T, NetlinkError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| join(s.spawn(|| block_on_handle(netns, f))))
    } else {
        block_on_handle(netns, f)
    }
}

fn block_on_handle<T, F, Fut>(netns: &str, f: F) -> Result<T, NetlinkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    let socket_err = |cause| NetlinkError::Socket {
        netns: netns.to_string(),
        cause,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(socket_err)?;
    rt.block_on(async {
        // The socket is opened here, in this thread's namespace, inside the runtime.
        let (conn, handle, _) = rtnetlink::new_connection().map_err(socket_err)?;
        let conn = tokio::spawn(conn);
        let result = f(handle).await;
        conn.abort();
        result
    })
}

/// Runs `f` on a dedicated thread that first enters the network namespace `ns`; `f` creates its
/// own netlink connection (via [`with_handle`]) or sockets there. The thread ends with `f`.
pub(crate) fn in_netns<T, F>(ns: &File, netns: &Path, f: F) -> Result<T, NetlinkError>
where
    T: Send,
    F: FnOnce() -> Result<T, NetlinkError> + Send,
{
    let fd = ns.as_fd();
    std::thread::scope(|s| {
        join(s.spawn(move || {
            enter_netns(fd).map_err(|cause| NetlinkError::Netns {
                netns: netns.to_path_buf(),
                reason: "cannot be entered (is it a network namespace?)",
                cause,
            })?;
            f()
        }))
    })
}

/// Moves the current thread into the network namespace behind `fd`.
fn enter_netns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns only reads the fd, which `BorrowedFd` guarantees is open for the call; with
    // CLONE_NEWNET it changes the network namespace of the calling thread only.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Joins a scoped worker thread, re-raising its panic in the caller.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
