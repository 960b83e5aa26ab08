//! Real headless Chromium for the browser tests: one chromedriver child per test
//! binary ([`Driver`]), and one WebDriver session per simulated person ([`Browser`]),
//! each with its own fresh profile directory, so two browsers are two users with their
//! own cookies and storage.
//!
//! Every check waits explicitly: [`Browser::wait_js`] polls a script until it returns
//! something truthy, or fails after [`WAIT`] with the description and the last value.
//! Nothing here sleeps to let the page "settle".

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::{Client, ClientBuilder, Locator, key::Key};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::{process::Child, sync::Mutex};

/// How long a wait may take before the check fails.
/// A Chrome DevTools command sent through chromedriver (`goog/cdp/execute`): what
/// WebDriver itself cannot do (emulated dark mode, network off, permissions).
#[derive(Debug)]
pub struct Cdp {
    pub cmd: &'static str,
    pub params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()))
    }
}

pub const WAIT: Duration = Duration::from_secs(15);
/// How often a wait asks the page again.
const POLL: Duration = Duration::from_millis(100);

/// Chromium's flags: headless, no background traffic, predictable window size.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    // The nginx story's throwaway self-signed certificate.
    "--ignore-certificate-errors",
];

/// Finds a program: the environment variable (set by scripts/test), else `PATH`.
fn locate(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// A free loopback TCP port (bound and released; chromedriver binds it right after).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a probe socket")?;
    Ok(l.local_addr()?.port())
}

/// The chromedriver child shared by every story of the test binary, and the browsers
/// opened through it (kept so a failing story can be photographed and all of them are
/// closed before the driver goes away).
pub struct Driver {
    child: Child,
    url: String,
    chromium: Option<PathBuf>,
    open: Mutex<Vec<(String, Client)>>,
    /// Every browser's profile directory, inside one temporary directory that is
    /// removed only once chromedriver and its browsers are gone: a profile removed when
    /// its story closed the browser raced Chromium's last writes and was left behind.
    profiles: tempfile::TempDir,
    browsers: std::sync::atomic::AtomicUsize,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it answers (tries a
    /// few ports: another program may take the free one first). Its output goes to
    /// `target/tmp/chromedriver.log`.
    pub async fn start() -> Result<Driver> {
        let driver = locate("RTM_CHROMEDRIVER", &["chromedriver"])
            .ok_or_else(|| anyhow!("chromedriver not found: install chromium-driver or set RTM_CHROMEDRIVER"))?;
        let chromium = locate("RTM_CHROMIUM", &["chromium", "chromium-browser"]);
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chromedriver.log");
        let mut last = anyhow!("chromedriver did not start");
        for _ in 0..3 {
            match Self::spawn(&driver, &log).await {
                Ok((child, url)) => {
                    let profiles = tempfile::Builder::new().prefix("rtm-e2e-chromium-").tempdir()?;
                    let browsers = Default::default();
                    return Ok(Driver { child, url, chromium, open: Mutex::new(vec![]), profiles, browsers });
                }
                Err(e) => last = e,
            }
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(10).collect();
        Err(last.context(format!("{} says:\n{}", log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"))))
    }

    async fn spawn(driver: &Path, log: &Path) -> Result<(Child, String)> {
        let port = free_port()?;
        let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let mut child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", driver.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("chromedriver exited at start-up ({status})");
            }
            if let Ok(r) = http.get(format!("{url}/status")).send().await
                && r.status().is_success()
            {
                return Ok((child, url));
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on {url}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Opens a new browser (a new Chromium with an empty profile), named for messages.
    pub async fn browser(&self, name: &str) -> Result<Browser> {
        let n = self.browsers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = self.profiles.path().join(format!("{n}"));
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut opts = json!({ "args": args });
        if let Some(bin) = &self.chromium {
            opts["binary"] = json!(bin.display().to_string());
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": opts,
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else { unreachable!("a JSON object") };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .with_context(|| format!("open browser {name}"))?;
        self.open.lock().await.push((name.to_string(), client.clone()));
        Ok(Browser { name: name.to_string(), c: client, driver_url: self.url.clone() })
    }

    /// Saves a screenshot and the console log of every open browser (after a failure).
    pub async fn capture_all(&self, dir: &Path, prefix: &str) {
        let _ = std::fs::create_dir_all(dir);
        for (name, c) in self.open.lock().await.iter() {
            if let Ok(png) = c.screenshot().await {
                let _ = std::fs::write(dir.join(format!("{prefix}-{name}.png")), png);
            }
            let log = console_log(&self.url, c).await;
            let _ = std::fs::write(dir.join(format!("{prefix}-{name}.log")), log);
        }
    }

    /// Closes every browser still open (each story closes its own when it passes).
    pub async fn close_all(&self) {
        let open = std::mem::take(&mut *self.open.lock().await);
        for (_, c) in open {
            let _ = c.close().await;
        }
    }

    /// Forgets a browser that was closed on purpose.
    async fn forget(&self, c: &Client) {
        let id = c.session_id().await.ok().flatten();
        let mut open = self.open.lock().await;
        let mut keep = vec![];
        for (n, x) in open.drain(..) {
            if x.session_id().await.ok().flatten() != id {
                keep.push((n, x));
            }
        }
        *open = keep;
    }

    /// Stops chromedriver (browsers first), then removes the profiles. A browser's
    /// last files can still appear for a moment after it quit: a few tries.
    pub async fn stop(mut self) {
        self.close_all().await;
        let _ = self.child.kill().await;
        for _ in 0..20 {
            match std::fs::remove_dir_all(self.profiles.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => tokio::time::sleep(POLL).await,
                _ => break,
            }
        }
    }
}

/// The browser console (errors, warnings, logs) of a session, as text.
async fn console_log(driver_url: &str, c: &Client) -> String {
    let Ok(Some(id)) = c.session_id().await else { return String::new() };
    let r = reqwest::Client::new()
        .post(format!("{driver_url}/session/{id}/se/log"))
        .json(&json!({ "type": "browser" }))
        .send()
        .await;
    let Ok(r) = r else { return String::new() };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// One browser window driven over WebDriver: one person in the stories.
pub struct Browser {
    pub name: String,
    pub c: Client,
    driver_url: String,
}

/// JavaScript's idea of "truthy" for a value returned by a script.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

impl Browser {
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.c.goto(url).await.with_context(|| format!("{}: open {url}", self.name))
    }

    /// Runs a script (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.c.execute(script, args).await.with_context(|| format!("{}: script failed: {script}", self.name))
    }

    /// Polls `script` until it returns something truthy, and returns that value.
    pub async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Result<Value> {
        self.wait_js_for(WAIT, what, script, args).await
    }

    /// [`Self::wait_js`] with an explicit limit.
    pub async fn wait_js_for(&self, limit: Duration, what: &str, script: &str, args: Vec<Value>) -> Result<Value> {
        match self.poll_js(limit, script, args).await {
            Ok(v) => Ok(v),
            Err(last) => {
                let shot = self.capture_failure().await;
                bail!("{}: timed out after {limit:?} waiting for {what} (last value: {last}){shot}", self.name)
            }
        }
    }

    /// Polls `script` until it returns something truthy (`Ok`), or until `limit` has
    /// passed (`Err` with the last value).
    async fn poll_js(&self, limit: Duration, script: &str, args: Vec<Value>) -> Result<Value, Value> {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.c.execute(script, args.clone()).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => v,
                Err(e) => json!(format!("script error: {e}")),
            };
            if Instant::now() > deadline {
                return Err(last);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves what the page looks like when a wait fails (while the server still runs),
    /// and says where.
    async fn capture_failure(&self) -> String {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-failures");
        let _ = std::fs::create_dir_all(&dir);
        let png = dir.join(format!("{}-at-failure.png", self.name));
        let Ok(shot) = self.c.screenshot().await else { return String::new() };
        let _ = std::fs::write(&png, shot);
        let _ = std::fs::write(
            dir.join(format!("{}-at-failure.log", self.name)),
            console_log(&self.driver_url, &self.c).await,
        );
        format!(" [see {}]", png.display())
    }

    /// Waits until the element is shown (rendered and not `visibility: hidden`).
    pub async fn wait_visible(&self, css: &str) -> Result<()> {
        self.wait_js(
            &format!("{css} to be visible"),
            "const el = document.querySelector(arguments[0]);
             return !!el && el.checkVisibility({ visibilityProperty: true, opacityProperty: false });",
            vec![json!(css)],
        )
        .await
        .map(|_| ())
    }

    /// Is the element there and shown right now?
    pub async fn is_visible(&self, css: &str) -> Result<bool> {
        let v = self
            .js(
                "const el = document.querySelector(arguments[0]);
                 return !!el && el.checkVisibility({ visibilityProperty: true });",
                vec![json!(css)],
            )
            .await?;
        Ok(v == json!(true))
    }

    /// Clicks an element once it is visible (a real WebDriver click, so it must be
    /// reachable by the pointer: not covered, not off-screen).
    /// Opens the phone layout's conversations drawer and waits until it has stopped
    /// sliding in (0.18 s): a click aimed mid-slide lands beside its target, and
    /// nothing reports it (the a11y story's settings button missed this way in CI).
    pub async fn open_drawer(&self) -> Result<()> {
        self.click("#menu-btn").await?;
        self.wait_js(
            "the drawer to stop sliding",
            "const s = document.getElementById('sidebar');
             return s.checkVisibility({ visibilityProperty: true }) && s.getAnimations().length === 0;",
            vec![],
        )
        .await
        .map(|_| ())
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.wait_visible(css).await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let r = match self.c.find(Locator::Css(css)).await {
                Ok(el) => el.click().await,
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => return Ok(()),
                // Covered for a moment (a drawer still sliding in): try again.
                Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Err(e) => return Err(anyhow!("{}: click {css}: {e}", self.name)),
            }
        }
    }

    /// Types into a field (after clearing it), like a person at the keyboard.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        self.wait_visible(css).await?;
        let el = self.c.find(Locator::Css(css)).await.with_context(|| format!("{}: find {css}", self.name))?;
        el.clear().await.with_context(|| format!("{}: clear {css}", self.name))?;
        el.send_keys(text).await.with_context(|| format!("{}: type into {css}", self.name))
    }

    /// Types without clearing first.
    pub async fn type_keys(&self, css: &str, text: &str) -> Result<()> {
        self.wait_visible(css).await?;
        let el = self.c.find(Locator::Css(css)).await.with_context(|| format!("{}: find {css}", self.name))?;
        el.send_keys(text).await.with_context(|| format!("{}: type into {css}", self.name))
    }

    /// Chooses an option of a <select> by value.
    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        self.wait_visible(css).await?;
        let el = self.c.find(Locator::Css(css)).await?;
        el.select_by_value(value).await.with_context(|| format!("{}: select {value} in {css}", self.name))
    }

    /// The text content of the first element matching `css` ("" when absent).
    pub async fn text(&self, css: &str) -> Result<String> {
        let v = self
            .js("const el = document.querySelector(arguments[0]); return el ? el.textContent : '';", vec![json!(css)])
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Waits until the text content of `css` equals `want`.
    pub async fn wait_text(&self, css: &str, want: &str) -> Result<()> {
        self.wait_js(
            &format!("{css} to read {want:?}"),
            "const el = document.querySelector(arguments[0]); return !!el && el.textContent.trim() === arguments[1];",
            vec![json!(css), json!(want)],
        )
        .await
        .map(|_| ())
    }

    /// Writes a message in the composer and presses Enter.
    pub async fn send_message(&self, text: &str) -> Result<()> {
        self.wait_js(
            "the composer to be enabled",
            "const t = document.getElementById('composer'); return !!t && !t.disabled;",
            vec![],
        )
        .await?;
        // Shift+Enter makes a new line (then release Shift); Enter alone sends.
        let newline = format!("{}{}{}", char::from(Key::Shift), char::from(Key::Enter), char::from(Key::Null));
        let keys = format!("{}{}", text.replace('\n', &newline), char::from(Key::Enter));
        self.type_keys("#composer", &keys).await?;
        self.wait_js(
            "the composer to be emptied after sending",
            "return document.getElementById('composer').value === '';",
            vec![],
        )
        .await
        .map(|_| ())
    }

    /// How many message rows (`.msg`) in #messages have exactly this text.
    pub async fn msg_count(&self, text: &str) -> Result<u64> {
        let v = self.js(COUNT_MSGS, vec![json!(text)]).await?;
        Ok(v.as_u64().unwrap_or(0))
    }

    /// Waits for a message with exactly this text and returns what it shows:
    /// `{author, time, title, datetime, year, own, pending, failed, status, seq}`.
    pub async fn wait_msg(&self, text: &str) -> Result<Value> {
        self.wait_js(&format!("message {text:?}"), FIND_MSG, vec![json!(text), json!(false)]).await
    }

    /// Waits for a message with this text that the server has acknowledged (has a seq,
    /// not pending).
    pub async fn wait_msg_delivered(&self, text: &str) -> Result<Value> {
        self.wait_js(&format!("message {text:?} delivered"), FIND_MSG, vec![json!(text), json!(true)]).await
    }

    /// Waits until the WebSocket is live (after sign-in or a reconnect).
    pub async fn wait_live(&self) -> Result<()> {
        self.wait_live_for(WAIT).await
    }

    pub async fn wait_live_for(&self, limit: Duration) -> Result<()> {
        self.wait_js_for(
            limit,
            "#conn-state to be live",
            "const el = document.getElementById('conn-state');
             return !!el && el.dataset.state === 'live' && el.textContent.trim() === 'live';",
            vec![],
        )
        .await
        .map(|_| ())
    }

    /// Waits until the open conversation is `title` and its first page has loaded.
    pub async fn wait_room_open(&self, title: &str) -> Result<()> {
        self.wait_js(
            &format!("conversation {title:?} to be open and loaded"),
            "const t = document.getElementById('room-title');
             const s = document.querySelector('#messages .history-status');
             return !!t && t.textContent === arguments[0] && !!s && ['start', 'trimmed', 'more', 'ephemeral'].includes(s.dataset.state);",
            vec![json!(title)],
        )
        .await
        .map(|_| ())
    }

    /// Opens a conversation from the sidebar lists by its name.
    pub async fn open_conversation(&self, name: &str) -> Result<()> {
        let css = self
            .wait_js(
                &format!("{name:?} in the sidebar"),
                "for (const li of document.querySelectorAll('#room-list > li, #dm-list > li')) {
                   if (li.querySelector('.name')?.textContent === arguments[0])
                     return `#${li.parentElement.id} > li[data-room-id=\"${li.dataset.roomId}\"] button.conv-link`;
                 }
                 return null;",
                vec![json!(name)],
            )
            .await?;
        self.click(css.as_str().unwrap_or_default()).await?;
        self.wait_room_open(name).await
    }

    /// Waits for the item of list `list` (e.g. `#dm-list`) whose `child` element reads
    /// `text`, and returns a selector for that `li` (by its data-room-id/data-user-id).
    pub async fn wait_item(&self, list: &str, child: &str, text: &str) -> Result<String> {
        let v = self
            .wait_js(
                &format!("{text:?} in {list}"),
                "const [list, child, text] = arguments;
                 for (const li of document.querySelectorAll(list + ' > li')) {
                   const c = li.querySelector(child);
                   if (!c || c.textContent.trim() !== text) continue;
                   const attr = ['data-room-id', 'data-user-id'].find((a) => li.hasAttribute(a));
                   return attr ? `${list} > li[${attr}=\"${li.getAttribute(attr)}\"]` : null;
                 }
                 return null;",
                vec![json!(list), json!(child), json!(text)],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Signs up through the form (the page must show the auth screen).
    pub async fn sign_up(&self, first: &str, last: &str, username: &str, password: &str) -> Result<()> {
        self.wait_visible("#auth-screen").await?;
        if !self.is_visible("#signup-form").await? {
            self.click("#show-signup").await?;
        }
        self.fill("#signup-form [name=first_name]", first).await?;
        self.fill("#signup-form [name=last_name]", last).await?;
        self.fill("#signup-form [name=email]", &format!("{username}@example.org")).await?;
        self.fill("#signup-form [name=username]", username).await?;
        self.fill("#signup-form [name=password]", password).await?;
        self.click("#signup-form button[type=submit]").await?;
        self.wait_signed_in(username).await
    }

    /// Signs in through the form (the page must show the auth screen).
    pub async fn sign_in(&self, login: &str, password: &str) -> Result<()> {
        self.wait_visible("#login-form").await?;
        self.fill("#login-form [name=login]", login).await?;
        self.fill("#login-form [name=password]", password).await?;
        self.click("#login-form button[type=submit]").await?;
        self.wait_signed_in(login).await
    }

    async fn wait_signed_in(&self, username: &str) -> Result<()> {
        self.wait_js(
            "the chat screen after signing in",
            "const errs = [...document.querySelectorAll('#signup-error, #login-error')].map(e => e.textContent).join(' ');
             if (errs.trim()) return 'ERROR: ' + errs;
             return !document.getElementById('app-screen').hidden &&
                    document.getElementById('me-username').textContent === '@' + arguments[0];",
            vec![json!(username)],
        )
        .await
        .and_then(|v| match v.as_str() {
            Some(e) if e.starts_with("ERROR") => Err(anyhow!("{}: sign-in/up failed: {e}", self.name)),
            _ => Ok(()),
        })?;
        self.wait_live().await
    }

    /// Resizes the window so that the page's viewport is `width` × `height` CSS px.
    /// The window's frame around the viewport is not a constant (a window has a
    /// minimum width; the viewport may be emulated narrower), so measure and adjust.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        let (mut w, mut h) = (width, height);
        let mut dims = Value::Null;
        for _ in 0..4 {
            self.c.set_window_rect(0, 0, w, h).await.with_context(|| format!("{}: resize", self.name))?;
            let fits = self
                .poll_js(
                    Duration::from_secs(1),
                    "return window.innerWidth === arguments[0] && window.innerHeight === arguments[1];",
                    vec![json!(width), json!(height)],
                )
                .await;
            if fits.is_ok() {
                return Ok(());
            }
            dims = self.js("return [window.innerWidth, window.innerHeight];", vec![]).await?;
            let inner = |i: usize| dims[i].as_i64().unwrap_or(0);
            w = (i64::from(w) + i64::from(width) - inner(0)).max(1) as u32;
            h = (i64::from(h) + i64::from(height) - inner(1)).max(1) as u32;
        }
        bail!("{}: cannot make the viewport {width}×{height}; it is {dims}", self.name)
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self.c.screenshot().await.with_context(|| format!("{}: screenshot", self.name))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// Is a JavaScript alert (or confirm/prompt) open? (Our pages never open one.)
    pub async fn alert_open(&self) -> bool {
        self.c.get_alert_text().await.is_ok()
    }

    /// The console messages of level SEVERE so far: JavaScript errors, server errors,
    /// failed loads. Answers 4xx are left out: the page asked, was told no (a signed-out
    /// `GET /api/me`, a wrong password) and says so to the person, which the stories
    /// check on the page itself.
    pub async fn console_errors(&self) -> Vec<String> {
        console_log(&self.driver_url, &self.c)
            .await
            .lines()
            .filter(|l| l.starts_with("SEVERE"))
            .filter(|l| !l.contains("Failed to load resource: the server responded with a status of 4"))
            .map(str::to_string)
            .collect()
    }

    /// Closes the browser (Chromium quits: for the server, this person went away).
    pub async fn close(self, driver: &Driver) -> Result<()> {
        driver.forget(&self.c).await;
        self.c.close().await.with_context(|| format!("{}: close", self.name))
    }
}

/// Counts `.msg` rows whose `.text` is exactly `arguments[0]`.
const COUNT_MSGS: &str = "
  let n = 0;
  for (const m of document.querySelectorAll('#messages .msg')) {
    const t = m.querySelector('.text');
    if (t && t.textContent === arguments[0]) n++;
  }
  return n;";

/// Describes the (single) `.msg` row with text `arguments[0]`; with `arguments[1]`,
/// only once it is acknowledged (has a seq, is not pending).
const FIND_MSG: &str = "
  for (const m of document.querySelectorAll('#messages .msg')) {
    const t = m.querySelector('.text');
    if (!t || t.textContent !== arguments[0]) continue;
    const pending = m.classList.contains('pending');
    if (arguments[1] && (pending || !m.dataset.seq)) return null;
    const time = m.querySelector('.time');
    return {
      author: m.querySelector('.author')?.textContent ?? null,
      time: time?.textContent ?? null,
      title: time?.getAttribute('title') ?? null,
      datetime: time?.getAttribute('datetime') ?? null,
      year: time ? new Date(time.getAttribute('datetime')).getFullYear() : null,
      own: m.classList.contains('own'),
      pending,
      failed: m.classList.contains('failed'),
      status: m.querySelector('.status')?.textContent ?? null,
      seq: m.dataset.seq ? Number(m.dataset.seq) : null,
    };
  }
  return null;";
