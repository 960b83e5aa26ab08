//! Several nodes sharing one PostgreSQL database and one Redis: people on different
//! nodes chat, see presence and typing, get DMs; membership, sessions and caches stay
//! exact on every node; each room's events reach every subscriber in seq order with
//! no gap and no duplicate when two nodes commit to it at once; a node killed with
//! SIGKILL has its users shown offline; the shared budgets hold across nodes.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{
    cluster::{Cluster, NodeProcess},
    *,
};
use rtm::ws::protocol::ServerFrame;
use serde_json::json;

fn is_msg(room: i64, text: &'static str) -> impl FnMut(&ServerFrame) -> bool {
    move |f| matches!(f, ServerFrame::Message(e) if e.room == room && e.text == text)
}

/// Kept events of `room` in the order a socket received them (seq, text).
fn kept(frames: &[ServerFrame], room: i64) -> Vec<(i64, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Message(e) | ServerFrame::Notice(e) if e.room == room => e.seq.map(|s| (s, e.text.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_on_two_nodes_chat_see_presence_typing_and_dms() {
    let c = Cluster::start(2).await;
    let ann = c.nodes[0].user("ann").await;
    let bob = c.nodes[1].user("bob").await;
    let room = ann.create_room("general", json!({})).await;
    // Bob joins through node 1; the room was created through node 0.
    let (s, body) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    // Bob's connection started after Ann's: Ann hears he came online.
    let bob_id = bob.id().await;
    wa.recv_until(
        |f| matches!(f, ServerFrame::PresenceChange { room: r, user, online: true } if *r == room && *user == bob_id),
    )
    .await;
    let s1 = wa.say(room, "hello from node 0").await.expect("kept");
    let (f, _) = wb.recv_until(is_msg(room, "hello from node 0")).await;
    assert!(matches!(f, ServerFrame::Message(e) if e.seq == Some(s1)));
    let s2 = wb.say(room, "hello from node 1").await.expect("kept");
    assert_eq!(s2, s1 + 1);
    wa.recv_until(is_msg(room, "hello from node 1")).await;
    // Typing crosses nodes too (live only).
    wb.send_json(json!({"type": "typing", "room": room})).await;
    wa.recv_until(|f| matches!(f, ServerFrame::Typing { room: r, .. } if *r == room)).await;
    // The members list on node 1 shows Ann (connected to node 0) online.
    let (s, members) = bob.get(&format!("/api/rooms/{room}/members")).await;
    assert_eq!(s, 200);
    let ann_online = members["members"]
        .as_array()
        .and_then(|m| m.iter().find(|u| u["username"] == "ann"))
        .map(|u| u["online"].clone());
    assert_eq!(ann_online, Some(json!(true)), "{members}");
    // A DM opened on node 1 reaches Ann on node 0 live, with its room_joined first.
    let (s, dm) = bob.post("/api/dms", json!({"user_id": ann.id().await})).await;
    assert_eq!(s, 200, "{dm}");
    let dm_id = dm["room"]["id"].as_i64().expect("dm id");
    wa.recv_until(|f| matches!(f, ServerFrame::RoomJoined { room } if room.id == dm_id)).await;
    wb.recv_until(|f| matches!(f, ServerFrame::RoomJoined { room } if room.id == dm_id)).await;
    wb.say(dm_id, "psst").await.expect("kept");
    wa.recv_until(is_msg(dm_id, "psst")).await;
    // Topic changes reach the other node at once.
    let (s, _) = ann.patch(&format!("/api/rooms/{room}"), json!({"topic": "news"})).await;
    assert_eq!(s, 200);
    wb.recv_until(|f| matches!(f, ServerFrame::RoomUpdated { room: r, topic, .. } if *r == room && topic == "news"))
        .await;
    // Bob goes away: Ann hears it.
    drop(wb);
    wa.recv_until(
        |f| matches!(f, ServerFrame::PresenceChange { room: r, user, online: false } if *r == room && *user == bob_id),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_to_someone_offline_waits_for_them_on_another_node() {
    let c = Cluster::start(2).await;
    let ann = c.nodes[0].user("ann").await;
    let bob = c.nodes[1].user("bob").await;
    let (s, dm) = ann.post("/api/dms", json!({"user_id": bob.id().await})).await;
    assert_eq!(s, 200, "{dm}");
    let dm_id = dm["room"]["id"].as_i64().expect("dm id");
    let mut wa = ann.ws().await;
    for i in 0..3 {
        wa.say(dm_id, &format!("while you were out {i}")).await;
    }
    let mut wb = bob.ws().await;
    let info = wb.hello_rooms().into_iter().find(|r| r.id == dm_id).expect("the DM is in bob's hello");
    assert_eq!((info.unread, info.last_seq), (3, 3));
    let ServerFrame::Resumed { events, .. } = wb.request(json!({"type": "resume", "room": dm_id, "after": 0})).await
    else {
        panic!("resume failed")
    };
    assert_eq!(events.iter().filter_map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

/// Two senders on two nodes write to one room at the same time; four receivers, two
/// per node, must each get every event exactly once, in seq order, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_from_two_nodes_arrive_in_order_everywhere() {
    const EACH: usize = 150;
    let c = Cluster::start_with(2, |cfg| cfg.rate_messages_per_10s = 10_000).await;
    let owner = c.nodes[0].user("owner").await;
    let room = owner.create_room("busy", json!({"retention": {"keep_messages": 100000}})).await;
    let mut receivers = Vec::new();
    for (i, name) in ["rcv0", "rcv1", "rcv2", "rcv3"].iter().enumerate() {
        let u = c.nodes[i % 2].user(name).await;
        assert_eq!(u.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
        receivers.push(u.ws().await);
    }
    let mut senders = Vec::new();
    for (i, name) in ["snd0", "snd1"].iter().enumerate() {
        let u = c.nodes[i].user(name).await;
        assert_eq!(u.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
        senders.push(u.ws().await);
    }
    // Every receiver's view starts after the last join.
    let start = {
        let (s, r) = owner.get(&format!("/api/rooms/{room}")).await;
        assert_eq!(s, 200);
        r["room"]["last_seq"].as_i64().expect("last_seq")
    };
    let mut tasks = Vec::new();
    for (i, mut ws) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // Pipelined: many sends in flight, acks collected after.
            for k in 0..EACH {
                ws.send_json(json!({"type": "send", "id": format!("q{k}"), "room": room,
                    "client_id": format!("s{i}-{k}"), "text": format!("s{i} #{k}")}))
                    .await;
            }
            let mut acked = 0;
            while acked < EACH {
                match ws.recv().await {
                    ServerFrame::Ack { seq: Some(_), .. } => acked += 1,
                    ServerFrame::Error { code, .. } => panic!("send refused: {code}"),
                    _ => {}
                }
            }
            acked
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("sender"), EACH);
    }
    let total = 2 * EACH;
    for (i, ws) in receivers.iter_mut().enumerate() {
        let mut got: Vec<(i64, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.iter().filter(|(s, _)| *s > start).count() < total && Instant::now() < deadline {
            if let Some(f) = ws.try_recv(Duration::from_secs(1)).await {
                got.extend(kept(&[f], room));
            }
        }
        let after: Vec<i64> = got.iter().map(|(s, _)| *s).filter(|s| *s > start).collect();
        let expected: Vec<i64> = (start + 1..=start + total as i64).collect();
        assert_eq!(after, expected, "receiver {i} (node {}) got seqs out of order, with gaps or twice", i % 2);
        // Nothing more (no duplicate arrives late).
        let late = ws.drain(Duration::from_millis(300)).await;
        assert!(kept(&late, room).is_empty(), "late duplicates at receiver {i}: {late:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_and_invitation_take_effect_on_every_node_at_once() {
    let c = Cluster::start(2).await;
    let ann = c.nodes[0].user("ann").await;
    let bob = c.nodes[1].user("bob").await;
    let room = ann.create_room("inner-circle", json!({"private": true})).await;
    let mut wb = bob.ws().await;
    // Node 1 caches the room (bob is refused: not a member) ...
    let ServerFrame::Error { code, .. } =
        wb.request(json!({"type": "send", "room": room, "client_id": "x1", "text": "hi"})).await
    else {
        panic!("a non-member's send must fail")
    };
    assert_eq!(code, "room_not_found");
    // ... then ann invites bob on node 0: node 1 lets him send right away.
    let (s, body) = ann.post(&format!("/api/rooms/{room}/members"), json!({"username": "bob"})).await;
    assert_eq!(s, 204, "{body}");
    wb.recv_until(|f| matches!(f, ServerFrame::RoomJoined { room: r } if r.id == room)).await;
    wb.say(room, "thanks for the invite").await.expect("kept");
    let mut wa = ann.ws().await;
    wa.say(room, "welcome").await;
    wb.recv_until(is_msg(room, "welcome")).await;
    // Ann removes bob on node 0: node 1 stops delivering and refuses his sends.
    let bob_id = bob.id().await;
    let (s, body) = ann.delete(&format!("/api/rooms/{room}/members/{bob_id}")).await;
    assert!(s == 200 || s == 204, "{s} {body}");
    wb.recv_until(|f| matches!(f, ServerFrame::RoomLeft { room: r } if *r == room)).await;
    wa.say(room, "bob is gone").await;
    let leaked = wb.drain(Duration::from_millis(700)).await;
    assert!(texts_in(&leaked, room).is_empty(), "a removed member still receives: {leaked:?}");
    let ServerFrame::Error { code, .. } =
        wb.request(json!({"type": "send", "room": room, "client_id": "x2", "text": "still here?"})).await
    else {
        panic!("a removed member's send must fail")
    };
    assert_eq!(code, "room_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_and_password_change_close_sockets_on_every_node() {
    let c = Cluster::start(2).await;
    let bob0 = c.nodes[0].user("bob").await;
    // The same person signs in again on node 1 (a second device).
    let mut bob1 = c.nodes[1].client();
    let (s, _) = bob1.login("bob", &password_of("bob")).await;
    assert_eq!(s, 200);
    let mut w0 = bob0.ws().await;
    // Node 1 also carries a socket of bob0's session (cookie sessions are valid on
    // every node).
    let mut w0_on_1 = Ws::connect(c.nodes[1].addr, bob0.cookie.as_deref(), Some(&c.nodes[1].origin()), None)
        .await
        .expect("connects on node 1 with the session made on node 0");
    let mut w1 = bob1.ws().await;
    // Signing out on node 0 ends that session's sockets on both nodes, not the other.
    let (s, _) = bob0.post("/api/logout", json!({})).await;
    assert_eq!(s, 204, "logout");
    for w in [&mut w0, &mut w0_on_1] {
        let (f, _) = w.recv_until(|f| matches!(f, ServerFrame::Closing { .. })).await;
        assert!(matches!(f, ServerFrame::Closing { code, .. } if code == "session_ended"));
    }
    let ServerFrame::Pong { .. } = w1.request(json!({"type": "ping"})).await else { panic!("other session closed") };
    // A password change on node 1 ends bob's other sessions everywhere.
    let mut bob2 = c.nodes[0].client();
    assert_eq!(bob2.login("bob", &password_of("bob")).await.0, 200);
    let mut w2 = bob2.ws().await;
    let (s, body) = bob1
        .post("/api/me/password", json!({"current_password": password_of("bob"), "new_password": "a-new-password-9"}))
        .await;
    assert_eq!(s, 204, "{body}");
    let (f, _) = w2.recv_until(|f| matches!(f, ServerFrame::Closing { .. })).await;
    assert!(matches!(f, ServerFrame::Closing { code, .. } if code == "session_ended"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_id_on_two_nodes_is_stored_once() {
    let c = Cluster::start(2).await;
    let ann = c.nodes[0].user("ann").await;
    let room = ann.create_room("dedup", json!({})).await;
    let mut w0 = ann.ws().await;
    let mut w1 = Ws::connect(c.nodes[1].addr, ann.cookie.as_deref(), Some(&c.nodes[1].origin()), None)
        .await
        .expect("ann's session works on node 1");
    let mut seqs = Vec::new();
    // The same send to both nodes at once, many times.
    for k in 0..20 {
        let cid = format!("retry-{k}");
        let msg = json!({"type": "send", "room": room, "client_id": cid, "text": format!("once {k}")});
        let (a, b) = tokio::join!(w0.request(msg.clone()), w1.request(msg));
        let (
            ServerFrame::Ack { seq: Some(sa), duplicate: da, .. },
            ServerFrame::Ack { seq: Some(sb), duplicate: db, .. },
        ) = (a, b)
        else {
            panic!("both sends must be acked")
        };
        assert_eq!(sa, sb, "one stored copy, one seq");
        assert!(da ^ db, "exactly one of the two is the duplicate");
        seqs.push(sa);
    }
    // Each message has a seq of its own.
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let n = c.nodes[0].state.chat.store().count_messages(room).await.expect("count");
    // The 20 messages, each once (a room's creator gets no "joined" notice).
    assert_eq!(n, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_budget_is_shared_by_the_nodes() {
    let c = Cluster::start_with(2, |cfg| cfg.auth_rate_per_min = 6).await;
    let mut statuses = HashMap::new();
    for k in 0..12 {
        let mut cl = c.nodes[k % 2].client();
        let (s, _) = cl.login("nobody", "wrong-password-1").await;
        *statuses.entry(s).or_insert(0) += 1;
    }
    // 6 attempts a minute in all, whichever node they go to.
    assert_eq!(statuses.get(&429).copied().unwrap_or(0), 6, "{statuses:?}");
}

/// A node started as its own process, killed with SIGKILL: its user is shown offline
/// on the other node within 10 s, and the user's client reconnects to the other node
/// and resumes without losing anything acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_users_go_offline_and_resume_elsewhere() {
    let c = Cluster::start(1).await;
    let ann = c.nodes[0].user("ann").await;
    let room = ann.create_room("watch", json!({})).await;
    let mut node = NodeProcess::start(&c, &[]).await;
    let addr = node.addr;
    // Carol signs up on the process node and joins.
    let mut carol = Client::for_addr(addr);
    assert_eq!(carol.register("carol").await.0, 201);
    assert_eq!(carol.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let carol_id = carol.id().await;
    let mut wa = ann.ws().await;
    let mut wc = carol.ws().await;
    wa.recv_until(
        |f| matches!(f, ServerFrame::PresenceChange { room: r, user, online: true } if *r == room && *user == carol_id),
    )
    .await;
    let mut last = 0;
    for k in 0..5 {
        last = wc.say(room, &format!("before the crash {k}")).await.expect("kept");
    }
    wa.say(room, "ann was here").await;
    // SIGKILL: no goodbye, no presence update from the dying node.
    let killed_at = Instant::now();
    node.kill();
    let (_, _) = wa
        .recv_until(|f| matches!(f, ServerFrame::PresenceChange { room: r, user, online: false } if *r == room && *user == carol_id))
        .await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "offline after {took:?}");
    // Carol's client reconnects to the surviving node and resumes: nothing lost.
    let mut again = c.nodes[0].client();
    assert_eq!(again.login("carol", &password_of("carol")).await.0, 200);
    let mut wc2 = again.ws().await;
    let ServerFrame::Resumed { events, .. } =
        wc2.request(json!({"type": "resume", "room": room, "after": last - 5})).await
    else {
        panic!("resume failed")
    };
    let texts: Vec<String> = events.iter().map(|e| e.text.clone()).collect();
    for k in 0..5 {
        assert!(texts.contains(&format!("before the crash {k}")), "{texts:?}");
    }
    assert!(texts.contains(&"ann was here".to_string()), "{texts:?}");
}

/// A node stopped gracefully (SIGTERM) tells the other nodes that its people went
/// offline before it exits. Nobody else would: it takes its presence set out of Redis
/// as it leaves, so no survivor reaps it, and a change still queued for Redis when
/// the process ends is lost with it.
/// In a room of 100 members or more, whose changes wait for their window, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_gracefully_announces_its_people_offline() {
    // 100: `chat::presence::BATCH_FROM`, where a room starts to gather its changes.
    for members in [2, 100] {
        node_stopped_gracefully(members).await;
    }
}

async fn node_stopped_gracefully(members: usize) {
    let c = Cluster::start(1).await;
    let ann = c.nodes[0].user("ann").await;
    let room = ann.create_room("leaving", json!({})).await;
    // The rest of the members, straight through the store (no password hashing).
    let store = c.nodes[0].state.chat.store().clone();
    for k in 2..members {
        let name = format!("extra{k}");
        let u = store
            .create_user(rtm::store::NewUser {
                email: format!("{name}@example.org"),
                email_lc: format!("{name}@example.org"),
                username: name.clone(),
                username_lc: name,
                first_name: "Ex".into(),
                last_name: "Tra".into(),
                password_hash: "-".into(),
                now: 1,
            })
            .await
            .expect("user");
        store.add_member(room, u.id, 1).await.expect("member");
    }
    let mut node = NodeProcess::start(&c, &[]).await;
    let mut carol = Client::for_addr(node.addr);
    assert_eq!(carol.register("carol").await.0, 201);
    assert_eq!(carol.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let carol_id = carol.id().await;
    let mut wa = ann.ws().await;
    let _wc = carol.ws().await;
    wa.recv_until(
        |f| matches!(f, ServerFrame::PresenceChange { room: r, user, online: true } if *r == room && *user == carol_id),
    )
    .await;
    assert!(node.terminate().await, "the node did not exit within 15 s of SIGTERM");
    let stopped = Instant::now();
    let offline = |f: &ServerFrame| matches!(f, ServerFrame::PresenceChange { room: r, user, online: false } if *r == room && *user == carol_id);
    let mut seen = Vec::new();
    while stopped.elapsed() < Duration::from_secs(5) {
        match wa.try_recv(Duration::from_millis(200)).await {
            Some(f) if offline(&f) => return,
            Some(f) => seen.push(f),
            None => {}
        }
    }
    panic!("ann never heard that carol went offline ({members} members): {seen:?}");
}

/// Drives the order keeper from outside with real Redis publications and real rows:
/// an event that arrives before its predecessor is held until the predecessor comes,
/// and a predecessor that never comes on the bus is read from the store. Nothing is
/// skipped, nothing is delivered twice, everything in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_holds_later_events_and_fills_gaps_from_the_store() {
    use rtm::{
        domain::MessageKind,
        hub::{Envelope, Topic},
        store::{Appended, NewMessage},
        ws::protocol::{Author, Event, EventKind},
    };
    let c = Cluster::start(1).await;
    let ann = c.nodes[0].user("ann").await;
    let ann_id = ann.id().await;
    let room = ann.create_room("gappy", json!({})).await;
    let mut wa = ann.ws().await;
    let store = c.nodes[0].state.chat.store().clone();
    let mut redis = c.redis().await;
    // Rows written straight to the store, as another node's pipeline would, without
    // the publication that would announce them.
    let keep = |text: &str| {
        let store = store.clone();
        let text = text.to_string();
        async move {
            let m = NewMessage::plain(room, ann_id, MessageKind::Text, text, 1);
            match store.append(&[m]).await.expect("append")[0] {
                Appended::New(s) => s,
                Appended::Duplicate(s) => s,
            }
        }
    };
    let frame = |seq: i64, text: &str| {
        let ev = Event::plain(
            room,
            Some(seq),
            EventKind::Text,
            Author { id: ann_id, username: "ann".into() },
            text.into(),
            1,
        );
        Envelope {
            topic: Topic::Room(room),
            control: None,
            frame: Some(ServerFrame::Message(ev).encode()),
            seq: Some(seq),
        }
    };
    let channel = format!("{}:r:{room}", c.prefix);
    // From a node id that is not this node's.
    let publish = |env: Envelope| rtm::bus::redis::wire::encode(7, &[&env]);
    // 1. Two events published in the wrong order: delivered in the right one.
    let a = keep("one").await;
    let b = keep("two").await;
    let _: () = redis::AsyncCommands::publish(&mut redis, &channel, publish(frame(b, "two"))).await.expect("publish");
    let _: () = redis::AsyncCommands::publish(&mut redis, &channel, publish(frame(a, "one"))).await.expect("publish");
    // 2. An event published whose predecessor never is: the predecessor comes from the
    //    store, then the event.
    let d = keep("three").await;
    let e = keep("four").await;
    let _: () = redis::AsyncCommands::publish(&mut redis, &channel, publish(frame(e, "four"))).await.expect("publish");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 4 && Instant::now() < deadline {
        if let Some(f) = wa.try_recv(Duration::from_millis(500)).await {
            got.extend(kept(&[f], room));
        }
    }
    assert_eq!(
        got,
        [(a, "one".to_string()), (b, "two".to_string()), (d, "three".to_string()), (e, "four".to_string())],
        "in seq order, once each"
    );
    // 3. Rows nobody announces at all are found by the periodic sweep.
    let f = keep("five").await;
    let (got, _) = wa.recv_until(|fr| matches!(fr, ServerFrame::Message(ev) if ev.room == room)).await;
    assert!(matches!(got, ServerFrame::Message(ev) if ev.seq == Some(f) && ev.text == "five"));
    let late = wa.drain(Duration::from_millis(300)).await;
    assert!(kept(&late, room).is_empty(), "{late:?}");
}

/// Presence changes are not stored, so one lost between nodes cannot be filled from
/// the store: a node that hears another node's presence may have been missed sends
/// its connections a fresh `presence` snapshot of their rooms, read cluster-wide.
/// Here "node 7" is written into Redis by hand: it has Carol online, its
/// `presence_change` never came, and it says so on the nodes' channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_told_presence_was_lost_sends_fresh_snapshots() {
    use rtm::hub::{Control, Envelope, Topic};
    let c = Cluster::start(1).await;
    let ann = c.nodes[0].user("ann").await;
    let carol = c.nodes[0].user("carol").await;
    let room = ann.create_room("lost", json!({})).await;
    assert_eq!(carol.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let (ann_id, carol_id) = (ann.id().await, carol.id().await);
    let mut wa = ann.ws().await;
    wa.recv_until(|f| matches!(f, ServerFrame::Presence { room: r, .. } if *r == room)).await;
    let mut redis = c.redis().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let _: () = redis::pipe()
        .zadd(format!("{}:nodes", c.prefix), "7", now)
        .sadd(format!("{}:on:7", c.prefix), carol_id)
        .query_async(&mut redis)
        .await
        .expect("node 7's presence");
    let stale = rtm::bus::redis::wire::encode(7, &[&Envelope::control(Topic::Nodes, Control::PresenceStale, None)]);
    let told = Instant::now();
    let _: () = redis::AsyncCommands::publish(&mut redis, format!("{}:n", c.prefix), stale).await.expect("publish");
    let mut want = vec![ann_id, carol_id];
    want.sort_unstable();
    let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::Presence { room: r, .. } if *r == room)).await;
    assert!(matches!(&f, ServerFrame::Presence { online, .. } if *online == want), "{f:?}");
    // Sent after a beat's time (every node has written its presence set by then), and
    // well before node 7 would be taken for dead.
    let took = told.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "snapshot after {took:?}");
}

/// The per-user message budget is one budget for all nodes: a client with sockets on
/// two nodes does not get twice the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_budget_is_shared_by_the_nodes() {
    let c = Cluster::start_with(2, |cfg| cfg.rate_messages_per_10s = 6).await;
    let ann = c.nodes[0].user("ann").await;
    let room = ann.create_room("budget", json!({})).await;
    let mut w0 = ann.ws().await;
    let mut w1 = Ws::connect(c.nodes[1].addr, ann.cookie.as_deref(), Some(&c.nodes[1].origin()), None)
        .await
        .expect("ann's session works on node 1");
    let (mut acked, mut limited) = (0, 0);
    for k in 0..12 {
        let ws = if k % 2 == 0 { &mut w0 } else { &mut w1 };
        match ws.request(json!({"type": "send", "room": room, "client_id": format!("b{k}"), "text": "hi"})).await {
            ServerFrame::Ack { seq: Some(_), .. } => acked += 1,
            ServerFrame::Error { code, .. } if code == "rate_limited" => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Six in all (each node alone would have allowed six).
    assert_eq!((acked, limited), (6, 6));
}

/// A node listens on Redis to a room only while it has a local subscriber to it: no
/// node receives traffic of rooms it does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribes_to_a_room_only_while_it_serves_it() {
    let c = Cluster::start(2).await;
    let ann = c.nodes[0].user("ann").await;
    let bob = c.nodes[1].user("bob").await;
    let room = ann.create_room("quiet", json!({})).await;
    assert_eq!(bob.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let mut redis = c.redis().await;
    let channel = format!("{}:r:{room}", c.prefix);
    let mut subscribers = async |want: i64| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v: Vec<(String, i64)> =
                redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut redis).await.expect("NUMSUB");
            let n = v.first().map_or(0, |(_, n)| *n);
            if n == want || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(subscribers(0).await, 0, "nobody connected: no node listens");
    let wa = ann.ws().await;
    assert_eq!(subscribers(1).await, 1, "node 0 serves ann");
    let wb = bob.ws().await;
    assert_eq!(subscribers(2).await, 2, "node 1 serves bob");
    // A second socket on node 0 adds no subscription.
    let wa2 = ann.ws().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(subscribers(2).await, 2);
    drop(wb);
    assert_eq!(subscribers(1).await, 1, "bob left node 1: it stops listening");
    drop((wa, wa2));
    assert_eq!(subscribers(0).await, 0);
}

/// Runs the `rtm` CLI on a blocking thread with `args` (and nothing from the
/// environment); panics unless it succeeds.
async fn cli(args: Vec<String>) {
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rtm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("RTM_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RTM_LOG", "warn").args(args).output().expect("rtm runs")
    })
    .await
    .expect("rtm thread");
    assert!(out.status.success(), "rtm failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// How many `room_updated` (archived or not, as `want`) for `room` a socket gets: waits
/// for the first (nodes read the CLI's log every 2 s, later on a loaded machine), then
/// 5 s more, which covers two more readings by each node, for a repeat.
async fn room_updates(ws: &mut Ws, room: i64, want: bool) -> usize {
    let is_update = |f: &ServerFrame| matches!(f, ServerFrame::RoomUpdated { room: r, archived, .. } if *r == room && *archived == want);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match ws.try_recv(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            Some(f) if is_update(&f) => break,
            Some(_) => {}
            None => return 0,
        }
    }
    1 + ws.drain(Duration::from_secs(5)).await.iter().filter(|f| is_update(f)).count()
}

/// A CLI action reaches each member's socket ONCE on a cluster: every node reads the
/// CLI's audit entry, but only one of them announces it, and none does when the CLI
/// had the cluster's bus and announced it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_action_reaches_each_socket_once_on_a_cluster() {
    let c = Cluster::start(2).await;
    let ann = c.nodes[0].user("ann").await;
    let bob = c.nodes[1].user("bob").await;
    let room = ann.create_room("general", json!({})).await;
    assert_eq!(bob.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let database = vec!["--database".to_string(), c.database.clone()];

    // Without a bus the CLI reaches no socket: one node announces it.
    cli([database.clone(), vec!["room".into(), "archive".into(), room.to_string()]].concat()).await;
    assert_eq!(
        tokio::join!(room_updates(&mut wa, room, true), room_updates(&mut wb, room, true)),
        (1, 1),
        "one room_updated per socket"
    );

    // With the cluster's bus the CLI announces it itself, and no node repeats it.
    let mut with_bus = c.node_args();
    with_bus.extend(["room".into(), "unarchive".into(), room.to_string()]);
    cli(with_bus).await;
    assert_eq!(
        tokio::join!(room_updates(&mut wa, room, false), room_updates(&mut wb, room, false)),
        (1, 1),
        "one room_updated per socket"
    );
}
