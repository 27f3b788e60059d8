//! Request pipelining: how many block requests to keep outstanding with one peer.
//!
//! To keep a link busy, the requests in flight must cover the bytes the peer can send in
//! one round trip and then some. Like libtorrent, shoal sizes the queue to the bytes the
//! peer delivers in a fixed window ([`REQUEST_WINDOW`], 0.5 s) at its measured
//! download rate: `depth = rate × window / 16 KiB`, clamped to at least
//! [`MIN_QUEUE_DEPTH`] (so a new or slow peer still gets a pipeline) and at most the
//! `reqq` the peer advertised in its BEP 10 handshake, or [`DEFAULT_REQQ`] when it did not.
//!
//! # Why the window is short
//!
//! An uploader serves each of the peers it unchokes a share of its upload, requests in
//! the order they came. A piece asked of one peer is therefore waited for as long as that
//! peer's queue for us lasts: with a 2 s window, a piece requested from a peer that sends
//! us 200 KiB/s arrives up to seconds later, while other peers that have the piece and
//! unchoked us sit idle (we have nothing left to ask them: it is all queued elsewhere),
//! and the piece reaches our own neighbours late. In the simulator (200 peers, seed upload
//! = peer upload, super-seed) 0.5 s instead of 2 s took T/T_min from 1.36 to 1.27, and the
//! 21-peer loopback scenario from 1.125 to 1.077; 0.25 s was no better. The window still
//! covers the round trip of any link under 0.5 s (the depth grows with the measured rate:
//! `rate × window` bytes in flight sustain `rate × window / RTT`), and a fast peer's queue
//! is capped by its `reqq` long before.
//!
//! # Timeouts (the engine's job)
//!
//! The picker has no clock, so timing requests is the engine's job. The suggested rule:
//! when a peer has sent no block for `max(20 s, 2 × window)` although requests are
//! outstanding with it, call [`PiecePicker::request_cancelled`] for its oldest outstanding
//! request (and send `cancel`), so that the block can go to another peer; after 60 s
//! without a block, mark the peer snubbed for the [`Choker`] and cancel all its requests.
//! A block that arrives after its request was given up on is still accepted by the picker
//! as long as the block is still needed.
//!
//! [`PiecePicker::request_cancelled`]: crate::PiecePicker::request_cancelled
//! [`Choker`]: crate::Choker

use std::time::Duration;

use shoal_core::BLOCK_SIZE;

/// The window of transfer the request queue covers, unless a peer's
/// [`RequestWindow`](crate::RequestWindow) found that a longer one gets more from it.
pub const REQUEST_WINDOW: Duration = Duration::from_millis(500);

/// Bytes per second assumed for a peer whose rate is not measured yet, and the least
/// assumed after: 8 requests deep, half a piece of 256 KiB. Half a piece rather than a
/// whole one: an uploader that unchokes us shares its upload among several peers, so a
/// rare piece we ask for waits behind everything queued before it (simulator flash crowd,
/// 1000 peers: 1.28 of the bound with 512 KiB/s, 1.24 with 256 KiB/s; 200 peers: 1.22 →
/// 1.19, and 128, 192 or 320 KiB/s no better). A fast peer is not held to it: until its rate is first measured the
/// queue grows by a block for every block that arrives (as libtorrent's slow start), so a
/// lone leecher on a 100 MiB/s, 1 ms link fetches 64 MiB in 0.68 s (1.01 s before, with a
/// fixed 512 KiB/s).
pub const INITIAL_RATE_GUESS: u64 = 256 * 1024;

/// The fewest requests kept in flight with a peer that unchokes us.
pub const MIN_QUEUE_DEPTH: usize = 2;

/// The `reqq` assumed when a peer does not advertise one (libtorrent's default).
pub const DEFAULT_REQQ: u32 = 250;

/// The most requests shoal keeps in flight with one peer, whatever it advertises.
pub const MAX_QUEUE_DEPTH: usize = 500;

/// How many block requests to keep outstanding with a peer that sends us
/// `download_rate_bytes_per_s`: enough to cover `window` of transfer, clamped to
/// `[MIN_QUEUE_DEPTH, peer_reqq or DEFAULT_REQQ]` (and never above [`MAX_QUEUE_DEPTH`]).
/// A rate that is not a positive finite number counts as zero.
pub fn queue_depth(
    download_rate_bytes_per_s: f64,
    window: Duration,
    peer_reqq: Option<u32>,
) -> usize {
    let limit =
        (peer_reqq.unwrap_or(DEFAULT_REQQ) as usize).clamp(MIN_QUEUE_DEPTH, MAX_QUEUE_DEPTH);
    let rate = if download_rate_bytes_per_s.is_finite() && download_rate_bytes_per_s > 0.0 {
        download_rate_bytes_per_s
    } else {
        0.0
    };
    let blocks = (rate * window.as_secs_f64() / f64::from(BLOCK_SIZE)).ceil();
    // `as` saturates for floats beyond the range of usize.
    (blocks as usize).clamp(MIN_QUEUE_DEPTH, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_follows_rate_within_bounds() {
        // 1 MiB/s over 0.5 s = 512 KiB = 32 blocks.
        assert_eq!(queue_depth(1024.0 * 1024.0, REQUEST_WINDOW, None), 32);
        const TWO_SECONDS: Duration = Duration::from_secs(2);
        assert_eq!(queue_depth(0.0, TWO_SECONDS, None), MIN_QUEUE_DEPTH);
        assert_eq!(queue_depth(f64::NAN, TWO_SECONDS, None), MIN_QUEUE_DEPTH);
        assert_eq!(queue_depth(-5.0, TWO_SECONDS, None), MIN_QUEUE_DEPTH);
        // 1 MiB/s over 2 s = 2 MiB = 128 blocks.
        assert_eq!(queue_depth(1024.0 * 1024.0, TWO_SECONDS, None), 128);
        assert_eq!(queue_depth(1024.0 * 1024.0, TWO_SECONDS, Some(50)), 50);
        assert_eq!(queue_depth(1e12, TWO_SECONDS, None), DEFAULT_REQQ as usize);
        assert_eq!(
            queue_depth(f64::INFINITY, TWO_SECONDS, Some(10_000)),
            MIN_QUEUE_DEPTH
        );
        assert_eq!(
            queue_depth(1e12, TWO_SECONDS, Some(10_000)),
            MAX_QUEUE_DEPTH
        );
        assert_eq!(queue_depth(1e12, TWO_SECONDS, Some(0)), MIN_QUEUE_DEPTH);
        // 100 KiB/s over 2 s = 12.5 blocks, rounded up.
        assert_eq!(queue_depth(100.0 * 1024.0, TWO_SECONDS, None), 13);
    }
}
