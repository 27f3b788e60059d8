//! A cap on the connections of many torrents together (libtorrent's
//! `connections_limit`, Transmission's `peer-limit-global`): each torrent keeps its own
//! limit too, and a connection counts against both for as long as it is open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections a session's torrents may hold at once, all together.
#[derive(Debug)]
pub struct ConnectionBudget {
    limit: usize,
    open: AtomicUsize,
}

impl ConnectionBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ConnectionBudget {
            limit,
            open: AtomicUsize::new(0),
        })
    }

    /// Room for one more connection, held until the permit drops; `None` at the limit.
    pub fn take(self: &Arc<Self>) -> Option<ConnectionPermit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .ok()?;
        Some(ConnectionPermit(self.clone()))
    }

    /// Connections that may still be opened.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.open.load(Ordering::Acquire))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One open connection's share of a [`ConnectionBudget`], given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionBudget>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_given_back() {
        let budget = ConnectionBudget::new(2);
        let a = budget.take().expect("room for the first");
        let b = budget.take().expect("room for the second");
        assert!(budget.take().is_none(), "the limit holds");
        assert_eq!((budget.open(), budget.available()), (2, 0));
        drop(a);
        assert_eq!(budget.available(), 1);
        let c = budget.take().expect("a dropped permit frees its room");
        drop((b, c));
        assert_eq!((budget.open(), budget.available()), (0, 2));
    }

    #[test]
    fn many_threads_never_overshoot() {
        let budget = ConnectionBudget::new(10);
        let permits: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..5).filter_map(|_| budget.take()).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("no panic"))
                .collect()
        });
        assert_eq!(permits.len(), 10);
        assert_eq!(budget.open(), 10);
    }
}
