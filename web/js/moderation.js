// moderation.js: the web side of moderation and blocking (issue 15; PROTOCOL.md §2.9,
// §3.10). Room roles decide who sees which controls; this module holds those rules
// for the views and does the requests:
// - the lines shown for `moderation` notices ("alice made bob a moderator", "bob was
//   muted for 1 hour by alice"), live and from history or resume;
// - the composer replaced by a plain notice when the open room is archived, read-only
//   (for members), when I am muted there (until when), or when it is a DM with
//   someone I blocked (with an Unblock button);
// - the server's refusals (`muted`, `read_only`, `room_archived`, `banned`, `blocked`)
//   in plain words, and what they tell us (a mute's end, a read-only flag);
// - a room I was removed or banned from: it leaves the sidebar with a notice;
// - the actions of a person's menu (member list): make moderator / member, remove,
//   ban, mute for a while, unmute, block / unblock; the Block button of a DM's header;
// - messages in rooms from people I blocked, collapsed to a line with a Show button.
//
// STABLE SELECTORS FOR TESTS
//   div.notice.notice-moderation[data-seq][data-action] > .text   a moderation notice
//   #composer-closed[data-reason=archived|read_only|muted|blocked] > #composer-closed-text,
//       #composer-closed-action (Unblock, in a DM with someone I blocked)
//   #block-btn (DM header: "Block" / "Unblock"; aria-pressed when blocked)
//   article.msg.blocked-collapsed > .blocked-line > button.blocked-show ("show")

import { $, h, toast } from './dom.js';
import { del, post, put } from './api.js';
import * as store from './store.js';
import { tapFrames } from './socket.js';
import { addMessageDecorator, announce, redrawMessages } from './conversation.js';
import { confirmDialog, muteDialog } from './dialogs.js';
import { dayKey, fullDate, timeHM } from './format.js';

let sync = null;
/** room id -> why I am no longer in it (from the kick/ban notice before `room_left`). */
const removedWhy = new Map();
/** Keys of blocked people's messages the reader chose to show. */
const expanded = new Set();
/** Timer that reopens the composer when my mute ends. */
let muteTimer = 0;

const RANK = { owner: 2, moderator: 1, member: 0 };
const rank = (role) => RANK[role] ?? 0;

/** @param {Sync} s the socket (its request table names the room of a refused send). */
export function initModeration(s) {
  sync = s;
  tapFrames(onFrame);
  addMessageDecorator(collapseBlocked);
  store.subscribe(renderBlockButton);
  $('block-btn').addEventListener('click', () => {
    const r = store.currentRoom();
    if (r && r.info.kind === 'dm' && r.info.peer) toggleBlock(r.info.peer);
  });
  $('composer-closed-action').addEventListener('click', () => {
    const r = store.currentRoom();
    if (r && r.info.kind === 'dm' && r.info.peer) setBlock(r.info.peer, false);
  });
}

// ---------------------------------------------------------------- roles

/** My role in a room ('owner' for the owner and the admin). */
export const myRole = (r) => store.myRole(r);

/** May I moderate this room (settings, kick, ban, mute)? Owner, moderators, admin. */
export function canModerate(r) {
  return !!r && r.info.kind !== 'dm' && rank(myRole(r)) >= 1;
}

/** A member's role in a room's member list (older servers: the owner id decides). */
export function roleOf(r, m) {
  if (m.role) return m.role;
  return r.info.owner === m.id ? 'owner' : 'member';
}

/** Is this member muted now (ms of the end, or 0)? */
export function mutedUntil(m) {
  return m && m.muted_until && m.muted_until > Date.now() ? m.muted_until : 0;
}

// ---------------------------------------------------------------- words

/** "15 minutes", "1 hour", "2 days" for a number of minutes. */
export function durationText(minutes) {
  const n = Math.max(1, Math.round(minutes));
  const unit = (k, one) => `${k} ${one}${k === 1 ? '' : 's'}`;
  if (n % 1440 === 0) return unit(n / 1440, 'day');
  if (n % 60 === 0) return unit(n / 60, 'hour');
  return unit(n, 'minute');
}

/** "14:30" today, otherwise the full date and time. */
export function untilText(ts) {
  return dayKey(ts) === dayKey(Date.now()) ? timeHM(ts) : fullDate(ts);
}

/** The line shown for a `moderation` notice. */
export function moderationText(ev) {
  const m = ev.mod || {};
  const by = ev.author && ev.author.username ? ev.author.username : 'someone';
  const who = m.user && m.user.username ? m.user.username : 'someone';
  switch (m.action) {
    case 'role':
      return m.role === 'moderator' ? `${by} made ${who} a moderator` : `${by} made ${who} a member`;
    case 'kick':
      return `${who} was removed from the room by ${by}`;
    case 'ban':
      return `${who} was banned by ${by}`;
    case 'unban':
      return `${who} was unbanned by ${by}`;
    case 'mute':
      if (m.until && ev.ts) return `${who} was muted for ${durationText((m.until - ev.ts) / 60000)} by ${by}`;
      return `${who} was muted by ${by}`;
    case 'unmute':
      return `${who} was unmuted by ${by}`;
    case 'rename':
      return m.name ? `${by} renamed the room to ${m.name}` : `${by} renamed the room`;
    case 'read_only':
      return m.read_only ? `${by} made the room read-only` : `${by} opened the room to everyone again`;
    default:
      return ev.text || `${by} changed the room`;
  }
}

// ---------------------------------------------------------------- frames

const PLAIN = {
  muted: (f) => `You are muted in this room${f.until ? ` until ${untilText(f.until)}` : ''}. You can still read.`,
  read_only: () => 'This room is read-only: only its owner and moderators can send messages.',
  room_archived: () => 'This room is archived: nobody can send messages in it.',
  banned: () => 'You are banned from this room.',
  blocked: () => 'You cannot write here: one of you blocked the other.',
};

/** Watches the frames that concern moderation (before the store applies them). */
function onFrame(f) {
  const me = store.state.me;
  switch (f.type) {
    case 'room_updated':
      store.roomFlags(f.room, { name: f.name, read_only: f.read_only, archived: f.archived });
      return;
    case 'notice': {
      if (f.kind !== 'moderation' || !me || !f.user || f.user.id !== me.id) return;
      if (f.action !== 'kick' && f.action !== 'ban') return;
      const r = store.room(f.room);
      const where = r ? `#${r.info.name}` : 'a room';
      const by = f.author && f.author.username ? f.author.username : 'a moderator';
      removedWhy.set(
        f.room,
        f.action === 'ban' ? `You were banned from ${where} by ${by}.` : `You were removed from ${where} by ${by}.`,
      );
      return;
    }
    case 'room_left': {
      const why = removedWhy.get(f.room);
      if (!why) return;
      removedWhy.delete(f.room);
      // After the store dropped the room (the sidebar no longer lists it).
      setTimeout(() => {
        toast(why, 8000);
        announce(why);
      }, 0);
      return;
    }
    case 'error': {
      const plain = PLAIN[f.code];
      if (!plain) return;
      // The request table still holds the command (the store takes it after us).
      const req = sync && typeof f.id === 'string' ? sync.requests.get(f.id) : null;
      const roomId = req ? req.room : null;
      if (roomId != null && me) {
        if (f.code === 'muted' && Number.isFinite(f.until)) store.setMemberMute(roomId, me.id, f.until);
        if (f.code === 'read_only') store.roomFlags(roomId, { read_only: true });
        if (f.code === 'room_archived') store.roomFlags(roomId, { archived: true });
      }
      f.message = plain(f);
      return;
    }
    default:
      return;
  }
}

// ---------------------------------------------------------------- composer

/** Why I cannot write in this conversation now, or null. */
export function composerClosed(r) {
  if (!r) return null;
  if (r.info.archived) {
    return { reason: 'archived', text: 'This room is archived: you can read it, but nobody can send messages.' };
  }
  if (r.info.kind === 'dm') {
    if (r.info.peer && store.isBlocked(r.info.peer.id)) {
      return {
        reason: 'blocked',
        text: `You blocked @${r.info.peer.username}. Neither of you can write here until you unblock them.`,
        action: 'Unblock',
      };
    }
    return null;
  }
  if (r.info.read_only && rank(myRole(r)) < 1) {
    return { reason: 'read_only', text: 'This room is read-only: only its owner and moderators can send messages.' };
  }
  const until = store.myMuteUntil(r);
  if (until) {
    return { reason: 'muted', text: `You are muted in this room until ${untilText(until)}. You can still read.`, until };
  }
  return null;
}

/**
 * Shows the composer or, when I cannot write here, a plain notice in its place.
 * Called by conversation.js each time it renders the composer; returns true when the
 * composer is closed.
 */
export function renderClosedComposer(r) {
  const why = composerClosed(r);
  const box = $('composer-closed');
  $('composer-form').hidden = !!why;
  box.hidden = !why;
  clearTimeout(muteTimer);
  if (!why) {
    delete box.dataset.reason;
    return false;
  }
  box.dataset.reason = why.reason;
  $('composer-closed-text').textContent = why.text;
  const btn = $('composer-closed-action');
  btn.hidden = !why.action;
  btn.textContent = why.action || '';
  $('composer').disabled = true;
  if (why.until) {
    // Reopen the composer when the mute ends (timers cap at ~24.8 days).
    const wait = Math.min(why.until - Date.now() + 250, 2 ** 31 - 1);
    muteTimer = setTimeout(() => store.touch('rooms'), Math.max(0, wait));
  }
  return true;
}

// ---------------------------------------------------------------- a person's menu

/**
 * The actions of a member's menu in room `r`: [{action, label, danger?, run()}] where
 * run() resolves once done (errors go to a toast). Empty for myself.
 */
export function memberActions(r, m) {
  const me = store.state.me;
  if (!me || !r || m.id === me.id) return [];
  const out = [];
  const id = r.info.id;
  if (r.info.kind !== 'dm') {
    const mine = myRole(r);
    const theirs = roleOf(r, m);
    const name = `@${m.username}`;
    if (mine === 'owner' && theirs !== 'owner') {
      if (theirs === 'moderator') {
        out.push({ action: 'make-member', label: 'Make member', run: () => setRole(id, m, 'member') });
      } else {
        out.push({ action: 'make-moderator', label: 'Make moderator', run: () => setRole(id, m, 'moderator') });
      }
    }
    if (rank(mine) >= 1 && rank(theirs) < rank(mine)) {
      if (mutedUntil(m)) {
        out.push({ action: 'unmute', label: 'Unmute', run: () => act(del(`/api/rooms/${id}/mutes/${m.id}`), `${name} is unmuted.`) });
      }
      for (const [minutes, label] of [
        [15, 'Mute for 15 minutes'],
        [60, 'Mute for 1 hour'],
        [1440, 'Mute for 1 day'],
      ]) {
        out.push({ action: `mute-${minutes}`, label, run: () => mute(id, m, minutes) });
      }
      out.push({
        action: 'mute-custom',
        label: 'Mute for…',
        run: async () => {
          const minutes = await muteDialog(m.username);
          if (minutes) await mute(id, m, minutes);
        },
      });
      out.push({
        action: 'remove',
        label: 'Remove from room',
        danger: true,
        run: async () => {
          const back = r.info.private ? 'They will need a new invitation to come back.' : 'They can join it again.';
          if (!(await confirmDialog(`Remove ${name} from #${r.info.name}? ${back}`, 'Remove'))) return;
          await act(del(`/api/rooms/${id}/members/${m.id}`), `${name} was removed.`);
        },
      });
      out.push({
        action: 'ban',
        label: 'Ban',
        danger: true,
        run: async () => {
          if (!(await confirmDialog(`Ban ${name} from #${r.info.name}? They leave it now and cannot join again until unbanned.`, 'Ban'))) return;
          await act(post(`/api/rooms/${id}/bans`, { user: m.id }), `${name} is banned.`);
        },
      });
    }
  }
  const blocked = store.isBlocked(m.id);
  out.push({
    action: blocked ? 'unblock' : 'block',
    label: blocked ? 'Unblock' : 'Block',
    danger: !blocked,
    run: () => toggleBlock(m),
  });
  return out;
}

async function act(promise, done) {
  try {
    await promise;
    if (done) toast(done);
    return true;
  } catch (e) {
    toast(e.message);
    return false;
  }
}

function setRole(roomId, m, role) {
  const what = role === 'moderator' ? 'is now a moderator' : 'is now a member';
  return act(put(`/api/rooms/${roomId}/members/${m.id}/role`, { role }), `@${m.username} ${what}.`);
}

function mute(roomId, m, minutes) {
  return act(post(`/api/rooms/${roomId}/mutes`, { user: m.id, minutes }), `@${m.username} is muted for ${durationText(minutes)}.`);
}

// ---------------------------------------------------------------- blocking

/** Blocks or unblocks a person ({id, username}), asking first before a block. */
export async function toggleBlock(person) {
  if (store.isBlocked(person.id)) return setBlock(person, false);
  const ok = await confirmDialog(
    `Block @${person.username}? Neither of you will be able to open or write in a direct conversation, and their messages in rooms are collapsed for you. They are not told.`,
    'Block',
  );
  if (ok) return setBlock(person, true);
  return false;
}

/** Blocks (`on`) or unblocks a person over HTTP and keeps the store's list. */
export async function setBlock(person, on) {
  try {
    if (on) await put(`/api/me/blocks/${person.id}`);
    else await del(`/api/me/blocks/${person.id}`);
    store.setBlocked(person.id, on);
    toast(on ? `You blocked @${person.username}.` : `You unblocked @${person.username}.`);
    return true;
  } catch (e) {
    toast(e.message);
    return false;
  }
}

/** The DM header's Block / Unblock button. */
function renderBlockButton(d) {
  if (!(d.has('all') || d.has('current') || d.has('rooms') || d.has('blocked'))) return;
  const r = store.currentRoom();
  const btn = $('block-btn');
  const peer = r && r.info.kind === 'dm' ? r.info.peer : null;
  btn.hidden = !peer;
  if (!peer) return;
  const blocked = store.isBlocked(peer.id);
  btn.querySelector('.btn-label').textContent = blocked ? 'Unblock' : 'Block';
  btn.title = blocked ? `Unblock @${peer.username}` : `Block @${peer.username}`;
  btn.setAttribute('aria-pressed', String(blocked));
}

/** Message decorator: a room message from someone I blocked is collapsed to a line
 *  with a Show button (CSS hides the rest of the message while collapsed). */
function collapseBlocked(el, m, { pending }) {
  if (pending || !m.author || !store.isBlocked(m.author.id) || expanded.has(m.key)) return;
  const r = store.room(m.room);
  if (!r || r.info.kind === 'dm') return;
  el.classList.add('blocked-collapsed');
  const show = h('button', { type: 'button', class: 'blocked-show linklike', text: 'show' });
  show.addEventListener('click', () => {
    expanded.add(m.key);
    redrawMessages();
    // The message is rebuilt in place: keep the reader there.
    const again = m.seq != null ? $('messages').querySelector(`[data-seq="${m.seq}"]`) : null;
    again?.setAttribute('tabindex', '-1');
    again?.focus({ preventScroll: true });
  });
  el.prepend(h('p', { class: 'blocked-line' }, 'Message from a blocked person — ', show));
}
