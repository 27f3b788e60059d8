//! [`Announcer`]: the tokio task that runs a [`TrackerClient`] for one torrent.
//!
//! It is told the torrent's progress, announces when the client says so (HTTP or UDP),
//! sends every peer list it gets to the engine's peer feed, and on [`Announcer::stop`]
//! sends `stopped` to the trackers that count us, within a bounded time.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_core::{InfoHash, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::board::TrackerBoard;
use super::http::{self as http_driver, HttpConfig};
use super::udp::UdpEndpoint;
use crate::announce::{AnnounceResponse, Progress};
use crate::client::http::{announce_path, parse_announce};
use crate::client::{
    AnnounceJob, ClientEvent, ClientParams, TrackerClient, UdpConfig, UdpOperation, UdpOutcome,
};
use crate::url::{Scheme, TrackerUrl};
use crate::TrackerError;

#[derive(Debug, Clone)]
pub struct AnnouncerConfig {
    /// Tiers of tracker URLs (a torrent's `announce-list`, or `[[announce]]`).
    pub trackers: Vec<Vec<String>>,
    pub info_hash: InfoHash,
    /// The torrent's peer id, the one its connections send (as libtorrent's announces do).
    pub peer_id: PeerId,
    /// The torrent's tracker key: one for all its announcers, so a tracker knows the
    /// announces of both families for one client's.
    pub key: u32,
    /// The port peers reach us on.
    pub port: u16,
    /// Where our announces come from: the address the engine listens on, when it is a
    /// specific one, so the tracker hands out the address peers can reach; or `0.0.0.0`
    /// / `::` to announce over that family only (a dual-stack client runs one announcer
    /// per family, so each tracker learns both its addresses; trackers it cannot reach
    /// over the family are skipped without a warning). (Overrides `http.bind`.)
    pub bind: Option<IpAddr>,
    pub numwant: Option<u32>,
    pub http: HttpConfig,
    pub udp: UdpConfig,
    /// Where what each tracker says is kept for a user interface, if anywhere.
    pub board: Option<TrackerBoard>,
}

enum Command {
    Progress(Progress),
    Completed,
    Port(u16),
    Stop(Duration, oneshot::Sender<()>),
}

/// Handle on a running announce task. Dropping it ends the task without `stopped`.
#[derive(Debug)]
pub struct Announcer {
    commands: mpsc::UnboundedSender<Command>,
}

type InFlight = Pin<
    Box<
        dyn Future<
                Output = (
                    AnnounceJob,
                    Result<AnnounceResponse, TrackerError>,
                    Option<UdpEndpoint>,
                ),
            > + Send,
    >,
>;

impl Announcer {
    /// Starts announcing at once (`started`) with `progress`. Peers go to `peers`.
    pub fn spawn(
        config: AnnouncerConfig,
        progress: Progress,
        peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
    ) -> Announcer {
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(config, progress, peers, rx));
        Announcer { commands }
    }

    pub fn set_progress(&self, progress: Progress) {
        let _ = self.commands.send(Command::Progress(progress));
    }

    /// The download completed: `completed` goes out now.
    pub fn completed(&self) {
        let _ = self.commands.send(Command::Completed);
    }

    /// Peers are to reach us on `port` from now on (what a router forwards to us): the
    /// trackers hear of it at once.
    pub fn set_port(&self, port: u16) {
        let _ = self.commands.send(Command::Port(port));
    }

    /// Sends `stopped` to every tracker that counts us and waits for the answers, at
    /// most `within`.
    pub async fn stop(self, within: Duration) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Stop(within, done)).is_ok() {
            let _ = tokio::time::timeout(within + Duration::from_millis(100), wait).await;
        }
    }
}

async fn announce_once(
    job: AnnounceJob,
    endpoint: Option<UdpEndpoint>,
    bind: Option<IpAddr>,
    http: HttpConfig,
    udp: UdpConfig,
) -> (
    AnnounceJob,
    Result<AnnounceResponse, TrackerError>,
    Option<UdpEndpoint>,
) {
    match job.url.scheme {
        Scheme::Udp => {
            let mut endpoint = match endpoint {
                Some(e) => e,
                None => match UdpEndpoint::open(&job.url, bind, udp, http.proxy.as_deref()).await {
                    Ok(e) => e,
                    Err(e) => return (job, Err(e), None),
                },
            };
            let result = match endpoint
                .run(UdpOperation::Announce(job.request.clone()))
                .await
            {
                Ok(UdpOutcome::Announce(r)) => Ok(r),
                Ok(UdpOutcome::Scrape(_)) => {
                    Err(TrackerError::BadResponse("scrape answer to an announce"))
                }
                Err(e) => Err(e),
            };
            (job, result, Some(endpoint))
        }
        Scheme::Http | Scheme::Https => {
            let target = announce_path(&job.url, &job.request);
            let result = match http_driver::get(&job.url, &target, &http).await {
                Ok(body) => parse_announce(&body),
                Err(e) => Err(e),
            };
            (job, result, None)
        }
    }
}

fn log_event(event: &ClientEvent, peers: &mpsc::UnboundedSender<Vec<SocketAddr>>) {
    match event {
        ClientEvent::Peers(list) => {
            tracing::debug!(count = list.len(), "peers from tracker");
            let _ = peers.send(list.clone());
        }
        ClientEvent::Answered {
            url,
            seeders,
            leechers,
        } => {
            tracing::debug!(%url, ?seeders, ?leechers, "tracker answered");
        }
        ClientEvent::Warning { url, message } => tracing::warn!(%url, "tracker warning: {message}"),
        ClientEvent::Failed {
            url,
            error: error @ TrackerError::NoRoute(_),
            ..
        } => tracing::debug!(%url, "not announcing: {error}"),
        ClientEvent::Failed {
            url,
            error,
            retry_in: Some(wait),
        } => {
            tracing::warn!(%url, "announce failed: {error}; retrying in {}s", wait.as_secs());
        }
        ClientEvent::Failed {
            url,
            error,
            retry_in: None,
        } => tracing::warn!(%url, "announce failed: {error}; not asking it again"),
    }
}

async fn run(
    mut config: AnnouncerConfig,
    progress: Progress,
    peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    config.http.bind = config.bind;
    let mut rng = StdRng::from_entropy();
    let params = ClientParams {
        info_hash: config.info_hash,
        peer_id: config.peer_id,
        key: config.key,
        port: config.port,
        numwant: config.numwant,
    };
    let (mut client, rejected) =
        TrackerClient::new(params, &config.trackers, progress, Instant::now(), &mut rng);
    for (url, error) in rejected {
        tracing::warn!("skipping tracker {url}: {error}");
    }
    if let Some(board) = &config.board {
        for url in config.trackers.iter().flatten() {
            if let Ok(url) = TrackerUrl::parse(url) {
                board.list(&url.to_string());
            }
        }
    }
    let mut endpoints: HashMap<TrackerUrl, UdpEndpoint> = HashMap::new();
    let mut in_flight: Option<InFlight> = None;
    let mut asks = config.board.as_ref().map(TrackerBoard::asks);
    let stop = loop {
        while let Some(event) = client.poll_event() {
            if let Some(board) = &config.board {
                board.record(&event, std::time::SystemTime::now());
            }
            log_event(&event, &peers);
        }
        if in_flight.is_none() {
            if let Some(job) = client.poll_announce(Instant::now()) {
                tracing::debug!(url = %job.url, event = ?job.request.event, "announcing");
                let endpoint = endpoints.remove(&job.url);
                in_flight = Some(Box::pin(announce_once(
                    job,
                    endpoint,
                    config.bind,
                    config.http.clone(),
                    config.udp,
                )));
            }
        }
        let wake = client.poll_timeout();
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Progress(p)) => client.set_progress(p),
                Some(Command::Completed) => client.completed(Instant::now()),
                Some(Command::Port(port)) => client.set_port(port, Instant::now()),
                Some(Command::Stop(within, done)) => break Some((within, done)),
                None => break None,
            },
            Ok(()) = async { asks.as_mut().expect("guarded").changed().await }, if asks.is_some() => {
                client.reannounce(Instant::now());
            }
            (job, result, endpoint) = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                if let Some(e) = endpoint {
                    endpoints.insert(job.url.clone(), e);
                }
                client.handle_response(Instant::now(), &job, result);
            }
            _ = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_none() => {}
        }
    };
    let Some((within, done)) = stop else { return };
    let deadline = tokio::time::Instant::now() + within;
    // Finish what is owed first: an announce under way, then a `completed` that is due
    // (a download that ends the program sends completed, then stopped).
    if let Some(pending) = in_flight.take() {
        if let Ok((job, result, _)) = tokio::time::timeout_at(deadline, pending).await {
            client.handle_response(Instant::now(), &job, result);
        }
    }
    if let Some(job) = client.poll_announce(Instant::now()) {
        if job.request.event == crate::Event::Completed {
            let endpoint = endpoints.remove(&job.url);
            let pending =
                announce_once(job, endpoint, config.bind, config.http.clone(), config.udp);
            if let Ok((job, result, endpoint)) = tokio::time::timeout_at(deadline, pending).await {
                if let Some(e) = endpoint {
                    endpoints.insert(job.url.clone(), e);
                }
                client.handle_response(Instant::now(), &job, result);
            }
        }
    }
    while let Some(event) = client.poll_event() {
        log_event(&event, &peers);
    }
    let stops = client.stop();
    let mut tasks = tokio::task::JoinSet::new();
    for job in stops {
        let endpoint = endpoints.remove(&job.url);
        let (bind, http, udp) = (config.bind, config.http.clone(), config.udp);
        tasks.spawn(announce_once(job, endpoint, bind, http, udp));
    }
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok((job, result, _))) = tasks.join_next().await {
            match result {
                Ok(_) => tracing::debug!(url = %job.url, "stopped announced"),
                Err(e) => tracing::warn!(url = %job.url, "stopped announce failed: {e}"),
            }
        }
    })
    .await;
    let _ = done.send(());
}
