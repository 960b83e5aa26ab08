//! The store's own promises, checked on every database through `rtm::store::connect`
//! (the code path of `--database`): full Unicode kept byte for byte, names compared
//! exactly as folded (no collation folding them again), LIKE wildcards taken
//! literally, the same conflict fields, and per-room sequence numbers that two
//! stores on one database (two nodes) hand out without a gap or a double under
//! concurrent appends and retries.
//!
//! There is no cluster of stores: in the cluster mode these run on PostgreSQL.

mod common;

use common::Backend;
use rtm::{
    domain::{MessageKind, Retention},
    store::{self, Appended, DynStore, NewMessage, NewRoom, NewUser, StoreError},
};

/// Two stores (two pools, as two nodes have) on one fresh database.
async fn two_stores(b: Backend) -> (DynStore, DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match b {
        Backend::Sqlite => format!("sqlite:{}", dir.path().join("t.db").display()),
        Backend::Mysql => common::fresh_mysql_database().await,
        Backend::Postgres | Backend::Cluster => common::fresh_pg_database().await,
    };
    let one = store::connect(&url, 4).await.expect("store opens");
    let two = store::connect(&url, 4).await.expect("second store opens");
    (one, two, dir)
}

const KEEP_ALL: Retention = Retention { keep_messages: None, keep_days: None, ephemeral: false };

fn new_user(username: &str, email: &str) -> NewUser {
    NewUser {
        email: email.to_string(),
        email_lc: email.to_lowercase(),
        username: username.to_string(),
        username_lc: username.to_lowercase(),
        first_name: "First".into(),
        last_name: "Last".into(),
        password_hash: "not-a-real-hash".into(),
        now: 1,
    }
}

fn new_room(name: &str, owner: i64, topic: &str, retention: Retention) -> NewRoom {
    NewRoom {
        name: name.to_string(),
        name_lc: name.to_lowercase(),
        topic: topic.to_string(),
        is_private: false,
        owner_id: owner,
        retention,
        now: 1,
    }
}

fn text(room: i64, author: i64, cid: Option<String>, body: String) -> NewMessage {
    NewMessage { client_id: cid, ..NewMessage::plain(room, author, MessageKind::Text, body, 1) }
}

fn conflict_field(e: StoreError) -> &'static str {
    match e {
        StoreError::Conflict(f) => f,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn unicode_round_trips_and_names_compare_as_folded(b: Backend) {
    let (st, _, _dir) = two_stores(b).await;
    // Astral characters (emoji, a ZWJ family, CJK extension B, U+10FFFF), combining
    // marks, right-to-left text, and characters a *_ci collation would equate.
    let body = "😀 👩\u{200d}👩\u{200d}👧 𠀀𪚥 e\u{301} é עברית 한국어 \u{10FFFF} ß ẞ İ ǅ '\"\\%_";
    let mut first = new_user("uni", "Zoë.😀@Example.org");
    first.first_name = "Zoë 👩\u{200d}🚀".into();
    first.last_name = "𠀀 Ünïcødé".into();
    let u = st.create_user(first.clone()).await.expect("user with astral characters");
    let back = st.user_by_id(u.id).await.unwrap().expect("user");
    assert_eq!(
        (back.email.as_str(), back.first_name.as_str(), back.last_name.as_str()),
        ("Zoë.😀@Example.org", "Zoë 👩\u{200d}🚀", "𠀀 Ünïcødé")
    );
    assert!(back.is_admin, "the first account is the admin");
    let (found, _) = st.user_for_login("zoë.😀@example.org").await.unwrap().expect("found by folded email");
    assert_eq!(found.id, u.id);

    let topic = "😀 𠀀 e\u{301} עברית";
    let room = st.create_room(new_room("Ünïcødé Röom 😀", u.id, topic, KEEP_ALL)).await.unwrap();
    assert_eq!(room.name.as_deref(), Some("Ünïcødé Röom 😀"));
    assert_eq!(st.room(room.id).await.unwrap().expect("room").topic, topic);
    let got = st.append(&[text(room.id, u.id, Some("c-😀".into()), body.to_string())]).await;
    // Client ids are printable ASCII by the protocol's rule; the store keeps any text.
    assert_eq!(got.unwrap(), vec![Appended::New(1)]);
    let kept = st.history(room.id, None, 10).await.unwrap();
    assert_eq!(kept[0].body.as_bytes(), body.as_bytes(), "byte for byte");
    assert_eq!(kept[0].client_id.as_deref(), Some("c-😀"));

    // Only the folded names count, compared exactly: the same folded name conflicts
    // (and names the right field), names a collation might equate do not.
    let mut dup = new_user("other", "ZOË.😀@example.ORG");
    assert_eq!(conflict_field(st.create_user(dup.clone()).await.unwrap_err()), "email");
    dup.email = "other@example.org".into();
    dup.email_lc = dup.email.clone();
    dup.username = "UNI".into();
    dup.username_lc = "uni".into();
    assert_eq!(conflict_field(st.create_user(dup).await.unwrap_err()), "username");
    // The duplicated value names another key: the field is the key's, not the value's.
    st.create_user(new_user("email_lc", "e1@example.org")).await.unwrap();
    let clash = st.create_user(new_user("email_lc", "e2@example.org")).await.unwrap_err();
    assert_eq!(conflict_field(clash), "username");
    for (a, bb) in [("zoe@x.org", "zoë@x.org"), ("strasse@x.org", "straße@x.org"), ("a@x.org", "a@x.org ")] {
        st.create_user(new_user(&format!("u{}", a.len()), a)).await.unwrap();
        st.create_user(new_user(&format!("v{}", bb.len()), bb))
            .await
            .expect("a different folded email is another account");
    }
    assert_eq!(
        conflict_field(st.create_room(new_room("ünïcødé röom 😀", u.id, "", KEEP_ALL)).await.unwrap_err()),
        "room_name"
    );
    for name in ["Unicode Room 😀", "Straße", "Strasse", "Résumé", "Resume", "Café", "Cafe\u{301}"] {
        st.create_room(new_room(name, u.id, "", KEEP_ALL)).await.expect(name);
    }

    // LIKE's wildcards in a search are plain characters.
    st.create_room(new_room("percent", u.id, "100% sure", KEEP_ALL)).await.unwrap();
    st.create_room(new_room("under", u.id, "a_b", KEEP_ALL)).await.unwrap();
    st.create_room(new_room("slash", u.id, "back\\slash", KEEP_ALL)).await.unwrap();
    st.create_room(new_room("plain", u.id, "axb 1000 sure", KEEP_ALL)).await.unwrap();
    let names = |q: &'static str| {
        let st = st.clone();
        async move {
            let mut v: Vec<String> =
                st.search_rooms(u.id, Some(q), 50).await.unwrap().into_iter().filter_map(|l| l.room.name).collect();
            v.sort();
            v
        }
    };
    assert_eq!(names("0%").await, ["percent"]);
    assert_eq!(names("a_b").await, ["under"]);
    assert_eq!(names("\\").await, ["slash"]);
    assert_eq!(names("röom 😀").await, ["Ünïcødé Röom 😀"]);
    let people: Vec<String> =
        st.list_users(Some("zoë 👩"), 10, false).await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(people, ["uni"]);
}

async fn two_stores_share_each_rooms_sequence(b: Backend) {
    let (one, two, _dir) = two_stores(b).await;
    let ann = one.create_user(new_user("ann", "ann@example.org")).await.unwrap();
    let r1 = one.create_room(new_room("seq-one", ann.id, "", KEEP_ALL)).await.unwrap().id;
    let keep = Retention::last_messages(50);
    let r2 = one.create_room(new_room("seq-two", ann.id, "", keep)).await.unwrap().id;

    // Four writers, two per store, each appending batches to both rooms and retrying
    // the first message of its previous batch in the next one.
    const WRITERS: usize = 4;
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 6;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let st = if w % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<(i64, String, Appended)> = Vec::new();
            for k in 0..BATCHES {
                let mut batch = Vec::new();
                if k > 0 {
                    batch.push(text(r1, ann.id, Some(format!("w{w}-b{}-m0", k - 1)), "retry".into()));
                }
                for m in 0..PER_BATCH {
                    let room = if m % 2 == 0 { r1 } else { r2 };
                    batch.push(text(room, ann.id, Some(format!("w{w}-b{k}-m{m}")), format!("w{w} b{k} m{m}")));
                }
                let got = st.append(&batch).await.expect("append under concurrency");
                for (m, a) in batch.iter().zip(got) {
                    acked.push((m.room_id, m.client_id.clone().unwrap_or_default(), a));
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("writer"));
    }

    // Every new message got its own seq, retries the seq of their original, and each
    // room's seqs run from 1 without a gap.
    let mut seq_of = std::collections::HashMap::new();
    for (room, cid, a) in &acked {
        if let Appended::New(s) = a {
            assert!(seq_of.insert((*room, cid.clone()), *s).is_none(), "{cid} stored twice");
        }
    }
    for (room, cid, a) in &acked {
        if let Appended::Duplicate(s) = a {
            assert_eq!(seq_of.get(&(*room, cid.clone())), Some(s), "retry of {cid}");
        }
    }
    for (room, n) in [(r1, WRITERS * BATCHES * PER_BATCH / 2), (r2, WRITERS * BATCHES * PER_BATCH / 2)] {
        let mut seqs: Vec<i64> = seq_of.iter().filter(|((r, _), _)| *r == room).map(|(_, s)| *s).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>(), "room {room}");
        let last = one.last_seqs(&[room]).await.unwrap();
        assert_eq!(last, vec![(room, n as i64)]);
    }
    let kept = one.since(r1, 0, 1000).await.unwrap();
    assert_eq!(kept.len(), WRITERS * BATCHES * PER_BATCH / 2);
    for m in &kept {
        assert_eq!(seq_of.get(&(r1, m.client_id.clone().unwrap_or_default())), Some(&m.seq));
    }
    // "Keep the last 50" held under concurrent trims.
    let kept: Vec<i64> = two.since(r2, 0, 1000).await.unwrap().into_iter().map(|m| m.seq).collect();
    let n = (WRITERS * BATCHES * PER_BATCH / 2) as i64;
    assert_eq!(kept, ((n - 49)..=n).collect::<Vec<_>>());

    // A retry sent through the other node while the original commits: stored once,
    // both answers name the same seq.
    for i in 0..30 {
        let m = text(r1, ann.id, Some(format!("race-{i}")), "race".into());
        let (a, bb) = tokio::join!(one.append(std::slice::from_ref(&m)), two.append(std::slice::from_ref(&m)));
        let (a, bb) = (a.expect("first node")[0], bb.expect("second node")[0]);
        assert_eq!(a.seq(), bb.seq(), "race {i}: {a:?} {bb:?}");
        assert!(
            matches!((a, bb), (Appended::New(_), Appended::Duplicate(_)) | (Appended::Duplicate(_), Appended::New(_))),
            "race {i}: {a:?} {bb:?}"
        );
    }
    assert_eq!(one.count_messages(r1).await.unwrap(), n + 30);

    // One batch carrying a send twice (resent before its ack came), beside a retry of
    // a stored one and a new one: stored once each, the seqs still without a gap.
    let twice = text(r2, ann.id, Some("twice".into()), "twice".into());
    let fresh = text(r2, ann.id, Some("fresh".into()), "fresh".into());
    let got = one.append(&[twice.clone(), twice.clone(), fresh]).await.unwrap();
    assert_eq!(got, vec![Appended::New(n + 1), Appended::Duplicate(n + 1), Appended::New(n + 2)]);
    let old = text(r2, ann.id, Some("fresh".into()), "fresh".into());
    let got = one.append(&[twice, old, text(r2, ann.id, Some("third".into()), "third".into())]).await.unwrap();
    assert_eq!(got, vec![Appended::Duplicate(n + 1), Appended::Duplicate(n + 2), Appended::New(n + 3)]);
    assert_eq!(one.last_seqs(&[r2]).await.unwrap(), vec![(r2, n + 3)]);
}

on_both_backends!(unicode_round_trips_and_names_compare_as_folded, two_stores_share_each_rooms_sequence);

/// PostgreSQL stores a batch of plain messages in one statement (`postgres_append.rs`),
/// which bets that no message is a retry of a stored one and that its trim reaches no
/// row its snapshot cannot see (its own, or another node's that committed while it
/// waited for the room's lock). Each lost bet sends the batch to the general path,
/// with the general path's answer and nothing stored twice, lost or kept past the
/// room's retention. (More of two nodes in one room:
/// `two_stores_share_each_rooms_sequence`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_plain_batches_in_one_statement() {
    use rtm::store::Store;
    let url = common::fresh_pg_database().await;
    let st = std::sync::Arc::new(store::postgres::open(&url, 4).await.expect("store opens"));
    let ann = st.create_user(new_user("ann", "ann@example.org")).await.unwrap();
    let all = st.create_room(new_room("one-all", ann.id, "", KEEP_ALL)).await.unwrap().id;
    let five = st.create_room(new_room("one-five", ann.id, "", Retention::last_messages(5))).await.unwrap().id;
    let seqs = |room: i64| {
        let st = &st;
        async move { st.since(room, 0, 1000).await.unwrap().into_iter().map(|m| m.seq).collect::<Vec<i64>>() }
    };

    // Plain batches over two rooms, one with a send twice in it: one statement each.
    for k in 0..10 {
        let batch = [
            text(all, ann.id, Some(format!("a{k}")), format!("a{k}")),
            text(five, ann.id, Some(format!("f{k}")), format!("f{k}")),
            text(all, ann.id, None, format!("b{k}")),
            text(all, ann.id, Some(format!("a{k}")), format!("a{k}")),
        ];
        let got = st.append(&batch).await.unwrap();
        let a = 2 * k + 1;
        assert_eq!(got, [Appended::New(a), Appended::New(k + 1), Appended::New(a + 1), Appended::Duplicate(a)]);
    }
    assert_eq!(st.append_counts(), (10, 0), "every batch in one statement");
    assert_eq!(seqs(all).await, (1..=20).collect::<Vec<_>>());
    assert_eq!(seqs(five).await, (6..=10).collect::<Vec<_>>(), "keep the last 5");

    // A retry of a stored send: the unique index refuses it, the general path finds it.
    let got = st
        .append(&[
            text(five, ann.id, Some("f11".into()), "new".into()),
            text(all, ann.id, Some("a3".into()), "again".into()),
        ])
        .await
        .unwrap();
    assert_eq!(got, [Appended::New(11), Appended::Duplicate(7)]);
    assert_eq!(st.append_counts(), (10, 1));

    // More messages at once than the room keeps: the trim would have to delete rows
    // the statement cannot see. Retaken; the room still keeps exactly its last five.
    let six: Vec<NewMessage> =
        (0..6).map(|i| text(five, ann.id, Some(format!("six{i}")), format!("six {i}"))).collect();
    let got = st.append(&six).await.unwrap();
    assert_eq!(got, (12..=17).map(Appended::New).collect::<Vec<_>>());
    assert_eq!(st.append_counts(), (10, 2));
    assert_eq!(seqs(five).await, (13..=17).collect::<Vec<_>>());

    // A room that is gone: refused as the general path refuses it, and the batch's
    // message to a room that exists is not stored either.
    let got =
        st.append(&[text(all, ann.id, None, "lost?".into()), text(999_999, ann.id, None, "nowhere".into())]).await;
    assert!(matches!(got, Err(StoreError::NotFound)), "{got:?}");
    assert_eq!(st.append_counts(), (10, 3));
    assert_eq!(seqs(all).await, (1..=20).collect::<Vec<_>>());
    let mut last = st.last_seqs(&[all, five]).await.unwrap();
    last.sort_unstable();
    assert_eq!(last, vec![(all, 20), (five, 17)]);

    // Two nodes, four writers, 30 batches of 3 messages each into one room.
    let other = std::sync::Arc::new(store::postgres::open(&url, 4).await.expect("second store opens"));
    let counts = || {
        let ((s1, r1), (s2, r2)) = (st.append_counts(), other.append_counts());
        (s1 + s2, r1 + r2)
    };
    let author = ann.id;
    let write = |room: i64, tag: &'static str| {
        let mut writers = Vec::new();
        for w in 0..4 {
            let node = if w % 2 == 0 { st.clone() } else { other.clone() };
            writers.push(tokio::spawn(async move {
                for k in 0..30 {
                    let batch: Vec<NewMessage> =
                        (0..3).map(|i| text(room, author, Some(format!("{tag}{w}-{k}-{i}")), "x".into())).collect();
                    node.append(&batch).await.expect("append");
                }
            }));
        }
        async move {
            for w in writers {
                w.await.expect("writer");
            }
        }
    };
    // A room that keeps more than the writers send: a batch that waited for the other
    // node's lock still goes in one statement, however long it waited (its trim
    // cannot reach past its snapshot).
    let big = st.create_room(new_room("one-big", ann.id, "", Retention::last_messages(1000))).await.unwrap().id;
    write(big, "big").await;
    assert_eq!(counts(), (10 + 120, 3), "no batch retaken");
    assert_eq!(seqs(big).await, (1..=360).collect::<Vec<_>>());
    // A room that keeps 100 of the 360: batches trim while the other node writes. A
    // batch whose wait for the lock spanned 33 or more of the others' batches would
    // trim past its snapshot and is retaken (its only lost bet here). A loaded CI run
    // did retake one, so how many is not asserted; the room keeps exactly its last 100
    // either way.
    let hundred = st.create_room(new_room("one-hundred", ann.id, "", Retention::last_messages(100))).await.unwrap().id;
    write(hundred, "hundred").await;
    let (short, retaken) = counts();
    assert_eq!(short + retaken, 10 + 3 + 240, "each batch counted once");
    assert_eq!(seqs(hundred).await, (261..=360).collect::<Vec<_>>(), "keep the last 100");
    // A room that keeps little: a batch that waited must not trim from its older
    // snapshot, or the other node's rows would outlive the retention.
    let four = st.create_room(new_room("one-four", ann.id, "", Retention::last_messages(4))).await.unwrap().id;
    write(four, "four").await;
    let (short, retaken) = counts();
    assert_eq!(short + retaken, 10 + 3 + 360, "each batch counted once");
    assert_eq!(seqs(four).await, (357..=360).collect::<Vec<_>>(), "short {short}, retaken {retaken}");
}

/// Before PostgreSQL and MariaDB trimmed DMs at reads, what a read made deletable
/// stayed until the DM's next send. The upgrade deletes those messages once, and
/// nothing held: ann's 1, 2 and 4 (bob has read to 4, the cut is 4), not her 5 (past
/// the cut) nor bob's (ann has read nothing), nor a room's 3 (rooms are trimmed by the
/// cut alone, at send). SQLite's migration is checked the same way in `store::sqlite`.
async fn upgrade_trims_what_reads_made_deletable(b: Backend) {
    use sqlx::{AnyConnection, Connection, Executor};
    let (url, migration) = match b {
        Backend::Postgres => {
            (common::fresh_pg_database().await, include_str!("../migrations/postgres/0012_dm_trim_at_read.sql"))
        }
        Backend::Mysql => {
            (common::fresh_mysql_database().await, include_str!("../migrations/mysql/0011_dm_trim_at_read.sql"))
        }
        other => unreachable!("{other:?}"),
    };
    // The store migrates the fresh database (the migration deletes nothing there).
    drop(store::connect(&url, 2).await.expect("store opens"));
    let mut conn = AnyConnection::connect(&url).await.expect("connect");
    for sql in [
        "INSERT INTO users (id, email, email_lc, username, username_lc, first_name, last_name, password_hash, created_at)
           VALUES (1, 'a@x', 'a@x', 'ann', 'ann', 'A', 'A', 'x', 0), (2, 'b@x', 'b@x', 'bob', 'bob', 'B', 'B', 'x', 0)",
        "INSERT INTO rooms (id, kind, dm_key, topic, keep_messages, last_seq, created_at) VALUES (3, 'dm', '1:2', '', 2, 6, 0)",
        "INSERT INTO rooms (id, kind, name, name_lc, topic, keep_messages, last_seq, created_at)
           VALUES (4, 'room', 'r', 'r', '', 2, 6, 0)",
        "INSERT INTO memberships (room_id, user_id, joined_at, last_read_seq) VALUES (3, 1, 0, 0), (3, 2, 0, 4), (4, 1, 0, 0), (4, 2, 0, 6)",
        "INSERT INTO messages (room_id, seq, author_id, kind, body, created_at) VALUES
           (3, 1, 1, 'text', 'a', 0), (3, 2, 1, 'text', 'a', 0), (3, 3, 2, 'text', 'b', 0),
           (3, 4, 1, 'text', 'a', 0), (3, 5, 1, 'text', 'a', 0), (3, 6, 2, 'text', 'b', 0),
           (4, 3, 1, 'text', 'a', 0), (4, 6, 1, 'text', 'a', 0)",
        migration,
    ] {
        conn.execute(sqlx::AssertSqlSafe(sql)).await.expect(sql);
    }
    let kept: Vec<(i64, i64)> = sqlx::query_as("SELECT room_id, seq FROM messages ORDER BY room_id, seq")
        .fetch_all(&mut conn)
        .await
        .expect("messages");
    assert_eq!(kept, [(3, 3), (3, 5), (3, 6), (4, 3), (4, 6)]);
}

mod upgrade {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_trims_what_reads_made_deletable() {
        super::upgrade_trims_what_reads_made_deletable(super::Backend::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_trims_what_reads_made_deletable() {
        super::upgrade_trims_what_reads_made_deletable(super::Backend::Mysql).await
    }
}
