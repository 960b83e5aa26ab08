// files.js: files and images in the web client (issue 13; PROTOCOL.md §2.8, §3.9).
//
// - Composer: the attach button (a file chooser, several files at once), files dropped
//   on the conversation, and an image pasted into the message box (a screenshot) are
//   uploaded at once, each to the open room (POST /api/rooms/{id}/files, the raw bytes
//   as the body). Uploads use XMLHttpRequest because fetch reports no upload progress.
//   Each file shows as a chip above the composer: name, size, a progress bar, a remove
//   button, and the server's refusal in plain words (too large, over the quota, a type
//   not accepted, an image that does not decode, an ephemeral room). The chips belong
//   to their room: switching rooms shows that room's own, and uploads go on meanwhile.
//   conversation.js asks `uploadsBusy()` (Send waits for them) and takes the finished
//   ones with `takeAttachments()` when the message goes out (`send` with
//   `attachments`; the text may then be empty).
// - Messages: `attachmentsBlock(message)` renders what a message carries under its
//   text: an image as its thumbnail (width and height from the server's `image`, so the
//   list does not jump when it loads) that opens the viewer, any other file as a card
//   with an icon, name, size and a download link. Names are text nodes only.
// - The viewer: #file-viewer (a modal <dialog>: Escape, a click on the image or the
//   backdrop, or the close button closes it, and the focus goes back to the thumbnail).
//
// Stable selectors for tests:
//   #attach-btn (opens the chooser)  #attach-input (input[type=file][multiple])
//   #attach-tray > li.attach-chip[data-state=uploading|done|error][data-file-id]
//       .attach-name .attach-size progress.attach-progress .attach-error .attach-remove
//   #drop-overlay (shown while files are dragged over the conversation)
//   article.msg > .attachments > .att-image (button) > img   |   .att-file (.att-name,
//       .att-size, a.att-download)
//   #file-viewer (dialog) #file-viewer-img #file-viewer-name #file-viewer-size
//       #file-viewer-download #file-viewer-close

import { $, h } from './dom.js';
import * as store from './store.js';

/** At most this many attachments ride on one message (the server's limit too). */
export const MAX_ATTACHMENTS = 10;
/** The longest side of a thumbnail as the server makes it (CSS px we reserve). */
const THUMB_MAX = 320;

/** "<user id>:<room id>" -> the chips of that room's composer, in the order added. */
const trays = new Map();
let nextLocal = 0;
/** Told when the uploads of a room change (Send's state depends on them). */
let onChange = () => {};
/** The element that opened the viewer, given the focus back when it closes. */
let viewerOpener = null;
/** The largest file the server takes (bytes; null: not known): `GET /api/config`'s
 *  `max_file_bytes`, or what a 413 named. Files over it are refused here, without
 *  sending bytes that would only be turned away. */
let knownLimit = null;
const limitBytes = () => knownLimit ?? (Number(store.state.config.max_file_bytes) || null);

const trayKey = (roomId) => `${store.state.me ? store.state.me.id : 0}:${roomId}`;

function trayOf(roomId, create = false) {
  const key = trayKey(roomId);
  let t = trays.get(key);
  if (!t && create) trays.set(key, (t = []));
  return t || [];
}

// ---------------------------------------------------------------- formatting

/** A byte count as people read it: "812 bytes", "48 KB", "3.4 MB". */
export function humanSize(n) {
  const bytes = Number(n) || 0;
  if (bytes < 1024) return `${bytes} ${bytes === 1 ? 'byte' : 'bytes'}`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1).replace(/\.0$/, '') : Math.round(v)} ${units[i]}`;
}

/** Only our own download paths are ever put in an href or src (the server makes
 *  them; anything else in an event is not trusted as a link). */
function safePath(p) {
  return typeof p === 'string' && p.startsWith('/api/files/') && !p.includes('//') ? p : null;
}

/** The link that always downloads (images are otherwise shown inline). */
function downloadPath(a) {
  const p = safePath(a.url);
  if (!p) return null;
  return `${p}${p.includes('?') ? '&' : '?'}download=1`;
}

/** A small symbol for a card, by the declared type (decoration only). */
function fileIcon(type) {
  const t = String(type || '');
  if (t.startsWith('image/')) return '🖼';
  if (t.startsWith('audio/')) return '🎵';
  if (t.startsWith('video/')) return '🎬';
  if (t === 'application/pdf') return '📕';
  if (t.startsWith('text/')) return '📝';
  if (/zip|compressed|tar|gzip|x-7z/.test(t)) return '🗜';
  return '📄';
}

/** The server's refusal of an upload, in words for the person (by stable code). */
function refusal(status, code, message) {
  switch (code) {
    case 'file_too_large': {
      // "the file is larger than N bytes": say N as people read sizes.
      const limit = /(\d+) bytes/.exec(String(message || ''));
      if (limit) {
        knownLimit = Number(limit[1]);
        return tooLarge();
      }
      return message ? `Too large: ${lower(message)}` : 'Too large: the server does not accept files this big.';
    }
    case 'quota_exceeded':
      return 'Your storage is full: delete some of your older files, or ask the admin for more room.';
    case 'file_type_not_allowed':
      return 'This kind of file is not accepted here.';
    case 'image_rejected':
      return 'This image cannot be used: it is damaged or too large to show.';
    case 'room_is_ephemeral':
      return 'This room is ephemeral: it keeps nothing, so it takes no files.';
    case 'room_not_found':
      return 'You are no longer in this conversation.';
    case 'rate_limited':
      return 'Too many uploads at once: wait a moment and try again.';
    case 'unauthenticated':
      return 'Your session ended: sign in again.';
    case 'network':
      return 'The upload was cut off: check your connection and try again.';
    default:
      if (status === 413) return 'Too large: the server does not accept files this big.';
      if (message) return sentence(message);
      return status >= 500 ? 'The server had a problem: try again in a moment.' : `The upload failed (HTTP ${status}).`;
  }
}

const tooLarge = () => `Too large: the largest file accepted here is ${humanSize(limitBytes())}.`;

const sentence = (s) => {
  const t = String(s).trim();
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
};
const lower = (s) => {
  const t = sentence(s);
  return t.charAt(0).toLowerCase() + t.slice(1);
};

// ---------------------------------------------------------------- uploads

/**
 * Starts uploading `files` (File objects) to room `roomId`: each becomes a chip. Files
 * past MAX_ATTACHMENTS for one message are refused on their chip without uploading.
 */
export function addFiles(roomId, files) {
  const r = store.room(roomId);
  if (!r || !files || !files.length) return;
  const tray = trayOf(roomId, true);
  for (const file of files) {
    const u = {
      local: `u${++nextLocal}`,
      room: roomId,
      name: file.name || 'file',
      size: file.size,
      type: file.type || '',
      loaded: 0,
      /** 'uploading' | 'done' | 'error' */
      state: 'uploading',
      error: '',
      attachment: null,
      xhr: null,
    };
    tray.push(u);
    if (store.isEphemeral(r)) {
      // The server would refuse it (409 room_is_ephemeral): say so without sending.
      fail(u, 409, 'room_is_ephemeral', '');
    } else if (tray.filter((x) => x.state !== 'error').length > MAX_ATTACHMENTS) {
      u.state = 'error';
      u.error = `At most ${MAX_ATTACHMENTS} files go with one message: send these first.`;
    } else if (limitBytes() != null && u.size > limitBytes()) {
      u.state = 'error';
      u.error = tooLarge();
    } else {
      upload(u, file);
    }
  }
  changed(roomId);
  announce(files.length === 1 ? `Uploading ${files[0].name || 'a file'}` : `Uploading ${files.length} files`);
}

function upload(u, file) {
  const xhr = new XMLHttpRequest();
  u.xhr = xhr;
  xhr.open('POST', `/api/rooms/${encodeURIComponent(u.room)}/files?name=${encodeURIComponent(u.name)}`);
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.setRequestHeader('Content-Type', u.type || 'application/octet-stream');
  xhr.withCredentials = true;
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    u.loaded = e.loaded;
    paintChip(u);
  };
  xhr.onload = () => {
    u.xhr = null;
    let body = null;
    try {
      body = JSON.parse(xhr.responseText || 'null');
    } catch {
      body = null;
    }
    if (xhr.status === 201 && body && body.file && typeof body.file.id === 'string') {
      u.state = 'done';
      u.loaded = u.size;
      u.attachment = body.file;
      // The server's cleaned name is the one the message will show.
      if (typeof body.file.name === 'string' && body.file.name) u.name = body.file.name;
      changed(u.room);
      announce(`${u.name} uploaded`);
      return;
    }
    const err = (body && body.error) || {};
    fail(u, xhr.status, err.code || '', err.message || '');
  };
  // The server answers a file over the limit early, without reading the rest; a
  // browser still sending may then see the connection end instead of the answer.
  xhr.onerror = () => {
    u.xhr = null;
    if (limitBytes() != null && u.size > limitBytes()) fail(u, 413, 'file_too_large', `${limitBytes()} bytes`);
    else fail(u, 0, 'network', '');
  };
  xhr.onabort = () => {
    u.xhr = null;
  };
  xhr.send(file);
}

function fail(u, status, code, message) {
  u.state = 'error';
  u.error = refusal(status, code, message);
  u.code = code;
  changed(u.room);
  announce(`${u.name}: ${u.error}`);
}

/** Removes a chip (cancelling its upload if it still runs). The server deletes an
 *  upload that no message takes within a day (§2.8). */
function removeUpload(u) {
  if (u.xhr) u.xhr.abort();
  const tray = trayOf(u.room);
  const i = tray.indexOf(u);
  if (i >= 0) tray.splice(i, 1);
  changed(u.room);
}

/** Is a file of the open room's composer still uploading? (Send waits.) */
export function uploadsBusy(roomId) {
  return trayOf(roomId).some((u) => u.state === 'uploading');
}

/** The open room's finished uploads (Attachment objects), in the order added. */
export function readyAttachments(roomId) {
  return trayOf(roomId)
    .filter((u) => u.state === 'done' && u.attachment)
    .map((u) => u.attachment);
}

/** The message went out with the finished uploads: their chips go. Refused ones stay
 *  (they were not sent) until removed. */
export function takeAttachments(roomId) {
  const tray = trayOf(roomId);
  const keep = tray.filter((u) => u.state !== 'done');
  trays.set(trayKey(roomId), keep);
  changed(roomId);
}

/** Forgets every upload (sign-out): running ones are cancelled. */
function clearAll() {
  for (const t of trays.values()) for (const u of t) if (u.xhr) u.xhr.abort();
  trays.clear();
}

function changed(roomId) {
  if (roomId === store.state.currentRoomId) renderTray();
  onChange();
}

// ---------------------------------------------------------------- the tray of chips

function announce(text) {
  const el = $('attach-status');
  if (!el) return;
  el.textContent = '';
  setTimeout(() => (el.textContent = text), 30);
}

/** Draws the open room's chips. */
export function renderTray() {
  const tray = $('attach-tray');
  if (!tray) return;
  const id = store.state.currentRoomId;
  const list = id == null ? [] : trayOf(id);
  tray.hidden = list.length === 0;
  const have = new Map([...tray.children].map((li) => [li._upload, li]));
  const items = list.map((u) => {
    const li = have.get(u) || chip(u);
    have.delete(u);
    paintChip(u, li);
    return li;
  });
  for (const li of have.values()) {
    // The focus was on a chip that went (removed, or sent): keep it in the composer.
    const hadFocus = li.contains(document.activeElement);
    li.remove();
    if (hadFocus) $('composer')?.focus();
  }
  tray.replaceChildren(...items);
}

function chip(u) {
  const remove = h('button', {
    type: 'button',
    class: 'attach-remove icon-btn',
    'aria-label': `Remove ${u.name}`,
    title: 'Remove',
    text: '✕',
  });
  remove.addEventListener('click', () => {
    // The next chip (or the composer) gets the focus, as a list item removal should.
    const li = remove.closest('li');
    const next = li && (li.nextElementSibling || li.previousElementSibling);
    removeUpload(u);
    (next?.querySelector('.attach-remove') || $('composer'))?.focus();
  });
  const li = h(
    'li',
    { class: 'attach-chip' },
    h('span', { class: 'attach-icon', 'aria-hidden': 'true', text: fileIcon(u.type) }),
    h(
      'div',
      { class: 'attach-body' },
      h('span', { class: 'attach-name', title: u.name, text: u.name }),
      h('span', { class: 'attach-size', text: humanSize(u.size) }),
      h('progress', { class: 'attach-progress', max: String(Math.max(1, u.size)), value: '0', 'aria-label': `Uploading ${u.name}` }),
      h('p', { class: 'attach-error' }),
    ),
    remove,
  );
  li._upload = u;
  return li;
}

function paintChip(u, li = null) {
  li = li || [...($('attach-tray')?.children || [])].find((x) => x._upload === u);
  if (!li) return;
  li.dataset.state = u.state;
  if (u.attachment) li.dataset.fileId = u.attachment.id;
  const name = li.querySelector('.attach-name');
  if (name.textContent !== u.name) {
    name.textContent = u.name;
    name.title = u.name;
    li.querySelector('.attach-remove').setAttribute('aria-label', `Remove ${u.name}`);
  }
  const progress = li.querySelector('.attach-progress');
  progress.hidden = u.state !== 'uploading';
  progress.value = Math.min(u.loaded, Math.max(1, u.size));
  const size = li.querySelector('.attach-size');
  const pct = u.size ? Math.floor((100 * u.loaded) / u.size) : 0;
  size.textContent = u.state === 'uploading' ? `${humanSize(u.size)} · ${pct} %` : humanSize(u.size);
  const err = li.querySelector('.attach-error');
  err.hidden = u.state !== 'error';
  if (err.textContent !== u.error) err.textContent = u.error;
  // An uploaded image shows its thumbnail in place of the icon (a pasted screenshot
  // is then recognisable before it is sent); decoration only, the name says it all.
  const thumb = u.attachment && u.attachment.image ? safePath(u.attachment.thumb_url) : null;
  const icon = li.querySelector('.attach-icon');
  if (thumb && !icon.querySelector('img')) {
    icon.replaceChildren(h('img', { class: 'attach-thumb', src: thumb, alt: '', width: 32, height: 32 }));
  }
}

// ---------------------------------------------------------------- messages

/**
 * What a message carries, under its text: image thumbnails and file cards, or null
 * (none, or the message was deleted).
 */
export function attachmentsBlock(m) {
  const list = Array.isArray(m.attachments) ? m.attachments : [];
  if (m.deleted || !list.length) return null;
  const box = h('div', { class: 'attachments' });
  for (const a of list) {
    if (!a || typeof a.id !== 'string') continue;
    box.append(a.image && safePath(a.thumb_url) ? imageThumb(a) : fileCard(a));
  }
  return box.childElementCount ? box : null;
}

/** The size an image is drawn at in the list: its thumbnail's, from `image`. */
function thumbSize(img) {
  const w = Math.max(1, Number(img.width) || 1);
  const hgt = Math.max(1, Number(img.height) || 1);
  const scale = Math.min(1, THUMB_MAX / Math.max(w, hgt));
  return { w: Math.max(1, Math.round(w * scale)), h: Math.max(1, Math.round(hgt * scale)) };
}

function imageThumb(a) {
  const { w, h: hh } = thumbSize(a.image);
  const btn = h(
    'button',
    {
      type: 'button',
      class: 'att-image',
      'data-file-id': a.id,
      title: `${a.name} · ${humanSize(a.size)} · open full size`,
    },
    h('img', { src: safePath(a.thumb_url), alt: a.name, width: w, height: hh, loading: 'lazy', decoding: 'async' }),
  );
  btn._attachment = a;
  btn.addEventListener('click', () => openViewer(a, btn));
  return btn;
}

function fileCard(a) {
  const href = downloadPath(a);
  return h(
    'div',
    { class: 'att-file', 'data-file-id': a.id },
    h('span', { class: 'att-icon', 'aria-hidden': 'true', text: fileIcon(a.type) }),
    h(
      'div',
      { class: 'att-meta' },
      h('span', { class: 'att-name', title: a.name, text: a.name }),
      h('span', { class: 'att-size', text: humanSize(a.size) }),
    ),
    href
      ? h('a', {
          class: 'att-download button-link',
          href,
          download: a.name,
          'aria-label': `Download ${a.name} (${humanSize(a.size)})`,
          text: 'Download',
        })
      : null,
  );
}

// ---------------------------------------------------------------- the viewer

function openViewer(a, opener) {
  const d = $('file-viewer');
  const src = safePath(a.url);
  if (!d || !src) return;
  viewerOpener = opener;
  const img = $('file-viewer-img');
  img.alt = a.name;
  if (a.image) {
    img.width = Number(a.image.width) || 0;
    img.height = Number(a.image.height) || 0;
  }
  img.src = src;
  $('file-viewer-name').textContent = a.name;
  $('file-viewer-name').title = a.name;
  $('file-viewer-size').textContent = a.image
    ? `${humanSize(a.size)} · ${a.image.width} × ${a.image.height}`
    : humanSize(a.size);
  const dl = $('file-viewer-download');
  dl.href = downloadPath(a);
  dl.setAttribute('download', a.name);
  dl.setAttribute('aria-label', `Download ${a.name}`);
  if (!d.open) d.showModal();
  $('file-viewer-close').focus();
}

function initViewer() {
  const d = $('file-viewer');
  if (!d) return;
  $('file-viewer-close').addEventListener('click', () => d.close());
  $('file-viewer-img').addEventListener('click', () => d.close());
  d.addEventListener('click', (e) => {
    if (e.target === d) d.close(); // the backdrop
  });
  d.addEventListener('close', () => {
    const img = $('file-viewer-img');
    img.removeAttribute('src');
    const back = viewerOpener;
    viewerOpener = null;
    if (back && back.isConnected) back.focus();
  });
}

// ---------------------------------------------------------------- composer wiring

/** Is the composer ready to take files (a room is open)? */
const roomOpen = () => store.state.currentRoomId != null && !!store.currentRoom();

/** A pasted image has a name like "image.png"; a dated one reads better in the room. */
function pastedName(file, i) {
  const ext = (String(file.type).split('/')[1] || 'png').replace(/[^a-z0-9]/gi, '').slice(0, 5) || 'png';
  const d = new Date();
  const p = (n) => String(n).padStart(2, '0');
  const stamp = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}.${p(d.getMinutes())}.${p(d.getSeconds())}`;
  return `Screenshot ${stamp}${i ? ` (${i + 1})` : ''}.${ext}`;
}

/** The files a drop or paste carries (not strings, not folders). */
function filesOf(dt) {
  if (!dt) return [];
  const out = [];
  if (dt.items && dt.items.length) {
    for (const it of dt.items) {
      if (it.kind !== 'file') continue;
      const f = it.getAsFile();
      if (f) out.push(f);
    }
    return out;
  }
  return [...(dt.files || [])];
}

const carriesFiles = (dt) => !!dt && [...(dt.types || [])].includes('Files');

/**
 * Builds the attach button, the file input, the chip tray, the drop overlay and the
 * viewer's handlers. `changedHook()` is called when uploads start, finish or go (the
 * composer redraws Send).
 */
export function initFiles({ changed: changedHook }) {
  onChange = changedHook || (() => {});
  const form = $('composer-form');
  const ta = $('composer');
  // The chooser itself stays out of sight and out of the tab order: the button opens it.
  const input = h('input', { type: 'file', id: 'attach-input', multiple: true, hidden: true });
  const btn = h(
    'button',
    { type: 'button', id: 'attach-btn', class: 'attach-btn', 'aria-label': 'Attach files', title: 'Attach files (or drop them here, or paste an image)' },
    h('span', { 'aria-hidden': 'true', text: '📎' }),
  );
  btn.addEventListener('click', () => {
    if (roomOpen()) input.click();
  });
  input.addEventListener('change', () => {
    const id = store.state.currentRoomId;
    if (id != null && input.files && input.files.length) addFiles(id, [...input.files]);
    input.value = ''; // choosing the same file again is a new choice
    ta.focus();
  });
  form.prepend(input);
  ta.before(btn);
  form.classList.add('with-attach');

  const tray = h('ul', { id: 'attach-tray', class: 'attach-tray', 'aria-label': 'Files to send', hidden: true });
  const status = h('p', { id: 'attach-status', class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  form.before(tray, status);

  // A pasted image (a screenshot) is attached; pasted text is left to the textarea.
  ta.addEventListener('paste', (e) => {
    const files = filesOf(e.clipboardData);
    if (!files.length || !roomOpen()) return;
    const hasText = !!(e.clipboardData.getData && e.clipboardData.getData('text/plain'));
    if (!hasText) e.preventDefault();
    const named = files.map((f, i) =>
      /^image\.(png|jpe?g|gif|webp)$/i.test(f.name) || !f.name ? new File([f], pastedName(f, i), { type: f.type }) : f,
    );
    addFiles(store.state.currentRoomId, named);
  });

  // Files dragged over the conversation: an overlay says where they go; a drop
  // attaches them. Anywhere else, a drop must not navigate away from the app.
  const conv = form.closest('.conversation') || document.body;
  const overlay = h('div', { id: 'drop-overlay', class: 'drop-overlay', hidden: true, 'aria-hidden': 'true' }, h('p', { class: 'drop-label' }));
  conv.append(overlay);
  let depth = 0;
  const hideOverlay = () => {
    depth = 0;
    overlay.hidden = true;
  };
  conv.addEventListener('dragenter', (e) => {
    if (!carriesFiles(e.dataTransfer) || !roomOpen()) return;
    e.preventDefault();
    depth++;
    const r = store.currentRoom();
    overlay.firstChild.textContent = `Drop files to send to ${r.info.kind === 'dm' ? '@' : '#'}${r.info.name}`;
    overlay.hidden = false;
  });
  conv.addEventListener('dragover', (e) => {
    if (!carriesFiles(e.dataTransfer) || !roomOpen()) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  conv.addEventListener('dragleave', (e) => {
    if (!carriesFiles(e.dataTransfer)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  conv.addEventListener('drop', (e) => {
    hideOverlay();
    const files = filesOf(e.dataTransfer);
    if (!files.length) return;
    e.preventDefault();
    if (roomOpen()) addFiles(store.state.currentRoomId, files);
    ta.focus();
  });
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (carriesFiles(e.dataTransfer) && !e.defaultPrevented) {
        e.preventDefault();
        if (type === 'drop') hideOverlay();
      }
    });
  }

  initViewer();
  store.subscribe((d) => {
    if (d.has('all') || d.has('me')) {
      if (!store.state.me) clearAll();
    }
    if (d.has('all') || d.has('current') || d.has('me') || d.has('rooms')) {
      btn.disabled = !roomOpen();
      renderTray();
    }
  });
}
