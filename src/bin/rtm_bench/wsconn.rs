//! One bench WebSocket client: a socket bound to the next 127.0.0.X source address,
//! the handshake with the session cookie and our `Origin`, and the `hello` the server
//! sends first. Also the frame helpers of the hot loops: building a `send` with the
//! shared protocol types, the text every bench message carries (`t=<send time µs>;
//! <sender conn>;<n>`), and a light decoder that reads only the fields a receiver
//! needs (`type`, `seq`, `text`, `code`) from a frame that is one JSON object
//! or an array of them (a batch).

use std::{borrow::Cow, time::Duration};

use anyhow::{Context, Result, bail};
use rtm::ws::protocol::{ClientFrame, ServerFrame, decode_server};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig},
};

use crate::{http, target::Endpoint};

pub type Ws = WebSocketStream<TcpStream>;

/// How long a handshake plus `hello` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the `hello` told us: our rooms with their newest seq.
#[derive(Debug, Clone)]
pub struct Hello {
    pub rooms: Vec<(i64, i64)>,
}

impl Hello {
    /// The newest seq of `room` at connect time.
    pub fn last_seq(&self, room: i64) -> Option<i64> {
        self.rooms.iter().find(|(r, _)| *r == room).map(|(_, s)| *s)
    }
}

/// Small buffers: a bench process holds up to ~20,000 of these sockets. tungstenite
/// zeroes its read buffer's free part before every read, so a larger one costs CPU on
/// every delivery (at 8 KiB that `memset` was the bench's top symbol in `perf`).
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

/// Opens an authenticated WebSocket and reads its `hello`.
pub async fn connect(t: &Endpoint, cookie: &str) -> Result<(Ws, Hello)> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(t, cookie))
        .await
        .context("WebSocket connect + hello timed out")?
}

async fn connect_inner(t: &Endpoint, cookie: &str) -> Result<(Ws, Hello)> {
    let stream = http::connect_tcp(t).await?;
    let mut req = format!("ws://{}/ws", t.addr).into_client_request()?;
    let h = req.headers_mut();
    h.insert("cookie", HeaderValue::from_str(cookie)?);
    h.insert("origin", HeaderValue::from_str(&t.origin)?);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config()))
        .await
        .context("WebSocket handshake")?;
    let hello = loop {
        use futures_util::StreamExt;
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frames = decode_server(text.as_str()).context("bad first frame")?;
                match frames.into_iter().next() {
                    Some(ServerFrame::Hello { rooms, .. }) => {
                        break Hello { rooms: rooms.iter().map(|r| (r.id, r.last_seq)).collect() };
                    }
                    other => bail!("first frame is not hello: {other:?}"),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => bail!("unexpected first message {other:?}"),
            Some(Err(e)) => return Err(e).context("reading hello"),
            None => bail!("closed before hello"),
        }
    };
    Ok((ws, hello))
}

/// A `send` frame (protocol type) as a WebSocket message.
pub fn send_frame(id: u64, room: i64, client_id: String, text: String) -> Message {
    let f = ClientFrame::Send { id: id.to_string(), room, client_id, text, reply_to: None };
    Message::Text(serde_json::to_string(&f).unwrap_or_default().into())
}

/// Any other command frame as a WebSocket message.
pub fn frame(f: &ClientFrame) -> Message {
    Message::Text(serde_json::to_string(f).unwrap_or_default().into())
}

/// The text of a bench message: when it was (meant to be) sent, by whom, which one.
pub fn bench_text(sent_us: u64, sender: usize, n: u64) -> String {
    format!("t={sent_us};{sender};{n}")
}

/// Reads a bench message text back: `(sent µs, sender conn, n)`.
pub fn parse_bench_text(text: &str) -> Option<(u64, usize, u64)> {
    let mut it = text.strip_prefix("t=")?.split(';');
    let t = it.next()?.parse().ok()?;
    let s = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    Some((t, s, n))
}

/// The few fields of a server frame the hot loops look at.
#[derive(Debug, Deserialize)]
pub struct Lite<'a> {
    #[serde(rename = "type", borrow)]
    pub ty: Cow<'a, str>,
    #[serde(default)]
    pub seq: Option<i64>,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    /// Error or closing code.
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(default)]
    pub duplicate: bool,
}

/// Calls `f` for each frame in a server text message (one object or an array).
pub fn for_each_lite<'a>(text: &'a str, mut f: impl FnMut(Lite<'a>)) -> Result<()> {
    if text.trim_start().starts_with('[') {
        let frames: Vec<Lite<'a>> = serde_json::from_str(text)?;
        frames.into_iter().for_each(f);
    } else {
        f(serde_json::from_str(text)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite_reads_single_and_batched_frames() {
        let one = r#"{"type":"message","room":1,"seq":7,"kind":"text","author":{"id":2,"username":"a"},"text":"t=5;1;2","ts":1}"#;
        let mut seen = vec![];
        for_each_lite(one, |l| seen.push((l.ty.to_string(), l.seq))).unwrap();
        assert_eq!(seen, vec![("message".to_string(), Some(7))]);
        let batch = format!(
            r#"[{one},{{"type":"ack","id":"3","room":1,"seq":8,"client_id":"c"}},{{"type":"room_joined","room":{{"id":1}}}}]"#
        );
        let mut n = 0;
        for_each_lite(&batch, |_| n += 1).unwrap();
        assert_eq!(n, 3);
        assert_eq!(parse_bench_text("t=5;1;2"), Some((5, 1, 2)));
        assert_eq!(parse_bench_text("hello"), None);
    }
}
