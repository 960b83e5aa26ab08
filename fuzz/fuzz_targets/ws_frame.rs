//! The client frame decoder (`ws::protocol::decode_client`): whatever text a client
//! sends, decoding answers with a command or a coded error and never panics; an
//! accepted command has a request id of 1 to 64 bytes and survives a round trip; an
//! error's recovered id is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtm::ws::protocol::{MAX_REQUEST_ID, decode_client};

fuzz_target!(|data: &[u8]| {
    // The session hands the decoder text messages only, and the codec has refused
    // invalid UTF-8 (close 1007) before: other bytes cannot reach it.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match decode_client(text) {
        Ok(frame) => {
            if let Some(id) = frame.request_id() {
                assert!(!id.is_empty() && id.len() <= MAX_REQUEST_ID, "request id {id:?}");
            }
            let again = serde_json::to_string(&frame).expect("a decoded command serializes");
            assert_eq!(decode_client(&again), Ok(frame), "round trip through {again}");
        }
        Err(e) => {
            assert!(matches!(e.code, "bad_json" | "bad_request" | "unknown_command"), "code {}", e.code);
            assert!(e.id.is_none_or(|id| id.chars().count() <= MAX_REQUEST_ID));
            assert!(!e.message.is_empty());
        }
    }
});
