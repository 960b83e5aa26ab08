// members.js: the members panel of the open conversation. Loads the member list over
// HTTP when a room is opened (and again after joined/left notices), shows who is
// online from the live presence frames, the room's retention policy, and opens a DM
// when a member is clicked. On narrow screens the panel is an overlay toggled by
// #members-btn.
//
// Moderation (issue 15): role badges (owner, moderator), "muted" and "blocked" tags,
// and beside each other person a menu button (.member-menu-btn) opening their menu
// (ul.member-menu[role=menu] > button[role=menuitem][data-action=make-moderator|
// make-member|mute-15|mute-60|mute-1440|mute-custom|unmute|remove|ban|block|unblock]);
// which actions it lists follows my role (moderation.js memberActions).

import { $, h, syncList } from './dom.js';
import { get } from './api.js';
import * as store from './store.js';
import { debounce, fullName, retentionText } from './format.js';
import { memberActions, mutedUntil, roleOf } from './moderation.js';
import { refreshRoomSettings } from './dialogs.js';

const WIDE = '(min-width: 1100px)';
let actions = null;
/** room id -> promise of the members request in flight */
const inflight = new Map();

/** @param {object} a  openDm(userId) */
export function initMembers(a) {
  actions = a;
  store.subscribe(render);
  // Open beside the conversation on wide screens, closed (an overlay) on narrow ones;
  // follow the window when it crosses the breakpoint.
  const wide = window.matchMedia(WIDE);
  setMembersOpen(wide.matches, false);
  wide.addEventListener('change', (e) => setMembersOpen(e.matches, false));
  $('members-close').addEventListener('click', () => {
    setMembersOpen(false);
    $('members-btn').focus();
  });
  $('members-panel').addEventListener('keydown', (e) => {
    if (e.defaultPrevented) return; // a member's menu closed itself
    if (e.key === 'Escape' && !window.matchMedia(WIDE).matches) {
      setMembersOpen(false);
      $('members-btn').focus();
    }
  });
}

export function setMembersOpen(open, focus = true) {
  $('app-screen').classList.toggle('members-open', open);
  $('members-panel').hidden = !open;
  $('members-btn').setAttribute('aria-expanded', String(open));
  if (open && focus && !window.matchMedia(WIDE).matches) $('members-close').focus();
}

export function toggleMembers() {
  setMembersOpen($('members-panel').hidden);
}

/** Fetches the member list of a room (once at a time per room). */
export function loadMembers(roomId) {
  if (inflight.has(roomId)) return inflight.get(roomId);
  const p = get(`/api/rooms/${roomId}/members`)
    .then((res) => store.setMembers(roomId, res.members || []))
    .catch((err) => {
      if (store.state.currentRoomId === roomId) $('members-status').textContent = err.message;
    })
    .finally(() => inflight.delete(roomId));
  inflight.set(roomId, p);
  return p;
}

const reloadSoon = debounce((id) => {
  loadMembers(id);
  refreshRoomSettings(id);
}, 400);

function render(d) {
  const id = store.state.currentRoomId;
  const r = store.currentRoom();
  if (!r) {
    $('members').replaceChildren();
    $('member-count').textContent = '';
    $('room-retention').textContent = '';
    $('members-status').textContent = '';
    return;
  }
  const all = d.has('all') || d.has('current');
  if (all && (!r.members || r.membersStale)) loadMembers(id);
  else if (d.has(`members:${id}`) && r.membersStale) reloadSoon(id);
  if (all || d.has(`members:${id}`) || d.has(`presence:${id}`) || d.has('rooms')) renderPanel(r);
}

function renderPanel(r) {
  const me = store.state.me;
  $('room-retention').textContent = r.info.kind === 'dm' ? '' : retentionText(r.info.retention);
  if (!r.members) {
    $('members').replaceChildren();
    $('members-status').textContent = 'Loading members…';
    $('member-count').textContent = '';
    return;
  }
  const list = r.members.map((m) => ({ ...m, online: store.isOnline(r, m.id) }));
  list.sort((a, b) => Number(b.online) - Number(a.online) || fullName(a).localeCompare(fullName(b)));
  const online = list.filter((m) => m.online).length;
  $('member-count').textContent = `(${list.length}, ${online} online)`;
  $('members-status').textContent = list.length ? '' : 'No members.';
  syncList(
    $('members'),
    list,
    (m) => m.id,
    (m) => {
      const li = h('li', { class: 'member', 'data-user-id': m.id });
      const btn = h(
        'button',
        { type: 'button', class: 'member-link' },
        h('span', { class: 'dot', 'aria-hidden': 'true' }),
        h('span', { class: 'member-name' }),
        ' ',
        h('span', { class: 'member-tags' }),
        ' ',
        h('span', { class: 'member-handle' }),
        h('span', { class: 'member-sr visually-hidden' }),
      );
      btn.addEventListener('click', () => {
        const uid = Number(li.dataset.userId);
        if (!store.state.me || uid !== store.state.me.id) actions.openDm(uid);
      });
      const menuBtn = h('button', {
        type: 'button',
        class: 'member-menu-btn icon-btn',
        'aria-haspopup': 'menu',
        'aria-expanded': 'false',
        text: '⋯',
      });
      menuBtn.addEventListener('click', () => toggleMenu(li));
      li.append(btn, menuBtn);
      return li;
    },
    (li, m) => {
      const isMe = me && m.id === me.id;
      li.classList.toggle('online', m.online);
      const btn = li.firstChild;
      btn.querySelector('.dot').classList.toggle('online', m.online);
      btn.querySelector('.member-name').textContent = fullName(m);
      btn.querySelector('.member-handle').textContent = `@${m.username}`;
      const tags = [];
      const role = r.info.kind === 'dm' ? 'member' : roleOf(r, m);
      if (role === 'owner' || role === 'moderator') tags.push(role);
      if (r.info.kind !== 'dm' && mutedUntil(m)) tags.push('muted');
      if (!isMe && store.isBlocked(m.id)) tags.push('blocked');
      if (isMe) tags.push('you');
      li.dataset.role = role;
      const tagEl = btn.querySelector('.member-tags');
      const shown = [...tagEl.children].map((x) => x.textContent).join(' ');
      if (shown !== tags.join(' ')) {
        // One badge per tag; the spaces between keep them apart for screen readers.
        const parts = [];
        for (const t of tags) parts.push(h('span', { class: `member-tag tag-${t}`, text: t }), ' ');
        parts.pop();
        tagEl.replaceChildren(...parts);
      }
      btn.disabled = !!isMe;
      // The name is the visible text plus what only a screen reader needs (an
      // aria-label that differs from what is seen trips voice control users).
      btn.querySelector('.member-sr').textContent = `, ${m.online ? 'online' : 'offline'}${isMe ? '' : '. Send a direct message'}`;
      const menuBtn = li.querySelector('.member-menu-btn');
      menuBtn.hidden = !!isMe;
      menuBtn.setAttribute('aria-label', `Actions for @${m.username}`);
      menuBtn.title = `Actions for @${m.username}`;
      li._member = m;
    },
  );
  // An open menu whose person left the list goes with them.
  if (openMenu && !openMenu.li.isConnected) closeMenu(false);
}

// ---------------------------------------------------------------- a person's menu

/** The open menu: { li, menu } or null. */
let openMenu = null;

function toggleMenu(li) {
  if (openMenu && openMenu.li === li) closeMenu(true);
  else openMenuFor(li);
}

function openMenuFor(li) {
  closeMenu(false);
  const r = store.currentRoom();
  const m = li._member;
  if (!r || !m) return;
  const items = memberActions(r, m);
  if (!items.length) return;
  const btn = li.querySelector('.member-menu-btn');
  const menu = h('ul', { class: 'member-menu', role: 'menu', 'aria-label': `Actions for @${m.username}` });
  for (const it of items) {
    const item = h('button', {
      type: 'button',
      role: 'menuitem',
      tabindex: '-1',
      class: it.danger ? 'member-menu-item danger' : 'member-menu-item',
      'data-action': it.action,
      text: it.label,
    });
    item.addEventListener('click', async () => {
      closeMenu(true);
      await it.run();
      loadMembers(r.info.id);
      refreshRoomSettings(r.info.id);
    });
    menu.append(h('li', { role: 'none' }, item));
  }
  menu.addEventListener('keydown', (e) => menuKey(e, menu));
  li.append(menu);
  btn.setAttribute('aria-expanded', 'true');
  openMenu = { li, menu };
  menu.querySelector('button')?.focus();
  // Opened near the bottom of the panel: open upwards instead.
  const box = menu.getBoundingClientRect();
  const panel = $('members-panel').getBoundingClientRect();
  menu.classList.toggle('up', box.bottom > panel.bottom && box.height < li.getBoundingClientRect().top - panel.top);
  setTimeout(() => document.addEventListener('pointerdown', outside, true), 0);
}

function closeMenu(focusButton) {
  if (!openMenu) return;
  const { li, menu } = openMenu;
  openMenu = null;
  document.removeEventListener('pointerdown', outside, true);
  menu.remove();
  const btn = li.querySelector('.member-menu-btn');
  btn?.setAttribute('aria-expanded', 'false');
  if (focusButton && btn && li.isConnected) btn.focus();
}

function outside(e) {
  if (openMenu && !openMenu.li.contains(e.target)) closeMenu(false);
}

/** Arrow keys, Home/End move among the items; Escape closes (focus back on the
 *  button); Tab closes and goes on. */
function menuKey(e, menu) {
  const items = [...menu.querySelectorAll('[role=menuitem]')];
  const i = items.indexOf(document.activeElement);
  let next = null;
  if (e.key === 'ArrowDown') next = items[(i + 1) % items.length];
  else if (e.key === 'ArrowUp') next = items[(i - 1 + items.length) % items.length];
  else if (e.key === 'Home') next = items[0];
  else if (e.key === 'End') next = items[items.length - 1];
  else if (e.key === 'Escape') {
    e.preventDefault();
    e.stopPropagation();
    closeMenu(true);
    return;
  } else if (e.key === 'Tab') {
    closeMenu(false);
    return;
  }
  if (next) {
    e.preventDefault();
    next.focus();
  }
}
