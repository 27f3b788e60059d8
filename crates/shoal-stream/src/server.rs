//! The HTTP side: a page and a playlist listing the files, and each file with byte
//! ranges, sent as its pieces are verified.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use shoal_core::Bitfield;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::library::{content_type, Library, ServedFile};
use crate::range::{self, Wanted};
use crate::readers::{Reader, Readers};

/// Bytes read from disk and sent at a time (never across a piece's end, so that what is
/// sent is what was verified).
const CHUNK: u64 = 64 * 1024;

struct Shared {
    library: Library,
    readers: Readers,
}

/// Serves `library` on `listener` until the returned future is dropped (a response
/// waiting for a piece that never comes would hold a graceful shutdown forever).
pub async fn serve(listener: TcpListener, library: Library, readers: Readers) -> io::Result<()> {
    let shared = Arc::new(Shared { library, readers });
    let app = Router::new()
        .route("/", get(index))
        .route("/playlist.m3u", get(playlist))
        .route("/{number}", get(file))
        .route("/{number}/{*name}", get(file))
        .layer(axum::middleware::from_fn(only_by_address))
        .with_state(shared);
    axum::serve(listener, app).await
}

/// Refuses a request that names the server by a host name other than `localhost`: a
/// web page cannot then point a name of its own at this address (DNS rebinding) and read
/// what is being downloaded. Players and browsers given the server's address send it as
/// the `Host`. The daemon's API (`shoal daemon`) guards itself the same way.
pub async fn only_by_address(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or(""));
    match host {
        Some(host) if !host_is_address(host) => (
            StatusCode::FORBIDDEN,
            "open this server by its address (or localhost)\n",
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether a `Host` header names an IP address or `localhost`, with or without a port.
fn host_is_address(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [IPv6]:port
        Some(rest) => {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// `text` made safe inside HTML: a torrent's file names are anybody's.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The path a file is served at: its number, then its name (percent-encoded) for the
/// player to show and take the type from.
pub fn link(file: &ServedFile) -> String {
    let mut name = String::new();
    for byte in file.file_name().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                name.push(char::from(byte))
            }
            _ => name.push_str(&format!("%{byte:02X}")),
        }
    }
    format!("/{}/{name}", file.number)
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let library = &shared.library;
    let title = escape_html(&library.title);
    let mut page = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<h1>{title}</h1>\n<ul>\n"
    );
    for file in library.files.iter().filter(|f| f.selected) {
        page.push_str(&format!(
            "<li><a href=\"{}\">{}</a> ({} bytes)</li>\n",
            link(file),
            escape_html(&file.name),
            file.length
        ));
    }
    page.push_str("</ul>\n<p><a href=\"/playlist.m3u\">playlist.m3u</a></p>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// An M3U playlist of the files, for a player to open them all (`vlc URL/playlist.m3u`):
/// absolute links, to the host the client reached us at.
async fn playlist(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ']))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "a playlist needs the request's Host\n",
        )
            .into_response();
    };
    let mut list = String::from("#EXTM3U\n");
    for file in shared.library.files.iter().filter(|f| f.selected) {
        let name = file.name.replace(['\r', '\n'], " ");
        list.push_str(&format!("#EXTINF:-1,{name}\nhttp://{host}{}\n", link(file)));
    }
    (
        [(header::CONTENT_TYPE, "audio/x-mpegurl; charset=utf-8")],
        list,
    )
        .into_response()
}

fn not_found(why: String) -> Response {
    (StatusCode::NOT_FOUND, why + "\n").into_response()
}

async fn file(
    State(shared): State<Arc<Shared>>,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let library = &shared.library;
    let Some(file) = params
        .get("number")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| library.file(n))
    else {
        return not_found(format!(
            "no such file: the torrent's files are numbered 1 to {}",
            library.files.last().map_or(0, |f| f.number)
        ));
    };
    if !file.selected {
        return not_found(format!(
            "file {} is not being downloaded (--select-file)",
            file.number
        ));
    }
    let length = file.length;
    let range_header = headers.get(header::RANGE).and_then(|h| h.to_str().ok());
    let (status, first, last) = match range::parse(range_header, length) {
        Wanted::Whole => (StatusCode::OK, 0, length.checked_sub(1)),
        Wanted::Part(range) => (
            StatusCode::PARTIAL_CONTENT,
            *range.start(),
            Some(*range.end()),
        ),
        Wanted::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{length}"))],
            )
                .into_response();
        }
    };
    let size = last.map_or(0, |last| last - first + 1);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(file.file_name()))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, size);
    if status == StatusCode::PARTIAL_CONTENT {
        if let Some(last) = last {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{length}"),
            );
        }
    }
    let body = match last {
        Some(last) if method != Method::HEAD => {
            let (first_piece, last_piece) = library.pieces(file, first, last);
            let Some(reader) = shared.readers.add(first_piece, last_piece) else {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
                    "too many readers at once\n",
                )
                    .into_response();
            };
            let sending = Sending {
                file: file.clone(),
                piece_length: library.piece_length,
                at: first,
                end: last + 1,
                reader,
                have: shared.readers.have(),
                handle: None,
            };
            Body::from_stream(futures_util::stream::unfold(sending, Sending::next))
        }
        _ => Body::empty(),
    };
    response.body(body).unwrap_or_else(|error| {
        tracing::warn!("cannot build a response: {error}");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

/// One response's body, read as its pieces come.
struct Sending {
    file: ServedFile,
    piece_length: u64,
    /// The next byte to send, and the end, in the file.
    at: u64,
    end: u64,
    reader: Reader,
    have: watch::Receiver<Bitfield>,
    /// The file, once opened (it may not exist before its first piece is here).
    handle: Option<std::fs::File>,
}

impl Sending {
    /// The next chunk: waits for its piece, then reads it from disk. Ends after the last
    /// byte or the first error (the client sees the body cut short).
    async fn next(mut self) -> Option<(io::Result<Bytes>, Sending)> {
        if self.at >= self.end {
            return None;
        }
        let at = self.file.offset + self.at;
        let piece = at / self.piece_length;
        let piece_end = (piece + 1) * self.piece_length - self.file.offset;
        let length = (self.end.min(piece_end).min(self.at + CHUNK) - self.at) as usize;
        self.reader.at(piece as u32);
        let here = self
            .have
            .wait_for(|have| have.get(piece as usize))
            .await
            .is_ok();
        if !here {
            self.end = self.at;
            let error = io::Error::other("the download stopped before this part of the file came");
            return Some((Err(error), self));
        }
        let (path, offset, handle) = (self.file.path.clone(), self.at, self.handle.take());
        let read = tokio::task::spawn_blocking(move || {
            let mut handle = match handle {
                Some(handle) => handle,
                None => std::fs::File::open(&path)?,
            };
            let mut buf = vec![0; length];
            handle.seek(SeekFrom::Start(offset))?;
            handle.read_exact(&mut buf)?;
            Ok::<_, io::Error>((handle, buf))
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
        match read {
            Ok((handle, buf)) => {
                self.handle = Some(handle);
                self.at += length as u64;
                Some((Ok(Bytes::from(buf)), self))
            }
            Err(error) => {
                tracing::warn!("{}: {error}", self.file.path.display());
                self.end = self.at;
                Some((Err(error), self))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_by_address_only() {
        for good in [
            "127.0.0.1:8888",
            "10.0.0.2",
            "[::1]:80",
            "[fe80::1]",
            "localhost:1",
            "LOCALHOST",
        ] {
            assert!(host_is_address(good), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:8888",
            "127.0.0.1.nip.io:80",
            "[::1",
            "",
            "[x]:1",
        ] {
            assert!(!host_is_address(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_escaped_in_pages_and_links() {
        assert_eq!(
            escape_html("<script>\"a\" & 'b'"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;"
        );
        let file = ServedFile {
            number: 3,
            name: "dir/my film?.mp4".into(),
            path: "x".into(),
            offset: 0,
            length: 1,
            selected: true,
        };
        assert_eq!(link(&file), "/3/my%20film%3F.mp4");
    }
}
