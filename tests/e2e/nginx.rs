//! The web client through a real nginx (the config of docs/DEPLOY.md, with TLS and
//! HTTP/2) in front of two nodes that share PostgreSQL and Redis: the page loads over
//! HTTP/2 and https, one person signs up through the form and another signs in, their
//! WebSockets end up on different nodes, and they chat both ways over `wss://`.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;

use crate::{
    browser::{Browser, Driver},
    common::{cluster::Cluster, nginx, nginx::Nginx, password_of},
};

/// Nodes behind nginx.
const NODES: usize = 2;

/// How the page and its socket came: `{protocol, http, secure}`.
async fn transport(b: &Browser) -> Result<serde_json::Value> {
    b.js(
        "return { protocol: location.protocol,
                  http: performance.getEntriesByType('navigation')[0].nextHopProtocol,
                  secure: window.isSecureContext };",
        vec![],
    )
    .await
}

/// The WebSockets of each node, once they add up to two (after a reload, the old
/// socket's node may take a moment to let it go).
async fn two_sockets(cluster: &Cluster) -> Result<Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let per_node: Vec<usize> = cluster.nodes.iter().map(|s| s.state.hub.connection_count()).collect();
        if per_node.iter().sum::<usize>() == 2 {
            return Ok(per_node);
        }
        ensure!(Instant::now() < deadline, "the nodes hold {per_node:?} sockets, not the browsers' two");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn chat_through_nginx(d: &Driver) -> Result<()> {
    let port = nginx::free_port();
    let origin = nginx::origin(port);
    let cluster = Cluster::start_with(NODES, |c| {
        c.public_origin = Some(origin.clone());
        c.trust_proxy = true;
    })
    .await;
    let upstreams: Vec<_> = cluster.nodes.iter().map(|s| s.addr).collect();
    let proxy = Nginx::start_on(port, &upstreams).await;

    // Frank has an account and a room (made over the API, through nginx too).
    let frank_api = proxy.user("frank").await;
    frank_api.create_room("lobby", json!({ "topic": "Behind the proxy" })).await;

    let home = proxy.https_url("/");
    let erin = d.browser("erin").await?;
    let frank = d.browser("frank").await?;
    erin.goto(&home).await?;
    frank.goto(&home).await?;
    for b in [&erin, &frank] {
        let t = transport(b).await?;
        ensure!(t["protocol"] == json!("https:") && t["secure"] == json!(true), "{}: {t}", b.name);
        ensure!(t["http"] == json!("h2"), "{}: the page comes over HTTP/2 through nginx: {t}", b.name);
    }
    erin.sign_up("Erin", "Brockovich", "erin", "correct horse battery").await?;
    frank.sign_in("frank", &password_of("frank")).await?;

    // nginx round-robins: if both sockets landed on one node, Frank reloads until his
    // is on the other (a new socket, through nginx again).
    let mut split = false;
    for reloads in 0..12 {
        let per_node = two_sockets(&cluster).await?;
        if per_node.iter().all(|&n| n == 1) {
            eprintln!("e2e nginx: the browsers are on different nodes after {reloads} reload(s)");
            split = true;
            break;
        }
        frank.c.refresh().await?;
        frank.wait_live().await?;
    }
    ensure!(split, "twelve reloads through nginx never put the two browsers on different nodes");
    frank.open_conversation("lobby").await?;

    // Erin finds the room in "browse rooms" and joins.
    erin.click("#browse-btn").await?;
    let item = erin.wait_item("#browse-results", ".browse-name", "#lobby").await?;
    erin.click(&format!("{item} .join-btn")).await?;
    erin.wait_room_open("lobby").await?;
    erin.wait_text("#room-topic", "Behind the proxy").await?;

    erin.send_message("Hello through nginx").await?;
    frank.wait_msg("Hello through nginx").await?;
    erin.wait_msg_delivered("Hello through nginx").await?;
    frank.send_message("Loud and clear, over wss").await?;
    erin.wait_msg("Loud and clear, over wss").await?;
    frank.wait_msg_delivered("Loud and clear, over wss").await?;
    for b in [&erin, &frank] {
        for text in ["Hello through nginx", "Loud and clear, over wss"] {
            ensure!(b.msg_count(text).await? == 1, "{}: {text:?} shown once", b.name);
        }
        let errors = b.console_errors().await;
        ensure!(errors.is_empty(), "{}: console errors behind nginx: {errors:?}", b.name);
    }

    // Still one browser on each node.
    let per_node = two_sockets(&cluster).await?;
    ensure!(per_node == [1, 1], "one browser socket per node, found {per_node:?}");

    erin.close(d).await?;
    frank.close(d).await?;
    drop(proxy);
    drop(cluster);
    Ok(())
}
