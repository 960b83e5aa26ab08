//! Accessibility in real Chromium: axe-core finds no serious or critical violation
//! in any view a person meets (the sign-in and sign-up pages, a room with messages and
//! its members, every dialog, the message search, a message with an image and a file,
//! a file waiting in the composer, the image viewer, dark mode, a phone-sized viewport with the drawer and
//! the members overlay, the admin console's tabs (desktop, dark, phone) and the password
//! reset page), and on a phone every control is a tap target of at least
//! 44 × 44 CSS px.
//!
//! axe-core is not part of the app and is never served by it: the test takes the
//! tarball of one pinned version from the npm registry (checked against the
//! registry's SHA-512 before use, kept in `target/tmp` for the next run, or taken from
//! `RTM_AXE_TGZ` on a machine without network) and injects it into the page over
//! WebDriver, where the page's Content-Security-Policy does not apply.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::json;
use sha2::{Digest, Sha512};

use crate::{
    browser::{Browser, Cdp, Driver},
    common::{Backend, TestServer, password_of},
    files,
};

/// The axe-core release the checks run with.
const AXE_VERSION: &str = "4.14.1";
/// SHA-512 of its npm tarball (the registry's `dist.integrity`, in hex).
const AXE_SHA512: &str = "1477dafa598d8d065f273d6af302aa203c02e83131707b7fa648cd41bd3d6b734f8c22a0dab86ee6a6f64b8afbe804b214d36db85a2826965edfb3a0b9d546b5";
/// The smallest tap target on a phone, in CSS px (Apple's HIG and WCAG 2.5.5).
const TAP_MIN: f64 = 44.0;

/// The tarball's bytes, if they are the pinned release.
fn verified(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let got = hex::encode(Sha512::digest(&bytes));
    ensure!(got == AXE_SHA512, "the axe-core tarball's SHA-512 is {got}, not the pinned {AXE_SHA512}");
    Ok(bytes)
}

/// Fetches a URL with curl, which trusts the system's certificate store (as a proxy
/// that inspects TLS needs), else with reqwest.
async fn download(url: &str) -> Result<Vec<u8>> {
    let curl = tokio::process::Command::new("curl").args(["-fsSL", "--max-time", "60", url]).output().await;
    let why = match curl {
        Ok(out) if out.status.success() => return Ok(out.stdout),
        Ok(out) => format!("curl: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => format!("curl: {e}"),
    };
    match reqwest::get(url).await.and_then(|r| r.error_for_status()) {
        Ok(r) => Ok(r.bytes().await.with_context(|| format!("download {url}"))?.to_vec()),
        Err(e) => bail!("cannot download {url} ({why}; reqwest: {e}); set RTM_AXE_TGZ to a copy of that file"),
    }
}

/// The source of axe.min.js: from `RTM_AXE_TGZ`, the cached tarball, or the registry.
async fn axe_source() -> Result<String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("axe-core-{AXE_VERSION}"));
    std::fs::create_dir_all(&dir)?;
    let tgz = dir.join("axe-core.tgz");
    let given = std::env::var_os("RTM_AXE_TGZ").filter(|p| !p.is_empty()).map(PathBuf::from);
    let bytes = match (&given, std::fs::read(&tgz)) {
        (Some(p), _) => verified(std::fs::read(p).with_context(|| format!("read RTM_AXE_TGZ={}", p.display()))?)?,
        (None, Ok(b)) if verified(b.clone()).is_ok() => b,
        (None, _) => {
            let url = format!("https://registry.npmjs.org/axe-core/-/axe-core-{AXE_VERSION}.tgz");
            let b = verified(download(&url).await?)?;
            std::fs::write(&tgz, &b)?;
            b
        }
    };
    if given.is_some() {
        std::fs::write(&tgz, &bytes)?;
    }
    // Extracted afresh every run from the verified tarball (tar is on every machine
    // the tests run on; the crate has no tar reader).
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&dir)
        .args(["--strip-components=1", "package/axe.min.js"])
        .output()
        .context("run tar")?;
    ensure!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(dir.join("axe.min.js")).context("read axe.min.js")
}

async fn color_scheme(b: &Browser, scheme: &str) -> Result<()> {
    let features = json!([{ "name": "prefers-color-scheme", "value": scheme }]);
    b.c.issue_cmd(Cdp { cmd: "Emulation.setEmulatedMedia", params: json!({ "features": features }) })
        .await
        .map_err(|e| anyhow!("{}: emulate {scheme} mode: {e}", b.name))?;
    b.wait_js(
        &format!("the page in {scheme} mode"),
        "return matchMedia(`(prefers-color-scheme: ${arguments[0]})`).matches;",
        vec![json!(scheme)],
    )
    .await
    .map(|_| ())
}

/// Runs axe-core on the page as it is and fails on any serious or critical
/// violation, listing every violation found (the lesser ones too, for information).
async fn axe_check(b: &Browser, axe: &str, view: &str, found: &mut Vec<String>) -> Result<()> {
    if b.js("return typeof window.axe === 'object';", vec![]).await? != json!(true) {
        b.js(axe, vec![]).await.map_err(|e| anyhow!("inject axe-core: {e:#}"))?;
    }
    let v =
        b.c.execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then((r) => done(r.violations.map((v) => ({
                 id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.map((n) => ({ target: n.target.join(' '), html: n.html.slice(0, 160),
                                              why: (n.failureSummary || '').replace(/\\s+/g, ' ') })),
               }))))
               .catch((e) => done({ error: String(e) }));",
            vec![],
        )
        .await
        .with_context(|| format!("{}: run axe-core on {view}", b.name))?;
    if let Some(e) = v.get("error") {
        bail!("axe-core failed on {view}: {e}");
    }
    let all = v.as_array().cloned().unwrap_or_default();
    let mut report = String::new();
    let mut bad = 0;
    for x in &all {
        let impact = x["impact"].as_str().unwrap_or("?");
        if matches!(impact, "serious" | "critical") {
            bad += 1;
        }
        report.push_str(&format!(
            "\n  [{impact}] {}: {}",
            x["id"].as_str().unwrap_or("?"),
            x["help"].as_str().unwrap_or("")
        ));
        for n in x["nodes"].as_array().into_iter().flatten() {
            report.push_str(&format!(
                "\n      {}  {}\n        {}",
                n["target"].as_str().unwrap_or(""),
                n["html"].as_str().unwrap_or(""),
                n["why"].as_str().unwrap_or("")
            ));
        }
    }
    if !all.is_empty() {
        eprintln!("a11y {view}: axe-core {AXE_VERSION} reports:{report}");
    }
    if bad > 0 {
        found.push(format!("{view}: {bad} serious or critical axe-core violation(s):{report}"));
    }
    Ok(())
}

/// Every control shown (on screen, or below the fold of a pane that scrolls) smaller
/// than [`TAP_MIN`] either way, described. A checkbox counts as its label, which is what a finger hits; a link in
/// running text (a message) is exempt, as WCAG exempts inline targets.
const SMALL_TARGETS: &str = "
  const min = arguments[0];
  const out = [];
  const sel = 'button, a[href], input:not([type=hidden]), select, textarea, summary, [role=button], [tabindex=\"0\"]';
  for (let el of document.querySelectorAll(sel)) {
    if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) continue;
    if (el.closest('.msg .text, .notice .text')) continue;
    if (el.matches('input[type=checkbox], input[type=radio]') && el.closest('label')) el = el.closest('label');
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    // Parked off the page (the skip link until it has focus): not a target.
    if (r.bottom <= 0 || r.right <= 0 || r.left >= innerWidth) continue;
    // Covered by something on top (a drawer over the page): not a target now. (What
    // is below the fold of a scrolling pane counts: a finger scrolls to it.)
    if (r.top < innerHeight) {
      const cx = Math.min(Math.max(r.left + r.width / 2, 0), innerWidth - 1);
      const cy = Math.min(Math.max(r.top + r.height / 2, 0), innerHeight - 1);
      const top = document.elementFromPoint(cx, cy);
      if (top && !el.contains(top) && !top.contains(el)) continue;
    }
    if (r.width + 0.5 < min || r.height + 0.5 < min) {
      const name = el.id ? '#' + el.id : el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).trim().split(/\\s+/).join('.') : '');
      out.push(`${name} \"${(el.getAttribute('aria-label') || el.textContent || '').trim().slice(0, 30)}\" ${Math.round(r.width)}×${Math.round(r.height)}`);
    }
  }
  return out;";

async fn tap_targets(b: &Browser, view: &str, found: &mut Vec<String>) -> Result<()> {
    let small = b.js(SMALL_TARGETS, vec![json!(TAP_MIN)]).await?;
    let small: Vec<String> =
        small.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
    if !small.is_empty() {
        found.push(format!("{view}: tap targets under {TAP_MIN} px:\n  {}", small.join("\n  ")));
    }
    Ok(())
}

async fn close_dialog(b: &Browser, dialog: &str) -> Result<()> {
    b.click(&format!("#{dialog} .dialog-actions button[data-close]")).await?;
    b.wait_js(
        &format!("#{dialog} to close"),
        "return !document.getElementById(arguments[0]).open;",
        vec![json!(dialog)],
    )
    .await
    .map(|_| ())
}

pub async fn axe_and_tap_targets(d: &Driver) -> Result<()> {
    let axe = axe_source().await?;
    let srv = TestServer::start(Backend::Sqlite).await;
    let kim_api = srv.user("kim").await; // the first account: the admin
    let lee = srv.user("lee").await;
    let lounge = kim_api.create_room("lounge", json!({ "topic": "Coffee and gossip" })).await;
    let (s, body) = lee.post(&format!("/api/rooms/{lounge}/join"), json!({})).await;
    ensure!(s == 200, "lee joins: {body}");
    let mut lw = lee.ws().await;
    lw.say(lounge, "Morning! Anyone tried the new espresso machine?").await;
    lw.say(lounge, "The manual is at https://example.org/espresso").await;
    let (s, body) = lee.post("/api/dms", json!({ "user_id": kim_api.id().await })).await;
    ensure!(s == 200, "lee opens a DM: {body}");
    // A message with an image and a file (issue 13): a thumbnail button and a card.
    let photo = files::upload(&lee, lounge, "espresso.png", "image/png", files::png(640, 480)?).await?;
    let manual = files::upload(&lee, lounge, "manual.pdf", "application/pdf", b"%PDF-1.4 manual".to_vec()).await?;
    let sent = lw
        .request(json!({ "type": "send", "room": lounge, "client_id": "a11y-files", "text": "Photo and manual",
                         "attachments": [photo["id"], manual["id"]] }))
        .await;
    ensure!(format!("{sent:?}").contains("Ack"), "lee sends the files: {sent:?}");

    // Moderation (issue 15): max talks in the lounge and writes to kim; ned is banned
    // and max muted there, so the room shows moderation notices and its settings a
    // banned list.
    let max = srv.user("max").await;
    let ned = srv.user("ned").await;
    let (max_id, ned_id) = (max.id().await, ned.id().await);
    for c in [&max, &ned] {
        let (s, body) = c.post(&format!("/api/rooms/{lounge}/join"), json!({})).await;
        ensure!(s == 200, "joins the lounge: {body}");
    }
    let mut mw = max.ws().await;
    mw.say(lounge, "Psst, over here").await;
    let (s, body) = max.post("/api/dms", json!({ "user_id": kim_api.id().await })).await;
    ensure!(s == 200, "max opens a DM: {body}");
    mw.say(body["room"]["id"].as_i64().unwrap_or_default(), "Hello kim").await;
    let (s, body) = kim_api.post(&format!("/api/rooms/{lounge}/bans"), json!({ "user": ned_id })).await;
    ensure!(s == 204, "kim bans ned: {body}");
    let (s, body) = kim_api.post(&format!("/api/rooms/{lounge}/mutes"), json!({ "user": max_id, "minutes": 30 })).await;
    ensure!(s == 204, "kim mutes max: {body}");

    // Every view is checked before the story fails, so one run lists every problem.
    let mut found = vec![];
    let b = d.browser("kim").await?;
    b.goto(&srv.url("/")).await?;
    b.wait_visible("#login-form").await?;
    axe_check(&b, &axe, "sign-in page", &mut found).await?;
    b.click("#show-signup").await?;
    b.wait_visible("#signup-form").await?;
    axe_check(&b, &axe, "sign-up page", &mut found).await?;
    b.click("#show-login").await?;
    b.sign_in("kim", &password_of("kim")).await?;
    b.open_conversation("lounge").await?;
    b.wait_msg("Morning! Anyone tried the new espresso machine?").await?;
    b.send_message("Not yet, @lee. Is it any good?").await?;
    b.wait_msg_delivered("Not yet, @lee. Is it any good?").await?;
    b.wait_visible("#members .member").await?;
    axe_check(&b, &axe, "a room with messages and its members", &mut found).await?;
    b.fill("#user-search", "lee").await?;
    b.wait_visible("#user-results .user-link").await?;
    axe_check(&b, &axe, "the people search", &mut found).await?;
    b.fill("#user-search", "").await?;
    b.click("#search-btn").await?;
    b.fill("#search-input", "espresso").await?;
    b.wait_visible("#search-results > li").await?;
    axe_check(&b, &axe, "the message search", &mut found).await?;
    b.click("#search-close").await?;

    // Files (issue 13): a file waiting in the composer, the image viewer. The chip
    // stays, so the dark-mode and phone views below show it too.
    files::wait_attachments(&b, "Photo and manual").await?;
    let dir = tempfile::tempdir()?;
    let agenda = dir.path().join("agenda.pdf");
    std::fs::write(&agenda, b"%PDF-1.4 agenda")?;
    files::choose_files(&b, &[&agenda]).await?;
    files::wait_chips_settled(&b, 1).await?;
    axe_check(&b, &axe, "the composer with a file to send", &mut found).await?;
    b.click("#messages .att-image").await?;
    b.wait_js(
        "the viewer's image",
        "const i = document.getElementById('file-viewer-img'); return i.complete && i.naturalWidth > 0;",
        vec![],
    )
    .await?;
    axe_check(&b, &axe, "the image viewer", &mut found).await?;
    b.click("#file-viewer-close").await?;

    b.click("#new-room-btn").await?;
    b.wait_visible("#new-room-form").await?;
    axe_check(&b, &axe, "the new-room dialog", &mut found).await?;
    close_dialog(&b, "new-room-dialog").await?;

    b.click("#browse-btn").await?;
    b.wait_visible("#browse-results .join-btn").await?;
    axe_check(&b, &axe, "the browse dialog", &mut found).await?;
    close_dialog(&b, "browse-dialog").await?;

    b.click("#room-settings-btn").await?;
    b.wait_visible("#room-members-manage .remove-member:not([hidden])").await?;
    b.wait_visible("#room-bans .unban-btn").await?;
    axe_check(&b, &axe, "the room-settings dialog", &mut found).await?;
    close_dialog(&b, "room-settings-dialog").await?;

    // Moderation (issue 15): notices, a person's menu, the mute dialog, a blocked
    // person's collapsed message, and the DM with them in place of its composer.
    b.wait_visible("#messages .notice-moderation[data-action=mute]").await?;
    let max_li = format!("#members > li[data-user-id=\"{max_id}\"]");
    b.click(&format!("{max_li} .member-menu-btn")).await?;
    b.wait_visible(&format!("{max_li} .member-menu [data-action=unmute]")).await?;
    axe_check(&b, &axe, "moderation notices and a person's menu", &mut found).await?;
    b.click(&format!("{max_li} .member-menu [data-action=mute-custom]")).await?;
    b.wait_visible("#mute-form [name=amount]").await?;
    axe_check(&b, &axe, "the mute dialog", &mut found).await?;
    close_dialog(&b, "mute-dialog").await?;
    b.click(&format!("{max_li} .member-menu-btn")).await?;
    b.click(&format!("{max_li} .member-menu [data-action=block]")).await?;
    b.click("#confirm-ok").await?;
    b.wait_visible("#messages .msg.blocked-collapsed .blocked-show").await?;
    axe_check(&b, &axe, "a blocked person's collapsed message", &mut found).await?;
    b.open_conversation("max").await?;
    b.wait_visible("#composer-closed-action").await?;
    axe_check(&b, &axe, "a DM with a blocked person", &mut found).await?;
    b.open_conversation("lounge").await?;

    b.click("#settings-btn").await?;
    b.wait_visible("#admin-section").await?;
    axe_check(&b, &axe, "the settings dialog (admin)", &mut found).await?;
    close_dialog(&b, "settings-dialog").await?;
    // The admin console (issue 15): every tab, and a reset link shown.
    admin_console_views(&b, &axe, "", false, &mut found).await?;

    b.click("#leave-btn").await?;
    b.wait_visible("#confirm-ok").await?;
    axe_check(&b, &axe, "the leave confirmation", &mut found).await?;
    b.click("#confirm-cancel").await?;

    color_scheme(&b, "dark").await?;
    axe_check(&b, &axe, "a room in dark mode", &mut found).await?;
    b.click("#settings-btn").await?;
    b.wait_visible("#profile-form").await?;
    axe_check(&b, &axe, "the settings dialog in dark mode", &mut found).await?;
    close_dialog(&b, "settings-dialog").await?;
    admin_console_views(&b, &axe, "dark mode: ", false, &mut found).await?;
    b.open_conversation("lee").await?;
    axe_check(&b, &axe, "a DM in dark mode", &mut found).await?;
    color_scheme(&b, "light").await?;

    // A phone: the conversation, the drawer, the members overlay, a dialog.
    b.open_conversation("lounge").await?;
    b.resize(390, 844).await?;
    axe_check(&b, &axe, "phone: a room", &mut found).await?;
    tap_targets(&b, "phone: a room", &mut found).await?;
    b.open_drawer().await?;
    b.wait_visible("#new-room-btn").await?;
    axe_check(&b, &axe, "phone: the conversations drawer", &mut found).await?;
    tap_targets(&b, "phone: the conversations drawer", &mut found).await?;
    b.click("#settings-btn").await?;
    b.wait_visible("#profile-form").await?;
    axe_check(&b, &axe, "phone: the settings dialog", &mut found).await?;
    tap_targets(&b, "phone: the settings dialog", &mut found).await?;
    close_dialog(&b, "settings-dialog").await?;
    admin_console_views(&b, &axe, "phone: ", true, &mut found).await?;
    // A tap beside the drawer closes it (the scrim's middle is under the drawer).
    b.js("document.getElementById('scrim').click();", vec![]).await?;
    b.wait_js("the drawer to close", "return document.getElementById('scrim').hidden;", vec![]).await?;
    b.click("#members-btn").await?;
    b.wait_visible("#members-close").await?;
    axe_check(&b, &axe, "phone: the members overlay", &mut found).await?;
    tap_targets(&b, "phone: the members overlay", &mut found).await?;
    b.click("#members-close").await?;
    b.click("#search-btn").await?;
    b.fill("#search-input", "espresso").await?;
    b.wait_visible("#search-results > li").await?;
    axe_check(&b, &axe, "phone: the message search", &mut found).await?;
    tap_targets(&b, "phone: the message search", &mut found).await?;
    b.click("#search-close").await?;
    b.click("#leave-btn").await?;
    b.wait_visible("#confirm-ok").await?;
    tap_targets(&b, "phone: the leave confirmation", &mut found).await?;
    b.click("#confirm-cancel").await?;
    b.open_drawer().await?;
    b.click("#logout").await?;
    b.wait_visible("#login-form").await?;
    axe_check(&b, &axe, "phone: the sign-in page", &mut found).await?;
    tap_targets(&b, "phone: the sign-in page", &mut found).await?;
    // The password reset page (issue 15): a good link's form with a mismatch's message
    // on it (nothing is spent), then an unknown link's message, which comes with no form.
    let (s, link) = kim_api.post(&format!("/api/admin/users/{ned_id}/reset-link"), json!({})).await;
    ensure!(s == 201, "a reset link for ned: {link}");
    let code = link["code"].as_str().unwrap_or_default().to_string();
    b.goto(&srv.url(&format!("/?reset={code}"))).await?;
    b.wait_visible("#reset-form").await?;
    b.fill("#reset-form [name=password]", "a long new password").await?;
    b.fill("#reset-form [name=confirm]", "another long password").await?;
    b.click("#reset-form button[type=submit]").await?;
    b.wait_js("the mismatch's message", "return !!document.getElementById('reset-error').textContent;", vec![]).await?;
    axe_check(&b, &axe, "phone: the password reset page", &mut found).await?;
    tap_targets(&b, "phone: the password reset page", &mut found).await?;
    b.goto(&srv.url("/?reset=not-a-code")).await?;
    b.wait_js(
        "the refused link's message",
        "return document.getElementById('reset-status').textContent.includes('does not work');",
        vec![],
    )
    .await?;
    axe_check(&b, &axe, "phone: a refused reset link", &mut found).await?;
    tap_targets(&b, "phone: a refused reset link", &mut found).await?;

    let errors = b.console_errors().await;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    ensure!(found.is_empty(), "{}", found.join("\n"));
    b.close(d).await?;
    Ok(())
}

/// The admin console's tabs (issue 15), each checked once it has loaded; `phone` adds
/// the tap-target check. Opens the console from the sidebar and closes it again.
async fn admin_console_views(b: &Browser, axe: &str, prefix: &str, phone: bool, found: &mut Vec<String>) -> Result<()> {
    b.click("#admin-btn").await?;
    b.click(".admin-tab[data-tab=users]").await?;
    b.wait_visible("#admin-users-body > tr").await?;
    b.click("#admin-users-body > tr:last-child button[data-act=reset]").await?;
    b.wait_visible("#admin-reset-url").await?;
    let tabs = [
        ("users", "return !!document.querySelector('#admin-users-body > tr');"),
        ("rooms", "return !!document.querySelector('#admin-rooms-body > tr');"),
        ("settings", "return document.querySelectorAll('#default-room-select > option').length > 1;"),
        ("server", "return !!document.querySelector('#admin-server-facts dd');"),
        ("audit", "return !!document.getElementById('admin-audit-status').textContent;"),
    ];
    for (tab, ready) in tabs {
        b.click(&format!(".admin-tab[data-tab={tab}]")).await?;
        b.wait_js(&format!("the admin console's {tab} tab"), ready, vec![]).await?;
        b.wait_js(
            "the tab to finish loading",
            "return !document.querySelector('#admin-console .admin-panel[aria-busy]');",
            vec![],
        )
        .await?;
        let view = format!("{prefix}the admin console: {tab}");
        axe_check(b, axe, &view, found).await?;
        if phone {
            tap_targets(b, &view, found).await?;
        }
    }
    b.click("#admin-close").await?;
    b.wait_js("the admin console to close", "return !document.getElementById('admin-console').open;", vec![]).await?;
    Ok(())
}
