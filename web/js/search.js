// search.js: searching the messages a person may read (issue 13, PROTOCOL.md §2.6
// `GET /api/search`). A panel over the conversation holds the search box, two
// optional filters (only the open conversation, only one author), the results and a
// "More results" button.
//
// - Opened by #search-btn, by Ctrl+K (⌘K) anywhere, or by "/" when the focus is not
//   in a field; Escape closes it and gives the focus back.
// - Searches as one types (250 ms after the last keystroke; the server matches the
//   last word as a prefix), newest first, 20 at a time; answers to an older query
//   are dropped.
// - The box is a combobox over a listbox of results (the focus stays in the box):
//   Up/Down choose a result, Enter (or a click) opens it: the conversation is
//   switched to, its history paged back until the message is loaded, scrolled to and
//   highlighted (actions.js `jumpTo`, shared with replies' quotes).
// - A result shows the room, the author, the time and the text with the matching
//   words in <mark>. The server gives the matches as [start, end) offsets in code
//   points; JavaScript strings count UTF-16 units, so the text is split into code
//   points (Array.from) before cutting: an emoji before a match would otherwise
//   shift every highlight. Everything is built from text nodes, never markup.

import { $, h } from './dom.js';
import { get } from './api.js';
import * as store from './store.js';
import { debounce, fullDate, isoDate, timeHM } from './format.js';
import { nameOf } from './mentions.js';
import { jumpTo } from './actions.js';

/** Wait after the last keystroke before searching (ms). */
const TYPING_MS = 250;
/** Results per page (the server allows 1–50). */
const PAGE = 20;
/** The server's largest `offset`: no "More results" beyond it. */
const MAX_OFFSET = 1000;
/** A result's text longer than this many characters is shown as an excerpt around
 *  its first match. */
const EXCERPT = 240;
/** Characters kept before the first match in an excerpt. */
const LEAD = 60;
/** How long to wait for a conversation to load before jumping in it anyway (ms). */
const SETTLE_MS = 10000;

let hooks = null;
/** What is shown: the query it answers, its results, whether more follow. */
let shown = { key: '', results: [], more: false };
/** Index of the active (highlighted) result, or -1. */
let active = -1;
/** Bumped by each search, so that an answer to an older one is ignored. */
let searchSeq = 0;
/** The element that had the focus before the panel opened. */
let returnFocus = null;

/**
 * @param {object} a  selectRoom(id) (opens a conversation), closeDrawer() (the phone
 *   sidebar, which would cover the panel)
 */
export function initSearch(a) {
  hooks = a;
  const input = $('search-input');
  const later = debounce(() => search(), TYPING_MS);
  input.addEventListener('input', later);
  $('search-author').addEventListener('input', later);
  $('search-scope').addEventListener('change', () => search());
  input.addEventListener('keydown', (e) => onInputKey(e, later));
  $('search-author').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      later.cancel();
      search();
    }
  });
  $('search-panel').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      closeSearch();
    }
  });
  $('search-btn').addEventListener('click', () => ($('search-panel').hidden ? openSearch() : closeSearch()));
  $('search-close').addEventListener('click', () => closeSearch());
  $('search-more').addEventListener('click', () => search({ more: true }));
  const list = $('search-results');
  // Keep the focus in the box while the pointer picks a result.
  list.addEventListener('mousedown', (e) => e.preventDefault());
  list.addEventListener('click', (e) => {
    const li = e.target.closest('li[role=option]');
    if (li) openResult(Number(li.dataset.index));
  });
  document.addEventListener('keydown', onGlobalKey);
  store.subscribe((d) => {
    if (d.has('all') || d.has('current') || d.has('rooms')) renderScope();
    if (d.has('all') && !store.state.me) reset();
  });
  renderScope();
}

/** Ctrl+K / ⌘K anywhere, "/" outside fields: open the search. */
function onGlobalKey(e) {
  if (!store.state.me || $('app-screen').hidden || e.defaultPrevented || e.isComposing) return;
  if (document.querySelector('dialog[open]')) return;
  const ctrlK = (e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === 'k';
  const slash = e.key === '/' && !e.ctrlKey && !e.metaKey && !e.altKey && !typing(e.target);
  if (!ctrlK && !slash) return;
  e.preventDefault();
  openSearch();
}

/** Is the person typing in this element (where "/" is a character, not a command)? */
function typing(el) {
  if (!el || !(el instanceof Element)) return false;
  if (el.isContentEditable) return true;
  if (el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
  if (el.tagName !== 'INPUT') return false;
  return !['button', 'checkbox', 'radio', 'submit', 'reset', 'range', 'color', 'file'].includes(el.type);
}

/** Shows the panel and puts the focus in the search box (its text selected). */
export function openSearch() {
  const panel = $('search-panel');
  const input = $('search-input');
  if (panel.hidden) {
    const from = document.activeElement;
    returnFocus = from && from !== document.body && !panel.contains(from) ? from : null;
    hooks.closeDrawer?.();
    panel.hidden = false;
    $('search-btn').setAttribute('aria-expanded', 'true');
    renderScope();
  }
  input.focus();
  input.select();
}

/** Hides the panel; the focus goes back where it was (unless a result was opened). */
export function closeSearch(restoreFocus = true) {
  const panel = $('search-panel');
  if (panel.hidden) return;
  panel.hidden = true;
  $('search-btn').setAttribute('aria-expanded', 'false');
  setExpanded();
  if (!restoreFocus) return;
  const back = returnFocus && returnFocus.isConnected && !returnFocus.closest('[hidden]') ? returnFocus : $('search-btn');
  back.focus();
}

/** Forgets everything (signed out). */
function reset() {
  searchSeq++;
  shown = { key: '', results: [], more: false };
  active = -1;
  $('search-input').value = '';
  $('search-author').value = '';
  $('search-scope').checked = false;
  $('search-panel').hidden = true;
  $('search-btn').setAttribute('aria-expanded', 'false');
  renderResults();
  setStatus('');
}

/** The "only in the open conversation" box names it; there is none to limit to
 *  when no conversation is open. */
function renderScope() {
  const r = store.currentRoom();
  const box = $('search-scope');
  const label = $('search-scope-label');
  box.disabled = !r;
  if (!r) box.checked = false;
  label.textContent = r ? `Only in ${r.info.kind === 'dm' ? '@' : '#'}${r.info.name}` : 'Only in this conversation';
}

function onInputKey(e, later) {
  const n = shown.results.length;
  switch (e.key) {
    case 'ArrowDown':
    case 'ArrowUp':
      if (!n) return;
      e.preventDefault();
      if (active < 0) setActive(e.key === 'ArrowDown' ? 0 : n - 1);
      else setActive((active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n);
      return;
    case 'Enter':
      if (e.isComposing) return;
      e.preventDefault();
      if (active >= 0) openResult(active);
      else {
        later.cancel();
        search();
      }
      return;
    default:
  }
}

// ---------------------------------------------------------------- searching

/** The request for the current fields, or null when there is nothing to look for. */
function currentQuery() {
  const q = $('search-input').value;
  if (!q.trim()) return null;
  const params = new URLSearchParams({ q, limit: String(PAGE) });
  const author = $('search-author').value.trim().replace(/^@/, '');
  if (author) params.set('author', author);
  const r = store.currentRoom();
  if ($('search-scope').checked && r) params.set('room', String(r.info.id));
  const where = [
    params.has('room') ? `in ${r.info.kind === 'dm' ? '@' : '#'}${r.info.name}` : '',
    author ? `from @${author}` : '',
  ]
    .filter(Boolean)
    .join(' ');
  return { params, key: params.toString(), q: q.trim(), author, where };
}

/** Runs the search for what the fields say now (`more`: the next page of it). */
async function search({ more = false } = {}) {
  const query = currentQuery();
  const mine = ++searchSeq;
  if (!query) {
    shown = { key: '', results: [], more: false };
    active = -1;
    renderResults();
    setStatus('');
    return;
  }
  if (more && query.key !== shown.key) more = false;
  const offset = more ? shown.results.length : 0;
  if (offset) query.params.set('offset', String(offset));
  $('search-panel').setAttribute('aria-busy', 'true');
  $('search-more').disabled = true;
  try {
    const res = await get(`/api/search?${query.params}`);
    if (mine !== searchSeq) return;
    const results = Array.isArray(res && res.results) ? res.results : [];
    const had = more ? shown.results : [];
    // A message that moved between pages (a newer one arrived) is shown once.
    const seen = new Set(had.map(resultKey));
    shown = { key: query.key, results: had.concat(results.filter((x) => !seen.has(resultKey(x)))), more: !!res.more };
    if (!more) active = -1;
    renderResults();
    const n = shown.results.length;
    const where = query.where ? ` ${query.where}` : '';
    if (!n) setStatus(`No messages match “${query.q}”${where}.`);
    else setStatus(`${n} ${n === 1 ? 'message' : 'messages'}${shown.more ? ' so far' : ''} match “${query.q}”${where}.`);
  } catch (err) {
    if (mine !== searchSeq) return;
    if (!more) {
      shown = { key: '', results: [], more: false };
      active = -1;
      renderResults();
    }
    setStatus(errorText(err, query), true);
  } finally {
    if (mine === searchSeq) {
      $('search-panel').removeAttribute('aria-busy');
      $('search-more').disabled = false;
    }
  }
}

const resultKey = (x) => `${x.room}:${x.seq}`;

/** What to say when a search fails, by the error's stable code (PROTOCOL §4). */
function errorText(err, query) {
  switch (err.code) {
    case 'empty_query':
      return 'Type a word to search for: punctuation alone finds nothing.';
    case 'invalid_query':
      return 'That search is too long (at most 200 characters) or holds control characters.';
    case 'rate_limited':
      return 'Too many searches in a short time. Wait a moment, then try again.';
    case 'user_not_found':
      return `Nobody has the username “${query.author}”.`;
    case 'room_not_found':
      return 'You are no longer in that conversation: search everywhere instead.';
    case 'network':
      return 'Cannot reach the server to search. Check your connection and try again.';
    default:
      return err.message || 'The search failed. Try again.';
  }
}

function setStatus(text, error = false) {
  const el = $('search-status');
  el.textContent = text;
  el.classList.toggle('error', error);
}

// ---------------------------------------------------------------- results

function renderResults() {
  const list = $('search-results');
  list.replaceChildren(...shown.results.map(resultNode));
  list.hidden = !shown.results.length;
  $('search-more').hidden = !shown.more || shown.results.length >= MAX_OFFSET;
  setActive(Math.min(active, shown.results.length - 1));
}

function resultNode(res, i) {
  const r = store.room(res.room);
  const info = r ? r.info : null;
  const where = info ? `${info.kind === 'dm' ? '@' : info.private ? '🔒 ' : '#'}${info.name}` : `room ${res.room}`;
  const author = res.author && res.author.username ? res.author.username : 'someone';
  const text = h('p', { class: 'search-text' });
  for (const piece of highlighted(res.text || '', res.highlights, res.mentions)) {
    text.append(piece.hit ? h('mark', { text: piece.text }) : document.createTextNode(piece.text));
  }
  return h(
    'li',
    {
      role: 'option',
      id: `search-result-${i}`,
      class: 'search-result',
      'aria-selected': 'false',
      dataset: { index: String(i), roomId: String(res.room), seq: String(res.seq) },
    },
    h(
      'div',
      { class: 'search-meta' },
      h('span', { class: 'search-room', text: where }),
      h('span', { class: 'search-author', text: author }),
      h('time', { class: 'search-time', datetime: isoDate(res.ts), title: fullDate(res.ts), text: when(res.ts) }),
    ),
    text,
  );
}

/** "14:02" today, else "3 Mar, 14:02" (with the year when it is not this one). */
function when(ts) {
  const d = new Date(ts);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return timeHM(ts);
  const opts = { day: 'numeric', month: 'short' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return `${d.toLocaleDateString(undefined, opts)}, ${timeHM(ts)}`;
}

/**
 * Splits a result's text into pieces `{text, hit}` for display: `hit` for the spans
 * the server matched. `highlights` are [start, end) offsets in code points (PROTOCOL
 * §2.6). A mention token `<@ID>` of someone the message names shows as "@username"
 * (marked when a match touches it). A long text is cut to an excerpt around its first
 * match, with "…" where it was cut. Exported for the browser test.
 */
export function highlighted(text, highlights, mentions = []) {
  const cps = Array.from(String(text));
  const n = cps.length;
  const hit = new Uint8Array(n);
  let first = n;
  for (const span of Array.isArray(highlights) ? highlights : []) {
    if (!Array.isArray(span) || span.length !== 2) continue;
    const start = Math.max(0, Math.min(n, Math.trunc(Number(span[0]) || 0)));
    const end = Math.max(start, Math.min(n, Math.trunc(Number(span[1]) || 0)));
    hit.fill(1, start, end);
    if (end > start) first = Math.min(first, start);
  }
  let from = 0;
  let to = n;
  if (n > EXCERPT) {
    from = first < n ? Math.max(0, first - LEAD) : 0;
    to = Math.min(n, from + EXCERPT);
    from = Math.max(0, to - EXCERPT);
  }
  const names = new Map((mentions || []).filter((m) => m && Number.isInteger(m.id)).map((m) => [m.id, m.username]));
  const pieces = [];
  const push = (s, on) => {
    const last = pieces[pieces.length - 1];
    if (last && last.hit === on) last.text += s;
    else pieces.push({ text: s, hit: on });
  };
  if (from > 0) push('…', false);
  for (let i = from; i < to; ) {
    const token = mentionAt(cps, i, to);
    if (token && names.has(token.id)) {
      push(`@${nameOf(token.id, names.get(token.id))}`, hit.subarray(i, token.end).includes(1));
      i = token.end;
      continue;
    }
    push(cps[i], hit[i] === 1);
    i++;
  }
  if (to < n) push('…', false);
  return pieces;
}

/** A mention token `<@digits>` starting at code point `i` (ending before `limit`):
 *  `{id, end}`, or null. */
function mentionAt(cps, i, limit) {
  if (cps[i] !== '<' || cps[i + 1] !== '@') return null;
  let j = i + 2;
  while (j < limit && j - i <= 20 && cps[j] >= '0' && cps[j] <= '9') j++;
  if (j === i + 2 || j >= limit || cps[j] !== '>') return null;
  return { id: Number(cps.slice(i + 2, j).join('')), end: j + 1 };
}

/** Marks result `i` as the active one (-1: none) for the combobox. */
function setActive(i) {
  const list = $('search-results');
  active = i;
  for (const li of list.children) li.setAttribute('aria-selected', String(Number(li.dataset.index) === i));
  const input = $('search-input');
  const el = i >= 0 ? list.children[i] : null;
  if (el) {
    input.setAttribute('aria-activedescendant', el.id);
    el.scrollIntoView({ block: 'nearest' });
  } else input.removeAttribute('aria-activedescendant');
  setExpanded();
}

function setExpanded() {
  const open = !$('search-panel').hidden && shown.results.length > 0;
  $('search-input').setAttribute('aria-expanded', String(open));
}

// ---------------------------------------------------------------- opening a result

/** Opens the conversation of result `i` at its message. */
async function openResult(i) {
  const res = shown.results[i];
  if (!res) return;
  if (!store.room(res.room)) {
    setStatus('You are no longer in that conversation.', true);
    return;
  }
  setActive(i);
  closeSearch(false);
  hooks.selectRoom(res.room);
  // Jump once the conversation has settled: its newest page loaded (and, when it had
  // unread messages, the list placed at them), so nothing scrolls it away afterwards.
  await store.until(() => {
    const r = store.room(res.room);
    return !r || (r.loaded && !r.loadingHistory && !r.resyncing && r.members != null);
  }, SETTLE_MS);
  if (store.state.currentRoomId !== res.room) return;
  await new Promise((resolve) => requestAnimationFrame(resolve));
  jumpTo(res.room, res.seq);
}

