//! The rules of message actions that need no I/O: which reactions are acceptable,
//! how a mention is written in a text (`<@ID>`, so a rename keeps every old mention
//! pointing at the right person), the quoted excerpt of a reply, and the per-room
//! notification levels. `chat` applies them; the store only keeps the results.

use super::{DomainError, UserId};

/// Bytes an emoji reaction may take: the longest standard emoji (a family with skin
/// tones, joined by ZWJs) is about 35 bytes.
pub const MAX_EMOJI_BYTES: usize = 64;
/// Distinct reactions one message may carry, so a message cannot grow without bound.
pub const MAX_REACTIONS_PER_MESSAGE: usize = 20;
/// People one message may mention (more are kept as plain text, not notified).
pub const MAX_MENTIONS: usize = 50;
/// Characters of the original that a reply quotes.
pub const EXCERPT_CHARS: usize = 120;

/// Validates a reaction: a short, visible token such as `👍` or `🎉` (an emoji or a
/// short symbol), never words, spaces, controls or markup.
pub fn validate_emoji(emoji: &str) -> Result<(), DomainError> {
    let bad = || DomainError::new("invalid_emoji", "a reaction is one emoji (at most 64 bytes, no letters or spaces)");
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
        return Err(bad());
    }
    if emoji.chars().count() > 16 {
        return Err(bad());
    }
    let mut chars = emoji.chars().peekable();
    while let Some(c) = chars.next() {
        // Direction controls would let a reaction reorder the text around it.
        if matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            return Err(bad());
        }
        // Emoji sequences use ZWJ (U+200D) and variation selectors (U+FE0F) and
        // keycap combining marks; plain text (letters, digits, punctuation, spaces,
        // controls) has no place in a reaction. A few emoji are letter-like symbols
        // shown as emoji by U+FE0F (ℹ️, Ⓜ️): those pass, ASCII letters never do.
        let text_like = c.is_ascii() || c.is_alphanumeric() || c.is_whitespace() || c.is_control();
        let emoji_presentation = !c.is_ascii() && c.is_alphanumeric() && chars.peek() == Some(&'\u{FE0F}');
        if text_like && !emoji_presentation && !matches!(c, '#' | '*' | '0'..='9') {
            return Err(bad());
        }
    }
    // A keycap is a digit/#/* followed by U+FE0F U+20E3; a bare digit is text.
    if emoji.is_ascii() {
        return Err(bad());
    }
    Ok(())
}

/// A new reaction is ONE emoji: one extended grapheme cluster (a ZWJ family, a flag
/// and a keycap are one each), on top of [`validate_emoji`]. Taking a reaction back
/// needs only the latter, so one given before this rule can still be removed.
pub fn validate_new_reaction(emoji: &str) -> Result<(), DomainError> {
    use unicode_segmentation::UnicodeSegmentation;
    validate_emoji(emoji)?;
    if emoji.graphemes(true).nth(1).is_some() {
        return Err(DomainError::new("invalid_emoji", "a reaction is one emoji, not several"));
    }
    Ok(())
}

/// The people a text mentions, in the order first mentioned, without repeats and at
/// most [`MAX_MENTIONS`]. A mention is written `<@ID>` with the person's user id.
pub fn mentioned_ids(text: &str) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("<@") {
        rest = &rest[at + 2..];
        let digits: &str = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
        if !digits.is_empty() && digits.len() <= 18 && rest[digits.len()..].starts_with('>') {
            if let Ok(id) = digits.parse::<UserId>()
                && id > 0
                && !out.contains(&id)
            {
                out.push(id);
                if out.len() == MAX_MENTIONS {
                    break;
                }
            }
            rest = &rest[digits.len() + 1..];
        }
    }
    out
}

/// The start of a message as a reply quotes it: at most [`EXCERPT_CHARS`]
/// characters, whitespace runs folded to one space, with `…` when cut.
pub fn excerpt(text: &str) -> String {
    let folded: Vec<&str> = text.split_whitespace().collect();
    let folded = folded.join(" ");
    let mut out: String = folded.chars().take(EXCERPT_CHARS).collect();
    if folded.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// How much of a room's activity a member wants to be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyLevel {
    /// Every message counts as unread and may notify.
    All,
    /// Only messages that mention you notify; others are still counted as unread.
    Mentions,
    /// Nothing notifies; the room is shown quietly.
    Muted,
}

impl NotifyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyLevel::All => "all",
            NotifyLevel::Mentions => "mentions",
            NotifyLevel::Muted => "muted",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "all" => Ok(NotifyLevel::All),
            "mentions" => Ok(NotifyLevel::Mentions),
            "muted" => Ok(NotifyLevel::Muted),
            _ => {
                Err(DomainError::new("invalid_notify", "the notification level is \"all\", \"mentions\" or \"muted\""))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_emoji_not_words() {
        for ok in ["👍", "🎉", "❤️", "👨‍👩‍👧‍👦", "1️⃣", "✅", "🇫🇷"] {
            assert!(validate_emoji(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a", "lol", "1", " 👍", "👍 ", "<b>", "\u{0}", "👍\n", "\u{202E}👍", &"👍".repeat(17)]
        {
            assert!(validate_emoji(bad).is_err(), "{bad:?}");
        }
        for ok in ["👍", "👍🏽", "❤️", "👨‍👩‍👧‍👦", "1️⃣", "🇫🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "ℹ️", "Ⓜ️"]
        {
            assert!(validate_new_reaction(ok).is_ok(), "{ok:?}");
        }
        for bad in ["😀😀", "👍👎", "🇫🇷🇩🇪", &"😀".repeat(16), "a", "a\u{FE0F}", "ℹ", "é\u{FE0F}x"]
        {
            assert!(validate_new_reaction(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_emoji_the_web_client_offers_is_a_valid_reaction() {
        let data = include_str!("../../web/js/emoji-data.js");
        let raw = data.split('`').nth(1).expect("the RAW list");
        let offered: Vec<&str> = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(offered.len() > 500, "{}", offered.len());
        let refused: Vec<&&str> = offered
            .iter()
            .chain(["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"].iter())
            .filter(|e| validate_new_reaction(e).is_err())
            .collect();
        assert!(refused.is_empty(), "{refused:?}");
    }

    #[test]
    fn mentions_are_ids_in_angle_brackets() {
        assert_eq!(mentioned_ids("hi <@2> and <@3>, <@2> again"), vec![2, 3]);
        assert_eq!(mentioned_ids("<@> <@x> <@0> <@12 > @4 <@5"), Vec::<UserId>::new());
        assert_eq!(mentioned_ids("<@<@7>>"), vec![7]);
        assert_eq!(mentioned_ids("<@99999999999999999999>"), Vec::<UserId>::new());
        let many: String = (1..=80).map(|i| format!("<@{i}> ")).collect();
        assert_eq!(mentioned_ids(&many).len(), MAX_MENTIONS);
    }

    #[test]
    fn excerpt_folds_and_cuts() {
        assert_eq!(excerpt("a\n\n b\tc"), "a b c");
        let long = "é".repeat(200);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn notify_levels_round_trip() {
        for l in [NotifyLevel::All, NotifyLevel::Mentions, NotifyLevel::Muted] {
            assert_eq!(NotifyLevel::parse(l.as_str()), Ok(l));
        }
        assert!(NotifyLevel::parse("loud").is_err());
    }
}
