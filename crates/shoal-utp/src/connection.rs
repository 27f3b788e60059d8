//! One uTP connection as a state machine: it takes datagrams, the application's bytes
//! and the time, and hands back datagrams to send and bytes read. No sockets, no clocks
//! of its own: the tokio socket and the tests drive it alike.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::congestion::Ledbat;
use crate::packet::{seq_lt, Kind, Packet};

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Payload bytes per packet: a datagram stays under a 1500-byte Ethernet MTU with
    /// IPv6 and UDP headers and a selective ack.
    pub max_payload: usize,
    /// Bytes the application may have written that are not yet acknowledged.
    pub send_buffer: usize,
    /// Bytes received and not yet read, in order or not: the window we advertise.
    pub receive_buffer: usize,
    /// Transmissions of one packet before the connection is given up (a SYN's: 3, so a
    /// connect fails after 1 + 2 + 4 s, as libtorrent's takes about that long).
    pub max_retransmits: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_payload: 1400,
            send_buffer: 1 << 20,
            receive_buffer: 1 << 20,
            max_retransmits: 6,
        }
    }
}

/// Why a connection ended abnormally.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum UtpError {
    #[error("uTP connection timed out")]
    TimedOut,
    #[error("uTP connection reset by peer")]
    Reset,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Bytes copied into the buffer.
    Data(usize),
    /// Nothing yet.
    Pending,
    /// The peer closed its side and everything it sent has been read.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SynSent,
    Connected,
    /// Reset, timed out, or both sides finished and acknowledged.
    Closed,
}

/// A packet sent and not yet acknowledged.
#[derive(Debug)]
struct Sent {
    seq: u16,
    kind: Kind,
    payload: Vec<u8>,
    sent_at: Instant,
    transmissions: u32,
    /// Counted in the bytes in flight (sent, and neither acked nor taken for lost).
    in_flight: bool,
    /// Acknowledged by a selective ack, ahead of the cumulative one.
    sacked: bool,
    /// Taken for lost: to be sent again.
    resend: bool,
}

/// Round-trip estimate (RFC 6298, as BEP 29 prescribes).
#[derive(Debug, Clone, Copy)]
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// The shortest sample: the path's delay without the queues on it.
    min: Option<Duration>,
}

const INITIAL_RTO: Duration = Duration::from_secs(1);
/// BEP 29: the timeout is never under half a second.
const MIN_RTO: Duration = Duration::from_millis(500);
const MAX_RTO: Duration = Duration::from_secs(60);
/// An idle connection sends an ack this often, so NAT mappings stay up.
const KEEPALIVE: Duration = Duration::from_secs(29);
/// Packets held out of order at most; more arrive only from a peer that ignores our
/// window, and are dropped.
const MAX_OUT_OF_ORDER: u16 = 1024;
/// Selective ack bytes: 256 packets past the cumulative ack.
const MAX_SACK_BYTES: usize = 32;

impl Rtt {
    fn new() -> Rtt {
        Rtt {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
            min: None,
        }
    }

    fn sample(&mut self, rtt: Duration) {
        self.min = Some(self.min.map_or(rtt, |min| min.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        self.rto = (self.srtt.unwrap_or(rtt) + self.rttvar * 4).clamp(MIN_RTO, MAX_RTO);
    }
}

/// One uTP connection. See the module documentation.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    error: Option<UtpError>,
    recv_id: u16,
    send_id: u16,
    /// Sequence number of the next packet we send.
    seq_nr: u16,
    /// Last sequence number received in order.
    ack_nr: u16,
    epoch: Instant,

    /// Bytes written by the application, not yet in a packet.
    pending: VecDeque<u8>,
    /// Packets sent and not cumulatively acknowledged, oldest first.
    unacked: VecDeque<Sent>,
    unacked_bytes: usize,
    /// Packets waiting to be sent (new, or taken for lost): counted, so that finding
    /// the next one is a scan only after a loss.
    to_send: usize,
    /// Packets, and their bytes, never sent yet: the tail of `unacked`.
    unsent: usize,
    unsent_bytes: usize,
    in_flight: usize,
    cc: Ledbat,
    /// A send found the window full since the last ack: the window is being used.
    window_limited: bool,
    peer_window: usize,
    rtt: Rtt,
    /// When the oldest packet in flight times out.
    timeout_at: Option<Instant>,
    last_ack_received: u16,
    duplicate_acks: u32,
    close_requested: bool,
    fin_sent: bool,
    last_sent: Instant,

    /// Bytes received in order and not yet read.
    readable: VecDeque<u8>,
    /// Packets received ahead of a gap: payload, and whether it is the peer's FIN.
    out_of_order: BTreeMap<u16, (Vec<u8>, bool)>,
    out_of_order_bytes: usize,
    peer_finished: bool,
    ack_due: bool,
    /// The peer's last timestamp against our clock: the delay we report back to it.
    reply_micro: u32,
    /// The window we advertised last was too small for a packet: a read that opens it
    /// must tell the peer.
    window_was_closed: bool,
    /// The peer's window has been closed for a retransmission timeout: one packet may
    /// go to learn whether it opened (its window update may have been lost).
    probe_due: bool,
}

impl Connection {
    fn new(config: Config, recv_id: u16, send_id: u16, seq_nr: u16, now: Instant) -> Self {
        let cc = Ledbat::new(config.max_payload, config.send_buffer);
        Connection {
            state: State::SynSent,
            error: None,
            recv_id,
            send_id,
            seq_nr,
            ack_nr: 0,
            epoch: now,
            pending: VecDeque::new(),
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            to_send: 0,
            unsent: 0,
            unsent_bytes: 0,
            in_flight: 0,
            cc,
            window_limited: false,
            peer_window: config.max_payload,
            rtt: Rtt::new(),
            timeout_at: None,
            last_ack_received: seq_nr.wrapping_sub(1),
            duplicate_acks: 0,
            close_requested: false,
            fin_sent: false,
            last_sent: now,
            readable: VecDeque::new(),
            out_of_order: BTreeMap::new(),
            out_of_order_bytes: 0,
            peer_finished: false,
            ack_due: false,
            reply_micro: 0,
            window_was_closed: false,
            probe_due: false,
            config,
        }
    }

    /// Opens a connection: `recv_id` is the id our peer will address us by (the SYN
    /// carries it; everything after, `recv_id + 1`), `seq_nr` a random first sequence
    /// number. The SYN is the first datagram [`Connection::poll_transmit`] returns.
    pub fn connect(config: Config, recv_id: u16, seq_nr: u16, now: Instant) -> Self {
        let mut conn = Connection::new(config, recv_id, recv_id.wrapping_add(1), seq_nr, now);
        conn.queue_packet(Kind::Syn, Vec::new());
        conn
    }

    /// Accepts a peer's SYN; the connection's first datagram acknowledges it.
    pub fn accept(config: Config, syn: &Packet, seq_nr: u16, now: Instant) -> Self {
        let mut conn = Connection::new(
            config,
            syn.connection_id.wrapping_add(1),
            syn.connection_id,
            seq_nr,
            now,
        );
        conn.state = State::Connected;
        conn.ack_nr = syn.seq_nr;
        conn.ack_due = true;
        conn.note_timestamps(syn, now);
        conn
    }

    /// The id packets to us carry.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// The shortest round trip measured so far (a packet acked on its first
    /// transmission), if any.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.rtt.min
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The connection is over (closed by both sides, reset or timed out): nothing more
    /// will be sent or read past what is buffered.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn error(&self) -> Option<UtpError> {
        self.error
    }

    fn micros(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    fn note_timestamps(&mut self, packet: &Packet, now: Instant) {
        self.reply_micro = self.micros(now).wrapping_sub(packet.timestamp_us);
    }

    fn advertised_window(&self) -> usize {
        self.config
            .receive_buffer
            .saturating_sub(self.readable.len() + self.out_of_order_bytes)
    }

    /// Bytes the application may still write.
    pub fn writable(&self) -> usize {
        if self.close_requested || self.state == State::Closed {
            return 0;
        }
        self.config
            .send_buffer
            .saturating_sub(self.pending.len() + self.unacked_bytes)
    }

    /// Takes as much of `data` as the send buffer holds; returns how much.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.writable());
        self.pending.extend(&data[..n]);
        n
    }

    /// Reads into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> Read {
        if self.readable.is_empty() {
            return if self.peer_finished || self.state == State::Closed {
                Read::Eof
            } else {
                Read::Pending
            };
        }
        let n = buf.len().min(self.readable.len());
        take_front(&mut self.readable, &mut buf[..n]);
        if self.window_was_closed && self.advertised_window() >= self.config.max_payload {
            self.window_was_closed = false;
            self.ack_due = true;
        }
        Read::Data(n)
    }

    /// Closes our side once everything written is sent (a FIN follows it).
    pub fn close(&mut self) {
        self.close_requested = true;
    }

    /// Everything we wrote, and our FIN, have been acknowledged.
    pub fn is_drained(&self) -> bool {
        self.fin_sent && self.unacked.is_empty()
    }

    fn fail(&mut self, error: UtpError) {
        tracing::debug!(
            recv_id = self.recv_id,
            %error,
            cwnd = self.cc.window(),
            in_flight = self.in_flight,
            peer_window = self.peer_window,
            unacked = self.unacked.len(),
            rto = ?self.rtt.rto,
            "uTP connection failed"
        );
        self.error.get_or_insert(error);
        self.state = State::Closed;
        self.unacked.clear();
        self.pending.clear();
        self.in_flight = 0;
        self.unacked_bytes = 0;
        self.to_send = 0;
        self.unsent = 0;
        self.unsent_bytes = 0;
        self.timeout_at = None;
    }

    fn queue_packet(&mut self, kind: Kind, payload: Vec<u8>) {
        self.unacked_bytes += payload.len();
        self.to_send += 1;
        self.unsent += 1;
        self.unsent_bytes += payload.len();
        self.unacked.push_back(Sent {
            seq: self.seq_nr,
            kind,
            payload,
            sent_at: self.epoch,
            transmissions: 0,
            in_flight: false,
            sacked: false,
            resend: true,
        });
        self.seq_nr = self.seq_nr.wrapping_add(1);
    }

    /// Handles a datagram addressed to this connection.
    pub fn handle_packet(&mut self, packet: &Packet, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if packet.kind == Kind::Reset {
            self.fail(UtpError::Reset);
            return;
        }
        if packet.kind == Kind::Syn {
            // A retransmitted SYN: our answer was lost.
            if self.state == State::Connected && packet.seq_nr == self.ack_nr {
                self.ack_due = true;
            }
            return;
        }
        if self.state == State::SynSent {
            let syn = self.seq_nr.wrapping_sub(1);
            if packet.ack_nr != syn {
                return;
            }
            self.state = State::Connected;
            // A state packet names the sequence number of the peer's first data packet.
            self.ack_nr = packet.seq_nr.wrapping_sub(1);
        }
        self.note_timestamps(packet, now);
        self.peer_window = packet.wnd_size as usize;
        self.process_acks(packet, now);
        if self.state == State::Closed {
            return;
        }
        match packet.kind {
            Kind::Data | Kind::Fin => self.receive(packet),
            _ => {}
        }
        if self.peer_finished && self.is_drained() {
            self.state = State::Closed;
        }
    }

    fn receive(&mut self, packet: &Packet) {
        self.ack_due = true;
        let fin = packet.kind == Kind::Fin;
        let next = self.ack_nr.wrapping_add(1);
        if packet.seq_nr == next {
            // A packet past our window is still taken (a peer probes a closed window with
            // one), up to twice the buffer; past that it is dropped and sent again.
            let buffered = self.readable.len() + self.out_of_order_bytes;
            if buffered + packet.payload.len() > 2 * self.config.receive_buffer {
                return;
            }
            self.deliver(packet.payload.clone(), fin);
            while let Some((payload, fin)) = self.out_of_order.remove(&self.ack_nr.wrapping_add(1))
            {
                self.out_of_order_bytes -= payload.len();
                self.deliver(payload, fin);
            }
        } else if seq_lt(next, packet.seq_nr)
            && packet.seq_nr.wrapping_sub(next) < MAX_OUT_OF_ORDER
            && !self.out_of_order.contains_key(&packet.seq_nr)
            && packet.payload.len() <= self.advertised_window()
        {
            self.out_of_order_bytes += packet.payload.len();
            self.out_of_order
                .insert(packet.seq_nr, (packet.payload.clone(), fin));
        }
    }

    fn deliver(&mut self, payload: Vec<u8>, fin: bool) {
        self.ack_nr = self.ack_nr.wrapping_add(1);
        if self.peer_finished {
            return;
        }
        self.readable.extend(payload);
        if fin {
            self.peer_finished = true;
            self.out_of_order.clear();
            self.out_of_order_bytes = 0;
        }
    }

    fn process_acks(&mut self, packet: &Packet, now: Instant) {
        let mut acked_bytes = 0;
        let mut progressed = false;
        // Cumulative: everything up to and including ack_nr.
        while let Some(front) = self.unacked.front() {
            if seq_lt(packet.ack_nr, front.seq) {
                break;
            }
            // An ack of a packet not sent yet is bogus.
            if seq_lt(self.seq_nr.wrapping_sub(1), packet.ack_nr) || front.transmissions == 0 {
                break;
            }
            let sent = self.unacked.pop_front().expect("front exists");
            progressed = true;
            acked_bytes += self.retire(&sent, now);
        }
        // Selective: mark packets past the gap.
        let mut sacked_after_gap = 0;
        if packet.sack.is_some() {
            for seq in packet.sacked() {
                if let Some(i) = self.index_of(seq) {
                    if !self.unacked[i].sacked && self.unacked[i].transmissions > 0 {
                        let sent = &mut self.unacked[i];
                        sent.sacked = true;
                        if std::mem::take(&mut sent.resend) {
                            self.to_send -= 1;
                        }
                        let size = sent.payload.len();
                        let was_in_flight = std::mem::replace(&mut sent.in_flight, false);
                        if was_in_flight {
                            self.in_flight -= size;
                        }
                        acked_bytes += size;
                    }
                }
            }
            sacked_after_gap = self.unacked.iter().filter(|s| s.sacked).count();
        }
        let highest_sent = self.seq_nr.wrapping_sub(1);
        if progressed {
            self.duplicate_acks = 0;
            self.last_ack_received = packet.ack_nr;
        } else if packet.kind == Kind::State
            && packet.ack_nr == self.last_ack_received
            && !self.unacked.is_empty()
        {
            self.duplicate_acks += 1;
        }
        // Loss: three duplicate acks mean the oldest packet is lost; a packet with three
        // selectively acked packets after it is lost too.
        let mut lost = Vec::new();
        if self.duplicate_acks >= 3 {
            self.duplicate_acks = 0;
            if let Some(sent) = self.unacked.iter().find(|s| !s.sacked) {
                if sent.in_flight {
                    lost.push(sent.seq);
                }
            }
        }
        let mut sacked_after = sacked_after_gap;
        for sent in &self.unacked {
            if sacked_after < 3 {
                break;
            }
            if sent.sacked {
                sacked_after -= 1;
            } else if sent.in_flight && !lost.contains(&sent.seq) {
                lost.push(sent.seq);
            }
        }
        for seq in lost {
            if let Some(i) = self.index_of(seq) {
                let sent = &mut self.unacked[i];
                sent.in_flight = false;
                sent.resend = true;
                self.to_send += 1;
                self.in_flight -= sent.payload.len();
            }
            self.cc.on_loss(seq, highest_sent);
        }
        if acked_bytes > 0 {
            let limited = std::mem::take(&mut self.window_limited);
            self.cc
                .on_ack(acked_bytes, packet.timestamp_diff_us, limited, now);
        }
        if progressed {
            // RFC 6298: an ack of new data restarts the timer.
            self.timeout_at = (self.in_flight > 0).then(|| now + self.rtt.rto);
        }
        if self.fin_sent && self.unacked.is_empty() && self.peer_finished {
            self.state = State::Closed;
        }
    }

    /// Forgets a cumulatively acked packet; returns its newly acked bytes.
    fn retire(&mut self, sent: &Sent, now: Instant) -> usize {
        self.unacked_bytes -= sent.payload.len();
        if sent.resend {
            self.to_send -= 1;
        }
        if sent.in_flight {
            self.in_flight -= sent.payload.len();
        }
        if sent.transmissions == 1 && !sent.resend {
            self.rtt.sample(now.saturating_duration_since(sent.sent_at));
        }
        if sent.sacked {
            0
        } else {
            sent.payload.len().max(1)
        }
    }

    fn index_of(&self, seq: u16) -> Option<usize> {
        let first = self.unacked.front()?.seq;
        let i = usize::from(seq.wrapping_sub(first));
        (i < self.unacked.len()).then_some(i)
    }

    /// When [`Connection::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut keepalive = (self.state == State::Connected).then_some(self.last_sent + KEEPALIVE);
        if self.window_blocked() {
            keepalive = keepalive.map(|k| k.min(self.probe_at()));
        }
        match (self.timeout_at, keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Data waits, nothing is in flight, and the peer's window is too small for it.
    fn window_blocked(&self) -> bool {
        self.in_flight == 0
            && !self.probe_due
            && (!self.pending.is_empty() || self.to_send > 0)
            && self.peer_window < self.config.max_payload
    }

    fn probe_at(&self) -> Instant {
        self.last_sent + self.rtt.rto
    }

    /// Retransmission timeouts and keepalives due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.timeout_at.is_some_and(|at| now >= at) {
            let limit = if self.state == State::SynSent {
                2
            } else {
                self.config.max_retransmits
            };
            if self
                .unacked
                .iter()
                .any(|s| s.in_flight && s.transmissions > limit)
            {
                self.fail(UtpError::TimedOut);
                return;
            }
            tracing::debug!(
                recv_id = self.recv_id,
                cwnd = self.cc.window(),
                in_flight = self.in_flight,
                peer_window = self.peer_window,
                unacked = self.unacked.len(),
                oldest = ?self.unacked.front().map(|s| (s.seq, s.transmissions, s.sacked)),
                ack_nr = self.last_ack_received,
                rto = ?self.rtt.rto,
                "uTP retransmission timeout"
            );
            self.cc.on_timeout();
            self.rtt.rto = (self.rtt.rto * 2).min(MAX_RTO);
            for sent in self.unacked.iter_mut().filter(|s| s.in_flight) {
                sent.in_flight = false;
                sent.resend = true;
                self.to_send += 1;
            }
            self.in_flight = 0;
            self.timeout_at = None;
        }
        if self.state == State::Connected && self.in_flight == 0 && now >= self.probe_at() {
            self.probe_due = true;
        }
        if self.state == State::Connected && now >= self.last_sent + KEEPALIVE {
            self.ack_due = true;
        }
    }

    /// The next datagram to send, if any; call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.state == State::Closed {
            return None;
        }
        if self.state == State::Connected {
            self.packetize();
        }
        let window = self.cc.window().min(self.peer_window);
        let candidate = if self.to_send > self.unsent {
            // A packet taken for lost: the oldest goes first.
            self.unacked.iter().position(|s| s.resend)
        } else if self.unsent > 0 {
            Some(self.unacked.len() - self.unsent)
        } else {
            None
        };
        if let Some(i) = candidate {
            let size = self.unacked[i].payload.len();
            // The congestion window always lets one packet go; a closed peer window lets
            // one go as a probe, once a retransmission timeout has passed.
            let fits = self.in_flight + size <= window;
            let alone = self.in_flight == 0 && (size <= self.peer_window || self.probe_due);
            if fits || alone {
                self.probe_due = false;
                return Some(self.transmit(i, now));
            }
            self.window_limited = true;
        }
        if !self.pending.is_empty() {
            // Bytes wait for room in the window.
            self.window_limited = true;
        }
        if self.ack_due && self.state == State::Connected {
            let packet = self.header(Kind::State, self.seq_nr, now);
            self.note_sent(now);
            return Some(packet.encode());
        }
        None
    }

    /// Turns pending bytes into packets, a whole packet's worth where there is one, and
    /// our FIN once the application closed and everything is packetized.
    fn packetize(&mut self) {
        // Packets queued but never sent count against the window already; do not build
        // more than a window ahead.
        let unsent = self.unsent_bytes;
        let window = self.cc.window().min(self.peer_window);
        let mut budget = window.saturating_sub(self.in_flight + unsent);
        while !self.pending.is_empty() && (budget > 0 || self.in_flight + unsent == 0) {
            let n = self.pending.len().min(self.config.max_payload);
            let mut payload = vec![0; n];
            take_front(&mut self.pending, &mut payload);
            budget = budget.saturating_sub(n);
            self.queue_packet(Kind::Data, payload);
            if budget == 0 {
                break;
            }
        }
        if self.close_requested && self.pending.is_empty() && !self.fin_sent {
            self.fin_sent = true;
            self.queue_packet(Kind::Fin, Vec::new());
        }
    }

    fn header(&self, kind: Kind, seq_nr: u16, now: Instant) -> Packet {
        let mut packet = Packet::new(
            kind,
            if kind == Kind::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            seq_nr,
            self.ack_nr,
        );
        packet.timestamp_us = self.micros(now);
        packet.timestamp_diff_us = self.reply_micro;
        packet.wnd_size = self.advertised_window() as u32;
        if kind != Kind::Syn && !self.out_of_order.is_empty() {
            let base = self.ack_nr.wrapping_add(2);
            let mut mask = vec![0u8; 4];
            for &seq in self.out_of_order.keys() {
                let bit = usize::from(seq.wrapping_sub(base));
                if bit >= MAX_SACK_BYTES * 8 {
                    continue;
                }
                if bit / 8 >= mask.len() {
                    mask.resize((bit / 32 + 1) * 4, 0);
                }
                mask[bit / 8] |= 1 << (bit % 8);
            }
            packet.sack = Some(mask);
        }
        packet
    }

    fn transmit(&mut self, i: usize, now: Instant) -> Vec<u8> {
        let (kind, seq) = (self.unacked[i].kind, self.unacked[i].seq);
        let mut packet = self.header(kind, seq, now);
        if kind == Kind::Syn {
            packet.ack_nr = 0;
            packet.wnd_size = 0;
        }
        let sent = &mut self.unacked[i];
        packet.payload = sent.payload.clone();
        if sent.transmissions == 0 {
            self.unsent -= 1;
            self.unsent_bytes -= sent.payload.len();
        }
        if sent.resend {
            self.to_send -= 1;
        }
        sent.transmissions += 1;
        sent.sent_at = now;
        sent.resend = false;
        sent.in_flight = true;
        self.in_flight += sent.payload.len();
        if self.timeout_at.is_none() {
            self.timeout_at = Some(now + self.rtt.rto);
        }
        self.note_sent(now);
        packet.encode()
    }

    fn note_sent(&mut self, now: Instant) {
        self.ack_due = false;
        self.last_sent = now;
        if self.advertised_window() < self.config.max_payload {
            self.window_was_closed = true;
        }
    }
}

#[cfg(test)]
impl Connection {
    /// The counters kept alongside `unacked` agree with a recount.
    fn check_counters(&self) {
        let count = |f: &dyn Fn(&Sent) -> bool| self.unacked.iter().filter(|s| f(s)).count();
        assert_eq!(self.to_send, count(&|s| s.resend), "to_send");
        assert_eq!(self.unsent, count(&|s| s.transmissions == 0), "unsent");
        let bytes = |f: &dyn Fn(&Sent) -> bool| -> usize {
            self.unacked
                .iter()
                .filter(|s| f(s))
                .map(|s| s.payload.len())
                .sum()
        };
        assert_eq!(
            self.unsent_bytes,
            bytes(&|s| s.transmissions == 0),
            "unsent bytes"
        );
        assert_eq!(self.in_flight, bytes(&|s| s.in_flight), "in flight");
        assert_eq!(self.unacked_bytes, bytes(&|_| true), "unacked bytes");
        // Never-sent packets are the tail.
        let first_unsent = self.unacked.len() - self.unsent;
        assert!(self
            .unacked
            .iter()
            .skip(first_unsent)
            .all(|s| s.transmissions == 0));
    }
}

/// Moves the first `out.len()` bytes of `queue` into `out`, a slice at a time.
fn take_front(queue: &mut VecDeque<u8>, out: &mut [u8]) {
    let (a, b) = queue.as_slices();
    let from_a = a.len().min(out.len());
    out[..from_a].copy_from_slice(&a[..from_a]);
    let rest = out.len() - from_a;
    out[from_a..].copy_from_slice(&b[..rest]);
    queue.drain(..out.len());
}

#[cfg(test)]
mod tests;
