// members.js: the members panel of the open conversation. Loads the member list over
// HTTP when a room is opened (and again after joined/left notices), shows who is
// online from the live presence frames, the room's retention policy, and opens a DM
// when a member is clicked. On narrow screens the panel is an overlay toggled by
// #members-btn.

import { $, h, syncList } from './dom.js';
import { get } from './api.js';
import * as store from './store.js';
import { debounce, fullName, retentionText } from './format.js';

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

const reloadSoon = debounce((id) => loadMembers(id), 400);

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
      li.append(btn);
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
      if (r.info.owner === m.id && r.info.kind !== 'dm') tags.push('owner');
      if (isMe) tags.push('you');
      btn.querySelector('.member-tags').textContent = tags.join(' · ');
      btn.disabled = !!isMe;
      // The name is the visible text plus what only a screen reader needs (an
      // aria-label that differs from what is seen trips voice control users).
      btn.querySelector('.member-sr').textContent = `, ${m.online ? 'online' : 'offline'}${isMe ? '' : '. Send a direct message'}`;
    },
  );
}
