// mentions.js: @mentions in the web client (issue 12, PROTOCOL.md §3.8 "Mentions").
//
// On the wire a mention is `<@ID>` (the person's user id), so it survives renames;
// people read and type `@username`. This module keeps the two apart:
// - the composer's autocomplete: typing "@" and the start of a name lists the room's
//   members (GET /api/rooms/{id}/members); Up/Down choose, Enter or Tab insert
//   "@username ", Escape dismisses. The composer keeps showing "@username".
// - toWire(): what is sent, `@username` of a member turned into `<@ID>` (not inside
//   code); fromWire(): the other way, to put a message back in the composer to edit.
// - chipify(): a message's `<@ID>` tokens shown as "@username" chips, for the ids the
//   event's `mentions` names (an id of no account stays plain text; tokens inside code
//   stay as written). Names follow `user_updated` frames.
// - decorateConv(): the sidebar's mention badge (RoomInfo.mentions, separate from the
//   unread count) and the quiet look of a muted room.
// All text is set with textContent / text nodes.

import { $, completionKey, h } from './dom.js';
import { fullName } from './format.js';
import * as store from './store.js';
import { tapFrames } from './socket.js';
import { loadMembers } from './members.js';

const MAX_SUGGESTIONS = 8;
/** "@" and a partial username just before the cursor (group 2), after a space, the
 *  start, or punctuation that is not part of a name. */
const TYPING_RE = /(^|[^A-Za-z0-9_.@<`-])@([A-Za-z0-9_.-]{0,32})$/;
/** A mention token of the wire form. */
const TOKEN_RE = /<@(\d{1,18})>/g;
/** Characters of a username. */
const NAME_CHAR = /[A-Za-z0-9_.-]/;

/** user id -> the latest username this client has seen for it. */
const names = new Map();

let composer = null;
let insert = null;
let onNamesChanged = () => {};
/** The open autocomplete: { from, to, items: [member], index } or null. */
let completion = null;
let lastQuery = null;

/** Notes a person's current username (from events, member lists, user_updated). */
export function learn(id, username) {
  if (!Number.isInteger(id) || typeof username !== 'string' || !username) return false;
  if (names.get(id) === username) return false;
  names.set(id, username);
  return true;
}

/** The username to show for a mentioned id: the freshest known, else the event's. */
export function nameOf(id, fallback = null) {
  return names.get(id) || fallback;
}

/**
 * @param {object} o composer (textarea), insert(text, from, to),
 *   addKeyHandler(fn), onNamesChanged() (redraw messages)
 */
export function initMentions(o) {
  composer = o.composer;
  insert = o.insert;
  onNamesChanged = o.onNamesChanged || (() => {});
  o.addKeyHandler(onComposerKey);
  const list = h('ul', { id: 'mention-suggest', class: 'mention-suggest', role: 'listbox', 'aria-label': 'People to mention', hidden: true });
  $('composer-form').append(list);
  // A mousedown would blur the composer first; keep the focus where the text is.
  list.addEventListener('mousedown', (e) => e.preventDefault());
  list.addEventListener('click', (e) => {
    const li = e.target.closest('li[data-index]');
    if (li) accept(Number(li.dataset.index));
  });
  composer.addEventListener('input', onComposerInput);
  composer.addEventListener('blur', () => setTimeout(() => document.activeElement !== composer && close(), 150));
  composer.addEventListener('click', onComposerInput);
  store.subscribe((d) => {
    const id = store.state.currentRoomId;
    if (d.has('current')) close();
    if (id != null && d.has(`members:${id}`)) {
      let changed = false;
      for (const m of store.room(id)?.members || []) changed = learn(m.id, m.username) || changed;
      if (changed) onNamesChanged();
      if (completion) refresh();
    }
  });
  tapFrames((f) => {
    if (f.type === 'user_updated' && f.user && learn(f.user.id, f.user.username)) onNamesChanged();
    if ((f.type === 'message' || f.type === 'action') && Array.isArray(f.mentions)) {
      for (const m of f.mentions) if (m) learn(m.id, m.username);
    }
  });
}

// ---------------------------------------------------------------- wire form

/** Splits a text into runs that are code (``` blocks, `spans`) and runs that are not,
 *  as the formatter reads them closely enough for mentions: [{code, s}]. */
function segments(text) {
  const out = [];
  const re = /```[\s\S]*?```|`[^`\n]+`/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push({ code: false, s: text.slice(last, m.index) });
    out.push({ code: true, s: m[0] });
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push({ code: false, s: text.slice(last) });
  return out;
}

/** Members of a room by lower-case username (me included: a self-mention is allowed). */
function memberIndex(roomId) {
  const idx = new Map();
  const r = store.room(roomId);
  for (const m of r?.members || []) idx.set(m.username.toLowerCase(), m);
  const me = store.state.me;
  if (me) idx.set(me.username.toLowerCase(), me);
  return idx;
}

/**
 * The text as sent: each `@username` of a member of the room (the longest name that
 * fits, case-insensitive, not inside code) becomes `<@ID>`. `extra`: more
 * [{id, username}] to recognise (the people an edited message already mentions).
 */
export function toWire(text, roomId, extra = []) {
  const idx = memberIndex(roomId);
  for (const m of extra) if (m && m.username) idx.set(m.username.toLowerCase(), m);
  if (!idx.size || !text.includes('@')) return text;
  return segments(text)
    .map(({ code, s }) => {
      if (code) return s;
      let out = '';
      let i = 0;
      while (i < s.length) {
        const at = s.indexOf('@', i);
        if (at < 0) break;
        out += s.slice(i, at);
        i = at + 1;
        const prev = at > 0 ? s[at - 1] : '';
        if (prev && (NAME_CHAR.test(prev) || prev === '@' || prev === '<')) {
          out += '@';
          continue;
        }
        let end = i;
        while (end < s.length && end - i < 32 && NAME_CHAR.test(s[end])) end++;
        // The longest member name that the typed run starts with and that ends where a
        // name may end ("@bob." at the end of a sentence is bob).
        let found = null;
        for (let k = end; k > i; k--) {
          const m = idx.get(s.slice(i, k).toLowerCase());
          const next = s[k] || '';
          const after = s[k + 1] || '';
          if (m && !/[A-Za-z0-9_-]/.test(next) && !(next === '.' && /[A-Za-z0-9_-]/.test(after))) {
            found = { m, k };
            break;
          }
        }
        if (found) {
          out += `<@${found.m.id}>`;
          i = found.k;
        } else out += '@';
      }
      return out + s.slice(i);
    })
    .join('');
}

/** A message text for the composer: `<@ID>` of the people it mentions back to
 *  `@username` (not inside code). */
export function fromWire(text, mentions = []) {
  const byId = new Map((mentions || []).filter(Boolean).map((m) => [m.id, nameOf(m.id, m.username)]));
  return segments(text)
    .map(({ code, s }) => (code ? s : s.replace(TOKEN_RE, (t, id) => (byId.has(Number(id)) ? `@${byId.get(Number(id))}` : t))))
    .join('');
}

/** Plain text with `<@ID>` shown as "@username" where known (reply excerpts). */
export function plainMentions(text, mentions = []) {
  const byId = new Map((mentions || []).filter(Boolean).map((m) => [m.id, m.username]));
  return String(text).replace(TOKEN_RE, (t, id) => {
    const n = nameOf(Number(id), byId.get(Number(id)) || null);
    return n ? `@${n}` : t;
  });
}

/** A message as one line for announcements and notifications: its text with mentions
 *  as "@name", or what it carries when it is only files. */
export function messageLine(item) {
  const text = plainMentions(item.text || '', item.mentions);
  if (text.trim()) return text;
  const n = (item.attachments || []).length;
  return n === 0 ? '' : n === 1 ? 'sent a file' : `sent ${n} files`;
}

/**
 * Replaces `<@ID>` tokens in the rendered text `el` with chips, for the ids in
 * `mentions` ([{id, username}]; for a message not yet sent, any member). Code, code
 * blocks and links are left alone.
 */
export function chipify(el, mentions, roomId = null) {
  if (!el || !el.textContent.includes('<@')) return;
  const known = new Map((mentions || []).filter(Boolean).map((m) => [m.id, m.username]));
  if (roomId != null) for (const m of memberIndex(roomId).values()) if (!known.has(m.id)) known.set(m.id, m.username);
  const me = store.state.me;
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (n.parentElement.closest('code, pre, a') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const nodes = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) if (n.data.includes('<@')) nodes.push(n);
  for (const node of nodes) {
    const s = node.data;
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of s.matchAll(TOKEN_RE)) {
      const id = Number(m[1]);
      if (!known.has(id)) continue;
      if (m.index > last) frag.append(document.createTextNode(s.slice(last, m.index)));
      const username = nameOf(id, known.get(id));
      frag.append(
        h('span', {
          class: me && me.id === id ? 'mention-chip me' : 'mention-chip',
          'data-user-id': id,
          title: `@${username}`,
          text: `@${username}`,
        }),
      );
      last = m.index + m[0].length;
    }
    if (!last) continue;
    if (last < s.length) frag.append(document.createTextNode(s.slice(last)));
    node.replaceWith(frag);
  }
}

// ---------------------------------------------------------------- autocomplete

function onComposerInput() {
  const pos = composer.selectionStart;
  if (pos !== composer.selectionEnd) return close();
  const before = composer.value.slice(Math.max(0, pos - 40), pos);
  const m = TYPING_RE.exec(before);
  if (!m) return close();
  completion = { from: pos - m[2].length - 1, to: pos, items: [], index: completion ? completion.index : 0 };
  lastQuery = m[2];
  refresh();
}

/** Fills the list from the open room's members (loading them if needed). */
function refresh() {
  if (!completion) return;
  const id = store.state.currentRoomId;
  const r = store.room(id);
  if (!r) return close();
  if (!r.members) {
    // members.js loads them for the panel (once at a time); the list fills in when
    // they arrive (the members:<id> topic).
    loadMembers(id);
    return;
  }
  const q = (lastQuery || '').toLowerCase();
  const me = store.state.me;
  const items = r.members
    .filter((m) => !me || m.id !== me.id)
    .filter((m) => {
      if (!q) return true;
      if (m.username.toLowerCase().startsWith(q)) return true;
      return fullName(m)
        .toLowerCase()
        .split(/\s+/)
        .some((w) => w.startsWith(q));
    })
    .sort((a, b) => Number(!a.username.toLowerCase().startsWith(q)) - Number(!b.username.toLowerCase().startsWith(q)) || a.username.localeCompare(b.username))
    .slice(0, MAX_SUGGESTIONS);
  if (!items.length) return close();
  completion.items = items;
  completion.index = Math.min(completion.index, items.length - 1);
  render();
}

function render() {
  const list = $('mention-suggest');
  if (!completion) {
    list.hidden = true;
    list.replaceChildren();
    if (composer.getAttribute('aria-controls') === 'mention-suggest') {
      composer.removeAttribute('aria-activedescendant');
      composer.removeAttribute('aria-controls');
      composer.removeAttribute('aria-autocomplete');
    }
    return;
  }
  list.replaceChildren(
    ...completion.items.map((m, i) =>
      h(
        'li',
        {
          id: `mention-opt-${i}`,
          role: 'option',
          class: i === completion.index ? 'active' : null,
          'aria-selected': String(i === completion.index),
          'data-index': i,
          'data-username': m.username,
        },
        h('span', { class: 'mention-name', text: fullName(m) }),
        h('span', { class: 'mention-handle', text: `@${m.username}` }),
      ),
    ),
  );
  list.hidden = false;
  composer.setAttribute('aria-autocomplete', 'list');
  composer.setAttribute('aria-controls', 'mention-suggest');
  composer.setAttribute('aria-activedescendant', `mention-opt-${completion.index}`);
}

function close() {
  if (!completion && $('mention-suggest')?.hidden !== false) return;
  completion = null;
  render();
}

function accept(i) {
  const c = completion;
  if (!c) return;
  const m = c.items[i];
  close();
  if (m) insert(`@${m.username} `, c.from, c.to);
}

/** The composer's key hook: the list's keys while it is open. */
function onComposerKey(e) {
  if (!completion || !completion.items.length || e.isComposing) return false;
  return completionKey(e, completion, { render, accept, close });
}

// ---------------------------------------------------------------- sidebar

/**
 * Adds the mention badge to a sidebar item and quiets a muted room: called by
 * sidebar.js after it drew the item, with the parts of its accessible name (changed
 * in place: a hidden unread count leaves it, the mentions join it).
 */
export function decorateConv(li, r, parts) {
  const btn = li.firstChild;
  const info = r.info;
  const muted = info.notify === 'muted';
  const n = info.mentions || 0;
  const current = store.state.currentRoomId === info.id && store.state.reading;
  const shown = current ? 0 : n;
  li.classList.toggle('muted', muted);
  li.classList.toggle('notify-mentions', info.notify === 'mentions');
  li.classList.toggle('has-mention', shown > 0);
  if (muted) {
    const unread = btn.querySelector('.unread');
    if (unread && !unread.hidden) {
      const i = parts.indexOf(`${unread.textContent} unread`);
      if (i >= 0) parts.splice(i, 1);
      unread.hidden = true;
    }
    li.classList.remove('has-unread');
  }
  let badge = btn.querySelector('.mention-badge');
  if (!badge) {
    badge = h('span', { class: 'mention-badge', hidden: true });
    btn.append(badge);
  }
  badge.textContent = shown ? `@${shown > 99 ? '99+' : shown}` : '';
  badge.hidden = !shown;
  if (shown) parts.splice(1, 0, `${badge.textContent} ${shown === 1 ? 'mention' : 'mentions'}`);
  if (muted) parts.push('muted');
}
