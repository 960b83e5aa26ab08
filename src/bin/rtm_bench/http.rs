//! A deliberately tiny HTTP/1.1 client for the few JSON calls a benchmark makes while
//! setting up (sign-up, rooms, joins, DMs): one request per connection
//! (`Connection: close`), read to the end, with a timeout. Each request binds its
//! socket to the next loopback source address, like the WebSocket clients, so the
//! server's per-address sign-up limit and the ephemeral ports are spread out.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::{sys, target::Endpoint};

/// How long one setup request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body we accept.
const MAX_RESPONSE: usize = 4 << 20;

/// A response: status, `Set-Cookie` pairs (`name=value`) and the body.
pub struct Response {
    pub status: u16,
    pub cookies: Vec<String>,
    pub body: String,
}

impl Response {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Opens a TCP connection to the server from the next loopback source address.
pub async fn connect_tcp(t: &Endpoint) -> Result<TcpStream> {
    let sock = TcpSocket::new_v4().context("socket")?;
    let src = sys::next_source_ip();
    sock.bind((src, 0).into()).with_context(|| format!("cannot bind {src}:0"))?;
    let stream = sock.connect(t.addr).await.with_context(|| format!("cannot connect {src} -> {}", t.addr))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends one request with our `Origin` (and the session cookie, if given).
pub async fn request(
    t: &Endpoint,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Result<Response> {
    tokio::time::timeout(TIMEOUT, request_inner(t, method, path, cookie, body))
        .await
        .with_context(|| format!("{method} {path}: no answer within {TIMEOUT:?}"))?
}

async fn request_inner(
    t: &Endpoint,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Result<Response> {
    let host = t.origin.trim_start_matches("http://");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {}\r\nAccept: application/json\r\nConnection: close\r\n",
        t.origin
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()));
    } else {
        req.push_str("\r\n");
    }
    let mut stream = connect_tcp(t).await?;
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            bail!("{method} {path}: response larger than {MAX_RESPONSE} bytes");
        }
    }
    parse(&buf).with_context(|| format!("{method} {path}: malformed response"))
}

/// Parses a whole HTTP/1.1 response (plain or chunked body).
fn parse(buf: &[u8]) -> Result<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = std::str::from_utf8(&buf[..end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).context("no status")?;
    let mut cookies = Vec::new();
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("set-cookie") {
            if let Some(pair) = v.split(';').next() {
                cookies.push(pair.trim().to_string());
            }
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
            chunked = true;
        }
    }
    let raw = &buf[end + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok(Response { status, cookies, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").context("bad chunk header")?;
        let size_text = std::str::from_utf8(&raw[..eol])?;
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).context("bad chunk size")?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r = parse(b"HTTP/1.1 201 Created\r\nset-cookie: rtm_session=abc; Path=/\r\ncontent-length: 2\r\n\r\n{}")
            .unwrap();
        assert_eq!((r.status, r.cookies[0].as_str(), r.body.as_str()), (201, "rtm_session=abc", "{}"));
        let r =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, "abcde");
    }
}
