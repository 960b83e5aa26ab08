//! End-to-end tests of the web client in real headless Chromium, against the real
//! server (SQLite, in-process bus) started by the shared harness.
//!
//! One chromedriver serves the whole binary; the stories run one after another in a
//! single test (nextest runs each test in its own process, so this is what lets them
//! share it) and each story starts its own server and browsers:
//!
//! - `chat`: two people sign up, create and join a room, chat, see each other online
//!   and typing, exchange DMs; one leaves and finds the held DM on return.
//! - `actions`: edit, delete, reactions, replies, mentions and notification levels;
//!   a browser that was offline catches up on them and shows what a live one shows.
//! - `restart`: the server restarts mid-conversation; nothing is lost or doubled.
//! - `rooms`: older history on scroll, the "new messages" pill, an ephemeral room,
//!   room settings, leaving a room, the admin's invite link, signing out and up.
//! - `newcomer`: a room whose start was trimmed says so, a new name shows live, the
//!   admin manages others' rooms and removes a member of a public room.
//! - `search`: the message search panel (shortcut, highlights, what may be read,
//!   filters, paging, errors) opens a result far back in history, scrolled to it.
//! - `files`: files and images (issue 13): the file chooser, paste and drop, upload
//!   progress and refusals on the composer's chips, thumbnails and file cards on the
//!   other person's screen, downloads, the image viewer, edits, deletes and history.
//! - `admin`: the admin console (issue 15): find a user, promote them, a password
//!   reset link used in a second browser, archive and delete a room, the audit log.
//! - `moderation`: roles, mutes, read-only rooms, bans and blocking (issue 15) across
//!   three browsers: notices live and from history, the composer's notices, a
//!   person's menu, the banned list, collapsed messages of a blocked person.
//! - `looks`: hostile text renders as text, the phone layout works, and the
//!   screenshots in docs/screenshots/ are taken.
//! - `nginx`: the page over HTTP/2 and https through nginx (the docs/DEPLOY.md
//!   config) in front of PostgreSQL + Redis nodes; sign-up, sign-in and chat over wss.
//! - `a11y`: axe-core (fetched from the npm registry at test time) finds no serious
//!   violation in any view, light or dark, desktop or phone; phone tap targets ≥ 44 px.
//!
//! - `assets`: compressed files, a reload that downloads nothing unchanged (304s), the
//!   manifest and icons, and the service worker's offline state with the server stopped.
//!
//! A failing wait saves a screenshot and the console log of its browser in
//! `target/tmp/e2e-failures/` (`<browser>-at-failure.*`), and a failing story those of
//! all its browsers (`<story>-after-<browser>.*`, taken after its server stopped); the
//! other stories still run. `RTM_E2E_STORIES=restart,looks` runs only some of them.

#[path = "../common/mod.rs"]
mod common;

mod a11y;
mod actions;
mod admin;
mod assets;
mod browser;
mod chat;
mod files;
mod looks;
mod moderation;
mod nginx;
mod restart;
mod rooms;
mod search;

use std::{future::Future, panic::AssertUnwindSafe, path::Path, time::Duration, time::Instant};

use futures_util::FutureExt;

use browser::Driver;

/// No story takes this long unless something hangs.
const STORY_LIMIT: Duration = Duration::from_secs(150);

async fn run_story(
    driver: &Driver,
    name: &str,
    story: impl Future<Output = anyhow::Result<()>>,
    failures: &mut Vec<String>,
) {
    let wanted = std::env::var("RTM_E2E_STORIES").unwrap_or_default();
    if !wanted.trim().is_empty() && !wanted.split(',').any(|w| w.trim() == name) {
        eprintln!("e2e {name}: skipped (RTM_E2E_STORIES={wanted})");
        return;
    }
    let started = Instant::now();
    // A panic (an assert in the shared harness) fails the story like an error does, so
    // its browsers are still closed and the other stories still run.
    let outcome = match tokio::time::timeout(STORY_LIMIT, AssertUnwindSafe(story).catch_unwind()).await {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(anyhow::anyhow!("panicked: {what}"))
        }
        Err(_) => Err(anyhow::anyhow!("did not finish within {STORY_LIMIT:?}")),
    };
    match outcome {
        Ok(()) => eprintln!("e2e {name}: ok in {:.1?}", started.elapsed()),
        Err(e) => {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-failures");
            driver.capture_all(&dir, &format!("{name}-after")).await;
            eprintln!(
                "e2e {name}: FAILED after {:.1?}: {e:#}\n  (screenshots and console logs in {})",
                started.elapsed(),
                dir.display()
            );
            failures.push(format!("{name}: {e:#}"));
        }
    }
    driver.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_stories() {
    // Failure pictures of an earlier run would only mislead.
    let _ = std::fs::remove_dir_all(Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-failures"));
    let driver = Driver::start().await.expect("chromedriver starts (apt-get install chromium chromium-driver)");
    let mut failures = vec![];
    run_story(&driver, "chat", chat::two_people_chat(&driver), &mut failures).await;
    run_story(&driver, "actions", actions::message_actions(&driver), &mut failures).await;
    run_story(&driver, "restart", restart::server_restart(&driver), &mut failures).await;
    run_story(&driver, "rooms", rooms::rooms_and_history(&driver), &mut failures).await;
    run_story(&driver, "newcomer", rooms::what_a_newcomer_hit(&driver), &mut failures).await;
    run_story(&driver, "search", search::search_story(&driver), &mut failures).await;
    run_story(&driver, "files", files::files_story(&driver), &mut failures).await;
    run_story(&driver, "admin", admin::admin_console(&driver), &mut failures).await;
    run_story(&driver, "moderation", moderation::moderation_story(&driver), &mut failures).await;
    run_story(&driver, "looks", looks::rendering_and_layout(&driver), &mut failures).await;
    run_story(&driver, "nginx", nginx::chat_through_nginx(&driver), &mut failures).await;
    run_story(&driver, "a11y", a11y::axe_and_tap_targets(&driver), &mut failures).await;
    run_story(&driver, "assets", assets::assets_and_offline(&driver), &mut failures).await;
    driver.stop().await;
    assert!(failures.is_empty(), "browser stories failed:\n{}", failures.join("\n"));
}
