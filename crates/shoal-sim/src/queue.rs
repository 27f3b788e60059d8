//! The virtual clock and the event queue.
//!
//! Time is a count of nanoseconds since the start of the run ([`Nanos`]). Events that fall
//! on the same nanosecond run in the order they were scheduled (a sequence number breaks
//! the tie), so a run never depends on queue internals or on anything but its inputs.
//!
//! The queue is a calendar: events of the next few seconds sit unsorted in buckets of
//! about a millisecond, and only the current bucket is a heap. A run keeps hundreds of
//! thousands of events pending, almost all due within a round trip or a tick; one big
//! binary heap spent a tenth of a run on cache misses, while a bucket's heap stays small
//! and a push to a later bucket is an append.

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

/// log2 of a bucket's width in nanoseconds (about a millisecond).
const BUCKET_SHIFT: u32 = 20;
/// Buckets in the calendar (a power of two): about 4.4 s ahead. Later events wait in an
/// ordinary heap until the calendar reaches them.
const BUCKETS: u64 = 4096;

/// A priority queue of events on the virtual clock: pops the earliest, ties in
/// scheduling order. See the module documentation.
pub struct EventQueue<E> {
    /// Events of bucket `current`, the earliest pending ones.
    heap: BinaryHeap<Entry<E>>,
    /// The index (time >> BUCKET_SHIFT) of the bucket in `heap`.
    current: u64,
    /// Buckets `current + 1 .. current + BUCKETS`, by index modulo `BUCKETS`, unsorted.
    calendar: Vec<Vec<Entry<E>>>,
    /// Events in `calendar`.
    in_calendar: usize,
    /// Events beyond the calendar.
    later: BinaryHeap<Entry<E>>,
    seq: u64,
    now: Nanos,
    processed: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            current: 0,
            calendar: (0..BUCKETS).map(|_| Vec::new()).collect(),
            in_calendar: 0,
            later: BinaryHeap::new(),
            seq: 0,
            now: 0,
            processed: 0,
        }
    }
}

fn bucket(at: Nanos) -> u64 {
    at >> BUCKET_SHIFT
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
        self.insert(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    fn insert(&mut self, entry: Entry<E>) {
        let index = bucket(entry.at);
        if index <= self.current {
            self.heap.push(entry);
        } else if index < self.current + BUCKETS {
            self.calendar[(index % BUCKETS) as usize].push(entry);
            self.in_calendar += 1;
        } else {
            self.later.push(entry);
        }
    }

    /// The next event, advancing the clock to it; `None` when nothing is left or the next
    /// event lies after `until`.
    pub fn pop(&mut self, until: Nanos) -> Option<E> {
        while self.heap.is_empty() {
            self.advance()?;
        }
        if self.heap.peek()?.at > until {
            return None;
        }
        let entry = self.heap.pop()?;
        self.now = entry.at;
        self.processed += 1;
        Some(entry.event)
    }

    /// Moves to the next bucket (or straight to the first later event when the calendar
    /// is empty), whose events become the heap; `None` if no event is left.
    fn advance(&mut self) -> Option<()> {
        if self.in_calendar == 0 {
            self.current = bucket(self.later.peek()?.at).max(self.current + 1);
        } else {
            self.current += 1;
        }
        // Later events now within the calendar's reach join their buckets.
        while let Some(next) = self.later.peek() {
            if bucket(next.at) >= self.current + BUCKETS {
                break;
            }
            let entry = self.later.pop().expect("peeked");
            self.in_calendar += 1;
            self.calendar[(bucket(entry.at) % BUCKETS) as usize].push(entry);
        }
        let slot = (self.current % BUCKETS) as usize;
        let due = std::mem::take(&mut self.calendar[slot]);
        self.in_calendar -= due.len();
        // The emptied heap's room goes back to the calendar for a later bucket.
        let emptied = std::mem::replace(&mut self.heap, BinaryHeap::from(due));
        self.calendar[slot] = emptied.into_vec();
        Some(())
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

    /// Any schedule pops in the order of a plain heap on (time, scheduling order), events
    /// scheduled while popping included, across buckets, the calendar's wrap and the
    /// heap of later events.
    #[test]
    fn same_order_as_one_heap() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut queue = EventQueue::default();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        let mut schedule = |queue: &mut EventQueue<u64>, reference: &mut BinaryHeap<_>, at| {
            seq += 1;
            queue.schedule(at, seq);
            reference.push(Entry {
                at: at.max(queue.now()),
                seq,
                event: seq,
            });
        };
        let spans = [0, 1000, MILLISECOND, 50 * MILLISECOND, SECOND, 20 * SECOND];
        for _ in 0..2000 {
            let span = spans[rng.gen_range(0..spans.len())];
            let at = rng.gen_range(0..=span);
            schedule(&mut queue, &mut reference, at);
        }
        let mut popped = 0;
        while let Some(entry) = reference.pop() {
            assert_eq!(queue.pop(u64::MAX), Some(entry.event));
            assert_eq!(queue.now(), entry.at);
            popped += 1;
            for _ in 0..rng.gen_range(0..3) {
                if popped < 20_000 {
                    let span = spans[rng.gen_range(0..spans.len())];
                    let at = queue.now() + rng.gen_range(0..=span);
                    schedule(&mut queue, &mut reference, at);
                }
            }
        }
        assert_eq!(queue.pop(u64::MAX), None);
        let mut q = EventQueue::default();
        q.schedule(100 * SECOND, 1);
        assert_eq!(q.pop(SECOND), None, "after the horizon");
        assert_eq!(q.pop(u64::MAX), Some(1));
    }
}
