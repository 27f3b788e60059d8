//! A cap on the connections of many torrents together (libtorrent's
//! `connections_limit`, Transmission's `peer-limit-global`): each torrent keeps its own
//! limit too, and a connection counts against both from the moment it is dialled (or
//! accepted) for as long as it is open.
//!
//! Taken first come, first served, the cap would let the first busy torrents hold it
//! all and leave a newcomer with none. So each torrent has a fair share (the cap over
//! the torrents drawing on it), and one under its share that finds no room says so:
//! for a moment, torrents over their share dial no more and each lets one connection
//! go a second, as libtorrent disconnects a peer of the torrent with the most.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a torrent's call for room holds.
const ROOM_WANTED_FOR: Duration = Duration::from_secs(1);

/// Connections a session's torrents may hold at once, all together.
#[derive(Debug)]
pub struct ConnectionBudget {
    limit: usize,
    open: AtomicUsize,
    /// Torrents drawing on it now.
    members: AtomicUsize,
    /// When a torrent under its share last found no room, as milliseconds after
    /// `epoch` plus one (0: never).
    wanted: AtomicU64,
    epoch: Instant,
}

impl ConnectionBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ConnectionBudget {
            limit,
            open: AtomicUsize::new(0),
            members: AtomicUsize::new(0),
            wanted: AtomicU64::new(0),
            epoch: Instant::now(),
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

    /// Connections open (or being opened) now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A torrent draws on the budget until the membership drops.
    pub fn join(self: &Arc<Self>) -> Member {
        self.members.fetch_add(1, Ordering::AcqRel);
        Member(self.clone())
    }

    /// The connections each torrent may count on: the limit shared equally (at least one).
    pub fn fair_share(&self) -> usize {
        (self.limit / self.members.load(Ordering::Acquire).max(1)).max(1)
    }

    /// A torrent under its fair share found no room.
    pub fn want_room(&self, now: Instant) {
        let since = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.wanted.fetch_max(since + 1, Ordering::AcqRel);
    }

    /// Whether a torrent under its fair share wants room (it said so within the last
    /// [`ROOM_WANTED_FOR`]).
    pub fn is_room_wanted(&self, now: Instant) -> bool {
        let wanted = self.wanted.load(Ordering::Acquire);
        let since = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        wanted != 0 && since.saturating_sub(wanted) < ROOM_WANTED_FOR.as_millis() as u64
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

/// A torrent's place among those sharing a [`ConnectionBudget`].
#[derive(Debug)]
pub struct Member(Arc<ConnectionBudget>);

impl Drop for Member {
    fn drop(&mut self) {
        self.0.members.fetch_sub(1, Ordering::AcqRel);
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
    fn the_share_follows_the_members_and_a_call_for_room_fades() {
        let budget = ConnectionBudget::new(10);
        assert_eq!(budget.fair_share(), 10);
        let members: Vec<Member> = (0..3).map(|_| budget.join()).collect();
        assert_eq!(budget.fair_share(), 3);
        let many: Vec<Member> = (0..20).map(|_| budget.join()).collect();
        assert_eq!(budget.fair_share(), 1, "never none");
        drop((members, many));
        assert_eq!(budget.fair_share(), 10);

        let now = Instant::now();
        assert!(!budget.is_room_wanted(now));
        budget.want_room(now);
        assert!(budget.is_room_wanted(now));
        assert!(budget.is_room_wanted(now + Duration::from_millis(900)));
        assert!(!budget.is_room_wanted(now + ROOM_WANTED_FOR));
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
