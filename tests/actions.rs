//! Message actions over real WebSockets on every backend (SQLite, PostgreSQL, MariaDB,
//! two nodes): edit, delete, reactions, replies, mentions and notification levels
//! (docs/PROTOCOL.md §3.8). Each action is a kept event in the room's order, so the
//! tests check it live, in `history` (current state), and replayed by `resume`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rtm::ws::protocol::{Event, EventKind, ServerFrame};
use serde_json::json;

fn action_on(room: i64, kind: EventKind) -> impl FnMut(&ServerFrame) -> bool {
    move |f| matches!(f, ServerFrame::Action(e) if e.room == room && e.kind == kind)
}

fn code_of(f: &ServerFrame) -> &str {
    match f {
        ServerFrame::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn ack_seq(f: &ServerFrame) -> Option<i64> {
    match f {
        ServerFrame::Ack { seq, duplicate, .. } => {
            assert!(seq.is_some() || *duplicate, "an ack without seq is a duplicate: {f:?}");
            *seq
        }
        other => panic!("expected an ack, got {other:?}"),
    }
}

async fn history(ws: &mut Ws, room: i64) -> Vec<Event> {
    match ws.request(json!({"type": "history", "room": room, "limit": 100})).await {
        ServerFrame::History { events, .. } => events,
        other => panic!("{other:?}"),
    }
}

fn text_at(events: &[Event], seq: i64) -> &Event {
    events.iter().find(|e| e.seq == Some(seq)).unwrap_or_else(|| panic!("seq {seq} in {events:?}"))
}

async fn joined(srv: &TestServer, owner: &Client, name: &str, others: &[&Client]) -> i64 {
    let room = owner.create_room(name, json!({})).await;
    for c in others {
        let (s, body) = c.post(&format!("/api/rooms/{room}/join"), json!({})).await;
        assert_eq!(s, 200, "{body}");
    }
    let _ = srv;
    room
}

async fn edit_react_delete_live_and_in_history(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let (ann_id, bob_id) = (ann.id().await, bob.id().await);
    let room = joined(&srv, &ann, "actions", &[&bob]).await;
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let s1 = wa.say(room, "helo wrld").await.expect("kept");

    // Edit: the author only; the edit is an event of its own with the next seq.
    let f = wa.request(json!({"type": "edit", "room": room, "seq": s1, "text": "hello world"})).await;
    let edit_seq = ack_seq(&f).expect("edit kept");
    assert_eq!(edit_seq, s1 + 1);
    let (f, _) = wb.recv_until(action_on(room, EventKind::Edit)).await;
    let ServerFrame::Action(e) = f else { unreachable!() };
    assert_eq!((e.target, e.seq, e.text.as_str(), e.author.id), (Some(s1), Some(edit_seq), "hello world", ann_id));
    let f = wb.request(json!({"type": "edit", "room": room, "seq": s1, "text": "mine now"})).await;
    assert_eq!(code_of(&f), "forbidden");

    // Reactions: toggling twice is idempotent; counts and who, in order given.
    let f = wb.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍"})).await;
    let r1 = ack_seq(&f).expect("reaction kept");
    let f = wb.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍", "on": true})).await;
    assert!(matches!(f, ServerFrame::Ack { seq: None, duplicate: true, .. }), "{f:?}");
    let f = wa.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍"})).await;
    let r2 = ack_seq(&f).expect("second reaction kept");
    assert_eq!(r2, r1 + 1, "the duplicate kept nothing");
    let f = wa.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "🎉"})).await;
    ack_seq(&f);
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Action(e) if e.emoji.as_deref() == Some("🎉"))).await;
    let ServerFrame::Action(e) = f else { unreachable!() };
    assert_eq!((e.kind, e.on, e.target, e.text.as_str()), (EventKind::Reaction, Some(true), Some(s1), ""));

    // History: the message in its current state, actions left out.
    let h = history(&mut wb, room).await;
    assert!(h.iter().all(|e| matches!(e.kind, EventKind::Text | EventKind::Joined | EventKind::Left)), "{h:?}");
    let m = text_at(&h, s1);
    assert_eq!(m.text, "hello world");
    assert!(m.edited.is_some() && !m.deleted);
    let got: Vec<(String, Vec<i64>)> = m.reactions.iter().map(|r| (r.emoji.clone(), r.users.clone())).collect();
    assert_eq!(got, vec![("👍".to_string(), vec![bob_id, ann_id]), ("🎉".to_string(), vec![ann_id])]);

    // Taking a reaction back.
    let f = wb.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍", "on": false})).await;
    ack_seq(&f).expect("unreact kept");
    let f = wb.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍", "on": false})).await;
    assert!(matches!(f, ServerFrame::Ack { duplicate: true, .. }), "{f:?}");
    let h = history(&mut wb, room).await;
    let got: Vec<(String, Vec<i64>)> =
        text_at(&h, s1).reactions.iter().map(|r| (r.emoji.clone(), r.users.clone())).collect();
    assert_eq!(got, vec![("👍".to_string(), vec![ann_id]), ("🎉".to_string(), vec![ann_id])]);

    // Delete: a tombstone; the text, every edit's copy and the reactions leave the store.
    let f = wa.request(json!({"type": "delete", "room": room, "seq": s1})).await;
    let del = ack_seq(&f).expect("delete kept");
    let (f, _) = wb.recv_until(action_on(room, EventKind::Delete)).await;
    let ServerFrame::Action(e) = f else { unreachable!() };
    assert_eq!((e.target, e.seq), (Some(s1), Some(del)));
    let h = history(&mut wb, room).await;
    let m = text_at(&h, s1);
    assert!(m.deleted && m.text.is_empty() && m.reactions.is_empty() && m.edited.is_none(), "{m:?}");
    let stored = srv.state.chat.store().since(room, 0, 1000).await.expect("read store");
    assert!(stored.iter().all(|m| !m.body.contains("hello") && !m.body.contains("helo")), "{stored:?}");
    for (cmd, extra) in [("edit", json!({"text": "back"})), ("delete", json!({})), ("react", json!({"emoji": "👍"}))]
    {
        let mut v = json!({"type": cmd, "room": room, "seq": s1});
        for (k, val) in extra.as_object().expect("object") {
            v[k] = val.clone();
        }
        let f = wa.request(v).await;
        assert_eq!(code_of(&f), "message_not_found", "{cmd} on a deleted message");
    }
    let f = wb.request(json!({"type": "send", "room": room, "client_id": "r-1", "text": "re", "reply_to": s1})).await;
    assert_eq!(code_of(&f), "message_not_found", "reply to a deleted message");
}

async fn only_author_owner_or_admin_delete(b: Backend) {
    let srv = TestServer::start(b).await;
    let root = srv.user("root").await; // the first account is the admin
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let room = joined(&srv, &ann, "owned", &[&bob, &carl, &root]).await;
    let mut wb = bob.ws().await;
    let mut wc = carl.ws().await;
    let mut wa = ann.ws().await;
    let mut wr = root.ws().await;
    let b1 = wb.say(room, "bob's").await.expect("kept");
    let c1 = wc.say(room, "carl's").await.expect("kept");
    let f = wc.request(json!({"type": "delete", "room": room, "seq": b1})).await;
    assert_eq!(code_of(&f), "forbidden", "a member cannot delete another's message");
    assert!(ack_seq(&wa.request(json!({"type": "delete", "room": room, "seq": b1})).await).is_some(), "owner");
    assert!(ack_seq(&wr.request(json!({"type": "delete", "room": room, "seq": c1})).await).is_some(), "admin");
    // A DM has no owner: only the author deletes there.
    let carl_id = carl.id().await;
    let (s, dm) = bob.post("/api/dms", json!({"user_id": carl_id})).await;
    assert_eq!(s, 200, "{dm}");
    let dm = dm["room"]["id"].as_i64().expect("dm id");
    let mut wb = bob.ws().await;
    let d1 = wb.say(dm, "just us").await.expect("kept");
    let mut wc = carl.ws().await;
    let f = wc.request(json!({"type": "delete", "room": dm, "seq": d1})).await;
    assert_eq!(code_of(&f), "forbidden");
    let f = wc.request(json!({"type": "edit", "room": dm, "seq": d1, "text": "x"})).await;
    assert_eq!(code_of(&f), "forbidden");
    assert!(ack_seq(&wc.request(json!({"type": "react", "room": dm, "seq": d1, "emoji": "❤️"})).await).is_some());
    assert!(ack_seq(&wb.request(json!({"type": "delete", "room": dm, "seq": d1})).await).is_some());
    // Not even the site admin, in a DM of their own.
    let (s, dm2) = carl.post("/api/dms", json!({"user_id": root.id().await})).await;
    assert_eq!(s, 200, "{dm2}");
    let dm2 = dm2["room"]["id"].as_i64().expect("dm id");
    let c2 = wc.say(dm2, "mine alone").await.expect("kept");
    let f = wr.request(json!({"type": "delete", "room": dm2, "seq": c2})).await;
    assert_eq!(code_of(&f), "forbidden", "the admin has no owner's powers in a DM");
}

/// What a client shows of a room: seq -> (text, deleted, edited, reactions).
type View = BTreeMap<i64, (String, bool, bool, BTreeMap<String, Vec<i64>>)>;

fn view_of(history: &[Event]) -> View {
    history
        .iter()
        .filter(|e| e.kind == EventKind::Text)
        .map(|e| {
            let reactions = e.reactions.iter().map(|r| (r.emoji.clone(), r.users.clone())).collect();
            (e.seq.expect("kept"), (e.text.clone(), e.deleted, e.edited.is_some(), reactions))
        })
        .collect()
}

/// PROTOCOL §3.8's rules, as a client applies them.
fn apply(view: &mut View, e: &Event) {
    let Some(target) = e.target else {
        if e.kind == EventKind::Text {
            view.insert(e.seq.expect("kept"), (e.text.clone(), e.deleted, e.edited.is_some(), BTreeMap::new()));
        }
        return;
    };
    let Some(m) = view.get_mut(&target) else { return };
    match e.kind {
        EventKind::Edit if !m.1 => {
            m.0 = e.text.clone();
            m.2 = true;
        }
        EventKind::Delete => *m = (String::new(), true, false, BTreeMap::new()),
        EventKind::Reaction => {
            let emoji = e.emoji.clone().expect("reaction has emoji");
            let users = m.3.entry(emoji.clone()).or_default();
            users.retain(|u| *u != e.author.id);
            if e.on == Some(true) {
                users.push(e.author.id);
            }
            if users.is_empty() {
                m.3.remove(&emoji);
            }
        }
        _ => {}
    }
}

async fn resume_replays_actions_to_the_same_view(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = joined(&srv, &ann, "replay", &[&bob]).await;
    let mut wa = ann.ws().await;
    let s1 = wa.say(room, "one").await.expect("kept");
    let s2 = wa.say(room, "two").await.expect("kept");
    let s3 = wa.say(room, "three").await.expect("kept");
    // Bob saw everything up to here, then went away.
    let mut wb = bob.ws().await;
    let mut view = view_of(&history(&mut wb, room).await);
    let last = *view.keys().max().expect("messages");
    drop(wb);
    // While he was away: an edit, reactions added and taken back, a delete, a new
    // message with a reaction.
    let mut wc = bob.ws().await; // another of bob's devices stays online and reacts
    for v in [
        json!({"type": "edit", "room": room, "seq": s1, "text": "one (fixed)"}),
        json!({"type": "react", "room": room, "seq": s2, "emoji": "🎉"}),
        json!({"type": "delete", "room": room, "seq": s3}),
    ] {
        assert!(ack_seq(&wa.request(v).await).is_some());
    }
    assert!(ack_seq(&wc.request(json!({"type": "react", "room": room, "seq": s2, "emoji": "👀"})).await).is_some());
    assert!(
        ack_seq(&wc.request(json!({"type": "react", "room": room, "seq": s2, "emoji": "👀", "on": false})).await)
            .is_some()
    );
    let s4 = wa.say(room, "four").await.expect("kept");
    assert!(ack_seq(&wc.request(json!({"type": "react", "room": room, "seq": s4, "emoji": "👍"})).await).is_some());
    let _ = wa.request(json!({"type": "edit", "room": room, "seq": s3, "text": "too late"})).await;
    // Bob comes back and resumes from what he had.
    let mut wb = bob.ws().await;
    let f = wb.request(json!({"type": "resume", "room": room, "after": last})).await;
    let ServerFrame::Resumed { events, .. } = f else { panic!("{f:?}") };
    assert!(events.iter().any(|e| e.kind == EventKind::Edit), "edits are replayed: {events:?}");
    for e in &events {
        apply(&mut view, e);
    }
    let truth = view_of(&history(&mut wb, room).await);
    assert_eq!(view, truth, "resume + §3.8 rules give the same view as history");
    assert_eq!(truth[&s1].0, "one (fixed)");
    assert!(truth[&s3].1, "deleted");
}

async fn replies_quote_and_say_when_the_original_is_gone(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("short", json!({"retention": {"keep_messages": 4}})).await;
    assert_eq!(bob.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let long = format!("{} tail", "word ".repeat(40));
    let s1 = wa.say(room, &long).await.expect("kept");
    wb.send_json(
        json!({"type": "send", "id": "rp", "room": room, "client_id": "rp-1", "text": "agreed", "reply_to": s1}),
    )
    .await;
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Message(e) if e.text == "agreed")).await;
    let ServerFrame::Message(e) = f else { unreachable!() };
    let r = e.reply_to.expect("reply_to");
    let excerpt = r.excerpt.clone().expect("excerpt");
    assert_eq!((r.seq, r.author.map(|a| a.username), r.missing), (s1, Some("ann".to_string()), false));
    assert!(excerpt.ends_with('…') && excerpt.chars().count() == 121, "{excerpt}");
    let reply = e.seq.expect("kept");
    let h = history(&mut wb, room).await;
    assert_eq!(text_at(&h, reply).reply_to.as_ref().and_then(|r| r.excerpt.clone()), Some(excerpt));
    // Unknown targets are refused.
    for bad in [9999, reply + 50, -1] {
        let f = wb
            .request(
                json!({"type": "send", "room": room, "client_id": format!("bad-{bad}"), "text": "x", "reply_to": bad}),
            )
            .await;
        assert_eq!(code_of(&f), "message_not_found");
    }
    // Retention trims the original: the reply says so.
    for i in 0..4 {
        wa.say(room, &format!("filler {i}")).await;
    }
    let h = history(&mut wb, room).await;
    assert!(h.iter().all(|e| e.seq != Some(s1)), "trimmed: {h:?}");
    let f = wa.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍"})).await;
    assert_eq!(code_of(&f), "message_not_found");
    let f = wb.request(json!({"type": "resume", "room": room, "after": reply - 1})).await;
    if let ServerFrame::Resumed { events, .. } = f {
        let r = events[0].reply_to.clone().expect("reply_to");
        assert!(r.missing && r.excerpt.is_none() && r.author.is_none(), "{r:?}");
    }
}

async fn mentions_badge_until_read_and_notify_levels(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let (bob_id, carl_id) = (bob.id().await, carl.id().await);
    let room = joined(&srv, &ann, "talk", &[&bob]).await;
    let mut wa = ann.ws().await;
    let text = format!("hey <@{bob_id}>, ask <@{carl_id}> and <@999999>");
    let s1 = wa.say(room, &text).await.expect("kept");
    let h = history(&mut wa, room).await;
    let named: Vec<(i64, String)> = text_at(&h, s1).mentions.iter().map(|a| (a.id, a.username.clone())).collect();
    assert_eq!(named, vec![(bob_id, "bob".to_string()), (carl_id, "carl".to_string())], "unknown ids are left out");
    let s2 = wa.say(room, "no mention here").await.expect("kept");
    let info = |ws: &Ws| ws.hello_rooms().into_iter().find(|r| r.id == room).expect("room in hello");
    let mut wb = bob.ws().await;
    let r = info(&wb);
    assert_eq!((r.mentions, r.unread, r.notify.as_str()), (1, 2, "all"));
    // A reaction or an edit is not unread.
    assert!(ack_seq(&wa.request(json!({"type": "react", "room": room, "seq": s2, "emoji": "👍"})).await).is_some());
    let wb2 = bob.ws().await;
    assert_eq!(info(&wb2).unread, 2, "actions do not count as unread");
    drop(wb2);
    // Reading past the mention clears the badge.
    wb.request(json!({"type": "read", "room": room, "seq": s1})).await;
    let wb2 = bob.ws().await;
    assert_eq!((info(&wb2).mentions, info(&wb2).unread), (0, 1));
    drop(wb2);
    // An edit that takes a mention out takes the badge with it.
    let s3 = wa.say(room, &format!("<@{bob_id}> again")).await.expect("kept");
    assert_eq!(info(&bob.ws().await).mentions, 1);
    assert!(
        ack_seq(&wa.request(json!({"type": "edit", "room": room, "seq": s3, "text": "never mind"})).await).is_some()
    );
    assert_eq!(info(&bob.ws().await).mentions, 0);
    // Mentioning yourself is not a mention to count.
    let mut wa2 = ann.ws().await;
    let ann_id = ann.id().await;
    wa2.say(room, &format!("note to <@{ann_id}>")).await;
    assert_eq!(info(&ann.ws().await).mentions, 0);
    // Notification level: stored, told to all of bob's connections, in hello.
    let mut other_tab = bob.ws().await;
    let f = wb.request(json!({"type": "notify", "room": room, "level": "mentions"})).await;
    assert!(matches!(f, ServerFrame::Ack { .. }), "{f:?}");
    let (f, _) = other_tab.recv_until(|f| matches!(f, ServerFrame::Notify { .. })).await;
    assert!(matches!(f, ServerFrame::Notify { room: r, ref level } if r == room && level == "mentions"), "{f:?}");
    assert_eq!(info(&bob.ws().await).notify, "mentions");
    let f = wb.request(json!({"type": "notify", "room": room, "level": "loud"})).await;
    assert_eq!(code_of(&f), "invalid_notify");
    let mut wc = carl.ws().await;
    let f = wc.request(json!({"type": "notify", "room": room, "level": "muted"})).await;
    assert_eq!(code_of(&f), "not_a_member");
}

async fn bad_actions_get_clear_errors(b: Backend) {
    let srv = TestServer::start(b).await;
    let _admin = srv.user("root").await;
    let ann = srv.user("ann").await;
    let eve = srv.user("eve").await;
    let room = ann.create_room("guarded", json!({})).await;
    let eph = ann.create_room("fleeting", json!({"retention": {"ephemeral": true}})).await;
    let mut wa = ann.ws().await;
    let s1 = wa.say(room, "hi").await.expect("kept");
    for emoji in ["", "lol", "1", "👍 👍", "\u{202e}👍", "<script>", &"🎉".repeat(17), "😀😀", "🇫🇷🇩🇪"]
    {
        let f = wa.request(json!({"type": "react", "room": room, "seq": s1, "emoji": emoji})).await;
        assert_eq!(code_of(&f), "invalid_emoji", "{emoji:?}");
    }
    let f = wa.request(json!({"type": "edit", "room": room, "seq": s1, "text": "  "})).await;
    assert_eq!(code_of(&f), "empty_text");
    let f = wa.request(json!({"type": "edit", "room": room, "seq": s1, "text": "a\u{0}b"})).await;
    assert_eq!(code_of(&f), "invalid_text");
    let f = wa.request(json!({"type": "edit", "room": room, "seq": "x", "text": "y"})).await;
    assert_eq!(code_of(&f), "bad_request");
    let f = wa.request(json!({"type": "delete", "room": room, "seq": 424242})).await;
    assert_eq!(code_of(&f), "message_not_found");
    // A join notice is not a message to act on.
    let dan = srv.user("dan").await;
    assert_eq!(dan.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Notice(e) if e.kind == EventKind::Joined)).await;
    let ServerFrame::Notice(notice) = f else { unreachable!() };
    let f = wa.request(json!({"type": "react", "room": room, "seq": notice.seq, "emoji": "👍"})).await;
    assert_eq!(code_of(&f), "message_not_found");
    // Ephemeral rooms keep nothing to act on.
    let _ = wa.say(eph, "gone").await;
    let f = wa.request(json!({"type": "react", "room": eph, "seq": 1, "emoji": "👍"})).await;
    assert_eq!(code_of(&f), "message_not_found");
    // Outsiders cannot act.
    let mut we = eve.ws().await;
    let f = we.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍"})).await;
    assert_eq!(code_of(&f), "not_a_member");
    // At most 20 different emoji on one message; an existing one still works.
    let emoji: Vec<String> = (0..21).map(|i| char::from_u32(0x1F600 + i).expect("emoji").to_string()).collect();
    for e in &emoji[..20] {
        assert!(ack_seq(&wa.request(json!({"type": "react", "room": room, "seq": s1, "emoji": e})).await).is_some());
    }
    let f = wa.request(json!({"type": "react", "room": room, "seq": s1, "emoji": emoji[20]})).await;
    assert_eq!(code_of(&f), "too_many_reactions");
    let f = wa.request(json!({"type": "react", "room": room, "seq": s1, "emoji": emoji[0], "on": false})).await;
    assert!(ack_seq(&f).is_some());
    // The socket survived all of it.
    assert!(wa.say(room, "still here").await.is_some());
    assert!(wa.drain(Duration::from_millis(50)).await.iter().all(|f| !matches!(f, ServerFrame::Closing { .. })));
}

on_both_backends!(
    edit_react_delete_live_and_in_history,
    only_author_owner_or_admin_delete,
    resume_replays_actions_to_the_same_view,
    replies_quote_and_say_when_the_original_is_gone,
    mentions_badge_until_read_and_notify_levels,
    bad_actions_get_clear_errors,
);
