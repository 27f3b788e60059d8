//! A torrent's tracker announces, shared by `get` and `seed` (and a magnet's metadata
//! phase): one announcer, or on a dual-stack listen socket one per family; for a hybrid
//! torrent, that for each of its two swarms (its v1 and v2 info-hashes), as libtorrent
//! announces a hybrid under both.
//!
//! A tracker learns a client's address from the connection its announce comes over, so
//! a client on `[::]` that announced only once would be known by one of its two
//! addresses, and peers of the other family would never hear of it. As libtorrent does
//! for each of its listen sockets, each family's announcer goes to every tracker that
//! has an address of that family we can reach, and the others are passed over quietly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shoal_core::{dual_stack, InfoHash, PeerId};
use shoal_engine::{Found, PeerSource};
use shoal_proxy::Proxy;
use shoal_tracker::client::UdpConfig;
use shoal_tracker::driver::http::HttpConfig;
use shoal_tracker::driver::{Announcer, AnnouncerConfig, TrackerBoard};
use shoal_tracker::{Progress, TrackerUrl};
use tokio::sync::mpsc;

use super::discovery::forward;

/// A tier of tracker URLs as given on the command line (`-t`/`--tracker`): one URL, or
/// several separated by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier(pub Vec<String>);

/// Parses a `--tracker` value: http, https and udp URLs, separated by commas.
pub fn parse_tier(arg: &str) -> Result<Tier, String> {
    let urls: Vec<String> = arg
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    for url in &urls {
        let lower = url.to_ascii_lowercase();
        if !["http://", "https://", "udp://"]
            .iter()
            .any(|s| lower.starts_with(s))
        {
            return Err(format!(
                "tracker URL '{url}' must start with http://, https:// or udp://"
            ));
        }
    }
    if urls.is_empty() {
        return Err("no tracker URL".into());
    }
    Ok(Tier(urls))
}

/// `tiers` followed by `extra`, less the URLs `tiers` already has: the trackers a user
/// adds to a torrent's own (`get`/`seed --tracker`), as libtorrent's `add_tracker` puts
/// them in tiers after the torrent's.
pub fn with_extra(tiers: &[Vec<String>], extra: &[Tier]) -> Vec<Vec<String>> {
    let mut all = tiers.to_vec();
    for Tier(urls) in extra {
        let new: Vec<String> = urls
            .iter()
            .filter(|u| !all.iter().flatten().any(|known| known == *u))
            .cloned()
            .collect();
        if !new.is_empty() {
            all.push(new);
        }
    }
    all
}

/// The announcers, each with whether it announces over IPv4.
pub struct Announcers(Vec<(bool, Announcer)>);

/// `tiers` without their UDP trackers, each left out with a notice saying `why`.
pub fn without_udp(tiers: &[Vec<String>], why: &str) -> Vec<Vec<String>> {
    tiers
        .iter()
        .map(|tier| {
            let (udp, rest): (Vec<&String>, Vec<&String>) =
                tier.iter().partition(|url| url.starts_with("udp://"));
            for url in udp {
                eprintln!("shoal: not announcing to {url}: {why}");
            }
            rest.into_iter().cloned().collect()
        })
        .collect()
}

impl Announcers {
    /// Starts announcing each of `swarms` to `trackers` (`started`) for a torrent listening
    /// on `listen`, over IPv4 on `ipv4_port` if a router forwards that one to us; the
    /// peers the trackers return go to `found`. Every announce sends the torrent's
    /// `peer_id` and one key, so a tracker can tell that both families' announces are
    /// one client's, as libtorrent's announces from each listen socket do.
    ///
    /// Through a `proxy`, trackers are asked once (the tracker sees the proxy's address
    /// whatever we bind); UDP trackers go through a SOCKS5 proxy's UDP relay, and are
    /// left out behind an HTTP proxy: their datagrams would go around it.
    pub fn spawn(
        trackers: &[Vec<String>],
        (swarms, peer_id): (&[InfoHash], PeerId),
        (listen, ipv4_port): (SocketAddr, Option<u16>),
        progress: Progress,
        (found, proxy): (&mpsc::UnboundedSender<Found>, Option<Arc<Proxy>>),
        board: Option<TrackerBoard>,
    ) -> Announcers {
        let trackers: Vec<Vec<String>> = match proxy.as_deref() {
            None | Some(Proxy::Socks5(_)) => trackers.to_vec(),
            Some(proxy) => without_udp(trackers, &format!("UDP does not go through {proxy}")),
        };
        // A specific address: announce from it, so the tracker hands out that one;
        // `0.0.0.0`: over IPv4 only, the family peers can reach us over.
        let binds = if dual_stack::is_dual_stack(listen) && proxy.is_none() {
            vec![
                IpAddr::from(Ipv4Addr::UNSPECIFIED),
                Ipv6Addr::UNSPECIFIED.into(),
            ]
        } else {
            vec![listen.ip()]
        };
        // The first announcer says which URLs it cannot use; the others leave them out.
        let usable: Vec<Vec<String>> = trackers
            .iter()
            .map(|tier| {
                let tier = tier.iter().filter(|url| TrackerUrl::parse(url).is_ok());
                tier.cloned().collect::<Vec<_>>()
            })
            .filter(|tier| !tier.is_empty())
            .collect();
        let key = rand::random();
        let each = swarms
            .iter()
            .flat_map(|&swarm| binds.iter().map(move |&b| (swarm, b)));
        let announcers = each.enumerate().map(|(i, (info_hash, bind))| {
            let ipv4 = bind.is_ipv4();
            let config = AnnouncerConfig {
                trackers: if i == 0 {
                    trackers.to_vec()
                } else {
                    usable.clone()
                },
                info_hash,
                peer_id,
                key,
                port: ipv4_port.filter(|_| ipv4).unwrap_or(listen.port()),
                bind: Some(bind),
                numwant: Some(50),
                http: HttpConfig {
                    proxy: proxy.clone(),
                    ..HttpConfig::default()
                },
                udp: UdpConfig::default(),
                board: board.clone(),
            };
            let (peers, from_trackers) = mpsc::unbounded_channel();
            forward(
                (PeerSource::Tracker, info_hash),
                from_trackers,
                found.clone(),
            );
            (ipv4, Announcer::spawn(config, progress, peers))
        });
        Announcers(announcers.collect())
    }

    pub fn set_progress(&self, progress: Progress) {
        for (_, announcer) in &self.0 {
            announcer.set_progress(progress);
        }
    }

    /// The download completed: `completed` goes out now.
    pub fn completed(&self) {
        for (_, announcer) in &self.0 {
            announcer.completed();
        }
    }

    /// A router forwards `port` to us (port mapping is IPv4's): announces over IPv4 say
    /// that port from now on, as libtorrent announces its external port.
    pub fn set_ipv4_port(&self, port: u16) {
        for (_, announcer) in self.0.iter().filter(|(ipv4, _)| *ipv4) {
            announcer.set_port(port);
        }
    }

    /// Sends `stopped` over every family at once, waiting at most `within`.
    pub async fn stop(self, within: Duration) {
        let mut stops = tokio::task::JoinSet::new();
        for (_, announcer) in self.0 {
            stops.spawn(announcer.stop(within));
        }
        while stops.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_from_arguments() {
        let tier = parse_tier("http://a/announce, udp://b:1").unwrap();
        assert_eq!(tier.0, ["http://a/announce", "udp://b:1"]);
        assert!(parse_tier("ftp://x").unwrap_err().contains("ftp://x"));
        assert!(parse_tier(" , ").is_err());
        let own = vec![vec!["http://a/announce".to_owned()]];
        let extra = [parse_tier("http://a/announce,udp://c:1").unwrap(), tier];
        assert_eq!(
            with_extra(&own, &extra),
            [
                vec!["http://a/announce"],
                vec!["udp://c:1"],
                vec!["udp://b:1"]
            ]
        );
    }
}
