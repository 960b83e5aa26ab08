// app.js: entry point of the RT Messenger browser client. Decides which screen to
// show (GET /api/me), starts the socket after sign-in, and wires the views together
// (selecting rooms, opening DMs, leaving, signing out, notifications, the title).
//
// Module map (all plain ES modules, no build step):
//   js/store.js         the single client state + change feed (rooms, events, outbox)
//   js/socket.js        WebSocket: reconnect/backoff, resume, send queue, ping
//   js/api.js           HTTP JSON client and ApiError
//   js/auth.js          sign-in / sign-up screen
//   js/sidebar.js       room + DM lists, people search, phone menu, notify button
//   js/conversation.js  header, messages, scrolling, typing line, composer
//   js/members.js       members panel (role badges, a person's menu)
//   js/moderation.js    roles, notices, mutes, bans, read-only rooms, blocking (issue 15)
//   js/dialogs.js       new room, browse, room settings, account/admin, confirm
//   js/search.js        message search: the panel, its shortcut, results, opening one
//   js/admin.js         the admin console (users, rooms, settings, server, audit log)
//   js/reset.js         the password reset page (/?reset=CODE)
//   js/notify.js        Notification API opt-in; what alerts, by the room's level
//   js/actions.js       message toolbar: edit, delete, reply (quote + jump), notify level
//   js/reactions.js     reactions under a message and the reaction picker
//   js/mentions.js      @mention autocomplete, <@ID> wire form, chips, sidebar badge
//   js/dom.js, js/format.js  DOM building (textContent only) and formatting helpers
//
// ─────────────────────────────────────────────────────────────────────────────
// STABLE SELECTORS FOR TESTS
// Auth screen
//   #auth-screen                       the sign-in / sign-up screen (hidden when signed in)
//   #login-form  [name=login] [name=password]      #login-error
//   #signup-form [name=first_name] [name=last_name] [name=email] [name=username]
//                [name=password] [name=invite]     #signup-error
//     (#invite-field wraps the invite input; shown when registration is "invite"
//      or the page was opened with ?invite=CODE, which pre-fills it)
//   #signup-closed                     note shown when registration is closed
//   #show-signup / #show-login         switch between the two forms
//   #auth-notice                       "your session ended" notice
//   #reset-panel  #reset-form [name=password] [name=confirm]  #reset-error   (/?reset=CODE; js/reset.js)
//   #boot                              loading screen before /api/me answers
// Chat screen
//   #app-screen                        the chat screen (.sidebar-open on phones when the menu is open)
//   #menu-btn                          phone sidebar toggle (aria-expanded); #scrim closes it
//   #sidebar                           the sidebar
//   #me-name, #me-username             who is signed in
//   #settings-btn                      opens #settings-dialog
//   #logout                            sign out
//   #notify-btn                        opt in/out of browser notifications (aria-pressed)
//   #new-room-btn                      opens #new-room-dialog
//   #browse-btn                        opens #browse-dialog
//   #room-list  > li[data-room-id]     rooms; li.active = open, li.has-unread;
//                 button.conv-link > .name, .unread (badge: count text, [hidden] when 0)
//   #dm-list    > li[data-room-id]     DMs, same shape; li.online (and .dot.online) when the peer is online
//   #room-list-empty, #dm-list-empty   hints shown when a list is empty
//   #user-search                       people search input; results in
//   #user-results > li[data-user-id]   (li.online) > button.user-link: click opens the DM
//   #room-title                        name of the open room (DM: peer username); #room-topic under it
//   #conn-state                        connection: "connecting…" | "live" | "reconnecting in N s" | "offline";
//                                      also data-state=connecting|live|reconnecting|offline
//   #reconnect-now                     skip the wait while reconnecting
//   #members-btn                       show/hide the members panel (#members-panel)
//   #search-btn                        opens #search-panel (also Ctrl+K / ⌘K, or "/" outside a field);
//       #search-input (combobox; Up/Down, Enter opens, Esc closes)  #search-scope (checkbox: open
//       conversation only)  #search-author (username)  #search-status  #search-more ("More results")
//       #search-results > li[role=option][data-room-id][data-seq][aria-selected] >
//           .search-meta (.search-room .search-author .search-time)  .search-text (matches in <mark>)
//   #room-settings-btn                 room settings (owner and admin) -> #room-settings-dialog
//   #leave-btn                         leave the open room (asks first in #confirm-dialog: #confirm-ok)
//   #messages                          the message list (scrolls); children:
//       .history-status[data-state=loading|more|start|trimmed|ephemeral|offline]  (#load-older button
//                                      when more; trimmed: retention deleted the oldest messages)
//       .day-divider                   day separator
//       article.msg[data-seq][data-client-id][data-author-id]  a message:
//           .author  .time (<time>, HH:MM, full date in title)  .text (links are <a>)
//           .own (mine)  .mention (mentions me)  .pending (+ .status "sending…")
//           .deleted (.text reads "message deleted")  > .edited "(edited)"
//           > .reply-quote[data-target-seq] (.reply-author .reply-excerpt; .missing when gone)
//           .mention-chip[data-user-id] (.me) inside .text
//           > .reactions > button.reaction[data-emoji][aria-pressed] > .reaction-emoji .reaction-count
//           > .msg-toolbar[role=toolbar] > button.msg-action[data-action=react|reply|edit|delete]
//           .failed (+ .status "Not sent: …", .retry-btn, .discard-btn)
//       div.notice[data-seq] .notice-joined|.notice-left|.notice-welcome > .text, .time
//         (notices are NOT .msg)
//   #new-messages-pill                 "new messages" button when scrolled up
//   #empty-state                       shown when no conversation is open
//   #typing                            "alice is typing…"
//   #composer (textarea)  #send-btn  #composer-form  #composer-status (offline / too long)
//   #members > li[data-user-id].member (.online) > .member-name .member-handle .member-tags
//   #member-count, #room-retention
//   #announcer                         aria-live="polite" region announcing new messages
//   #toast                             transient errors
//   #notify-level (select all|mentions|muted)  the open room's notification level
//   #mention-suggest > li[data-username]  @mention autocomplete above the composer
//   #reaction-picker (.reaction-quick, #reaction-search, #reaction-results) button[data-emoji]
//   sidebar li.muted, .mention-badge ("@N", [hidden] when 0) beside .unread
// Dialogs
//   #new-room-dialog  #new-room-form [name=name] [name=topic] [name=private] (checkbox)
//       [name=retention] select: messages|days|both|ephemeral, [name=keep_messages] [name=keep_days]
//       #new-room-error
//   #browse-dialog  #browse-search  #browse-results > li[data-room-id] > .join-btn ("Join"/"Open")  #browse-error
//   #room-settings-dialog  #room-settings-form [name=topic] [name=retention] [name=keep_messages]
//       [name=keep_days]  #room-settings-error  #room-settings-ok
//       #invite-member-form [name=username]  #room-members-manage > li[data-user-id] > .remove-member
//       #room-members-error
//       (issue 15) [name=name] [name=read_only] (checkbox)  #room-bans > li[data-user-id] > .unban-btn
//       #room-bans-empty  #room-bans-error
//   #mute-dialog  #mute-form [name=amount] [name=unit] (minutes per unit: 1|60|1440)  #mute-ok
//   (moderation: #composer-closed, #block-btn, .member-menu-btn and the rest are listed in
//    js/moderation.js and js/members.js)
//   #settings-dialog  #profile-form (first_name,last_name,email,username) #profile-error #profile-ok
//       #password-form (current_password,new_password) #password-error #password-ok
//       #admin-section (admins): #open-admin-btn (opens the admin console)
//   (in #admin-console's Settings tab) #registration-form [name=mode] (#registration-mode),
//       #create-invite-btn, #invite-url (the link), #copy-invite-btn, #admin-error, #admin-ok
//   #confirm-dialog  #confirm-ok  #confirm-cancel
// Admin console (admins; js/admin.js lists its selectors): #admin-btn (sidebar) and
//   #open-admin-btn (Settings) open #admin-console; the registration and invite
//   controls above live in its Settings tab.
// ─────────────────────────────────────────────────────────────────────────────

import { $, toast } from './js/dom.js';
import { get, post, setUnauthenticatedHandler } from './js/api.js';
import * as store from './js/store.js';
import { Sync } from './js/socket.js';
import { initAuth, inviteFromUrl, showAuthPanel } from './js/auth.js';
import { clearUserSearch, initSidebar, setOpen as setSidebarOpen } from './js/sidebar.js';
import { announce, initConversation } from './js/conversation.js';
import { initMembers, toggleMembers } from './js/members.js';
import { confirmDialog, initDialogs, openRoomSettings } from './js/dialogs.js';
import * as notify from './js/notify.js';
import { initModeration } from './js/moderation.js';
import { initActions } from './js/actions.js';
import { messageLine } from './js/mentions.js';
import { initSearch } from './js/search.js';
import { initAdmin } from './js/admin.js';
import { resetFromUrl, showReset } from './js/reset.js';

const sync = new Sync({
  onHello: () => pickRoomIfNone(),
  onLiveEvent,
  onUnauthenticated: () => sessionEnded(),
  onServerError: (message) => toast(message),
  onReload: () => location.reload(),
});

// ---------------------------------------------------------------- screens

function showScreen(which) {
  $('boot').hidden = which !== 'boot';
  $('auth-screen').hidden = which !== 'auth';
  $('app-screen').hidden = which !== 'app';
}

function showAuth(panel, notice) {
  showScreen('auth');
  document.title = 'Sign in · RT Messenger';
  showAuthPanel(panel, notice);
}

/** Signed in (on load, after sign-in or sign-up): show the chat and connect. */
function enterApp(user) {
  store.startSession(user);
  showScreen('app');
  sync.start();
}

async function logout() {
  // Messages still in the outbox go with the session: say so first.
  const unsent = store.state.outbox.length;
  if (unsent) {
    const what = unsent === 1 ? '1 message has' : `${unsent} messages have`;
    if (!(await confirmDialog(`${what} not been sent yet and will be lost if you sign out now.`, 'Sign out anyway'))) {
      return;
    }
  }
  try {
    await post('/api/logout');
  } catch (e) {
    // Only the server can end the session (its cookie is out of the page's reach):
    // unreachable, it would still be signed in at the next load. Any answer (401:
    // already ended) means it is over.
    if (e.status === 0) {
      toast('You are still signed in: the server cannot be reached. Try again when the connection is back.');
      return;
    }
  }
  sync.stop();
  store.endSession();
  history.replaceState(null, '', location.pathname + location.search);
  showAuth('login', 'You are signed out.');
}

function sessionEnded() {
  if (!store.state.me) return;
  sync.stop();
  store.endSession();
  showAuth('login', 'Your session has ended. Please sign in again.');
}

// ---------------------------------------------------------------- navigation

const lastRoomKey = () => `rtm.lastRoom.${store.state.me ? store.state.me.id : 0}`;

function roomFromHash() {
  const m = /^#room=(\d+)$/.exec(location.hash);
  return m ? Number(m[1]) : null;
}

/** Opens a conversation. */
function selectRoom(id) {
  if (!store.room(id)) return;
  store.selectRoom(id);
  try {
    localStorage.setItem(lastRoomKey(), String(id));
  } catch {
    /* private mode */
  }
  if (roomFromHash() !== id) history.replaceState(null, '', `${location.pathname}${location.search}#room=${id}`);
  sync.ensureLoaded(id);
  setSidebarOpen(false);
  // On devices with a keyboard, be ready to type.
  // (After the render that enables the composer for this room.)
  if (window.matchMedia('(pointer: fine)').matches) setTimeout(() => $('composer').focus({ preventScroll: true }), 0);
}

/** Chooses a conversation when none is open: the URL's, the last one, or the first. */
function pickRoomIfNone() {
  if (store.state.currentRoomId != null && store.room(store.state.currentRoomId)) return;
  const rooms = [...store.state.rooms.values()];
  if (!rooms.length) return;
  const candidates = [roomFromHash(), Number(localStorage.getItem(lastRoomKey()) || 0)];
  let id = candidates.find((c) => c && store.room(c));
  if (!id) {
    const sorted = rooms.sort(
      (a, b) =>
        Number(a.info.kind === 'dm') - Number(b.info.kind === 'dm') ||
        a.info.name.localeCompare(b.info.name, undefined, { sensitivity: 'base' }),
    );
    id = sorted[0].info.id;
  }
  store.selectRoom(id);
  sync.ensureLoaded(id);
}

async function openDm(userId) {
  try {
    const res = await post('/api/dms', { user_id: userId });
    store.upsertRoom(res.room);
    clearUserSearch();
    selectRoom(res.room.id);
  } catch (e) {
    toast(e.message);
  }
}

async function leaveRoom() {
  const r = store.currentRoom();
  if (!r) return;
  // Every leave asks first: the button sits among others a thumb can hit by mistake.
  const back = r.info.private
    ? 'You will need a new invitation to come back.'
    : 'You can join it again from “Browse rooms”.';
  const owner = store.state.me && r.info.owner === store.state.me.id ? ' You own it: it passes to another member.' : '';
  const ok = await confirmDialog(`Leave ${r.info.private ? 'the private room ' : ''}#${r.info.name}? ${back}${owner}`, 'Leave');
  if (!ok) return;
  try {
    await post(`/api/rooms/${r.info.id}/leave`);
    store.removeRoom(r.info.id);
    toast(`You left #${r.info.name}.`);
    pickRoomIfNone();
  } catch (e) {
    toast(e.message);
  }
}

// ---------------------------------------------------------------- live events

function onLiveEvent(item, r) {
  if (!r || item.kind !== 'text' || store.isMine(item.author)) return;
  // Someone I blocked: their message stays collapsed, unannounced (issue 15).
  if (item.author && store.isBlocked(item.author.id)) return;
  const name = item.author.username;
  if (store.state.currentRoomId === r.info.id && !document.hidden) {
    announce(`${name}: ${messageLine(item).slice(0, 300)}`);
  }
  // When the tab is hidden, by the room's notification level (all/mentions/muted).
  notify.forMessage(item, r, () => selectRoom(r.info.id));
}

/** Keeps the tab title showing the open room and the unread total. */
function updateTitle(d) {
  if (!store.state.me) return;
  if (!(d.has('rooms') || d.has('current') || d.has('all'))) return;
  const n = store.totalUnread();
  const r = store.currentRoom();
  const where = r ? `${r.info.kind === 'dm' ? '@' : '#'}${r.info.name} · ` : '';
  document.title = `${n ? `(${n}) ` : ''}${where}RT Messenger`;
  // A room that disappeared (left, removed) leaves nothing open: pick another.
  if (store.state.currentRoomId == null && store.state.conn.status === 'live') pickRoomIfNone();
}

// ---------------------------------------------------------------- boot

async function load() {
  showScreen('boot');
  $('boot-text').textContent = 'Loading RT Messenger…';
  $('boot-retry').hidden = true;
  // A password reset link (js/reset.js) comes before any session: the form, then sign-in.
  const resetCode = resetFromUrl();
  if (resetCode) {
    get('/api/config')
      .then((c) => store.setConfig(c))
      .catch(() => {});
    showScreen('auth');
    showReset(resetCode, (notice) => showAuth('login', notice));
    return;
  }
  const [cfg, me] = await Promise.allSettled([get('/api/config'), get('/api/me')]);
  if (cfg.status === 'fulfilled' && cfg.value) store.setConfig(cfg.value);
  if (me.status === 'fulfilled' && me.value && me.value.user) {
    enterApp(me.value.user);
  } else if (me.status === 'rejected' && me.reason.status === 401) {
    showAuth(inviteFromUrl() ? 'signup' : 'login');
  } else {
    $('boot-text').textContent = me.reason ? me.reason.message : 'The server did not answer.';
    $('boot-retry').hidden = false;
    $('boot-retry').focus();
  }
}

function init() {
  initAuth({
    onSignedIn: (user) => {
      // Config may have changed (e.g. after an invite was used); refresh quietly.
      get('/api/config')
        .then((c) => store.setConfig(c))
        .catch(() => {});
      enterApp(user);
    },
  });
  initSidebar({ selectRoom, openDm });
  initConversation(sync, { leaveRoom, openRoomSettings, toggleMembers });
  initModeration(sync);
  initActions(sync);
  initSearch({ selectRoom, closeDrawer: () => setSidebarOpen(false) });
  initMembers({ openDm });
  initDialogs({ selectRoom });
  initAdmin();
  setUnauthenticatedHandler(sessionEnded);
  store.subscribe(updateTitle);
  $('logout').addEventListener('click', logout);
  $('boot-retry').addEventListener('click', load);
  window.addEventListener('hashchange', () => {
    const id = roomFromHash();
    if (id && store.room(id) && id !== store.state.currentRoomId) selectRoom(id);
  });
  load();
}

init();
// The service worker (sw.js) keeps the app shell so the app opens offline; never API responses.
if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {});
