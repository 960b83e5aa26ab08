// reactions.js: emoji reactions under a message (issue 12, PROTOCOL.md §3.8 `react`).
//
// - renderReactions(): the row under a message: one toggle button per emoji with its
//   count, pressed when one of them is yours; its title (and accessible name) says who
//   reacted. Clicking it adds or takes back your reaction.
// - openReactionPicker(): a small non-modal popup with a row of common reactions and
//   a search over the emoji data of emoji.js / emoji-data.js (vendored, no network).
//   Arrow keys move, Enter or a click picks, Escape or a click elsewhere closes it and
//   gives the focus back to the button that opened it.

import { $, h } from './dom.js';
import { fullName } from './format.js';
import { searchEmoji } from './emoji.js';
import * as store from './store.js';
import { nameOf } from './mentions.js';

/** Offered first, as most chats do. */
const QUICK = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'];
const SEARCH_LIMIT = 40;

/** A person's name for "who reacted": you, their full name if a member, else @username. */
function who(roomId, id) {
  const me = store.state.me;
  if (me && me.id === id) return 'you';
  const m = store.room(roomId)?.members?.find((x) => x.id === id);
  if (m) return fullName(m);
  const u = nameOf(id);
  return u ? `@${u}` : `user ${id}`;
}

function listNames(names) {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** The reactions row of a message, or null when it has none. */
export function renderReactions(m) {
  if (!m.reactions || !m.reactions.length) return null;
  const me = store.state.me;
  const row = h('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' });
  for (const r of m.reactions) {
    const mine = !!me && r.users.includes(me.id);
    const names = listNames(r.users.map((id) => who(m.room, id)));
    const label = `${r.emoji} ${r.users.length}: ${names} reacted${mine ? ' (click to take yours back)' : ''}`;
    row.append(
      h(
        'button',
        {
          type: 'button',
          class: mine ? 'reaction mine' : 'reaction',
          'data-emoji': r.emoji,
          'aria-pressed': String(mine),
          'aria-label': label,
          title: `${names} reacted with ${r.emoji}`,
        },
        h('span', { class: 'reaction-emoji', text: r.emoji }),
        h('span', { class: 'reaction-count', text: String(r.users.length) }),
      ),
    );
  }
  return row;
}

// ---------------------------------------------------------------- picker

let picker = null;
let returnTo = null;
let onPicked = null;

function build() {
  const quick = h(
    'div',
    { class: 'reaction-quick', role: 'group', 'aria-label': 'Common reactions' },
    QUICK.map((e) => option(e, e)),
  );
  const search = h('input', {
    id: 'reaction-search',
    type: 'search',
    class: 'emoji-search',
    placeholder: 'Search emoji',
    'aria-label': 'Search emoji',
    autocomplete: 'off',
  });
  const results = h('div', { id: 'reaction-results', class: 'reaction-results', role: 'group', 'aria-label': 'Search results' });
  const p = h('div', { id: 'reaction-picker', class: 'reaction-picker', role: 'dialog', 'aria-label': 'Add a reaction', hidden: true }, quick, search, results);
  search.addEventListener('input', () => fill(search.value.trim()));
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      const first = results.querySelector('button') || quick.querySelector('button');
      if (first) pick(first);
    } else if (e.key === 'ArrowDown') {
      const first = results.querySelector('button');
      if (first) {
        e.preventDefault();
        first.focus();
      }
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      quick.querySelector('button')?.focus();
    }
  });
  p.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-emoji]');
    if (b) pick(b);
  });
  p.addEventListener('keydown', onKey);
  document.addEventListener('mousedown', (e) => {
    if (!p.hidden && !e.target.closest('#reaction-picker')) close(false);
  });
  document.body.append(p);
  return p;
}

function option(char, name) {
  return h('button', { type: 'button', class: 'emoji-option', 'data-emoji': char, 'aria-label': name, title: name, text: char });
}

function fill(q) {
  const results = $('reaction-results');
  if (!q) {
    results.replaceChildren();
    return;
  }
  const found = searchEmoji(q.replace(/:/g, ''), SEARCH_LIMIT);
  results.replaceChildren(
    ...(found.length ? found.map((e) => option(e.char, `:${e.names[0]}:`)) : [h('p', { class: 'emoji-none', text: 'No emoji found.' })]),
  );
}

/** Opens the picker next to `anchor`; `pickFn(emoji)` is called with the choice. */
export function openReactionPicker(anchor, pickFn) {
  if (!picker) picker = build();
  returnTo = anchor;
  onPicked = pickFn;
  $('reaction-search').value = '';
  fill('');
  picker.hidden = false;
  // Beside the button, inside the window.
  const a = anchor.getBoundingClientRect();
  const w = picker.offsetWidth;
  const hgt = picker.offsetHeight;
  const left = Math.max(8, Math.min(a.right - w, innerWidth - w - 8));
  const top = a.top - hgt - 6 >= 8 ? a.top - hgt - 6 : Math.min(a.bottom + 6, innerHeight - hgt - 8);
  picker.style.left = `${left}px`;
  picker.style.top = `${Math.max(8, top)}px`;
  picker.querySelector('.reaction-quick button').focus();
}

export function reactionPickerOpen() {
  return !!picker && !picker.hidden;
}

function close(focusBack) {
  if (!picker || picker.hidden) return;
  picker.hidden = true;
  if (focusBack && returnTo && returnTo.isConnected) returnTo.focus();
  returnTo = null;
  onPicked = null;
}

function pick(b) {
  const fn = onPicked;
  const emoji = b.dataset.emoji;
  close(true);
  if (fn) fn(emoji);
}

function onKey(e) {
  if (e.key === 'Escape') {
    e.preventDefault();
    e.stopPropagation();
    close(true);
    return;
  }
  const cur = e.target.closest('button[data-emoji]');
  if (!cur) return;
  const buttons = [...picker.querySelectorAll('button[data-emoji]')];
  const i = buttons.indexOf(cur);
  let next = null;
  if (e.key === 'ArrowRight') next = buttons[i + 1];
  else if (e.key === 'ArrowLeft') next = buttons[i - 1];
  else if (e.key === 'ArrowDown') next = buttons[Math.min(buttons.length - 1, i + QUICK.length)] || $('reaction-search');
  else if (e.key === 'ArrowUp') next = i < QUICK.length ? null : buttons[Math.max(0, i - QUICK.length)];
  else if (e.key === 'Home') next = buttons[0];
  else if (e.key === 'End') next = buttons[buttons.length - 1];
  else return;
  e.preventDefault();
  if (i < QUICK.length && e.key === 'ArrowDown') next = $('reaction-search');
  next?.focus();
}
