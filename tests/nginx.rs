//! Nodes behind a real nginx, run with the config of docs/DEPLOY.md (see
//! `common::nginx`): the web client over HTTP/2, sign-up and sign-in over https with
//! `__Host-`/`Secure` cookies, WebSockets through the proxy, round-robin with no
//! stickiness, two people on different nodes chatting through nginx, X-Forwarded-For
//! against forged addresses, and a node stopping under its clients (a rolling restart).
//!
//! Needs PostgreSQL and Redis (RTM_TEST_PG_URL, RTM_TEST_REDIS_URL) and the `nginx`,
//! `openssl` and `curl` programs: scripts/test provides all of them.

mod common;

use std::time::Duration;

use common::{
    Client,
    cluster::{Cluster, NodeProcess},
    nginx,
    nginx::{Nginx, TlsWs},
};
use rtm::ws::protocol::ServerFrame;
use serde_json::json;

/// `n` nodes sharing PostgreSQL and Redis, and nginx in front of them. The nodes'
/// public origin is nginx's, so nginx's port is chosen before they start.
async fn behind_nginx(n: usize) -> (Cluster, Nginx) {
    let port = nginx::free_port();
    let origin = nginx::origin(port);
    let cluster = Cluster::start_with(n, |c| {
        c.public_origin = Some(origin.clone());
        c.trust_proxy = true;
    })
    .await;
    let upstreams: Vec<_> = cluster.nodes.iter().map(|s| s.addr).collect();
    let nginx = Nginx::start_on(port, &upstreams).await;
    (cluster, nginx)
}

/// How many WebSockets each node holds.
fn sockets_per_node(cluster: &Cluster) -> Vec<usize> {
    cluster.nodes.iter().map(|s| s.state.hub.connection_count()).collect()
}

/// Opens a WebSocket for `client` through nginx and says which node took it.
async fn ws_and_node(cluster: &Cluster, nginx: &Nginx, client: &Client) -> (TlsWs, usize) {
    let before = sockets_per_node(cluster);
    let ws = nginx.ws(client).await;
    // The hello is sent after the socket registered with its node's hub.
    let after = sockets_per_node(cluster);
    let node = (0..after.len()).find(|&i| after[i] > before[i]).expect("one node took the WebSocket");
    (ws, node)
}

/// Opens WebSockets for `client` through nginx until one lands on a node other than
/// `not`. Round-robin (nginx keeps one turn per worker) gets there within a few tries.
async fn ws_on_another_node(cluster: &Cluster, nginx: &Nginx, client: &Client, not: usize) -> (TlsWs, usize) {
    let mut extra = vec![];
    for _ in 0..20 {
        let (ws, node) = ws_and_node(cluster, nginx, client).await;
        if node != not {
            // The sockets that landed on `not` close when `extra` drops.
            drop(extra);
            return (ws, node);
        }
        extra.push(ws);
    }
    panic!("20 WebSockets through nginx all went to node {not}: no round-robin");
}

/// The web client loads through nginx over HTTP/2 (curl --http2, as a browser would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_client_loads_over_http2() {
    let (_cluster, nginx) = behind_nginx(2).await;
    // Started by root (CI), the master drops its workers to nobody (`user` directive).
    let workers = nginx.worker_uids().await;
    assert!(!workers.is_empty(), "nginx started no workers:\n{}", nginx.logs());
    if nginx::is_root() {
        assert!(workers.iter().all(|&u| u == 65534), "nginx workers run as nobody, not {workers:?}");
    }
    let curl = nginx::locate("RTM_CURL", "curl");
    for path in ["/", "/app.js"] {
        let body = nginx.dir.path().join("body");
        let out = tokio::process::Command::new(&curl)
            .args(["--http2", "-k", "-sS", "--max-time", "20", "-o"])
            .arg(&body)
            .args(["-w", "%{http_version} %{http_code}"])
            .arg(nginx.https_url(path))
            .output()
            .await
            .expect("run curl");
        assert!(out.status.success(), "curl {path}: {}\n{}", String::from_utf8_lossy(&out.stderr), nginx.logs());
        let got = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(got, "2 200", "{path}: HTTP version and status through nginx");
        let text = std::fs::read_to_string(&body).expect("curl wrote the body");
        let want = match path {
            "/" => "<title>RT Messenger</title>".to_string(),
            _ => std::fs::read_to_string(format!("{}/web{path}", env!("CARGO_MANIFEST_DIR"))).expect("web file"),
        };
        assert!(text.contains(&want), "{path} through nginx is not the web client's file:\n{text:.300}");
    }
}

/// Sign-up and sign-in over https through nginx: the session cookie is the
/// `__Host-` one, `Secure`, and it works for the API whichever node answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sign_up_and_sign_in_set_host_secure_cookies() {
    let (_cluster, nginx) = behind_nginx(2).await;
    let mut alice = nginx.client();
    let (s, b) = alice.register("alice").await;
    assert_eq!(s, 201, "{b}");
    let cookie = alice.cookie.clone().expect("a session cookie");
    assert!(cookie.starts_with("__Host-rtm_session="), "{cookie}");

    // Sign in again with a raw request to see the cookie's attributes.
    let r = alice
        .http
        .post(nginx.https_url("/api/login"))
        .json(&json!({ "login": "alice", "password": common::password_of("alice") }))
        .send()
        .await
        .expect("login through nginx");
    assert_eq!(r.status(), 200);
    let set: Vec<String> = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let session = set.iter().find(|c| c.starts_with("__Host-rtm_session=")).unwrap_or_else(|| panic!("{set:?}"));
    let attrs: Vec<String> = session.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
    for want in ["secure", "httponly", "path=/", "samesite=lax"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing from {session}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("domain=")), "a __Host- cookie has no Domain: {session}");

    // The cookie jar (https only, since Secure) signs every request in, on any node.
    for _ in 0..4 {
        assert_eq!(alice.me().await["username"], json!("alice"));
    }
    // A wrong Origin is still refused through the proxy (nginx passes Origin as is).
    let r = alice
        .http
        .post(nginx.https_url("/api/rooms"))
        .header(reqwest::header::ORIGIN, "https://evil.example.org")
        .json(&json!({ "name": "nope" }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403, "a cross-origin request through nginx is refused");
}

/// A WebSocket through nginx: hello, then a message sent and received in a room; a
/// handshake from a foreign Origin is refused through the proxy too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_nginx() {
    let (cluster, nginx) = behind_nginx(2).await;
    let alice = nginx.user("alice").await;
    let room = alice.create_room("general", json!({})).await;
    let (mut ws, node) = ws_and_node(&cluster, &nginx, &alice).await;
    let ServerFrame::Hello { user, rooms, .. } = &ws.hello else { unreachable!("checked by connect") };
    assert_eq!(user.username, "alice");
    assert!(rooms.iter().any(|r| r.id == room), "hello lists the room: {rooms:?}");
    let seq = ws.say(room, "hello through nginx").await.expect("a seq");
    let ServerFrame::Message(e) = ws.wait_message(room, "hello through nginx").await else { unreachable!() };
    assert_eq!(e.seq, Some(seq));

    // A second socket of hers on the same node sees the next message live.
    let (mut ws2, node2) = loop {
        let (w, n) = ws_and_node(&cluster, &nginx, &alice).await;
        if n == node {
            break (w, n);
        }
    };
    assert_eq!(node, node2);
    ws.say(room, "second").await.expect("a seq");
    ws2.wait_message(room, "second").await;

    let cookie = alice.cookie.clone().expect("cookie");
    let refused = TlsWs::connect(nginx.port(), Some(&cookie), Some("https://evil.example.org")).await;
    assert_eq!(refused.err(), Some(403), "a foreign Origin is refused through nginx");
    let refused = TlsWs::connect(nginx.port(), None, Some(&nginx.origin())).await;
    assert_eq!(refused.err(), Some(401), "no session, no WebSocket");
}

/// No stickiness: one person's WebSockets through nginx spread over every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_websockets_over_nodes() {
    let (cluster, nginx) = behind_nginx(3).await;
    let alice = nginx.user("alice").await;
    let mut open = vec![];
    for _ in 0..30 {
        open.push(nginx.ws(&alice).await);
        if sockets_per_node(&cluster).iter().all(|&n| n > 0) {
            return;
        }
    }
    panic!("30 WebSockets through nginx did not reach all 3 nodes: {:?}", sockets_per_node(&cluster));
}

/// Two people whose WebSockets nginx put on different nodes chat both ways (the Redis
/// bus carries the messages between the nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_on_different_nodes_chat_through_nginx() {
    let (cluster, nginx) = behind_nginx(2).await;
    let alice = nginx.user("alice").await;
    let bob = nginx.user("bob").await;
    let room = alice.create_room("general", json!({})).await;
    let (s, b) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert!(s == 200 || s == 204, "join: {s} {b}");
    let (mut a, an) = ws_and_node(&cluster, &nginx, &alice).await;
    let (mut b, bn) = ws_on_another_node(&cluster, &nginx, &bob, an).await;
    assert_ne!(an, bn);

    let seq = a.say(room, "hi bob, from the other node").await;
    let ServerFrame::Message(e) =
        tokio::time::timeout(Duration::from_secs(10), b.wait_message(room, "hi bob, from the other node"))
            .await
            .expect("bob gets alice's message across nodes")
    else {
        unreachable!()
    };
    assert_eq!(e.seq, seq);
    b.say(room, "hi alice").await;
    a.wait_message(room, "hi alice").await;
}

/// nginx appends the address it saw to `X-Forwarded-For` and the nodes (with
/// `--trust-proxy`) key sign-in limits on that last address: a client cannot escape
/// the limit by sending a different forged `X-Forwarded-For` with each attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_for_does_not_escape_the_sign_in_limit() {
    let port = nginx::free_port();
    let origin = nginx::origin(port);
    let cluster = Cluster::start_with(1, |c| {
        c.public_origin = Some(origin.clone());
        c.trust_proxy = true;
        c.auth_rate_per_min = 3;
    })
    .await;
    let nginx = Nginx::start_on(port, &[cluster.nodes[0].addr]).await;
    let client = nginx.client();
    let mut statuses = vec![];
    for i in 0..6 {
        let r = client
            .http
            .post(nginx.https_url("/api/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "login": "nobody", "password": "wrong password" }))
            .send()
            .await
            .expect("login through nginx");
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..3], [401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|&s| s == 429), "the 4th attempt on is limited: {statuses:?}");

    // The control: straight to the node, the forged header is believed (each attempt
    // another address), which is why only nginx may reach the nodes. (Another login
    // each time: one login's own budget would slow these down, see accounts.rs.)
    for i in 10..16 {
        let r = client
            .http
            .post(cluster.nodes[0].url("/api/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "login": format!("nobody{i}"), "password": "wrong password" }))
            .send()
            .await
            .expect("login on the node");
        assert_eq!(r.status(), 401, "a new forged address each time, never limited");
    }
}

/// One step of a rolling restart (docs/DEPLOY.md): the node that stops tells its
/// sockets `closing: server_shutdown`; its clients reconnect through nginx, which
/// sends them to the node still up (the stopped one refuses, nginx tries the next),
/// and resume from their last seq with nothing missed and nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_s_clients_reconnect_through_nginx_and_resume() {
    let (mut cluster, nginx) = behind_nginx(2).await;
    let alice = nginx.user("alice").await;
    let bob = nginx.user("bob").await;
    let room = alice.create_room("general", json!({})).await;
    let (s, body) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert!(s == 200 || s == 204, "join: {s} {body}");
    let (mut a, an) = ws_and_node(&cluster, &nginx, &alice).await;
    let (mut b, bn) = ws_on_another_node(&cluster, &nginx, &bob, an).await;
    let last = a.say(room, "before the restart").await.expect("seq");
    b.wait_message(room, "before the restart").await;

    // Bob's node stops (SIGTERM's drain); Alice's goes on.
    let stopping = tokio::spawn(cluster.nodes.remove(bn).stop());
    let closing = b.recv_until(|f| matches!(f, ServerFrame::Closing { .. })).await;
    assert!(matches!(&closing, ServerFrame::Closing { code, .. } if code == "server_shutdown"), "{closing:?}");
    let mut sent = vec![];
    for i in 0..3 {
        let text = format!("while bob's node restarts {i}");
        sent.push((a.say(room, &text).await.expect("seq"), text));
    }
    let _ = stopping.await;

    // Bob reconnects through nginx: on the first try, to the node still up.
    let before = cluster.nodes[0].state.hub.connection_count();
    let mut b = nginx.ws(&bob).await;
    assert_eq!(cluster.nodes[0].state.hub.connection_count(), before + 1, "bob is on the node still up");
    let id = b.new_id();
    b.send_json(json!({"type": "resume", "id": id, "room": room, "after": last})).await;
    let resumed = b.recv_until(|f| matches!(f, ServerFrame::Resumed { id: i, .. } if *i == id)).await;
    let ServerFrame::Resumed { events, more, .. } = resumed else { unreachable!() };
    assert!(!more);
    let got: Vec<(i64, String)> = events.into_iter().filter_map(|e| Some((e.seq?, e.text))).collect();
    assert_eq!(got, sent, "exactly what bob missed, in order");

    // And the conversation goes on, both ways, on the one node left.
    b.say(room, "back").await.expect("seq");
    a.wait_message(room, "back").await;
}

/// A node dies (SIGKILL: no drain, no goodbye) under its clients. Bob's socket simply
/// drops; he reconnects through nginx, which sends him to the node still up, and his
/// resume returns exactly what he missed; everything he had been acked is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_clients_reconnect_through_nginx_and_resume() {
    let port = nginx::free_port();
    let origin = nginx::origin(port);
    let cluster = Cluster::start_with(1, |c| {
        c.public_origin = Some(origin.clone());
        c.trust_proxy = true;
    })
    .await;
    let mut doomed = NodeProcess::start(&cluster, &["--public-origin", &origin, "--trust-proxy"]).await;
    let nginx = Nginx::start_on(port, &[cluster.nodes[0].addr, doomed.addr]).await;
    let alice = nginx.user("alice").await;
    let bob = nginx.user("bob").await;
    let room = alice.create_room("general", json!({})).await;
    let (s, body) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert!(s == 200 || s == 204, "join: {s} {body}");
    let (mut a, an) = ws_and_node(&cluster, &nginx, &alice).await;
    assert_eq!(an, 0);
    // Bob's socket on the process node: one that node 0 did not take.
    let mut b = None;
    for _ in 0..20 {
        let before = cluster.nodes[0].state.hub.connection_count();
        let ws = nginx.ws(&bob).await;
        if cluster.nodes[0].state.hub.connection_count() == before {
            b = Some(ws);
            break;
        }
    }
    let mut b = b.expect("a WebSocket through nginx reached the process node");
    let mut bobs = vec![];
    for i in 0..3 {
        bobs.push(b.say(room, &format!("bob before the crash {i}")).await.expect("seq"));
    }
    let last = a.say(room, "alice before the crash").await.expect("seq");
    b.wait_message(room, "alice before the crash").await;

    doomed.kill();
    // No closing frame: the socket just ends.
    let mut ended = false;
    for _ in 0..50 {
        match b.try_recv(Duration::from_millis(200)).await {
            None => {
                ended = true;
                break;
            }
            Some(ServerFrame::Closing { .. }) => panic!("a killed node cannot say goodbye"),
            Some(_) => {}
        }
    }
    assert!(ended, "bob's socket did not end when its node was killed");
    let mut sent = vec![];
    for i in 0..3 {
        let text = format!("while bob's node is dead {i}");
        sent.push((a.say(room, &text).await.expect("seq"), text));
    }
    // Bob reconnects through nginx (the dead upstream refuses; nginx tries the next).
    let mut b = nginx.ws(&bob).await;
    let id = b.new_id();
    b.send_json(json!({"type": "resume", "id": id, "room": room, "after": last})).await;
    let resumed = b.recv_until(|f| matches!(f, ServerFrame::Resumed { id: i, .. } if *i == id)).await;
    let ServerFrame::Resumed { events, .. } = resumed else { unreachable!() };
    let got: Vec<(i64, String)> = events.into_iter().filter_map(|e| Some((e.seq?, e.text))).collect();
    assert_eq!(got, sent, "exactly what bob missed, in order");
    // What the dead node acked is kept.
    let kept = cluster.nodes[0].state.chat.store().history(room, None, 100).await.expect("history");
    for s in bobs {
        assert_eq!(kept.iter().filter(|m| m.seq == s).count(), 1, "acked seq {s} kept once");
    }
    // A new socket counts its request ids from 1 again: a fresh client id, or the
    // server rightly takes this for a retry of "bob before the crash".
    let id = b.new_id();
    b.send_json(json!({"type": "send", "id": id, "room": room, "client_id": "bob-back", "text": "back"})).await;
    a.wait_message(room, "back").await;
}
