//! Accounts over real sockets: sign-up, sign-in, sign-out, input rules, session expiry,
//! the same-origin checks, disabling accounts, API tokens, registration modes, the
//! profile and password changes. Every error is checked by status AND stable code.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use rtm::ws::protocol::ServerFrame;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const EVIL: &str = "http://evil.example";

/// Asserts an API error: the status, the stable code, and a non-empty message.
#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    let (s, b) = got;
    assert_eq!(*s, status, "expected {status} `{code}`, got {s}: {b}");
    assert_eq!(b["error"]["code"], code, "wrong error code: {b}");
    assert!(b["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {b}");
}

/// A plain HTTP client: no cookie jar, no default headers (not our web page).
fn bare() -> reqwest::Client {
    reqwest::Client::new()
}

async fn read(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The `rtm_session=...` pair the client was given.
fn cookie_of(c: &Client) -> String {
    c.cookie.clone().expect("a session cookie was set")
}

/// GET /api/me sending exactly this cookie (no jar involved).
async fn me_with_cookie(srv: &TestServer, cookie: &str) -> (u16, Value) {
    read(bare().get(srv.url("/api/me")).header("cookie", cookie)).await
}

/// GET /api/me with a bearer token only.
async fn me_with_bearer(srv: &TestServer, token: &str) -> (u16, Value) {
    read(bare().get(srv.url("/api/me")).bearer_auth(token)).await
}

/// A valid sign-up form for `username` (same fields as the harness uses).
fn account(username: &str) -> Value {
    json!({
        "first_name": format!("{username}-first"),
        "last_name": "Tester",
        "email": format!("{username}@example.org"),
        "username": username,
        "password": password_of(username),
    })
}

/// A fresh client signed in with `login`/`password`.
async fn signed_in(srv: &TestServer, login: &str, password: &str) -> Client {
    let mut c = srv.client();
    let (s, b) = c.login(login, password).await;
    assert_eq!(s, 200, "sign-in as {login}: {b}");
    c
}

/// Reads until the server says `closing` with `session_ended`, then until the stream ends.
async fn expect_session_ended(ws: &mut Ws) {
    expect_session_ended_because(ws, None).await
}

/// The socket gets `closing` `session_ended`, with this reason text if one is given
/// (PROTOCOL §3.6 names each).
async fn expect_session_ended_because(ws: &mut Ws, why: Option<&str>) {
    loop {
        match ws.try_recv(WAIT).await {
            Some(ServerFrame::Closing { code, reason }) => {
                assert_eq!(code, "session_ended");
                if let Some(why) = why {
                    assert_eq!(reason, why);
                }
                break;
            }
            Some(_) => continue,
            None => panic!("the socket ended or stayed open without a `closing` frame"),
        }
    }
    let end = tokio::time::timeout(WAIT, ws.stream.next()).await.expect("the server closes the socket after `closing`");
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "expected the end of the stream, got {end:?}"
    );
}

async fn ping_works(ws: &mut Ws) {
    let f = ws.request(json!({"type": "ping"})).await;
    assert!(matches!(f, ServerFrame::Pong { .. }), "{f:?}");
}

// 1. Sign-up, sign-in (email or username, any case), sign-out.

async fn sign_up_sign_in_sign_out(b: Backend) {
    let srv = TestServer::start(b).await;

    let mut ann = srv.client();
    let (s, body) = ann.register("ann").await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["user"]["username"], "ann");
    assert_eq!(body["user"]["email"], "ann@example.org");
    assert_eq!(body["user"]["is_admin"], true, "the first account is the admin");
    assert!(!body.to_string().contains("password"), "no password material in {body}");
    assert!(cookie_of(&ann).starts_with("rtm_session="));
    let me = ann.me().await;
    assert_eq!(me["username"], "ann");
    assert_eq!(me["first_name"], "ann-first");
    assert_eq!(me["last_name"], "Tester");
    assert_eq!(me["is_admin"], true);
    assert_eq!(me["disabled"], false);

    // The second account is not an admin; the cookie is HttpOnly and SameSite.
    let r = bare()
        .post(srv.url("/api/register"))
        .header("origin", srv.origin())
        .json(&account("bob"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 201);
    let set = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("set-cookie on sign-up").to_string();
    for part in ["rtm_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(part), "{part} missing in {set}");
    }
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["user"]["is_admin"], false);
    let bob_signup_cookie = set.split(';').next().unwrap_or_default().to_string();
    let (s, me) = me_with_cookie(&srv, &bob_signup_cookie).await;
    assert_eq!(s, 200);
    assert_eq!(me["user"]["username"], "bob");
    assert_eq!(me["user"]["is_admin"], false);

    // Sign in by email or username, in any letter case; each gets its own session.
    let mut cookies = vec![bob_signup_cookie.clone()];
    for login in ["bob@example.org", "BOB@Example.ORG", "bob", "BoB"] {
        let mut c = srv.client();
        let (s, body) = c.login(login, &password_of("bob")).await;
        assert_eq!(s, 200, "{login}: {body}");
        assert_eq!(body["user"]["username"], "bob");
        assert_eq!(c.me().await["username"], "bob");
        let ck = cookie_of(&c);
        assert!(!cookies.contains(&ck), "a new session every time");
        cookies.push(ck);
    }

    // Sign-out deletes the session on the server, not only in the browser's jar.
    let bob = signed_in(&srv, "bob", &password_of("bob")).await;
    let cookie = cookie_of(&bob);
    assert_eq!(me_with_cookie(&srv, &cookie).await.0, 200);
    let r = bob.http.post(srv.url("/api/logout")).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 204);
    let cleared = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(cleared.starts_with("rtm_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_error(&me_with_cookie(&srv, &cookie).await, 401, "unauthenticated");
    assert_error(&bob.get("/api/me").await, 401, "unauthenticated");
    assert_eq!(
        Ws::connect(srv.addr, Some(&cookie), Some(&srv.origin()), None).await.err(),
        Some(401),
        "a signed-out session cannot open a websocket"
    );
    // Only that session ended.
    assert_eq!(me_with_cookie(&srv, &bob_signup_cookie).await.0, 200);
    // Signing out without a session still succeeds.
    let (s, _) = srv.client().post("/api/logout", json!({})).await;
    assert_eq!(s, 204);

    // No cookie, or a made-up one, is not signed in.
    assert_error(&srv.client().get("/api/me").await, 401, "unauthenticated");
    assert_error(&me_with_cookie(&srv, "rtm_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await, 401, "unauthenticated");
}

// 2. Bad credentials.

async fn wrong_password_and_unknown_user(b: Backend) {
    let srv = TestServer::start(b).await;
    let _ann = srv.user("ann").await;

    let mut c = srv.client();
    let wrong = c.login("ann", "not-the-password").await;
    assert_error(&wrong, 401, "invalid_credentials");
    assert!(c.cookie.is_none(), "no session on a failed sign-in");
    // Passwords are case-sensitive.
    let upper = password_of("ann").to_uppercase();
    assert_error(&c.login("ann", &upper).await, 401, "invalid_credentials");

    // An unknown account looks exactly like a wrong password.
    let unknown = c.login("nobody", "whatever-password").await;
    assert_error(&unknown, 401, "invalid_credentials");
    assert_eq!(wrong.1, unknown.1, "no hint whether the account exists");
    let unknown_email = c.login("nobody@example.org", &password_of("ann")).await;
    assert_error(&unknown_email, 401, "invalid_credentials");
    assert!(c.cookie.is_none());
    assert_error(&c.get("/api/me").await, 401, "unauthenticated");
}

// 3. Duplicates, in any letter case.

async fn duplicate_email_and_username_any_case(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;

    let mut c = srv.client();
    let mut form = account("other");
    form["email"] = json!("ANN@Example.ORG");
    assert_error(&c.register_with(form).await, 409, "email_taken");
    let mut form = account("other");
    form["email"] = json!("  ann@example.org ");
    assert_error(&c.register_with(form).await, 409, "email_taken");
    for name in ["ann", "ANN", "aNn"] {
        let mut form = account("other");
        form["username"] = json!(name);
        assert_error(&c.register_with(form).await, 409, "username_taken");
    }
    assert!(c.cookie.is_none());

    // None of those created an account.
    assert_error(&c.login("other", &password_of("other")).await, 401, "invalid_credentials");
    let (s, list) = ann.get("/api/admin/users").await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["users"].as_array().map(Vec::len), Some(1), "{list}");
    // And the original is untouched.
    assert_eq!(ann.me().await["email"], "ann@example.org");

    // An accent typed as a letter plus a combining mark is the same letter: no second
    // account or room that looks just like the first.
    let mut jose = srv.client();
    let mut form = account("jose");
    form["email"] = json!("jos\u{e9}@example.org");
    assert_eq!(jose.register_with(form).await.0, 201);
    let mut form = account("other");
    form["email"] = json!("JOSE\u{301}@example.org");
    assert_error(&c.register_with(form).await, 409, "email_taken");
    let mut again = srv.client();
    assert_eq!(again.login("jose\u{301}@example.org", &password_of("jose")).await.0, 200, "signs in either way");
    let (s, body) = jose.patch("/api/me", json!({"first_name": "Jose\u{301}"})).await;
    assert_eq!((s, body["user"]["first_name"].as_str()), (200, Some("Jos\u{e9}")), "{body}");
    let room = jose.create_room("caf\u{e9}", json!({})).await;
    assert!(room > 0);
    assert_error(&ann.post("/api/rooms", json!({"name": "Cafe\u{301}"})).await, 409, "room_name_taken");
}

// 4. One code per broken rule.

async fn bad_input_has_its_own_code(b: Backend) {
    let srv = TestServer::start(b).await;
    let mut c = srv.client();

    let cases: Vec<(&str, Value, &str)> = vec![
        ("email", json!(""), "invalid_email"),
        ("email", json!("carol"), "invalid_email"),
        ("email", json!("@example.org"), "invalid_email"),
        ("email", json!("carol@"), "invalid_email"),
        ("email", json!("ca rol@example.org"), "invalid_email"),
        ("email", json!("a@b@example.org"), "invalid_email"),
        ("username", json!(""), "invalid_username"),
        ("username", json!("ab"), "invalid_username"),
        ("username", json!("_carol"), "invalid_username"),
        ("username", json!("car ol"), "invalid_username"),
        ("username", json!("carolé"), "invalid_username"),
        ("username", json!("c".repeat(33)), "invalid_username"),
        ("first_name", json!(""), "invalid_name"),
        ("first_name", json!("   "), "invalid_name"),
        ("first_name", json!("f".repeat(65)), "invalid_name"),
        ("first_name", json!("a\u{7}b"), "invalid_name"),
        ("last_name", json!(""), "invalid_name"),
        ("password", json!(""), "invalid_password"),
        ("password", json!("1234567"), "invalid_password"),
        ("password", json!("p".repeat(1025)), "invalid_password"),
        ("password", json!("é".repeat(7)), "invalid_password"),
    ];
    for (field, value, code) in cases {
        let mut form = account("carol");
        form[field] = value.clone();
        let got = c.register_with(form).await;
        assert_error(&got, 422, code);
        let msg = got.1["error"]["message"].as_str().unwrap_or_default();
        match code {
            "invalid_username" => assert!(msg.contains("3 to 32"), "{field}={value}: {msg}"),
            "invalid_password" => assert!(msg.contains("8 to 1024"), "{msg}"),
            "invalid_name" if field == "first_name" => assert!(msg.contains("first name"), "{msg}"),
            "invalid_name" => assert!(msg.contains("last name"), "{msg}"),
            _ => {}
        }
    }
    assert!(c.cookie.is_none(), "no failed sign-up opened a session");
    assert_error(&c.login("carol", &password_of("carol")).await, 401, "invalid_credentials");

    // Malformed or incomplete JSON is a 400 with `bad_request`.
    let malformed = read(
        bare()
            .post(srv.url("/api/register"))
            .header("origin", srv.origin())
            .header("content-type", "application/json")
            .body("{\"email\": \"x@example.org\", "),
    )
    .await;
    assert_error(&malformed, 400, "bad_request");
    let missing = c.register_with(json!({"email": "x@example.org", "username": "xavier"})).await;
    assert_error(&missing, 400, "bad_request");
    let wrong_type = c
        .register_with(json!({"first_name": 1, "last_name": "T", "email": "x@example.org", "username": "xavier", "password": "password-x"}))
        .await;
    assert_error(&wrong_type, 400, "bad_request");
    assert_error(
        &read(
            bare()
                .post(srv.url("/api/login"))
                .header("origin", srv.origin())
                .header("content-type", "application/json")
                .body("not json"),
        )
        .await,
        400,
        "bad_request",
    );

    // The edges that are allowed: 8 and 1024 characters (characters, not bytes).
    let mut form = account("eight");
    form["password"] = json!("12345678");
    assert_eq!(c.register_with(form).await.0, 201);
    let long = "p".repeat(1024);
    let mut form = account("long1024");
    form["password"] = json!(long);
    let (s, body) = srv.client().register_with(form).await;
    assert_eq!(s, 201, "{body}");
    signed_in(&srv, "long1024", &long).await;
    // The whole password counts: a prefix is not enough (no truncation).
    assert_error(&srv.client().login("long1024", &long[..1023]).await, 401, "invalid_credentials");
    let mut form = account("accents");
    form["password"] = json!("é".repeat(8));
    assert_eq!(srv.client().register_with(form).await.0, 201);
    // Names are trimmed; the longest username is fine.
    let mut form = account("x");
    form["username"] = json!(format!("  {}  ", "u".repeat(32)));
    form["first_name"] = json!("  Zoë  ");
    let (s, body) = srv.client().register_with(form).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["user"]["username"], "u".repeat(32));
    assert_eq!(body["user"]["first_name"], "Zoë");
    // Ids in a path are numbers: a name there is a 400 that says so.
    let signed = signed_in(&srv, "eight", "12345678").await;
    let got = signed.get("/api/rooms/lounge").await;
    assert_error(&got, 400, "bad_request");
    assert_eq!(got.1["error"]["message"], "ids in the path are numbers; \"lounge\" is not one", "{}", got.1);
}

// 5. Expired sessions.

async fn idle_session_expires(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.session_idle_secs = 1).await;
    let ann = srv.user("ann").await;
    let cookie = cookie_of(&ann);
    assert_eq!(me_with_cookie(&srv, &cookie).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_error(&me_with_cookie(&srv, &cookie).await, 401, "unauthenticated");
    assert_eq!(Ws::connect(srv.addr, Some(&cookie), Some(&srv.origin()), None).await.err(), Some(401));
    // Signing in again works.
    let again = signed_in(&srv, "ann", &password_of("ann")).await;
    assert_eq!(again.me().await["username"], "ann");
}

async fn session_max_age_expires(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.session_max_secs = 1).await;
    let r = bare()
        .post(srv.url("/api/register"))
        .header("origin", srv.origin())
        .json(&account("ann"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 201);
    let set = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(set.contains("Max-Age=1"), "{set}");
    // Sent by hand: a browser would drop the cookie, the server must refuse it anyway.
    let cookie = set.split(';').next().unwrap_or_default().to_string();
    assert_eq!(me_with_cookie(&srv, &cookie).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_error(&me_with_cookie(&srv, &cookie).await, 401, "unauthenticated");
}

// 6. Cross-origin requests.

async fn cross_origin_posts_refused(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let cookie = cookie_of(&ann);
    let login = json!({"login": "ann", "password": password_of("ann")});

    // Sign-in from another site.
    let r = read(bare().post(srv.url("/api/login")).header("origin", EVIL).json(&login)).await;
    assert_error(&r, 403, "bad_origin");
    let r = read(bare().post(srv.url("/api/login")).header("origin", srv.origin()).json(&login)).await;
    assert_eq!(r.0, 200, "{}", r.1);

    // A signed-in state change riding on the cookie from another site.
    let evil_post = |path: &str, body: Value| {
        bare().post(srv.url(path)).header("cookie", &cookie).header("origin", EVIL).json(&body)
    };
    assert_error(&read(evil_post("/api/rooms", json!({"name": "forged"}))).await, 403, "bad_origin");
    assert_error(&read(evil_post("/api/me/tokens", json!({"name": "stolen"}))).await, 403, "bad_origin");
    assert_error(&read(evil_post("/api/logout", json!({}))).await, 403, "bad_origin");
    assert_error(
        &read(
            bare()
                .patch(srv.url("/api/me"))
                .header("cookie", &cookie)
                .header("origin", EVIL)
                .json(&json!({"first_name": "Pwned"})),
        )
        .await,
        403,
        "bad_origin",
    );
    // Our own host on another port, or an opaque origin, is foreign too.
    let other_port = read(
        bare()
            .post(srv.url("/api/rooms"))
            .header("cookie", &cookie)
            .header("origin", "http://127.0.0.1:1")
            .json(&json!({"name": "forged"})),
    )
    .await;
    assert_error(&other_port, 403, "bad_origin");
    let null = read(
        bare()
            .post(srv.url("/api/rooms"))
            .header("cookie", &cookie)
            .header("origin", "null")
            .json(&json!({"name": "forged"})),
    )
    .await;
    assert_error(&null, 403, "bad_origin");
    // No Origin but the browser says cross-site.
    let fetch_site = read(
        bare()
            .post(srv.url("/api/rooms"))
            .header("cookie", &cookie)
            .header("sec-fetch-site", "cross-site")
            .json(&json!({"name": "forged"})),
    )
    .await;
    assert_error(&fetch_site, 403, "bad_origin");

    // Nothing of that happened: the session lives, no token, the name is unchanged, and
    // the room name is still free for a same-origin request.
    assert_eq!(me_with_cookie(&srv, &cookie).await.0, 200);
    let (_, tokens) = ann.get("/api/me/tokens").await;
    assert_eq!(tokens["tokens"], json!([]));
    assert_eq!(ann.me().await["first_name"], "ann-first");
    ann.create_room("forged", json!({})).await;
}

async fn websocket_handshake_checks(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let cookie = cookie_of(&ann);
    let origin = srv.origin();

    // Cross-site WebSocket hijacking: the cookie from a foreign page.
    assert_eq!(Ws::connect(srv.addr, Some(&cookie), Some(EVIL), None).await.err(), Some(403));
    // A cookie without any Origin is not trusted either.
    assert_eq!(Ws::connect(srv.addr, Some(&cookie), None, None).await.err(), Some(403));
    // No credentials at all, or a made-up session.
    assert_eq!(Ws::connect(srv.addr, None, Some(&origin), None).await.err(), Some(401));
    assert_eq!(Ws::connect(srv.addr, None, None, None).await.err(), Some(401));
    assert_eq!(Ws::connect(srv.addr, Some("rtm_session=bogus"), Some(&origin), None).await.err(), Some(401));
    // Same origin with the cookie works.
    let mut ws = Ws::connect(srv.addr, Some(&cookie), Some(&origin), None).await.expect("same-origin websocket");
    ping_works(&mut ws).await;
}

// 7. Disabled accounts.

/// The directory's 50 are 50 enabled accounts (disabled ones are not cut after the
/// limit), and a room's `member_count` counts the members its list shows.
async fn disabled_accounts_take_no_place_in_lists_and_counts(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("zz-admin").await;
    let mut users = Vec::new();
    for i in 0..52 {
        users.push(srv.user(&format!("u{i:02}")).await);
    }
    let room = users[2].create_room("counted", json!({})).await;
    for u in [&users[0], &users[1]] {
        assert_eq!(u.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    }
    for u in [&users[0], &users[1]] {
        let id = u.id().await;
        assert_eq!(admin.post(&format!("/api/admin/users/{id}/disable"), json!({})).await.0, 204);
    }
    for path in ["/api/users", "/api/users?q=u"] {
        let (s, body) = users[3].get(path).await;
        assert_eq!(s, 200, "{body}");
        let names: Vec<&str> =
            body["users"].as_array().expect("users").iter().filter_map(|u| u["username"].as_str()).collect();
        assert_eq!(names.len(), 50, "{path}: {names:?}");
        assert_eq!((names[0], names[49]), ("u02", "u51"), "{path}: {names:?}");
    }
    let (_, rooms) = users[3].get("/api/rooms?q=counted").await;
    assert_eq!(rooms["rooms"][0]["member_count"], 1, "{rooms}");
    let (_, members) = users[2].get(&format!("/api/rooms/{room}/members")).await;
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1), "{members}");
}

async fn disabled_user_is_locked_out(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("admin").await;
    let vic = srv.user("vic").await;
    let bob = srv.user("bob").await;
    let vic_id = vic.id().await;
    let cookie = cookie_of(&vic);
    let (s, t) = vic.post("/api/me/tokens", json!({"name": "bot"})).await;
    assert_eq!(s, 201, "{t}");
    let token = t["token"].as_str().expect("token").to_string();
    let mut ws = vic.ws().await;
    let mut ws_bearer = Ws::connect(srv.addr, None, None, Some(&token)).await.expect("bearer websocket");

    // Only the admin may disable, and not themself.
    let disable = format!("/api/admin/users/{vic_id}/disable");
    let enable = format!("/api/admin/users/{vic_id}/enable");
    assert_error(&bob.post(&disable, json!({})).await, 403, "forbidden");
    assert_error(&vic.post(&disable, json!({})).await, 403, "forbidden");
    assert_error(&bob.get("/api/admin/users").await, 403, "forbidden");
    let admin_id = admin.id().await;
    assert_error(&admin.post(&format!("/api/admin/users/{admin_id}/disable"), json!({})).await, 403, "forbidden");
    assert_error(&admin.post("/api/admin/users/987654/disable", json!({})).await, 404, "user_not_found");
    assert_eq!(me_with_cookie(&srv, &cookie).await.0, 200, "still enabled");

    let (s, body) = admin.post(&disable, json!({})).await;
    assert_eq!(s, 204, "{body}");

    // Open sockets, cookie and bearer alike, are closed by the server.
    expect_session_ended_because(&mut ws, Some("your account was disabled")).await;
    expect_session_ended_because(&mut ws_bearer, Some("your account was disabled")).await;
    // Sessions are deleted: the old cookie is simply not signed in any more.
    assert_error(&me_with_cookie(&srv, &cookie).await, 401, "unauthenticated");
    assert_error(&vic.get("/api/me").await, 401, "unauthenticated");
    // Signing in is refused as disabled, but only with the right password.
    let mut c = srv.client();
    assert_error(&c.login("vic", &password_of("vic")).await, 403, "account_disabled");
    assert!(c.cookie.is_none());
    assert_error(&c.login("vic", "wrong-password").await, 401, "invalid_credentials");
    // The API token is refused too, over HTTP and WebSocket.
    assert_error(&me_with_bearer(&srv, &token).await, 403, "account_disabled");
    assert_eq!(Ws::connect(srv.addr, None, None, Some(&token)).await.err(), Some(403));
    // The admin sees it.
    let (_, list) = admin.get("/api/admin/users").await;
    let row = list["users"].as_array().and_then(|u| u.iter().find(|u| u["id"] == vic_id)).cloned().expect("vic listed");
    assert_eq!(row["disabled"], true);
    // Others are unaffected.
    assert_eq!(bob.me().await["username"], "bob");

    // Re-enable: only the admin; then sign-in and the token work again, the old
    // session stays ended.
    assert_error(&bob.post(&enable, json!({})).await, 403, "forbidden");
    let (s, body) = admin.post(&enable, json!({})).await;
    assert_eq!(s, 204, "{body}");
    let back = signed_in(&srv, "vic", &password_of("vic")).await;
    assert_eq!(back.me().await["disabled"], false);
    assert_eq!(me_with_bearer(&srv, &token).await.0, 200);
    assert_error(&me_with_cookie(&srv, &cookie).await, 401, "unauthenticated");
}

// 8. API tokens.

async fn api_tokens(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;

    let (s, body) = ann.post("/api/me/tokens", json!({"name": "  bot "})).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["name"], "bot");
    // The answer names the token as it is stored and listed: composed (NFC).
    let (s, composed) = ann.post("/api/me/tokens", json!({"name": "Jose\u{301} key"})).await;
    assert_eq!((s, composed["name"].as_str()), (201, Some("Jos\u{e9} key")), "{composed}");
    let (_, list) = ann.get("/api/me/tokens").await;
    assert!(list["tokens"].as_array().expect("tokens").iter().any(|t| t["name"] == composed["name"]), "{list}");
    assert_eq!(ann.delete(&format!("/api/me/tokens/{}", composed["id"])).await.0, 204);
    let id = body["id"].as_i64().expect("token id");
    let token = body["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("rtm_") && token.len() > 20, "token: {token}");

    // A fresh client with only the bearer.
    let (s, me) = me_with_bearer(&srv, &token).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user"]["username"], "ann");
    // A script sends no Origin: state changes work with the bearer alone.
    let (s, room) =
        read(bare().post(srv.url("/api/rooms")).bearer_auth(&token).json(&json!({"name": "bot-room"}))).await;
    assert_eq!(s, 201, "{room}");
    // The bearer works for the WebSocket, with no Origin.
    let mut ws = Ws::connect(srv.addr, None, None, Some(&token)).await.expect("bearer websocket");
    ping_works(&mut ws).await;
    drop(ws);

    // Listed without the secret; other users see none of it.
    let (s, list) = ann.get("/api/me/tokens").await;
    assert_eq!(s, 200, "{list}");
    let tokens = list["tokens"].as_array().expect("tokens").clone();
    assert_eq!(tokens.len(), 1, "{list}");
    assert_eq!(tokens[0]["id"], id);
    assert_eq!(tokens[0]["name"], "bot");
    assert!(tokens[0].get("token").is_none(), "{list}");
    let secret = token.trim_start_matches("rtm_");
    assert!(!list.to_string().contains(secret), "secret leaked: {list}");
    let (_, theirs) = bob.get("/api/me/tokens").await;
    assert_eq!(theirs["tokens"], json!([]));
    assert_error(&bob.delete(&format!("/api/me/tokens/{id}")).await, 404, "not_found");
    assert_eq!(me_with_bearer(&srv, &token).await.0, 200);

    // Token names follow a rule; made-up tokens are refused.
    assert_error(&ann.post("/api/me/tokens", json!({"name": "  "})).await, 422, "invalid_name");
    assert_error(&ann.post("/api/me/tokens", json!({"name": "n".repeat(65)})).await, 422, "invalid_name");
    assert_error(&me_with_bearer(&srv, "rtm_not-a-real-token").await, 401, "unauthenticated");
    // Without a session, no tokens can be made.
    assert_error(&srv.client().post("/api/me/tokens", json!({"name": "x"})).await, 401, "unauthenticated");

    // Revoke.
    let (s, body) = ann.delete(&format!("/api/me/tokens/{id}")).await;
    assert_eq!(s, 204, "{body}");
    assert_error(&me_with_bearer(&srv, &token).await, 401, "unauthenticated");
    assert_eq!(Ws::connect(srv.addr, None, None, Some(&token)).await.err(), Some(401));
    // A bearer wins over a cookie: a revoked bearer is not rescued by a valid cookie.
    let mixed = read(bare().get(srv.url("/api/me")).header("cookie", cookie_of(&ann)).bearer_auth(&token)).await;
    assert_error(&mixed, 401, "unauthenticated");
    let (_, list) = ann.get("/api/me/tokens").await;
    assert_eq!(list["tokens"], json!([]));
    assert_error(&ann.delete(&format!("/api/me/tokens/{id}")).await, 404, "not_found");
    assert_eq!(ann.me().await["username"], "ann", "the session is unaffected");
}

/// Revoking a token ends what it opened, as signing out ends the session's sockets.
async fn revoked_token_closes_its_websocket(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let (s, body) = ann.post("/api/me/tokens", json!({"name": "bot"})).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_i64().expect("id");
    let token = body["token"].as_str().expect("token").to_string();
    let mut ws = Ws::connect(srv.addr, None, None, Some(&token)).await.expect("bearer websocket");
    let mut ws_cookie = ann.ws().await;
    let (s, _) = ann.delete(&format!("/api/me/tokens/{id}")).await;
    assert_eq!(s, 204);
    expect_session_ended(&mut ws).await;
    // The owner's cookie socket is not the token's.
    ping_works(&mut ws_cookie).await;
}

// 9. Registration modes.

async fn registration_closed(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("admin").await;
    let bob = srv.user("bob").await;
    let (_, cfg) = read(bare().get(srv.url("/api/config"))).await;
    assert_eq!(cfg["registration"], "open");

    // Only the admin chooses the mode.
    assert_error(&bob.put("/api/admin/registration", json!({"mode": "closed"})).await, 403, "forbidden");
    assert_error(&admin.put("/api/admin/registration", json!({"mode": "sometimes"})).await, 400, "bad_request");
    let (_, cfg) = read(bare().get(srv.url("/api/config"))).await;
    assert_eq!(cfg["registration"], "open");

    let (s, body) = admin.put("/api/admin/registration", json!({"mode": "closed"})).await;
    assert_eq!(s, 204, "{body}");
    let (s, cfg) = read(bare().get(srv.url("/api/config"))).await;
    assert_eq!(s, 200);
    assert_eq!(cfg["registration"], "closed");

    let mut c = srv.client();
    assert_error(&c.register("carol").await, 403, "registration_closed");
    assert!(c.cookie.is_none());
    assert_error(&c.login("carol", &password_of("carol")).await, 401, "invalid_credentials");

    // The admin still adds accounts; others may not.
    assert_error(&bob.post("/api/admin/users", account("dave")).await, 403, "forbidden");
    let (s, body) = admin.post("/api/admin/users", account("carol")).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["user"]["username"], "carol");
    assert_eq!(body["user"]["is_admin"], false);
    signed_in(&srv, "carol", &password_of("carol")).await;
    // The admin's form obeys the same rules.
    let mut form = account("other");
    form["email"] = json!("CAROL@example.org");
    assert_error(&admin.post("/api/admin/users", form).await, 409, "email_taken");
    let mut form = account("erin");
    form["password"] = json!("short");
    assert_error(&admin.post("/api/admin/users", form).await, 422, "invalid_password");

    // Open again.
    let (s, _) = admin.put("/api/admin/registration", json!({"mode": "open"})).await;
    assert_eq!(s, 204);
    assert_eq!(srv.client().register("frank").await.0, 201);
}

async fn registration_by_invite(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("admin").await;
    let bob = srv.user("bob").await;

    assert_error(&bob.put("/api/admin/registration", json!({"mode": "invite"})).await, 403, "forbidden");
    let (s, _) = admin.put("/api/admin/registration", json!({"mode": "invite"})).await;
    assert_eq!(s, 204);
    let (_, cfg) = read(bare().get(srv.url("/api/config"))).await;
    assert_eq!(cfg["registration"], "invite");

    // No invite, an empty one or a made-up one.
    let mut c = srv.client();
    assert_error(&c.register("carol").await, 403, "invalid_invite");
    for bad in ["", "   ", "not-a-real-invite"] {
        let mut form = account("carol");
        form["invite"] = json!(bad);
        assert_error(&c.register_with(form).await, 403, "invalid_invite");
    }

    // Only the admin makes invites.
    assert_error(&bob.post("/api/admin/invites", json!({})).await, 403, "forbidden");
    let (s, inv) = admin.post("/api/admin/invites", json!({})).await;
    assert_eq!(s, 201, "{inv}");
    let code = inv["code"].as_str().expect("code").to_string();
    assert!(!code.is_empty());
    assert_eq!(inv["url"], format!("{}/?invite={code}", srv.origin()));

    // A sign-up that fails after the invite was claimed does not spend it.
    let mut form = account("carol");
    form["email"] = json!("Bob@Example.org");
    form["invite"] = json!(code);
    assert_error(&c.register_with(form).await, 409, "email_taken");
    let mut form = account("bob");
    form["email"] = json!("carol@example.org");
    form["invite"] = json!(code);
    assert_error(&c.register_with(form).await, 409, "username_taken");
    // Nor does one refused by validation.
    let mut form = account("carol");
    form["username"] = json!("x");
    form["invite"] = json!(code);
    assert_error(&c.register_with(form).await, 422, "invalid_username");

    // Now it works, once (surrounding spaces from a paste are fine).
    let mut form = account("carol");
    form["invite"] = json!(format!(" {code} "));
    let (s, body) = c.register_with(form).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(c.me().await["username"], "carol");
    let mut form = account("dave");
    form["invite"] = json!(code);
    assert_error(&srv.client().register_with(form).await, 403, "invalid_invite");

    // Two sign-ups racing for one invite: exactly one wins.
    let (_, inv) = admin.post("/api/admin/invites", json!({})).await;
    let code2 = inv["code"].as_str().expect("code").to_string();
    let (mut c1, mut c2) = (srv.client(), srv.client());
    let mut f1 = account("erin");
    f1["invite"] = json!(code2);
    let mut f2 = account("frank");
    f2["invite"] = json!(code2);
    let (r1, r2) = tokio::join!(c1.register_with(f1), c2.register_with(f2));
    let mut statuses = [r1.0, r2.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403], "{r1:?} {r2:?}");
    let loser = if r1.0 == 403 { &r1 } else { &r2 };
    assert_error(loser, 403, "invalid_invite");

    // The admin adds accounts whatever the mode.
    let (s, body) = admin.post("/api/admin/users", account("gina")).await;
    assert_eq!(s, 201, "{body}");
    signed_in(&srv, "gina", &password_of("gina")).await;
}

// 10. Profile and password.

async fn profile_update(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let _bob = srv.user("bob").await;

    let (s, body) = ann.patch("/api/me", json!({"first_name": "  Annie ", "last_name": "Smith"})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["first_name"], "Annie");
    assert_eq!(body["user"]["last_name"], "Smith");
    assert_eq!(body["user"]["username"], "ann", "absent fields stay");
    let me = ann.me().await;
    assert_eq!(me["first_name"], "Annie");
    assert_eq!(me["email"], "ann@example.org");

    // Each rule, with its code; nothing changes.
    assert_error(&ann.patch("/api/me", json!({"first_name": ""})).await, 422, "invalid_name");
    let bad_name = ann.patch("/api/me", json!({"username": "x!"})).await;
    assert_error(&bad_name, 422, "invalid_username");
    assert!(bad_name.1["error"]["message"].as_str().is_some_and(|m| m.contains("3 to 32")));
    assert_error(&ann.patch("/api/me", json!({"email": "nope"})).await, 422, "invalid_email");
    assert_error(&ann.patch("/api/me", json!({"username": "BOB"})).await, 409, "username_taken");
    // A new email needs the current password (the way into the account).
    assert_error(&ann.patch("/api/me", json!({"email": "ann2@example.org"})).await, 422, "password_required");
    assert_error(
        &ann.patch("/api/me", json!({"email": "ann2@example.org", "current_password": "not-my-password"})).await,
        422,
        "wrong_password",
    );
    assert_error(
        &ann.patch("/api/me", json!({"email": "Bob@Example.org", "current_password": password_of("ann")})).await,
        409,
        "email_taken",
    );
    // All or nothing: the name is not changed when the username is taken.
    assert_error(&ann.patch("/api/me", json!({"first_name": "Zed", "username": "bob"})).await, 409, "username_taken");
    assert_error(&srv.client().patch("/api/me", json!({"first_name": "X"})).await, 401, "unauthenticated");
    let me = ann.me().await;
    assert_eq!(me["first_name"], "Annie");
    assert_eq!(me["username"], "ann");

    // Change username and email.
    let (s, body) = ann
        .patch(
            "/api/me",
            json!({"username": "Annabel", "email": "Annabel@Example.net", "current_password": password_of("ann")}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["username"], "Annabel");
    assert_eq!(body["user"]["email"], "Annabel@Example.net");
    // Your own name in another case is not "taken".
    let (s, body) = ann.patch("/api/me", json!({"username": "annabel"})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["username"], "annabel");

    // Sign-in follows; the old name and email are free again.
    signed_in(&srv, "ANNABEL", &password_of("ann")).await;
    signed_in(&srv, "annabel@example.net", &password_of("ann")).await;
    assert_error(&srv.client().login("ann", &password_of("ann")).await, 401, "invalid_credentials");
    assert_error(&srv.client().login("ann@example.org", &password_of("ann")).await, 401, "invalid_credentials");
    assert_eq!(srv.client().register("ann").await.0, 201);
}

async fn password_change(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let other = signed_in(&srv, "ann", &password_of("ann")).await;
    let other_cookie = cookie_of(&other);
    let mut ws_ann = ann.ws().await;
    let mut ws_other = other.ws().await;
    // A socket opened with an API token: tokens outlive a password change.
    let (s, tok) = ann.post("/api/me/tokens", json!({"name": "script"})).await;
    assert_eq!(s, 201, "{tok}");
    let token = tok["token"].as_str().expect("token").to_string();
    let mut ws_token = Ws::connect(srv.addr, None, None, Some(&token)).await.expect("token socket");
    let new_password = "brand-new-password";

    assert_error(
        &ann.post("/api/me/password", json!({"current_password": "not-my-password", "new_password": new_password}))
            .await,
        422,
        "wrong_password",
    );
    assert_error(
        &ann.post("/api/me/password", json!({"current_password": password_of("ann"), "new_password": "short"})).await,
        422,
        "invalid_password",
    );
    assert_error(&ann.post("/api/me/password", json!({"new_password": new_password})).await, 400, "bad_request");
    assert_error(
        &srv.client()
            .post("/api/me/password", json!({"current_password": password_of("ann"), "new_password": new_password}))
            .await,
        401,
        "unauthenticated",
    );
    // Nothing changed yet.
    assert_eq!(other.get("/api/me").await.0, 200);
    signed_in(&srv, "ann", &password_of("ann")).await;

    let (s, body) = ann
        .post("/api/me/password", json!({"current_password": password_of("ann"), "new_password": new_password}))
        .await;
    assert_eq!(s, 204, "{body}");

    // Every other session ends (and its socket); this one lives on.
    assert_error(&other.get("/api/me").await, 401, "unauthenticated");
    assert_error(&me_with_cookie(&srv, &other_cookie).await, 401, "unauthenticated");
    expect_session_ended(&mut ws_other).await;
    assert_eq!(ann.me().await["username"], "ann");
    ping_works(&mut ws_ann).await;
    // The API token stays valid, and so does its socket (PROTOCOL §2.3, §3.6).
    ping_works(&mut ws_token).await;

    // The old password is refused, the new one signs in.
    assert_error(&srv.client().login("ann", &password_of("ann")).await, 401, "invalid_credentials");
    signed_in(&srv, "ann@example.org", new_password).await;
}

/// A cross-site request that carries some `Authorization` header which is not a bearer
/// token (a proxy's Basic auth the browser adds by itself) still rides on the cookie:
/// it must pass the same-origin check.
async fn non_bearer_authorization_does_not_skip_origin_check(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let cookie = cookie_of(&ann);
    for auth in ["Basic dXNlcjpwYXNz", "Bearer "] {
        let got = read(
            bare()
                .post(srv.url("/api/rooms"))
                .header("cookie", &cookie)
                .header("origin", EVIL)
                .header("authorization", auth)
                .json(&json!({"name": "forged"})),
        )
        .await;
        assert_error(&got, 403, "bad_origin");
    }
}

/// Only the very first account is the admin, even when several sign up at once.
async fn one_admin_under_concurrent_first_sign_ups(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.hash_concurrency = 8).await;
    let mut clients: Vec<Client> = (0..8).map(|_| srv.client()).collect();
    let results = futures_util::future::join_all(
        clients.iter_mut().enumerate().map(|(i, c)| async move { c.register(&format!("user{i}")).await }),
    )
    .await;
    let mut admins = 0;
    for (s, body) in &results {
        assert_eq!(*s, 201, "{body}");
        if body["user"]["is_admin"] == true {
            admins += 1;
        }
    }
    assert_eq!(admins, 1, "{results:?}");
}

/// "Ends after this many seconds without use": a session in use keeps living, past
/// its idle limit counted from sign-in. The limit is a wall-clock time (it holds across
/// restarts and nodes), so the margin between uses and limit is 2 s. With 1.2 s, a CI
/// run got 401 at its first use, less than 3 s into the test's whole run: the one
/// cause found is the machine's wall clock stepping ahead.
async fn session_in_use_stays_alive(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.session_idle_secs = 4).await;
    let ann = srv.user("ann").await;
    let cookie = cookie_of(&ann);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let got = me_with_cookie(&srv, &cookie).await;
        assert_eq!(got.0, 200, "used 2 s ago, idle limit 4 s: {}", got.1);
    }
}

/// NUL and other control characters in every string a client can send get the same
/// clear 4xx on every backend (PostgreSQL refuses NUL in text: it must never get one).
async fn control_characters_get_clear_errors_everywhere(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let _bob = srv.user("bob").await;
    for (k, bad) in ["bo\u{0}b", "bo\u{1b}b"].into_iter().enumerate() {
        // Sign-in: no such account.
        let mut c = srv.client();
        assert_error(&c.login(bad, "whatever-password").await, 401, "invalid_credentials");
        // Searches.
        let q = urlencode(bad);
        assert_error(&ann.get(&format!("/api/users?q={q}")).await, 422, "invalid_query");
        assert_error(&ann.get(&format!("/api/rooms?q={q}")).await, 422, "invalid_query");
        // Token names follow the rule of other names.
        assert_error(&ann.post("/api/me/tokens", json!({"name": bad})).await, 422, "invalid_name");
        // Invitations: nobody is called that.
        let room = ann.create_room(&format!("room-{k}"), json!({"private": true})).await;
        assert_error(
            &ann.post(&format!("/api/rooms/{room}/members"), json!({"username": bad})).await,
            404,
            "user_not_found",
        );
        // Profile, rooms and sign-up fields.
        assert_error(&ann.patch("/api/me", json!({"first_name": bad})).await, 422, "invalid_name");
        assert_error(&ann.post("/api/rooms", json!({"name": bad})).await, 422, "invalid_room_name");
        let (s, body) = srv
            .client()
            .register_with(json!({"first_name": "X", "last_name": "Y", "email": format!("{bad}@example.org"), "username": "okname", "password": "long-enough-1"}))
            .await;
        assert_eq!((s, body["error"]["code"].as_str()), (422, Some("invalid_email")), "{body}");
    }
    // Invisible and direction-changing characters in what others see are refused.
    for hidden in ["ann\u{202E}nimda", "ann\u{200B}", "\u{3164}"] {
        assert_error(&ann.patch("/api/me", json!({"last_name": hidden})).await, 422, "invalid_name");
        assert_error(&ann.post("/api/rooms", json!({"name": format!("{hidden}room")})).await, 422, "invalid_room_name");
        assert_error(
            &ann.post("/api/rooms", json!({"name": "fine-room", "topic": format!("about {hidden}")})).await,
            422,
            "invalid_topic",
        );
    }
    // The server is still well: a normal search works.
    let (s, users) = ann.get("/api/users?q=bo").await;
    assert_eq!(s, 200, "{users}");
}

/// The directory, the room list and the console's lists find names and topics in
/// any case by Unicode's rules on every backend (SQLite's `lower()` folds ASCII only:
/// "émile" did not find Émile there), after a profile or topic change too.
async fn searches_ignore_case_beyond_ascii(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("ann").await;
    let mut emile = srv.client();
    let (s, body) = emile
        .register_with(json!({"first_name": "Émile", "last_name": "Zola", "email": "ez@example.org", "username": "ezola", "password": "long-enough-1"}))
        .await;
    assert_eq!(s, 201, "{body}");
    let found = |v: &Value, list: &str, key: &str| -> Vec<String> {
        v[list].as_array().map_or(vec![], |a| a.iter().map(|x| x[key].as_str().unwrap_or("").to_string()).collect())
    };
    for q in ["émile", "ÉMILE", "Émile Zola", "ÉMILE ZOLA", "le zo"] {
        let (s, users) = admin.get(&format!("/api/users?q={}", urlencode(q))).await;
        assert_eq!((s, found(&users, "users", "username")), (200, vec!["ezola".to_string()]), "q={q}");
        let (_, users) = admin.get(&format!("/api/admin/users?q={}", urlencode(q))).await;
        assert_eq!(found(&users, "users", "username"), ["ezola"], "console, q={q}");
    }
    // A changed name is found by its new spelling only.
    assert_eq!(emile.patch("/api/me", json!({"first_name": "Ødegård"})).await.0, 200);
    let (_, users) = admin.get(&format!("/api/users?q={}", urlencode("ødegård zola"))).await;
    assert_eq!(found(&users, "users", "username"), ["ezola"]);
    let (_, users) = admin.get(&format!("/api/users?q={}", urlencode("émile"))).await;
    assert_eq!(found(&users, "users", "username"), Vec::<String>::new());

    let room = emile.create_room("cafe", json!({"topic": "Ünïcödé ÉTÉ"})).await;
    for q in ["été", "ÉTÉ", "ünï"] {
        let (_, rooms) = admin.get(&format!("/api/rooms?q={}", urlencode(q))).await;
        assert_eq!(found(&rooms, "rooms", "name"), ["cafe"], "q={q}");
        let (_, rooms) = admin.get(&format!("/api/admin/rooms?q={}", urlencode(q))).await;
        assert_eq!(found(&rooms, "rooms", "name"), ["cafe"], "console, q={q}");
    }
    assert_eq!(emile.patch(&format!("/api/rooms/{room}"), json!({"topic": "ΣΩΚΡΆΤΗΣ"})).await.0, 200);
    let (_, rooms) = admin.get(&format!("/api/rooms?q={}", urlencode("σωκράτ"))).await;
    assert_eq!(found(&rooms, "rooms", "name"), ["cafe"]);
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// An account holds a bounded number of API tokens (`--max-api-tokens`).
async fn api_tokens_are_capped(b: Backend) {
    let srv = TestServer::start_with(b, |c| c.max_api_tokens = 3).await;
    let ann = srv.user("ann").await;
    let mut ids = vec![];
    for k in 0..3 {
        let (s, body) = ann.post("/api/me/tokens", json!({"name": format!("t{k}")})).await;
        assert_eq!(s, 201, "{body}");
        ids.push(body["id"].as_i64().expect("id"));
    }
    assert_error(&ann.post("/api/me/tokens", json!({"name": "one more"})).await, 422, "too_many_tokens");
    // Revoking one makes room again.
    assert_eq!(ann.delete(&format!("/api/me/tokens/{}", ids[0])).await.0, 204);
    assert_eq!(ann.post("/api/me/tokens", json!({"name": "one more"})).await.0, 201);
}

/// Behind a trusted proxy, sign-in budgets are per address, and per /64 for IPv6 (one
/// user can pick any address of their /64).
async fn ipv6_neighbours_share_a_sign_in_budget(b: Backend) {
    let srv = TestServer::start_with(b, |c| {
        c.trust_proxy = true;
        c.auth_rate_per_min = 3;
    })
    .await;
    let c = srv.client();
    let attempt = |xff: &'static str| {
        let req = c
            .http
            .post(format!("{}/api/login", c.base))
            .header("x-forwarded-for", xff)
            .json(&json!({"login": "nobody", "password": "wrong-password-1"}));
        async move { req.send().await.expect("request").status().as_u16() }
    };
    for xff in ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::3"] {
        assert_eq!(attempt(xff).await, 401, "{xff}");
    }
    assert_eq!(attempt("2001:db8:7:7::4").await, 429, "the same /64 shares one budget");
    assert_eq!(attempt("2001:db8:7:8::1").await, 401, "another /64 has its own");
}

/// One sign-in attempt as a browser behind a trusting proxy at address `xff`: the
/// status, the body and the `Retry-After` header.
async fn sign_in_from(c: &Client, xff: &str, login: &str, password: &str) -> (u16, Value, Option<u64>) {
    let r = c
        .http
        .post(format!("{}/api/login", c.base))
        .header("x-forwarded-for", xff)
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let body = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, body, retry)
}

/// Asserts a `sign_in_delayed` answer and returns its wait (seconds), which the header
/// and the body agree on and which never exceeds the cap.
#[track_caller]
fn delayed(got: &(u16, Value, Option<u64>), cap: u64) -> u64 {
    let (s, b, header) = got;
    assert_eq!(*s, 429, "expected sign_in_delayed, got {s}: {b}");
    assert_eq!(b["error"]["code"], "sign_in_delayed", "{b}");
    let secs = b["error"]["retry_after"].as_u64().expect("retry_after in the body");
    assert_eq!(Some(secs), *header, "Retry-After agrees with the body");
    assert!((1..=cap).contains(&secs), "a wait of 1..={cap} s, not {secs}");
    secs
}

/// Guesses at one account spread over many addresses (each a fresh browser, on
/// alternate nodes of a cluster) are slowed down after the free attempts: one guess
/// per wait, the wait doubling up to a cap of seconds here (minutes by default). The
/// person's own browser, which signed in before, still gets in during the attack; the
/// wait ends and a success starts the count over; many guesses sent at once get only
/// the free ones through; and an unknown login is slowed exactly the same way (no
/// hint which accounts exist).
async fn guesses_at_one_account_from_many_addresses_are_slowed(b: Backend) {
    const FREE: u32 = 3;
    const CAP: u64 = 3;
    let srv = TestServer::start_with(b, |c| {
        c.trust_proxy = true;
        c.sign_in_free_failures = FREE;
        c.sign_in_max_delay_secs = CAP;
    })
    .await;
    // Ann's own browser: it signed in once, so it holds a known-device cookie.
    let _ann = srv.user("ann").await;
    let home = srv.client();
    let (s, body, _) = sign_in_from(&home, "192.0.2.1", "ann", &password_of("ann")).await;
    assert_eq!(s, 200, "{body}");
    let right = password_of("ann");
    let guess = |i: u32, login: &'static str| {
        let c = srv.client();
        async move { sign_in_from(&c, &format!("198.51.100.{i}"), login, "guess-password").await }
    };

    for login in ["ann", "nobody"] {
        // The free attempts and the one that starts the first wait: wrong passwords.
        for i in 0..=FREE {
            let got = guess(i, login).await;
            assert_eq!((got.0, got.1["error"]["code"].as_str()), (401, Some("invalid_credentials")), "{login} #{i}");
        }
        // From here on each guess waits its turn.
        assert_eq!(delayed(&guess(50, login).await, CAP), 1, "the first wait is 1 s");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The wait has ended: one more guess is checked, and it starts a wait twice as long.
        let got = guess(51, login).await;
        assert_eq!(got.0, 401, "the wait has ended: {}", got.1);
        assert_eq!(delayed(&guess(52, login).await, CAP), 2, "1 s doubled");
        if login == "ann" {
            // Meanwhile even the right password is not looked at from a new browser...
            delayed(&sign_in_from(&srv.client(), "198.51.100.53", "ann", &right).await, CAP);
            // ...but Ann's own browser is not held up by the attack, on whichever node.
            let (s, body, _) = sign_in_from(&home, "192.0.2.1", "ann", &right).await;
            assert_eq!(s, 200, "the known browser gets in during the attack: {body}");
            let (s, _, _) = sign_in_from(&home, "192.0.2.1", "ann", "typo-password").await;
            assert_eq!(s, 401, "a typo there is a plain wrong password");
            // ...and its success handed the guesser no fresh attempts.
            delayed(&guess(54, "ann").await, CAP);
        }
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(guess(55, login).await.0, 401);
        assert_eq!(delayed(&guess(56, login).await, CAP), CAP, "2 s doubled is over the 3 s cap");
        tokio::time::sleep(Duration::from_millis(CAP * 1000 + 100)).await;
        assert_eq!(guess(57, login).await.0, 401);
        assert_eq!(delayed(&guess(58, login).await, CAP), CAP, "never more than the cap");
        tokio::time::sleep(Duration::from_millis(CAP * 1000 + 100)).await;
    }

    // After the wait, the right password from a new browser gets in, and the success
    // starts the count over: the free attempts are free again.
    let (s, body, _) = sign_in_from(&srv.client(), "192.0.2.2", "ann", &right).await;
    assert_eq!(s, 200, "{body}");
    // Many guesses at once (from many addresses, both nodes): only the free ones and
    // the one that starts the wait reach the password check.
    let guesses = (0..12).map(|i| {
        let c = srv.client();
        async move { sign_in_from(&c, &format!("203.0.113.{i}"), "ann", "guess-password").await.0 }
    });
    let mut statuses = futures_util::future::join_all(guesses).await;
    statuses.sort();
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    assert_eq!(checked, FREE as usize + 1, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 401 || s == 429), "{statuses:?}");
}

/// Names that look like an existing one (Unicode TR39 skeletons) are refused: `aIice`
/// (capital I) beside `alice`, a Cyrillic о in `Town Square`.
async fn look_alike_names_are_refused(b: Backend) {
    let srv = TestServer::start(b).await;
    let alice = srv.user("alice").await;
    let (s, body) = srv.client().register("aIice").await;
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("username_look_alike")), "{body}");
    let bob = srv.user("bob").await;
    assert_error(&bob.patch("/api/me", json!({"username": "aIice"})).await, 409, "username_look_alike");
    // Your own name in another case is still yours.
    assert_eq!(alice.patch("/api/me", json!({"username": "Alice"})).await.0, 200);
    alice.create_room("Town Square", json!({})).await;
    assert_error(&bob.post("/api/rooms", json!({"name": "T\u{043E}wn Square"})).await, 409, "room_name_look_alike");
    // Names that merely resemble each other are fine.
    bob.create_room("Town Squares", json!({})).await;
    assert_eq!(srv.client().register("alicia").await.0, 201);
}

on_both_backends!(
    sign_up_sign_in_sign_out,
    wrong_password_and_unknown_user,
    duplicate_email_and_username_any_case,
    bad_input_has_its_own_code,
    idle_session_expires,
    session_max_age_expires,
    cross_origin_posts_refused,
    websocket_handshake_checks,
    disabled_user_is_locked_out,
    api_tokens,
    revoked_token_closes_its_websocket,
    registration_closed,
    registration_by_invite,
    profile_update,
    password_change,
    session_in_use_stays_alive,
    non_bearer_authorization_does_not_skip_origin_check,
    one_admin_under_concurrent_first_sign_ups,
    control_characters_get_clear_errors_everywhere,
    api_tokens_are_capped,
    ipv6_neighbours_share_a_sign_in_budget,
    look_alike_names_are_refused,
    guesses_at_one_account_from_many_addresses_are_slowed,
    searches_ignore_case_beyond_ascii,
    disabled_accounts_take_no_place_in_lists_and_counts,
);
