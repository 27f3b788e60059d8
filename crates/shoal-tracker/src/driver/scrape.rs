//! Scrape (BEP 48 over HTTP, BEP 15 over UDP): seeders, leechers and completed downloads
//! for some info-hashes, from one tracker.

use shoal_core::InfoHash;

use super::http::{get, HttpConfig};
use super::udp::UdpEndpoint;
use crate::announce::ScrapeCounts;
use crate::client::http::{parse_scrape, scrape_path};
use crate::client::{UdpConfig, UdpOperation, UdpOutcome};
use crate::udp::MAX_SCRAPE;
use crate::url::{Scheme, TrackerUrl};
use crate::TrackerError;

/// Scrapes `hashes` at the tracker whose announce URL is `url`. Torrents the tracker
/// does not list are missing from the answer.
pub async fn scrape(
    url: &TrackerUrl,
    hashes: &[InfoHash],
    http: &HttpConfig,
    udp: UdpConfig,
) -> Result<Vec<(InfoHash, ScrapeCounts)>, TrackerError> {
    match url.scheme {
        Scheme::Udp => {
            let mut endpoint =
                UdpEndpoint::open(url, http.bind, udp, http.proxy.as_deref()).await?;
            let mut all = Vec::with_capacity(hashes.len());
            for chunk in hashes.chunks(MAX_SCRAPE) {
                match endpoint.run(UdpOperation::Scrape(chunk.to_vec())).await? {
                    UdpOutcome::Scrape(counts) => all.extend(chunk.iter().copied().zip(counts)),
                    UdpOutcome::Announce(_) => {
                        return Err(TrackerError::BadResponse("announce answer to a scrape"))
                    }
                }
            }
            Ok(all)
        }
        Scheme::Http | Scheme::Https => {
            let scrape_url = url
                .scrape_url()
                .ok_or_else(|| TrackerError::Refused(format!("{url} has no scrape URL")))?;
            let body = get(&scrape_url, &scrape_path(&scrape_url, hashes), http).await?;
            parse_scrape(&body, hashes)
        }
    }
}
