//! Name, email and text validation (`domain`): for any string, every validator
//! answers without panicking; what it accepts is trimmed, within its bounds, free of
//! control and invisible characters (NUL included: PostgreSQL refuses it), and
//! accepted again unchanged (validation is idempotent, so a stored value always
//! passes the rules it was stored under).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtm::domain::{
    Email, Password, PersonName, RoomName, Topic, Username, names::has_hidden_chars, plausible_login, skeleton_key,
    validate_client_id, validate_query, validate_text,
};

fn controls(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn trimmed(s: &str) -> bool {
    s.trim() == s
}

fuzz_target!(|input: (u8, u16, &str)| {
    let (which, max, s) = input;
    match which % 10 {
        0 => {
            if let Ok(u) = Username::parse(s) {
                let v = u.as_str();
                assert!((3..=32).contains(&v.len()) && trimmed(v), "{v:?}");
                assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)), "{v:?}");
                assert_eq!(Username::parse(v).as_ref(), Ok(&u));
                assert_eq!(u.folded(), v.to_ascii_lowercase());
                let _ = skeleton_key(v);
            }
        }
        1 => {
            if let Ok(e) = Email::parse(s) {
                let v = e.as_str();
                assert!(v.len() <= 254 && trimmed(v) && !controls(v) && !has_hidden_chars(v), "{v:?}");
                let (local, domain) = v.split_once('@').expect("an accepted email has an @");
                assert!(!local.is_empty() && !domain.is_empty() && !domain.contains('@'), "{v:?}");
                assert_eq!(Email::parse(v).as_ref(), Ok(&e));
            }
        }
        2 => {
            if let Ok(n) = PersonName::parse(s, "first name") {
                let v = n.as_str();
                assert!((1..=64).contains(&v.chars().count()) && trimmed(v), "{v:?}");
                assert!(!controls(v) && !has_hidden_chars(v), "{v:?}");
                assert_eq!(PersonName::parse(v, "first name").as_ref(), Ok(&n));
            }
        }
        3 => {
            if let Ok(n) = RoomName::parse(s) {
                let v = n.as_str();
                assert!((2..=40).contains(&v.chars().count()) && trimmed(v) && !v.contains("  "), "{v:?}");
                assert!(!controls(v) && !has_hidden_chars(v), "{v:?}");
                assert_eq!(RoomName::parse(v).as_ref(), Ok(&n));
                let _ = skeleton_key(v);
            }
        }
        4 => {
            if let Ok(t) = Topic::parse(s) {
                let v = t.as_str();
                assert!(v.chars().count() <= 250 && trimmed(v) && !has_hidden_chars(v), "{v:?}");
                assert!(v.chars().all(|c| !c.is_control() || c == '\n'), "{v:?}");
                assert_eq!(Topic::parse(v).as_ref(), Ok(&t));
            }
        }
        5 => {
            if let Ok(p) = Password::parse(s) {
                // Never trimmed or truncated: the password is exactly what was typed.
                assert_eq!(p.expose(), s);
                // Nor ever printed.
                assert_eq!(format!("{p:?}"), "Password(<redacted>)");
            }
        }
        6 => {
            let max = usize::from(max);
            if validate_text(s, max).is_ok() {
                assert!(!s.trim().is_empty() && s.chars().count() <= max);
                assert!(s.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r')), "{s:?}");
            }
        }
        7 => {
            if validate_query(s).is_ok() {
                assert!(s.chars().count() <= 100 && !controls(s), "{s:?}");
            }
        }
        8 => {
            if validate_client_id(s).is_ok() {
                assert!((1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()), "{s:?}");
            }
        }
        _ => {
            if plausible_login(s) {
                assert!(!s.contains('\0') && s.len() <= 320, "{s:?}");
            }
        }
    }
});
