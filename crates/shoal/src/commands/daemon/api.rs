//! The daemon's HTTP API, JSON both ways, for `shoal remote`, the web page it serves at
//! `/` (`ui/`: plain HTML and a script on the same API, asking for the token) and
//! scripts:
//!
//! | request | does |
//! |---|---|
//! | `GET /api/session` | the listen address, the number of torrents and connections, the rate limits, the DHT's size |
//! | `POST /api/session` | `{"max_up": BYTES_PER_SEC, "max_down": …}` (0: no limit), `{"seed_ratio": RATIO, "seed_time": MINUTES}` (or `"none"`), any of them, until a restart |
//! | `GET /api/torrents` | every torrent with its status |
//! | `POST /api/torrents` | adds `{"torrent": HEX}` (a .torrent's bytes) or `{"magnet": LINK}`, with `"dir"`, `"paused"`, `"files"` and `"sequential"` optional |
//! | `GET /api/torrents/ID` | one torrent (ID: its info-hash, or a unique beginning of it), with its peers and files |
//! | `POST /api/torrents/ID/set` | `{"files": "1,3-5"}` (or `"all"`), `{"sequential": true}`, `{"seed_ratio": RATIO, "seed_time": MINUTES}` (or `"none"`, or `"session"` for the session's), `{"max_up": BYTES_PER_SEC, "max_down": …}` (its own, within the session's; 0: none), any of them |
//! | `POST /api/torrents/ID/move` | `{"dir": "/abs/folder"}`: its files move there, and it downloads there from now on |
//! | `POST /api/torrents/ID/pause`, `/resume` | stops it, starts it again |
//! | `POST /api/torrents/ID/reannounce` | asks its trackers for peers now (as their `min interval` allows) |
//! | `POST /api/torrents/ID/verify` | hashes its data again, whatever its resume state says (a paused torrent stays paused) |
//! | `POST /api/torrents/ID/remove` | takes it out; `{"delete_data": true}` deletes its files too |
//!
//! A web page the user visits must not be able to drive it: requests that change
//! anything must say `Content-Type: application/json` (which a page can only send to
//! another origin after a CORS preflight, never answered here), and a request naming
//! the server by a host name other than `localhost` is refused (DNS rebinding). Every
//! request needs `Authorization: Bearer TOKEN`, the daemon's `--token` or the one it
//! keeps in its state folder.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{Magnet, Metainfo, MAX_TORRENT_SIZE};

use super::files::Fetch;
use super::seeding::Limit;
use super::session::{Adding, Change, Session, SessionError};

struct Api {
    session: Arc<Session>,
    token: String,
}

/// The API's routes over `session`, for requests that carry `token`.
pub fn router(session: Arc<Session>, token: String) -> Router {
    let api = Arc::new(Api { session, token });
    // The page asks for the token itself, and sends it with each API request.
    let page = Router::new()
        .route("/", get(|| page_file("text/html; charset=utf-8", PAGE)))
        .route(
            "/ui.js",
            get(|| page_file("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/ui.css",
            get(|| page_file("text/css; charset=utf-8", STYLE)),
        );
    Router::new()
        .route("/api/session", get(session_info).post(set_limits))
        .route("/api/torrents", get(list).post(add))
        .route("/api/torrents/{id}", get(show))
        .route("/api/torrents/{id}/set", post(set))
        .route("/api/torrents/{id}/move", post(move_data))
        .route("/api/torrents/{id}/pause", post(pause))
        .route("/api/torrents/{id}/resume", post(resume))
        .route("/api/torrents/{id}/verify", post(verify))
        .route("/api/torrents/{id}/reannounce", post(reannounce))
        .route("/api/torrents/{id}/remove", post(remove))
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .merge(page)
        .layer(axum::middleware::from_fn(shoal_stream::only_by_address))
        // A .torrent in hex, and the rest of the request.
        .layer(axum::extract::DefaultBodyLimit::max(
            2 * MAX_TORRENT_SIZE + 64 * 1024,
        ))
        .with_state(api)
}

/// The web page (`GET /`): the API's client in a browser.
const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/ui.js");
const STYLE: &str = include_str!("ui/ui.css");

/// One of the page's files, with headers that keep it to itself: scripts and styles
/// from this server only (no inline ones, so text from a torrent that slipped into the
/// page as markup could run nothing), never framed by another site (clickjacking),
/// types as given, no referrer sent on.
async fn page_file(content_type: &'static str, body: &'static str) -> Response {
    let policy = "default-src 'none'; script-src 'self'; style-src 'self'; \
                  connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
                  base-uri 'none'";
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The token, and JSON for anything that changes the session (see the module's text).
async fn guard(
    State(api): State<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    if !given.is_some_and(|given| same_secret(given.as_bytes(), api.token.as_bytes())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "the daemon's token is needed (`shoal remote` reads it from the daemon's state folder; or --token)",
        );
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.starts_with("application/json"));
    if request.method() != Method::GET && request.method() != Method::HEAD && !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json",
        );
    }
    next.run(request).await
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The answer to a request that changes something and returns nothing.
fn done(result: Result<(), SessionError>) -> Response {
    match result {
        Ok(()) => answer(json!({})),
        Err(e) => e.into_response(),
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    reply(status, json!({"error": message.to_string()}))
}

fn answer(value: Value) -> Response {
    reply(StatusCode::OK, value)
}

fn reply(status: StatusCode, value: Value) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    (status, json, format!("{value}\n")).into_response()
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = match &self {
            SessionError::Unknown(_) => StatusCode::NOT_FOUND,
            SessionError::Duplicate(_) | SessionError::Busy(_) => StatusCode::CONFLICT,
            SessionError::Invalid(_) => StatusCode::BAD_REQUEST,
            SessionError::Full => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, format!("{self:#}"))
    }
}

async fn session_info(State(api): State<Arc<Api>>) -> Response {
    let net = api.session.net();
    let mut dht = serde_json::Map::new();
    for (family, node) in net.dht.nodes() {
        if let Some(stats) = node.stats().await {
            dht.insert(family.name().to_string(), json!({"nodes": stats.nodes}));
        }
    }
    answer(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listen": net.listen.to_string(),
        "torrents": api.session.count(),
        "connections": {
            "open": api.session.connections().open(),
            "limit": api.session.connections().limit(),
        },
        "max_up": api.session.limits().0,
        "max_down": api.session.limits().1,
        "seed_ratio": api.session.seed_limit().0,
        "seed_time": api.session.seed_limit().1,
        "dht": dht,
    }))
}

/// What `POST /api/session` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_up: Option<u64>,
    max_down: Option<u64>,
    seed_ratio: Option<Limit>,
    /// Minutes.
    seed_time: Option<Limit>,
}

async fn set_limits(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Limits>(&body) {
        Ok(limits) => {
            if let Err(e) = api
                .session
                .set_seed_limit(limits.seed_ratio, limits.seed_time)
            {
                return e.into_response();
            }
            api.session.set_limits(limits.max_up, limits.max_down);
            session_info(State(api)).await
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("not a change of limits: {e}"),
        ),
    }
}

async fn list(State(api): State<Arc<Api>>) -> Response {
    answer(json!({"torrents": api.session.list()}))
}

async fn show(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api.session.show(&id) {
        Ok(torrent) => answer(torrent),
        Err(e) => e.into_response(),
    }
}

/// What `POST /api/torrents` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Add {
    /// A .torrent's bytes, in hex.
    torrent: Option<String>,
    magnet: Option<String>,
    dir: Option<std::path::PathBuf>,
    #[serde(default)]
    paused: bool,
    /// The files to fetch, numbered from 1 (`1,3-5`), or `all`.
    files: Option<String>,
    #[serde(default)]
    sequential: bool,
}

async fn add(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let add: Add = match serde_json::from_slice(&body) {
        Ok(add) => add,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not a request to add: {e}"),
            )
        }
    };
    let fetch = match Fetch::new(add.files.as_deref(), add.sequential) {
        Ok(fetch) => fetch,
        Err(e) => return e.into_response(),
    };
    let how = Adding {
        dir: add.dir,
        paused: add.paused,
        fetch,
        chosen: add.files.is_some(),
    };
    let added = match (add.torrent, add.magnet) {
        (Some(hex), None) => {
            let Some(bytes) = shoal_core::hex::decode(&hex) else {
                return error(StatusCode::BAD_REQUEST, "\"torrent\" is not hex");
            };
            match Metainfo::from_bytes(&bytes) {
                Ok(metainfo) => api.session.add(metainfo, how),
                Err(e) => {
                    return error(StatusCode::BAD_REQUEST, format!("not a valid torrent: {e}"))
                }
            }
        }
        (None, Some(link)) => match link.parse::<Magnet>() {
            Ok(magnet) => api.session.add_magnet(magnet, how),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a magnet link: {e}")),
        },
        _ => return error(StatusCode::BAD_REQUEST, "give \"torrent\" or \"magnet\""),
    };
    match added {
        Ok(hash) => reply(StatusCode::CREATED, json!({"info_hash": hash.to_hex()})),
        Err(e) => e.into_response(),
    }
}

async fn set(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    let change: Change = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a change: {e}")),
    };
    done(api.session.set(&id, change).await)
}

/// What `POST /api/torrents/ID/move` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    dir: std::path::PathBuf,
}

async fn move_data(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(to) = serde_json::from_slice::<Move>(&body) else {
        return error(StatusCode::BAD_REQUEST, "give {\"dir\": FOLDER}");
    };
    done(api.session.move_data(&id, to.dir).await)
}

async fn pause(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    done(api.session.pause(&id).await)
}

async fn resume(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    done(api.session.resume(&id))
}

async fn reannounce(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    done(api.session.reannounce(&id))
}

async fn verify(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    done(api.session.verify(&id).await)
}

/// What `POST /api/torrents/ID/remove` takes (an empty body: keep the files).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Remove {
    #[serde(default)]
    delete_data: bool,
}

async fn remove(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    let remove: Remove = match body.is_empty() {
        true => Remove::default(),
        false => match serde_json::from_slice(&body) {
            Ok(remove) => remove,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("not a request to remove: {e}"),
                )
            }
        },
    };
    done(api.session.remove(&id, remove.delete_data).await)
}
