//! Full-text search, the part without I/O: how text is folded for matching (case- and
//! accent-insensitive, the same for every database), how a query typed by a person
//! becomes words, phrases and a last-word prefix (operator characters are just
//! separators: a query can never be a syntax error), and where a hit's words are, so
//! clients highlight them as text, not markup.

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

use super::DomainError;

/// Characters a query may have.
pub const MAX_QUERY_CHARS: usize = 200;
/// Words and phrases a query may have.
pub const MAX_TERMS: usize = 16;

/// Text as it is matched: compatibility-decomposed, combining marks dropped, lower
/// case, and a Greek final sigma as any other (a capital Σ lowers to σ wherever it
/// stands, so "ΟΔΥΣΣΕΑΣ" must meet "οδυσσεας"). `Café`, `CAFE` and `café` all fold to
/// `cafe`.
pub fn fold(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
        .collect()
}

/// What the search index keeps of a message (`messages.search_text`): its folded
/// words, one space apart. Every other character is gone here, so each database's
/// own word splitting sees the same words as [`words`]: PostgreSQL's parser kept
/// `3.14`, `www.example.com` or `a@b.org` whole, and MariaDB took `_` into words.
pub fn index_text(text: &str) -> String {
    let folded = fold(text);
    let mut out = String::with_capacity(folded.len());
    for w in words(&folded) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// The words of a folded text: runs of letters and digits.
pub fn words(folded: &str) -> impl Iterator<Item = &str> {
    folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty())
}

/// One thing a hit must contain: a word, a word's start (the last word while
/// typing), or a phrase (words in a row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Folded words; more than one for a phrase.
    pub words: Vec<String>,
    /// The last word may be the start of a longer one.
    pub prefix: bool,
}

/// A parsed query: every term must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub terms: Vec<Term>,
}

impl SearchQuery {
    /// Reads a query as a person types it: words, `"quoted phrases"`, and the last word
    /// taken as a prefix unless the query ends with a space or a closing quote.
    /// Anything that is not a letter or digit separates words, so `AND`, `*`, `(`,
    /// `:` or `NEAR` are never operators.
    pub fn parse(q: &str) -> Result<Self, DomainError> {
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(DomainError::new("invalid_query", format!("a search is at most {MAX_QUERY_CHARS} characters")));
        }
        if q.chars().any(char::is_control) {
            return Err(DomainError::new("invalid_query", "a search cannot contain control characters"));
        }
        let mut terms = Vec::new();
        let folded = fold(q);
        // Alternate outside/inside quotes; an unclosed quote runs to the end.
        for (i, part) in folded.split('"').enumerate() {
            let ws: Vec<String> = words(part).map(str::to_string).collect();
            if ws.is_empty() {
                continue;
            }
            if i % 2 == 1 {
                terms.push(Term { words: ws, prefix: false });
            } else {
                terms.extend(ws.into_iter().map(|w| Term { words: vec![w], prefix: false }));
            }
        }
        let typing = folded.chars().last().is_some_and(char::is_alphanumeric);
        if typing
            && let Some(last) = terms.last_mut()
            && last.words.len() == 1
            && !folded.trim_end().ends_with('"')
        {
            last.prefix = true;
        }
        if terms.is_empty() {
            return Err(DomainError::new("empty_query", "a search needs at least one word"));
        }
        terms.truncate(MAX_TERMS);
        Ok(SearchQuery { terms })
    }

    /// Where the query's words are in `text`, as `[start, end)` character offsets of
    /// whole words (any word of any term; a prefix term matches words it starts).
    pub fn highlights(&self, text: &str) -> Vec<[usize; 2]> {
        let mut out = Vec::new();
        let mut start: Option<usize> = None;
        let mut word = String::new();
        let chars: Vec<char> = text.chars().collect();
        for (i, c) in chars.iter().chain(std::iter::once(&' ')).enumerate() {
            if c.is_alphanumeric() || (start.is_some() && is_combining_mark(*c)) {
                if start.is_none() {
                    start = Some(i);
                }
                word.push(*c);
            } else if let Some(s) = start.take() {
                if self.matches_word(&fold(&word)) {
                    out.push([s, i]);
                }
                word.clear();
            }
        }
        out
    }

    fn matches_word(&self, w: &str) -> bool {
        self.terms.iter().any(|t| {
            t.words.iter().enumerate().any(|(k, q)| {
                let last = k + 1 == t.words.len();
                if t.prefix && last { w.starts_with(q.as_str()) } else { w == q }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_and_accents() {
        assert_eq!(fold("Café CRÈME Ångström"), "cafe creme angstrom");
        assert_eq!(fold("ﬁne"), "fine", "compatibility ligatures decompose");
        assert_eq!(fold("ABC def"), "abc def");
    }

    #[test]
    fn the_index_keeps_only_words() {
        assert_eq!(
            index_text("pi is 3.14, see www.Example.com or a@b.org_x"),
            "pi is 3 14 see www example com or a b org x"
        );
        assert_eq!(index_text("ΟΔΥΣΣΕΑΣ — Σωκράτης"), "οδυσσεασ σωκρατησ");
        assert_eq!(fold("οδυσσεας"), "οδυσσεασ", "a typed final sigma meets a capital one");
        assert_eq!(index_text("  ¿¡!  "), "");
    }

    #[test]
    fn queries_are_words_phrases_and_a_prefix() {
        let q = SearchQuery::parse("Deploy \"release notes\" frid").expect("query");
        assert_eq!(
            q.terms,
            vec![
                Term { words: vec!["deploy".into()], prefix: false },
                Term { words: vec!["release".into(), "notes".into()], prefix: false },
                Term { words: vec!["frid".into()], prefix: true },
            ]
        );
        assert!(!SearchQuery::parse("done ").expect("query").terms[0].prefix, "a trailing space ends the word");
    }

    #[test]
    fn operators_are_plain_separators() {
        for q in ["a AND b OR c*", "NEAR(x y)", "col:val ^x -y +z", "'; DROP TABLE messages; --", "\"unclosed"] {
            let parsed = SearchQuery::parse(q).expect(q);
            assert!(parsed.terms.iter().flat_map(|t| &t.words).all(|w| w.chars().all(char::is_alphanumeric)), "{q}");
        }
        assert_eq!(SearchQuery::parse("*** ((( ").map_err(|e| e.code), Err("empty_query"));
        assert_eq!(SearchQuery::parse("").map_err(|e| e.code), Err("empty_query"));
        assert_eq!(SearchQuery::parse(&"x".repeat(201)).map_err(|e| e.code), Err("invalid_query"));
        assert_eq!(SearchQuery::parse("a\u{0}b").map_err(|e| e.code), Err("invalid_query"));
    }

    #[test]
    fn highlights_are_whole_words_in_the_original_text() {
        let q = SearchQuery::parse("cafe depl").expect("query");
        let text = "Le Café: deployment at the CAFÉ";
        let hl = q.highlights(text);
        let chars: Vec<char> = text.chars().collect();
        let got: Vec<String> = hl.iter().map(|[s, e]| chars[*s..*e].iter().collect()).collect();
        assert_eq!(got, vec!["Café", "deployment", "CAFÉ"]);
        // Decomposed accents (e + U+0301) stay inside their word.
        let hl = q.highlights("cafe\u{301}!");
        assert_eq!(hl, vec![[0, 5]]);
    }
}
