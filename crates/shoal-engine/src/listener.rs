//! One port for many torrents, as a libtorrent session or Transmission's daemon listens:
//! connections are accepted once, over TCP and uTP, and each is handed to the torrent
//! its handshake names. Torrents join with [`TorrentConfig::shared_listener`] and leave
//! when they stop.
//!
//! [`TorrentConfig::shared_listener`]: crate::TorrentConfig::shared_listener

use std::net::SocketAddr;

use tokio::task::JoinHandle;

use crate::connection::{self, Router};
use crate::torrent::EngineError;
use crate::{Dialer, Encryption};

/// A listening port shared by the torrents of a session.
#[derive(Debug)]
pub struct SharedListener {
    addr: SocketAddr,
    router: Router,
    acceptors: Vec<JoinHandle<()>>,
}

impl SharedListener {
    /// Listens at `addr` over TCP, and takes connections from `dialer`'s uTP socket, as
    /// `dialer`'s mode allows; handshakes are plain or encrypted as `policy` allows.
    /// Must be called within a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        dialer: &Dialer,
        policy: Encryption,
    ) -> Result<Self, EngineError> {
        let router = Router::default();
        let handshakes = connection::handshake_slots();
        let mut acceptors = Vec::new();
        let mut bound = dialer.utp.as_ref().and_then(|u| u.local_addr().ok());
        if let Some(utp) = dialer.utp.clone().filter(|_| dialer.accepts_utp()) {
            acceptors.push(connection::spawn_utp_acceptor(
                utp,
                handshakes.clone(),
                router.clone(),
                policy,
            ));
        }
        if dialer.accepts_tcp() {
            let cannot = |source| EngineError::Listen { addr, source };
            let listener = connection::bind_listener(addr).map_err(cannot)?;
            bound = Some(listener.local_addr().map_err(cannot)?);
            acceptors.push(connection::spawn_acceptor(
                listener,
                handshakes,
                router.clone(),
                policy,
            ));
        }
        Ok(SharedListener {
            addr: bound.unwrap_or(addr),
            router,
            acceptors,
        })
    }

    /// The address peers reach the session at (the port bound, when `addr` gave 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn router(&self) -> &Router {
        &self.router
    }
}

impl Drop for SharedListener {
    fn drop(&mut self) {
        for acceptor in &self.acceptors {
            acceptor.abort();
        }
    }
}
