// dialogs.js: the modal dialogs, built on <dialog> (focus trap and Escape for free):
// new room, browse rooms, room settings for the owner, moderators and the admin (name,
// topic, retention, read-only, members, bans with unban; issue 15), a "mute for…" dialog, account settings (profile, password) with the admin section
// (a button into the admin console, js/admin.js, which holds the registration mode and
// invite links now), and a small confirmation dialog. Each form shows the server's
// error message inline in its own error line.

import { $, h, busy, formValues, syncList, toast } from './dom.js';
import { del, get, patch, post } from './api.js';
import * as store from './store.js';
import { debounce, fullName, retentionChoice, retentionText } from './format.js';
import { myRole, roleOf } from './moderation.js';
import { openAdmin } from './admin.js';

let actions = null;

/** @param {object} a  selectRoom(id) */
export function initDialogs(a) {
  actions = a;
  for (const d of document.querySelectorAll('dialog')) {
    d.addEventListener('click', (e) => {
      if (e.target === d) d.close('cancel'); // a click on the backdrop
      if (e.target.closest('[data-close]')) d.close('cancel');
    });
  }
  initNewRoom();
  initBrowse();
  initRoomSettings();
  initSettings();
  initMute();
}

function open(dialog, focusEl) {
  if (!dialog.open) dialog.showModal();
  if (focusEl) focusEl.focus();
}

// ---------------------------------------------------------------- retention fields

/** Shows the number fields that the chosen retention policy uses. */
function syncRetentionFields(form) {
  const choice = form.elements.retention.value;
  for (const el of form.querySelectorAll('[data-ret]')) {
    const kind = el.dataset.ret;
    el.hidden = !(kind === choice || (choice === 'both' && (kind === 'messages' || kind === 'days')));
  }
}

/** Reads the policy from a form, or throws an Error with a message for the user. */
function readRetention(form) {
  const choice = form.elements.retention.value;
  if (choice === 'ephemeral') return { keep_messages: null, keep_days: null, ephemeral: true };
  const num = (name, what) => {
    const raw = form.elements[name].value.trim();
    const n = Number(raw);
    if (!raw || !Number.isInteger(n) || n < 1) {
      form.elements[name].setAttribute('aria-invalid', 'true');
      form.elements[name].focus();
      throw new Error(`Enter how many ${what} to keep (a whole number, at least 1).`);
    }
    form.elements[name].removeAttribute('aria-invalid');
    return n;
  };
  return {
    keep_messages: choice === 'messages' || choice === 'both' ? num('keep_messages', 'messages') : null,
    keep_days: choice === 'days' || choice === 'both' ? num('keep_days', 'days') : null,
    ephemeral: false,
  };
}

function fillRetention(form, r) {
  form.elements.retention.value = retentionChoice(r);
  form.elements.keep_messages.value = r && r.keep_messages != null ? r.keep_messages : 1000;
  form.elements.keep_days.value = r && r.keep_days != null ? r.keep_days : 30;
  syncRetentionFields(form);
}

// ---------------------------------------------------------------- new room

function initNewRoom() {
  const dialog = $('new-room-dialog');
  const form = $('new-room-form');
  form.elements.retention.addEventListener('change', () => syncRetentionFields(form));
  syncRetentionFields(form);
  $('new-room-btn').addEventListener('click', () => {
    $('new-room-error').textContent = '';
    open(dialog, form.elements.name);
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('new-room-error');
    err.textContent = '';
    form.elements.name.removeAttribute('aria-invalid');
    let retention;
    try {
      retention = readRetention(form);
    } catch (x) {
      err.textContent = x.message;
      return;
    }
    const v = formValues(form);
    try {
      const res = await busy(
        form,
        post('/api/rooms', { name: v.name.trim(), topic: v.topic.trim(), private: !!v.private, retention }),
      );
      store.upsertRoom(res.room);
      dialog.close('ok');
      form.reset();
      syncRetentionFields(form);
      actions.selectRoom(res.room.id);
    } catch (x) {
      err.textContent = x.message;
      const field = x.code === 'invalid_topic' ? form.elements.topic : x.code === 'invalid_retention' ? form.elements.retention : form.elements.name;
      if ((x.code && x.code.startsWith('invalid_')) || x.code === 'room_name_taken') {
        field.setAttribute('aria-invalid', 'true');
        field.focus();
      }
    }
  });
}

// ---------------------------------------------------------------- browse

function initBrowse() {
  const dialog = $('browse-dialog');
  const input = $('browse-search');
  const results = $('browse-results');
  let seq = 0;

  const search = async () => {
    const mine = ++seq;
    $('browse-status').textContent = 'Searching…';
    $('browse-error').textContent = '';
    try {
      const res = await get(`/api/rooms?q=${encodeURIComponent(input.value.trim())}`);
      if (mine !== seq) return;
      const rooms = res.rooms || [];
      syncList(results, rooms, (r) => r.id, createBrowseItem, updateBrowseItem);
      $('browse-status').textContent = rooms.length
        ? `${rooms.length} room${rooms.length === 1 ? '' : 's'}`
        : input.value.trim()
          ? 'No room matches.'
          : 'No rooms yet. Create the first one!';
    } catch (x) {
      if (mine !== seq) return;
      $('browse-status').textContent = '';
      $('browse-error').textContent = x.message;
    }
  };
  input.addEventListener('input', debounce(search, 250));
  $('browse-btn').addEventListener('click', () => {
    open(dialog, input);
    search();
  });

  results.addEventListener('click', async (e) => {
    const btn = e.target.closest('button.join-btn');
    if (!btn) return;
    const id = Number(btn.closest('[data-room-id]').dataset.roomId);
    if (store.room(id)) {
      dialog.close('ok');
      actions.selectRoom(id);
      return;
    }
    btn.disabled = true;
    $('browse-error').textContent = '';
    try {
      const res = await post(`/api/rooms/${id}/join`);
      store.upsertRoom(res.room);
      dialog.close('ok');
      actions.selectRoom(res.room.id);
    } catch (x) {
      $('browse-error').textContent = x.message;
    } finally {
      btn.disabled = false;
    }
  });
}

function createBrowseItem() {
  return h(
    'li',
    { class: 'browse-item' },
    h(
      'div',
      { class: 'browse-info' },
      h('span', { class: 'browse-name' }),
      h('span', { class: 'browse-topic' }),
      h('span', { class: 'browse-meta' }),
    ),
    h('button', { type: 'button', class: 'join-btn' }),
  );
}

function updateBrowseItem(li, r) {
  li.dataset.roomId = String(r.id);
  const member = r.is_member || !!store.room(r.id);
  li.querySelector('.browse-name').textContent = `${r.private ? '🔒 ' : '#'}${r.name}`;
  li.querySelector('.browse-topic').textContent = r.topic || '';
  const members = `${r.member_count} member${r.member_count === 1 ? '' : 's'}`;
  li.querySelector('.browse-meta').textContent = [members, r.private ? 'private' : 'public', retentionText(r.retention)]
    .filter(Boolean)
    .join(' · ');
  const btn = li.querySelector('.join-btn');
  // A room I am banned from is listed, but a join would only be refused.
  const banned = !member && !!r.banned;
  const label = member ? 'Open' : banned ? 'Banned' : 'Join';
  btn.textContent = label;
  btn.disabled = banned;
  btn.title = banned ? 'You are banned from this room.' : '';
  btn.setAttribute('aria-label', `${label} ${r.name}`);
}

// ---------------------------------------------------------------- room settings

let settingsRoomId = null;

/** Opens the settings of the current room (its owner, moderators and the admin). */
export function openRoomSettings() {
  const r = store.currentRoom();
  if (!r) return;
  settingsRoomId = r.info.id;
  const form = $('room-settings-form');
  $('room-settings-heading').textContent = `Settings of #${r.info.name}`;
  $('room-settings-error').textContent = '';
  $('room-settings-ok').textContent = '';
  $('room-members-error').textContent = '';
  form.elements.name.value = r.info.name || '';
  form.elements.topic.value = r.info.topic || '';
  form.elements.read_only.checked = !!r.info.read_only;
  fillRetention(form, r.info.retention);
  // Owners (and the admin) manage members of public rooms too: adding someone
  // saves them a search, and removing someone ends a disruption (they may join a
  // public room again; a private one needs a new invitation). Moderators remove
  // but do not invite (PROTOCOL §3.10).
  $('room-members-admin').hidden = false;
  $('invite-member-form').hidden = myRole(r) !== 'owner';
  refreshManagedMembers();
  refreshBans();
  open($('room-settings-dialog'), form.elements.name);
}

async function refreshManagedMembers() {
  const id = settingsRoomId;
  try {
    const res = await get(`/api/rooms/${id}/members`);
    if (id !== settingsRoomId) return;
    store.setMembers(id, res.members || []);
    const me = store.state.me;
    const r = store.room(id);
    syncList(
      $('room-members-manage'),
      res.members || [],
      (m) => m.id,
      () =>
        h('li', { class: 'manage-item' }, h('span', { class: 'manage-name' }), h('button', { type: 'button', class: 'remove-member small-btn danger' })),
      (li, m) => {
        li.dataset.userId = String(m.id);
        li.querySelector('.manage-name').textContent = `${fullName(m)} (@${m.username})`;
        const btn = li.querySelector('.remove-member');
        const self = (me && m.id === me.id) || (r && r.info.owner === m.id);
        // Only people ranking below me (a moderator cannot remove another one).
        const below = r && rankOf(roleOf(r, m)) < rankOf(myRole(r));
        btn.hidden = self || !below;
        btn.textContent = 'Remove';
        btn.setAttribute('aria-label', `Remove ${m.username} from the room`);
        btn.dataset.userId = String(m.id);
      },
    );
  } catch (x) {
    $('room-members-error').textContent = x.message;
  }
}

function initRoomSettings() {
  const form = $('room-settings-form');
  form.elements.retention.addEventListener('change', () => syncRetentionFields(form));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('room-settings-error');
    const ok = $('room-settings-ok');
    err.textContent = '';
    ok.textContent = '';
    let retention;
    try {
      retention = readRetention(form);
    } catch (x) {
      err.textContent = x.message;
      return;
    }
    const body = { topic: form.elements.topic.value.trim(), retention };
    // Name and read-only only when changed: each change leaves a notice in the room.
    const r = store.room(settingsRoomId);
    const name = form.elements.name.value.trim().replace(/^#/, '');
    if (!name) {
      err.textContent = 'The room needs a name.';
      form.elements.name.focus();
      return;
    }
    if (r && name !== r.info.name) body.name = name;
    const readOnly = form.elements.read_only.checked;
    if (r && readOnly !== !!r.info.read_only) body.read_only = readOnly;
    try {
      const res = await busy(form, patch(`/api/rooms/${settingsRoomId}`, body));
      if (res && res.room) store.upsertRoom(res.room);
      if (res && res.room) $('room-settings-heading').textContent = `Settings of #${res.room.name}`;
      ok.textContent = 'Saved.';
    } catch (x) {
      err.textContent = x.message;
    }
  });

  const invite = $('invite-member-form');
  invite.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('room-members-error');
    err.textContent = '';
    const username = invite.elements.username.value.trim().replace(/^@/, '');
    if (!username) {
      err.textContent = 'Enter the username of the person to invite.';
      invite.elements.username.focus();
      return;
    }
    try {
      await busy(invite, post(`/api/rooms/${settingsRoomId}/members`, { username }));
      invite.reset();
      toast(`Invited @${username}.`);
      refreshManagedMembers();
    } catch (x) {
      err.textContent = x.message;
      invite.elements.username.focus();
    }
  });

  $('room-members-manage').addEventListener('click', async (e) => {
    const btn = e.target.closest('button.remove-member');
    if (!btn) return;
    btn.disabled = true;
    $('room-members-error').textContent = '';
    try {
      await del(`/api/rooms/${settingsRoomId}/members/${btn.dataset.userId}`);
      refreshManagedMembers();
    } catch (x) {
      $('room-members-error').textContent = x.message;
      btn.disabled = false;
    }
  });

  $('room-bans').addEventListener('click', async (e) => {
    const btn = e.target.closest('button.unban-btn');
    if (!btn) return;
    btn.disabled = true;
    $('room-bans-error').textContent = '';
    try {
      await del(`/api/rooms/${settingsRoomId}/bans/${btn.dataset.userId}`);
      toast(`@${btn.dataset.username} is unbanned.`);
      refreshBans();
    } catch (x) {
      $('room-bans-error').textContent = x.message;
      btn.disabled = false;
    }
  });
}

const RANKS = { owner: 2, moderator: 1, member: 0 };
const rankOf = (role) => RANKS[role] ?? 0;

/** The banned list of the room whose settings are open, with an Unban button each. */
async function refreshBans() {
  const id = settingsRoomId;
  $('room-bans-error').textContent = '';
  try {
    const res = await get(`/api/rooms/${id}/bans`);
    if (id !== settingsRoomId) return;
    const users = res.users || [];
    $('room-bans-empty').hidden = users.length > 0;
    syncList(
      $('room-bans'),
      users,
      (u) => u.id,
      () => h('li', { class: 'manage-item' }, h('span', { class: 'manage-name' }), h('button', { type: 'button', class: 'unban-btn small-btn' })),
      (li, u) => {
        li.dataset.userId = String(u.id);
        li.querySelector('.manage-name').textContent = `${fullName(u)} (@${u.username})`;
        const btn = li.querySelector('.unban-btn');
        btn.textContent = 'Unban';
        btn.disabled = false;
        btn.setAttribute('aria-label', `Unban ${u.username}`);
        btn.dataset.userId = String(u.id);
        btn.dataset.username = u.username;
      },
    );
  } catch (x) {
    $('room-bans-error').textContent = x.message;
  }
}

/** Refreshes the open room settings' lists (after a ban, kick or unban elsewhere). */
export function refreshRoomSettings(roomId) {
  if (!$('room-settings-dialog').open || roomId !== settingsRoomId) return;
  refreshManagedMembers();
  refreshBans();
}

// ---------------------------------------------------------------- account + admin

function initSettings() {
  const dialog = $('settings-dialog');
  const profile = $('profile-form');
  const password = $('password-form');
  const clear = () => {
    for (const id of ['profile-error', 'profile-ok', 'password-error', 'password-ok']) $(id).textContent = '';
  };

  $('settings-btn').addEventListener('click', () => {
    const me = store.state.me;
    if (!me) return;
    clear();
    for (const k of ['first_name', 'last_name', 'email', 'username']) profile.elements[k].value = me[k] || '';
    password.reset();
    $('admin-section').hidden = !me.is_admin;
    open(dialog, profile.elements.first_name);
  });

  profile.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear();
    const me = store.state.me;
    const body = {};
    for (const k of ['first_name', 'last_name', 'email', 'username']) {
      const v = profile.elements[k].value.trim();
      if (v !== (me[k] || '')) body[k] = v;
    }
    if (!Object.keys(body).length) {
      $('profile-ok').textContent = 'Nothing changed.';
      return;
    }
    if (body.email !== undefined) {
      const current = profile.elements.current_password.value;
      if (!current) {
        $('profile-error').textContent = 'Enter your current password to change your email.';
        profile.elements.current_password.focus();
        return;
      }
      body.current_password = current;
    }
    try {
      const res = await busy(profile, patch('/api/me', body));
      profile.elements.current_password.value = '';
      store.setMe(res.user);
      $('profile-ok').textContent = 'Profile saved.';
    } catch (x) {
      $('profile-error').textContent = x.message;
    }
  });

  password.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear();
    const v = formValues(password);
    if (!v.current_password || !v.new_password) {
      $('password-error').textContent = 'Enter your current password and a new one.';
      return;
    }
    try {
      await busy(password, post('/api/me/password', { current_password: v.current_password, new_password: v.new_password }));
      password.reset();
      $('password-ok').textContent = 'Password changed.';
    } catch (x) {
      $('password-error').textContent = x.message;
    }
  });

  // The registration mode and invite links moved to the admin console (admin.js).
  $('open-admin-btn').addEventListener('click', () => {
    dialog.close('ok');
    openAdmin('settings');
  });
}

// ---------------------------------------------------------------- confirm

/** Asks a yes/no question in a modal; resolves true when confirmed. */
export function confirmDialog(text, okLabel = 'Confirm') {
  const d = $('confirm-dialog');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    open(d, $('confirm-cancel'));
  });
}

// ---------------------------------------------------------------- mute for…

let muteResolve = null;

function initMute() {
  const d = $('mute-dialog');
  const form = $('mute-form');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const amount = Number(form.elements.amount.value);
    const minutes = amount * Number(form.elements.unit.value);
    if (!Number.isInteger(amount) || amount < 1 || minutes > 43200) {
      form.elements.amount.setAttribute('aria-invalid', 'true');
      $('mute-error').textContent = 'Enter a whole number, at most 30 days in all.';
      form.elements.amount.focus();
      return;
    }
    const done = muteResolve;
    muteResolve = null;
    d.close('ok');
    done?.(minutes);
  });
  d.addEventListener('close', () => {
    const done = muteResolve;
    muteResolve = null;
    done?.(null);
  });
}

/** Asks for how long to mute @username; resolves the minutes (1..43200) or null. */
export function muteDialog(username) {
  const form = $('mute-form');
  $('mute-heading').textContent = `Mute @${username}`;
  $('mute-error').textContent = '';
  form.elements.amount.removeAttribute('aria-invalid');
  return new Promise((resolve) => {
    muteResolve = resolve;
    open($('mute-dialog'), form.elements.amount);
  });
}
