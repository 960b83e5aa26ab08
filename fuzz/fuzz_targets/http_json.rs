//! The HTTP JSON bodies: the request types the API deserializes, read as the `Body`
//! extractor reads them (`axum::Json::from_bytes`, after the content-type check), then
//! put through the validation the chat layer applies to them. Nothing panics, and
//! what validation accepts keeps its invariants (no control or invisible characters
//! in names, emails, room names or topics; lengths within the documented bounds).
#![no_main]

use axum::Json;
use libfuzzer_sys::fuzz_target;
use rtm::{
    chat::{CreateRoom, NewAccount, ProfileUpdate, RoomUpdate},
    domain::{Email, Password, PersonName, RoomName, Topic, Username, names::has_hidden_chars, skeleton_key},
};

fn no_controls(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn person(s: &str) {
    if let Ok(n) = PersonName::parse(s, "first name") {
        let n = n.as_str();
        assert!(no_controls(n) && !has_hidden_chars(n) && (1..=64).contains(&n.chars().count()), "{n:?}");
    }
}

fn email(s: &str) {
    if let Ok(e) = Email::parse(s) {
        let e = e.as_str();
        assert!(e.len() <= 254 && no_controls(e) && e.matches('@').count() == 1, "{e:?}");
    }
}

fn username(s: &str) {
    if let Ok(u) = Username::parse(s) {
        assert!((3..=32).contains(&u.as_str().len()) && u.as_str().is_ascii(), "{u:?}");
        let _ = skeleton_key(u.as_str());
    }
}

fn topic(s: &str) {
    if let Ok(t) = Topic::parse(s) {
        let t = t.as_str();
        assert!(t.chars().count() <= 250 && !has_hidden_chars(t), "{t:?}");
        assert!(t.chars().all(|c| !c.is_control() || c == '\n'), "{t:?}");
    }
}

fuzz_target!(|input: (u8, &[u8])| {
    let (which, body) = input;
    match which % 4 {
        0 => {
            if let Ok(Json(a)) = Json::<NewAccount>::from_bytes(body) {
                person(&a.first_name);
                person(&a.last_name);
                email(&a.email);
                username(&a.username);
                if let Ok(p) = Password::parse(&a.password) {
                    assert!((8..=1024).contains(&p.expose().chars().count()));
                }
            }
        }
        1 => {
            if let Ok(Json(u)) = Json::<ProfileUpdate>::from_bytes(body) {
                u.first_name.as_deref().map(person);
                u.last_name.as_deref().map(person);
                u.email.as_deref().map(email);
                u.username.as_deref().map(username);
            }
        }
        2 => {
            if let Ok(Json(c)) = Json::<CreateRoom>::from_bytes(body) {
                if let Ok(n) = RoomName::parse(&c.name) {
                    let n = n.as_str();
                    assert!((2..=40).contains(&n.chars().count()) && !n.contains("  ") && !has_hidden_chars(n));
                    let _ = skeleton_key(n);
                }
                topic(&c.topic);
                if let Some(r) = c.retention {
                    let _ = r.validate();
                }
            }
        }
        _ => {
            if let Ok(Json(u)) = Json::<RoomUpdate>::from_bytes(body) {
                u.topic.as_deref().map(topic);
                if let Some(r) = u.retention {
                    let _ = r.validate();
                }
            }
        }
    }
});
