// conversation.js: the open conversation. Renders the header (title, topic,
// connection state, room buttons), the message list (messages grouped by author with
// avatars, notices, day separators, the "new messages" divider, pending/failed sends),
// the typing line and the composer.
//
// Scrolling: the list stays pinned to the bottom while the reader is there; when they
// have scrolled up, new messages show the "new messages" pill instead, and the view
// keeps the message they were reading in place (also while older history is
// prepended). Reaching the top loads older history.
//
// Reading: opening a room with unread messages puts a "New messages" divider before
// the first unread one and scrolls there (older pages are fetched first if needed).
// The read marker then moves only as far as the person has seen: to the newest message
// whose end has been inside the list's viewport (an IntersectionObserver tracks which
// messages are on screen) while the tab is visible and focused.
//
// Hooks for features built on top (message actions: reply bar, edit mode, reactions):
// addComposerKeyHandler, setComposerMode/cancelComposerMode, insertIntoComposer,
// addMessageDecorator, redrawMessages, lastOwnMessage. See each one's comment.

import { $, h, syncList } from './dom.js';
import * as store from './store.js';
import { get } from './api.js';
import { initEmoji } from './emoji.js';
import { toWire } from './mentions.js';
import { attachmentsBlock, initFiles, readyAttachments, takeAttachments, uploadsBusy } from './files.js';
import { canModerate, moderationText, renderClosedComposer } from './moderation.js';
import {
  avatarColour,
  charCount,
  dayKey,
  dayLabel,
  fullDate,
  fullName,
  initials,
  isoDate,
  mentionRegex,
  renderMessage,
  timeHM,
  uuid,
} from './format.js';

/** Distance from the bottom (px) that still counts as "at the bottom". */
const PIN_SLACK = 48;
/** Distance from the top (px) at which older history is requested. */
const LOAD_OLDER_AT = 240;
/** Messages by the same author this close together (ms) share one header. */
const GROUP_MS = 5 * 60 * 1000;
/** Pages of older history fetched at most to reach the first unread message. */
const LANDING_PAGES = 10;
/** Messages rendered when a room opens, however many are loaded (the rest are
 *  rendered as the reader scrolls up), and what scrolling up adds each time. Back at
 *  the bottom, a list longer than twice WINDOW is cut back to WINDOW. */
const WINDOW = 60;
const REVEAL = 60;

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
/** Drafts survive a reload of the tab: kept in sessionStorage (not localStorage, so
 *  they do not outlive the tab on a shared computer). */
const DRAFTS_KEY = 'rtm.drafts';
let draftsTimer = 0;
let typingTimer = 0;
let connTimer = 0;
let lastConnStatus = '';
let mentionRe = null;
let mentionFor = '';

/** The read marker when the open room was opened: what counts as new in it. */
let openedMarker = 0;
/** Seq of the event the "New messages" divider stands before (null: no divider). */
let dividerSeq = null;
/** From opening a room with unread messages until its divider is placed: the view is
 *  not settled yet, so nothing on screen counts as seen. */
let landing = false;
/** Older pages fetched while landing. */
let landingPages = 0;
/** Scroll to the divider on the next render. */
let scrollToDivider = false;
/** Watches which message elements intersect the list's viewport. */
let observer = null;
/** Elements the observer last reported as intersecting. */
const onScreen = new Set();
/** Loaded events older than this seq are not rendered (null: all are). */
let shownFrom = null;
/** The window has been placed since the room was opened. */
let windowSet = false;
/** Loaded events left out above the rendered ones, and those rendered (last render). */
let hiddenCount = 0;
let shownCount = 0;
/** Bumped when members (names) change, so message headers are redrawn. */
let namesVersion = 0;
/** user id -> member of the open room (for full names), rebuilt with namesVersion. */
let memberById = new Map();
let memberMapFor = null;
/** Extension hooks (see the exported functions at the end). */
const keyHandlers = [];
const decorators = [];
let composerMode = null;
let readingFrame = 0;

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
  window.addEventListener('blur', () => updateReading());
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
    if (d.has(`members:${id}`) || d.has('me')) namesVersion++;
    if (all || d.has(`room:${id}`) || d.has('conn') || d.has('me') || d.has(`members:${id}`)) renderMessages();
    if (all || d.has(`typing:${id}`)) renderTyping();
  }
  if (all || d.has('conn')) renderConn();
  // (members: my own mute in this room comes with the member list; moderation.js)
  if (all || d.has('conn') || d.has('current') || d.has('rooms') || d.has(`members:${id}`)) renderComposerState();
}

function switchRoom(id) {
  const ta = $('composer');
  // A mode (editing) gives the composer its own text back first.
  cancelComposerMode();
  if (renderedRoom != null && renderedUser === (store.state.me && store.state.me.id)) rememberDraft();
  renderedUser = store.state.me ? store.state.me.id : null;
  renderedRoom = id;
  newestKey = null;
  pinned = true;
  shownFrom = null;
  windowSet = false;
  $('messages').replaceChildren();
  startReading(store.room(id));
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
  // The owner, moderators and the admin (moderation.js, issue 15).
  $('room-settings-btn').hidden = empty || r.info.kind === 'dm' || !me || !canModerate(r);
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

/**
 * Builds the list of things to show: a header line, day separators, the unread
 * divider, events and pending sends. A message continues the group of the one before
 * it (`cont`: no header of its own) when both are text by the same author, on the same
 * day, at most GROUP_MS apart, with no divider between them.
 */
function buildItems(r) {
  const items = [{ key: 'top', type: 'top' }];
  const used = new Set();
  let lastDay = null;
  let prev = null; // the previous message: { author id, ts }, null after anything else
  const me = store.state.me;
  const push = (item, ts, authorId) => {
    const dk = dayKey(ts);
    if (dk !== lastDay) {
      let key = `day:${dk}`;
      while (used.has(key)) key += '+';
      used.add(key);
      items.push({ key, type: 'day', ts });
      lastDay = dk;
      prev = null;
    }
    if (item.type === 'event' && item.src.seq != null && item.src.seq === dividerSeq) {
      items.push({ key: 'unread', type: 'unread' });
      prev = null;
    }
    const text = item.type === 'pending' || item.src.kind === 'text';
    item.cont = !!(text && prev && prev.author === authorId && ts - prev.ts <= GROUP_MS && ts >= prev.ts);
    prev = text ? { author: authorId, ts } : null;
    items.push(item);
  };
  hiddenCount = 0;
  shownCount = 0;
  for (const ev of r.events) {
    if (shownFrom != null && ev.seq != null && ev.seq < shownFrom) {
      hiddenCount++;
      continue;
    }
    shownCount++;
    push({ key: ev.key, type: 'event', src: ev }, ev.ts, ev.author ? ev.author.id : 0);
  }
  for (const p of store.pendingFor(r.info.id)) push({ key: p.key, type: 'pending', src: p }, p.ts, me ? me.id : 0);
  return items;
}

function renderMessages(opts = {}) {
  const list = $('messages');
  const r = store.currentRoom();
  if (!r) {
    list.replaceChildren();
    return;
  }
  if (landing) settleLanding(r);
  else if (dividerSeq == null && !(attentive() && isPinned())) dividerSeq = firstUnread(r, currentMarker(r));
  const wasPinned = !scrollToDivider && (!!opts.bottom || isPinned());
  if (!landing && r.loaded && !windowSet) {
    // Just opened: render the newest WINDOW (and the divider with a little context).
    windowSet = true;
    shownFrom = windowFrom(r, r.events.length - WINDOW);
  } else if (!landing && wasPinned && shownCount > 2 * WINDOW) {
    // Back at the bottom after reading far up: drop what is far off-screen.
    shownFrom = windowFrom(r, r.events.length - WINDOW);
  }
  const anchor = wasPinned || scrollToDivider ? null : captureAnchor(list);
  const items = buildItems(r);
  syncList(list, items, (it) => it.key, createNode, updateNode);
  sweepObserved();

  let newest = null;
  for (let i = items.length - 1; i >= 0; i--) {
    if (items[i].type === 'event' || items[i].type === 'pending') {
      newest = items[i];
      break;
    }
  }
  const newKey = newest ? newest.key : null;
  if (scrollToDivider && !forceBottom) {
    scrollToDivider = false;
    const div = list.querySelector('.unread-divider');
    // The divider near the top, with a line of what came before it for context.
    if (div) list.scrollTop = Math.max(0, div.offsetTop - Math.min(48, list.clientHeight / 6));
  } else if (forceBottom || wasPinned) {
    scrollToDivider = false;
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
    case 'unread':
      return h('div', { class: 'unread-divider', role: 'separator', 'aria-label': 'New messages' }, h('span', { text: 'New messages' }));
    default: {
      const el =
        item.type === 'event' && item.src.kind !== 'text' ? h('div', { class: 'notice' }) : h('article', { class: 'msg' });
      if (observer) observer.observe(el);
      return el;
    }
  }
}

function updateNode(el, item) {
  if (item.type === 'top') return updateTop(el);
  if (item.type === 'unread') return;
  if (item.type === 'day') {
    const label = dayLabel(item.ts);
    if (el.firstChild.textContent !== label) el.firstChild.textContent = label;
    return;
  }
  const src = item.src;
  if (el._src === src && el._v === src.v && el._cont === item.cont && el._names === namesVersion) return; // unchanged
  el._src = src;
  el._v = src.v;
  el._cont = item.cont;
  el._names = namesVersion;
  if (item.type === 'event' && src.kind !== 'text') fillNotice(el, src);
  else fillMessage(el, src, item.type === 'pending', item.cont);
}

/** The author as this room knows them now: full name and current username from the
 *  member list when loaded (the event only carries id and username). */
function person(author) {
  const me = store.state.me;
  if (me && author && author.id === me.id) return me;
  const r = store.currentRoom();
  if (r && memberMapFor !== r.members) {
    memberMapFor = r.members;
    memberById = new Map((r.members || []).map((m) => [m.id, m]));
  }
  const known = author && (memberById.get(author.id) || store.knownPerson(author.id));
  // Someone not in the loaded member list left or was removed before this page saw
  // them: the directory has their full name.
  if (author && !known && r && r.members && !r.membersStale) lookUpLater(author);
  return known || author || { id: 0, username: '' };
}

/** Authors already asked of the directory (once per session on this page: a
 *  disabled account is not listed, and asking again would not change that). */
const askedAbout = new Set();
/** id -> username, waiting for the next lookup round. */
const toLookUp = new Map();
let lookupTimer = null;
/** The session (store.sessionNumber) the two above belong to: signing out forgets
 *  the people the directory told about, so whoever signs in next in this tab asks
 *  again. */
let askedFor = 0;
/** At most this many directory requests a round; the rest wait for the next one. */
const LOOKUPS_PER_ROUND = 8;

function lookUpLater(author) {
  if (askedFor !== store.sessionNumber()) {
    askedAbout.clear();
    toLookUp.clear();
    askedFor = store.sessionNumber();
  }
  if (!author.id || !author.username || askedAbout.has(author.id)) return;
  askedAbout.add(author.id);
  toLookUp.set(author.id, author.username);
  if (!lookupTimer) lookupTimer = setTimeout(lookUpRound, 100);
}

async function lookUpRound() {
  const round = [...toLookUp].slice(0, LOOKUPS_PER_ROUND);
  for (const [id] of round) toLookUp.delete(id);
  const askedBy = askedFor;
  const found = await Promise.all(
    round.map(async ([id, username]) => {
      try {
        const res = await get(`/api/users?q=${encodeURIComponent(username)}`);
        const user = (res.users || []).find((u) => u.id === id);
        // An answer that comes after a sign-out belongs to nobody on this page now.
        if (!user || store.sessionNumber() !== askedBy) return false;
        store.rememberPerson(user);
        return true;
      } catch {
        return false; // offline or refused: the username stays, as before
      }
    }),
  );
  lookupTimer = toLookUp.size ? setTimeout(lookUpRound, 1000) : null;
  if (found.some(Boolean)) redrawMessages();
}

function timeEl(ts) {
  return h('time', { class: 'time', datetime: isoDate(ts), title: fullDate(ts), text: timeHM(ts) });
}

function fillMessage(el, m, pending, cont) {
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
  const author = person(pending ? store.state.me : m.author);
  el.dataset.authorId = String(author.id || '');
  el.classList.toggle('cont', !!cont);

  // A continued message keeps its author for screen readers (visually hidden) and
  // shows its time in the avatar column on hover.
  const name = h('span', {
    class: cont ? 'author visually-hidden' : 'author',
    title: author.username ? `@${author.username}` : null,
    text: fullName(author),
  });
  const meta = h('div', { class: 'meta' }, name, ' ', timeEl(m.ts));
  const children = [];
  if (!cont) {
    children.push(h('span', { class: `avatar av-${avatarColour(author.id)}`, 'aria-hidden': 'true', text: initials(author) }));
  }
  let status = null;
  if (pending) status = h('span', { class: 'status', text: failed ? `Not sent: ${m.error || 'error'}` : 'sending…' });
  if (status && !cont) meta.append(' ', status);
  const text = h('div', { class: 'text' });
  text.append(renderMessage(m.text, mentionRe));
  children.push(meta, text);
  if (looksLong(m.text)) children.push(collapseLong(m, text));
  if (status && cont) children.push(h('div', { class: 'msg-status' }, status));
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
  for (const fn of decorators) {
    try {
      fn(el, m, { pending, cont: !!cont });
    } catch (e) {
      console.error('message decorator failed', e);
    }
  }
  // Files and images (files.js) go right under the text and what belongs to it
  // ("(edited)"), above the reactions and the toolbar; none on a deleted message.
  const files = attachmentsBlock(m);
  if (files) {
    const before = el.querySelector(':scope > .reactions, :scope > .msg-toolbar, :scope > .msg-status, :scope > .msg-actions');
    if (before) before.before(files);
    else el.append(files);
  }
}

// ---------------------------------------------------------------- long messages
//
// A long message shows its first lines with "Show more", as Zulip and Slack do, so one
// pasted log does not push the conversation off screen. Which ones were opened is kept
// for the page's life, so a redraw (an edit, a reaction, a new name) keeps them open.

/** Messages opened with "Show more", by room and seq (or client id while pending). */
const expandedMessages = new Set();

/** Whether a text may be taller than the collapsed height (the layout decides). */
function looksLong(t) {
  if (!t) return false;
  if (t.length > 900) return true;
  let lines = 0;
  for (let i = t.indexOf('\n'); i >= 0 && lines < 14; i = t.indexOf('\n', i + 1)) lines++;
  return lines >= 14;
}

/** Collapses `text` unless it was opened; returns its Show more / Show less button. */
function collapseLong(m, text) {
  const key = `${m.room}:${m.seq ?? m.client_id}`;
  const open = expandedMessages.has(key);
  text.classList.toggle('collapsed', !open);
  const btn = h('button', { type: 'button', class: 'show-more linklike', 'data-key': key });
  setShowMore(btn, open);
  if (!open) {
    // The guess said long; once laid out, a text that fits loses the button.
    requestAnimationFrame(() => {
      if (text.isConnected && text.clientHeight > 0 && text.scrollHeight <= text.clientHeight + 1) {
        text.classList.remove('collapsed');
        btn.remove();
      }
    });
  }
  return btn;
}

function setShowMore(btn, open) {
  btn.textContent = open ? 'Show less' : 'Show more';
  btn.setAttribute('aria-expanded', String(open));
}

function toggleLong(btn) {
  const text = btn.parentElement && btn.parentElement.querySelector(':scope > .text');
  if (!text) return;
  const open = !expandedMessages.has(btn.dataset.key);
  if (open) expandedMessages.add(btn.dataset.key);
  else expandedMessages.delete(btn.dataset.key);
  text.classList.toggle('collapsed', !open);
  setShowMore(btn, open);
  // Closing a message taller than the screen leaves the reader below it: bring its
  // start back into view.
  if (!open) btn.parentElement.scrollIntoView({ block: 'nearest' });
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
    case 'moderation':
      return moderationText(ev);
    default:
      return ev.text || ev.kind;
  }
}

function fillNotice(el, ev) {
  el.className = `notice notice-${ev.kind}`;
  if (ev.seq != null) el.dataset.seq = String(ev.seq);
  else delete el.dataset.seq;
  if (ev.mod && ev.mod.action) el.dataset.action = ev.mod.action;
  else delete el.dataset.action;
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
  else if (r.hasMore || hiddenCount > 0) key = 'more';
  else key = store.olderTrimmed(r) ? 'trimmed' : 'start';
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
    case 'trimmed':
      el.replaceChildren(h('p', { text: `Older messages of ${name} are no longer kept.` }));
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
  const r = store.currentRoom();
  if (r && list.scrollTop < LOAD_OLDER_AT) showOlder(r);
  else if (r && pinned && shownCount > 2 * WINDOW) renderMessages();
  updateReading();
}

/** The seq from which to render so that the event at `index` is the first shown
 *  (and the unread divider stays in, a few messages of context above it). */
function windowFrom(r, index) {
  if (dividerSeq != null) {
    const d = r.events.findIndex((ev) => ev.seq === dividerSeq);
    if (d >= 0) index = Math.min(index, d - 3);
  }
  if (index <= 0) return null;
  for (let i = index; i < r.events.length; i++) if (r.events[i].seq != null) return r.events[i].seq;
  return null;
}

/** More of the past: render loaded events left out above, else fetch a page. */
function showOlder(r) {
  if (hiddenCount > 0) {
    shownFrom = windowFrom(r, hiddenCount - REVEAL);
    renderMessages();
  } else if (r.loaded && r.hasMore && !r.loadingHistory) {
    shownFrom = null;
    sync.loadHistory(r.info.id);
  }
}

/** Loads older pages until the list can scroll (or there is nothing more). */
function maybeFill(r) {
  const list = $('messages');
  if (list.hidden || !r.loaded || r.loadingHistory || landing) return;
  if (!hiddenCount && !r.hasMore) return;
  if (list.scrollHeight <= list.clientHeight + LOAD_OLDER_AT) showOlder(r);
}

// ---------------------------------------------------------------- reading

/** Our read marker in a room: the server's, or further if this tab has moved it. */
function currentMarker(r) {
  return Math.max(r.info.read_seq || 0, r.localReadSeq || 0);
}

/** The seq of the first kept event after `marker` written by someone else, or null. */
function firstUnread(r, marker) {
  let found = null;
  for (let i = r.events.length - 1; i >= 0; i--) {
    const ev = r.events[i];
    if (ev.seq == null) continue;
    if (ev.seq <= marker) break;
    if (!store.isMine(ev.author)) found = ev.seq;
  }
  return found;
}

/** Is the person looking at this tab? (Visible and focused: a tab left open in a
 *  background window reads nothing.) */
function attentive() {
  return document.visibilityState === 'visible' && document.hasFocus();
}

/** A room was opened: note what is new in it and watch what comes on screen. */
function startReading(r) {
  if (observer) observer.disconnect();
  onScreen.clear();
  observer = new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        if (e.isIntersecting) onScreen.add(e.target);
        else onScreen.delete(e.target);
      }
      scheduleReading();
    },
    { root: $('messages'), threshold: [0, 0.5, 1] },
  );
  dividerSeq = null;
  scrollToDivider = false;
  landingPages = 0;
  openedMarker = r ? currentMarker(r) : 0;
  landing = !!r && !store.isEphemeral(r) && (r.info.unread || 0) > 0;
}

/**
 * While landing: once the first unread message is loaded (fetching older pages as
 * needed, at most LANDING_PAGES), place the divider before it and scroll there.
 */
function settleLanding(r) {
  if (!r.loaded || r.resyncing || r.loadingHistory) return;
  const first = firstUnread(r, openedMarker);
  const oldest = store.oldestSeq(r);
  const complete = !r.hasMore || (oldest != null && oldest <= openedMarker + 1);
  if (!complete && landingPages < LANDING_PAGES) {
    // What is loaded does not reach back to the marker: older unread ones may exist.
    landingPages++;
    sync.loadHistory(r.info.id);
    return;
  }
  landing = false;
  dividerSeq = first;
  scrollToDivider = first != null;
}

/** Forgets elements that left the list (history dropped after a gap). */
function sweepObserved() {
  for (const el of onScreen) {
    if (!el.isConnected) {
      onScreen.delete(el);
      if (observer) observer.unobserve(el);
    }
  }
}

/** The newest seq whose message has been read to its end: its bottom edge is inside
 *  the list's viewport. */
function newestSeen(list) {
  const view = list.getBoundingClientRect();
  let best = null;
  for (const el of onScreen) {
    const seq = el.dataset.seq;
    if (!seq || !el.isConnected) continue;
    const b = el.getBoundingClientRect().bottom;
    if (b <= view.bottom + 1 && b > view.top) best = Math.max(best ?? 0, Number(seq));
  }
  return best;
}

function scheduleReading() {
  if (readingFrame) return;
  readingFrame = requestAnimationFrame(() => {
    readingFrame = 0;
    updateReading();
  });
}

/** Moves the read marker up to what the reader has seen, if they are looking. */
function updateReading() {
  const r = store.currentRoom();
  const list = $('messages');
  const looking = !!r && !list.hidden && attentive() && !landing;
  const atBottom = looking && isPinned();
  // The store counts live messages as unread unless the reader is at the bottom.
  store.setReading(atBottom);
  if (!looking) return;
  if (atBottom) hidePill();
  const seen = newestSeen(list);
  if (seen != null) sync.read(r.info.id, seen);
  // Ephemeral rooms have no seqs to mark: being at the bottom clears their count.
  if (atBottom && r.info.unread && store.isEphemeral(r)) store.clearUnread(r.info.id);
}

function onListClick(e) {
  const btn = e.target.closest('button');
  if (!btn) return;
  if (btn.id === 'load-older') {
    const r = store.currentRoom();
    if (r) showOlder(r);
  } else if (btn.classList.contains('show-more')) {
    toggleLong(btn);
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

/** Keeps the composer's text as the open room's draft (not while a mode put its own
 *  text there, as an edit does). */
function rememberDraft() {
  if (renderedRoom == null || (composerMode && composerMode.text != null)) return;
  const v = $('composer').value;
  if (v) drafts.set(draftKey(renderedRoom), v);
  else drafts.delete(draftKey(renderedRoom));
  saveDrafts();
}

function saveDrafts(delay = 400) {
  clearTimeout(draftsTimer);
  const write = () => {
    try {
      if (drafts.size) sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(Object.fromEntries(drafts)));
      else sessionStorage.removeItem(DRAFTS_KEY);
    } catch {
      /* storage full or disabled: drafts still live in memory */
    }
  };
  if (delay) draftsTimer = setTimeout(write, delay);
  else write();
}

function loadDrafts() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || '{}');
    for (const [k, v] of Object.entries(saved)) if (typeof v === 'string' && v) drafts.set(k, v);
  } catch {
    /* nothing usable saved */
  }
}

function initComposer() {
  const ta = $('composer');
  loadDrafts();
  // The last keystrokes before a reload must not wait for the timer.
  window.addEventListener('pagehide', () => {
    rememberDraft();
    saveDrafts(0);
  });
  // The bar above the composer for a composer mode (replying, editing).
  const bar = h(
    'div',
    { id: 'composer-mode', class: 'composer-mode', hidden: true },
    h('span', { class: 'composer-mode-label' }),
    h('button', { type: 'button', class: 'small-btn composer-mode-cancel', text: 'Cancel' }),
  );
  bar.lastChild.addEventListener('click', () => {
    cancelComposerMode();
    ta.focus();
  });
  $('composer-form').before(bar);
  ta.addEventListener('keydown', (e) => {
    for (const fn of keyHandlers) {
      if (fn(e, ta)) {
        e.preventDefault();
        return;
      }
    }
    if (e.key === 'Escape' && composerMode) {
      e.preventDefault();
      cancelComposerMode();
      return;
    }
    if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });
  initEmoji({ composer: ta, insert: insertIntoComposer, addKeyHandler: addComposerKeyHandler });
  initFiles({ changed: () => renderComposerState() });
  ta.addEventListener('input', () => {
    rememberDraft();
    autosize();
    renderComposerState();
    const id = store.state.currentRoomId;
    // Editing a message already sent is not typing a new one: others are not told.
    const editing = !!(composerMode && composerMode.text != null);
    if (id != null && ta.value.trim() && !editing) sync.typing(id);
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
  // Finished uploads go with the message (not with an edit: edits keep the files the
  // message has); a message of files alone may have no text.
  const editing = !!(composerMode && composerMode.text != null);
  const files = editing ? [] : readyAttachments(r.info.id);
  if (!text.trim() && !files.length) return;
  if (charCount(text) > store.maxChars() || (!editing && uploadsBusy(r.info.id))) {
    renderComposerState();
    return;
  }
  if (composerMode && composerMode.submit) {
    // A mode (edit, reply) decides what the text becomes; false keeps it in the box.
    const { result, used } = sync.withAttachments(r.info.id, files, () => composerMode.submit(text));
    if (used) takeAttachments(r.info.id);
    if (result === false) return;
    ta.value = '';
    closeComposerMode(); // gives back the draft an edit had put aside
    rememberDraft();
    autosize();
    renderComposerState();
    ta.focus();
    return;
  }
  forceBottom = true;
  sync.sendMessage(r.info.id, uuid(), toWire(text, r.info.id), null, files);
  if (files.length) takeAttachments(r.info.id);
  ta.value = '';
  drafts.delete(draftKey(r.info.id));
  saveDrafts(0);
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
  const emojiBtn = $('emoji-btn');
  if (emojiBtn) emojiBtn.disabled = !r;
  // Archived, read-only (for members), muted, or a DM with someone I blocked: a plain
  // notice instead of the composer (moderation.js).
  if (renderClosedComposer(r)) return;
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
  // Send waits for the files still uploading (files.js), except for an edit.
  const uploading = !(composerMode && composerMode.text != null) && uploadsBusy(r.info.id);
  $('send-btn').disabled = over || uploading;
  if (over) ta.setAttribute('aria-invalid', 'true');
  else ta.removeAttribute('aria-invalid');
  let text = '';
  if (over) text = `Too long: ${n.toLocaleString()} of ${max.toLocaleString()} characters. Shorten it to send.`;
  else if (n > max * 0.9) text = `${n.toLocaleString()} / ${max.toLocaleString()} characters`;
  if (uploading) text = text ? `${text} Uploading files: Send waits for them.` : 'Uploading files: Send waits for them.';
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

// ---------------------------------------------------------------- hooks

/**
 * Lets another module handle a key in the composer first: `fn(event, textarea)`
 * returns true when it handled the key (the default is then prevented and later
 * handlers and Enter-to-send are skipped). Handlers run in the order added; the emoji
 * completion is the first. For Up-arrow-to-edit, check `textarea.value === ''`.
 */
export function addComposerKeyHandler(fn) {
  keyHandlers.push(fn);
}

/**
 * Puts the composer in a mode, shown in a bar above it with a Cancel button (Escape
 * cancels too). `mode`: { label: string (shown as text), text?: string (replaces the
 * composer's text), submit?: (text) => false | any (called instead of sending; return
 * false to keep the text and the mode), cancel?: () => void }. One mode at a time;
 * switching rooms cancels it. For a reply bar: submit sends with the reply target; for
 * an edit: text = the message's text, submit sends the edit.
 */
export function setComposerMode(mode) {
  if (composerMode) cancelComposerMode();
  composerMode = mode;
  const bar = $('composer-mode');
  bar.querySelector('.composer-mode-label').textContent = mode.label || '';
  bar.hidden = false;
  const ta = $('composer');
  if (mode.text != null) {
    mode.stash = ta.value;
    ta.value = mode.text;
    autosize();
    renderComposerState();
  }
  ta.focus();
}

/** Leaves the composer mode (after it submitted): no cancel callback. A mode that
 *  brought its own text gives back what the composer held before (the draft). */
function closeComposerMode() {
  const mode = composerMode;
  composerMode = null;
  const bar = $('composer-mode');
  if (bar) bar.hidden = true;
  if (mode && mode.stash != null) {
    const ta = $('composer');
    ta.value = mode.stash;
    autosize();
    renderComposerState();
  }
}

/** Cancels the composer mode, if any, calling its `cancel`. */
export function cancelComposerMode() {
  const mode = composerMode;
  if (!mode) return;
  closeComposerMode();
  if (mode.cancel) mode.cancel();
}

/** The composer's current mode object, or null. */
export function composerModeNow() {
  return composerMode;
}

/** Inserts text at the composer's cursor (replacing the selection), as if typed. */
export function insertIntoComposer(text, from = null, to = null) {
  const ta = $('composer');
  if (ta.disabled) return;
  const start = from ?? ta.selectionStart;
  const end = to ?? ta.selectionEnd;
  ta.focus();
  ta.setRangeText(text, start, end, 'end');
  ta.dispatchEvent(new Event('input', { bubbles: true }));
}

/**
 * Adds `fn(articleEl, message, { pending, cont })`, called each time a message element
 * is (re)built, to add what belongs under or beside it (reactions, "edited", a reply's
 * quote). The element's children are rebuilt on every change of the message; call
 * redrawMessages() when something the decorator shows changes without the message.
 */
export function addMessageDecorator(fn) {
  decorators.push(fn);
  redrawMessages();
}

/** Rebuilds every message element of the open room (cheap: only on demand). */
export function redrawMessages() {
  namesVersion++;
  if (store.currentRoom()) renderMessages();
}

/**
 * Makes sure the loaded event `seq` of the open room is rendered, widening the window
 * of shown messages down from it if it was left out above; returns its element, or
 * null when it is not loaded (a reply's quote jumps to its original this way).
 */
export function revealMessage(seq) {
  const r = store.currentRoom();
  if (!r || !r.bySeq.has(seq)) return null;
  if (shownFrom != null && seq < shownFrom) {
    shownFrom = seq;
    renderMessages();
  }
  return $('messages').querySelector(`[data-seq="${seq}"]`);
}

/** The newest message of mine in the open room that the server has kept (has a seq), or null. */
export function lastOwnMessage() {
  const r = store.currentRoom();
  if (!r) return null;
  for (let i = r.events.length - 1; i >= 0; i--) {
    const ev = r.events[i];
    if (ev.kind === 'text' && ev.seq != null && store.isMine(ev.author)) return ev;
  }
  return null;
}
