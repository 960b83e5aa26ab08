// admin.js: the admin console (issue 15; PROTOCOL.md §2.5 and §2.10). A full-screen
// modal <dialog> that only admins reach (#admin-btn in the sidebar, or the button in
// Settings): Users (search, sort, paging; disable/enable, promote/demote, a single-use
// password reset link, sign out everywhere), Rooms (public and private with member
// counts; archive/unarchive, delete after typing the room's name), Settings
// (registration mode, invite links, the default room), Server facts and the Audit
// log (newest first, "Older entries" pages by `before`).
//
// The markup is built here rather than in index.html, so the console is one module;
// every user-provided string goes in with textContent (dom.js `h`). Tables are real
// <table>s with column headers; on a phone each row becomes a card (CSS), the
// header's name repeated before each cell from data-label.
//
// Stable selectors for tests (besides the ids below):
//   #admin-btn  #admin-console  #admin-close  .admin-tab[data-tab=users|rooms|settings|server|audit]
//   #admin-user-q  #admin-user-sort  #admin-users-body > tr[data-user-id] (.admin-role, .admin-state)
//       button.admin-act[data-act=disable|enable|promote|demote|reset|sessions]
//       #admin-users-prev #admin-users-next #admin-users-status #admin-users-error
//       #admin-reset-result #admin-reset-url #admin-copy-reset #admin-reset-note
//   #admin-room-q  #admin-rooms-body > tr[data-room-id] (.admin-room-state)
//       button.admin-act[data-act=archive|unarchive|delete]  #admin-rooms-error
//       #admin-delete-dialog #admin-delete-name #admin-delete-ok
//   #registration-form [name=mode] (#registration-mode)  #create-invite-btn  #invite-url
//       #copy-invite-btn  #admin-ok  #admin-error  #default-room-form #default-room-select
//       #default-room-ok #default-room-error
//   #admin-server-facts (dl; dd[data-fact=…])  #admin-server-refresh  #admin-server-error
//   #admin-audit-body > tr[data-audit-id] (.audit-action .audit-actor .audit-target)
//       #admin-audit-more  #admin-audit-status  #admin-audit-error

import { $, h, busy, toast } from './dom.js';
import { del, get, post, put } from './api.js';
import * as store from './store.js';
import { debounce, fullDate, fullName } from './format.js';
import { confirmDialog } from './dialogs.js';

const PAGE = 25;
const TABS = [
  ['users', 'Users'],
  ['rooms', 'Rooms'],
  ['settings', 'Settings'],
  ['server', 'Server'],
  ['audit', 'Audit log'],
];

const users = { offset: 0, total: 0, seq: 0 };
const rooms = { offset: 0, total: 0, seq: 0 };
let audit = { before: null, seq: 0 };
let current = 'users';
let built = false;

// ---------------------------------------------------------------- building

/** A table with a caption and column headers; returns [wrap, tbody]. */
function table(id, caption, headers) {
  const body = h('tbody', { id });
  const t = h(
    'table',
    { class: 'admin-table' },
    h('caption', { class: 'visually-hidden', text: caption }),
    h('thead', null, h('tr', null, headers.map((c) => h('th', { scope: 'col', text: c })))),
    body,
  );
  return [h('div', { class: 'admin-table-wrap' }, t), body];
}

/** A cell whose column name the phone layout shows before it. */
const cell = (label, ...children) => h('td', { 'data-label': label }, ...children);

function pager(prefix) {
  return h(
    'div',
    { class: 'admin-pager' },
    h('button', { type: 'button', id: `${prefix}-prev`, text: 'Previous page' }),
    h('span', { id: `${prefix}-page`, class: 'muted' }),
    h('button', { type: 'button', id: `${prefix}-next`, text: 'Next page' }),
  );
}

function buildUsers() {
  const sort = h(
    'select',
    { id: 'admin-user-sort' },
    h('option', { value: 'last_seen', text: 'Last seen' }),
    h('option', { value: 'name', text: 'Name' }),
    h('option', { value: 'created', text: 'Newest accounts' }),
  );
  const [wrap] = table('admin-users-body', 'Users', ['User', 'Email', 'Role', 'Status', 'Last seen', 'Created', 'Actions']);
  return h(
    'section',
    { id: 'admin-panel-users', class: 'admin-panel', role: 'tabpanel', 'aria-labelledby': 'admin-tab-users' },
    h(
      'form',
      { class: 'admin-filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('div', null, h('label', { for: 'admin-user-q', text: 'Find a user' }),
        h('input', { id: 'admin-user-q', type: 'search', maxlength: '100', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'Name, username or email' })),
      h('div', null, h('label', { for: 'admin-user-sort', text: 'Sort by' }), sort),
    ),
    h('p', { id: 'admin-users-status', class: 'muted', role: 'status' }),
    h('p', { id: 'admin-users-error', class: 'form-error', role: 'alert' }),
    h(
      'div',
      { id: 'admin-reset-result', class: 'admin-reset', hidden: true },
      h('label', { for: 'admin-reset-url', id: 'admin-reset-label', text: 'Password reset link' }),
      h('div', { class: 'inline-row' },
        h('input', { id: 'admin-reset-url', readonly: true, 'aria-describedby': 'admin-reset-note' }),
        h('button', { type: 'button', id: 'admin-copy-reset', text: 'Copy' })),
      h('p', { id: 'admin-reset-note', class: 'hint' }),
    ),
    wrap,
    pager('admin-users'),
  );
}

function buildRooms() {
  const [wrap] = table('admin-rooms-body', 'Rooms', ['Room', 'Visibility', 'Owner', 'Members', 'State', 'Created', 'Actions']);
  return h(
    'section',
    { id: 'admin-panel-rooms', class: 'admin-panel', role: 'tabpanel', 'aria-labelledby': 'admin-tab-rooms', hidden: true },
    h(
      'form',
      { class: 'admin-filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('div', null, h('label', { for: 'admin-room-q', text: 'Find a room' }),
        h('input', { id: 'admin-room-q', type: 'search', maxlength: '100', autocomplete: 'off', spellcheck: 'false', placeholder: 'Name or topic' })),
    ),
    h('p', { id: 'admin-rooms-status', class: 'muted', role: 'status' }),
    h('p', { id: 'admin-rooms-error', class: 'form-error', role: 'alert' }),
    wrap,
    pager('admin-rooms'),
  );
}

function buildSettings() {
  const mode = h(
    'select',
    { id: 'registration-mode', name: 'mode' },
    h('option', { value: 'open', text: 'Anyone (open)' }),
    h('option', { value: 'invite', text: 'Invite link only' }),
    h('option', { value: 'closed', text: 'Nobody (closed)' }),
  );
  return h(
    'section',
    { id: 'admin-panel-settings', class: 'admin-panel', role: 'tabpanel', 'aria-labelledby': 'admin-tab-settings', hidden: true },
    h('h3', { text: 'Sign-up' }),
    h('form', { id: 'registration-form', class: 'inline-form', novalidate: true },
      h('label', { for: 'registration-mode', text: 'Who may sign up' }),
      h('div', { class: 'inline-row' }, mode, h('button', { type: 'submit', text: 'Save' }))),
    h('div', { class: 'invite-box' },
      h('button', { type: 'button', id: 'create-invite-btn', 'aria-describedby': 'invite-hint', text: 'Create invite link' }),
      h('p', { id: 'invite-hint', class: 'hint', text: 'A link lets one person sign up within 7 days, whatever the mode: with “Nobody (closed)”, links are the only way in.' }),
      h('div', { class: 'inline-row', id: 'invite-result', hidden: true },
        h('label', { for: 'invite-url', class: 'visually-hidden', text: 'Invite link' }),
        h('input', { id: 'invite-url', readonly: true }),
        h('button', { type: 'button', id: 'copy-invite-btn', text: 'Copy' }))),
    h('p', { id: 'admin-error', class: 'form-error', role: 'alert' }),
    h('p', { id: 'admin-ok', class: 'form-ok', role: 'status' }),
    h('h3', { text: 'Default room' }),
    h('form', { id: 'default-room-form', class: 'inline-form', novalidate: true },
      h('label', { for: 'default-room-select', text: 'Every new account joins' }),
      h('div', { class: 'inline-row' },
        h('select', { id: 'default-room-select', 'aria-describedby': 'default-room-hint' }),
        h('button', { type: 'submit', text: 'Save' }))),
    h('p', { id: 'default-room-hint', class: 'hint', text: 'A public room, so that an invited person does not land in an empty app.' }),
    h('p', { id: 'default-room-error', class: 'form-error', role: 'alert' }),
    h('p', { id: 'default-room-ok', class: 'form-ok', role: 'status' }),
  );
}

function buildServer() {
  return h(
    'section',
    { id: 'admin-panel-server', class: 'admin-panel', role: 'tabpanel', 'aria-labelledby': 'admin-tab-server', hidden: true },
    h('dl', { id: 'admin-server-facts', class: 'admin-facts' }),
    h('p', { id: 'admin-server-error', class: 'form-error', role: 'alert' }),
    h('button', { type: 'button', id: 'admin-server-refresh', text: 'Refresh' }),
  );
}

function buildAudit() {
  const [wrap] = table('admin-audit-body', 'Audit log, newest first', ['When', 'Who', 'Action', 'Target', 'Details']);
  return h(
    'section',
    { id: 'admin-panel-audit', class: 'admin-panel', role: 'tabpanel', 'aria-labelledby': 'admin-tab-audit', hidden: true },
    h('p', { id: 'admin-audit-status', class: 'muted', role: 'status' }),
    h('p', { id: 'admin-audit-error', class: 'form-error', role: 'alert' }),
    wrap,
    h('button', { type: 'button', id: 'admin-audit-more', text: 'Older entries', hidden: true }),
  );
}

function buildDeleteDialog() {
  return h(
    'dialog',
    { id: 'admin-delete-dialog', 'aria-labelledby': 'admin-delete-heading' },
    h(
      'form',
      { id: 'admin-delete-form', novalidate: true },
      h('h2', { id: 'admin-delete-heading', text: 'Delete a room' }),
      h('p', { id: 'admin-delete-text' }),
      h('label', { for: 'admin-delete-name', id: 'admin-delete-label' }),
      h('input', { id: 'admin-delete-name', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' }),
      h('p', { id: 'admin-delete-error', class: 'form-error', role: 'alert' }),
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'cancel', 'data-close': true, text: 'Cancel' }),
        h('button', { type: 'submit', class: 'primary danger', id: 'admin-delete-ok', disabled: true, text: 'Delete for everyone' })),
    ),
  );
}

function build() {
  const tabs = h(
    'div',
    { class: 'admin-tabs', role: 'tablist', 'aria-label': 'Admin console sections' },
    TABS.map(([key, label]) =>
      h('button', {
        type: 'button',
        role: 'tab',
        id: `admin-tab-${key}`,
        class: 'admin-tab',
        'aria-controls': `admin-panel-${key}`,
        'aria-selected': key === current ? 'true' : 'false',
        tabindex: key === current ? '0' : '-1',
        dataset: { tab: key },
        text: label,
      }),
    ),
  );
  const dialog = h(
    'dialog',
    { id: 'admin-console', class: 'admin-console', 'aria-labelledby': 'admin-title' },
    h(
      'div',
      { class: 'admin-body' },
      h('header', { class: 'admin-head' },
        h('h2', { id: 'admin-title', text: 'Admin console' }),
        h('button', { type: 'button', id: 'admin-close', text: 'Close' })),
      tabs,
      buildUsers(),
      buildRooms(),
      buildSettings(),
      buildServer(),
      buildAudit(),
    ),
  );
  const host = $('app-screen') || document.body;
  host.append(dialog, buildDeleteDialog());
}

// ---------------------------------------------------------------- tabs

function selectTab(key, focus = false) {
  current = key;
  for (const [k] of TABS) {
    const tab = $(`admin-tab-${k}`);
    const on = k === key;
    tab.setAttribute('aria-selected', on ? 'true' : 'false');
    tab.tabIndex = on ? 0 : -1;
    $(`admin-panel-${k}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (key === 'users') loadUsers();
  else if (key === 'rooms') loadRooms();
  else if (key === 'settings') loadSettings();
  else if (key === 'server') loadServer();
  else if (key === 'audit') loadAudit(true);
}

function initTabs() {
  const list = document.querySelector('#admin-console .admin-tabs');
  list.addEventListener('click', (e) => {
    const tab = e.target.closest('.admin-tab');
    if (tab) selectTab(tab.dataset.tab);
  });
  // Arrow keys move between tabs (the WAI-ARIA tabs pattern); Home/End to the ends.
  list.addEventListener('keydown', (e) => {
    const keys = TABS.map(([k]) => k);
    let i = keys.indexOf(current);
    if (e.key === 'ArrowRight') i = (i + 1) % keys.length;
    else if (e.key === 'ArrowLeft') i = (i + keys.length - 1) % keys.length;
    else if (e.key === 'Home') i = 0;
    else if (e.key === 'End') i = keys.length - 1;
    else return;
    e.preventDefault();
    selectTab(keys[i], true);
  });
}

// ---------------------------------------------------------------- helpers

/** A date short enough for a table cell (the full one is in the title of audit rows). */
const when = (ts) => (ts ? new Date(ts).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : 'never');
const plural = (n, one, many = `${one}s`) => `${n.toLocaleString()} ${n === 1 ? one : many}`;

/** An action button of a row; its accessible name is its visible label plus whom it
 *  acts on ("Make admin: @cleo"), so speech and voice control both find it. */
function actButton(act, label, whom, danger = false) {
  return h('button', {
    type: 'button',
    class: `small-btn admin-act${danger ? ' danger' : ''}`,
    dataset: { act },
    'aria-label': `${label}: ${whom}`,
    text: label,
  });
}

function setPager(prefix, page) {
  const pages = Math.max(1, Math.ceil(page.total / PAGE));
  const n = Math.floor(page.offset / PAGE) + 1;
  $(`${prefix}-page`).textContent = `Page ${n} of ${pages}`;
  $(`${prefix}-prev`).disabled = page.offset <= 0;
  $(`${prefix}-next`).disabled = page.offset + PAGE >= page.total;
}

async function copyFrom(input, okEl) {
  try {
    // The clipboard API needs a secure context; select-and-copy works elsewhere.
    if (navigator.clipboard && window.isSecureContext) await navigator.clipboard.writeText(input.value);
    else {
      input.select();
      document.execCommand('copy');
    }
    okEl.textContent = 'Copied.';
  } catch {
    input.select();
    okEl.textContent = 'Press Ctrl+C (⌘C) to copy.';
  }
}

// ---------------------------------------------------------------- users

async function loadUsers() {
  const mine = ++users.seq;
  const q = $('admin-user-q').value.trim();
  const sort = $('admin-user-sort').value;
  $('admin-users-error').textContent = '';
  $('admin-panel-users').setAttribute('aria-busy', 'true');
  try {
    const res = await get(`/api/admin/users?q=${encodeURIComponent(q)}&sort=${sort}&offset=${users.offset}&limit=${PAGE}`);
    if (mine !== users.seq) return;
    users.total = res.total ?? (res.users || []).length;
    renderUsers(res.users || []);
    const shown = (res.users || []).length;
    $('admin-users-status').textContent = shown
      ? `${plural(users.total, 'user')}${q ? ` ${users.total === 1 ? 'matches' : 'match'} “${q}”` : ''}.`
      : q
        ? `No user matches “${q}”.`
        : 'No users.';
    setPager('admin-users', users);
  } catch (x) {
    if (mine !== users.seq) return;
    $('admin-users-error').textContent = x.message;
  } finally {
    if (mine === users.seq) $('admin-panel-users').removeAttribute('aria-busy');
  }
}

function renderUsers(list) {
  const me = store.state.me;
  const body = $('admin-users-body');
  body.replaceChildren(
    ...list.map((u) => {
      const self = me && u.id === me.id;
      const name = `@${u.username}`;
      const actions = h(
        'div',
        { class: 'admin-actions' },
        self ? null : u.disabled ? actButton('enable', 'Enable', name) : actButton('disable', 'Disable', name, true),
        u.is_admin ? actButton('demote', 'Remove admin', name, true) : actButton('promote', 'Make admin', name),
        actButton('reset', 'Reset link', name),
        actButton('sessions', 'Sign out everywhere', name, true),
      );
      return h(
        'tr',
        { dataset: { userId: String(u.id), username: u.username } },
        cell('User', h('span', { class: 'admin-name', text: fullName(u) }), ' ', h('span', { class: 'muted', text: name })),
        cell('Email', h('span', { class: 'admin-email', text: u.email || '' })),
        cell('Role', h('span', { class: 'admin-role', text: u.is_admin ? 'Admin' : 'Member' })),
        cell('Status', h('span', { class: `admin-state${u.disabled ? ' off' : ''}`, text: u.disabled ? 'Disabled' : 'Active' })),
        cell('Last seen', when(u.last_seen)),
        cell('Created', when(u.created_at)),
        cell('Actions', actions),
      );
    }),
  );
}

/** What each user action asks first (null: no question), does, and says after. */
const USER_ACTS = {
  disable: {
    ask: (n) => [`Disable ${n}? They are signed out everywhere and cannot sign in until enabled again.`, 'Disable'],
    run: (id) => post(`/api/admin/users/${id}/disable`),
    done: (n) => `${n} is disabled.`,
  },
  enable: { ask: null, run: (id) => post(`/api/admin/users/${id}/enable`), done: (n) => `${n} is enabled.` },
  promote: {
    ask: (n) => [`Make ${n} an admin? They will see this console and can do everything you can.`, 'Make admin'],
    run: (id) => post(`/api/admin/users/${id}/promote`),
    done: (n) => `${n} is now an admin.`,
  },
  demote: {
    ask: (n) => [`Remove admin rights from ${n}?`, 'Remove admin'],
    run: (id) => post(`/api/admin/users/${id}/demote`),
    done: (n) => `${n} is no longer an admin.`,
  },
  sessions: {
    ask: (n) => [`Sign ${n} out on every device? Their open pages close at once.`, 'Sign out everywhere'],
    run: (id) => del(`/api/admin/users/${id}/sessions`),
    done: (n) => `${n} is signed out everywhere.`,
  },
};

/** Error codes the server may answer here, in plain words where its own are terse. */
function plainError(x) {
  if (x.code === 'last_admin') return 'This is the last admin: make someone else an admin first.';
  return x.message;
}

async function onUserAction(e) {
  const btn = e.target.closest('button.admin-act');
  if (!btn) return;
  const tr = btn.closest('tr');
  const id = Number(tr.dataset.userId);
  const name = `@${tr.dataset.username}`;
  const act = btn.dataset.act;
  $('admin-users-error').textContent = '';
  if (act === 'reset') {
    await resetLink(id, name, btn);
    return;
  }
  const spec = USER_ACTS[act];
  if (!spec) return;
  if (spec.ask) {
    const [text, ok] = spec.ask(name);
    if (!(await confirmDialog(text, ok))) return;
  }
  btn.disabled = true;
  try {
    await spec.run(id);
    toast(spec.done(name));
    // Demoting yourself ends your console: the next /api/me says so.
    if (act === 'demote' && store.state.me && id === store.state.me.id) {
      store.setMe({ is_admin: false });
      $('admin-console').close();
      return;
    }
    await loadUsers();
    // After the reload, which rewrites the status line with the count.
    $('admin-users-status').textContent = spec.done(name);
  } catch (x) {
    $('admin-users-error').textContent = plainError(x);
    btn.disabled = false;
  }
}

async function resetLink(id, name, btn) {
  btn.disabled = true;
  try {
    const res = await post(`/api/admin/users/${id}/reset-link`);
    $('admin-reset-label').textContent = `Password reset link for ${name}`;
    $('admin-reset-url').value = res.url || '';
    const until = res.expires_at ? ` It works once, until ${fullDate(res.expires_at)}.` : ' It works once.';
    $('admin-reset-note').textContent = `Send it to ${name} yourself (no email is sent).${until} Setting a password with it signs them out everywhere.`;
    $('admin-reset-result').hidden = false;
    $('admin-reset-url').focus();
    $('admin-reset-url').select();
  } catch (x) {
    $('admin-users-error').textContent = plainError(x);
  } finally {
    btn.disabled = false;
  }
}

function initUsers() {
  const reload = () => {
    users.offset = 0;
    loadUsers();
  };
  $('admin-user-q').addEventListener('input', debounce(reload, 250));
  $('admin-user-sort').addEventListener('change', reload);
  $('admin-users-prev').addEventListener('click', () => {
    users.offset = Math.max(0, users.offset - PAGE);
    loadUsers();
  });
  $('admin-users-next').addEventListener('click', () => {
    users.offset += PAGE;
    loadUsers();
  });
  $('admin-users-body').addEventListener('click', onUserAction);
  $('admin-copy-reset').addEventListener('click', () => copyFrom($('admin-reset-url'), $('admin-users-status')));
}

// ---------------------------------------------------------------- rooms

async function loadRooms() {
  const mine = ++rooms.seq;
  const q = $('admin-room-q').value.trim();
  $('admin-rooms-error').textContent = '';
  $('admin-panel-rooms').setAttribute('aria-busy', 'true');
  try {
    const res = await get(`/api/admin/rooms?q=${encodeURIComponent(q)}&offset=${rooms.offset}&limit=${PAGE}`);
    if (mine !== rooms.seq) return;
    rooms.total = res.total ?? (res.rooms || []).length;
    renderRooms(res.rooms || []);
    $('admin-rooms-status').textContent = (res.rooms || []).length
      ? `${plural(rooms.total, 'room')}${q ? ` ${rooms.total === 1 ? 'matches' : 'match'} “${q}”` : ''}.`
      : q
        ? `No room matches “${q}”.`
        : 'No rooms yet.';
    setPager('admin-rooms', rooms);
  } catch (x) {
    if (mine !== rooms.seq) return;
    $('admin-rooms-error').textContent = x.message;
  } finally {
    if (mine === rooms.seq) $('admin-panel-rooms').removeAttribute('aria-busy');
  }
}

function renderRooms(list) {
  $('admin-rooms-body').replaceChildren(
    ...list.map((r) => {
      const label = `${r.private ? '' : '#'}${r.name}`;
      const state = [r.archived ? 'Archived' : 'Active', r.read_only ? 'read-only' : null].filter(Boolean).join(', ');
      return h(
        'tr',
        { dataset: { roomId: String(r.id), name: r.name } },
        cell('Room', h('span', { class: 'admin-name', text: label })),
        cell('Visibility', r.private ? 'Private' : 'Public'),
        cell('Owner', r.owner ? `@${r.owner.username}` : 'nobody'),
        cell('Members', String(r.members ?? 0)),
        cell('State', h('span', { class: `admin-room-state${r.archived ? ' off' : ''}`, text: state })),
        cell('Created', when(r.created_at)),
        cell(
          'Actions',
          h(
            'div',
            { class: 'admin-actions' },
            r.archived ? actButton('unarchive', 'Unarchive', label) : actButton('archive', 'Archive', label),
            actButton('delete', 'Delete', label, true),
          ),
        ),
      );
    }),
  );
}

/** Asks for the room's name to be typed before deleting it; resolves true to go on. */
function confirmDelete(name) {
  const d = $('admin-delete-dialog');
  const input = $('admin-delete-name');
  const ok = $('admin-delete-ok');
  $('admin-delete-text').textContent = `Delete “${name}” with all its messages and files? Its members lose it at once. This cannot be undone.`;
  $('admin-delete-label').textContent = `Type the room's name, ${name}, to confirm`;
  $('admin-delete-error').textContent = '';
  input.value = '';
  ok.disabled = true;
  d.returnValue = '';
  const sync = () => (ok.disabled = input.value.trim() !== name);
  input.oninput = sync;
  $('admin-delete-form').onsubmit = (e) => {
    e.preventDefault();
    if (input.value.trim() !== name) {
      $('admin-delete-error').textContent = 'The name does not match.';
      return;
    }
    d.close('ok');
  };
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.showModal();
    input.focus();
  });
}

async function onRoomAction(e) {
  const btn = e.target.closest('button.admin-act');
  if (!btn) return;
  const tr = btn.closest('tr');
  const id = Number(tr.dataset.roomId);
  const name = tr.dataset.name;
  const act = btn.dataset.act;
  $('admin-rooms-error').textContent = '';
  let ok;
  if (act === 'archive') {
    ok = await confirmDialog(`Archive “${name}”? Everyone can still read it, but nobody can send until it is unarchived.`, 'Archive');
  } else if (act === 'delete') ok = await confirmDelete(name);
  else ok = true;
  if (!ok) return;
  btn.disabled = true;
  try {
    if (act === 'delete') await del(`/api/admin/rooms/${id}`);
    else await post(`/api/admin/rooms/${id}/${act}`);
    const done = act === 'delete' ? 'deleted' : `${act}d`;
    toast(`“${name}” is ${done}.`);
    await loadRooms();
    $('admin-rooms-status').textContent = `“${name}” is ${done}.`;
  } catch (x) {
    $('admin-rooms-error').textContent = x.message;
    btn.disabled = false;
  }
}

function initRooms() {
  $('admin-room-q').addEventListener(
    'input',
    debounce(() => {
      rooms.offset = 0;
      loadRooms();
    }, 250),
  );
  $('admin-rooms-prev').addEventListener('click', () => {
    rooms.offset = Math.max(0, rooms.offset - PAGE);
    loadRooms();
  });
  $('admin-rooms-next').addEventListener('click', () => {
    rooms.offset += PAGE;
    loadRooms();
  });
  $('admin-rooms-body').addEventListener('click', onRoomAction);
  const d = $('admin-delete-dialog');
  d.addEventListener('click', (e) => {
    if (e.target === d || e.target.closest('[data-close]')) d.close('cancel');
  });
}

// ---------------------------------------------------------------- settings

async function loadSettings() {
  $('registration-mode').value = store.state.config.registration || 'open';
  $('invite-result').hidden = true;
  for (const id of ['admin-ok', 'admin-error', 'default-room-ok', 'default-room-error']) $(id).textContent = '';
  const select = $('default-room-select');
  try {
    // Public rooms only (the server refuses a private one); the config says which is set.
    const [res, cfg] = await Promise.all([get('/api/admin/rooms?limit=200'), get('/api/config')]);
    store.setConfig(cfg);
    const chosen = cfg.default_room ?? null;
    const options = (res.rooms || []).filter((r) => !r.private && (!r.archived || r.id === chosen));
    select.replaceChildren(
      h('option', { value: '', text: 'No default room' }),
      ...options.map((r) => h('option', { value: String(r.id), text: `#${r.name}` })),
    );
    select.value = chosen == null ? '' : String(chosen);
  } catch (x) {
    $('default-room-error').textContent = x.message;
  }
}

function initSettings() {
  const clear = () => {
    for (const id of ['admin-ok', 'admin-error', 'default-room-ok', 'default-room-error']) $(id).textContent = '';
  };
  const reg = $('registration-form');
  reg.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear();
    const mode = reg.elements.mode.value;
    try {
      await busy(reg, put('/api/admin/registration', { mode }));
      store.setConfig({ registration: mode });
      $('admin-ok').textContent = `Registration is now ${mode}.`;
    } catch (x) {
      $('admin-error').textContent = x.message;
    }
  });

  $('create-invite-btn').addEventListener('click', async () => {
    clear();
    const btn = $('create-invite-btn');
    btn.disabled = true;
    try {
      const res = await post('/api/admin/invites');
      $('invite-url').value = res.url || res.code || '';
      $('invite-result').hidden = false;
      $('invite-url').select();
      $('admin-ok').textContent = 'Invite link created. Send it to the person you invite.';
    } catch (x) {
      $('admin-error').textContent = x.message;
    } finally {
      btn.disabled = false;
    }
  });
  $('copy-invite-btn').addEventListener('click', () => copyFrom($('invite-url'), $('admin-ok')));

  const def = $('default-room-form');
  def.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear();
    const sel = $('default-room-select');
    const room = sel.value ? Number(sel.value) : null;
    try {
      await busy(def, put('/api/admin/default-room', { room }));
      store.setConfig({ default_room: room });
      $('default-room-ok').textContent = room == null ? 'New accounts join no room.' : `New accounts now join ${sel.selectedOptions[0].textContent}.`;
    } catch (x) {
      $('default-room-error').textContent = x.message;
    }
  });
}

// ---------------------------------------------------------------- server facts

function bytes(n) {
  if (n == null) return 'not known';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i ? `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}` : `${n} bytes`;
}

function duration(secs) {
  const d = Math.floor(secs / 86400);
  const hrs = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  if (d) return `${plural(d, 'day')}, ${plural(hrs, 'hour')}`;
  if (hrs) return `${plural(hrs, 'hour')}, ${plural(m, 'minute')}`;
  if (m) return plural(m, 'minute');
  return plural(Math.floor(secs), 'second');
}

const DATABASES = { sqlite: 'SQLite', postgres: 'PostgreSQL', mysql: 'MariaDB / MySQL' };
const BUSES = { local: 'this node only', redis: 'Redis (several nodes)' };

const JOBS = { search_reindex: 'Re-indexing the search words of older messages' };

/** One-time jobs after an upgrade: chat works meanwhile, a little slower. */
function maintenance(jobs) {
  if (!jobs.length) return 'none';
  return jobs
    .map((j) => {
      const pct = j.total > 0 ? Math.floor((100 * j.done) / j.total) : 0;
      return `${JOBS[j.job] || j.job}: ${pct} % (${(j.done ?? 0).toLocaleString()} of ${plural(j.total ?? 0, 'stored event')})`;
    })
    .join('; ');
}

async function loadServer() {
  $('admin-server-error').textContent = '';
  try {
    const f = await get('/api/admin/server');
    const s = f.storage || {};
    const facts = [
      ['version', 'Version', f.version],
      ['uptime', 'Up for', duration(f.uptime_secs || 0)],
      ['connections', 'Open connections (this node)', (f.connections ?? 0).toLocaleString()],
      ['database', 'Database', DATABASES[f.database] || f.database],
      ['bus', 'Message bus', BUSES[f.bus] || f.bus],
      ['users', 'Accounts', (f.users ?? 0).toLocaleString()],
      ['rooms', 'Rooms', (f.rooms ?? 0).toLocaleString()],
      ['database_bytes', 'Database size', bytes(s.database_bytes)],
      ['files_bytes', 'Files stored', bytes(s.files_bytes)],
      ['maintenance', 'Background work', maintenance(f.maintenance || [])],
    ];
    $('admin-server-facts').replaceChildren(
      ...facts.flatMap(([key, label, value]) => [h('dt', { text: label }), h('dd', { dataset: { fact: key }, text: value ?? '' })]),
    );
  } catch (x) {
    $('admin-server-error').textContent = x.message;
  }
}

// ---------------------------------------------------------------- audit log

const ACTIONS = {
  'user.promote': 'made admin',
  'user.demote': 'removed admin',
  'user.disable': 'disabled',
  'user.enable': 'enabled',
  'user.reset_link': 'reset link issued',
  'user.end_sessions': 'signed out everywhere',
  'user.add': 'account added',
  'user.password_reset': 'password reset',
  'room.archive': 'room archived',
  'room.unarchive': 'room unarchived',
  'room.delete': 'room deleted',
  'settings.registration': 'registration changed',
  'settings.default_room': 'default room changed',
  'invite.create': 'invite link created',
};

/** An entry's detail object as short "key: value" text (never markup). */
function detailText(d) {
  if (!d || typeof d !== 'object') return '';
  return Object.entries(d)
    .filter(([k]) => k !== 'id')
    .map(([k, v]) => {
      // Times are ms since the epoch: "expires at" reads better as a date.
      const shown = /(_at|^ts)$/.test(k) && typeof v === 'number' ? when(v) : typeof v === 'object' ? JSON.stringify(v) : v;
      return `${k.replace(/_/g, ' ')}: ${shown}`;
    })
    .join(', ');
}

async function loadAudit(fresh) {
  if (fresh) audit = { before: null, seq: audit.seq };
  const mine = ++audit.seq;
  $('admin-audit-error').textContent = '';
  const more = $('admin-audit-more');
  more.disabled = true;
  try {
    const q = audit.before != null ? `before=${audit.before}&limit=${PAGE}` : `limit=${PAGE}`;
    const res = await get(`/api/admin/audit?${q}`);
    if (mine !== audit.seq) return;
    const entries = res.entries || [];
    const rows = entries.map((en) =>
      h(
        'tr',
        { dataset: { auditId: String(en.id), action: en.action } },
        cell('When', h('time', { datetime: new Date(en.ts).toISOString(), title: fullDate(en.ts), text: when(en.ts) })),
        cell('Who', h('span', { class: 'audit-actor', text: en.actor ? `@${en.actor.username}` : 'command line' })),
        cell('Action', h('span', { class: 'audit-action', title: en.action, text: ACTIONS[en.action] || en.action })),
        cell('Target', h('span', { class: 'audit-target', text: en.target || '' })),
        cell('Details', h('span', { class: 'audit-detail', text: detailText(en.detail) })),
      ),
    );
    if (fresh) $('admin-audit-body').replaceChildren(...rows);
    else $('admin-audit-body').append(...rows);
    if (entries.length) audit.before = entries[entries.length - 1].id;
    more.hidden = entries.length < PAGE;
    const n = $('admin-audit-body').children.length;
    $('admin-audit-status').textContent = n ? `${plural(n, 'entry', 'entries')} shown, newest first.` : 'Nothing recorded yet.';
  } catch (x) {
    if (mine === audit.seq) $('admin-audit-error').textContent = x.message;
  } finally {
    more.disabled = false;
  }
}

// ---------------------------------------------------------------- entry

/** Opens the console (admins only), on `tab` (default: the last one shown). */
export function openAdmin(tab) {
  const me = store.state.me;
  if (!me || !me.is_admin) return;
  if (!built) initAdmin();
  const d = $('admin-console');
  for (const other of document.querySelectorAll('dialog[open]')) if (other !== d) other.close('cancel');
  $('admin-reset-result').hidden = true;
  if (!d.open) d.showModal();
  selectTab(tab || current, true);
}

/** Builds the console (once) and keeps the sidebar's entry point for admins only. */
export function initAdmin() {
  if (built) return;
  built = true;
  build();
  initTabs();
  initUsers();
  initRooms();
  initSettings();
  $('admin-server-refresh').addEventListener('click', loadServer);
  $('admin-audit-more').addEventListener('click', () => loadAudit(false));
  const d = $('admin-console');
  $('admin-close').addEventListener('click', () => d.close('cancel'));
  const entry = $('admin-btn');
  if (entry) entry.addEventListener('click', () => openAdmin());
  const sync = () => {
    const admin = !!(store.state.me && store.state.me.is_admin);
    if (entry) entry.hidden = !admin;
    if (!admin && d.open) d.close('cancel');
  };
  store.subscribe((dirty) => {
    if (dirty.has('me') || dirty.has('all')) sync();
  });
  sync();
}
