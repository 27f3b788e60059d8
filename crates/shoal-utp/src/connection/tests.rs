//! Two connections over a simulated link: latency, loss and reordering on a virtual
//! clock, deterministic by seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

struct Link {
    latency: Duration,
    jitter: Duration,
    loss: f64,
    rng: StdRng,
    /// A bottleneck from side 0 to side 1: bytes per second, and how long its queue may
    /// grow before it drops (a modem's buffer).
    bottleneck: Option<(f64, Duration)>,
}

/// A datagram on the wire: arrival time, send order, recipient, bytes.
type InFlight = Reverse<(Instant, u64, usize, Vec<u8>)>;

/// Two endpoints and the datagrams in flight between them.
struct Pair {
    now: Instant,
    ends: [Connection; 2],
    wire: BinaryHeap<InFlight>,
    order: u64,
    link: Link,
    received: [Vec<u8>; 2],
    eof: [bool; 2],
    /// Bytes of each side's `send` taken so far, across runs.
    written: [usize; 2],
    /// When the bottleneck has sent what is queued, and the queueing delay each datagram
    /// through it met (time sent, delay).
    busy_until: Instant,
    queueing: Vec<(Instant, Duration)>,
}

impl Pair {
    fn new(link: Link, config: Config) -> Pair {
        let now = Instant::now();
        let mut client = Connection::connect(config.clone(), 1000, 40_000, now);
        let syn = Packet::parse(&client.poll_transmit(now).unwrap()).unwrap();
        assert_eq!(syn.kind, Kind::Syn);
        assert_eq!(syn.connection_id, 1000);
        let server = Connection::accept(config, &syn, 65_530, now);
        Pair {
            now,
            ends: [client, server],
            wire: BinaryHeap::new(),
            order: 0,
            link,
            received: [Vec::new(), Vec::new()],
            eof: [false, false],
            written: [0, 0],
            busy_until: now,
            queueing: Vec::new(),
        }
    }

    fn flush(&mut self, from: usize) {
        while let Some(datagram) = self.ends[from].poll_transmit(self.now) {
            if self.link.rng.gen_bool(self.link.loss) {
                continue;
            }
            let jitter = self.link.jitter.mul_f64(self.link.rng.gen::<f64>());
            let mut at = self.now + self.link.latency + jitter;
            if let (0, Some((rate, buffer))) = (from, self.link.bottleneck) {
                let start = self.busy_until.max(self.now);
                let waited = start - self.now;
                if waited > buffer {
                    continue;
                }
                self.busy_until = start + Duration::from_secs_f64(datagram.len() as f64 / rate);
                self.queueing.push((self.now, waited));
                at = self.busy_until + self.link.latency;
            }
            self.order += 1;
            self.wire
                .push(Reverse((at, self.order, 1 - from, datagram)));
        }
    }

    fn read_all(&mut self, side: usize) {
        let mut buf = [0u8; 4096];
        loop {
            match self.ends[side].read(&mut buf) {
                Read::Data(n) => self.received[side].extend_from_slice(&buf[..n]),
                Read::Eof => {
                    self.eof[side] = true;
                    return;
                }
                Read::Pending => return,
            }
        }
    }

    /// Runs until `done` or `limit` of virtual time; the two sides write `send` (from
    /// where earlier runs left off) as the buffers take it and read if `read` says so.
    /// Returns the virtual time taken.
    fn run(
        &mut self,
        send: [&[u8]; 2],
        read: [bool; 2],
        limit: Duration,
        done: impl Fn(&Pair) -> bool,
    ) -> Duration {
        let start = self.now;
        while !done(self) && self.now - start < limit {
            for side in 0..2 {
                if self.ends[side].is_connected() {
                    let from = self.written[side].min(send[side].len());
                    self.written[side] += self.ends[side].write(&send[side][from..]);
                }
                if read[side] {
                    self.read_all(side);
                }
                self.flush(side);
            }
            // Next event: a datagram or a timer.
            let timer = self.ends.iter().filter_map(Connection::poll_timeout).min();
            let arrival = self.wire.peek().map(|Reverse((at, ..))| *at);
            let next = match (timer, arrival) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(self.now + Duration::from_millis(10)),
            };
            self.now = next.max(self.now);
            while let Some(Reverse((at, ..))) = self.wire.peek() {
                if *at > self.now {
                    break;
                }
                let Reverse((_, _, to, datagram)) = self.wire.pop().unwrap();
                let packet = Packet::parse(&datagram).unwrap();
                self.ends[to].handle_packet(&packet, self.now);
            }
            for end in &mut self.ends {
                end.handle_timeout(self.now);
                end.check_counters();
            }
        }
        self.now - start
    }
}

/// Asserts `got == want` without printing megabytes: lengths and the first difference.
#[track_caller]
fn same(got: &[u8], want: &[u8]) {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && first.is_none(),
        "got {} bytes, want {}; first difference at {first:?}",
        got.len(),
        want.len()
    );
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

fn link(latency_ms: u64, jitter_ms: u64, loss: f64, seed: u64) -> Link {
    Link {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::from_millis(jitter_ms),
        loss,
        rng: StdRng::seed_from_u64(seed),
        bottleneck: None,
    }
}

#[test]
fn handshake_then_both_directions_in_order() {
    let mut pair = Pair::new(link(20, 0, 0.0, 1), Config::default());
    let (a, b) = (data(300_000, 1), data(200_000, 2));
    pair.run([&a, &b], [true, true], Duration::from_secs(30), |p| {
        p.received[0].len() == b.len() && p.received[1].len() == a.len()
    });
    same(&pair.received[1], &a);
    same(&pair.received[0], &b);
    assert!(pair.ends[0].is_connected() && pair.ends[1].is_connected());
}

#[test]
fn survives_loss_and_reordering() {
    for seed in 0..4 {
        let mut pair = Pair::new(link(30, 25, 0.08, seed), Config::default());
        let a = data(400_000, seed);
        let took = pair.run([&a, &[]], [true, true], Duration::from_secs(120), |p| {
            p.received[1].len() == a.len()
        });
        same(&pair.received[1], &a);
        assert!(took < Duration::from_secs(60), "seed {seed}: {took:?}");
    }
}

#[test]
fn close_delivers_eof_after_all_data_and_both_sides_finish() {
    let mut pair = Pair::new(link(10, 5, 0.05, 9), Config::default());
    let a = data(50_000, 3);
    pair.run([&a, &[]], [true, true], Duration::from_secs(30), |p| {
        p.received[1].len() == a.len()
    });
    pair.ends[0].close();
    pair.run([&a, &[]], [true, true], Duration::from_secs(30), |p| {
        p.eof[1]
    });
    same(&pair.received[1], &a);
    assert!(pair.eof[1]);
    pair.ends[1].close();
    pair.run([&[], &[]], [true, true], Duration::from_secs(30), |p| {
        p.ends[0].is_closed() && p.ends[1].is_closed()
    });
    assert!(pair.eof[0]);
    assert_eq!(pair.ends[0].error(), None);
    assert_eq!(pair.ends[1].error(), None);
}

#[test]
fn a_receiver_that_does_not_read_holds_the_sender_to_its_window() {
    let config = Config {
        receive_buffer: 64 * 1024,
        send_buffer: 256 * 1024,
        ..Config::default()
    };
    let mut pair = Pair::new(link(5, 0, 0.0, 4), config);
    let a = data(1 << 20, 5);
    pair.run([&a, &[]], [false, false], Duration::from_secs(10), |_| {
        false
    });
    let buffered = pair.ends[1].readable.len() + pair.ends[1].out_of_order_bytes;
    // The window, and at most one probe every half second (the least timeout) past it.
    assert!(buffered <= 64 * 1024 + 20 * 1400, "{buffered}");
    assert_eq!(pair.ends[0].writable(), 0, "the sender's buffer is full");
    // Reading reopens the window and the rest flows.
    pair.run([&a, &[]], [true, true], Duration::from_secs(60), |p| {
        p.received[1].len() == a.len()
    });
    same(&pair.received[1], &a);
}

#[test]
fn a_dead_peer_times_out() {
    let mut pair = Pair::new(link(10, 0, 0.0, 6), Config::default());
    pair.run(
        [&[1, 2, 3], &[]],
        [true, true],
        Duration::from_secs(2),
        |p| p.received[1].len() == 3,
    );
    // Everything is lost from now on.
    pair.link.loss = 1.0;
    let took = pair.run(
        [&[7; 5000], &[]],
        [true, true],
        Duration::from_secs(600),
        |p| p.ends[0].is_closed(),
    );
    assert_eq!(pair.ends[0].error(), Some(UtpError::TimedOut));
    assert!(took < Duration::from_secs(200), "{took:?}");
}

#[test]
fn a_reset_ends_the_connection() {
    let mut pair = Pair::new(link(10, 0, 0.0, 7), Config::default());
    pair.run([&[1], &[]], [true, true], Duration::from_secs(2), |p| {
        p.received[1].len() == 1
    });
    let reset = Packet::new(Kind::Reset, pair.ends[0].recv_id(), 0, 0);
    pair.ends[0].handle_packet(&reset, pair.now);
    assert_eq!(pair.ends[0].error(), Some(UtpError::Reset));
    assert_eq!(pair.ends[0].poll_transmit(pair.now), None);
}

#[test]
fn hostile_sequence_numbers_stay_bounded() {
    let now = Instant::now();
    let syn = Packet::new(Kind::Syn, 77, 500, 0);
    let mut conn = Connection::accept(Config::default(), &syn, 9, now);
    // Data far ahead, far behind, duplicated, and acks for packets never sent.
    for seq in (0..=u16::MAX).step_by(7) {
        let mut packet = Packet::new(Kind::Data, 78, seq, seq.wrapping_mul(31));
        packet.payload = vec![0; 1400];
        packet.sack = Some(vec![0xff; 32]);
        conn.handle_packet(&packet, now);
    }
    assert!(conn.out_of_order.len() <= usize::from(MAX_OUT_OF_ORDER));
    assert!(conn.readable.len() + conn.out_of_order_bytes <= 2 * (1 << 20));
    while conn.poll_transmit(now).is_some() {}
}

#[test]
fn throughput_fills_a_window_over_a_long_path() {
    // 100 ms each way, no loss: slow start should carry 4 MiB well within 30 s.
    let mut pair = Pair::new(link(100, 0, 0.0, 8), Config::default());
    let a = data(4 << 20, 8);
    let took = pair.run([&a, &[]], [true, true], Duration::from_secs(120), |p| {
        p.received[1].len() == a.len()
    });
    same(&pair.received[1], &a);
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn the_shortest_round_trip_is_the_paths() {
    // The accepting side, sending: its first sample is its first data packet's ack (the
    // harness hands the SYN over without the link, so the dialler's first sample, the
    // SYN's answer, would be one way only).
    let mut pair = Pair::new(link(100, 0, 0.0, 8), Config::default());
    let b = data(1 << 20, 8);
    pair.run([&[], &b], [true, true], Duration::from_secs(60), |p| {
        p.received[0].len() == b.len()
    });
    let min = pair.ends[1].min_rtt().expect("measured");
    assert!(
        min >= Duration::from_millis(200) && min < Duration::from_millis(215),
        "{min:?}"
    );
}

#[test]
fn ledbat_keeps_a_bottleneck_queue_near_its_target() {
    // 1 MB/s uplink with 2 s of buffer, 20 ms each way: a loss-driven sender would fill
    // the buffer (2 s of delay for everything else on the line); LEDBAT holds the queue
    // near 100 ms and still uses the link.
    let mut link = link(20, 0, 0.0, 11);
    link.bottleneck = Some((1_000_000.0, Duration::from_secs(2)));
    let mut pair = Pair::new(link, Config::default());
    let a = data(30_000_000, 11);
    let took = pair.run([&a, &[]], [true, true], Duration::from_secs(60), |p| {
        p.received[1].len() == a.len()
    });
    let start = pair.queueing[0].0;
    let late: Vec<Duration> = pair
        .queueing
        .iter()
        .filter(|(at, _)| *at - start >= Duration::from_secs(10))
        .map(|(_, d)| *d)
        .collect();
    let mean = late.iter().sum::<Duration>() / late.len() as u32;
    let max = late.iter().max().unwrap();
    assert!(mean < Duration::from_millis(150), "mean queueing {mean:?}");
    // The shortest round trip leaves the queue out; the smoothed one does not.
    let min = pair.ends[0].min_rtt().expect("measured");
    assert!(min < Duration::from_millis(45), "shortest {min:?}");
    assert!(pair.ends[0].rtt.srtt.unwrap() > min + Duration::from_millis(20));
    assert!(*max < Duration::from_millis(400), "max queueing {max:?}");
    // And the link stays busy.
    let got = pair.received[1].len();
    let rate = got as f64 / took.as_secs_f64();
    assert!(rate > 750_000.0, "{got} bytes in {took:?}");
    same(&pair.received[1], &a[..got]);
}
