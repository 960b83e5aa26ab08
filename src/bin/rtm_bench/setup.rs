//! Bench accounts and rooms, made through the public HTTP API. Hashing a password
//! costs ~25 ms of server CPU, so a run signs up a limited pool of users (a few
//! hundred at most) and opens many WebSocket connections per user: every connection
//! of a user hears every room that user is in. Names carry a random run tag so runs
//! against a long-lived server never collide. With several nodes, sign-ups and joins
//! go to the nodes in turn (any node serves any account: they share one database).

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    http, report,
    target::{Endpoint, Target},
};

/// Password of every bench account (the server only checks its length).
const PASSWORD: &str = "bench-password-not-secret";
/// Sign-ups in flight at once (the server hashes two at a time by default).
const REGISTER_CONCURRENCY: usize = 4;
/// Other setup calls in flight at once.
const CALL_CONCURRENCY: usize = 16;

/// A signed-up bench account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    /// `rtm_session=...`, sent as the `Cookie` header.
    pub cookie: String,
}

/// Sends a request, retrying a few times when the server says "slow down" (429).
async fn call(
    t: &Endpoint,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &serde_json::Value,
) -> Result<http::Response> {
    let text = body.to_string();
    let mut wait = Duration::from_millis(200);
    for _ in 0..8 {
        let r = http::request(t, method, path, cookie, Some(&text)).await?;
        if r.status != 429 {
            return Ok(r);
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    bail!("{method} {path}: still rate limited after retries")
}

/// Signs up one account `b<tag>-<i>`.
pub async fn register(t: &Endpoint, tag: &str, i: usize) -> Result<User> {
    let username = format!("b{tag}-{i}");
    let body = json!({
        "first_name": "Bench",
        "last_name": format!("User {i}"),
        "email": format!("{username}@bench.example"),
        "username": username,
        "password": PASSWORD,
    });
    let r = call(t, "POST", "/api/register", None, &body).await?;
    if r.status != 201 {
        bail!("sign-up of {username}: HTTP {} {}", r.status, r.body);
    }
    let id =
        r.json()["user"]["id"].as_i64().with_context(|| format!("sign-up of {username}: no user id in {}", r.body))?;
    let cookie = r
        .cookies
        .iter()
        .find(|c| c.split('=').next().is_some_and(|k| k.ends_with("rtm_session")))
        .cloned()
        .with_context(|| format!("sign-up of {username}: no session cookie"))?;
    Ok(User { id, username, cookie })
}

/// Signs up `n` accounts, a few at a time, on the nodes in turn, with a progress bar.
pub async fn register_many(t: &Target, tag: &str, n: usize, quiet: bool) -> Result<Vec<User>> {
    let pb = report::bar(n as u64, "signing up bench users", quiet);
    let users: Vec<User> = stream::iter(0..n)
        .map(|i| {
            let pb = pb.clone();
            async move {
                let u = register(t.node_ep(i), tag, i).await;
                pb.inc(1);
                u
            }
        })
        .buffered(REGISTER_CONCURRENCY)
        .try_collect()
        .await?;
    pb.finish_and_clear();
    Ok(users)
}

/// Creates a public room owned by `owner`; `keep` is its keep-the-last-N retention.
pub async fn create_room(t: &Endpoint, owner: &User, name: &str, keep: i64) -> Result<i64> {
    let body = json!({ "name": name, "retention": { "keep_messages": keep } });
    let r = call(t, "POST", "/api/rooms", Some(&owner.cookie), &body).await?;
    if r.status != 201 {
        bail!("create room {name}: HTTP {} {}", r.status, r.body);
    }
    r.json()["room"]["id"].as_i64().with_context(|| format!("create room {name}: no id in {}", r.body))
}

/// Makes each `(user, room)` pair a membership, a few at a time, on the nodes in turn.
pub async fn join_many(t: &Target, users: &[User], pairs: &[(usize, i64)], quiet: bool) -> Result<()> {
    let pb = report::bar(pairs.len() as u64, "joining rooms", quiet);
    stream::iter(pairs.iter().copied().enumerate())
        .map(|(k, (u, room))| {
            let t = t.node_ep(k);
            let pb = pb.clone();
            async move {
                let user = users.get(u).context("no such bench user")?;
                let path = format!("/api/rooms/{room}/join");
                let r = call(t, "POST", &path, Some(&user.cookie), &json!({})).await?;
                pb.inc(1);
                if r.status != 200 {
                    bail!("{} joining room {room}: HTTP {} {}", user.username, r.status, r.body);
                }
                Ok(())
            }
        })
        .buffer_unordered(CALL_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    pb.finish_and_clear();
    Ok(())
}

/// Opens the DM between `a` and `b`; returns its room id.
pub async fn open_dm(t: &Endpoint, a: &User, b: &User) -> Result<i64> {
    let r = call(t, "POST", "/api/dms", Some(&a.cookie), &json!({ "user_id": b.id })).await?;
    if r.status != 200 {
        bail!("DM {} -> {}: HTTP {} {}", a.username, b.username, r.status, r.body);
    }
    r.json()["room"]["id"].as_i64().with_context(|| format!("DM: no room id in {}", r.body))
}

/// Opens DMs for many pairs of users, a few at a time; returns the room ids in order.
pub async fn open_dms(t: &Endpoint, users: &[User], pairs: &[(usize, usize)]) -> Result<Vec<i64>> {
    let users = Arc::new(users.to_vec());
    stream::iter(pairs.iter().copied())
        .map(|(a, b)| {
            let users = users.clone();
            async move {
                let (Some(ua), Some(ub)) = (users.get(a), users.get(b)) else {
                    bail!("no such bench user");
                };
                open_dm(t, ua, ub).await
            }
        })
        .buffered(CALL_CONCURRENCY)
        .try_collect()
        .await
}
