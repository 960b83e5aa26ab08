// sidebar.js: the left column. Renders the room and DM lists from the store (unread
// badges, online dots for DM peers, the open conversation), the people directory
// search that opens DMs, the notification opt-in button, and the phone-width menu
// (the sidebar slides over the conversation behind #menu-btn).

import { $, h, syncList } from './dom.js';
import { get } from './api.js';
import { debounce, fullName } from './format.js';
import * as store from './store.js';
import * as notify from './notify.js';
import { decorateConv } from './mentions.js';

let actions = null;

/**
 * @param {object} a
 *   selectRoom(id), openDm(userId)
 */
export function initSidebar(a) {
  actions = a;
  store.subscribe(render);

  $('menu-btn').addEventListener('click', () => setOpen(!isOpen()));
  $('scrim').addEventListener('click', () => setOpen(false));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && isOpen() && !document.querySelector('dialog[open]')) {
      setOpen(false);
      $('menu-btn').focus();
    }
  });

  $('notify-btn').addEventListener('click', async () => {
    await notify.toggle();
    renderNotify();
  });

  initUserSearch();
}

// ---------------------------------------------------------------- phone menu

const isOpen = () => $('app-screen').classList.contains('sidebar-open');

/** Opens or closes the sidebar over the conversation (narrow screens only). */
export function setOpen(open) {
  $('app-screen').classList.toggle('sidebar-open', open);
  $('menu-btn').setAttribute('aria-expanded', String(open));
  $('scrim').hidden = !open;
  if (open) {
    const target = document.querySelector('#sidebar .conv-list [aria-current="true"]') || $('new-room-btn');
    target?.focus();
  }
}

// ---------------------------------------------------------------- lists

function render(d) {
  if (d.has('all') || d.has('me')) renderMe();
  if (d.has('all') || d.has('rooms') || d.has('current')) renderLists();
  if (d.has('all')) renderNotify();
}

function renderMe() {
  const me = store.state.me;
  if (!me) return;
  $('me-name').textContent = fullName(me);
  $('me-username').textContent = `@${me.username}`;
  $('me-initial').textContent = (me.first_name || me.username || '?').slice(0, 1).toUpperCase();
}

export function renderNotify() {
  const d = notify.describe(notify.status());
  const b = $('notify-btn');
  b.textContent = d.label;
  b.disabled = d.disabled;
  b.setAttribute('aria-pressed', String(d.pressed));
}

const byName = (a, b) => a.info.name.localeCompare(b.info.name, undefined, { sensitivity: 'base' });

function renderLists() {
  const all = [...store.state.rooms.values()];
  const rooms = all.filter((r) => r.info.kind !== 'dm').sort(byName);
  const dms = all.filter((r) => r.info.kind === 'dm').sort(byName);
  syncList($('room-list'), rooms, (r) => r.info.id, createItem, updateItem);
  syncList($('dm-list'), dms, (r) => r.info.id, createItem, updateItem);
  $('room-list-empty').hidden = rooms.length > 0;
  $('dm-list-empty').hidden = dms.length > 0;

  const total = store.totalUnread();
  const badge = $('menu-unread');
  badge.textContent = total ? String(total) : '';
  badge.hidden = !total;
}

function createItem(r) {
  const li = h('li', { class: 'conv-item', 'data-room-id': r.info.id });
  const btn = h(
    'button',
    { type: 'button', class: 'conv-link' },
    h('span', { class: 'conv-icon', 'aria-hidden': 'true' }),
    h('span', { class: 'name' }),
    h('span', { class: 'unread', hidden: true, 'aria-hidden': 'true' }),
    h('span', { class: 'conv-sr visually-hidden' }),
  );
  btn.addEventListener('click', () => actions.selectRoom(Number(li.dataset.roomId)));
  li.append(btn);
  return li;
}

function updateItem(li, r) {
  const info = r.info;
  const dm = info.kind === 'dm';
  const current = store.state.currentRoomId === info.id;
  const unread = current && store.state.reading ? 0 : info.unread || 0;
  const online = dm && info.peer ? store.isOnline(r, info.peer.id) : false;
  li.classList.toggle('active', current);
  li.classList.toggle('has-unread', unread > 0);
  li.classList.toggle('online', online);
  li.classList.toggle('dm', dm);
  const btn = li.firstChild;
  if (current) btn.setAttribute('aria-current', 'true');
  else btn.removeAttribute('aria-current');
  const icon = btn.querySelector('.conv-icon');
  icon.textContent = dm ? '' : info.private ? '🔒' : '#';
  icon.className = dm ? `conv-icon dot${online ? ' online' : ''}` : 'conv-icon';
  btn.querySelector('.name').textContent = info.name;
  const badge = btn.querySelector('.unread');
  badge.textContent = unread ? String(unread > 999 ? '999+' : unread) : '';
  badge.hidden = !unread;
  // The name is the visible room name followed by what only a screen reader needs, in
  // a visually hidden span (the badges are hidden from it: their counts are said in
  // words there). Not an aria-label: one that differs from the text seen ("max1" is
  // what is drawn for "max" and a badge "1") trips voice control users (axe:
  // label-content-name-mismatch).
  const parts = [info.name];
  if (unread) parts.push(`${badge.textContent} unread`);
  if (dm) parts.push('direct message', online ? 'online' : 'offline');
  decorateConv(li, r, parts); // mention badge, muted look (D3)
  btn.querySelector('.mention-badge')?.setAttribute('aria-hidden', 'true');
  btn.querySelector('.conv-sr').textContent = parts.length > 1 ? `, ${parts.slice(1).join(', ')}` : '';
  btn.removeAttribute('aria-label');
}

// ---------------------------------------------------------------- people

/** Counter that lets an answer tell whether a newer search (or a clear) came since. */
let searchSeq = 0;
/** The debounced search, cancelled when the search is cleared. */
let searchLater = null;

function initUserSearch() {
  const input = $('user-search');
  const results = $('user-results');
  const status = $('user-search-status');

  const search = async () => {
    const q = input.value.trim();
    const mine = ++searchSeq;
    status.textContent = 'Searching…';
    try {
      const res = await get(`/api/users?q=${encodeURIComponent(q)}`);
      if (mine !== searchSeq) return; // a newer search is running
      const me = store.state.me;
      const users = (res.users || []).filter((u) => !me || u.id !== me.id);
      syncList(results, users, (u) => u.id, createUser, updateUser);
      status.textContent = users.length ? '' : q ? `Nobody matches “${q}”.` : 'No one else here yet.';
    } catch (err) {
      if (mine !== searchSeq) return;
      status.textContent = err.message;
    }
  };
  searchLater = debounce(search, 250);
  input.addEventListener('input', searchLater);
  input.addEventListener('focus', () => {
    if (!results.children.length) search();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && input.value) {
      e.stopPropagation();
      input.value = '';
      search();
    } else if (e.key === 'ArrowDown') {
      e.preventDefault();
      results.querySelector('button')?.focus();
    }
  });
  results.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const buttons = [...results.querySelectorAll('button')];
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    if (e.key === 'ArrowUp' && i === 0) input.focus();
    else buttons[Math.max(0, Math.min(buttons.length - 1, i + (e.key === 'ArrowDown' ? 1 : -1)))].focus();
  });
}

/** Clears the people search (after a DM was opened). */
export function clearUserSearch() {
  searchLater?.cancel();
  searchSeq++;
  $('user-search').value = '';
  $('user-results').replaceChildren();
  $('user-search-status').textContent = '';
}

function createUser(u) {
  const li = h('li', { class: 'user-item', 'data-user-id': u.id });
  const btn = h(
    'button',
    { type: 'button', class: 'user-link' },
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('span', { class: 'user-name' }),
    h('span', { class: 'user-handle' }),
  );
  btn.addEventListener('click', () => actions.openDm(Number(li.dataset.userId)));
  li.append(btn);
  return li;
}

function updateUser(li, u) {
  li.classList.toggle('online', !!u.online);
  const btn = li.firstChild;
  btn.querySelector('.dot').classList.toggle('online', !!u.online);
  btn.querySelector('.user-name').textContent = fullName(u);
  btn.querySelector('.user-handle').textContent = `@${u.username}`;
  btn.setAttribute('aria-label', `${fullName(u)} @${u.username}, ${u.online ? 'online' : 'offline'}, send a direct message`);
}
