//! Validated value types for what people type: emails, usernames, person names, room
//! names, topics and passwords. Each constructor states its rule in the error so the
//! client can show it as is; the error code is stable and machine-readable.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// A broken input rule: a stable `code` for programs and a `message` for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    pub code: &'static str,
    pub message: String,
}

impl DomainError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        DomainError { code, message: message.into() }
    }
}

/// How names and topics are compared when people search for them (`LIKE` on a
/// column folded with this, against a pattern folded with it): composed (NFC, as
/// they are stored) and lower case by Unicode's rules, as SQLite's `lower()` (ASCII
/// only) and PostgreSQL's (its database's locale) are not.
pub fn search_fold(s: &str) -> String {
    composed(s).to_lowercase()
}

/// The folded full name a person is found by: first and last name, as shown.
pub fn person_fold(first_name: &str, last_name: &str) -> String {
    search_fold(&format!("{first_name} {last_name}"))
}

/// Characters that change how text around them is shown without being seen: bidi
/// controls (which can make `alice\u{202E}ecila` read as another name), zero-width
/// characters, and the invisible "fillers" of Hangul and other scripts that pass for
/// letters. None of them belongs in a name, an email, a room name or a topic.
fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                    // soft hyphen
        | '\u{034F}'                  // combining grapheme joiner
        | '\u{061C}'                  // Arabic letter mark
        | '\u{115F}' | '\u{1160}'     // Hangul choseong/jungseong fillers
        | '\u{17B4}' | '\u{17B5}'     // Khmer inherent vowels
        | '\u{180E}'                  // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}'     // zero-width space/non-joiner/joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}'     // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}'     // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}'     // bidi isolates
        | '\u{206A}'..='\u{206F}'     // deprecated format characters
        | '\u{2800}'                  // braille blank
        | '\u{3164}'                  // Hangul filler
        | '\u{FEFF}'                  // zero-width no-break space
        | '\u{FFA0}'                  // halfwidth Hangul filler
        | '\u{FFF9}'..='\u{FFFB}'     // interlinear annotation
        | '\u{1D173}'..='\u{1D17A}'   // musical symbol format characters
        | '\u{E0000}'..='\u{E007F}'   // tags
    )
}

/// Whether `s` holds a hidden character (see [`is_hidden`]). A zero-width joiner
/// between two pictographs is allowed: it builds emoji such as 👩‍💻 that people put in
/// their names.
pub fn has_hidden_chars(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        if c == '\u{200D}' {
            let pictograph = |x: Option<&char>| x.is_some_and(|&x| x >= '\u{2190}' && !is_hidden(x));
            return !(i > 0 && pictograph(chars.get(i - 1)) && pictograph(chars.get(i + 1)));
        }
        is_hidden(c)
    })
}

/// The key under which two names count as look-alikes: the Unicode TR39 skeleton
/// (`aIice` and `alice` share one, as do `Town Square` and `Tоwn Square` with a
/// Cyrillic о), lowercased, since names are unique ignoring case anyway.
pub fn skeleton_key(name: &str) -> String {
    unicode_security::skeleton(name).collect::<String>().to_lowercase()
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);
        impl $name {
            pub fn as_str(&self) -> &str { &self.0 }
            pub fn into_inner(self) -> String { self.0 }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { fmt::Debug::fmt(&self.0, f) }
        }
    };
}

string_newtype!(
    /// An email address: trimmed, one `@` with text on both sides, no spaces, ≤ 254 bytes.
    /// Compared ignoring case (see [`Email::folded`]).
    Email
);
string_newtype!(
    /// The handle shown in chat: 3 to 32 characters, ASCII letters, digits, `_`, `-`, `.`,
    /// starting with a letter or digit. Unique ignoring case.
    Username
);
string_newtype!(
    /// A first or last name: 1 to 64 characters after trimming, no control characters.
    PersonName
);
string_newtype!(
    /// A room name: 2 to 40 characters, letters, digits, `_`, `-`, `.` and spaces inside.
    /// Unique ignoring case.
    RoomName
);
string_newtype!(
    /// A room topic: at most 250 characters, no control characters but newlines.
    Topic
);

/// What people type, trimmed and in Unicode's composed form (NFC): an `é` typed as
/// `e` + a combining accent (as some keyboards and pastes give it) is the same
/// address, name or room as the precomposed `é`, never a second one that looks alike.
fn composed(raw: &str) -> String {
    let s = raw.trim();
    if s.is_ascii() { s.to_string() } else { s.nfc().collect() }
}

/// The key a username or email is signed in with (and its sign-in budget is kept
/// under): composed, then lower case, as [`Email::folded`] stores it.
pub fn login_key(login: &str) -> String {
    composed(login).to_lowercase()
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = composed(raw);
        let s = s.as_str();
        let bad = || DomainError::new("invalid_email", "enter an email address like name@example.org");
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control() || is_hidden(c)) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Email(s.to_string()))
    }
    /// The case-folded form used for uniqueness and sign-in.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

pub const USERNAME_RULE: &str =
    "a username is 3 to 32 characters: ASCII letters, digits, '_', '-' or '.', starting with a letter or digit";

impl Username {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        let ok_len = (3..=32).contains(&s.len());
        let ok_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        let ok_start = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if ok_len && ok_chars && ok_start {
            Ok(Username(s.to_string()))
        } else {
            Err(DomainError::new("invalid_username", USERNAME_RULE))
        }
    }
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PersonName {
    /// `which` names the field in the message ("first name", "last name").
    pub fn parse(raw: &str, which: &str) -> Result<Self, DomainError> {
        let s = composed(raw);
        let s = s.as_str();
        let n = s.chars().count();
        if n == 0 || n > 64 || s.chars().any(char::is_control) || has_hidden_chars(s) {
            return Err(DomainError::new(
                "invalid_name",
                format!("the {which} must be 1 to 64 characters, with no control or invisible characters"),
            ));
        }
        Ok(PersonName(s.to_string()))
    }
}

pub const ROOM_NAME_RULE: &str =
    "a room name is 2 to 40 characters: letters, digits, '_', '-', '.' and single spaces inside";

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = composed(raw);
        let s = s.as_str();
        let n = s.chars().count();
        let ok_chars = s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.' || c == ' ');
        if !(2..=40).contains(&n) || !ok_chars || s.contains("  ") || has_hidden_chars(s) {
            return Err(DomainError::new("invalid_room_name", ROOM_NAME_RULE));
        }
        Ok(RoomName(s.to_string()))
    }
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

impl Topic {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = composed(raw);
        let s = s.as_str();
        if s.chars().count() > 250 || s.chars().any(|c| c.is_control() && c != '\n') || has_hidden_chars(s) {
            return Err(DomainError::new(
                "invalid_topic",
                "a topic is at most 250 characters, with no control or invisible characters",
            ));
        }
        Ok(Topic(s.to_string()))
    }
}

/// A password as typed. Never printed, never truncated: the whole string is hashed.
#[derive(Clone)]
pub struct Password(String);

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 1024;

impl Password {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let n = raw.chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
            return Err(DomainError::new(
                "invalid_password",
                format!("a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
            ));
        }
        Ok(Password(raw.to_string()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Ann@Example.org ").unwrap().as_str(), "Ann@Example.org");
        assert_eq!(Email::parse("Ann@Example.org").unwrap().folded(), "ann@example.org");
        for bad in ["", "ann", "@x.org", "ann@", "a b@x.org", "a@b@c", "a@.x"] {
            assert_eq!(Email::parse(bad).unwrap_err().code, "invalid_email", "{bad}");
        }
    }

    #[test]
    fn typed_text_is_composed_and_folded_alike() {
        assert_eq!(Email::parse("Jose\u{301}@x.org").unwrap().folded(), "jos\u{e9}@x.org");
        assert_eq!(login_key(" JOSE\u{301}@X.org "), "jos\u{e9}@x.org");
        assert_eq!(RoomName::parse("Cafe\u{301}").unwrap().as_str(), "Caf\u{e9}");
        assert_eq!(search_fold("E\u{301}mile"), person_fold("\u{c9}mile", "").trim_end());
    }

    #[test]
    fn usernames() {
        assert!(Username::parse("alice_1").is_ok());
        for bad in ["al", "_alice", "ali ce", "alicé", &"a".repeat(33)] {
            let e = Username::parse(bad).unwrap_err();
            assert_eq!(e.code, "invalid_username");
            assert!(e.message.contains("3 to 32"));
        }
    }

    #[test]
    fn passwords_are_never_truncated_or_printed() {
        assert!(Password::parse("short").is_err());
        let long = "p".repeat(1024);
        assert_eq!(Password::parse(&long).unwrap().expose().len(), 1024);
        assert!(Password::parse(&"p".repeat(1025)).is_err());
        assert!(!format!("{:?}", Password::parse("secret-pass").unwrap()).contains("secret"));
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for bad in ["ali\u{202E}ce", "al\u{200B}ice", "\u{3164}", "bo\u{2066}b", "x\u{FEFF}y", "a\u{200D}b"] {
            assert_eq!(PersonName::parse(bad, "first name").unwrap_err().code, "invalid_name", "{bad:?}");
            assert_eq!(Topic::parse(bad).unwrap_err().code, "invalid_topic", "{bad:?}");
            assert_eq!(RoomName::parse(&format!("{bad}xx")).unwrap_err().code, "invalid_room_name", "{bad:?}");
            assert_eq!(Email::parse(&format!("{bad}@example.org")).unwrap_err().code, "invalid_email", "{bad:?}");
        }
        // Emoji sequences joined with ZWJ, accents and other scripts stay fine.
        for ok in ["Zoë 👩\u{200D}💻", "Jürgen", "Ольга", "李"] {
            assert!(PersonName::parse(ok, "first name").is_ok(), "{ok:?}");
            assert!(Topic::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn look_alike_names_share_a_skeleton() {
        assert_eq!(skeleton_key("aIice"), skeleton_key("alice"));
        assert_eq!(skeleton_key("Town Square"), skeleton_key("T\u{043E}wn Square"));
        assert_eq!(skeleton_key("paypal"), skeleton_key("p\u{0430}yp\u{0430}l"));
        assert_ne!(skeleton_key("alice"), skeleton_key("alicia"));
        assert_ne!(skeleton_key("general"), skeleton_key("random"));
    }

    #[test]
    fn room_names() {
        assert_eq!(RoomName::parse(" General Chat ").unwrap().folded(), "general chat");
        assert!(RoomName::parse("a").is_err());
        assert!(RoomName::parse("a  b").is_err());
        assert!(RoomName::parse("<script>").is_err());
    }
}
