//! Files and images in the web client (issue 13, PROTOCOL.md §2.8, §3.9), in real
//! Chromium against the real server (SQLite, files under its data dir):
//!
//! - alice chooses a real PNG (made here with the `image` crate) and a PDF-like file
//!   with the file chooser (the `<input type=file>` behind the attach button, given
//!   the two paths over WebDriver); each shows as a chip, Send waits while an upload
//!   runs (a throttled upload shows its progress bar moving), and the message goes
//!   out with both;
//! - bob, in a second browser, sees the thumbnail loaded (naturalWidth > 0, drawn at
//!   the size the server's `image` gives, alt = the name) and the file card; he
//!   downloads the file and the full image from his page and gets alice's bytes, with
//!   the safe-serving headers; the viewer opens, closes with Escape (the focus back on
//!   the thumbnail) and with a click;
//! - a file over `--max-file-bytes` shows the refusal on its chip and is not sent;
//!   removing the chip clears it; once the limit is known, a file over it is refused
//!   without uploading;
//! - a pasted screenshot (a `paste` event carrying an image file) and dropped files (a
//!   `drop` event) become chips; a message of an image alone (no text) and a reply
//!   with a file go out;
//! - after an edit the files stay, after a delete they are gone; after a reload the
//!   history shows the thumbnails and cards again, and on a phone they fit the width.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, ensure};
use fantoccini::{Locator, key::Key};
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Cdp, Driver},
    common::{Backend, TestServer, password_of},
};

/// The largest upload the story's server takes (`--max-file-bytes`).
const LIMIT: u64 = 256 * 1024;

/// A real PNG: a `w` × `h` colour gradient (so it compresses to a few KB, and its
/// thumbnail is a scaled copy, not the same bytes).
pub fn png(w: u32, h: u32) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 160])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).context("encode a PNG")?;
    Ok(out.into_inner())
}

/// Bytes that start like a PDF (the server serves anything that is not a verified
/// image as a download whatever it claims).
fn pdf_like(len: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.4\n% RT Messenger test document\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    let mut i = 0u32;
    while b.len() < len {
        // Not all one byte: a short pseudo-random tail, same every run.
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        b.push((i >> 16) as u8);
    }
    b.truncate(len);
    b
}

/// Writes `bytes` as `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).with_context(|| format!("write {}", p.display()))?;
    Ok(p)
}

/// Gives the composer's file chooser these files, as a person picking them in the
/// dialog the attach button opens (WebDriver sets an `<input type=file>`'s files from
/// paths on this machine, one per line).
pub async fn choose_files(b: &Browser, paths: &[&Path]) -> Result<()> {
    b.wait_js(
        "the attach button to be enabled",
        "const x = document.getElementById('attach-btn'); return !!x && !x.disabled;",
        vec![],
    )
    .await?;
    let input =
        b.c.find(Locator::Css("#attach-input")).await.with_context(|| format!("{}: find #attach-input", b.name))?;
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    input.send_keys(&list.join("\n")).await.with_context(|| format!("{}: choose {list:?}", b.name))
}

/// The chips above the composer: per chip its state, name, size text, error text,
/// whether its progress bar shows and its value/max.
const CHIPS: &str = "
  return [...document.querySelectorAll('#attach-tray > li.attach-chip')].map((li) => {
    const p = li.querySelector('progress');
    return {
      state: li.dataset.state,
      id: li.dataset.fileId || null,
      name: li.querySelector('.attach-name').textContent,
      size: li.querySelector('.attach-size').textContent,
      error: li.querySelector('.attach-error').hidden ? null : li.querySelector('.attach-error').textContent,
      progress: p && !p.hidden ? { value: p.value, max: p.max } : null,
      remove: li.querySelector('.attach-remove')?.getAttribute('aria-label') ?? null,
    };
  });";

/// Waits until there are `n` chips and none is still uploading; returns [`CHIPS`].
pub async fn wait_chips_settled(b: &Browser, n: usize) -> Result<Value> {
    b.wait_js(
        &format!("{n} file chip(s), none still uploading"),
        &format!(
            "const v = (() => {{ {CHIPS} }})();
             return v.length === arguments[0] && v.every((c) => c.state !== 'uploading') ? v : null;"
        ),
        vec![json!(n)],
    )
    .await
}

/// What the message with text `text` carries: its images (name/alt, src, drawn and
/// natural size, loaded) and file cards (name, size, download href), or null while
/// the message is not there (or `loaded` is asked and an image has not loaded).
const ATTACHMENTS: &str = "
  for (const m of document.querySelectorAll('#messages article.msg')) {
    const t = m.querySelector(':scope > .text');
    if (!t || t.textContent !== arguments[0]) continue;
    if (arguments[2] && !m.dataset.seq) return null;
    const box = m.querySelector(':scope > .attachments');
    const images = [...(box ? box.querySelectorAll('.att-image') : [])].map((b) => {
      const img = b.querySelector('img');
      return {
        alt: img.alt,
        src: img.getAttribute('src'),
        width: img.getAttribute('width'),
        height: img.getAttribute('height'),
        natural: img.naturalWidth,
        loaded: img.complete && img.naturalWidth > 0,
        label: b.getAttribute('title'),
      };
    });
    const files = [...(box ? box.querySelectorAll('.att-file') : [])].map((c) => ({
      name: c.querySelector('.att-name').textContent,
      size: c.querySelector('.att-size').textContent,
      href: c.querySelector('a.att-download')?.getAttribute('href') ?? null,
      download: c.querySelector('a.att-download')?.getAttribute('download') ?? null,
      label: c.querySelector('a.att-download')?.getAttribute('aria-label') ?? null,
    }));
    if (arguments[1] && !images.every((i) => i.loaded)) return null;
    return { seq: Number(m.dataset.seq || 0), images, files, deleted: m.classList.contains('deleted'),
             edited: !!m.querySelector(':scope > .edited'), quote: !!m.querySelector(':scope > .reply-quote') };
  }
  return null;";

/// Waits for the message with text `text` (acknowledged, its images loaded) and
/// returns what it carries ([`ATTACHMENTS`]).
pub async fn wait_attachments(b: &Browser, text: &str) -> Result<Value> {
    b.wait_js(&format!("message {text:?} with its files"), ATTACHMENTS, vec![json!(text), json!(true), json!(true)])
        .await
}

/// Fetches `path` from the browser's page (its cookies, its origin) and returns
/// `{status, type, disposition, nosniff, csp, bytes}`.
async fn fetch_in_page(b: &Browser, path: &str) -> Result<Value> {
    b.c.execute_async(
        "const done = arguments[arguments.length - 1];
         fetch(arguments[0], { credentials: 'same-origin' })
           .then(async (r) => done({
             status: r.status,
             type: r.headers.get('content-type'),
             disposition: r.headers.get('content-disposition'),
             nosniff: r.headers.get('x-content-type-options'),
             csp: r.headers.get('content-security-policy'),
             bytes: Array.from(new Uint8Array(await r.arrayBuffer())),
           }))
           .catch((e) => done({ error: String(e) }));",
        vec![json!(path)],
    )
    .await
    .with_context(|| format!("{}: fetch {path}", b.name))
}

fn bytes_of(v: &Value) -> Vec<u8> {
    v["bytes"].as_array().into_iter().flatten().filter_map(|x| x.as_u64().map(|n| n as u8)).collect()
}

/// Limits the browser's upload speed (bytes/s; -1: no limit) through DevTools, so an
/// upload lasts long enough to watch its progress bar.
async fn throttle_uploads(b: &Browser, bytes_per_s: i64) -> Result<()> {
    // Emulated conditions apply once the Network domain is on.
    b.c.issue_cmd(Cdp { cmd: "Network.enable", params: json!({}) })
        .await
        .map_err(|e| anyhow!("{}: enable the Network domain: {e}", b.name))?;
    b.c.issue_cmd(Cdp {
        cmd: "Network.emulateNetworkConditions",
        params: json!({ "offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_s }),
    })
    .await
    .map_err(|e| anyhow!("{}: throttle uploads: {e}", b.name))?;
    Ok(())
}

/// Dispatches a `paste` into the composer carrying a PNG made by the page's canvas (as
/// a screenshot on the clipboard arrives: a file named image.png, no text).
async fn paste_screenshot(b: &Browser) -> Result<()> {
    b.c.execute_async(
        "const done = arguments[arguments.length - 1];
         const c = document.createElement('canvas');
         c.width = 200; c.height = 120;
         const g = c.getContext('2d');
         g.fillStyle = '#2a64cc'; g.fillRect(0, 0, 200, 120);
         g.fillStyle = '#ffd54a'; g.fillRect(40, 30, 120, 60);
         c.toBlob((blob) => {
           const dt = new DataTransfer();
           dt.items.add(new File([blob], 'image.png', { type: 'image/png' }));
           const ta = document.getElementById('composer');
           ta.focus();
           ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
           done(true);
         }, 'image/png');",
        vec![],
    )
    .await
    .with_context(|| format!("{}: paste an image", b.name))?;
    Ok(())
}

/// Drags a text file over the conversation (the overlay must show) and drops it.
async fn drop_file(b: &Browser, name: &str, text: &str) -> Result<Value> {
    b.js(
        "const dt = new DataTransfer();
         dt.items.add(new File([arguments[1]], arguments[0], { type: 'text/plain' }));
         const target = document.getElementById('messages');
         target.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true }));
         target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
         const overlay = document.getElementById('drop-overlay');
         const shown = !overlay.hidden && overlay.textContent;
         const drop = new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true });
         target.dispatchEvent(drop);
         return { shown, prevented: drop.defaultPrevented, hidden_after: overlay.hidden };",
        vec![json!(name), json!(text)],
    )
    .await
}

async fn press(b: &Browser, k: Key) -> Result<()> {
    let el = b.c.active_element().await?;
    el.send_keys(&char::from(k).to_string()).await?;
    Ok(())
}

pub async fn files_story(d: &Driver) -> Result<()> {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.max_file_bytes = LIMIT).await;
    let alice_api = srv.user("alice").await;
    let bob_api = srv.user("bob").await;
    let share = alice_api.create_room("share", json!({ "topic": "Pictures and papers" })).await;
    let (s, body) = bob_api.post(&format!("/api/rooms/{share}/join"), json!({})).await;
    ensure!(s == 200, "bob joins share: {body}");

    let dir = tempfile::tempdir()?;
    let sunset = png(800, 500)?;
    ensure!((sunset.len() as u64) < LIMIT, "the test image fits the limit: {} bytes", sunset.len());
    let report = pdf_like(12_345);
    let sunset_path = write(dir.path(), "sunset.png", &sunset)?;
    let report_path = write(dir.path(), "report.pdf", &report)?;
    let huge_path = write(dir.path(), "huge.bin", &pdf_like(LIMIT as usize + 200_000))?;
    let slow_path = write(dir.path(), "slow notes.txt", &vec![b'x'; 150_000])?;

    let alice = d.browser("alice").await?;
    alice.goto(&srv.url("/")).await?;
    alice.sign_in("alice", &password_of("alice")).await?;
    alice.open_conversation("share").await?;
    let bob = d.browser("bob").await?;
    bob.goto(&srv.url("/")).await?;
    bob.sign_in("bob", &password_of("bob")).await?;
    bob.open_conversation("share").await?;

    // The composer's attach button is labelled and finger-sized.
    let btn = alice
        .js(
            "const b = document.getElementById('attach-btn'); const r = b.getBoundingClientRect();
             return { label: b.getAttribute('aria-label'), w: r.width, h: r.height, input: document.getElementById('attach-input').multiple };",
            vec![],
        )
        .await?;
    ensure!(btn["label"] == json!("Attach files") && btn["input"] == json!(true), "attach button: {btn}");
    ensure!(btn["w"].as_f64() >= Some(44.0) && btn["h"].as_f64() >= Some(44.0), "44 px attach button: {btn}");

    // A throttled upload: its progress bar moves and Send waits for it.
    throttle_uploads(&alice, 60_000).await?;
    choose_files(&alice, &[&slow_path]).await?;
    let during = alice
        .wait_js(
            "the upload's progress bar part-way",
            &format!(
                "const v = (() => {{ {CHIPS} }})();
                 const c = v[0];
                 if (!c || c.state !== 'uploading' || !c.progress || !(c.progress.value > 0) || !(c.progress.value < c.progress.max)) return null;
                 return {{ chip: c, send_disabled: document.getElementById('send-btn').disabled,
                          status: document.getElementById('composer-status').textContent }};"
            ),
            vec![],
        )
        .await?;
    ensure!(during["send_disabled"] == json!(true), "Send waits for the upload: {during}");
    ensure!(during["chip"]["name"] == json!("slow notes.txt"), "{during}");
    ensure!(during["status"].as_str().is_some_and(|s| s.contains("Uploading")), "the status says why: {during}");
    let chips = wait_chips_settled(&alice, 1).await?;
    ensure!(chips[0]["state"] == json!("done") && chips[0]["size"] == json!("146 KB"), "{chips}");
    throttle_uploads(&alice, -1).await?;
    ensure!(
        alice.js("return document.getElementById('send-btn').disabled;", vec![]).await? == json!(false),
        "Send is enabled once the upload finished"
    );
    // Removed before sending: it does not go.
    alice.click("#attach-tray .attach-remove").await?;
    alice.wait_js("the tray to empty", "return document.getElementById('attach-tray').hidden;", vec![]).await?;

    // The file chooser: an image and a document at once.
    choose_files(&alice, &[&sunset_path, &report_path]).await?;
    let chips = wait_chips_settled(&alice, 2).await?;
    ensure!(
        chips.as_array().is_some_and(|c| c.iter().all(|x| x["state"] == json!("done") && x["id"].is_string())),
        "both uploaded: {chips}"
    );
    ensure!(chips[0]["name"] == json!("sunset.png") && chips[1]["name"] == json!("report.pdf"), "{chips}");
    ensure!(chips[1]["remove"] == json!("Remove report.pdf"), "the remove button is labelled: {chips}");
    alice
        .wait_js(
            "the image's chip to show its thumbnail",
            "const i = document.querySelector('#attach-tray > li:first-child .attach-thumb');
             return !!i && i.complete && i.naturalWidth > 0;",
            vec![],
        )
        .await?;
    let text = "Holiday pictures and the report";
    alice.send_message(text).await?;
    alice
        .wait_js("the tray to empty after sending", "return document.getElementById('attach-tray').hidden;", vec![])
        .await?;
    let mine = wait_attachments(&alice, text).await?;
    ensure!(
        mine["images"].as_array().map(Vec::len) == Some(1) && mine["files"].as_array().map(Vec::len) == Some(1),
        "{mine}"
    );

    // bob sees the thumbnail (loaded, at the thumbnail's size, named) and the card.
    let seen = wait_attachments(&bob, text).await?;
    let img = &seen["images"][0];
    ensure!(img["alt"] == json!("sunset.png"), "alt is the name: {seen}");
    ensure!(img["width"] == json!("320") && img["height"] == json!("200"), "drawn at the thumbnail's size: {seen}");
    ensure!(img["natural"].as_u64().is_some_and(|w| w > 0 && w <= 320), "the thumbnail loaded: {seen}");
    let card = &seen["files"][0];
    ensure!(card["name"] == json!("report.pdf") && card["size"] == json!("12 KB"), "the card: {seen}");
    ensure!(card["label"] == json!("Download report.pdf (12 KB)"), "the download link is labelled: {seen}");
    let href = card["href"].as_str().unwrap_or_default().to_string();
    ensure!(href.starts_with("/api/files/") && href.ends_with("?download=1"), "download link: {href}");

    // bob downloads the document: alice's bytes, as an attachment, never sniffed.
    let got = fetch_in_page(&bob, &href).await?;
    ensure!(got["status"] == json!(200), "download: {}", json!({"status": got["status"], "error": got["error"]}));
    ensure!(bytes_of(&got) == report, "bob downloads the very bytes alice chose ({} bytes)", bytes_of(&got).len());
    ensure!(got["nosniff"] == json!("nosniff"), "nosniff: {}", got["nosniff"]);
    ensure!(
        got["disposition"].as_str().is_some_and(|s| s.starts_with("attachment")),
        "attachment: {}",
        got["disposition"]
    );
    ensure!(got["csp"].as_str().is_some_and(|s| s.contains("sandbox")), "sandboxed: {}", got["csp"]);

    // The viewer: the full image, its name, size and download link; Escape closes it
    // and the focus goes back to the thumbnail.
    bob.click(&format!("article.msg[data-seq=\"{}\"] .att-image", seen["seq"])).await?;
    let view = bob
        .wait_js(
            "the viewer with the full image",
            "const d = document.getElementById('file-viewer');
             const img = document.getElementById('file-viewer-img');
             if (!d.open || !img.complete || img.naturalWidth === 0) return null;
             return { name: document.getElementById('file-viewer-name').textContent,
                      size: document.getElementById('file-viewer-size').textContent,
                      natural: [img.naturalWidth, img.naturalHeight], alt: img.alt, src: img.getAttribute('src'),
                      download: document.getElementById('file-viewer-download').getAttribute('href'),
                      focus: document.activeElement.id };",
            vec![],
        )
        .await?;
    ensure!(view["name"] == json!("sunset.png") && view["alt"] == json!("sunset.png"), "{view}");
    ensure!(view["natural"] == json!([800, 500]), "full size: {view}");
    ensure!(view["size"].as_str().is_some_and(|s| s.contains("800 × 500")), "{view}");
    ensure!(view["focus"] == json!("file-viewer-close"), "the focus moves into the viewer: {view}");
    let full = fetch_in_page(&bob, view["src"].as_str().unwrap_or_default()).await?;
    ensure!(full["status"] == json!(200) && bytes_of(&full) == sunset, "the full image is alice's PNG");
    ensure!(full["type"] == json!("image/png"), "a verified image is served as one: {}", full["type"]);
    let forced = fetch_in_page(&bob, view["download"].as_str().unwrap_or_default()).await?;
    ensure!(
        forced["disposition"].as_str().is_some_and(|s| s.starts_with("attachment")),
        "?download=1 downloads the image: {}",
        forced["disposition"]
    );
    press(&bob, Key::Escape).await?;
    bob.wait_js(
        "the viewer to close and the focus to return to the thumbnail",
        "return !document.getElementById('file-viewer').open && document.activeElement?.classList.contains('att-image');",
        vec![],
    )
    .await?;
    // A click on the image closes it too.
    bob.click(&format!("article.msg[data-seq=\"{}\"] .att-image", seen["seq"])).await?;
    bob.wait_js("the viewer to open", "return document.getElementById('file-viewer').open;", vec![]).await?;
    bob.click("#file-viewer-img").await?;
    bob.wait_js("the viewer to close on a click", "return !document.getElementById('file-viewer').open;", vec![])
        .await?;

    // Too large: refused on its chip in plain words, never sent; removing clears it.
    choose_files(&alice, &[&huge_path]).await?;
    let chips = wait_chips_settled(&alice, 1).await?;
    ensure!(chips[0]["state"] == json!("error"), "refused: {chips}");
    ensure!(chips[0]["error"].as_str().is_some_and(|e| e.starts_with("Too large")), "said plainly: {chips}");
    alice.click("#attach-tray .attach-remove").await?;
    alice.wait_js("the refused chip to go", "return document.getElementById('attach-tray').hidden;", vec![]).await?;
    // GET /api/config told the limit: the file is refused unsent, the first time and
    // again (the browser's resource timings show no upload of huge.bin).
    const REQUESTS: &str = "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/files?name=huge.bin')).length;";
    let before = alice.js(REQUESTS, vec![]).await?;
    ensure!(before.as_u64() == Some(0), "never sent: {before}");
    choose_files(&alice, &[&huge_path]).await?;
    let again = wait_chips_settled(&alice, 1).await?;
    ensure!(again[0]["error"] == chips[0]["error"], "the same words: {again} vs {chips}");
    let after = alice.js(REQUESTS, vec![]).await?;
    ensure!(after == before, "the second try sent nothing: {before} requests before, {after} after");
    alice.click("#attach-tray .attach-remove").await?;
    alice.wait_js("the refused chip to go", "return document.getElementById('attach-tray').hidden;", vec![]).await?;
    ensure!(
        alice.js("return document.activeElement?.id;", vec![]).await? == json!("composer"),
        "the focus goes back to the composer after the last chip"
    );

    // A pasted screenshot goes alone, with no text.
    paste_screenshot(&alice).await?;
    let chips = wait_chips_settled(&alice, 1).await?;
    ensure!(chips[0]["state"] == json!("done"), "{chips}");
    let shot = chips[0]["name"].as_str().unwrap_or_default().to_string();
    ensure!(shot.starts_with("Screenshot ") && shot.ends_with(".png"), "a pasted image gets a dated name: {chips}");
    alice.type_keys("#composer", &char::from(Key::Enter).to_string()).await?;
    alice.wait_js("the tray to empty", "return document.getElementById('attach-tray').hidden;", vec![]).await?;
    let alone = wait_attachments(&bob, "").await?;
    ensure!(alone["images"][0]["alt"] == json!(shot) && alone["files"] == json!([]), "an image alone: {alone}");
    let shot_seq = alone["seq"].as_i64().unwrap_or_default();

    // Dropped on the conversation: a file; sent as a reply to bob's message.
    let mut bw = bob_api.ws().await;
    let question = "Could you send me the minutes too?";
    let q_seq = bw.say(share, question).await.unwrap_or_default();
    alice.wait_msg_delivered(question).await?;
    let dropped = drop_file(&alice, "minutes.txt", "Minutes of the meeting\n").await?;
    ensure!(dropped["shown"] == json!("Drop files to send to #share"), "the drop overlay: {dropped}");
    ensure!(dropped["prevented"] == json!(true) && dropped["hidden_after"] == json!(true), "{dropped}");
    let chips = wait_chips_settled(&alice, 1).await?;
    ensure!(chips[0]["name"] == json!("minutes.txt") && chips[0]["state"] == json!("done"), "{chips}");
    alice.js(
        "document.querySelector(`article.msg[data-seq=\"${arguments[0]}\"] .msg-action[data-action=reply]`).click();",
        vec![json!(q_seq)],
    )
    .await?;
    alice.wait_visible("#composer-mode").await?;
    let answer = "Here are the minutes";
    alice.send_message(answer).await?;
    let reply = wait_attachments(&bob, answer).await?;
    ensure!(reply["quote"] == json!(true), "a reply: {reply}");
    ensure!(reply["files"][0]["name"] == json!("minutes.txt"), "with the dropped file: {reply}");

    // An edit keeps the files; a delete takes them away.
    let mut aw = alice_api.ws().await;
    let f = aw
        .request(json!({ "type": "edit", "room": share, "seq": seen["seq"], "text": "Holiday pictures (edited)" }))
        .await;
    ensure!(format!("{f:?}").contains("Ack"), "edit: {f:?}");
    let edited = wait_attachments(&bob, "Holiday pictures (edited)").await?;
    ensure!(edited["edited"] == json!(true), "{edited}");
    ensure!(
        edited["images"][0]["loaded"] == json!(true) && edited["files"][0]["name"] == json!("report.pdf"),
        "{edited}"
    );
    let f = aw.request(json!({ "type": "delete", "room": share, "seq": shot_seq })).await;
    ensure!(format!("{f:?}").contains("Ack"), "delete: {f:?}");
    let gone = bob
        .wait_js(
            "the deleted message without its image",
            "const m = document.querySelector(`article.msg[data-seq=\"${arguments[0]}\"]`);
             return m && m.classList.contains('deleted') ? { files: m.querySelectorAll('.attachments, img').length } : null;",
            vec![json!(shot_seq)],
        )
        .await?;
    ensure!(gone["files"] == json!(0), "no attachments on a deleted message: {gone}");

    // A reload: history brings the thumbnails and cards back.
    bob.goto(&srv.url("/")).await?;
    bob.wait_live().await?;
    bob.open_conversation("share").await?;
    let again = wait_attachments(&bob, "Holiday pictures (edited)").await?;
    ensure!(again["images"][0]["loaded"] == json!(true) && again["files"][0]["name"] == json!("report.pdf"), "{again}");
    let again = wait_attachments(&bob, answer).await?;
    ensure!(again["files"][0]["name"] == json!("minutes.txt"), "{again}");

    // On a phone the thumbnail and the card fit the column: nothing scrolls sideways.
    bob.resize(390, 844).await?;
    let fit = bob
        .wait_js(
            "the files to fit a phone's width",
            "const list = document.getElementById('messages').getBoundingClientRect();
             const boxes = [...document.querySelectorAll('#messages .att-image, #messages .att-file')];
             if (!boxes.length) return null;
             const over = boxes.filter((b) => b.getBoundingClientRect().right > list.right + 1).length;
             const doc = document.documentElement.scrollWidth;
             return over === 0 && doc <= innerWidth ? { boxes: boxes.length, doc, w: innerWidth } : null;",
            vec![],
        )
        .await?;
    ensure!(fit["boxes"].as_u64() >= Some(3), "{fit}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    for b in [&alice, &bob] {
        ensure!(!b.alert_open().await, "{}: an alert opened", b.name);
        let errors = b.console_errors().await;
        ensure!(errors.is_empty(), "{}: console errors: {errors:#?}", b.name);
    }
    alice.close(d).await?;
    bob.close(d).await?;
    Ok(())
}

/// Uploads `bytes` as `name` to `room` over HTTP (as a script would) and returns the
/// Attachment object of the answer.
pub async fn upload(c: &crate::common::Client, room: i64, name: &str, mime: &str, bytes: Vec<u8>) -> Result<Value> {
    let r = c
        .http
        .post(format!("{}/api/rooms/{room}/files", c.base))
        .query(&[("name", name)])
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("upload {name}"))?;
    let status = r.status();
    let v: Value = r.json().await.with_context(|| format!("upload {name}: the answer"))?;
    ensure!(status.as_u16() == 201, "upload {name}: {status} {v}");
    Ok(v["file"].clone())
}
