// conversation.js: the open conversation. Renders the header (title, topic,
// connection state, room buttons), the message list (messages, notices, day
// separators, pending/failed sends), the typing line and the composer.
//
// Scrolling: the list stays pinned to the bottom while the reader is there; when they
// have scrolled up, new messages show the "new messages" pill instead, and the view
// keeps the message they were reading in place (also while older history is
// prepended). Reaching the top loads older history. While the list is visible and at
// the bottom, the read marker is moved to the newest message.

import { $, h, richText, syncList } from './dom.js';
import * as store from './store.js';
import {
  charCount,
  dayKey,
  dayLabel,
  fullDate,
  fullName,
  isoDate,
  mentionRegex,
  timeHM,
  uuid,
} from './format.js';

/** Distance from the bottom (px) that still counts as "at the bottom". */
const PIN_SLACK = 48;
/** Distance from the top (px) at which older history is requested. */
const LOAD_OLDER_AT = 240;

let sync = null;
let actions = null;
/** Room whose messages are in #messages (null: none), and for which user. */
let renderedRoom = null;
let renderedUser = null;
/** Key of the newest message rendered, to tell "something new arrived". */
let newestKey = null;
/** Scroll to the bottom on the next render (after the user sends). */
let forceBottom = false;
/** Was the list at the bottom after the last scroll or render? */
let pinned = true;
/** Unsent text per "<user id>:<room id>" (a second account in the same tab must not
 *  see the first one's drafts). */
const drafts = new Map();
const draftKey = (roomId) => `${store.state.me ? store.state.me.id : 0}:${roomId}`;
let typingTimer = 0;
let connTimer = 0;
let lastConnStatus = '';
let mentionRe = null;
let mentionFor = '';

/**
 * @param {Sync} s the socket
 * @param {object} a  leaveRoom(), openRoomSettings(), toggleMembers()
 */
export function initConversation(s, a) {
  sync = s;
  actions = a;
  store.subscribe(render);

  const list = $('messages');
  list.addEventListener('scroll', onScroll, { passive: true });
  list.addEventListener('click', onListClick);
  new ResizeObserver(() => {
    if (pinned) scrollToBottom();
  }).observe(list);

  $('new-messages-pill').addEventListener('click', () => {
    scrollToBottom();
    hidePill();
    updateReading();
    $('composer').focus();
  });
  $('reconnect-now').addEventListener('click', () => sync.retryNow());
  $('leave-btn').addEventListener('click', () => actions.leaveRoom());
  $('room-settings-btn').addEventListener('click', () => actions.openRoomSettings());
  $('members-btn').addEventListener('click', () => actions.toggleMembers());

  initComposer();
  document.addEventListener('visibilitychange', () => updateReading());
  window.addEventListener('focus', () => updateReading());
}

/** Says something to screen readers through the polite live region. */
export function announce(text) {
  const el = $('announcer');
  el.textContent = '';
  // A fresh text node in a new task is announced even when the text repeats.
  setTimeout(() => (el.textContent = text), 30);
}

// ---------------------------------------------------------------- render

function render(d) {
  const id = store.state.currentRoomId;
  const all = d.has('all');
  const me = store.state.me;
  if (me && me.username !== mentionFor) {
    mentionFor = me.username;
    mentionRe = mentionRegex(me.username, true);
  }
  if (id !== renderedRoom || (me ? me.id : null) !== renderedUser) {
    switchRoom(id);
  } else {
    if (all || d.has('rooms') || d.has('current') || d.has('me') || d.has(`members:${id}`)) renderHeader();
    if (all || d.has(`room:${id}`) || d.has('conn') || d.has('me')) renderMessages();
    if (all || d.has(`typing:${id}`)) renderTyping();
  }
  if (all || d.has('conn')) renderConn();
  if (all || d.has('conn') || d.has('current') || d.has('rooms')) renderComposerState();
}

function switchRoom(id) {
  const ta = $('composer');
  if (renderedRoom != null && renderedUser === (store.state.me && store.state.me.id)) {
    if (ta.value) drafts.set(draftKey(renderedRoom), ta.value);
    else drafts.delete(draftKey(renderedRoom));
  }
  renderedUser = store.state.me ? store.state.me.id : null;
  renderedRoom = id;
  newestKey = null;
  pinned = true;
  $('messages').replaceChildren();
  hidePill();
  ta.value = drafts.get(draftKey(id)) || '';
  autosize();
  renderHeader();
  renderMessages({ bottom: true });
  renderTyping();
  renderComposerState();
  if (id != null) sync.ensureLoaded(id);
}

function renderHeader() {
  const r = store.currentRoom();
  const me = store.state.me;
  const empty = !r;
  $('empty-state').hidden = !empty;
  $('messages').hidden = empty;
  $('room-settings-btn').hidden = empty || r.info.kind === 'dm' || !me || r.info.owner !== me.id;
  $('leave-btn').hidden = empty || r.info.kind === 'dm';
  $('members-btn').hidden = empty;
  if (empty) {
    $('room-prefix').textContent = '';
    $('room-title').textContent = 'RT Messenger';
    $('room-topic').textContent = '';
    return;
  }
  const info = r.info;
  const dm = info.kind === 'dm';
  $('room-prefix').textContent = dm ? '@' : info.private ? '🔒 ' : '#';
  $('room-title').textContent = info.name;
  let sub = info.topic || '';
  if (dm) {
    const peer = r.members && info.peer && r.members.find((m) => m.id === info.peer.id);
    const online = info.peer ? store.isOnline(r, info.peer.id) : false;
    sub = `${peer ? fullName(peer) + ' · ' : ''}${online ? 'online' : 'offline'}`;
  }
  $('room-topic').textContent = sub;
  $('room-topic').title = sub;
}

/** Builds the list of things to show: a header line, day separators, events, pending sends. */
function buildItems(r) {
  const items = [{ key: 'top', type: 'top' }];
  const used = new Set();
  let lastDay = null;
  const push = (item, ts) => {
    const dk = dayKey(ts);
    if (dk !== lastDay) {
      let key = `day:${dk}`;
      while (used.has(key)) key += '+';
      used.add(key);
      items.push({ key, type: 'day', ts });
      lastDay = dk;
    }
    items.push(item);
  };
  for (const ev of r.events) push({ key: ev.key, type: 'event', src: ev }, ev.ts);
  for (const p of store.pendingFor(r.info.id)) push({ key: p.key, type: 'pending', src: p }, p.ts);
  return items;
}

function renderMessages(opts = {}) {
  const list = $('messages');
  const r = store.currentRoom();
  if (!r) {
    list.replaceChildren();
    return;
  }
  const wasPinned = !!opts.bottom || isPinned();
  const anchor = wasPinned ? null : captureAnchor(list);
  const items = buildItems(r);
  syncList(list, items, (it) => it.key, createNode, updateNode);

  let newest = null;
  for (let i = items.length - 1; i >= 0; i--) {
    if (items[i].type === 'event' || items[i].type === 'pending') {
      newest = items[i];
      break;
    }
  }
  const newKey = newest ? newest.key : null;
  if (forceBottom || wasPinned) {
    scrollToBottom();
    forceBottom = false;
  } else {
    restoreAnchor(list, anchor);
    const arrived = newKey !== newestKey && newestKey !== null && newest && !store.isMine(newest.src.author);
    if (arrived) showPill();
  }
  newestKey = newKey;
  pinned = isPinned();
  updateReading();
  maybeFill(r);
}

// ---------------------------------------------------------------- nodes

function createNode(item) {
  switch (item.type) {
    case 'top':
      return h('div', { class: 'history-status' });
    case 'day':
      return h('div', { class: 'day-divider', role: 'separator' }, h('span'));
    default:
      return item.type === 'event' && item.src.kind !== 'text' ? h('div', { class: 'notice' }) : h('article', { class: 'msg' });
  }
}

function updateNode(el, item) {
  if (item.type === 'top') return updateTop(el);
  if (item.type === 'day') {
    const label = dayLabel(item.ts);
    if (el.firstChild.textContent !== label) el.firstChild.textContent = label;
    return;
  }
  const src = item.src;
  if (el._src === src && el._v === src.v) return; // unchanged
  el._src = src;
  el._v = src.v;
  if (item.type === 'event' && src.kind !== 'text') fillNotice(el, src);
  else fillMessage(el, src, item.type === 'pending');
}

function timeEl(ts) {
  return h('time', { class: 'time', datetime: isoDate(ts), title: fullDate(ts), text: timeHM(ts) });
}

function fillMessage(el, m, pending) {
  const mine = pending || store.isMine(m.author);
  const failed = pending && m.status === 'failed';
  const mention = !mine && mentionRe && new RegExp(mentionRe.source, 'i').test(m.text);
  el.className = 'msg';
  el.classList.toggle('own', mine);
  el.classList.toggle('pending', pending && !failed);
  el.classList.toggle('failed', failed);
  el.classList.toggle('mention', !!mention);
  if (m.seq != null) el.dataset.seq = String(m.seq);
  else delete el.dataset.seq;
  if (m.client_id) el.dataset.clientId = m.client_id;
  else delete el.dataset.clientId;
  const author = pending ? store.state.me : m.author;
  el.dataset.authorId = String(author ? author.id : '');

  const meta = h('div', { class: 'meta' }, h('span', { class: 'author', text: author ? author.username : '' }), ' ', timeEl(m.ts));
  if (pending) {
    const status = failed ? `Not sent: ${m.error || 'error'}` : 'sending…';
    meta.append(' ', h('span', { class: 'status', text: status }));
  }
  const text = h('div', { class: 'text' });
  text.append(richText(m.text, mentionRe));
  const children = [meta, text];
  if (failed) {
    children.push(
      h(
        'div',
        { class: 'msg-actions' },
        h('button', { type: 'button', class: 'retry-btn small-btn', 'data-client-id': m.client_id, text: 'Retry' }),
        h('button', { type: 'button', class: 'discard-btn small-btn', 'data-client-id': m.client_id, text: 'Discard' }),
      ),
    );
  }
  el.replaceChildren(...children);
}

function noticeText(ev) {
  const who = ev.author ? ev.author.username : 'someone';
  switch (ev.kind) {
    case 'joined':
      return `${who} joined`;
    case 'left':
      return `${who} left`;
    case 'welcome': {
      const r = store.room(ev.room);
      return ev.text || `Welcome to ${r ? r.info.name : 'the room'}!`;
    }
    default:
      return ev.text || ev.kind;
  }
}

function fillNotice(el, ev) {
  el.className = `notice notice-${ev.kind}`;
  if (ev.seq != null) el.dataset.seq = String(ev.seq);
  else delete el.dataset.seq;
  el.replaceChildren(h('span', { class: 'text', text: noticeText(ev) }), ' ', timeEl(ev.ts));
}

function updateTop(el) {
  const r = store.currentRoom();
  if (!r) return;
  const info = r.info;
  let key;
  if (store.isEphemeral(r)) key = 'ephemeral';
  else if (r.loadingHistory) key = 'loading';
  else if (!r.loaded) key = sync.live ? 'loading' : 'offline';
  else if (r.hasMore) key = 'more';
  else key = 'start';
  const stamp = `${key}|${info.name}`;
  if (el._state === stamp) return;
  el._state = stamp;
  el.dataset.state = key;
  const name = info.kind === 'dm' ? `your conversation with @${info.name}` : `#${info.name}`;
  switch (key) {
    case 'ephemeral':
      el.replaceChildren(
        h('p', { text: `#${info.name} is ephemeral: nothing is kept, so you see only what is said while you are connected.` }),
      );
      break;
    case 'loading':
      el.replaceChildren(h('p', { class: 'loading', text: 'Loading messages…' }));
      break;
    case 'offline':
      el.replaceChildren(h('p', { text: 'Messages will load when the connection is back.' }));
      break;
    case 'more':
      el.replaceChildren(h('button', { type: 'button', id: 'load-older', class: 'small-btn', text: 'Load older messages' }));
      break;
    default:
      el.replaceChildren(h('p', { text: `This is the beginning of ${name}.` }));
  }
}

// ---------------------------------------------------------------- scrolling

function isPinned() {
  const list = $('messages');
  return list.scrollHeight - list.scrollTop - list.clientHeight <= PIN_SLACK;
}

function scrollToBottom() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
  pinned = true;
}

/** The first message or notice at least partly visible, and its offset from the top
 *  edge. (Not the history line or a day separator: those stay at the top while older
 *  messages are inserted below them, so anchoring on them would jump.) */
function captureAnchor(list) {
  const top = list.scrollTop;
  for (const el of list.children) {
    if (!el.classList.contains('msg') && !el.classList.contains('notice')) continue;
    if (el.offsetTop + el.offsetHeight > top) return { el, delta: el.offsetTop - top };
  }
  return null;
}

function restoreAnchor(list, a) {
  if (a && a.el.isConnected) list.scrollTop = a.el.offsetTop - a.delta;
}

function showPill() {
  $('new-messages-pill').hidden = false;
}

function hidePill() {
  $('new-messages-pill').hidden = true;
}

function onScroll() {
  pinned = isPinned();
  if (pinned) hidePill();
  const list = $('messages');
  if (list.scrollTop < LOAD_OLDER_AT) {
    const r = store.currentRoom();
    if (r && r.loaded && r.hasMore && !r.loadingHistory) sync.loadHistory(r.info.id);
  }
  updateReading();
}

/** Loads older pages until the list can scroll (or there is nothing more). */
function maybeFill(r) {
  const list = $('messages');
  if (list.hidden || !r.loaded || !r.hasMore || r.loadingHistory) return;
  if (list.scrollHeight <= list.clientHeight + LOAD_OLDER_AT) sync.loadHistory(r.info.id);
}

/** Moves the read marker when the reader can see the newest message. */
function updateReading() {
  const r = store.currentRoom();
  const list = $('messages');
  const reading = !!r && !list.hidden && document.visibilityState === 'visible' && isPinned();
  store.setReading(reading);
  if (!reading) return;
  hidePill();
  if (r.maxSeq > 0) sync.read(r.info.id, r.maxSeq);
  if (r.info.unread) store.clearUnread(r.info.id);
}

function onListClick(e) {
  const btn = e.target.closest('button');
  if (!btn) return;
  if (btn.id === 'load-older') {
    const r = store.currentRoom();
    if (r) sync.loadHistory(r.info.id);
  } else if (btn.classList.contains('retry-btn')) {
    sync.retry(btn.dataset.clientId);
  } else if (btn.classList.contains('discard-btn')) {
    store.discardPending(btn.dataset.clientId);
    $('composer').focus();
  }
}

// ---------------------------------------------------------------- typing

function renderTyping() {
  const el = $('typing');
  const r = store.currentRoom();
  clearTimeout(typingTimer);
  if (!r) {
    el.textContent = '';
    return;
  }
  const next = store.expireTyping(r.info.id);
  const names = [...r.typing.values()].map((t) => t.username);
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = 'Several people are typing…';
  if (el.textContent !== text) el.textContent = text;
  if (next) typingTimer = setTimeout(renderTyping, Math.max(50, next - Date.now() + 20));
}

// ---------------------------------------------------------------- connection

function renderConn() {
  const c = store.state.conn;
  const el = $('conn-state');
  clearTimeout(connTimer);
  let text;
  switch (c.status) {
    case 'live':
      text = 'live';
      break;
    case 'connecting':
      text = 'connecting…';
      break;
    case 'reconnecting': {
      const left = c.retryAt - Date.now();
      text = `reconnecting in ${Math.max(0, Math.ceil(left / 1000))} s`;
      // Redraw when the shown number of seconds changes.
      if (left > 0) connTimer = setTimeout(renderConn, (left % 1000 || 1000) + 10);
      break;
    }
    default:
      text = 'offline';
  }
  el.dataset.state = c.status;
  el.textContent = text;
  el.title = c.reason ? `Last disconnect: ${c.reason}` : '';
  $('reconnect-now').hidden = c.status !== 'reconnecting';
  if (c.status !== lastConnStatus) {
    if (c.status === 'reconnecting' && lastConnStatus === 'live') announce('Connection lost. Reconnecting.');
    if (c.status === 'live' && lastConnStatus === 'reconnecting') announce('Connected again.');
    lastConnStatus = c.status;
  }
}

// ---------------------------------------------------------------- composer

function initComposer() {
  const ta = $('composer');
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });
  ta.addEventListener('input', () => {
    autosize();
    renderComposerState();
    const id = store.state.currentRoomId;
    if (id != null && ta.value.trim()) sync.typing(id);
  });
  $('composer-form').addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
}

function submit() {
  const ta = $('composer');
  const r = store.currentRoom();
  if (!r) return;
  // Drop blank lines at the start and whitespace at the end; keep inner layout.
  const text = ta.value.replace(/^(?:[ \t]*\r?\n)+/, '').trimEnd();
  if (!text.trim()) return;
  if (charCount(text) > store.maxChars()) {
    renderComposerState();
    return;
  }
  forceBottom = true;
  sync.sendMessage(r.info.id, uuid(), text);
  ta.value = '';
  drafts.delete(draftKey(r.info.id));
  autosize();
  renderComposerState();
  ta.focus();
}

function autosize() {
  const ta = $('composer');
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight + 2, 200)}px`;
}

function renderComposerState() {
  const ta = $('composer');
  const r = store.currentRoom();
  const status = $('composer-status');
  ta.disabled = !r;
  if (!r) {
    $('send-btn').disabled = true;
    status.textContent = '';
    ta.placeholder = 'Pick a conversation';
    return;
  }
  ta.placeholder = r.info.kind === 'dm' ? `Message @${r.info.name}` : `Message #${r.info.name}`;
  const max = store.maxChars();
  const n = charCount(ta.value);
  const over = n > max;
  $('send-btn').disabled = over;
  if (over) ta.setAttribute('aria-invalid', 'true');
  else ta.removeAttribute('aria-invalid');
  let text = '';
  if (over) text = `Too long: ${n.toLocaleString()} of ${max.toLocaleString()} characters. Shorten it to send.`;
  else if (n > max * 0.9) text = `${n.toLocaleString()} / ${max.toLocaleString()} characters`;
  const c = store.state.conn.status;
  if (c !== 'live') {
    const offline =
      c === 'connecting'
        ? 'Connecting… messages you send are queued until then.'
        : 'Offline: messages you send are queued and go out when the connection is back.';
    text = text ? `${text} ${offline}` : offline;
  }
  status.textContent = text;
  status.classList.toggle('warn', over || c !== 'live');
}
