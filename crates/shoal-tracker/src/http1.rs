//! Just enough HTTP/1.1 for trackers, sans-IO: the head of a response (client) or a
//! request (server), and chunked bodies. Trackers speak `GET` with a query string and
//! answer a small body, so this is a few functions rather than a dependency; owning them
//! is what lets every size be capped and every redirect be inspected before it is followed.

/// A head larger than this is refused (real ones are a few hundred bytes).
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("HTTP head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed HTTP message")]
    Malformed,
    #[error("malformed chunked body")]
    BadChunk,
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}

/// A parsed head: the first line's parts and the headers (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Response: status code. Request: unused (0).
    pub status: u16,
    /// Request: method and target. Response: empty.
    pub method: String,
    pub target: String,
    /// HTTP/1.0 rather than 1.1 (whose connections stay open unless one side says not).
    pub http10: bool,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How the body is delimited.
    pub fn framing(&self) -> Result<Framing, HttpError> {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(Framing::Chunked);
        }
        match self.header("content-length") {
            Some(v) => v
                .trim()
                .parse()
                .map(Framing::Length)
                .map_err(|_| HttpError::Malformed),
            None => Ok(Framing::UntilClose),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Finds the end of the head in `buf`: `Ok(None)` means read more.
fn head_end(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Ok(Some(i + 4)),
        None if buf.len() > MAX_HEAD => Err(HttpError::HeadTooLarge),
        None => Ok(None),
    }
}

fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, HttpError> {
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed)?;
        if headers.len() < MAX_HEADERS {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Ok(headers)
}

/// Parses a response head from the start of `buf`; returns it and its length.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let Some(end) = head_end(buf)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(HttpError::Malformed)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed);
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Malformed)?;
    Ok(Some((
        Head {
            status,
            method: String::new(),
            target: String::new(),
            http10: version == "HTTP/1.0",
            headers: parse_headers(lines)?,
        },
        end,
    )))
}

/// Parses a request head from the start of `buf`.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let Some(end) = head_end(buf)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().ok_or(HttpError::Malformed)?.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(HttpError::Malformed);
    }
    Ok(Some((
        Head {
            status: 0,
            method: method.to_owned(),
            target: target.to_owned(),
            http10: version == "HTTP/1.0",
            headers: parse_headers(lines)?,
        },
        end,
    )))
}

/// Decodes a complete chunked body (as read until the connection closed or the final
/// chunk arrived). `Ok(None)`: incomplete, read more.
pub fn decode_chunked(mut buf: &[u8], max: usize) -> Result<Option<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() > 64 {
                Err(HttpError::BadChunk)
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&buf[..line_end]).map_err(|_| HttpError::BadChunk)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        if size_text.is_empty() || size_text.len() > 8 {
            return Err(HttpError::BadChunk);
        }
        let size = usize::from_str_radix(size_text, 16).map_err(|_| HttpError::BadChunk)?;
        if size == 0 {
            return Ok(Some(body));
        }
        if body.len() + size > max {
            return Err(HttpError::TooLarge(max));
        }
        let data_start = line_end + 2;
        if buf.len() < data_start + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[data_start..data_start + size]);
        if &buf[data_start + size..data_start + size + 2] != b"\r\n" {
            return Err(HttpError::BadChunk);
        }
        buf = &buf[data_start + size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn response_heads() {
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Len"),
            Ok(None)
        );
        let (head, len) = parse_response_head(
            b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.status, 302);
        assert_eq!(head.header("location"), Some("/x"));
        assert_eq!(head.framing(), Ok(Framing::Length(5)));
        assert_eq!(len, 55);
        assert!(parse_response_head(b"SSH-2.0\r\n\r\n").is_err());
        assert_eq!(
            parse_response_head(&[b'a'; MAX_HEAD + 1]),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn request_heads() {
        let (head, _) = parse_request_head(
            b"GET /announce?a=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("GET", "/announce?a=1")
        );
        assert_eq!(head.header("x-forwarded-for"), Some("1.2.3.4"));
        assert!(parse_request_head(b"GET http://evil/ HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            decode_chunked(b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n", 100),
            Ok(Some(b"helloabc".to_vec()))
        );
        assert_eq!(decode_chunked(b"5\r\nhel", 100), Ok(None));
        assert_eq!(decode_chunked(b"5\r\nhello\r\n", 100), Ok(None));
        assert_eq!(
            decode_chunked(b"ffffffff\r\n", 100),
            Err(HttpError::TooLarge(100))
        );
        assert_eq!(
            decode_chunked(b"fffffffff\r\n", 100),
            Err(HttpError::BadChunk)
        );
        assert_eq!(decode_chunked(b"zz\r\n", 100), Err(HttpError::BadChunk));
        assert_eq!(decode_chunked(b"2\r\nabcd", 100), Err(HttpError::BadChunk));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_response_head(&buf);
            let _ = parse_request_head(&buf);
            let _ = decode_chunked(&buf, 1000);
        }
    }
}
