//! The outbox's frame coalescing (`ws::outbox`, via `coalesce_for_fuzzing`): a backlog
//! of queued JSON frames (objects, arrays of objects) and raw control frames leaves as
//! WebSocket frames that a client reads back as exactly the queued objects, in order,
//! each once, arrays spliced to one level, control frames in their place; every batch
//! takes at least one item, accounts for every payload byte and stays near
//! `MAX_COALESCE_BYTES`. Arbitrary bytes queued as a frame never panic.
#![no_main]

use std::io;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rtm::ws::outbox::{MAX_COALESCE, MAX_COALESCE_BYTES, coalesce_for_fuzzing};
use serde_json::{Value, json};
use tungstenite::{
    Message,
    protocol::{
        Role, WebSocketContext,
        frame::{
            FrameHeader,
            coding::{Control, OpCode},
        },
    },
};

#[derive(Arbitrary, Debug)]
enum Item {
    /// One object, as `ServerFrame::encode` makes them.
    Object(u32, String),
    /// A queued array (`encode_batch` of protocol.rs), possibly empty.
    Array(Vec<(u32, String)>),
    /// An object large enough to cross `MAX_COALESCE_BYTES` in a few.
    Large(u16, u8),
    /// A control frame from the codec: ping (true) or pong, payload ≤ 125 bytes.
    Control(bool, Vec<u8>),
    /// Anything at all queued as a JSON frame: only "no panic" holds then.
    Junk(Vec<u8>),
}

#[derive(Debug, PartialEq)]
enum Seen {
    Json(Value),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn object(n: u32, s: &str) -> Value {
    json!({ "type": "message", "n": n, "text": s })
}

fn control(ping: bool, payload: &[u8]) -> Bytes {
    let opcode = OpCode::Control(if ping { Control::Ping } else { Control::Pong });
    let head = FrameHeader { opcode, ..FrameHeader::default() };
    let mut wire = Vec::new();
    head.format(payload.len() as u64, &mut wire).expect("a header fits a Vec");
    wire.extend_from_slice(payload);
    Bytes::from(wire)
}

/// Reads every message out of `wire` as a client would.
fn client_reads(wire: &[u8]) -> Vec<Message> {
    struct Cursor<'a>(&'a [u8]);
    impl io::Read for Cursor<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            io::Read::read(&mut self.0, buf)
        }
    }
    impl io::Write for Cursor<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut ctx = WebSocketContext::new(Role::Client, None);
    let mut c = Cursor(wire);
    let mut out = Vec::new();
    while let Ok(m) = ctx.read(&mut c) {
        out.push(m);
    }
    assert!(c.0.is_empty(), "{} bytes left unread", c.0.len());
    out
}

fuzz_target!(|items: Vec<Item>| {
    let mut queued = Vec::with_capacity(items.len());
    let mut expected = Vec::new();
    let mut junk = false;
    let mut largest = 0;
    for item in &items {
        let (raw, bytes) = match item {
            Item::Object(n, s) => {
                let v = object(*n, s);
                let b = Bytes::from(v.to_string());
                expected.push(Seen::Json(v));
                (false, b)
            }
            Item::Array(list) => {
                let vs: Vec<Value> = list.iter().map(|(n, s)| object(*n, s)).collect();
                let b = Bytes::from(Value::Array(vs.clone()).to_string());
                expected.extend(vs.into_iter().map(Seen::Json));
                (false, b)
            }
            Item::Large(len, fill) => {
                let v = object(u32::from(*fill), &char::from(b'a' + fill % 26).to_string().repeat(usize::from(*len)));
                let b = Bytes::from(v.to_string());
                expected.push(Seen::Json(v));
                (false, b)
            }
            Item::Control(ping, payload) => {
                let p = &payload[..payload.len().min(125)];
                expected.push(if *ping { Seen::Ping(p.to_vec()) } else { Seen::Pong(p.to_vec()) });
                (true, control(*ping, p))
            }
            Item::Junk(b) => {
                junk = true;
                (false, Bytes::copy_from_slice(b))
            }
        };
        largest = largest.max(bytes.len());
        queued.push((raw, bytes));
    }
    let total: usize = queued.iter().map(|(_, b)| b.len()).sum();
    let batches = coalesce_for_fuzzing(queued);
    assert!(batches.len() <= items.len(), "every batch takes at least one item");
    assert_eq!(batches.iter().map(|(_, taken)| taken).sum::<usize>(), total, "every payload byte is accounted once");
    if junk {
        return;
    }
    let mut seen = Vec::new();
    for (wire, _) in &batches {
        // Near the cap: one item past it at most, plus framing (a header, brackets and
        // commas per JSON run).
        assert!(wire.len() <= MAX_COALESCE_BYTES + largest + 16 * MAX_COALESCE, "batch of {} bytes", wire.len());
        for m in client_reads(wire) {
            match m {
                Message::Text(t) => match serde_json::from_str::<Value>(t.as_str()).expect("a batch is JSON") {
                    Value::Array(vs) => {
                        assert!(!vs.is_empty(), "an empty array is never sent");
                        for v in vs {
                            assert!(v.is_object(), "arrays are spliced to one level: {v}");
                            seen.push(Seen::Json(v));
                        }
                    }
                    other => panic!("a batch is one JSON array, got {other}"),
                },
                Message::Ping(p) => seen.push(Seen::Ping(p.to_vec())),
                Message::Pong(p) => seen.push(Seen::Pong(p.to_vec())),
                other => panic!("unexpected message {other:?}"),
            }
        }
    }
    assert_eq!(seen, expected);
});
