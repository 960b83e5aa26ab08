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
    let f = ClientFrame::Send { id: id.to_string(), room, client_id, text, reply_to: None, attachments: vec![] };
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

/// [`bench_text`] followed by `;` and `pad` filler bytes.
pub fn bench_text_padded(sent_us: u64, sender: usize, n: u64, pad: usize) -> String {
    let mut t = bench_text(sent_us, sender, n);
    if pad > 0 {
        t.push(';');
        t.extend(std::iter::repeat_n('x', pad));
    }
    t
}

/// Everyday words for [`bench_text_sized`]: a message's words change with its number,
/// so a search index sees text like people's, not one repeated token.
const WORDS: [&str; 32] = [
    "the", "meeting", "moved", "to", "three", "tomorrow", "can", "you", "check", "build", "again", "after", "lunch",
    "thanks", "deploy", "looks", "good", "review", "please", "release", "notes", "are", "ready", "ship", "it",
    "friday", "coffee", "later", "tests", "pass", "on", "main",
];

/// [`bench_text`] followed by `;` and words until the text has `bytes` bytes (no
/// filler when it is that long already).
pub fn bench_text_sized(sent_us: u64, sender: usize, n: u64, bytes: usize) -> String {
    let mut t = bench_text(sent_us, sender, n);
    if t.len() + 1 < bytes {
        t.push(';');
        let mut k = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sender as u64;
        while t.len() < bytes {
            t.push_str(WORDS[(k % WORDS.len() as u64) as usize]);
            t.push(' ');
            k = k.rotate_left(5).wrapping_add(n);
        }
        t.truncate(bytes);
    }
    t
}

/// Reads a bench message text back: `(sent µs, sender conn, n)` (filler ignored).
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

/// The frames the hot loops read with [`Lite`] alone; anything else is rare and is
/// decoded in full with the protocol's own types.
const HOT: [&str; 3] = ["message", "ack", "pong"];

/// Calls `f` for each frame in a server text message (one object or an array), after
/// checking the whole message: a bench must not skip what it does not understand, or
/// a server bug could hide from it. An error, and `f` is not called, when the text is
/// not JSON, is an empty array, or holds an object that is not a server frame of the
/// protocol (`rtm::ws::protocol::ServerFrame`: an unknown `type`, a missing field), or a
/// `message` without a seq and a text, or an `ack` without a seq.
pub fn for_each_lite<'a>(text: &'a str, f: impl FnMut(Lite<'a>)) -> Result<()> {
    let frames: Vec<Lite<'a>> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)?
    } else {
        vec![serde_json::from_str(text)?]
    };
    if frames.is_empty() {
        bail!("an empty array");
    }
    for l in &frames {
        match l.ty.as_ref() {
            "message" if l.seq.is_none() || l.text.is_none() => bail!("a message without seq or text: {text:.200}"),
            "ack" if l.seq.is_none() && !l.duplicate => bail!("an ack without a seq: {text:.200}"),
            _ => {}
        }
    }
    if frames.iter().any(|l| !HOT.contains(&l.ty.as_ref())) {
        decode_server(text).with_context(|| format!("not a server frame of the protocol: {text:.200}"))?;
    }
    frames.into_iter().for_each(f);
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
            r#"[{one},{{"type":"ack","id":"3","room":1,"seq":8,"client_id":"c"}},{{"type":"room_left","room":1}}]"#
        );
        let mut n = 0;
        for_each_lite(&batch, |_| n += 1).unwrap();
        assert_eq!(n, 3);
        assert_eq!(parse_bench_text("t=5;1;2"), Some((5, 1, 2)));
        let sized = bench_text_sized(5, 1, 2, 100);
        assert_eq!(sized.len(), 100);
        assert!(sized.contains(' '), "words, not one token: {sized}");
        assert_eq!(parse_bench_text(&sized), Some((5, 1, 2)));
        assert_eq!(bench_text_sized(5, 1, 2, 0), "t=5;1;2");
        assert_eq!(parse_bench_text("hello"), None);
    }

    /// What a server bug could send: each is an error, and nothing of it is counted.
    #[test]
    fn malformed_or_unexpected_frames_are_rejected_not_skipped() {
        let msg = r#"{"type":"message","room":1,"seq":7,"kind":"text","author":{"id":2,"username":"a"},"text":"t=5;1;2","ts":1}"#;
        for bad in [
            "",
            "not json",
            r#"{"seq":1}"#,
            "[]",
            "[1,2]",
            r#"{"type":"messgae","room":1,"seq":7}"#,
            r#"{"type":"dance"}"#,
            // Known types with a required field missing or of the wrong type.
            r#"{"type":"presence","room":1}"#,
            r#"{"type":"presence_change","room":1,"user":"x","online":true}"#,
            r#"{"type":"closing","reason":"no code"}"#,
            r#"{"type":"message","room":1,"kind":"text","author":{"id":2,"username":"a"},"text":"t=5;1;2","ts":1}"#,
            r#"{"type":"message","room":1,"seq":7,"kind":"text","author":{"id":2,"username":"a"},"ts":1}"#,
            r#"{"type":"ack","id":"3","room":1}"#,
            // One bad object spoils the array: the good one before it is not counted.
            &format!(r#"[{msg},{{"type":"dance"}}]"#),
        ] {
            let mut seen = 0;
            assert!(for_each_lite(bad, |_| seen += 1).is_err(), "accepted: {bad}");
            assert_eq!(seen, 0, "counted part of: {bad}");
        }
        // The same shapes, well formed, pass (the rare ones through the full decoder).
        for good in [
            msg.to_string(),
            r#"{"type":"presence","room":1,"online":[1,2]}"#.to_string(),
            r#"[{"type":"presence_change","room":1,"user":3,"online":true},{"type":"pong","id":"p"}]"#.to_string(),
            r#"{"type":"ack","id":"3","room":1,"seq":8,"client_id":"c"}"#.to_string(),
        ] {
            assert!(for_each_lite(&good, |_| {}).is_ok(), "rejected: {good}");
        }
    }
}
