//! The virtual clock and the event queue.
//!
//! Time is a count of nanoseconds since the start of the run ([`Nanos`]). Events that fall
//! on the same nanosecond run in the order they were scheduled (a sequence number breaks
//! the tie), so a run never depends on heap internals or on anything but its inputs.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Virtual time: nanoseconds since the start of the run.
pub type Nanos = u64;

pub const SECOND: Nanos = 1_000_000_000;
pub const MILLISECOND: Nanos = 1_000_000;

/// Seconds as a float, for reports.
pub fn as_secs(t: Nanos) -> f64 {
    t as f64 / SECOND as f64
}

/// Nanoseconds to move `bytes` at `rate` bytes per second (at least 1 ns).
pub fn transfer_time(bytes: usize, rate: u64) -> Nanos {
    ((bytes as u128 * u128::from(SECOND)) / u128::from(rate.max(1))).max(1) as Nanos
}

struct Entry<E> {
    at: Nanos,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed, so that the max-heap pops the earliest event.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A priority queue of events on the virtual clock.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    now: Nanos,
    processed: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
            processed: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// The time of the event being processed.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Events popped so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Schedules `event` at `at` (never before now).
    pub fn schedule(&mut self, at: Nanos, event: E) {
        let at = at.max(self.now);
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    /// The next event, advancing the clock to it; `None` when nothing is left or the next
    /// event lies after `until`.
    pub fn pop(&mut self, until: Nanos) -> Option<E> {
        if self.heap.peek()?.at > until {
            return None;
        }
        let entry = self.heap.pop()?;
        self.now = entry.at;
        self.processed += 1;
        Some(entry.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_scheduling_order() {
        let mut q = EventQueue::default();
        q.schedule(5, "b");
        q.schedule(3, "a");
        q.schedule(5, "c");
        q.schedule(9, "d");
        assert_eq!(q.pop(100), Some("a"));
        assert_eq!(q.now(), 3);
        assert_eq!(q.pop(100), Some("b"));
        assert_eq!(q.pop(100), Some("c"));
        assert_eq!(q.pop(8), None, "after the horizon");
        assert_eq!(q.pop(100), Some("d"));
        assert_eq!(q.processed(), 4);
        assert_eq!(transfer_time(1 << 20, 1 << 20), SECOND);
    }
}
