//! The rules about uploaded files that need no I/O: cleaning a file name a client
//! sent (no path parts, no control or bidi-override characters, a length cap), the
//! types we serve as images and the declared types we repeat to clients, the
//! `--accepted-file-types` patterns, the `Content-Disposition` of a download, and the
//! row a file is kept as ([`StoredFile`]). Whether bytes really ARE an image is
//! decided by decoding them (`chat::files`), never by these names.

use super::DomainError;

/// Longest cleaned file name, in characters (the column holds 400 bytes of UTF-8 at
/// most 4 bytes each: 100 characters would be too tight for real names, so the cap
/// is in bytes too, see [`clean_name`]).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest cleaned file name in UTF-8 bytes (the column is VARCHAR(400)).
pub const MAX_NAME_BYTES: usize = 400;
/// Most attachments one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

/// An uploaded file as kept: the row of `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// 32 hex characters, random: the capability part of its URL (membership is still
    /// checked on every request).
    pub id: String,
    /// SHA-256 of the bytes (lower-case hex): the blob's name.
    pub hash: String,
    /// The cleaned name.
    pub name: String,
    /// The type we tell clients (see [`shown_type`]).
    pub mime: String,
    pub size: i64,
    /// Verified images only: the decoded dimensions.
    pub image: Option<(i64, i64)>,
    /// Verified images only: the thumbnail blob.
    pub thumb_hash: Option<String>,
    pub uploader: i64,
    pub room: i64,
    /// The message it is attached to; None while pending.
    pub seq: Option<i64>,
    /// Its place among the message's attachments.
    pub position: i64,
    pub created_at: i64,
}

/// The image types we decode, thumbnail and serve inline (a verified image's type is
/// the one its bytes decode as, whatever was declared).
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Declared types repeated to clients as they are (everything else reads
/// `application/octet-stream`). Informational only: a file that is not a verified
/// image is always SERVED as `application/octet-stream`. Nothing here is rendered by
/// a browser as active content (no HTML, SVG, XML, JavaScript).
const SHOWN_TYPES: &[&str] = &[
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-tar",
    "application/x-7z-compressed",
    "application/json",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "text/plain",
    "text/csv",
    "text/markdown",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "audio/webm",
    "video/mp4",
    "video/webm",
    "video/ogg",
];

pub const OCTET_STREAM: &str = "application/octet-stream";

/// A declared `Content-Type` reduced to `type/subtype` in lower case (parameters
/// dropped); `application/octet-stream` when missing or malformed.
pub fn normalize_type(declared: Option<&str>) -> String {
    let Some(d) = declared else { return OCTET_STREAM.into() };
    let t = d.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok = t.split_once('/').is_some_and(|(a, b)| {
        let tok = |s: &str| {
            !s.is_empty() && s.len() <= 127 && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
        };
        tok(a) && tok(b)
    });
    if ok { t } else { OCTET_STREAM.into() }
}

/// The `type` of the attachment object for a file that is NOT a verified image: the
/// declared type if it is on the safe list, else `application/octet-stream`. An image
/// type that did not decode is not repeated either.
pub fn shown_type(declared: &str) -> String {
    if SHOWN_TYPES.contains(&declared) { declared.to_string() } else { OCTET_STREAM.to_string() }
}

/// Whether a declared type claims one of the image types we decode.
pub fn claims_image(declared: &str) -> bool {
    IMAGE_TYPES.contains(&declared)
}

/// The `--accepted-file-types` list: empty means any type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptedTypes {
    /// `type/subtype` or `type/*`, lower case.
    patterns: Vec<String>,
}

impl AcceptedTypes {
    /// Parses a comma list (`image/*,application/pdf`); blanks and `*`/`*/*` mean any.
    pub fn parse(list: &str) -> Result<Self, DomainError> {
        let mut patterns = Vec::new();
        for p in list.split(',').map(|p| p.trim().to_ascii_lowercase()).filter(|p| !p.is_empty()) {
            if p == "*" || p == "*/*" {
                return Ok(AcceptedTypes::default());
            }
            let valid = match p.split_once('/') {
                Some((a, "*")) => normalize_type(Some(&format!("{a}/x"))) == format!("{a}/x"),
                Some(_) => normalize_type(Some(&p)) == p,
                None => false,
            };
            if !valid {
                return Err(DomainError::new("invalid_file_types", format!("{p:?} is not a MIME type or type/*")));
            }
            patterns.push(p);
        }
        Ok(AcceptedTypes { patterns })
    }

    pub fn any(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a (normalized) type is accepted.
    pub fn allows(&self, mime: &str) -> bool {
        self.any()
            || self.patterns.iter().any(|p| match p.strip_suffix("/*") {
                Some(major) => mime.split_once('/').is_some_and(|(a, _)| a == major),
                None => p == mime,
            })
    }
}

/// Whether a character is removed from names: controls (C0, DEL, C1), the bidi
/// embeddings, overrides and isolates (U+202A–202E, U+2066–2069), the implicit
/// marks (U+200E, U+200F, U+061C), and other invisible format characters that let a
/// name show something else than it is (zero widths, BOM, the line/paragraph
/// separators).
fn unwanted(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
            | '\u{200B}'..='\u{200D}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Cleans a file name: only its last path part (either slash), without unwanted
/// characters ([`unwanted`]), trimmed of spaces and dots at either end (no `..`, no
/// hidden files, no Windows-ignored trailing dots), Unicode NFC, at most
/// [`MAX_NAME_CHARS`] characters and [`MAX_NAME_BYTES`] bytes (cut before the
/// extension so it stays). Empty after cleaning: `bad_request`.
pub fn clean_name(raw: &str) -> Result<String, DomainError> {
    use unicode_normalization::UnicodeNormalization;
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let kept: String = last.chars().filter(|c| !unwanted(*c)).nfc().collect();
    let trimmed = kept.trim_matches(|c: char| c.is_whitespace() || c == '.');
    if trimmed.is_empty() {
        return Err(DomainError::new(
            "bad_request",
            "the file needs a name (after removing path parts and control characters)",
        ));
    }
    let fits = |s: &str| s.chars().count() <= MAX_NAME_CHARS && s.len() <= MAX_NAME_BYTES;
    if fits(trimmed) {
        return Ok(trimmed.to_string());
    }
    // Keep a short extension, shorten the stem.
    let (stem, ext) = match trimmed.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && e.chars().count() <= 16 => (s, format!(".{e}")),
        _ => (trimmed, String::new()),
    };
    let mut out = String::new();
    for c in stem.chars() {
        let next = format!("{out}{c}{ext}");
        if !fits(&next) {
            break;
        }
        out.push(c);
    }
    let out = out.trim_end_matches(|c: char| c.is_whitespace() || c == '.');
    Ok(format!("{out}{ext}"))
}

/// Characters RFC 5987 `attr-char` allows as they are; everything else is
/// percent-encoded (UTF-8 bytes).
fn attr_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b)
}

/// Percent-encodes a name for `filename*=UTF-8''…` (RFC 5987) and for URL paths.
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if attr_char(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Content-Disposition` of a download: `inline` or `attachment`, with an ASCII
/// fallback `filename` (anything else becomes `_`, quotes and backslashes too) and
/// the exact name in `filename*` (RFC 6266 / RFC 5987).
pub fn content_disposition(name: &str, inline: bool) -> String {
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{}", percent_encode(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_controls_and_bidi() {
        assert_eq!(clean_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(clean_name("C:\\Users\\x\\report.pdf").unwrap(), "report.pdf");
        assert_eq!(clean_name("evil\u{202E}gpj.exe").unwrap(), "evilgpj.exe");
        assert_eq!(clean_name("a\u{2066}b\u{2069}c\u{200F}.txt").unwrap(), "abc.txt");
        assert_eq!(clean_name("line\nbreak\r\t.txt").unwrap(), "linebreak.txt");
        assert_eq!(clean_name("  ..hidden.  ").unwrap(), "hidden");
        assert_eq!(clean_name("Café.png").unwrap(), "Café.png");
        assert_eq!(clean_name("e\u{301}.png").unwrap(), "é.png", "NFC");
        for bad in ["", "..", "dir/", "\u{202E}", " / . "] {
            assert!(clean_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn long_names_keep_their_extension() {
        let n = clean_name(&format!("{}.tar.gz", "x".repeat(500))).unwrap();
        assert!(n.ends_with(".gz") && n.chars().count() <= MAX_NAME_CHARS, "{n}");
        let n = clean_name(&"é".repeat(300)).unwrap();
        assert!(n.len() <= MAX_NAME_BYTES && n.chars().count() <= MAX_NAME_CHARS);
    }

    #[test]
    fn types() {
        assert_eq!(normalize_type(Some("Image/PNG; charset=x")), "image/png");
        assert_eq!(normalize_type(Some("nonsense")), OCTET_STREAM);
        assert_eq!(normalize_type(Some("text/html\r\nX: y")), OCTET_STREAM);
        assert_eq!(normalize_type(None), OCTET_STREAM);
        assert_eq!(shown_type("application/pdf"), "application/pdf");
        for t in ["text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript", "image/png"] {
            assert_eq!(shown_type(t), OCTET_STREAM, "{t}");
        }
        assert!(claims_image("image/webp") && !claims_image("image/svg+xml"));
    }

    #[test]
    fn accepted_type_patterns() {
        assert!(AcceptedTypes::parse("").unwrap().any());
        assert!(AcceptedTypes::parse("*/*").unwrap().allows("text/html"));
        let a = AcceptedTypes::parse("image/*, application/pdf").unwrap();
        assert!(a.allows("image/png") && a.allows("application/pdf"));
        assert!(!a.allows("text/plain") && !a.allows("application/pdfx"));
        assert!(AcceptedTypes::parse("pdf").is_err());
        assert!(AcceptedTypes::parse("text/html\"").is_err());
    }

    #[test]
    fn disposition_is_rfc5987() {
        assert_eq!(
            content_disposition("a b\"c.txt", false),
            "attachment; filename=\"a b_c.txt\"; filename*=UTF-8''a%20b%22c.txt"
        );
        assert_eq!(content_disposition("é.png", true), "inline; filename=\"_.png\"; filename*=UTF-8''%C3%A9.png");
    }
}
