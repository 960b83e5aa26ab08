// emoji.js: the composer's emoji picker and its `:shortcode:` completion, over the
// vendored list in emoji-data.js (no network).
//
// - The picker: a button beside the composer opens a small non-modal dialog with a
//   search field and the emoji in groups. Arrow keys move between emoji, Enter or a
//   click inserts one at the composer's cursor, Escape or a click elsewhere closes it
//   and gives the focus back.
// - Completion: typing ":" and two or more letters of a shortcode (after a space or at
//   the start) lists up to 8 matches above the composer; Up/Down choose, Enter or Tab
//   insert, Escape dismisses. A whole `:shortcode:` typed with its closing colon is
//   replaced at once.

import { $, completionKey, h } from './dom.js';
import { emojiGroups } from './emoji-data.js';

const MAX_SUGGESTIONS = 8;
// The shortcode being typed just before the cursor: ":sm" (group 2 without the colon).
const TYPING_RE = /(^|[\s([{])(:([a-z0-9_+-]{2,32}))$/i;
// A complete ":shortcode:" just typed.
const DONE_RE = /(^|[\s([{]):([a-z0-9_+-]{1,32}):$/i;

let composer = null;
let insert = null;
let byName = null;
let all = null;
/** The open completion: { from, to, items, index } (from/to: the ":sm" range). */
let completion = null;
/** The composer's selection when the picker opened (focus moves into the picker). */
let savedRange = null;

function index() {
  if (byName) return;
  byName = new Map();
  all = [];
  for (const g of emojiGroups()) {
    for (const e of g.list) {
      all.push(e);
      for (const n of e.names) if (!byName.has(n)) byName.set(n, e);
    }
  }
}

/** Emoji whose shortcodes start with `q` (first), then whose shortcodes or words contain it. */
export function searchEmoji(q, limit = Infinity) {
  index();
  q = q.toLowerCase();
  const starts = [];
  const contains = [];
  for (const e of all) {
    if (e.names.some((n) => n.startsWith(q))) starts.push(e);
    else if (e.names.some((n) => n.includes(q)) || e.words.includes(q)) contains.push(e);
    if (starts.length >= limit) break;
  }
  return starts.concat(contains).slice(0, limit);
}

/** The emoji of a shortcode (without colons), or null. */
export function emojiFor(name) {
  index();
  const e = byName.get(name.toLowerCase());
  return e ? e.char : null;
}

/**
 * @param {object} o  composer (the textarea), insert(text, from, to) (puts text in
 *   the composer as if typed), addKeyHandler(fn) (the composer's key hook)
 */
export function initEmoji(o) {
  composer = o.composer;
  insert = o.insert;
  o.addKeyHandler(onComposerKey);
  composer.addEventListener('input', onComposerInput);
  composer.addEventListener('blur', () => setTimeout(() => {
    if (document.activeElement !== composer) closeCompletion();
  }, 150));

  const list = h('ul', { id: 'emoji-suggest', class: 'emoji-suggest', role: 'listbox', 'aria-label': 'Emoji suggestions', hidden: true });
  // mousedown, not click: the composer must keep the focus.
  list.addEventListener('mousedown', (e) => {
    const li = e.target.closest('li[data-index]');
    if (!li) return;
    e.preventDefault();
    accept(Number(li.dataset.index));
  });
  const form = $('composer-form');
  form.append(list);

  const btn = h(
    'button',
    {
      type: 'button',
      id: 'emoji-btn',
      class: 'emoji-btn',
      'aria-label': 'Insert emoji',
      title: 'Insert emoji',
      'aria-haspopup': 'dialog',
      'aria-expanded': 'false',
      'aria-controls': 'emoji-picker',
    },
    h('span', { 'aria-hidden': 'true', text: '😊' }),
  );
  btn.addEventListener('click', () => (pickerOpen() ? closePicker(true) : openPicker()));
  $('send-btn').before(btn);
  form.append(buildPicker());
  document.addEventListener('mousedown', (e) => {
    if (pickerOpen() && !e.target.closest('#emoji-picker, #emoji-btn')) closePicker(false);
  });
}

// ---------------------------------------------------------------- completion

function onComposerInput() {
  const pos = composer.selectionStart;
  if (pos !== composer.selectionEnd) return closeCompletion();
  const before = composer.value.slice(Math.max(0, pos - 40), pos);
  const done = DONE_RE.exec(before);
  if (done) {
    const ch = emojiFor(done[2]);
    if (ch) {
      closeCompletion();
      const from = pos - done[2].length - 2;
      insert(ch, from, pos);
      return;
    }
  }
  const m = TYPING_RE.exec(before);
  if (!m) return closeCompletion();
  const items = searchEmoji(m[3], MAX_SUGGESTIONS);
  if (!items.length) return closeCompletion();
  completion = { from: pos - m[2].length, to: pos, items, index: 0 };
  renderCompletion();
}

function renderCompletion() {
  const list = $('emoji-suggest');
  if (!completion) {
    list.hidden = true;
    list.replaceChildren();
    composer.removeAttribute('aria-activedescendant');
    composer.removeAttribute('aria-controls');
    return;
  }
  list.replaceChildren(
    ...completion.items.map((e, i) =>
      h(
        'li',
        {
          id: `emoji-opt-${i}`,
          role: 'option',
          class: i === completion.index ? 'active' : null,
          'aria-selected': String(i === completion.index),
          'data-index': i,
        },
        h('span', { class: 'emoji-char', 'aria-hidden': 'true', text: e.char }),
        h('span', { class: 'emoji-code', text: `:${e.names[0]}:` }),
      ),
    ),
  );
  list.hidden = false;
  composer.setAttribute('aria-autocomplete', 'list');
  composer.setAttribute('aria-controls', 'emoji-suggest');
  composer.setAttribute('aria-activedescendant', `emoji-opt-${completion.index}`);
}

function closeCompletion() {
  if (!completion && $('emoji-suggest')?.hidden !== false) return;
  completion = null;
  renderCompletion();
}

function accept(i) {
  const c = completion;
  if (!c) return;
  const e = c.items[i];
  closeCompletion();
  if (e) insert(e.char, c.from, c.to);
}

/** The composer's key hook: the completion's keys, while it is open. */
function onComposerKey(e) {
  if (!completion || e.isComposing) return false;
  return completionKey(e, completion, { render: renderCompletion, accept, close: closeCompletion });
}

// ---------------------------------------------------------------- picker

function pickerOpen() {
  return !$('emoji-picker').hidden;
}

function buildPicker() {
  const search = h('input', {
    id: 'emoji-search',
    type: 'search',
    class: 'emoji-search',
    placeholder: 'Search emoji',
    'aria-label': 'Search emoji',
    autocomplete: 'off',
  });
  const grid = h('div', { id: 'emoji-grid', class: 'emoji-grid' });
  const picker = h('div', { id: 'emoji-picker', class: 'emoji-picker', role: 'dialog', 'aria-label': 'Emoji', hidden: true }, search, grid);
  search.addEventListener('input', () => fillGrid(search.value.trim()));
  search.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'Enter') {
      const first = grid.querySelector('button');
      if (!first) return;
      e.preventDefault();
      if (e.key === 'Enter') pick(first);
      else focusButton(first);
    }
  });
  picker.addEventListener('keydown', onPickerKey);
  grid.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-emoji]');
    if (b) pick(b);
  });
  return picker;
}

/** Fills the grid: every group, or the matches of a search. */
function fillGrid(q) {
  const grid = $('emoji-grid');
  const button = (e) =>
    h('button', {
      type: 'button',
      class: 'emoji-option',
      tabindex: '-1',
      'data-emoji': e.char,
      title: `:${e.names[0]}:`,
      'aria-label': e.names[0].replace(/_/g, ' '),
      text: e.char,
    });
  if (q) {
    const found = searchEmoji(q.replace(/:/g, ''));
    grid.replaceChildren(
      found.length
        ? h('div', { class: 'emoji-group', role: 'group', 'aria-label': 'Search results' }, found.map(button))
        : h('p', { class: 'emoji-none', text: 'No emoji found.' }),
    );
  } else {
    grid.replaceChildren(
      ...emojiGroups().map((g) =>
        h(
          'section',
          { class: 'emoji-section', 'aria-label': g.name },
          h('h3', { class: 'emoji-heading', text: g.name }),
          h('div', { class: 'emoji-group', role: 'group', 'aria-label': g.name }, g.list.map(button)),
        ),
      ),
    );
  }
  const first = grid.querySelector('button');
  if (first) first.tabIndex = 0;
}

function openPicker() {
  closeCompletion();
  savedRange = [composer.selectionStart, composer.selectionEnd];
  const picker = $('emoji-picker');
  const search = $('emoji-search');
  search.value = '';
  fillGrid('');
  picker.hidden = false;
  $('emoji-btn').setAttribute('aria-expanded', 'true');
  search.focus();
}

function closePicker(returnFocus) {
  $('emoji-picker').hidden = true;
  $('emoji-btn').setAttribute('aria-expanded', 'false');
  if (returnFocus) $('emoji-btn').focus();
}

function pick(b) {
  closePicker(false);
  const [from, to] = savedRange || [composer.value.length, composer.value.length];
  insert(b.dataset.emoji, from, to);
}

function focusButton(b) {
  for (const x of $('emoji-grid').querySelectorAll('button[tabindex="0"]')) x.tabIndex = -1;
  b.tabIndex = 0;
  b.focus();
}

/** Arrow keys in the grid (rows as laid out on screen), Escape closes. */
function onPickerKey(e) {
  if (e.key === 'Escape') {
    e.preventDefault();
    e.stopPropagation();
    closePicker(true);
    return;
  }
  const cur = e.target.closest('button[data-emoji]');
  if (!cur) return;
  const buttons = [...$('emoji-grid').querySelectorAll('button[data-emoji]')];
  const i = buttons.indexOf(cur);
  let next = null;
  if (e.key === 'ArrowRight') next = buttons[i + 1];
  else if (e.key === 'ArrowLeft') next = buttons[i - 1];
  else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    // The nearest button in the next/previous row, by position on screen.
    const r = cur.getBoundingClientRect();
    const down = e.key === 'ArrowDown';
    let best = null;
    let bestScore = Infinity;
    for (const b of buttons) {
      const q = b.getBoundingClientRect();
      const dy = down ? q.top - r.top : r.top - q.top;
      if (dy < r.height / 2) continue;
      const score = dy * 1000 + Math.abs(q.left - r.left);
      if (score < bestScore) {
        bestScore = score;
        best = b;
      }
    }
    next = best;
    if (!down && !next) next = $('emoji-search');
  } else if (e.key === 'Home') next = buttons[0];
  else if (e.key === 'End') next = buttons[buttons.length - 1];
  else return;
  e.preventDefault();
  if (next && next.matches('button')) focusButton(next);
  else if (next) next.focus();
}
