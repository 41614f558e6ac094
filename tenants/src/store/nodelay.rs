//! Nagle's algorithm off on PostgreSQL connections over TCP.
//!
//! sqlx leaves `TCP_NODELAY` unset and offers no way to set it. With Nagle
//! on, a statement whose Bind message outgrows one TCP segment (a message
//! of some 60 KB stored, a multi-row insert of message bytes) leaves its
//! last segment waiting for the acknowledgement of the one before, which
//! PostgreSQL's side delays by 40 ms: measured on loopback, ingest of 60 KB
//! messages fell from hundreds to 23 per second, each waiting 889 ms (the
//! group commit's statements one after another, each 40 ms late).
//!
//! Each new connection asks the server for the port it sees us on, finds
//! our socket of that local port and that peer among the process's file
//! descriptors, and sets the option there.

use sqlx::PgConnection;

/// Sets `TCP_NODELAY` on the socket of `conn`; false when none was found
/// (a Unix socket, or a system without `/proc/self/fd`).
pub(super) async fn set(conn: &mut PgConnection) -> sqlx::Result<bool> {
    let (port, server_port): (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(&mut *conn)
            .await?;
    let (Some(port), Some(server_port)) = (port, server_port) else {
        return Ok(false);
    };
    let (Ok(port), Ok(server_port)) = (u16::try_from(port), u16::try_from(server_port)) else {
        return Ok(false);
    };
    Ok(set_on_local_port(port, server_port))
}

/// The socket connected from local port `port` to a peer's `peer_port`,
/// with `TCP_NODELAY` set.
fn set_on_local_port(port: u16, peer_port: u16) -> bool {
    with_socket(port, peer_port, |socket| {
        socket.set_tcp_nodelay(true).is_ok()
    })
    .unwrap_or(false)
}

/// `f` of this process's socket from local port `port` to a peer's
/// `peer_port`, if there is one.
fn with_socket<T>(
    port: u16,
    peer_port: u16,
    f: impl FnOnce(socket2::SockRef<'_>) -> T,
) -> Option<T> {
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the calls below, which
        // fail harmlessly (ENOTSOCK, EBADF) if it is not a socket or was
        // closed meanwhile; nothing is closed through it.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if let (Some(local), Some(peer)) = (local, peer)
            && local.port() == port
            && peer.port() == peer_port
        {
            return Some(f(socket));
        }
    }
    None
}

/// Whether this process's socket from local port `port` to a peer's
/// `peer_port` has `TCP_NODELAY`.
#[cfg(test)]
pub(super) fn is_set(port: u16, peer_port: u16) -> Option<bool> {
    with_socket(port, peer_port, |socket| socket.tcp_nodelay().ok()).flatten()
}
