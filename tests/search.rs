//! Full-text search on every backend (SQLite FTS5, PostgreSQL tsvector, MariaDB
//! FULLTEXT, two nodes): who may find what, kept in step with edits, deletes and
//! retention, accent- and case-insensitive matching, prefixes and phrases, and
//! queries that would be syntax errors in the engines' own languages.

mod common;

use common::*;
use serde_json::{Value, json};

async fn find(c: &Client, query: &str) -> Vec<String> {
    let (s, body) = c.get(&format!("/api/search?q={}", urlencode(query))).await;
    assert_eq!(s, 200, "{query}: {body}");
    texts(&body)
}

fn texts(body: &Value) -> Vec<String> {
    body["results"].as_array().expect("results").iter().map(|r| r["text"].as_str().expect("text").to_string()).collect()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn finds_only_what_you_may_read(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let eve = srv.user("eve").await;
    let public = ann.create_room("lobby", json!({})).await;
    let secret = ann.create_room("vault", json!({"private": true})).await;
    assert_eq!(bob.post(&format!("/api/rooms/{public}/join"), json!({})).await.0, 200);
    let (s, body) = ann.post(&format!("/api/rooms/{secret}/members"), json!({"username": "bob"})).await;
    assert!(s == 200 || s == 204, "{body}");
    let (_, dm) = ann.post("/api/dms", json!({"user_id": eve.id().await})).await;
    let dm = dm["room"]["id"].as_i64().expect("dm");
    let mut wa = ann.ws().await;
    wa.say(public, "the pineapple plan is public").await;
    wa.say(secret, "the pineapple plan is secret").await;
    wa.say(dm, "pineapple between ann and eve").await;
    // Each sees exactly their rooms and DMs.
    let mut a = find(&ann, "pineapple").await;
    a.sort();
    assert_eq!(a, ["pineapple between ann and eve", "the pineapple plan is public", "the pineapple plan is secret"]);
    let mut b = find(&bob, "pineapple").await;
    b.sort();
    assert_eq!(b, ["the pineapple plan is public", "the pineapple plan is secret"]);
    assert_eq!(find(&eve, "pineapple").await, ["pineapple between ann and eve"]);
    // A private room bob left is no longer searchable by him, nor is a public one.
    assert_eq!(bob.post(&format!("/api/rooms/{secret}/leave"), json!({})).await.0, 204);
    assert_eq!(bob.post(&format!("/api/rooms/{public}/leave"), json!({})).await.0, 204);
    assert!(find(&bob, "pineapple").await.is_empty());
    // Scoped to a room (members only) or an author.
    let (s, body) = eve.get(&format!("/api/search?q=pineapple&room={secret}")).await;
    assert_eq!((s, body["error"]["code"].as_str()), (404, Some("room_not_found")), "{body}");
    let (s, body) = ann.get(&format!("/api/search?q=pineapple&room={public}")).await;
    assert_eq!((s, texts(&body)), (200, vec!["the pineapple plan is public".to_string()]));
    let (s, body) = ann.get("/api/search?q=pineapple&author=eve").await;
    assert_eq!((s, texts(&body).len()), (200, 0));
    let (s, body) = ann.get("/api/search?q=pineapple&author=nobody-here").await;
    assert_eq!((s, body["error"]["code"].as_str()), (404, Some("user_not_found")));
    let (s, _) = srv.client().get("/api/search?q=pineapple").await;
    assert_eq!(s, 401);
}

async fn follows_edits_deletes_and_retention(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("brief", json!({"retention": {"keep_messages": 3}})).await;
    let mut wa = ann.ws().await;
    let s1 = wa.say(room, "original wording here").await.expect("kept");
    let s2 = wa.say(room, "doomed sentence").await.expect("kept");
    assert_eq!(find(&ann, "original").await.len(), 1);
    wa.request(json!({"type": "edit", "room": room, "seq": s1, "text": "revised wording here"})).await;
    assert!(find(&ann, "original").await.is_empty(), "an edit drops the old words");
    assert_eq!(find(&ann, "revised").await, ["revised wording here"]);
    wa.request(json!({"type": "delete", "room": room, "seq": s2})).await;
    assert!(find(&ann, "doomed").await.is_empty(), "a deleted message is never found");
    for i in 0..4 {
        wa.say(room, &format!("filler number {i}")).await;
    }
    assert!(find(&ann, "revised").await.is_empty(), "a trimmed message is never found");
    assert_eq!(find(&ann, "filler").await.len(), 3);
}

async fn matching_is_forgiving_and_queries_never_break(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("words", json!({})).await;
    let mut wa = ann.ws().await;
    for t in [
        "Rendez-vous au Café de Flore",
        "deployment finished without errors",
        "release notes are ready",
        "notes about the release",
        "nothing to see",
    ] {
        wa.say(room, t).await;
    }
    assert_eq!(find(&ann, "cafe").await, ["Rendez-vous au Café de Flore"], "accents");
    assert_eq!(find(&ann, "CAFÉ flore").await, ["Rendez-vous au Café de Flore"], "case, two words");
    assert_eq!(find(&ann, "deplo").await, ["deployment finished without errors"], "prefix while typing");
    assert!(find(&ann, "deplo ").await.is_empty(), "a finished word is whole");
    assert_eq!(find(&ann, "\"release notes\"").await, ["release notes are ready"], "phrase");
    let mut both = find(&ann, "release notes ").await;
    both.sort();
    assert_eq!(both, ["notes about the release", "release notes are ready"]);
    // Newest first.
    assert_eq!(find(&ann, "notes").await, ["notes about the release", "release notes are ready"]);
    // Highlights are character offsets of the matching words in the original text.
    let (_, body) = ann.get("/api/search?q=cafe").await;
    assert_eq!(body["results"][0]["highlights"], json!([[15, 19]]), "{body}");
    assert_eq!(body["results"][0]["room"], json!(room));
    // Operator characters are words or separators, never syntax.
    for q in [
        "release AND notes OR *",
        "NEAR(release notes)",
        "col:val ^x -y +z",
        "'; DROP TABLE messages; --",
        "\"unclosed phrase",
        "a:* & !b | (c <-> d)",
        "@@ ~~ %% __",
    ] {
        let (s, body) = ann.get(&format!("/api/search?q={}", urlencode(q))).await;
        assert!(s == 200 || (s == 422 && body["error"]["code"] == "empty_query"), "{q}: {s} {body}");
    }
    for (q, code) in [("", "empty_query"), ("***", "empty_query"), (&"x".repeat(201)[..], "invalid_query")] {
        let (s, body) = ann.get(&format!("/api/search?q={}", urlencode(q))).await;
        assert_eq!((s, body["error"]["code"].as_str()), (422, Some(code)), "{q}");
    }
    let (s, body) = ann.get("/api/search?q=a%00b").await;
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("invalid_query")));
    // Paging.
    for i in 0..5 {
        wa.say(room, &format!("paged item {i}")).await;
    }
    let (_, p1) = ann.get("/api/search?q=paged&limit=2").await;
    let (_, p2) = ann.get("/api/search?q=paged&limit=2&offset=2").await;
    let (_, p3) = ann.get("/api/search?q=paged&limit=2&offset=4").await;
    assert_eq!(texts(&p1), ["paged item 4", "paged item 3"]);
    assert_eq!(texts(&p2), ["paged item 2", "paged item 1"]);
    assert_eq!(texts(&p3), ["paged item 0"]);
    assert_eq!((p1["more"].as_bool(), p3["more"].as_bool()), (Some(true), Some(false)));
}

/// Words are runs of letters and digits on every backend, as the protocol says:
/// PostgreSQL's parser kept `3.14`, `www.example.com` and `a@b.org` as single words,
/// MariaDB took `_` into words and found nothing when a query had a word shorter
/// than its index keeps, and a Greek final sigma missed its capital on both.
async fn words_are_the_same_on_every_backend(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("words", json!({})).await;
    let mut wa = ann.ws().await;
    let texts = [
        "pi is 3.14 exactly",
        "see www.example.com now",
        "write to alice@example.org today",
        "snake foo_bar case",
        "send an e-mail please",
        "ΟΔΥΣΣΕΑΣ returns home",
    ];
    for t in texts {
        wa.say(room, t).await;
    }
    for (q, want) in [
        ("3.14 exactly ", texts[0]),
        ("example com ", texts[1]),
        ("www.example.com", texts[1]),
        ("alice@example.org", texts[2]),
        ("bar ", texts[3]),
        ("foo_bar", texts[3]),
        ("e-mail", texts[4]),
        ("οδυσσεας", texts[5]),
        ("Οδυσσέας returns", texts[5]),
    ] {
        assert_eq!(find(&ann, q).await, [want], "q={q}");
    }
    // Only words shorter than MariaDB's index keeps (3 characters by default) are
    // left out there: a query of nothing else finds nothing (docs/PROTOCOL.md §2.6).
    let short = find(&ann, "3.14").await;
    if matches!(b, Backend::Mysql) {
        assert!(short.is_empty(), "{short:?}");
    } else {
        assert_eq!(short, [texts[0]]);
    }
}

/// Messages stored by a version that kept the folded text whole (PostgreSQL's parser
/// then kept `www.example.com` as one word, MariaDB took `_` into words) are
/// re-indexed in the background after an upgrade: they match as new ones do.
async fn older_messages_get_the_same_words(b: Backend) {
    use sqlx::{Connection, Executor};
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let old = ann.create_room("old", json!({})).await;
    let older = ann.create_room("older", json!({})).await;
    let mut wa = ann.ws().await;
    let texts = ["see www.example.com now", "snake foo_bar case"];
    wa.say(old, texts[0]).await;
    wa.say(older, texts[1]).await;
    drop(wa);
    // What the older version left: no re-index done, the lowered text whole.
    srv.pending_search_reindex().await;
    let (config, dir) = srv.stop().await;
    {
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&config.database_url()).await.expect("connect");
        db.execute("UPDATE messages SET search_text = lower(body) WHERE kind = 'text' AND search_text IS NOT NULL")
            .await
            .expect("old search text");
    }
    let srv = TestServer::start_config(b, config, dir).await;
    // (On a cluster only the first node is started again.)
    let mut ann = srv.node_client();
    assert_eq!(ann.login("ann", &password_of("ann")).await.0, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    for (q, want) in [("example com ", texts[0]), ("bar ", texts[1])] {
        loop {
            let got = find(&ann, q).await;
            if got == [want] {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "q={q}: {got:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    srv.stop().await;
}

/// Paging ends: `more` is false once the next page would start past offset 1000, a
/// page past 1000 is empty, and out-of-range numbers are clamped (negative ones too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_stops_at_the_deepest_page() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.rate_messages_per_10s = 1_000_000).await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("bulk", json!({"retention": {"keep_messages": 5000}})).await;
    let mut wa = ann.ws().await;
    for i in 0..1003 {
        wa.say(room, &format!("bulkword {i}")).await;
    }
    let page = |query: &'static str| {
        let ann = &ann;
        async move {
            let (s, body) = ann.get(&format!("/api/search?q=bulkword&{query}")).await;
            assert_eq!(s, 200, "{query}: {body}");
            (texts(&body).len(), body["more"].as_bool())
        }
    };
    assert_eq!(page("offset=999&limit=1").await, (1, Some(true)), "the page at 1000 is still reachable");
    assert_eq!(page("offset=1000&limit=2").await, (2, Some(false)), "1002 is past the deepest page");
    assert_eq!(page("offset=1001&limit=2").await, (0, Some(false)));
    assert_eq!(page("offset=5000").await, (0, Some(false)));
    assert_eq!(page("limit=-5").await, (1, Some(true)), "clamped to 1");
    assert_eq!(page("limit=500&offset=-1").await, (50, Some(true)), "clamped to 50 from 0");
    let (s, body) = ann.get("/api/search?q=bulkword&limit=1.5").await;
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
}

on_both_backends!(
    older_messages_get_the_same_words,
    finds_only_what_you_may_read,
    follows_edits_deletes_and_retention,
    matching_is_forgiving_and_queries_never_break,
    words_are_the_same_on_every_backend,
);
