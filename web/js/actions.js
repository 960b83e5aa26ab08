// actions.js: what a person can do to a message in the web client (issue 12,
// PROTOCOL.md §3.4, §3.8): edit, delete, react, reply; and the room's notification
// level. Built on the hooks of conversation.js (a decorator per message element, the
// composer's key hook and modes) and on the store, which applies `action` frames and
// the actions replayed by `resumed` (store.applyAction), so the view is the same
// whether the actions were seen live or caught up on after a reconnect.
//
// - Each kept message has a toolbar (shown on hover, on keyboard focus, or on a tap on
//   touch screens): React, Reply, Edit (your own), Delete (your own; in a room also
//   its owner's and the admin's). One tab stop per message; arrow keys move inside.
// - Edit puts the text in the composer (bar "Editing your message"; Escape cancels);
//   Up-arrow in an empty composer edits your last message. Shows "(edited)".
// - Delete asks first; the message stays in place as a "message deleted" tombstone.
// - Reply: a bar "Replying to @bob: …" above the composer; the reply shows a quote of
//   the original that jumps to it (paging older history in until it is loaded) and
//   highlights it; a quote whose original is gone says so.
// - Reactions under the message (reactions.js), mentions (mentions.js).

import { $, h, toast } from './dom.js';
import * as store from './store.js';
import { fullDate, uuid } from './format.js';
import {
  addComposerKeyHandler,
  addMessageDecorator,
  composerModeNow,
  insertIntoComposer,
  redrawMessages,
  revealMessage,
  setComposerMode,
} from './conversation.js';
import { confirmDialog } from './dialogs.js';
import { chipify, fromWire, initMentions, plainMentions, toWire } from './mentions.js';
import { openReactionPicker, renderReactions } from './reactions.js';

/** Characters of a quote shown in the reply bar and under a reply. */
const EXCERPT_CHARS = 120;
/** Older pages fetched at most to reach a quoted message. */
const JUMP_PAGES = 100;
const HIGHLIGHT_MS = 2500;

let sync = null;

/** @param {Sync} s the socket */
export function initActions(s) {
  sync = s;
  const composer = $('composer');
  initMentions({
    composer,
    insert: insertIntoComposer,
    addKeyHandler: addComposerKeyHandler,
    onNamesChanged: () => redrawMessages(),
  });
  addComposerKeyHandler(onComposerKey);
  addMessageDecorator(decorate);
  const list = $('messages');
  list.addEventListener('click', onListClick);
  list.addEventListener('keydown', onToolbarKey);
  initNotifyLevel();
  // A quote shows the original's current state (edited, deleted): redraw replies
  // when something in the open room changes.
  store.subscribe((d) => {
    const id = store.state.currentRoomId;
    if (id != null && d.has(`room:${id}`) && hasReplies(store.room(id))) redrawReplies();
  });
}

// ---------------------------------------------------------------- permissions

const isKept = (m) => m && m.seq != null && (m.kind || 'text') === 'text' && !m.deleted;

/** May the signed-in user delete this message? The author; in a room also its owner,
 *  its moderators and the server admin (DMs have no owner: store.myRole is 'member'). */
function canDelete(m, r) {
  const me = store.state.me;
  if (!me || !r) return false;
  if (store.isMine(m.author)) return true;
  return store.myRole(r) !== 'member';
}

// ---------------------------------------------------------------- decorating messages

/** One word for a person in a quote or a bar. */
const handle = (author) => `@${(author && author.username) || 'someone'}`;

/** The start of a text as a quote shows it: whitespace folded, mentions as names. */
function excerpt(text, mentions) {
  const s = plainMentions(String(text || ''), mentions).replace(/\s+/g, ' ').trim();
  const chars = [...s];
  return chars.length > EXCERPT_CHARS ? `${chars.slice(0, EXCERPT_CHARS).join('')}…` : s;
}

/** The quote above a reply: a button that jumps to the original, or a note that it
 *  is gone. `rt`: the event's reply_to, or the seq a message not yet sent answers. */
function replyQuote(m, r) {
  const rt = typeof m.reply_to === 'number' ? { seq: m.reply_to } : m.reply_to;
  if (!rt || !Number.isInteger(rt.seq)) return null;
  const orig = r && r.bySeq.get(rt.seq);
  if (rt.missing || (orig && orig.deleted)) {
    return h('div', { class: 'reply-quote missing', 'data-target-seq': rt.seq }, 'Reply to a message: original message deleted or no longer kept');
  }
  const author = orig ? orig.author : rt.author;
  const text = orig ? excerpt(orig.text, orig.mentions) : excerpt(rt.excerpt || '', []);
  return h(
    'button',
    { type: 'button', class: 'reply-quote', 'data-target-seq': rt.seq, title: 'Show the original message' },
    h('span', { class: 'reply-author', text: handle(author) }),
    ' ',
    h('span', { class: 'reply-excerpt', text }),
  );
}

/** The toolbar of a kept message. */
function toolbar(m, r) {
  const mine = store.isMine(m.author);
  const who = mine ? 'your message' : `the message by ${handle(m.author)}`;
  const buttons = [
    ['react', 'React'],
    ['reply', 'Reply'],
    mine ? ['edit', 'Edit'] : null,
    canDelete(m, r) ? ['delete', 'Delete'] : null,
  ].filter(Boolean);
  return h(
    'div',
    { class: 'msg-toolbar', role: 'toolbar', 'aria-label': `Actions for ${who}` },
    buttons.map(([action, label], i) =>
      h('button', {
        type: 'button',
        class: `msg-action msg-${action}`,
        'data-action': action,
        tabindex: i === 0 ? '0' : '-1',
        text: label,
      }),
    ),
  );
}

/** conversation.js calls this each time it (re)builds a message element. */
function decorate(el, m, { pending }) {
  const r = store.room(m.room);
  const text = el.querySelector(':scope > .text');
  el.classList.toggle('deleted', !!m.deleted);
  if (m.deleted) {
    if (text) text.replaceChildren(h('span', { class: 'tombstone', text: 'message deleted' }));
    return;
  }
  if (text) chipify(text, pending ? [] : m.mentions, pending ? m.room : null);
  if (!pending && store.mentionsMe(m)) el.classList.add('mention');
  const quote = replyQuote(m, r);
  if (quote && text) text.before(quote);
  const after = [];
  if (m.edited && !pending) {
    after.push(h('span', { class: 'edited', title: `Edited ${fullDate(m.edited)}`, text: '(edited)' }));
  }
  if (!pending) {
    const reactions = renderReactions(m);
    if (reactions) after.push(reactions);
  }
  if (!pending && isKept(m) && r && !store.isEphemeral(r)) after.push(toolbar(m, r));
  if (text) text.after(...after);
  else el.append(...after);
}

function hasReplies(r) {
  return !!r && !!document.querySelector('#messages .reply-quote');
}

let redrawQueued = false;
/** Redraws the open room's messages once (quotes follow their originals). */
function redrawReplies() {
  if (redrawQueued) return;
  redrawQueued = true;
  // After the render of this change (a later microtask), not inside it.
  setTimeout(() => {
    redrawQueued = false;
    const list = $('messages');
    const stale = [...list.querySelectorAll('.reply-quote')].some((q) => {
      const r = store.currentRoom();
      const orig = r && r.bySeq.get(Number(q.dataset.targetSeq));
      if (!orig) return false;
      if (orig.deleted) return !q.classList.contains('missing');
      const ex = q.querySelector('.reply-excerpt');
      return !!ex && ex.textContent !== excerpt(orig.text, orig.mentions);
    });
    if (stale) redrawMessages();
  }, 0);
}

// ---------------------------------------------------------------- acting

/** The shown message an element belongs to, or null. */
function messageOf(el) {
  const art = el.closest('article.msg');
  const r = store.currentRoom();
  if (!art || !r || !art.dataset.seq) return null;
  return r.bySeq.get(Number(art.dataset.seq)) || null;
}

/** Sends a command that changes a message; false (and a toast) when offline. */
function command(frame) {
  if (!sync.live) {
    toast('You are offline: try again when the connection is back.');
    return false;
  }
  return sync.sendFrame({ ...frame, id: sync.newId() }, { kind: frame.type, room: frame.room });
}

/** Adds or takes back the signed-in user's `emoji` on message `m`. */
export function toggleReaction(m, emoji) {
  const me = store.state.me;
  const entry = (m.reactions || []).find((x) => x.emoji === emoji);
  const on = !(entry && me && entry.users.includes(me.id));
  command({ type: 'react', room: m.room, seq: m.seq, emoji, on });
}

/** Puts message `m` in the composer to edit it. */
export function startEdit(m) {
  if (!isKept(m) || !store.isMine(m.author)) return;
  const ta = $('composer');
  const draft = composerModeNow() ? '' : ta.value;
  const restore = () => {
    if (draft) setTimeout(() => insertIntoComposer(draft, 0, $('composer').value.length), 0);
  };
  const room = m.room;
  setComposerMode({
    label: 'Editing your message',
    text: fromWire(m.text, m.mentions),
    submit: (text) => {
      const wire = toWire(text, room, m.mentions);
      if (wire !== m.text && command({ type: 'edit', room, seq: m.seq, text: wire }) === false) return false;
      restore();
      return true;
    },
    cancel: restore,
  });
  ta.setSelectionRange(ta.value.length, ta.value.length);
}

/** Opens the reply bar for message `m`. */
export function startReply(m) {
  if (!isKept(m)) return;
  const room = m.room;
  const seq = m.seq;
  const quote = excerpt(m.text, m.mentions);
  const short = [...quote].length > 60 ? `${[...quote].slice(0, 60).join('')}…` : quote;
  setComposerMode({
    label: `Replying to ${handle(m.author)}: ${short}`,
    submit: (text) => {
      sync.sendMessage(room, uuid(), toWire(text, room), seq);
    },
  });
}

async function askDelete(m, btn) {
  const mine = store.isMine(m.author);
  const ok = await confirmDialog(
    mine ? 'Delete this message? It is removed for everyone.' : `Delete this message by ${handle(m.author)}? It is removed for everyone.`,
    'Delete',
  );
  if (ok) command({ type: 'delete', room: m.room, seq: m.seq });
  else if (btn.isConnected) btn.focus();
}

function onListClick(e) {
  const btn = e.target.closest('button');
  if (!btn) {
    // Touch screens have no hover: a tap on a message shows its toolbar.
    if (window.matchMedia('(hover: none)').matches && !e.target.closest('a')) {
      const art = e.target.closest('article.msg');
      for (const x of document.querySelectorAll('#messages .msg.show-actions')) if (x !== art) x.classList.remove('show-actions');
      art?.classList.toggle('show-actions');
    }
    return;
  }
  if (btn.classList.contains('reply-quote')) {
    const r = store.currentRoom();
    if (r) jumpTo(r.info.id, Number(btn.dataset.targetSeq));
    return;
  }
  const m = messageOf(btn);
  if (!m) return;
  if (btn.classList.contains('reaction')) {
    toggleReaction(m, btn.dataset.emoji);
    return;
  }
  switch (btn.dataset.action) {
    case 'react':
      openReactionPicker(btn, (emoji) => {
        const cur = store.room(m.room)?.bySeq.get(m.seq);
        if (cur && !cur.deleted) toggleReaction(cur, emoji);
      });
      break;
    case 'reply':
      startReply(m);
      break;
    case 'edit':
      startEdit(m);
      break;
    case 'delete':
      askDelete(m, btn);
      break;
    default:
  }
}

/** Arrow keys move between a toolbar's buttons (one tab stop per toolbar). */
function onToolbarKey(e) {
  const bar = e.target.closest('.msg-toolbar');
  if (!bar || !['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key)) return;
  const buttons = [...bar.querySelectorAll('button')];
  const i = buttons.indexOf(e.target);
  if (i < 0) return;
  e.preventDefault();
  let j = i;
  if (e.key === 'ArrowLeft') j = (i + buttons.length - 1) % buttons.length;
  else if (e.key === 'ArrowRight') j = (i + 1) % buttons.length;
  else if (e.key === 'Home') j = 0;
  else j = buttons.length - 1;
  buttons[i].tabIndex = -1;
  buttons[j].tabIndex = 0;
  buttons[j].focus();
}

/** Up-arrow in an empty composer edits your last message. */
function onComposerKey(e, ta) {
  if (e.key !== 'ArrowUp' || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey || e.isComposing) return false;
  if (ta.value !== '' || composerModeNow()) return false;
  const r = store.currentRoom();
  if (!r) return false;
  for (let i = r.events.length - 1; i >= 0; i--) {
    const ev = r.events[i];
    if (isKept(ev) && store.isMine(ev.author)) {
      startEdit(ev);
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------- jumping to a quote


let jumping = 0;
/**
 * Scrolls to message `seq` of the open room and highlights it, fetching older
 * history (`history` with `before`) until it is loaded. Says so when it is gone.
 */
export async function jumpTo(roomId, seq) {
  const mine = ++jumping;
  for (let pages = 0; pages <= JUMP_PAGES; pages++) {
    if (mine !== jumping || store.state.currentRoomId !== roomId) return;
    const el = revealMessage(seq);
    if (el) {
      el.scrollIntoView({ block: 'center' });
      el.classList.remove('jump-highlight');
      void el.offsetWidth; // restart the animation
      el.classList.add('jump-highlight');
      setTimeout(() => el.classList.remove('jump-highlight'), HIGHLIGHT_MS);
      const first = el.querySelector('.msg-toolbar button');
      if (first) first.focus({ preventScroll: true });
      return;
    }
    const r = store.room(roomId);
    if (!r) return;
    const oldest = store.oldestSeq(r);
    if (r.loaded && (!r.hasMore || (oldest != null && oldest < seq))) break;
    if (!r.loadingHistory) sync.loadHistory(roomId);
    const ok = await store.until(() => {
      const x = store.room(roomId);
      return !x || (!x.loadingHistory && store.oldestSeq(x) !== oldest) || (x.loaded && !x.hasMore);
    }, 10000);
    if (!ok) break;
  }
  if (mine === jumping) toast('The original message was deleted or is no longer kept.');
}

// ---------------------------------------------------------------- notification level

const SVG = 'http://www.w3.org/2000/svg';

/** A bell (struck through when muted), drawn like the header's other icons. */
function bellIcon() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'notify-level-icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = (d, cls) => {
    const p = document.createElementNS(SVG, 'path');
    p.setAttribute('d', d);
    p.setAttribute('fill', 'none');
    p.setAttribute('stroke', 'currentColor');
    p.setAttribute('stroke-width', '1.8');
    p.setAttribute('stroke-linecap', 'round');
    p.setAttribute('stroke-linejoin', 'round');
    if (cls) p.setAttribute('class', cls);
    svg.append(p);
  };
  path('M6 16V11a6 6 0 0 1 12 0v5l1.5 2h-15L6 16ZM10 20.5a2 2 0 0 0 4 0');
  path('M4 4l16 16', 'bell-slash');
  return svg;
}

const LEVELS = [
  ['all', 'All messages'],
  ['mentions', 'Mentions only'],
  ['muted', 'Muted'],
];

/** The room header's "Notify" choice: all / mentions only / muted (`notify` command). */
function initNotifyLevel() {
  const select = h(
    'select',
    { id: 'notify-level', class: 'notify-level', title: 'Notifications for this conversation' },
    LEVELS.map(([v, label]) => h('option', { value: v, text: label })),
  );
  const wrap = h(
    'div',
    { class: 'notify-level-wrap', hidden: true },
    h('label', { for: 'notify-level', class: 'visually-hidden', text: 'Notifications for this conversation' }),
    bellIcon(),
    select,
  );
  $('members-btn').before(wrap);
  select.addEventListener('change', () => {
    const r = store.currentRoom();
    if (!r) return;
    const level = select.value;
    if (command({ type: 'notify', room: r.info.id, level }) === false) select.value = r.info.notify || 'all';
  });
  store.subscribe((d) => {
    if (!(d.has('all') || d.has('current') || d.has('rooms'))) return;
    const r = store.currentRoom();
    wrap.hidden = !r;
    if (!r) return;
    const level = r.info.notify || 'all';
    if (select.value !== level) select.value = level;
    wrap.dataset.level = level;
    wrap.querySelector('.notify-level-icon .bell-slash').style.display = level === 'muted' ? '' : 'none';
  });
}
