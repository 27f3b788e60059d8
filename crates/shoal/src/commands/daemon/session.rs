//! The torrents of a running daemon: each one runs in the engine as `shoal get` would run
//! it, on the session's shared port, DHT and port mapping; the list (and each torrent's
//! .torrent) is kept in the state folder so that a restart, even after `kill -9`, takes
//! them all up again. What each piece of data is worth is the engine's resume state's
//! business, as for `get`: nothing verified is fetched twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_core::{Bitfield, InfoHash, Magnet, Metainfo, PeerId};
use shoal_engine::metadata::{fetch_metadata, MetadataFetchError};
use shoal_engine::{
    Check, ConnectionBudget, EngineEvent, Outcome, RateLimit, Readers, SeedLimit, TorrentConfig,
    Wanted,
};
use shoal_tracker::driver::{TrackerBoard, TrackerStatus};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use super::data::{delete_files, move_files};
use super::files::{describe_files, Fetch};
use super::seeding::{session_limit, shown, Goals, Limit, Totals};
use crate::commands::discovery::{self, Dhts};
use crate::commands::hook;
use crate::commands::transfer::{
    metadata_feed, metadata_fetch, metainfo_from_info, peer_json, run_announced, SessionNet,
    Update, STOP_ANNOUNCE_WAIT,
};

/// Torrents one daemon runs at most: each holds its pieces' bookkeeping and its
/// connections (up to `--max-peers`) in memory.
pub const MAX_TORRENTS: usize = 1000;

/// What a torrent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for one of the `--max-active-downloads` to finish.
    Queued,
    /// A magnet link's: asking its peers for the torrent's metadata.
    FetchingMetadata,
    /// Hashing the data already on disk.
    Checking,
    Downloading,
    Seeding,
    /// Stopped by the user; its connections are closed.
    Paused,
    /// Seeding reached `--seed-ratio` or `--seed-time`.
    Finished,
    /// The engine stopped with an error (a full disk, a file it may not write).
    Error,
}

/// A torrent's figures, as the engine last reported them.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    /// Bytes verified on disk.
    pub have: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub download_rate: f64,
    pub upload_rate: f64,
    pub peers: usize,
    pub eta_secs: Option<u64>,
    /// The last start took the resume state's word for the data on disk.
    pub resumed: bool,
    pub error: Option<String>,
    /// Over all its runs, this one so far included.
    pub totals: Totals,
    /// The connected peers, as the engine last listed them (every few seconds); shown
    /// with one torrent, not in the list of all.
    #[serde(skip)]
    pub peer_list: Vec<Value>,
}

impl Status {
    fn new(state: State) -> Self {
        Status {
            state,
            have: 0,
            downloaded: 0,
            uploaded: 0,
            download_rate: 0.0,
            upload_rate: 0.0,
            peers: 0,
            eta_secs: None,
            resumed: false,
            error: None,
            totals: Totals::default(),
            peer_list: Vec::new(),
        }
    }
}

/// A torrent as the saved list holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    info_hash: String,
    dir: PathBuf,
    paused: bool,
    /// The link a torrent was added by, for as long as its metadata is not saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    magnet: Option<String>,
    #[serde(flatten)]
    fetch: Fetch,
    #[serde(flatten)]
    goals: Goals,
    #[serde(flatten)]
    rates: Rates,
    #[serde(default)]
    totals: Totals,
    /// A move of its files to this folder is under way (`dir` is where they were): a
    /// move cut short is finished when the list is read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    moving_to: Option<PathBuf>,
}

/// A change to a torrent (`POST .../set` takes it as JSON): what is not given stays as
/// it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The files to fetch (`1,3-5`), or `all`.
    pub files: Option<String>,
    pub sequential: Option<bool>,
    pub seed_ratio: Option<Limit>,
    /// Minutes.
    pub seed_time: Option<Limit>,
    /// Its own rate limits in bytes per second (0: none of its own).
    pub max_up: Option<u64>,
    pub max_down: Option<u64>,
}

/// How a torrent is added: the folder it downloads into (an absolute path; the
/// session's folder if `None`), whether it starts stopped, what of it is fetched.
#[derive(Debug, Default)]
pub struct Adding {
    pub dir: Option<PathBuf>,
    pub paused: bool,
    pub fetch: Fetch,
    /// The files were chosen with the request (`all` too): a magnet link's `so=` does
    /// not apply.
    pub chosen: bool,
}

/// What a torrent keeps across restarts, besides where it is.
struct Kept {
    paused: bool,
    fetch: Fetch,
    goals: Goals,
    rates: Rates,
    totals: Totals,
}

/// A torrent's own rate limits (bytes per second), within the session's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Rates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_up: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_down: Option<u64>,
}

struct Entry {
    /// The torrent, once known (a magnet link's comes from its peers).
    metainfo: Arc<OnceLock<Arc<Metainfo>>>,
    /// The link it was added by, if any.
    magnet: Option<Magnet>,
    dir: PathBuf,
    fetch: Fetch,
    /// Its own seed limits; the running task reads them as they change.
    goals: Arc<Mutex<Goals>>,
    /// Its own rate limits, within the session's; changed while it runs.
    upload_limit: Arc<RateLimit>,
    download_limit: Arc<RateLimit>,
    /// Where its files are being moved, while they are.
    moving_to: Option<PathBuf>,
    status: Arc<Mutex<Status>>,
    /// The pieces verified on disk, as the engine last said.
    pieces: watch::Sender<Bitfield>,
    /// What its trackers said since it last started.
    trackers: TrackerBoard,
    /// The user stopped it (it stays stopped across restarts).
    paused: bool,
    /// Its task, from its start until it is resumed again (a stopped task's `done`).
    running: Option<Running>,
    /// Taken out of the session: listed no more, but kept (so that the same torrent
    /// cannot be added, nor its files written) until its task has stopped.
    removing: bool,
    /// Its next start hashes every piece, whatever the resume state says.
    verify: bool,
}

/// What a torrent's task takes from its entry.
struct Job {
    check: Check,
    dir: PathBuf,
    fetch: Fetch,
    goals: Arc<Mutex<Goals>>,
    limits: (Arc<RateLimit>, Arc<RateLimit>),
    status: Arc<Mutex<Status>>,
    pieces: watch::Sender<Bitfield>,
    trackers: TrackerBoard,
}

/// A torrent's task, how to stop it, and whether it has.
struct Running {
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl Entry {
    /// Its task, until that has ended.
    fn task(&self) -> Option<&Running> {
        self.running.as_ref().filter(|r| !r.is_done())
    }

    /// Its task was asked to stop (a pause, a change, a move) and has not yet.
    fn is_stopping(&self) -> bool {
        self.task().is_some_and(|r| *r.stop.borrow())
    }
}

impl Running {
    fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// Asks the task to stop; the returned receiver says when it has.
    fn stop(&self) -> watch::Receiver<bool> {
        let _ = self.stop.send(true);
        self.done.clone()
    }
}

/// Sets a task's `done` when the task ends, however it ends.
struct Done(watch::Sender<bool>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

async fn until_done(mut done: watch::Receiver<bool>) {
    let _ = done.wait_for(|done| *done).await;
}

/// The daemon's torrents, on the session's shared network.
pub struct Session {
    net: SessionNet,
    /// Where a torrent added without a folder of its own downloads.
    default_dir: PathBuf,
    /// The saved list and the torrents' metainfo.
    folder: PathBuf,
    /// The engine's resume state (shared with `get` and `seed`).
    state_dir: PathBuf,
    json: bool,
    /// `--max-up` and `--max-down`, for all the torrents together.
    upload_limit: Arc<RateLimit>,
    download_limit: Arc<RateLimit>,
    /// `--seed-ratio` and `--seed-time`, for the torrents without limits of their own.
    seed_limit: Arc<Mutex<SeedLimit>>,
    /// `--max-peers-total`, the torrents' connections together.
    connections: Arc<ConnectionBudget>,
    /// `--max-active-downloads`: a torrent with something to fetch takes a turn (a magnet
    /// link's, to fetch its metadata too) and gives it back once complete or stopped.
    download_turns: Option<Arc<tokio::sync::Semaphore>>,
    /// `--on-complete`: run when a download completes.
    on_complete: Option<Arc<PathBuf>>,
    /// `--queue-stalled-secs`: a download that fetches nothing for this long gives its
    /// turn back (Transmission's queue-stalled-minutes).
    stalled_after: Duration,
    /// Set when the daemon stops: no torrent starts again after that.
    closing: std::sync::atomic::AtomicBool,
    /// Torrents check their data one at a time.
    check_turns: Arc<tokio::sync::Semaphore>,
    torrents: Mutex<BTreeMap<InfoHash, Entry>>,
    /// Held while the list changes and is written, so that writes never cross and the
    /// file on disk is always the newest list. The locks are taken in this order only:
    /// `changing`, `torrents`, an entry's `status`, its `goals`, `seed_limit`.
    changing: Mutex<()>,
    /// Saved torrents that could not be taken up (a damaged .torrent): written back
    /// as they were, never dropped from the list unasked.
    unrestored: Mutex<Vec<Saved>>,
}

/// Why a request to the session failed, for the API to answer with.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no torrent {0} (name one by its info-hash, or 4 or more of its first hex digits)")]
    Unknown(String),
    #[error("{0} is already in the session")]
    Duplicate(String),
    #[error("{0} is still stopping; try again in a moment")]
    Busy(String),
    #[error("the session holds {MAX_TORRENTS} torrents already")]
    Full,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Session {
    /// A session downloading into `default_dir` unless told otherwise, keeping its state
    /// in `state_dir`.
    pub fn new(
        net: SessionNet,
        (default_dir, state_dir): (PathBuf, PathBuf),
        (connections, downloads, stalled_after): (Arc<ConnectionBudget>, Option<usize>, Duration),
        (on_complete, json): (Option<PathBuf>, bool),
    ) -> Self {
        Session {
            closing: std::sync::atomic::AtomicBool::new(false),
            on_complete: on_complete.map(Arc::new),
            stalled_after,
            connections,
            download_turns: downloads.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            upload_limit: Arc::new(RateLimit::new(net.opts.max_up)),
            download_limit: Arc::new(RateLimit::new(net.opts.max_down)),
            seed_limit: Arc::new(Mutex::new(net.opts.seed_limit())),
            check_turns: Arc::new(tokio::sync::Semaphore::new(1)),
            net,
            default_dir,
            folder: state_dir.join("daemon"),
            state_dir,
            json,
            torrents: Mutex::new(BTreeMap::new()),
            changing: Mutex::new(()),
            unrestored: Mutex::new(Vec::new()),
        }
    }

    pub fn net(&self) -> &SessionNet {
        &self.net
    }

    pub fn connections(&self) -> &ConnectionBudget {
        &self.connections
    }

    /// The upload and download limits of all the torrents together (bytes per second).
    pub fn limits(&self) -> (Option<u64>, Option<u64>) {
        (self.upload_limit.rate(), self.download_limit.rate())
    }

    /// Sets the upload and download limits, each when given (0: no limit), at once for
    /// every connection; until the daemon restarts with its own flags.
    pub fn set_limits(&self, up: Option<u64>, down: Option<u64>) {
        for (limit, rate) in [(&self.upload_limit, up), (&self.download_limit, down)] {
            if let Some(rate) = rate {
                limit.set_rate(Some(rate).filter(|&r| r > 0));
            }
        }
    }

    /// The seed limits of torrents without their own: a ratio and minutes, or `none`.
    pub fn seed_limit(&self) -> (Limit, Limit) {
        shown(*lock(&self.seed_limit))
    }

    /// Sets the session's seed limits, each when given (`none`: no limit); running
    /// torrents keep to them from their next second. Until the daemon restarts with its
    /// own flags.
    pub fn set_seed_limit(
        &self,
        seed_ratio: Option<Limit>,
        seed_time: Option<Limit>,
    ) -> Result<(), SessionError> {
        let mut limit = lock(&self.seed_limit);
        *limit = session_limit(*limit, seed_ratio, seed_time).map_err(SessionError::Invalid)?;
        Ok(())
    }

    fn torrents(&self) -> MutexGuard<'_, BTreeMap<InfoHash, Entry>> {
        lock(&self.torrents)
    }

    fn changing(&self) -> MutexGuard<'_, ()> {
        lock(&self.changing)
    }

    fn list_path(&self) -> PathBuf {
        self.folder.join("torrents.json")
    }

    fn torrent_path(&self, hash: &InfoHash) -> PathBuf {
        self.folder.join(format!("{}.torrent", hash.to_hex()))
    }

    /// Takes up the torrents of the saved list, each running unless it was paused. A
    /// torrent that cannot be read is reported, and kept in the list as it was.
    pub fn restore(self: &Arc<Self>) -> Result<usize> {
        std::fs::create_dir_all(&self.folder)
            .with_context(|| format!("{}: cannot create", self.folder.display()))?;
        let list = self.list_path();
        let text = match std::fs::read(&list) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", list.display())),
        };
        let saved: Vec<Saved> = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a torrent list", list.display()))?;
        let _changing = self.changing();
        // Moves cut short are finished (or undone) here: the list says where they went.
        let moves = saved.iter().any(|saved| saved.moving_to.is_some());
        let mut restored = 0;
        for saved in saved {
            match self.restore_one(&saved) {
                Ok(()) => restored += 1,
                Err(e) => {
                    eprintln!("shoal: warning: {}: not started: {e:#}", saved.info_hash);
                    lock(&self.unrestored).push(saved);
                }
            }
        }
        if moves {
            self.write_list()?;
        }
        Ok(restored)
    }

    fn restore_one(self: &Arc<Self>, saved: &Saved) -> Result<()> {
        let hash: InfoHash = saved.info_hash.parse().context("not an info-hash")?;
        let path = self.torrent_path(&hash);
        let link = saved
            .magnet
            .as_deref()
            .map(str::parse::<Magnet>)
            .transpose()?;
        let metainfo = match (super::super::info::load_torrent(&path), &link) {
            (Ok(metainfo), _) => Some(metainfo),
            // The metadata never came (or its file is damaged): fetched again.
            (Err(_), Some(_)) => None,
            (Err(e), None) => return Err(e),
        };
        let dir = match (&saved.moving_to, &metainfo) {
            (Some(to), Some(metainfo)) => finish_move(metainfo, &saved.dir, to),
            // No metadata, so no files yet.
            (Some(to), None) => to.clone(),
            (None, _) => saved.dir.clone(),
        };
        let kept = Kept {
            paused: saved.paused,
            fetch: saved.fetch.clone(),
            goals: saved.goals,
            rates: saved.rates,
            totals: saved.totals,
        };
        self.insert(hash, (metainfo, link), dir, kept)
            .map_err(anyhow::Error::new)
    }

    /// Adds a torrent, as `how` says; returns its info-hash.
    pub fn add(
        self: &Arc<Self>,
        metainfo: Metainfo,
        how: Adding,
    ) -> Result<InfoHash, SessionError> {
        let hash = metainfo.info_hash;
        let name = metainfo.info.name.clone();
        how.fetch.selected(&metainfo)?;
        let _changing = self.changing();
        self.check_room(&hash)?;
        let bytes = metainfo.to_bytes();
        crate::commands::write_atomically(&self.torrent_path(&hash), &bytes, true)?;
        self.add_entry(hash, (Some(metainfo), None), how, name)
    }

    /// Adds a magnet link: its metadata is fetched from its peers (and saved), then it
    /// runs as [`Session::add`]'s torrents do.
    pub fn add_magnet(
        self: &Arc<Self>,
        magnet: Magnet,
        mut how: Adding,
    ) -> Result<InfoHash, SessionError> {
        if !how.chosen && !magnet.select_only.is_empty() {
            how.fetch.so = Some(magnet.select_only.clone());
        }
        let hash = magnet.info_hash;
        let name = magnet.name.clone().unwrap_or_else(|| hash.to_hex());
        let _changing = self.changing();
        self.check_room(&hash)?;
        self.add_entry(hash, (None, Some(magnet)), how, name)
    }

    fn check_room(&self, hash: &InfoHash) -> Result<(), SessionError> {
        let torrents = self.torrents();
        if torrents.contains_key(hash) {
            return Err(SessionError::Duplicate(hash.to_hex()));
        }
        if torrents.len() >= MAX_TORRENTS {
            return Err(SessionError::Full);
        }
        Ok(())
    }

    /// With `changing` held.
    fn add_entry(
        self: &Arc<Self>,
        hash: InfoHash,
        torrent: (Option<Metainfo>, Option<Magnet>),
        how: Adding,
        name: String,
    ) -> Result<InfoHash, SessionError> {
        let dir = match how.dir {
            // The daemon's working folder means nothing to the client that sent it.
            Some(dir) if dir.is_relative() => {
                let dir = dir.display();
                return Err(SessionError::Invalid(format!(
                    "{dir}: not an absolute path"
                )));
            }
            Some(dir) => dir,
            None => self.default_dir.clone(),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let kept = Kept {
            paused: how.paused,
            fetch: how.fetch,
            goals: Goals::default(),
            rates: Rates::default(),
            totals: Totals::default(),
        };
        self.insert(hash, torrent, dir, kept)?;
        self.write_list()?;
        self.say(
            json!({"event": "added", "info_hash": hash.to_hex(), "name": name}),
            format!("{name}: added"),
        );
        Ok(hash)
    }

    fn insert(
        self: &Arc<Self>,
        hash: InfoHash,
        (metainfo, magnet): (Option<Metainfo>, Option<Magnet>),
        dir: PathBuf,
        kept: Kept,
    ) -> Result<(), SessionError> {
        let Kept {
            paused,
            fetch,
            goals,
            rates,
            totals,
        } = kept;
        // What is on disk, for the progress of a torrent that does not run (yet).
        let on_disk = metainfo
            .as_ref()
            .and_then(|m| self.on_disk(m, &shoal_storage::FileLayout::for_torrent(&m.info, &dir)));
        let slot = OnceLock::new();
        if let Some(metainfo) = metainfo {
            let _ = slot.set(Arc::new(metainfo));
        }
        let mut entry = Entry {
            metainfo: Arc::new(slot),
            magnet,
            dir,
            fetch,
            goals: Arc::new(Mutex::new(goals)),
            upload_limit: Arc::new(RateLimit::within(rates.max_up, self.upload_limit.clone())),
            download_limit: Arc::new(RateLimit::within(
                rates.max_down,
                self.download_limit.clone(),
            )),
            moving_to: None,
            status: Arc::new(Mutex::new(Status {
                totals,
                ..Status::new(State::Paused)
            })),
            pieces: watch::channel(on_disk.unwrap_or_else(|| Bitfield::new(0))).0,
            trackers: TrackerBoard::default(),
            paused,
            running: None,
            removing: false,
            verify: false,
        };
        let mut torrents = self.torrents();
        if torrents.contains_key(&hash) {
            return Err(SessionError::Duplicate(hash.to_hex()));
        }
        if !paused {
            self.start(&mut entry);
        }
        torrents.insert(hash, entry);
        Ok(())
    }

    /// Starts `entry`: its metadata first if it is a magnet link's, then the engine,
    /// with a task that keeps its status.
    fn start(self: &Arc<Self>, entry: &mut Entry) {
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let first = match entry.metainfo.get() {
            Some(_) => State::Checking,
            None => State::FetchingMetadata,
        };
        {
            let mut status = lock(&entry.status);
            *status = Status {
                totals: status.totals,
                ..Status::new(first)
            };
        }
        entry.trackers = TrackerBoard::default();
        let (stop, stopped) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let session = self.clone();
        let slot = entry.metainfo.clone();
        let magnet = entry.magnet.clone();
        let status = entry.status.clone();
        // A paused torrent is verified and no more.
        let check = match (std::mem::take(&mut entry.verify), entry.paused) {
            (true, true) => Check::RecheckOnly,
            (true, false) => Check::Recheck,
            (false, _) => self.net.opts.check(),
        };
        let job = Job {
            check,
            dir: entry.dir.clone(),
            fetch: entry.fetch.clone(),
            goals: entry.goals.clone(),
            limits: (entry.upload_limit.clone(), entry.download_limit.clone()),
            status: status.clone(),
            pieces: entry.pieces.clone(),
            trackers: entry.trackers.clone(),
        };
        tokio::spawn(async move {
            let done = Done(done_tx);
            let only_check = job.check == Check::RecheckOnly;
            let turn = match only_check {
                true => Some(None),
                false => {
                    session
                        .download_turn(slot.get(), &job, stopped.clone())
                        .await
                }
            };
            let Some(mut turn) = turn else {
                return set_state(&status, State::Paused);
            };
            set_state(&status, first);
            let (metainfo, peers) = match (slot.get(), magnet) {
                (Some(metainfo), _) => (metainfo.clone(), Vec::new()),
                (None, Some(magnet)) => match session
                    .fetch_holding(&magnet, &mut turn, stopped.clone())
                    .await
                {
                    Ok(Some((metainfo, peers))) => (slot.get_or_init(|| metainfo).clone(), peers),
                    Ok(None) => return set_state(&status, State::Paused),
                    Err(e) => {
                        let name = magnet.name.clone();
                        let name = name.unwrap_or_else(|| magnet.info_hash.to_hex());
                        return session.failed(&status, &name, e);
                    }
                },
                (None, None) => unreachable!("an entry has its metainfo or its link"),
            };
            let hash = metainfo.info_hash;
            session.run(metainfo, (job, turn), peers, stopped).await;
            drop(done);
            if only_check {
                // Resumed while it was checked.
                session.start_unless_paused(hash);
            }
        });
        entry.running = Some(Running { stop, done });
    }

    /// Starts a torrent whose task has ended, unless it was paused or removed meanwhile
    /// (a verify asked of a paused one starts its check).
    fn start_unless_paused(self: &Arc<Self>, hash: InfoHash) {
        let _changing = self.changing();
        let mut torrents = self.torrents();
        if let Some(entry) = torrents.get_mut(&hash).filter(|entry| {
            !entry.removing
                && (!entry.paused || entry.verify)
                && entry.running.as_ref().is_none_or(Running::is_done)
        }) {
            self.start(entry);
        }
    }

    /// Waits (`Queued`) for a turn among the active downloads, if the torrent has
    /// something to fetch: a complete torrent (by its resume state) seeds at once. `None`
    /// if stopped while waiting.
    async fn download_turn(
        &self,
        metainfo: Option<&Arc<Metainfo>>,
        job: &Job,
        mut stopped: watch::Receiver<bool>,
    ) -> Option<Option<OwnedSemaphorePermit>> {
        let Some(turns) = &self.download_turns else {
            return Some(None);
        };
        // A check may find pieces missing that the resume state vouched for.
        let trusted = job.check == Check::Resume;
        if trusted && metainfo.is_some_and(|metainfo| self.is_complete(metainfo, job)) {
            return Some(None);
        }
        if let Ok(turn) = turns.clone().try_acquire_owned() {
            return Some(Some(turn));
        }
        set_state(&job.status, State::Queued);
        tokio::select! {
            turn = turns.clone().acquire_owned() => Some(turn.ok()),
            _ = stopped.wait_for(|stop| *stop) => None,
        }
    }

    /// [`Session::fetch`], giving the download turn back if no metadata has come after
    /// `--queue-stalled-secs`: a magnet link nobody serves must not hold up the queue.
    async fn fetch_holding(
        &self,
        magnet: &Magnet,
        turn: &mut Option<OwnedSemaphorePermit>,
        stopped: watch::Receiver<bool>,
    ) -> Result<Option<(Arc<Metainfo>, Vec<SocketAddr>)>> {
        let fetch = self.fetch(magnet, stopped);
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                fetched = &mut fetch => return fetched,
                () = tokio::time::sleep(self.stalled_after), if turn.is_some() => {
                    *turn = None;
                    let name = magnet.name.clone().unwrap_or_else(|| magnet.info_hash.to_hex());
                    self.say(
                        json!({"event": "stalled", "name": name}),
                        format!("{name}: no metadata yet; the next download starts beside it"),
                    );
                }
            }
        }
    }

    /// Whether the resume state vouches for every piece the torrent wants.
    fn is_complete(&self, metainfo: &Metainfo, job: &Job) -> bool {
        let layout = shoal_storage::FileLayout::for_torrent(&metainfo.info, &job.dir);
        let Some(have) = self.on_disk(metainfo, &layout) else {
            return false;
        };
        match job.fetch.selected(metainfo) {
            Ok(Some(selected)) => layout.pieces_of(&selected).iter_ones().all(|p| have.get(p)),
            Ok(None) => have.count_ones() == have.len(),
            // It stops on that when it runs.
            Err(_) => true,
        }
    }

    /// The pieces the resume state vouches for, if it does (its files are unchanged).
    fn on_disk(&self, metainfo: &Metainfo, layout: &shoal_storage::FileLayout) -> Option<Bitfield> {
        let path = shoal_storage::resume::resume_path(&self.state_dir, &metainfo.info_hash);
        shoal_storage::resume::load(&path, &metainfo.info_hash, layout)
    }

    /// Fetches a magnet link's metadata from its peers and saves it as a .torrent;
    /// `None` if stopped first. Also the peers that had it.
    async fn fetch(
        &self,
        magnet: &Magnet,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Option<(Arc<Metainfo>, Vec<SocketAddr>)>> {
        let sources = self.net.metadata_sources(PeerId::shoal(rand::random()));
        let (mut feed, announcer) = metadata_feed(magnet, &sources);
        let mut fetch = metadata_fetch(magnet, &sources);
        // Its peers count against `--max-peers-total` too.
        fetch.connection_budget = Some(self.connections.clone());
        let fetched = fetch_metadata(fetch, feed.as_mut(), &mut stop).await;
        if let Some(announcer) = announcer {
            announcer.stop(STOP_ANNOUNCE_WAIT).await;
        }
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(MetadataFetchError::Stopped) => return Ok(None),
            Err(e) => return Err(e).context("no metadata"),
        };
        let metainfo = metainfo_from_info(&fetched, magnet)?;
        let hash = magnet.info_hash;
        crate::commands::write_atomically(&self.torrent_path(&hash), &metainfo.to_bytes(), true)?;
        let name = &metainfo.info.name;
        self.say(
            json!({"event": "metadata", "info_hash": hash.to_hex(), "name": name}),
            format!("{name}: metadata received"),
        );
        Ok(Some((Arc::new(metainfo), fetched.peers)))
    }

    /// Runs a torrent in the engine until it stops, on the session's network.
    async fn run(
        &self,
        metainfo: Arc<Metainfo>,
        (job, turn): (Job, Option<OwnedSemaphorePermit>),
        extra_peers: Vec<SocketAddr>,
        stopped: watch::Receiver<bool>,
    ) {
        let Job {
            check,
            dir,
            fetch,
            goals,
            limits: (upload_limit, download_limit),
            status,
            pieces,
            trackers,
        } = job;
        let name = metainfo.info.name.clone();
        // A magnet link's selection meets the torrent's files only now.
        let selected_files = match fetch.selected(&metainfo) {
            Ok(selected) => selected,
            Err(e) => return self.failed(&status, &name, e.into()),
        };
        // What the seed ratio counts uploads against.
        let wanted = describe_files(&metainfo, selected_files.as_deref(), &Bitfield::new(0)).1;
        let net = &self.net;
        // A check alone asks nobody for peers.
        let only_check = check == Check::RecheckOnly;
        // BEP 27: a private torrent's peers come from its trackers alone.
        let dht = match metainfo.info.private || only_check {
            true => Dhts::default(),
            false => net.dht.clone(),
        };
        let peer_feed = match only_check {
            true => None,
            false => discovery::peer_feed(
                &dht,
                &net.discovery,
                &metainfo.swarm_hashes(),
                net.listen,
                false,
            ),
        };
        let opts = &net.opts;
        let mut peers = opts.peer_addrs();
        peers.extend(extra_peers);
        let config = TorrentConfig {
            metainfo: metainfo.clone(),
            download_dir: dir,
            single_file_path: None,
            state_dir: self.state_dir.clone(),
            listen: Some(net.listen),
            shared_listener: Some(net.listener.clone()),
            dialer: net.dialer.clone(),
            peers,
            peer_feed,
            seed: true,
            // Kept to by `keep_status`, over all the torrent's runs and as they change.
            seed_limit: SeedLimit::default(),
            super_seed: false,
            upload_limit,
            download_limit,
            max_connections: opts.max_peers,
            connection_budget: Some(self.connections.clone()),
            upload_slots: usize::from(opts.upload_slots),
            stall_timeout: None,
            check_threads: 0,
            check_turns: Some(self.check_turns.clone()),
            check,
            encryption: opts.encryption.into(),
            ip_filter: net.ip_filter.clone(),
            sequential: fetch.sequential,
            priority_pieces: Vec::new(),
            // Nothing reads ahead; the pieces on disk are followed, for each file's
            // progress.
            readers: Some(Readers {
                have: pieces,
                wanted: watch::channel(Wanted::default()).1,
            }),
            external_port: Some(net.external_port.clone()),
            selected_files,
        };
        let announcing = (
            match only_check {
                true => Vec::new(),
                false => net.trackers(&metainfo),
            },
            dht,
            net.external_port.clone(),
            Some(trackers),
        );
        let (updates, display) = mpsc::unbounded_channel();
        // The user's stop, or the seed limit's.
        let (halt, halted) = watch::channel(false);
        let forward = {
            let (halt, mut stopped) = (halt.clone(), stopped.clone());
            tokio::spawn(async move {
                if stopped.wait_for(|stop| *stop).await.is_ok() {
                    let _ = halt.send(true);
                }
            })
        };
        let on_complete = self.on_complete.clone().map(|program| {
            let completed = hook::Completed {
                info_hash: metainfo.info_hash.to_hex(),
                name: name.clone(),
                path: config.download_dir.join(&name),
            };
            (program, completed)
        });
        let follow = Follow {
            status: status.clone(),
            turn,
            stalled_after: self.stalled_after,
            name: name.clone(),
            size: metainfo.info.total_length,
            json: self.json,
            on_complete,
            seeding: Seeding {
                goals,
                session: self.seed_limit.clone(),
                wanted,
                halt,
            },
        };
        let watcher = tokio::spawn(keep_status(display, follow));
        let outcome = run_announced(config, announcing, updates, halted).await;
        forward.abort();
        let limit_reached = watcher.await.unwrap_or(false);
        match outcome {
            _ if *stopped.borrow() => set_state(&status, State::Paused),
            Ok(_) if limit_reached => set_state(&status, State::Finished),
            Ok(Outcome::Complete) => set_state(&status, State::Finished),
            Ok(Outcome::Stopped) => set_state(&status, State::Paused),
            Err(e) => self.failed(&status, &name, e),
        }
        // Its totals, and a finished torrent's state, are kept at once.
        self.save_list();
    }

    /// Writes the list, taking `changing`; a list not written now is written with the
    /// next change.
    fn save_list(&self) {
        let _changing = self.changing();
        if let Err(e) = self.write_list() {
            eprintln!("shoal: warning: the torrent list could not be saved: {e:#}");
        }
    }

    /// Writes the list every `every` while any torrent moves data, so that a crash
    /// loses at most that much of the totals.
    pub async fn keep_totals(self: Arc<Self>, every: Duration) {
        let mut last = None;
        loop {
            tokio::time::sleep(every).await;
            let now: Vec<Totals> = self
                .torrents()
                .values()
                .map(|entry| lock(&entry.status).totals)
                .collect();
            if last.as_ref() != Some(&now) {
                self.save_list();
                last = Some(now);
            }
        }
    }

    /// A torrent stopped on an error: said, and kept in its status.
    fn failed(&self, status: &Mutex<Status>, name: &str, error: anyhow::Error) {
        let reason = format!("{error:#}");
        self.say(
            json!({"event": "error", "name": name, "reason": reason}),
            format!("{name}: stopped: {reason}"),
        );
        set_state(status, State::Error);
        lock(status).error = Some(reason);
    }

    /// How many torrents are listed.
    pub fn count(&self) -> usize {
        self.torrents().values().filter(|e| !e.removing).count()
    }

    /// Every torrent, as the API shows them.
    pub fn list(&self) -> Vec<Value> {
        // A copy: the lock is never held while another is taken.
        let session = *lock(&self.seed_limit);
        let torrents = self.torrents();
        torrents
            .iter()
            .filter(|(_, entry)| !entry.removing)
            .map(|(hash, entry)| describe(hash, entry, session))
            .collect()
    }

    /// One torrent, named by its info-hash or an unambiguous beginning of its hex, with
    /// its peers.
    pub fn show(&self, name: &str) -> Result<Value, SessionError> {
        let session = *lock(&self.seed_limit);
        let torrents = self.torrents();
        let hash = find(&torrents, name)?;
        let entry = &torrents[&hash];
        let mut torrent = describe(&hash, entry, session);
        let status = lock(&entry.status);
        torrent["peers"] = Value::Array(status.peer_list.clone());
        torrent["trackers"] = entry
            .trackers
            .statuses()
            .into_iter()
            .map(|(url, said)| tracker_json(url, said))
            .collect();
        if let Some(metainfo) = entry.metainfo.get() {
            let selected = entry.fetch.selected(metainfo).ok().flatten();
            let have = entry.pieces.borrow().clone();
            torrent["files"] = Value::Array(describe_files(metainfo, selected.as_deref(), &have).0);
        }
        Ok(torrent)
    }

    /// Stops a torrent (its connections closed, its resume state saved) and keeps it,
    /// paused, across restarts. Returns once it has stopped.
    pub async fn pause(&self, name: &str) -> Result<(), SessionError> {
        let done = {
            let _changing = self.changing();
            let done = {
                let mut torrents = self.torrents();
                let hash = find(&torrents, name)?;
                let entry = torrents.get_mut(&hash).expect("found");
                entry.paused = true;
                entry.running.as_ref().map(Running::stop)
            };
            self.write_list()?;
            done
        };
        if let Some(done) = done {
            until_done(done).await;
        }
        Ok(())
    }

    /// Starts a paused (or failed, or finished) torrent again.
    pub fn resume(self: &Arc<Self>, name: &str) -> Result<(), SessionError> {
        let _changing = self.changing();
        {
            let mut torrents = self.torrents();
            let hash = find(&torrents, name)?;
            let entry = torrents.get_mut(&hash).expect("found");
            if entry.is_stopping() {
                return Err(SessionError::Busy(hash.to_hex()));
            }
            entry.paused = false;
            // Running already, or a paused torrent's check, which starts it once done.
            if entry.task().is_none() {
                self.start(entry);
            }
        }
        self.write_list()?;
        Ok(())
    }

    /// Changes a torrent as `change` says. Its rate limits hold at once, its seed limits
    /// from its next second;
    /// for a change of files or order, a running torrent is stopped and started again
    /// with them (its resume state vouches for what it has, so nothing is checked or
    /// fetched again), and this returns once it has started again.
    pub async fn set(self: &Arc<Self>, name: &str, change: Change) -> Result<(), SessionError> {
        let (hash, done) = {
            let _changing = self.changing();
            let (hash, previous, restart) = {
                let mut torrents = self.torrents();
                let hash = find(&torrents, name)?;
                let entry = torrents.get_mut(&hash).expect("found");
                let mut fetch = match &change.files {
                    Some(files) => entry.fetch.with_files(files)?,
                    None => entry.fetch.clone(),
                };
                fetch.sequential = change.sequential.unwrap_or(fetch.sequential);
                if let Some(metainfo) = entry.metainfo.get() {
                    fetch.selected(metainfo)?;
                }
                let goals = lock(&entry.goals).with(change.seed_ratio, change.seed_time);
                let refetch = change.files.is_some() || change.sequential.is_some();
                let rates = rates_of(entry);
                let new_rates = Rates {
                    max_up: change
                        .max_up
                        .map_or(rates.max_up, |r| Some(r).filter(|&r| r > 0)),
                    max_down: change
                        .max_down
                        .map_or(rates.max_down, |r| Some(r).filter(|&r| r > 0)),
                };
                // The same again restarts a torrent an error stopped.
                let restart = refetch && (fetch != entry.fetch || state_of(entry) == State::Error);
                if !restart && goals == *lock(&entry.goals) && new_rates == rates {
                    return Ok(());
                }
                if restart && entry.is_stopping() {
                    return Err(SessionError::Busy(hash.to_hex()));
                }
                if new_rates != rates {
                    entry.upload_limit.set_rate(new_rates.max_up);
                    entry.download_limit.set_rate(new_rates.max_down);
                }
                let previous = (
                    std::mem::replace(&mut entry.fetch, fetch),
                    std::mem::replace(&mut *lock(&entry.goals), goals),
                    rates,
                );
                (hash, previous, restart)
            };
            // Saved before anything stops: a list that cannot be written changes nothing.
            if let Err(e) = self.write_list() {
                if let Some(entry) = self.torrents().get_mut(&hash) {
                    let rates;
                    (entry.fetch, *lock(&entry.goals), rates) = previous;
                    entry.upload_limit.set_rate(rates.max_up);
                    entry.download_limit.set_rate(rates.max_down);
                }
                return Err(e.into());
            }
            if !restart {
                return Ok(());
            }
            let mut torrents = self.torrents();
            let entry = torrents
                .get_mut(&hash)
                .expect("kept while `changing` is held");
            // A paused torrent's task is a check: it is taken up again with the change.
            entry.verify |= entry.paused && entry.task().is_some();
            match entry.task() {
                Some(running) => (hash, running.stop()),
                None => {
                    // Stopped on an error (a magnet link's list beyond its files, say):
                    // the change may be its fix.
                    if !entry.paused && state_of(entry) == State::Error {
                        self.start(entry);
                    }
                    return Ok(());
                }
            }
        };
        self.restart(hash, done).await
    }

    /// Starts a torrent again once its task, told to stop, is `done` (even if the caller
    /// stops waiting); returns once it has started.
    async fn restart(
        self: &Arc<Self>,
        hash: InfoHash,
        done: watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        let session = self.clone();
        let restart = tokio::spawn(async move {
            until_done(done).await;
            session.start_unless_paused(hash);
        });
        restart.await.context("restarting the torrent")?;
        Ok(())
    }

    /// Asks a running torrent's trackers for peers now (Transmission's reannounce,
    /// libtorrent's force_reannounce), as soon as their `min interval` allows; trackers
    /// backing off after failures are asked too.
    pub fn reannounce(&self, name: &str) -> Result<(), SessionError> {
        let torrents = self.torrents();
        let hash = find(&torrents, name)?;
        let entry = &torrents[&hash];
        let name = name_of(&hash, entry);
        let running = entry.task().is_some() && !entry.is_stopping() && !entry.paused;
        if !running {
            return Err(SessionError::Invalid(format!("{name} is not running")));
        }
        // Its announcers start with its transfers, and ask at once then.
        if !matches!(state_of(entry), State::Downloading | State::Seeding) {
            return Err(SessionError::Invalid(format!(
                "{name} announces once it starts transferring"
            )));
        }
        let trackers = entry.metainfo.get().map(|m| self.net.trackers(m));
        if trackers.is_some_and(|t| t.is_empty()) {
            return Err(SessionError::Invalid(format!("{name} has no trackers")));
        }
        entry.trackers.ask_again();
        Ok(())
    }

    /// Checks a torrent's data against its piece hashes again, whatever its resume
    /// state says, as Transmission's verify and libtorrent's force recheck: a running
    /// torrent stops and starts again with the check (and fetches what fails it); a
    /// paused one is checked and stays paused. Returns once the check is under way.
    pub async fn verify(self: &Arc<Self>, name: &str) -> Result<(), SessionError> {
        let (hash, done) = {
            let _changing = self.changing();
            let mut torrents = self.torrents();
            let hash = find(&torrents, name)?;
            let entry = torrents.get_mut(&hash).expect("found");
            if entry.metainfo.get().is_none() {
                let name = name_of(&hash, entry);
                return Err(SessionError::Invalid(format!(
                    "{name}: no metadata yet, so nothing to check"
                )));
            }
            if entry.is_stopping() {
                return Err(SessionError::Busy(hash.to_hex()));
            }
            entry.verify = true;
            match entry.task() {
                Some(running) => (hash, Some(running.stop())),
                None => {
                    // Stopped (paused, finished, failed): checked, and stopped after.
                    entry.paused = true;
                    self.start(entry);
                    drop(torrents);
                    self.write_list()?;
                    (hash, None)
                }
            }
        };
        match done {
            Some(done) => self.restart(hash, done).await,
            None => Ok(()),
        }
    }

    /// Moves a torrent's files to `dir` (an absolute path) and downloads there from now
    /// on, as Transmission's set-location: the torrent stops, its files move (nothing
    /// else in its folder does), and it starts again from its resume state if it was
    /// running. Meanwhile it is busy (409 to a resume or a change); a pause or a removal
    /// waits for the move. The move goes on if the caller stops waiting.
    pub async fn move_data(self: &Arc<Self>, name: &str, dir: PathBuf) -> Result<(), SessionError> {
        if dir.is_relative() {
            let dir = dir.display();
            return Err(SessionError::Invalid(format!(
                "{dir}: not an absolute path"
            )));
        }
        let (hash, from, metainfo, stopping, moving) = {
            let _changing = self.changing();
            let hash = {
                let mut torrents = self.torrents();
                let hash = find(&torrents, name)?;
                let entry = torrents.get_mut(&hash).expect("found");
                if entry.dir == dir {
                    return Ok(());
                }
                if entry.is_stopping() {
                    return Err(SessionError::Busy(hash.to_hex()));
                }
                entry.moving_to = Some(dir.clone());
                hash
            };
            // Saved before anything moves: a move cut short is finished on restart.
            if let Err(e) = self.write_list() {
                if let Some(entry) = self.torrents().get_mut(&hash) {
                    entry.moving_to = None;
                }
                return Err(e.into());
            }
            let mut torrents = self.torrents();
            let entry = torrents
                .get_mut(&hash)
                .expect("kept while `changing` is held");
            // A paused torrent's task is a check: done again after the move.
            entry.verify |= entry.paused && entry.task().is_some();
            let stopping = entry.task().map(Running::stop);
            // The move is the torrent's task until it is done: busy for a resume or a
            // change, waited for by a pause or a removal.
            let (stop, _) = watch::channel(true);
            let (moving, done) = watch::channel(false);
            entry.running = Some(Running { stop, done });
            let slot = entry.metainfo.clone();
            (hash, entry.dir.clone(), slot, stopping, Done(moving))
        };
        let session = self.clone();
        let task = tokio::spawn(async move {
            if let Some(stopping) = stopping {
                until_done(stopping).await;
            }
            // Read once it has stopped: a magnet's metadata may have come meanwhile.
            let metainfo = metainfo.get().cloned();
            let target = dir.clone();
            let moved = match metainfo {
                Some(metainfo) => tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&target)
                        .with_context(|| format!("{}: cannot create", target.display()))?;
                    move_files(&metainfo, &from, &target, false)
                })
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("the move failed: {e}"))),
                // Nothing fetched yet.
                None => Ok(()),
            };
            let _changing = session.changing();
            {
                let mut torrents = session.torrents();
                let Some(entry) = torrents.get_mut(&hash) else {
                    return moved.map_err(SessionError::from);
                };
                if moved.is_ok() {
                    entry.dir = dir;
                }
                entry.moving_to = None;
            }
            // The files have moved whatever the list says; a list not saved now is
            // saved with the next change.
            if let Err(e) = session.write_list() {
                eprintln!("shoal: warning: the torrent list could not be saved: {e:#}");
            }
            let mut torrents = session.torrents();
            let entry = torrents
                .get_mut(&hash)
                .expect("kept while `changing` is held");
            // What the user wants of it, whatever stopped it before the move (an error
            // the move may fix, a change that was restarting it).
            if (!entry.paused || entry.verify)
                && !entry.removing
                && state_of(entry) != State::Finished
            {
                session.start(entry);
            }
            drop(moving);
            moved.map_err(SessionError::from)
        });
        task.await.context("moving the torrent")?
    }

    /// Takes a torrent out of the session; with `delete_data`, its files (only those the
    /// torrent names, and the folders they leave empty) and its resume state go too,
    /// once it has stopped. The work goes on if the caller stops waiting.
    pub async fn remove(
        self: &Arc<Self>,
        name: &str,
        delete_data: bool,
    ) -> Result<(), SessionError> {
        let (hash, done) = {
            let _changing = self.changing();
            let (hash, done) = {
                let mut torrents = self.torrents();
                let hash = find(&torrents, name)?;
                let entry = torrents.get_mut(&hash).expect("found");
                entry.removing = true;
                (hash, entry.running.as_ref().map(Running::stop))
            };
            self.write_list()?;
            let _ = std::fs::remove_file(self.torrent_path(&hash));
            (hash, done)
        };
        let session = self.clone();
        let removal = tokio::spawn(async move {
            if let Some(done) = done {
                until_done(done).await;
            }
            let Some(entry) = session.torrents().remove(&hash) else {
                return;
            };
            if let (true, Some(metainfo)) = (delete_data, entry.metainfo.get()) {
                delete_files(metainfo, &entry.dir);
                let resume = shoal_storage::resume::resume_path(&session.state_dir, &hash);
                let _ = std::fs::remove_file(resume);
            }
            let name = name_of(&hash, &entry);
            let with_files = if delete_data { " with its files" } else { "" };
            session.say(
                json!({"event": "removed", "info_hash": hash.to_hex(), "name": name,
                       "deleted_data": delete_data}),
                format!("{name}: removed{with_files}"),
            );
        });
        removal.await.context("removing the torrent")?;
        Ok(())
    }

    /// Stops every torrent (each tells its trackers and saves its resume state).
    pub async fn shutdown(&self) {
        {
            // Under the lock every start takes: none starts after this.
            let _changing = self.changing();
            self.closing
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let done: Vec<_> = {
            let torrents = self.torrents();
            torrents
                .values()
                .filter_map(|e| e.running.as_ref().map(Running::stop))
                .collect()
        };
        for done in done {
            until_done(done).await;
        }
    }

    /// Writes the list of torrents, with `changing` held (atomically: a crash leaves the
    /// old list or the new). A finished torrent (its seed limit reached) is saved
    /// stopped, so that a restart does not seed it again.
    fn write_list(&self) -> Result<()> {
        let mut saved: Vec<Saved> = {
            let torrents = self.torrents();
            torrents
                .iter()
                .filter(|(_, entry)| !entry.removing)
                .map(|(hash, entry)| {
                    // Each lock on its own: a status is never locked under its goals.
                    let goals = *lock(&entry.goals);
                    let totals = lock(&entry.status).totals;
                    Saved {
                        info_hash: hash.to_hex(),
                        dir: entry.dir.clone(),
                        paused: entry.paused || state_of(entry) == State::Finished,
                        magnet: entry.magnet.as_ref().map(ToString::to_string),
                        fetch: entry.fetch.clone(),
                        goals,
                        rates: rates_of(entry),
                        totals,
                        moving_to: entry.moving_to.clone(),
                    }
                })
                .collect()
        };
        saved.extend(lock(&self.unrestored).iter().cloned());
        let text = serde_json::to_vec_pretty(&saved).context("encoding the torrent list")?;
        crate::commands::write_atomically(&self.list_path(), &text, true)
    }

    fn say(&self, event: Value, text: String) {
        say(self.json, event, text);
    }
}

/// A lock that a thread which panicked holding it does not spoil: what it guards is
/// figures and lists, each change whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_state(status: &Mutex<Status>, state: State) {
    let mut status = lock(status);
    status.state = state;
    status.download_rate = 0.0;
    status.upload_rate = 0.0;
    status.peers = 0;
    status.peer_list.clear();
}

/// Finishes a move of `metainfo`'s files from `from` to `to` that a crash cut short, or
/// if that fails, puts them back: the folder they are all in.
fn finish_move(metainfo: &Metainfo, from: &Path, to: &Path) -> PathBuf {
    let name = &metainfo.info.name;
    match move_files(metainfo, from, to, true) {
        Ok(()) => {
            eprintln!("shoal: {name}: the move to {} is finished", to.display());
            to.to_path_buf()
        }
        Err(e) => {
            eprintln!(
                "shoal: warning: {name}: the move to {} failed: {e:#}",
                to.display()
            );
            if let Err(e) = move_files(metainfo, to, from, true) {
                eprintln!("shoal: warning: {name}: not all moved back: {e:#}");
            }
            from.to_path_buf()
        }
    }
}

/// What a tracker last said, for the API.
fn tracker_json(url: String, said: TrackerStatus) -> Value {
    let since_epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    };
    json!({
        "url": url,
        "seeders": said.seeders,
        "leechers": said.leechers,
        "answered_at": said.answered.and_then(since_epoch),
        "message": said.message,
        "failures": said.failures,
    })
}

/// A torrent's name: its metadata's, else its link's, else its info-hash.
fn name_of(hash: &InfoHash, entry: &Entry) -> String {
    match (entry.metainfo.get(), &entry.magnet) {
        (Some(metainfo), _) => metainfo.info.name.clone(),
        (
            None,
            Some(Magnet {
                name: Some(name), ..
            }),
        ) => name.clone(),
        _ => hash.to_hex(),
    }
}

fn say(json: bool, event: Value, text: String) {
    match json {
        true => crate::commands::line(event),
        false => eprintln!("shoal: {text}"),
    }
}

/// The torrent `name` names: a whole info-hash, or a beginning of one's hex, at least
/// four digits, that only one torrent has.
fn find(torrents: &BTreeMap<InfoHash, Entry>, name: &str) -> Result<InfoHash, SessionError> {
    let name = name.to_ascii_lowercase();
    let mut matching = torrents
        .iter()
        .filter(|(hash, entry)| {
            !entry.removing && name.len() >= 4 && hash.to_hex().starts_with(&name)
        })
        .map(|(hash, _)| hash);
    match (matching.next(), matching.next()) {
        (Some(hash), None) => Ok(*hash),
        _ => Err(SessionError::Unknown(name)),
    }
}

/// A torrent's own rate limits.
fn rates_of(entry: &Entry) -> Rates {
    Rates {
        max_up: entry.upload_limit.own_rate(),
        max_down: entry.download_limit.own_rate(),
    }
}

fn state_of(entry: &Entry) -> State {
    lock(&entry.status).state
}

/// A torrent as the API shows it; `session` is the session's seed limit.
fn describe(hash: &InfoHash, entry: &Entry, session: SeedLimit) -> Value {
    let status = lock(&entry.status).clone();
    let metainfo = entry.metainfo.get();
    let size = metainfo.map(|m| m.info.total_length);
    // Of the selected files, once the engine has said which pieces are on disk; until
    // then (checking) how far the check is.
    // A copy: the engine waits to update it while it is borrowed.
    let have = entry.pieces.borrow().clone();
    let wanted = metainfo.map(|metainfo| match have.len() {
        0 => (metainfo.info.total_length, status.have),
        _ => {
            let selected = entry.fetch.selected(metainfo).ok().flatten();
            let (_, size, have) = describe_files(metainfo, selected.as_deref(), &have);
            (size, have)
        }
    });
    let progress = wanted.map(|(size, have)| match size {
        0 => 1.0,
        size => have as f64 / size as f64,
    });
    let goals = *lock(&entry.goals);
    let limit = shown(goals.limit(session));
    let rates = rates_of(entry);
    json!({
        "info_hash": hash.to_hex(),
        "name": name_of(hash, entry),
        "size": size,
        "wanted_size": wanted.map(|(size, _)| size),
        "dir": entry.dir.display().to_string(),
        "private": metainfo.map(|m| m.info.private),
        "files_selected": entry.fetch.files,
        "sequential": entry.fetch.sequential,
        "progress": progress,
        "ratio": wanted.map(|(size, _)| status.totals.ratio(size)),
        "seed_ratio": goals.seed_ratio,
        "seed_time": goals.seed_time,
        "max_up": rates.max_up,
        "max_down": rates.max_down,
        // The limits that hold for it.
        "seed_limit": {
            "seed_ratio": limit.0,
            "seed_time": limit.1,
        },
        "status": status,
    })
}

/// What became of the `--on-complete` program run for `name`.
fn show_hook(name: &str, outcome: hook::Outcome, json: bool) {
    let (mut event, text) = outcome.describe();
    event["name"] = json!(name);
    say(json, event, format!("{name}: {text}"));
}

/// What follows a running torrent's updates.
struct Follow {
    status: Arc<Mutex<Status>>,
    /// Its download turn, given back once it is complete or stalls.
    turn: Option<OwnedSemaphorePermit>,
    stalled_after: Duration,
    name: String,
    size: u64,
    json: bool,
    /// `--on-complete`: the program, and what it is told.
    on_complete: Option<(Arc<PathBuf>, hook::Completed)>,
    seeding: Seeding,
}

/// What keeps a running torrent to its seed limits.
struct Seeding {
    /// Its own limits, and the session's, both read as they change.
    goals: Arc<Mutex<Goals>>,
    session: Arc<Mutex<SeedLimit>>,
    /// Bytes of the files it wants, which its ratio counts uploads against.
    wanted: u64,
    /// Stops it once a limit is reached.
    halt: watch::Sender<bool>,
}

impl Seeding {
    /// Whether `totals` reach the limits that hold now.
    fn reached(&self, totals: &Totals) -> bool {
        let session = *lock(&self.session);
        let limit = lock(&self.goals).limit(session);
        let seeded = Duration::from_secs(totals.seeding_secs);
        limit.reached(seeded, totals.uploaded, self.wanted)
    }
}

/// Keeps `status` current from a torrent's updates; completions are said. The
/// torrent's download turn, if it holds one, is given back once it is complete. Stops
/// the torrent once its seed limit is reached, and says so (`true`).
async fn keep_status(mut updates: mpsc::UnboundedReceiver<Update>, follow: Follow) -> bool {
    let Follow {
        status,
        mut turn,
        stalled_after,
        name,
        size,
        json,
        on_complete,
        seeding,
    } = follow;
    // The totals of the runs before, and this run's seeding time.
    let before = lock(&status).totals;
    let (mut seeded, mut last_stats) = (Duration::ZERO, Instant::now());
    let mut limit_reached = false;
    // A torrent complete from the start (a restart) has nothing new to say.
    let mut fetched_any = false;
    // When the download last grew, for giving the turn back once it stalls.
    let mut progress = (0, Instant::now());
    while let Some(update) = updates.recv().await {
        let Update::Engine(event) = update else {
            continue;
        };
        let mut status = lock(&status);
        let mut finished = false;
        match event {
            EngineEvent::Checking { done, .. } => {
                status.state = State::Checking;
                status.have = done;
            }
            EngineEvent::Started {
                have,
                piece_count,
                resumed,
                ..
            } => {
                status.resumed = resumed;
                // Seeding, if it is, from now: not the check before.
                last_stats = Instant::now();
                status.state = match have == piece_count {
                    true => State::Seeding,
                    false => State::Downloading,
                };
            }
            EngineEvent::PieceVerified { .. } => fetched_any = true,
            // Between the statistics, the count follows each connection.
            EngineEvent::PeerConnected { .. } => status.peers += 1,
            EngineEvent::PeerDisconnected { .. } => {
                status.peers = status.peers.saturating_sub(1);
            }
            EngineEvent::Stats(stats) => {
                if stats.downloaded != progress.0 {
                    progress = (stats.downloaded, Instant::now());
                } else if turn.is_some() && progress.1.elapsed() >= stalled_after {
                    turn = None;
                    let event = json!({"event": "stalled", "name": name});
                    say(
                        json,
                        event,
                        format!("{name}: stalled; the next download starts beside it"),
                    );
                }
                if status.state == State::Seeding {
                    seeded += last_stats.elapsed();
                }
                last_stats = Instant::now();
                status.totals = before.and(stats.uploaded, stats.downloaded, seeded);
                // Not once it is stopping: the engine's last figures come then.
                if status.state == State::Seeding
                    && !limit_reached
                    && !*seeding.halt.borrow()
                    && seeding.reached(&status.totals)
                {
                    limit_reached = true;
                    let _ = seeding.halt.send(true);
                    let (ratio, secs) = (
                        status.totals.ratio(seeding.wanted),
                        status.totals.seeding_secs,
                    );
                    say(
                        json,
                        json!({"event": "seed_limit_reached", "name": name, "ratio": ratio,
                               "seeding_secs": secs}),
                        format!(
                            "{name}: seeding done, at ratio {ratio:.2} after {} min",
                            secs / 60
                        ),
                    );
                }
                status.have = stats.bytes_have;
                status.downloaded = stats.downloaded;
                status.uploaded = stats.uploaded;
                status.download_rate = stats.download_rate;
                status.upload_rate = stats.upload_rate;
                status.peers = stats.peers;
                status.eta_secs = stats.eta_secs;
            }
            EngineEvent::Peers(peers) => {
                status.peer_list = peers.iter().map(peer_json).collect();
            }
            // Every selected piece is here (the figures of the moment, ahead of the next
            // statistics): the torrent seeds what it has, a partial download too.
            EngineEvent::Completed {
                seed, downloaded, ..
            } => {
                turn = None;
                last_stats = Instant::now();
                status.downloaded = downloaded;
                status.state = State::Seeding;
                if seed {
                    status.have = size;
                }
                finished = fetched_any;
            }
            _ => {}
        }
        // Said, and the program started, with the status free for the API meanwhile.
        drop(status);
        if finished {
            let event = json!({"event": "completed", "name": name});
            say(json, event, format!("{name}: complete"));
            if let Some((program, completed)) = &on_complete {
                let name = name.clone();
                hook::run(program, completed, move |outcome| {
                    show_hook(&name, outcome, json);
                });
            }
        }
    }
    drop(turn);
    limit_reached
}
