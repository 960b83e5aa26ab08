//! Real-time chat over real WebSockets, on SQLite and PostgreSQL: rooms, DMs, presence,
//! retention, resume, idempotent sends, errors, and slow consumers.

mod common;

use std::time::Duration;

use common::*;
use rtm::{
    domain::MessageKind,
    store::NewMessage,
    ws::protocol::{EventKind, ServerFrame},
};
use serde_json::json;

fn is_msg(room: i64, text: &'static str) -> impl FnMut(&ServerFrame) -> bool {
    move |f| matches!(f, ServerFrame::Message(e) if e.room == room && e.text == text)
}

async fn two_users_chat_both_ways(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("general", json!({"topic": "all things"})).await;
    let (s, body) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let s1 = wa.say(room, "hello bob").await.expect("kept");
    let (f, _) = wb.recv_until(is_msg(room, "hello bob")).await;
    let ServerFrame::Message(e) = f else { unreachable!() };
    assert_eq!((e.seq, e.author.username.as_str()), (Some(s1), "ann"));
    assert!(e.client_id.is_some() && e.ts > 0);
    let s2 = wb.say(room, "hi ann").await.expect("kept");
    assert_eq!(s2, s1 + 1, "per-room sequence grows by one");
    wa.recv_until(is_msg(room, "hi ann")).await;
}

async fn one_socket_carries_three_rooms(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let mut rooms = vec![];
    for name in ["alpha", "beta", "gamma"] {
        let r = ann.create_room(name, json!({})).await;
        assert_eq!(bob.post(&format!("/api/rooms/{r}/join"), json!({})).await.0, 200);
        rooms.push(r);
    }
    let mut wb = bob.ws().await;
    let hello_ids: Vec<i64> = wb.hello_rooms().iter().map(|r| r.id).collect();
    for r in &rooms {
        assert!(hello_ids.contains(r), "hello lists room {r}");
    }
    let mut wa = ann.ws().await;
    for (i, r) in rooms.iter().enumerate() {
        wa.say(*r, &format!("to room {i}")).await;
    }
    let mut got = vec![];
    while got.len() < 3 {
        if let ServerFrame::Message(e) = wb.recv().await {
            got.push((e.room, e.text));
        }
    }
    for (i, r) in rooms.iter().enumerate() {
        assert!(got.contains(&(*r, format!("to room {i}"))), "{got:?}");
    }
}

async fn rooms_are_isolated(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let eve = srv.user("eve").await;
    let public = ann.create_room("open-room", json!({})).await;
    let private = ann.create_room("secret-room", json!({"private": true})).await;
    let mut we = eve.ws().await;
    let mut wa = ann.ws().await;
    wa.say(public, "members only").await;
    wa.say(private, "very secret").await;
    let leaked = we.drain(Duration::from_millis(500)).await;
    assert!(texts_in(&leaked, public).is_empty() && texts_in(&leaked, private).is_empty(), "{leaked:?}");
    // Not a member: every command is refused; the private room does not even exist.
    let codes = [(public, "not_a_member"), (private, "room_not_found")];
    for (room, code) in codes {
        for cmd in [
            json!({"type": "send", "room": room, "client_id": "x1", "text": "hi"}),
            json!({"type": "history", "room": room}),
            json!({"type": "resume", "room": room, "after": 0}),
        ] {
            match we.request(cmd.clone()).await {
                ServerFrame::Error { code: c, .. } => assert_eq!(c, code, "{cmd}"),
                other => panic!("{cmd} should fail: {other:?}"),
            }
        }
    }
    // Private rooms are invisible to outsiders, everywhere.
    let (_, listing) = eve.get("/api/rooms").await;
    let names: Vec<&str> = listing["rooms"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains(&"open-room") && !names.contains(&"secret-room"), "{names:?}");
    assert_eq!(eve.post(&format!("/api/rooms/{private}/join"), json!({})).await.0, 404);
    assert_eq!(eve.get(&format!("/api/rooms/{private}/members")).await.0, 404);
    assert_eq!(eve.get(&format!("/api/rooms/{private}/messages")).await.0, 404);
    // Invited by the owner, eve is in.
    assert_eq!(ann.post(&format!("/api/rooms/{private}/members"), json!({"username": "eve"})).await.0, 204);
    let (f, _) = we.recv_until(|f| matches!(f, ServerFrame::RoomJoined { .. })).await;
    let ServerFrame::RoomJoined { room } = f else { unreachable!() };
    assert_eq!(room.id, private);
    wa.say(private, "welcome eve").await;
    we.recv_until(is_msg(private, "welcome eve")).await;
    // Only the owner may invite or remove.
    let bob = srv.user("bob").await;
    assert_eq!(eve.post(&format!("/api/rooms/{private}/members"), json!({"username": "bob"})).await.0, 403);
    let eve_id = eve.id().await;
    assert_eq!(ann.delete(&format!("/api/rooms/{private}/members/{eve_id}")).await.0, 204);
    let (f, _) = we.recv_until(|f| matches!(f, ServerFrame::RoomLeft { .. })).await;
    assert_eq!(f, ServerFrame::RoomLeft { room: private });
    wa.say(private, "after removal").await;
    assert!(texts_in(&we.drain(Duration::from_millis(400)).await, private).is_empty());
    drop(bob);
}

async fn join_leave_notices_and_welcome(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("lobby", json!({})).await;
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    match wb.request(json!({"type": "join", "room": room})).await {
        ServerFrame::Ack { room: Some(r), .. } => assert_eq!(r, room),
        other => panic!("join: {other:?}"),
    }
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Notice(e) if e.kind == EventKind::Joined)).await;
    let ServerFrame::Notice(joined) = f else { unreachable!() };
    assert_eq!(joined.text, "bob joined");
    assert!(joined.seq.is_some(), "join notices are kept");
    let (f, _) = wb.recv_until(|f| matches!(f, ServerFrame::Notice(e) if e.kind == EventKind::Welcome)).await;
    let ServerFrame::Notice(welcome) = f else { unreachable!() };
    assert_eq!((welcome.room, welcome.seq), (room, None));
    assert!(welcome.text.contains("lobby"));
    // The welcome is bob's alone.
    let ann_saw = wa.drain(Duration::from_millis(300)).await;
    assert!(
        !ann_saw.iter().any(|f| matches!(f, ServerFrame::Notice(e) if e.kind == EventKind::Welcome)),
        "{ann_saw:?}"
    );
    assert!(matches!(wb.request(json!({"type": "leave", "room": room})).await, ServerFrame::Ack { .. }));
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Notice(e) if e.kind == EventKind::Left)).await;
    let ServerFrame::Notice(left) = f else { unreachable!() };
    assert_eq!(left.text, "bob left");
    // A second join: a notice again, but no second welcome.
    wb.request(json!({"type": "join", "room": room})).await;
    wa.recv_until(|f| matches!(f, ServerFrame::Notice(e) if e.kind == EventKind::Joined)).await;
    let again = wb.drain(Duration::from_millis(400)).await;
    assert!(!again.iter().any(|f| matches!(f, ServerFrame::Notice(e) if e.kind == EventKind::Welcome)), "{again:?}");
    // Notices are in history, in order.
    match wa.request(json!({"type": "history", "room": room})).await {
        ServerFrame::History { events, .. } => {
            let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
            assert_eq!(kinds, vec![EventKind::Joined, EventKind::Left, EventKind::Joined]);
        }
        other => panic!("{other:?}"),
    }
}

async fn presence_across_two_tabs(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("hall", json!({})).await;
    bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    let ann_id = ann.id().await;
    let bob_id = bob.id().await;
    let mut wa = ann.ws().await;
    let mut tab1 = bob.ws().await;
    // Bob's first tab gets the room's online list (ann and himself).
    let (f, _) = tab1.recv_until(|f| matches!(f, ServerFrame::Presence { room: r, .. } if *r == room)).await;
    let ServerFrame::Presence { online, .. } = f else { unreachable!() };
    assert!(online.contains(&ann_id) && online.contains(&bob_id), "{online:?}");
    let online_change = move |on: bool| move |f: &ServerFrame| matches!(f, ServerFrame::PresenceChange { user, online, .. } if *user == bob_id && *online == on);
    wa.recv_until(online_change(true)).await;
    let mut tab2 = bob.ws().await;
    // A second tab changes nothing for others; closing one of two changes nothing either.
    tab1.stream.close(None).await.ok();
    drop(tab1);
    let quiet = wa.drain(Duration::from_millis(600)).await;
    assert!(
        !quiet.iter().any(|f| matches!(f, ServerFrame::PresenceChange { user, .. } if *user == bob_id)),
        "{quiet:?}"
    );
    let (_, members) = ann.get(&format!("/api/rooms/{room}/members")).await;
    let bob_row = members["members"].as_array().unwrap().iter().find(|m| m["id"] == bob_id).cloned().unwrap();
    assert_eq!(bob_row["online"], true);
    tab2.stream.close(None).await.ok();
    drop(tab2);
    wa.recv_until(online_change(false)).await;
    let (_, users) = ann.get("/api/users?q=bob").await;
    assert_eq!(users["users"][0]["online"], false);
}

async fn retention_last_n_days_and_ephemeral(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let store = srv.state.chat.store().clone();
    let last3 = ann.create_room("last-three", json!({"retention": {"keep_messages": 3}})).await;
    let days = ann.create_room("one-day", json!({"retention": {"keep_days": 1}})).await;
    let days3 = ann.create_room("three-days", json!({"retention": {"keep_days": 3}})).await;
    let eph = ann.create_room("ephemeral", json!({"retention": {"ephemeral": true}})).await;
    let bob = srv.user("bob").await;
    bob.post(&format!("/api/rooms/{eph}/join"), json!({})).await;
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    for i in 0..6 {
        wa.say(last3, &format!("m{i}")).await;
    }
    assert_eq!(store.count_messages(last3).await.unwrap(), 3, "only the last three rows remain");
    match wa.request(json!({"type": "history", "room": last3})).await {
        ServerFrame::History { events, more, .. } => {
            assert_eq!(events.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["m3", "m4", "m5"]);
            assert!(!more);
        }
        other => panic!("{other:?}"),
    }
    // Keep-days: an old row (written straight to the store) is pruned, a new one stays.
    let ann_id = ann.id().await;
    let two_days_ago = rtm::chat::now_ms() - 2 * 86_400_000;
    let old = NewMessage::plain(days, ann_id, MessageKind::Text, "old".into(), two_days_ago);
    // As old, in a room that keeps three days: it stays (each room's own policy counts,
    // not the shortest one).
    let kept = NewMessage::plain(days3, ann_id, MessageKind::Text, "kept".into(), two_days_ago);
    store.append(&[old, kept]).await.unwrap();
    wa.say(days, "fresh").await;
    assert_eq!(store.count_messages(days).await.unwrap(), 2);
    assert_eq!(srv.state.chat.prune().await.unwrap(), 1);
    assert_eq!(store.count_messages(days).await.unwrap(), 1, "the two-day-old row is gone");
    assert_eq!(store.count_messages(days3).await.unwrap(), 1, "a room keeping three days keeps it");
    // Ephemeral: delivered live, acked without seq, nothing stored.
    assert_eq!(wa.say(eph, "now you see me").await, None);
    let (f, _) = wb.recv_until(is_msg(eph, "now you see me")).await;
    let ServerFrame::Message(e) = f else { unreachable!() };
    assert_eq!(e.seq, None);
    assert_eq!(store.count_messages(eph).await.unwrap(), 0, "an ephemeral room keeps no rows");
    match wa.request(json!({"type": "history", "room": eph})).await {
        ServerFrame::History { events, .. } => assert!(events.is_empty()),
        other => panic!("{other:?}"),
    }
    // Tightening the policy applies at once.
    let (s, _) = ann.patch(&format!("/api/rooms/{last3}"), json!({"retention": {"keep_messages": 1}})).await;
    assert_eq!(s, 200);
    assert_eq!(store.count_messages(last3).await.unwrap(), 1);
    // Only the owner changes retention.
    let (s, body) = bob.patch(&format!("/api/rooms/{eph}"), json!({"topic": "mine now"})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (403, Some("forbidden")));
}

async fn offline_dm_delivered_once_on_reconnect(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let bob_id = bob.id().await;
    let (s, body) = ann.post("/api/dms", json!({"user_id": bob_id})).await;
    assert_eq!(s, 200, "{body}");
    let dm = body["room"]["id"].as_i64().unwrap();
    assert_eq!(body["room"]["name"], "bob");
    let mut wa = ann.ws().await;
    wa.say(dm, "are you there?").await;
    wa.say(dm, "call me").await;
    // Bob comes online: the hello shows the held messages as unread.
    let mut wb = bob.ws().await;
    let info = wb.hello_rooms().into_iter().find(|r| r.id == dm).expect("dm in hello");
    assert_eq!((info.unread, info.read_seq, info.name.as_str()), (2, 0, "ann"));
    let after = info.read_seq;
    let ServerFrame::Resumed { events, last_seq, .. } =
        wb.request(json!({"type": "resume", "room": dm, "after": after})).await
    else {
        panic!("resume failed")
    };
    assert_eq!(events.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["are you there?", "call me"]);
    // Not also pushed live: exactly once.
    assert!(texts_in(&wb.drain(Duration::from_millis(300)).await, dm).is_empty());
    wb.request(json!({"type": "read", "room": dm, "seq": last_seq})).await;
    drop(wb);
    let wb2 = bob.ws().await;
    let info = wb2.hello_rooms().into_iter().find(|r| r.id == dm).expect("dm");
    assert_eq!((info.unread, info.read_seq), (0, last_seq));
    // Third parties cannot read the pair's DM.
    let eve = srv.user("eve").await;
    let mut we = eve.ws().await;
    assert!(matches!(we.request(json!({"type": "history", "room": dm})).await, ServerFrame::Error { .. }));
    assert_eq!(eve.get(&format!("/api/rooms/{dm}/messages")).await.0, 404);
}

/// Opens the DM from `from` to `to` (the answer must be 200): its room id.
async fn open_dm(from: &Client, to: &Client) -> i64 {
    let (s, body) = from.post("/api/dms", json!({"user_id": to.id().await})).await;
    assert_eq!(s, 200, "{body}");
    body["room"]["id"].as_i64().unwrap()
}

async fn dm_is_never_pruned_before_received(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.default_keep_messages = 2).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let dm = open_dm(&ann, &bob).await;
    let mut wa = ann.ws().await;
    for i in 0..5 {
        wa.say(dm, &format!("dm {i}")).await;
    }
    // Keep-last-2 would drop three, but bob has read none of them.
    assert_eq!(srv.state.chat.store().count_messages(dm).await.unwrap(), 5);
    let mut wb = bob.ws().await;
    let ServerFrame::Resumed { events, last_seq, .. } =
        wb.request(json!({"type": "resume", "room": dm, "after": 0})).await
    else {
        panic!()
    };
    assert_eq!(events.len(), 5);
    wb.request(json!({"type": "read", "room": dm, "seq": last_seq})).await;
    wa.request(json!({"type": "read", "room": dm, "seq": last_seq})).await;
    wa.say(dm, "now prune").await;
    assert_eq!(srv.state.chat.store().count_messages(dm).await.unwrap(), 2);
}

async fn dm_read_then_next_event_trims_as_protocol_says(b: Backend) {
    // PROTOCOL §5.6's run: keep 3, alice sends 6 while bob is away, bob reads to 6,
    // one more arrives. The read itself deletes 1 to 3 (then older than the last 3),
    // on every database. Then history holds [5, 6, 7].
    let srv = TestServer::start_with(b, |c| c.default_keep_messages = 3).await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let dm = open_dm(&alice, &bob).await;
    let mut wa = alice.ws().await;
    for i in 1..=6 {
        wa.say(dm, &format!("dm {i}")).await;
    }
    assert_eq!(seqs_kept(&mut wa, dm).await, [1, 2, 3, 4, 5, 6], "held: bob has read nothing");
    let mut wb = bob.ws().await;
    wb.request(json!({"type": "read", "room": dm, "seq": 6})).await;
    assert_eq!(seqs_kept(&mut wb, dm).await, [4, 5, 6], "the read itself deletes what it lets go");
    wa.say(dm, "dm 7").await;
    assert_eq!(seqs_kept(&mut wb, dm).await, [5, 6, 7]);
}

async fn dm_trims_each_authors_messages_by_what_the_other_read(b: Backend) {
    // Keep the last 2, per author bounded by what the other member has read: ann's
    // messages go once bob has read them, bob's once ann has, whatever the order they
    // were written in. The trim reads each author's rows as a range of its own index;
    // these are the answers it must keep giving.
    let srv = TestServer::start_with(b, |c| c.default_keep_messages = 2).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let dm = open_dm(&ann, &bob).await;
    let (mut wa, mut wb) = (ann.ws().await, bob.ws().await);
    for (by_ann, text) in
        [(true, "a1"), (true, "a2"), (true, "a3"), (false, "b4"), (false, "b5"), (true, "a6"), (false, "b7")]
    {
        let w = if by_ann { &mut wa } else { &mut wb };
        w.say(dm, text).await;
    }
    assert_eq!(srv.state.chat.store().count_messages(dm).await.unwrap(), 7, "nobody has read: all held");
    wb.request(json!({"type": "read", "room": dm, "seq": 6})).await;
    // A plain send (each database's short path): ann's 1, 2, 3 and 6 are read by bob
    // and past the last 2; bob's are held, ann has read nothing.
    wa.say(dm, "a8").await;
    assert_eq!(seqs_kept(&mut wa, dm).await, [4, 5, 7, 8]);
    wa.request(json!({"type": "read", "room": dm, "seq": 4})).await;
    // A send with a mention (the general path): bob's 4 is read by ann and past the
    // last 2; his 5 and 7 are not read.
    wb.say(dm, "@ann b9").await;
    assert_eq!(seqs_kept(&mut wb, dm).await, [5, 7, 8, 9]);
}

async fn dm_retention_follows_every_send_and_read(b: Backend) {
    // Both members send and read in a pseudo-random order. After every send and every
    // read the DM keeps exactly the messages that are past neither the cut (the last
    // 3) nor the other member's read marker. Every database trims at reads too
    // (SQLite each trim over only the seqs its step made deletable, so any step left
    // out leaves a message here).
    let srv = TestServer::start_with(b, |c| c.default_keep_messages = 3).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let dm = open_dm(&ann, &bob).await;
    let mut ws = [ann.ws().await, bob.ws().await];
    let mut sent: Vec<(i64, usize)> = Vec::new(); // (seq, author: 0 ann, 1 bob)
    let mut read = [0i64; 2];
    let mut x: u32 = 2026;
    for step in 0..80 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let who = ((x >> 16) % 2) as usize;
        if (x >> 20) % 5 < 3 {
            ws[who].say(dm, &format!("m{step}")).await;
            sent.push((sent.len() as i64 + 1, who));
        } else {
            let upto = i64::from((x >> 8) % 256) % (sent.len() as i64 + 1);
            ws[who].request(json!({"type": "read", "room": dm, "seq": upto})).await;
            read[who] = read[who].max(upto);
        }
        let last = sent.len() as i64;
        let expected: Vec<i64> =
            sent.iter().filter(|(seq, by)| *seq > last - 3 || *seq > read[1 - by]).map(|(seq, _)| *seq).collect();
        assert_eq!(seqs_kept(&mut ws[who], dm).await, expected, "after step {step}, markers {read:?}");
    }
    assert!(sent.len() > 30 && read.iter().all(|r| *r > 10), "the walk sent and read: {} {read:?}", sent.len());
}

/// The seqs a room keeps, oldest first, as `history` gives them.
async fn seqs_kept(w: &mut common::Ws, room: i64) -> Vec<i64> {
    match w.request(json!({"type": "history", "room": room, "limit": 100})).await {
        ServerFrame::History { events, more, .. } => {
            assert!(!more);
            events.iter().filter_map(|e| e.seq).collect()
        }
        other => panic!("{other:?}"),
    }
}

async fn held_dms_are_bounded_per_conversation(b: Backend) {
    // Unread DMs are held beyond retention, but not without bound: past
    // --max-held-dms the oldest go even unread, and only in that one conversation.
    let srv = TestServer::start_with(b, |c| {
        c.default_keep_messages = 2;
        c.max_held_dms = 5;
    })
    .await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let cy = srv.user("cyd").await;
    let flood = open_dm(&ann, &bob).await;
    let quiet = open_dm(&cy, &bob).await;
    let mut wc = cy.ws().await;
    wc.say(quiet, "the one that matters").await;
    let mut wa = ann.ws().await;
    for i in 0..12 {
        wa.say(flood, &format!("spam {i}")).await;
    }
    let store = srv.state.chat.store();
    assert_eq!(store.count_messages(flood).await.unwrap(), 5, "held at most 5");
    assert_eq!(store.count_messages(quiet).await.unwrap(), 1, "another sender's message is untouched");
    let mut wb = bob.ws().await;
    let f = wb.request(json!({"type": "resume", "room": flood, "after": 0})).await;
    assert!(matches!(f, ServerFrame::Gap { earliest_seq: Some(8), last_seq: 12, .. }), "{f:?}");
    let f = wb.request(json!({"type": "resume", "room": flood, "after": 7})).await;
    let ServerFrame::Resumed { events, .. } = f else { panic!("{f:?}") };
    assert_eq!(texts_in_events(&events), ["spam 7", "spam 8", "spam 9", "spam 10", "spam 11"]);
}

fn texts_in_events(events: &[rtm::ws::protocol::Event]) -> Vec<&str> {
    events.iter().map(|e| e.text.as_str()).collect()
}

async fn resume_returns_exactly_the_missed(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("resumable", json!({})).await;
    bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    wa.say(room, "before").await;
    let (f, _) = wb.recv_until(is_msg(room, "before")).await;
    let ServerFrame::Message(seen) = f else { unreachable!() };
    drop(wb);
    for i in 0..7 {
        wa.say(room, &format!("missed {i}")).await;
    }
    let mut wb = bob.ws().await;
    let ServerFrame::Resumed { events, more, .. } =
        wb.request(json!({"type": "resume", "room": room, "after": seen.seq})).await
    else {
        panic!()
    };
    assert!(!more);
    let texts: Vec<String> = events.iter().map(|e| e.text.clone()).collect();
    assert_eq!(texts, (0..7).map(|i| format!("missed {i}")).collect::<Vec<_>>());
    let seqs: Vec<i64> = events.iter().filter_map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in order, no holes: {seqs:?}");
    assert_eq!(seqs[0], seen.seq.unwrap() + 1);
    // Up to date: nothing more.
    let ServerFrame::Resumed { events, .. } =
        wb.request(json!({"type": "resume", "room": room, "after": seqs[6]})).await
    else {
        panic!()
    };
    assert!(events.is_empty());
    // When retention no longer reaches back: a plain gap.
    let small = ann.create_room("small", json!({"retention": {"keep_messages": 2}})).await;
    bob.post(&format!("/api/rooms/{small}/join"), json!({})).await;
    for i in 0..6 {
        wa.say(small, &format!("s{i}")).await;
    }
    match wb.request(json!({"type": "resume", "room": small, "after": 1})).await {
        ServerFrame::Gap { earliest_seq, last_seq, .. } => {
            assert!(earliest_seq.unwrap() > 2);
            assert!(last_seq >= 7);
        }
        other => panic!("expected a gap: {other:?}"),
    }
}

async fn duplicate_client_id_stored_once(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("idem", json!({})).await;
    bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let send = json!({"type": "send", "room": room, "client_id": "same-id", "text": "only once"});
    let ServerFrame::Ack { seq: s1, duplicate: d1, .. } = wa.request(send.clone()).await else { panic!() };
    let ServerFrame::Ack { seq: s2, duplicate: d2, .. } = wa.request(send.clone()).await else { panic!() };
    assert_eq!((s1, d1), (s2, false));
    assert!(d2, "the retry is acknowledged as a duplicate");
    let store = srv.state.chat.store();
    let hist = store.history(room, None, 100).await.unwrap();
    assert_eq!(hist.iter().filter(|m| m.body == "only once").count(), 1);
    let got = wb.drain(Duration::from_millis(500)).await;
    assert_eq!(texts_in(&got, room), vec!["only once"]);
}

async fn bad_input_gets_error_frames_and_socket_survives(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("errors", json!({})).await;
    let other = srv.user("zed").await.create_room("zeds-room", json!({})).await;
    let mut wa = ann.ws().await;
    wa.send_raw("{this is not json").await;
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(f, ServerFrame::Error { ref code, id: None, .. } if code == "bad_json"), "{f:?}");
    for (cmd, want) in [
        (json!({"type": "dance"}), "unknown_command"),
        (json!({"type": "send", "room": "nope"}), "bad_request"),
        (json!({"type": "send", "room": room, "client_id": "big", "text": "x".repeat(4001)}), "text_too_long"),
        (json!({"type": "send", "room": room, "client_id": "blank", "text": "   "}), "empty_text"),
        (json!({"type": "send", "room": room, "client_id": "nul", "text": "a\u{0}b"}), "invalid_text"),
        (json!({"type": "send", "room": other, "client_id": "c", "text": "hi"}), "not_a_member"),
        (json!({"type": "send", "room": 999_999, "client_id": "c", "text": "hi"}), "room_not_found"),
    ] {
        match wa.request(cmd.clone()).await {
            ServerFrame::Error { code, message, .. } => {
                assert_eq!(code, want, "{cmd}");
                assert!(!message.is_empty());
            }
            f => panic!("{cmd}: {f:?}"),
        }
    }
    // Exactly 4000 characters (multi-byte ones count as one) is fine.
    assert!(wa.say(room, &"é".repeat(4000)).await.is_some());
    // The socket is still open and working.
    assert!(matches!(wa.request(json!({"type": "ping"})).await, ServerFrame::Pong { .. }));
    assert!(wa.say(room, "still here").await.is_some());
}

async fn handshake_needs_credentials_and_our_origin(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    assert_eq!(Ws::connect(srv.addr, None, Some(&srv.origin()), None).await.err(), Some(401));
    let cookie = ann.cookie.clone().unwrap();
    assert_eq!(Ws::connect(srv.addr, Some(&cookie), Some("http://evil.example"), None).await.err(), Some(403));
    assert_eq!(Ws::connect(srv.addr, Some(&cookie), None, None).await.err(), Some(403));
    assert!(Ws::connect(srv.addr, Some(&cookie), Some(&srv.origin()), None).await.is_ok());
}

/// The WebSocket edges, over raw bytes where a library would hide them: a command
/// sent in the same packet as the handshake, a client Close (answered with a Close),
/// and an oversized frame (said `message_too_big`, then closed with 1009; more cases
/// in tests/ws_conformance.rs).
async fn websocket_handshake_close_and_oversized_frames(b: Backend) {
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    let srv = TestServer::start_with(b, |c| c.max_frame_bytes = 4096).await;
    let ann = srv.user("ann").await;
    let cookie = ann.cookie.clone().unwrap();

    // Handshake and a masked `ping` command in one write.
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Cookie: {cookie}\r\nOrigin: {}\r\n\r\n",
        srv.addr,
        srv.origin()
    )
    .into_bytes();
    let payload = br#"{"type":"ping","id":"early"}"#;
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    bytes.extend_from_slice(&[0x81, 0x80 | payload.len() as u8]);
    bytes.extend_from_slice(&mask);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&bytes).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(WAIT, async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the pong: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(r#"{"type":"pong","id":"early"}"#) {
                return;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).to_string();
    assert!(answered.is_ok(), "no pong for the early command: {text}");
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455 accept key: {text}");
    let hello_at = text.find(r#""type":"hello""#).unwrap();
    assert!(hello_at < text.find(r#""type":"pong""#).unwrap(), "the hello comes first");

    // A client Close is answered with a Close, and the socket ends.
    let mut ws = ann.ws().await;
    ws.stream.close(None).await.unwrap();
    let reply = tokio::time::timeout(WAIT, ws.stream.next()).await.unwrap();
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");

    // A frame over the limit: `closing` `message_too_big`, then a Close frame (1009).
    let mut ws = ann.ws().await;
    ws.send_raw(&format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(5000))).await;
    let (f, _) = ws.recv_until(|f| matches!(f, ServerFrame::Closing { .. })).await;
    assert!(matches!(f, ServerFrame::Closing { ref code, .. } if code == "message_too_big"), "{f:?}");
    let mut close = None;
    while let Ok(Some(m)) = tokio::time::timeout(WAIT, ws.stream.next()).await {
        if let Ok(Message::Close(c)) = m {
            close = c;
            break;
        }
    }
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));
    // The account is fine: a new socket works.
    let mut ws = ann.ws().await;
    assert!(matches!(ws.request(json!({"type": "ping"})).await, ServerFrame::Pong { .. }));
}

async fn sign_out_closes_that_sessions_sockets(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let mut other = srv.client();
    other.login("ann", &password_of("ann")).await;
    let mut w1 = ann.ws().await;
    let mut w2 = other.ws().await;
    assert_eq!(ann.post("/api/logout", json!({})).await.0, 204);
    let (f, _) = w1.recv_until(|f| matches!(f, ServerFrame::Closing { .. })).await;
    assert!(matches!(f, ServerFrame::Closing { ref code, .. } if code == "session_ended"));
    assert!(w1.try_recv(WAIT).await.is_none(), "then the socket closes");
    // The other session's socket lives on.
    assert!(matches!(w2.request(json!({"type": "ping"})).await, ServerFrame::Pong { .. }));
}

async fn rate_limit_is_an_error_not_a_disconnect(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.rate_messages_per_10s = 3).await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("chatty", json!({})).await;
    let mut wa = ann.ws().await;
    for i in 0..3 {
        assert!(wa.say(room, &format!("ok {i}")).await.is_some());
    }
    match wa.request(json!({"type": "send", "room": room, "client_id": "4th", "text": "too many"})).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, "rate_limited"),
        f => panic!("{f:?}"),
    }
    assert!(matches!(wa.request(json!({"type": "ping"})).await, ServerFrame::Pong { .. }));
}

async fn history_pages_backwards(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("pages", json!({})).await;
    let mut wa = ann.ws().await;
    for i in 0..5 {
        wa.say(room, &format!("p{i}")).await;
    }
    let ServerFrame::History { events, more, .. } =
        wa.request(json!({"type": "history", "room": room, "limit": 2})).await
    else {
        panic!()
    };
    assert_eq!(events.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["p3", "p4"]);
    assert!(more);
    let before = events[0].seq;
    let ServerFrame::History { events, more, .. } =
        wa.request(json!({"type": "history", "room": room, "limit": 2, "before": before})).await
    else {
        panic!()
    };
    assert_eq!(events.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
    assert!(more);
    let (s, body) = ann.get(&format!("/api/rooms/{room}/messages?limit=100")).await;
    assert_eq!(s, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 5);
}

async fn slow_consumer_is_cut_off_others_keep_receiving(b: Backend) {
    let srv = TestServer::start_with(b, |c| {
        c.outbox_frames = 16;
        c.rate_messages_per_10s = 1_000_000;
    })
    .await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let room = ann.create_room("firehose", json!({"retention": {"keep_messages": 100}})).await;
    bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    carl.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    // Carl connects and then never reads.
    let _carl_ws = carl.ws().await;
    const N: usize = 3000;
    let big = "x".repeat(3900);
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < N {
            match wb.try_recv(Duration::from_secs(30)).await {
                Some(ServerFrame::Message(e)) if e.text.len() == 3900 => n += 1,
                Some(_) => {}
                None => break,
            }
        }
        n
    });
    for _ in 0..N {
        wa.say(room, &big).await;
        // Ann's own echoes are not under test; dropping them keeps the harness linear.
        wa.clear();
    }
    assert_eq!(reader.await.unwrap(), N, "a reader that keeps up gets every message");
    assert!(srv.state.hub.slow_consumers.load(std::sync::atomic::Ordering::Relaxed) >= 1, "carl was cut off");
    // Carl's connection is gone from the hub (it was closed, not left to grow).
    let deadline = tokio::time::Instant::now() + WAIT;
    while srv.state.hub.user_connections(carl.id().await) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(srv.state.hub.user_connections(carl.id().await), 0);
}

async fn typing_read_markers_names_and_search(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("General", json!({"topic": "Talk about anything"})).await;
    // Names are unique ignoring case, and the rule is stated.
    let (s, body) = bob.post("/api/rooms", json!({"name": "general"})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("room_name_taken")));
    let (s, body) = bob.post("/api/rooms", json!({"name": "x"})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("invalid_room_name")));
    assert!(body["error"]["message"].as_str().unwrap().contains("2 to 40"));
    // Search by name or topic.
    let (_, found) = bob.get("/api/rooms?q=anyth").await;
    assert_eq!(found["rooms"][0]["id"], room);
    assert_eq!(found["rooms"][0]["is_member"], false);
    bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    let mut wa = ann.ws().await;
    let mut wa2 = ann.ws().await;
    let mut wb = bob.ws().await;
    // Typing reaches the others, live only.
    wb.send_json(json!({"type": "typing", "room": room})).await;
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Typing { .. })).await;
    let ServerFrame::Typing { room: r, user } = f else { unreachable!() };
    assert_eq!((r, user.username.as_str()), (room, "bob"));
    let seq = wb.say(room, "read me").await.unwrap();
    // A read marker moves forward, never past the end, and reaches the reader's other tabs.
    match wa.request(json!({"type": "read", "room": room, "seq": seq + 100})).await {
        ServerFrame::Ack { seq: Some(s), .. } => assert_eq!(s, seq),
        f => panic!("{f:?}"),
    }
    let (f, _) = wa2.recv_until(|f| matches!(f, ServerFrame::Read { .. })).await;
    assert_eq!(f, ServerFrame::Read { room, seq });
    match wa.request(json!({"type": "read", "room": room, "seq": 1})).await {
        ServerFrame::Ack { seq: Some(s), .. } => assert_eq!(s, seq, "markers never move back"),
        f => panic!("{f:?}"),
    }
    let stored = srv.state.chat.store().history(room, None, 100).await.unwrap();
    assert!(stored.iter().all(|m| m.body != "typing"), "typing is never stored");
    // Nothing about typing is replayed on resume: only kept events come back.
    let ServerFrame::Resumed { events, .. } = wb.request(json!({"type": "resume", "room": room, "after": 0})).await
    else {
        panic!()
    };
    assert!(events.iter().all(|e| matches!(e.kind, EventKind::Text | EventKind::Joined | EventKind::Left)));
}

async fn owner_leaving_hands_over_and_ephemeral_retries_are_not_doubled(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let room = ann.create_room("private-club", json!({"private": true, "retention": {"ephemeral": true}})).await;
    assert_eq!(ann.post(&format!("/api/rooms/{room}/members"), json!({"username": "bob"})).await.0, 204);
    let bob_id = bob.id().await;
    let mut wb = bob.ws().await;
    let mut wa = ann.ws().await;
    // A retried send in an ephemeral room is acknowledged again but delivered once.
    let send = json!({"type": "send", "room": room, "client_id": "eph-1", "text": "once only"});
    let ServerFrame::Ack { seq: None, duplicate: false, .. } = wa.request(send.clone()).await else { panic!() };
    let ServerFrame::Ack { seq: None, duplicate: true, .. } = wa.request(send).await else { panic!() };
    assert_eq!(texts_in(&wb.drain(std::time::Duration::from_millis(400)).await, room), vec!["once only"]);
    // The owner leaves: the room passes to the remaining member, who can invite.
    assert!(matches!(wa.request(json!({"type": "leave", "room": room})).await, ServerFrame::Ack { .. }));
    let (f, _) = wb.recv_until(|f| matches!(f, ServerFrame::RoomUpdated { .. })).await;
    assert!(matches!(f, ServerFrame::RoomUpdated { owner: Some(o), .. } if o == bob_id), "{f:?}");
    assert_eq!(bob.post(&format!("/api/rooms/{room}/members"), json!({"username": "carl"})).await.0, 204);
    let (_, details) = carl.get(&format!("/api/rooms/{room}")).await;
    assert_eq!(details["room"]["owner"], bob_id);
}

async fn batched_appends_assign_seqs_in_order_and_dedup(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let ann_id = ann.id().await;
    let r1 = ann.create_room("batch-one", json!({})).await;
    let r2 = ann.create_room("batch-two", json!({"retention": {"keep_messages": 2}})).await;
    let msg = |room: i64, cid: Option<&str>, body: &str| NewMessage {
        client_id: cid.map(str::to_string),
        ..NewMessage::plain(room, ann_id, MessageKind::Text, body.into(), rtm::chat::now_ms())
    };
    use rtm::store::Appended::{Duplicate, New};
    let store = srv.state.chat.store();
    let got = store
        .append(&[
            msg(r1, Some("a"), "one"),
            msg(r2, Some("a"), "other room, same id"),
            msg(r1, Some("a"), "retry of one"),
            msg(r1, None, "two"),
            msg(r2, None, "x"),
            msg(r2, None, "y"),
            msg(r1, Some("b"), "three"),
        ])
        .await
        .unwrap();
    assert_eq!(got, vec![New(1), New(1), Duplicate(1), New(2), New(2), New(3), New(3)]);
    // A later batch sees what earlier batches kept.
    let again = store.append(&[msg(r1, Some("b"), "retry of three"), msg(r1, Some("c"), "four")]).await.unwrap();
    assert_eq!(again, vec![Duplicate(3), New(4)]);
    let texts: Vec<String> = store.history(r1, None, 10).await.unwrap().into_iter().map(|m| m.body).collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
    // "Keep 2" applied once per batch: r2 holds its last two.
    let kept: Vec<i64> = store.history(r2, None, 10).await.unwrap().into_iter().map(|m| m.seq).collect();
    assert_eq!(kept, [2, 3]);
}

async fn big_replies_are_split_and_limits_hold(b: Backend) {
    let srv = TestServer::start_with(b, |c| {
        c.session_max_secs = 3;
        c.rate_social_per_min = 2;
    })
    .await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("heavy", json!({})).await;
    let mut wa = ann.ws().await;
    // 60 messages of 4,000 four-byte characters: ~1 MB of history, more than one
    // frame may carry. The reply is cut (more: true) and the socket stays up.
    let big = "😀".repeat(4000);
    for _ in 0..60 {
        wa.say(room, &big).await;
    }
    wa.clear();
    let ServerFrame::History { events, more, .. } =
        wa.request(json!({"type": "history", "room": room, "limit": 100})).await
    else {
        panic!("history failed")
    };
    assert!(more, "the rest is left for the next page");
    assert!(!events.is_empty() && events.len() < 60, "{}", events.len());
    assert_eq!(events.last().and_then(|e| e.seq), Some(60), "the newest come first");
    let ServerFrame::Resumed { events, more, .. } =
        wa.request(json!({"type": "resume", "room": room, "after": 0})).await
    else {
        panic!("resume failed")
    };
    assert!(more && events.first().and_then(|e| e.seq) == Some(1));
    assert!(matches!(wa.request(json!({"type": "ping"})).await, ServerFrame::Pong { .. }));
    // Creating rooms is rate-limited per user (one room was made above).
    let (s, _) = ann.post("/api/rooms", json!({"name": "second"})).await;
    assert_eq!(s, 201);
    let (s, body) = ann.post("/api/rooms", json!({"name": "third"})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (429, Some("rate_limited")));
    // A socket does not outlive its session's absolute expiry.
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Closing { .. })).await;
    assert!(matches!(f, ServerFrame::Closing { ref code, .. } if code == "session_ended"), "{f:?}");
}

/// `limit` is clamped to 1..100 when it is a whole number, refused when it is not
/// (PROTOCOL §2.4 and §3.4 say so).
async fn history_limit_is_clamped_or_refused(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.rate_messages_per_10s = 10_000).await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("many", json!({})).await;
    let mut ws = ann.ws().await;
    for k in 0..105 {
        ws.send_json(
            json!({"type": "send", "id": format!("m{k}"), "room": room, "client_id": format!("m{k}"), "text": "x"}),
        )
        .await;
    }
    ws.recv_until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "m104")).await;
    let count = |f: ServerFrame| match f {
        ServerFrame::History { events, .. } => events.len(),
        other => panic!("not a history reply: {other:?}"),
    };
    assert_eq!(count(ws.request(json!({"type": "history", "room": room, "limit": 0})).await), 1);
    assert_eq!(count(ws.request(json!({"type": "history", "room": room, "limit": 1000})).await), 100);
    for bad in [json!(-1), json!(2.5), json!("10")] {
        let f = ws.request(json!({"type": "history", "room": room, "limit": bad})).await;
        assert!(matches!(&f, ServerFrame::Error { code, .. } if code == "bad_request"), "{bad}: {f:?}");
    }
    let (s, body) = ann.get(&format!("/api/rooms/{room}/messages?limit=0")).await;
    assert_eq!((s, body["events"].as_array().map(Vec::len)), (200, Some(1)));
    let (s, body) = ann.get(&format!("/api/rooms/{room}/messages?limit=500")).await;
    assert_eq!((s, body["events"].as_array().map(Vec::len)), (200, Some(100)));
    for bad in ["-1", "2.5", "x"] {
        let (s, body) = ann.get(&format!("/api/rooms/{room}/messages?limit={bad}")).await;
        assert_eq!((s, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}");
    }
}

async fn found_again_a_room_or_dm_shows_your_own_state(b: Backend) {
    // Joining a room you are in, or opening a DM that exists, answers with your own
    // read marker, unread count and role, not a newcomer's (docs/PROTOCOL.md §1.5).
    let srv = TestServer::start(b).await;
    let _root = srv.user("root").await; // the site admin: owner everywhere
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let bob_id = bob.id().await;
    let room = ann.create_room("lounge", json!({})).await;
    let (s, body) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    let joined_at = body["room"]["read_seq"].as_i64().unwrap();
    // The answer's last_seq is the room's newest event: bob's own `joined` notice,
    // which is not unread for him.
    assert_eq!(body["room"]["last_seq"].as_i64(), Some(joined_at + 1), "{body}");
    let (_, got) = bob.get(&format!("/api/rooms/{room}")).await;
    assert_eq!(got["room"]["last_seq"], body["room"]["last_seq"], "{got}");
    assert_eq!(got["room"]["unread"].as_i64(), Some(0), "{got}");
    let (s, _) = ann.put(&format!("/api/rooms/{room}/members/{bob_id}/role"), json!({"role": "moderator"})).await;
    assert_eq!(s, 204);
    let mut wa = ann.ws().await;
    wa.say(room, "one").await;
    wa.say(room, "two").await;
    let (s, body) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["room"]["read_seq"].as_i64(), Some(joined_at), "{body}");
    // Unread: the moderator notice and ann's two messages (bob's own join is not).
    assert_eq!(body["room"]["unread"].as_i64(), Some(3), "{body}");
    assert_eq!(body["room"]["role"], "moderator", "{body}");
    // GET of the room tells a member the same (a mention counts too).
    wa.say(room, &format!("<@{bob_id}> look")).await;
    let (_, got) = bob.get(&format!("/api/rooms/{room}")).await;
    assert_eq!((got["room"]["unread"].as_i64(), got["room"]["mentions"].as_i64()), (Some(4), Some(1)), "{got}");
    assert_eq!((got["room"]["read_seq"].as_i64(), got["room"]["role"].as_str()), (Some(joined_at), Some("moderator")));
    // So does the answer to a change of the room's settings (bob moderates it).
    let (s, got) = bob.patch(&format!("/api/rooms/{room}"), json!({"topic": "plans"})).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!((got["room"]["unread"].as_i64(), got["room"]["mentions"].as_i64()), (Some(4), Some(1)), "{got}");

    let (s, body) = ann.post("/api/dms", json!({"user_id": bob_id})).await;
    assert_eq!(s, 200, "{body}");
    let dm = body["room"]["id"].as_i64().unwrap();
    wa.say(dm, "hi bob").await;
    let ServerFrame::Ack { seq: Some(last), .. } =
        wa.request(json!({"type": "read", "id": "r", "room": dm, "seq": 99})).await
    else {
        panic!("read refused")
    };
    // Bob opens the same DM: one unread from ann, his marker still at 0.
    let (s, body) = bob.post("/api/dms", json!({"user_id": ann.id().await})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["room"]["id"].as_i64(), Some(dm));
    assert_eq!((body["room"]["read_seq"].as_i64(), body["room"]["unread"].as_i64()), (Some(0), Some(1)), "{body}");
    assert_eq!(body["room"]["role"], "member");
    // Ann's own marker, read up to the end.
    let (_, body) = ann.post("/api/dms", json!({"user_id": bob_id})).await;
    assert_eq!((body["room"]["read_seq"].as_i64(), body["room"]["unread"].as_i64()), (Some(last), Some(0)), "{body}");
}

on_both_backends!(
    found_again_a_room_or_dm_shows_your_own_state,
    big_replies_are_split_and_limits_hold,
    batched_appends_assign_seqs_in_order_and_dedup,
    owner_leaving_hands_over_and_ephemeral_retries_are_not_doubled,
    typing_read_markers_names_and_search,
    two_users_chat_both_ways,
    one_socket_carries_three_rooms,
    rooms_are_isolated,
    join_leave_notices_and_welcome,
    presence_across_two_tabs,
    retention_last_n_days_and_ephemeral,
    offline_dm_delivered_once_on_reconnect,
    dm_is_never_pruned_before_received,
    dm_trims_each_authors_messages_by_what_the_other_read,
    dm_retention_follows_every_send_and_read,
    dm_read_then_next_event_trims_as_protocol_says,
    held_dms_are_bounded_per_conversation,
    resume_returns_exactly_the_missed,
    duplicate_client_id_stored_once,
    bad_input_gets_error_frames_and_socket_survives,
    handshake_needs_credentials_and_our_origin,
    websocket_handshake_close_and_oversized_frames,
    sign_out_closes_that_sessions_sockets,
    rate_limit_is_an_error_not_a_disconnect,
    history_pages_backwards,
    slow_consumer_is_cut_off_others_keep_receiving,
    history_limit_is_clamped_or_refused,
);
