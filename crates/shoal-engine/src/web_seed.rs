//! Web seeds (BEP 19, a torrent's `url-list`): HTTP servers that hold the torrent's
//! files. The core decides what each is asked for ([`TorrentCore::web_seed_requests`]);
//! here each web seed has two worker tasks, each with its own HTTP/1.1 connection kept
//! alive between requests (so a fetch after the first skips the TCP and TLS handshakes
//! and TCP's slow start). A worker turns a fetch's blocks into range requests — one per
//! file that a run of adjacent blocks crosses, padding files read as zeros — and hands
//! the blocks to the torrent actor, which takes them like a peer's (hash check, smart
//! ban).
//!
//! A web seed that fails (refused, 404, a short or wrong answer, a timeout) is tried
//! again after 10 s, doubling up to 5 minutes, as libtorrent retries after
//! `urlseed_wait_retry`; one that serves data failing the hash check is dropped.
//!
//! [`TorrentCore::web_seed_requests`]: shoal_swarm::TorrentCore::web_seed_requests

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shoal_core::{Bitfield, Block, Info, Metainfo};
use shoal_storage::{FileLayout, TorrentFiles};
use shoal_swarm::{Connection, PeerKey, TorrentCore};
use shoal_tracker::driver::http::{get_range_kept, HttpConfig, KeptAlive, Moved};
use shoal_tracker::url::{Scheme, TrackerUrl};
use shoal_tracker::TrackerError;
use tokio::sync::mpsc;

use crate::connection::Input;
use crate::{EngineEvent, RateLimit};

/// Workers (fetches under way at once, connections) per web seed: one waits on the
/// network while the other's blocks are taken in.
const WORKERS_PER_SEED: usize = 2;

/// Blocks asked of a web seed in one fetch: 1 MiB, whatever the piece size (a fetch need
/// not be whole pieces), so memory per worker stays bounded.
const FETCH_BLOCKS: usize = 64;

/// Web seeds used at once; the torrent's others are ignored (libtorrent's
/// `max_web_seed_connections` is 3 too). Each has [`WORKERS_PER_SEED`] connections.
const MAX_WEB_SEEDS: usize = 3;

/// A web seed's first retry delay, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// One web seed and how it is doing.
#[derive(Debug)]
pub struct WebSeed {
    pub key: PeerKey,
    /// As the torrent gives it, for messages.
    pub url: String,
    base: TrackerUrl,
    /// Each worker's job queue, and whether it has a fetch under way; none once banned
    /// or done.
    workers: Vec<(mpsc::Sender<Vec<Block>>, bool)>,
    /// The pieces it can serve: all, less those of files it answered 404 or 410 for.
    serves: Bitfield,
    failures: u32,
    retry_at: Option<Instant>,
}

impl WebSeed {
    /// A web seed for `url`, if it is an `http` or `https` URL we can use; `key` is the
    /// core's name for it.
    pub fn new(key: PeerKey, url: &str, piece_count: usize) -> Option<Self> {
        // A URL may come unescaped (a magnet's `ws=` is decoded): escape what cannot
        // stand in a URL as it is.
        let escaped = percent_encoding::utf8_percent_encode(url, UNSAFE_IN_URL).to_string();
        let base = TrackerUrl::parse(&escaped).ok()?;
        if base.scheme == Scheme::Udp || base.path.contains('?') {
            return None;
        }
        Some(WebSeed {
            key,
            url: url.to_owned(),
            base,
            workers: Vec::new(),
            serves: every_piece(piece_count),
            failures: 0,
            retry_at: None,
        })
    }

    /// An idle worker, if a fetch may start now.
    fn idle_worker(&self, now: Instant) -> Option<usize> {
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        self.workers.iter().position(|(_, busy)| !busy)
    }

    /// The server does not have file `file`: the pieces holding its bytes are not asked
    /// of it any more.
    fn lacks_file(&mut self, layout: &FileLayout, file: usize) {
        for piece in layout.pieces_of(&[file]).iter_ones() {
            self.serves.clear(piece);
        }
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// A fetch failed: wait before the next, longer each time in a row.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures += 1;
        let wait = RETRY_FIRST
            .saturating_mul(1 << (self.failures - 1).min(8))
            .min(RETRY_MAX);
        self.retry_at = Some(now + wait);
        wait
    }

    /// The request target of `path` (the file's components as the torrent gives them,
    /// the torrent's name first, not the sanitised names written to disk: the server
    /// holds the originals): BEP 19 appends them to a URL ending in `/`; a single file's
    /// URL may name the file itself.
    fn target(&self, info: &Info, path: &[Vec<u8>]) -> String {
        let base = &self.base.path;
        if !info.multi_file && !base.ends_with('/') {
            return base.clone();
        }
        let mut target = base.clone();
        if !target.ends_with('/') {
            target.push('/');
        }
        let encoded: Vec<String> = path
            .iter()
            .map(|c| percent_encoding::percent_encode(c, PATH_COMPONENT).to_string())
            .collect();
        target.push_str(&encoded.join("/"));
        target
    }
}

/// What is escaped in a web seed's URL as given: controls, space, non-ASCII and the
/// few characters that cannot appear in a URL at all.
const UNSAFE_IN_URL: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

fn every_piece(count: usize) -> Bitfield {
    let mut all = Bitfield::new(count);
    for piece in 0..count {
        all.set(piece);
    }
    all
}

/// What is escaped in a path component: everything but RFC 3986's unreserved
/// characters.
const PATH_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a fetch needs besides its web seed.
#[derive(Clone)]
pub struct FetchContext {
    pub metainfo: Arc<Metainfo>,
    /// The torrent's files, for their layout (where each block lies).
    pub files: Arc<TorrentFiles>,
    pub http: HttpConfig,
    pub download_limit: Arc<RateLimit>,
    pub to_actor: mpsc::Sender<Input>,
}

/// Starts `seed`'s workers. Each takes fetches (blocks sorted as the core gives them)
/// from its queue until the queue is dropped; a fetch's blocks go to the actor run by
/// run, then `WebDone`, or `WebFailed` with what could not be fetched and why.
fn spawn_workers(seed: &mut WebSeed, context: &FetchContext) {
    let info = &context.metainfo.info;
    let targets: Arc<Vec<Option<String>>> = Arc::new(
        info.files
            .iter()
            .map(|f| (!f.attr.padding).then(|| seed.target(info, &f.url_path)))
            .collect(),
    );
    for worker in 0..WORKERS_PER_SEED {
        let (jobs_tx, mut jobs) = mpsc::channel::<Vec<Block>>(1);
        seed.workers.push((jobs_tx, false));
        let (key, base, targets, context) = (
            seed.key,
            seed.base.clone(),
            targets.clone(),
            context.clone(),
        );
        tokio::spawn(async move {
            let mut conn = WorkerConn::default();
            while let Some(blocks) = jobs.recv().await {
                let mut rest = &blocks[..];
                let mut ended = Input::WebDone { key, worker };
                while !rest.is_empty() {
                    let run = adjacent_run(rest, context.metainfo.info.piece_length);
                    match fetch_run(&mut conn, &base, &targets, &rest[..run], &context).await {
                        Ok(data) => {
                            let delivered = Input::WebBlocks { key, blocks: data };
                            if context.to_actor.send(delivered).await.is_err() {
                                return;
                            }
                            rest = &rest[run..];
                        }
                        Err(failure) => {
                            conn.kept = None;
                            let blocks = rest.to_vec();
                            ended = Input::WebFailed {
                                key,
                                worker,
                                blocks,
                                failure,
                            };
                            break;
                        }
                    }
                }
                if context.to_actor.send(ended).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// How many blocks from the start of `blocks` follow each other in the torrent's bytes.
fn adjacent_run(blocks: &[Block], piece_length: u32) -> usize {
    let end = |b: &Block| start(b, piece_length) + u64::from(b.length);
    1 + blocks
        .windows(2)
        .take_while(|w| end(&w[0]) == start(&w[1], piece_length))
        .count()
}

fn start(block: &Block, piece_length: u32) -> u64 {
    u64::from(block.piece) * u64::from(piece_length) + u64::from(block.offset)
}

/// The bytes of a run of adjacent blocks, one range request per file it crosses, cut
/// back into blocks.
/// Why a fetch failed.
#[derive(Debug)]
pub struct FetchFailure {
    reason: String,
    /// The file the server said it does not have (404 or 410).
    missing_file: Option<usize>,
}

/// A worker's connection, and where the server redirected requests for each file (asked
/// there directly from then on; forgotten when asking there fails).
#[derive(Default)]
struct WorkerConn {
    kept: Option<KeptAlive>,
    moved: std::collections::HashMap<usize, Moved>,
}

async fn fetch_run(
    conn: &mut WorkerConn,
    base: &TrackerUrl,
    targets: &[Option<String>],
    run: &[Block],
    context: &FetchContext,
) -> Result<Vec<(Block, Bytes)>, FetchFailure> {
    let first = start(&run[0], context.metainfo.info.piece_length);
    let length: u64 = run.iter().map(|b| u64::from(b.length)).sum();
    context.download_limit.acquire(length as usize, 0).await;
    let mut data = BytesMut::with_capacity(length as usize);
    for segment in context.files.layout().segments(first, length) {
        let (from, to) = (
            segment.file_offset,
            segment.file_offset + segment.length - 1,
        );
        match &targets[segment.file] {
            None => data.resize(data.len() + segment.length as usize, 0),
            Some(target) => {
                let (url, at) = match conn.moved.get(&segment.file) {
                    Some((url, at)) => (url, at.as_str()),
                    None => (base, target.as_str()),
                };
                let got = get_range_kept(&mut conn.kept, url, at, from, to, &context.http).await;
                let (body, moved) = match got {
                    Ok(got) => got,
                    Err(e) => {
                        let redirected = conn.moved.remove(&segment.file).is_some();
                        return Err(FetchFailure {
                            missing_file: (!redirected
                                && matches!(e, TrackerError::Http(404 | 410)))
                            .then_some(segment.file),
                            reason: format!("{target} bytes {from}-{to}: {e}"),
                        });
                    }
                };
                if let Some(moved) = moved {
                    conn.moved.insert(segment.file, moved);
                }
                data.extend_from_slice(&body);
            }
        }
    }
    let mut data = data.freeze();
    Ok(run
        .iter()
        .map(|&block| (block, data.split_to(block.length as usize)))
        .collect())
}

/// A torrent's web seeds and what their fetches need.
pub struct WebSeeds {
    seeds: Vec<WebSeed>,
    context: FetchContext,
}

impl WebSeeds {
    /// The usable URLs of `urls` as web seeds of `core`; the others are skipped with a
    /// warning.
    pub fn new<P: Connection>(
        core: &mut TorrentCore<P>,
        urls: &[String],
        context: FetchContext,
    ) -> Self {
        let mut seeds: Vec<WebSeed> = Vec::new();
        let piece_count = context.metainfo.info.piece_count();
        for url in urls {
            if seeds.iter().any(|s| &s.url == url) {
                continue;
            }
            if seeds.len() == MAX_WEB_SEEDS {
                tracing::info!("web seeds beyond the first {MAX_WEB_SEEDS} are not used");
                break;
            }
            match WebSeed::new(PeerKey(0), url, piece_count) {
                Some(mut seed) => {
                    seed.key = core.add_web_seed();
                    spawn_workers(&mut seed, &context);
                    seeds.push(seed);
                }
                None => tracing::warn!("web seed {url:?} skipped: not an http(s) URL"),
            }
        }
        WebSeeds { seeds, context }
    }

    fn get(&mut self, key: PeerKey) -> Option<&mut WebSeed> {
        self.seeds.iter_mut().find(|s| s.key == key)
    }

    /// Starts the fetches that are due, unless the download is complete, and tells
    /// `events` of web seeds the core banned.
    pub fn schedule<P: Connection>(
        &mut self,
        core: &mut TorrentCore<P>,
        now: Instant,
        events: &mpsc::UnboundedSender<EngineEvent>,
    ) {
        for key in core.take_banned_web_seeds() {
            if let Some(seed) = self.get(key) {
                // Dropping the queues ends the workers once their fetches are over.
                seed.workers.clear();
                let url = seed.url.clone();
                let _ = events.send(EngineEvent::WebSeedBanned { url });
            }
        }
        if core.is_complete() {
            // Nothing more to fetch: the workers end, and their connections close.
            for seed in &mut self.seeds {
                seed.workers.clear();
            }
            return;
        }
        for seed in &mut self.seeds {
            while let Some(worker) = seed.idle_worker(now) {
                let blocks = core.web_seed_requests(seed.key, &seed.serves, FETCH_BLOCKS);
                if blocks.is_empty() {
                    break;
                }
                let (jobs, busy) = &mut seed.workers[worker];
                if let Err(refused) = jobs.try_send(blocks) {
                    // Only if the worker is gone (the runtime shutting down).
                    core.web_seed_failed(seed.key, &refused.into_inner());
                    break;
                }
                *busy = true;
            }
        }
    }

    /// `worker`'s fetch ended, having delivered everything or failed with `failure`. A
    /// success ends the web seed's back-off; a failure extends it, and a file the server
    /// says it lacks is not asked of it again.
    pub fn ended(
        &mut self,
        key: PeerKey,
        worker: usize,
        failure: Option<FetchFailure>,
        now: Instant,
        events: &mpsc::UnboundedSender<EngineEvent>,
    ) {
        let files = self.context.files.clone();
        let Some(seed) = self.get(key) else { return };
        if let Some((_, busy)) = seed.workers.get_mut(worker) {
            *busy = false;
        }
        let Some(failure) = failure else {
            seed.succeeded();
            return;
        };
        if let Some(file) = failure.missing_file {
            seed.lacks_file(files.layout(), file);
        }
        let retry = seed.failed(now);
        let _ = events.send(EngineEvent::WebSeedFailed {
            url: seed.url.clone(),
            reason: failure.reason,
            retry_secs: retry.as_secs(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_the_torrents_bytes() {
        let b = |piece, offset, length| Block {
            piece,
            offset,
            length,
        };
        let piece = 32 * 1024;
        let blocks = [
            b(0, 0, 16384),
            b(0, 16384, 16384),
            b(1, 0, 16384),
            b(1, 32768, 16384),
            b(3, 0, 100),
        ];
        assert_eq!(adjacent_run(&blocks, piece), 3);
        assert_eq!(adjacent_run(&blocks[3..], piece), 1);
        assert_eq!(adjacent_run(&blocks[4..], piece), 1);
    }

    #[test]
    fn a_missing_file_takes_its_pieces_off_the_web_seed() {
        let layout = FileLayout::new(
            [
                ("a".into(), 20, false),
                ("b".into(), 30, false),
                ("c".into(), 14, false),
            ],
            16,
        );
        let mut seed = WebSeed::new(PeerKey(1), "http://h/x/", layout.piece_count()).unwrap();
        seed.lacks_file(&layout, 1);
        // b is bytes 20..50: pieces 1, 2 and 3 (they also hold a's tail and c's head).
        assert_eq!(seed.serves.iter_ones().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn retries_back_off_and_reset() {
        let mut seed = WebSeed::new(PeerKey(1), "http://127.0.0.1:8000/x/", 4).unwrap();
        let (jobs, _queued) = mpsc::channel(1);
        seed.workers.push((jobs, false));
        let now = Instant::now();
        assert_eq!(seed.idle_worker(now), Some(0));
        assert_eq!(seed.failed(now), Duration::from_secs(10));
        assert_eq!(seed.idle_worker(now + Duration::from_secs(9)), None);
        assert_eq!(seed.idle_worker(now + Duration::from_secs(10)), Some(0));
        assert_eq!(seed.failed(now), Duration::from_secs(20));
        for _ in 0..20 {
            seed.failed(now);
        }
        assert_eq!(seed.failed(now), RETRY_MAX);
        seed.succeeded();
        assert_eq!(seed.idle_worker(now), Some(0));
        seed.workers[0].1 = true;
        assert_eq!(seed.idle_worker(now), None, "its one worker is busy");
        assert!(WebSeed::new(PeerKey(2), "udp://h:1/x", 4).is_none());
        assert!(WebSeed::new(PeerKey(2), "ftp://h/x", 4).is_none());
        let spaced = WebSeed::new(PeerKey(3), "http://h/my files/ü/", 4).unwrap();
        assert_eq!(
            spaced.base.path, "/my%20files/%C3%BC/",
            "escaped as a URL needs"
        );
    }
}
