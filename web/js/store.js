// store.js: the one place client state lives. The socket and the HTTP handlers call
// the mutators below; each mutator marks "topics" dirty and the views, subscribed with
// `subscribe()`, re-render once per batch (a microtask after the last change).
//
// Per room it keeps the events shown (ordered by seq, deduplicated by seq and by
// client_id), the contiguous "synced through" seq used to resume after a reconnect,
// history paging flags, presence, typing and members. The outbox holds messages not
// yet acknowledged by the server; it is saved in sessionStorage so a reload keeps it.
//
// Topics: 'all', 'me', 'conn', 'rooms' (list, unread, DM dots), 'current',
// 'room:<id>' (events, outbox, paging), 'presence:<id>', 'typing:<id>', 'members:<id>', 'blocked' (whom I blocked).

// ---------------------------------------------------------------- change feed

const listeners = new Set();
let dirty = new Set();
let scheduled = false;

/** Registers `fn(dirtyTopics: Set<string>)`; returns an unsubscribe function. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Marks topics as changed; views hear about it once the current task is done. */
/**
 * Resolves true once `cond()` holds after a state change (at once if it already
 * does; a frame later, so lists have rendered what arrived), or false after `ms`.
 */
export function until(cond, ms) {
  return new Promise((resolve) => {
    if (cond()) return resolve(true);
    let off = null;
    const t = setTimeout(() => {
      off?.();
      resolve(false);
    }, ms);
    off = subscribe(() => {
      if (!cond()) return;
      clearTimeout(t);
      off();
      requestAnimationFrame(() => resolve(true));
    });
  });
}

export function touch(...topics) {
  for (const t of topics) dirty.add(t);
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(flush);
  }
}

function flush() {
  scheduled = false;
  const d = dirty;
  dirty = new Set();
  for (const fn of listeners) {
    try {
      fn(d);
    } catch (e) {
      console.error('render failed', e);
    }
  }
}

// ---------------------------------------------------------------- state

/** Everything the client knows. Views read it; only this module writes it. */
export const state = {
  /** The signed-in User from /api/me (null when signed out). */
  me: null,
  /** GET /api/config: registration mode and limits. */
  config: { registration: 'open', max_message_chars: 4000 },
  /** Limits from the socket's hello (override config once known). */
  limits: { max_message_chars: 4000, max_frame_bytes: 65536, messages_per_10s: 0 },
  /** Socket state: status 'offline' | 'connecting' | 'live' | 'reconnecting';
   *  retryAt (ms) while reconnecting; reason of the last close. */
  conn: { status: 'offline', retryAt: 0, reason: '' },
  /** Room id -> RoomState (see newRoom). */
  rooms: new Map(),
  /** The conversation on screen, or null. */
  currentRoomId: null,
  /** True while the open conversation is visible and scrolled to the bottom. */
  reading: false,
  /** Messages typed but not yet acknowledged, in the order they were written. */
  outbox: [],
  /** Ids of the people I blocked (hello's `blocked`, then my own changes; issue 15). */
  blocked: new Set(),
};

let localCounter = 0;

/** A room's client-side state around its RoomInfo. */
function newRoom(info) {
  const eph = isEphemeral(info);
  return {
    /** RoomInfo from the server (last_seq / unread / read_seq kept current here). */
    info: { ...info },
    /** Shown events (messages and notices), ordered; see compareOrder. */
    events: [],
    /** seq -> event, to drop duplicates. */
    bySeq: new Map(),
    /** key -> event ("c:<author>:<client_id>" or "s:<seq>"). */
    byKey: new Map(),
    /** Highest seq present in `events`. */
    maxSeq: 0,
    /** Every kept event up to this seq has been received (or was never ours to
     *  show): the point to resume from after a reconnect. */
    syncedSeq: info.last_seq || 0,
    /** True once the newest history has been fetched (ephemeral rooms: always). */
    loaded: eph,
    /** Older history may exist on the server. */
    hasMore: !eph,
    /** A history request is in flight. */
    loadingHistory: false,
    /** A resume is in flight after a reconnect. */
    resyncing: false,
    /** User ids online in this room (from presence frames). */
    online: new Set(),
    /** A presence snapshot has arrived since the last connect. */
    presenceKnown: false,
    /** user id -> {username, until}: who is typing, until when (ms). */
    typing: new Map(),
    /** Members from GET /api/rooms/{id}/members, or null before the first load. */
    members: null,
    /** Members changed (joined/left notice) since they were loaded. */
    membersStale: false,
    /** Read marker this client has sent (kept across reconnects). */
    localReadSeq: info.read_seq || 0,
    /** Arrival counter that orders events without seq. */
    arrival: 0,
    /** Seqs of message actions (edit, delete, reaction) received past syncedSeq:
     *  they are not shown as events but count as held for resuming (see applyAction). */
    actionSeqs: new Set(),
  };
}

export const isEphemeral = (infoOrRoom) => {
  const info = infoOrRoom && infoOrRoom.info ? infoOrRoom.info : infoOrRoom;
  return !!(info && info.retention && info.retention.ephemeral);
};

export const room = (id) => state.rooms.get(id) || null;
export const currentRoom = () => room(state.currentRoomId);
export const isMine = (author) => !!(state.me && author && author.id === state.me.id);

/** The largest message a user may send. */
export const maxChars = () => state.limits.max_message_chars || state.config.max_message_chars || 4000;

// ---------------------------------------------------------------- session

/** Counts sessions begun and ended on this page, so that what a module remembers for
 *  one session (answers it asked for) can tell it is stale in the next. */
let sessionNo = 0;
export const sessionNumber = () => sessionNo;

/** Starts a fresh session for `user` (after sign-in or on load). */
export function startSession(user) {
  sessionNo += 1;
  state.me = user;
  state.rooms = new Map();
  state.currentRoomId = null;
  state.reading = false;
  state.outbox = loadOutbox(user.id);
  state.blocked = new Set();
  state.conn = { status: 'connecting', retryAt: 0, reason: '' };
  touch('all');
}

/** Forgets everything (sign-out). */
export function endSession() {
  sessionNo += 1;
  if (state.me) sessionStorage.removeItem(outboxKey(state.me.id));
  people.clear();
  state.me = null;
  state.rooms = new Map();
  state.currentRoomId = null;
  state.outbox = [];
  state.blocked = new Set();
  state.conn = { status: 'offline', retryAt: 0, reason: '' };
  touch('all');
}

export function setConfig(cfg) {
  state.config = { ...state.config, ...cfg };
  touch('me');
}

export function setMe(user) {
  state.me = { ...state.me, ...user };
  touch('me', 'all');
}

export function setConn(status, extra = {}) {
  const wasAway = isAway();
  state.conn = { ...state.conn, status, ...extra };
  // Presence shown while away from the server would be a guess (isOnline).
  if (wasAway !== isAway()) touch('conn', 'rooms');
  else touch('conn');
}

/** Cut off from the server (waiting to reconnect): nobody's presence is known. */
const isAway = () => state.conn.status === 'reconnecting' || state.conn.status === 'offline';

export function selectRoom(id) {
  if (state.currentRoomId === id) return;
  state.currentRoomId = id;
  state.reading = false;
  touch('current', 'rooms');
}

/** Called by the conversation view: is the user looking at the newest message? */
export function setReading(reading) {
  state.reading = reading;
}

// ---------------------------------------------------------------- events

const compareOrder = (a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1];

function eventKey(ev) {
  if (ev.client_id && ev.author) return `c:${ev.author.id}:${ev.client_id}`;
  if (ev.seq != null) return `s:${ev.seq}`;
  return `l:${++localCounter}`;
}

function insertSorted(r, item) {
  const list = r.events;
  // Most events go at the end; search backwards from there.
  let i = list.length;
  while (i > 0 && compareOrder(list[i - 1], item) > 0) i--;
  list.splice(i, 0, item);
}

function clearEvents(r) {
  r.events = [];
  r.bySeq.clear();
  r.byKey.clear();
  r.actionSeqs.clear();
  r.maxSeq = 0;
}

/** Moves the "synced through" marker over every seq we now hold. */
function advanceSynced(r) {
  while (r.bySeq.has(r.syncedSeq + 1) || r.actionSeqs.delete(r.syncedSeq + 1)) r.syncedSeq++;
}

function bumpUnread(r) {
  if (state.currentRoomId === r.info.id && state.reading) return;
  r.info.unread = (r.info.unread || 0) + 1;
}

/**
 * Adds one event (message or notice) to its room, unless it is already there.
 * `source`: 'live' | 'history' | 'resume' | 'ack'. Returns the stored event when it
 * was new, otherwise null.
 */
export function applyEvent(ev, source) {
  const r = state.rooms.get(ev.room);
  if (!r) return null;
  if (ACTION_KINDS.has(ev.kind)) return applyAction(ev), null; // replayed by `resumed`
  const mine = isMine(ev.author);
  // Our own message came back: its pending copy is done.
  if (mine && ev.client_id && source !== 'ack') removeFromOutbox(ev.client_id);

  const seq = ev.seq ?? null;
  const existing = (seq != null && r.bySeq.get(seq)) || (ev.client_id && r.byKey.get(eventKey(ev)));
  if (existing) {
    // Already shown (e.g. inserted from our ack): take the server's seq and time.
    if (existing.seq == null && seq != null) {
      existing.seq = seq;
      existing.order = [seq, 0];
      r.bySeq.set(seq, existing);
      r.maxSeq = Math.max(r.maxSeq, seq);
      r.events.sort(compareOrder);
      advanceSynced(r);
    }
    if (source !== 'ack' && existing.ts !== ev.ts) {
      existing.ts = ev.ts;
      existing.v++;
    }
    if (source !== 'ack' && takeActionFields(existing, ev)) existing.v++;
    touch(`room:${r.info.id}`, 'rooms');
    return null;
  }

  const item = {
    key: eventKey(ev),
    room: ev.room,
    seq,
    kind: ev.kind || 'text',
    author: ev.author || { id: 0, username: '' },
    text: ev.text || '',
    ts: ev.ts || Date.now(),
    client_id: ev.client_id || null,
    ...actionFields(ev),
    order: seq != null ? [seq, 0] : [r.maxSeq, ++r.arrival],
    /** Version: bumped when the item changes, so views know to redraw it. */
    v: 1,
  };
  insertSorted(r, item);
  r.byKey.set(item.key, item);
  const countable = !mine && item.kind === 'text';
  if (seq != null) {
    r.bySeq.set(seq, item);
    r.maxSeq = Math.max(r.maxSeq, seq);
    if (seq > (r.info.last_seq || 0)) {
      r.info.last_seq = seq;
      if (countable) bumpUnread(r);
      if (countable && mentionsMe(item)) bumpMentions(r);
    }
    advanceSynced(r);
  } else if (countable && source === 'live') {
    bumpUnread(r);
    if (mentionsMe(item)) bumpMentions(r);
  }
  if (item.kind === 'text' && r.typing.delete(item.author.id)) touch(`typing:${r.info.id}`);
  if (item.kind === 'moderation' && source === 'live') applyModeration(r, item);
  if ((item.kind === 'joined' || item.kind === 'left') && source === 'live') {
    r.membersStale = true;
    touch(`members:${r.info.id}`);
  }
  touch(`room:${r.info.id}`, 'rooms');
  return item;
}

/** Events from a `history` reply (oldest first). `newest`: asked without `before`. */
export function applyHistory(roomId, events, more, newest) {
  const r = room(roomId);
  if (!r) return;
  for (const ev of events) applyEvent(ev, 'history');
  if (newest) {
    let top = 0;
    for (const ev of events) if (ev.seq != null) top = Math.max(top, ev.seq);
    r.syncedSeq = Math.max(r.syncedSeq, top);
    advanceSynced(r);
  }
  r.loaded = true;
  r.hasMore = !!more && events.length > 0;
  r.loadingHistory = false;
  touch(`room:${roomId}`);
}

/** Events from a `resumed` reply. Returns true when the room is fully caught up. */
export function applyResumed(roomId, events, lastSeq, more) {
  const r = room(roomId);
  if (!r) return true;
  for (const ev of events) applyEvent(ev, 'resume');
  if (!more) {
    // The server says nothing else is kept up to last_seq.
    r.syncedSeq = Math.max(r.syncedSeq, lastSeq || 0);
    advanceSynced(r);
    r.resyncing = false;
  }
  if ((lastSeq || 0) > (r.info.last_seq || 0)) r.info.last_seq = lastSeq;
  touch(`room:${roomId}`);
  return !more;
}

/** A `gap` reply: history no longer reaches back; drop the view and start over. */
export function applyGap(roomId, lastSeq) {
  const r = room(roomId);
  if (!r) return;
  clearEvents(r);
  r.loaded = false;
  r.hasMore = true;
  r.loadingHistory = false;
  r.resyncing = false;
  r.syncedSeq = lastSeq || 0;
  r.info.last_seq = Math.max(r.info.last_seq || 0, lastSeq || 0);
  touch(`room:${roomId}`, 'rooms');
}

export function setLoadingHistory(roomId, on) {
  const r = room(roomId);
  if (!r) return;
  r.loadingHistory = on;
  touch(`room:${roomId}`);
}

/** Whether retention deleted events older than what the server still keeps: seqs
 *  start at 1 and are never reused, so once the oldest page is loaded (`hasMore`
 *  false), an oldest kept seq above 1, or nothing kept although the room has had
 *  events, means older ones are gone. */
export function olderTrimmed(r) {
  const oldest = oldestSeq(r);
  return oldest != null ? oldest > 1 : (r.info.last_seq || 0) > 0;
}

/** The oldest seq shown in a room (where older history starts), or null. */
export function oldestSeq(r) {
  for (const ev of r.events) if (ev.seq != null) return ev.seq;
  return null;
}

// ---------------------------------------------------------------- hello / rooms

/**
 * Applies the `hello` frame. Known rooms keep what they show; the ones whose history
 * is loaded are listed to be resumed from their synced seq. Returns
 * { resumes: [{room, after}], reads: [{room, seq}] }.
 */
export function applyHello(hello) {
  state.limits = { ...state.limits, ...(hello.limits || {}) };
  if (Array.isArray(hello.blocked)) state.blocked = new Set(hello.blocked.filter(Number.isInteger));
  const resumes = [];
  const reads = [];
  const present = new Set();
  for (const info of hello.rooms || []) {
    present.add(info.id);
    let r = state.rooms.get(info.id);
    if (!r) {
      state.rooms.set(info.id, newRoom(info));
      continue;
    }
    const synced = r.syncedSeq;
    const localRead = r.localReadSeq;
    r.info = { ...info };
    r.online = new Set();
    r.presenceKnown = false;
    r.typing.clear();
    r.membersStale = true; // people may have come and gone while we were away
    r.loadingHistory = false;
    r.resyncing = false;
    if (isEphemeral(info)) {
      // Nothing to fetch again: keep what was seen.
      r.loaded = true;
      r.hasMore = false;
    } else if (!r.loaded) {
      // Never opened: forget the live tail, history is fetched when it is opened.
      clearEvents(r);
      r.syncedSeq = info.last_seq || 0;
      r.hasMore = true;
    } else if ((info.last_seq || 0) > synced) {
      r.resyncing = true;
      resumes.push({ room: info.id, after: synced });
    }
    // Read while offline: tell the server now.
    if (localRead > (info.read_seq || 0)) {
      reads.push({ room: info.id, seq: localRead });
      r.info.read_seq = localRead;
      if (localRead >= (info.last_seq || 0)) r.info.unread = 0;
    }
    r.localReadSeq = Math.max(localRead, info.read_seq || 0);
  }
  for (const id of [...state.rooms.keys()]) if (!present.has(id)) dropRoom(id, 'You are no longer in this room.');
  touch('rooms', 'current', 'all');
  return { resumes, reads };
}

function dropRoom(id, why) {
  state.rooms.delete(id);
  for (const p of state.outbox) {
    if (p.room === id && p.status !== 'failed') {
      p.status = 'failed';
      p.error = why;
      p.v++;
    }
  }
  saveOutbox();
  if (state.currentRoomId === id) state.currentRoomId = null;
}

/** A room the user is now in (room_joined, or a RoomInfo from the HTTP API). */
export function upsertRoom(info) {
  const r = state.rooms.get(info.id);
  if (!r) {
    state.rooms.set(info.id, newRoom(info));
  } else {
    const lastSeq = Math.max(r.info.last_seq || 0, info.last_seq || 0);
    r.info = { ...r.info, ...info, last_seq: lastSeq };
    if (isEphemeral(info)) {
      r.loaded = true;
      r.hasMore = false;
    }
  }
  touch('rooms', `room:${info.id}`, 'current');
}

export function removeRoom(id) {
  if (!state.rooms.has(id)) return;
  dropRoom(id, 'You are no longer in this room.');
  touch('rooms', 'current', `room:${id}`);
}

export function roomUpdated(id, topic, retention, owner) {
  const r = room(id);
  if (!r) return false;
  const before = r.info.retention;
  r.info.topic = topic;
  r.info.retention = retention;
  // The owner changes when the owner leaves (the room passes on): the room-settings
  // button follows.
  if (owner !== undefined) r.info.owner = owner;
  // A stricter policy deleted history at once on the server: what this page shows of
  // it must go too (the latest page is loaded again; ephemeral keeps nothing).
  let reload = false;
  if (isEphemeral(r)) {
    if (before && !before.ephemeral) clearEvents(r);
    r.loaded = true;
    r.hasMore = false;
  } else if (trimsMore(before, retention)) {
    clearEvents(r);
    r.loaded = false;
    r.hasMore = true;
    r.loadingHistory = false;
    reload = true;
  }
  touch('rooms', 'current', `room:${id}`);
  return reload;
}

/** Whether retention `b` keeps less than `a` (fewer messages or fewer days). */
function trimsMore(a, b) {
  if (!a || !b) return false;
  const less = (was, now) => now != null && (was == null || now < was);
  return less(a.keep_messages, b.keep_messages) || less(a.keep_days, b.keep_days);
}

// ---------------------------------------------------------------- presence, typing, read

export function setPresence(roomId, online) {
  const r = room(roomId);
  if (!r) return;
  r.online = new Set(online);
  r.presenceKnown = true;
  touch(`presence:${roomId}`, 'rooms');
}

export function presenceChange(roomId, userId, online) {
  const r = room(roomId);
  if (!r) return;
  if (online) r.online.add(userId);
  else r.online.delete(userId);
  if (r.members) {
    const m = r.members.find((x) => x.id === userId);
    if (m) m.online = online;
  }
  touch(`presence:${roomId}`, 'rooms');
}

/** Is this user online, as far as this room's presence says? */
export function isOnline(r, userId) {
  if (isAway()) return false;
  if (r.presenceKnown) return r.online.has(userId);
  const m = r.members && r.members.find((x) => x.id === userId);
  return !!(m && m.online);
}

export const TYPING_SHOWN_MS = 5000;

export function typing(roomId, user) {
  const r = room(roomId);
  if (!r || isMine(user)) return;
  r.typing.set(user.id, { username: user.username, until: Date.now() + TYPING_SHOWN_MS });
  touch(`typing:${roomId}`);
}

/** Drops typing entries that have expired; returns the soonest remaining expiry. */
export function expireTyping(roomId) {
  const r = room(roomId);
  if (!r) return 0;
  const now = Date.now();
  let next = 0;
  for (const [id, t] of r.typing) {
    if (t.until <= now) r.typing.delete(id);
    else next = next ? Math.min(next, t.until) : t.until;
  }
  return next;
}

/** Our read marker moved (here or on another connection). */
export function markRead(roomId, seq) {
  const r = room(roomId);
  if (!r) return;
  const before = r.info.unread;
  r.info.read_seq = Math.max(r.info.read_seq || 0, seq);
  r.localReadSeq = Math.max(r.localReadSeq, seq);
  const beforeMentions = r.info.mentions || 0;
  if (r.info.read_seq >= (r.info.last_seq || 0)) {
    r.info.unread = 0;
    r.info.mentions = 0;
  } else {
    let n = 0;
    let m = 0;
    for (const ev of r.events) {
      if (!(ev.seq > r.info.read_seq && ev.kind === 'text' && !isMine(ev.author))) continue;
      n++;
      if (mentionsMe(ev)) m++;
    }
    r.info.unread = Math.min(r.info.unread || 0, n);
    r.info.mentions = Math.min(beforeMentions, m);
  }
  if (before !== r.info.unread || beforeMentions !== r.info.mentions) touch('rooms');
}

/** Clears the unread count of a room with no seqs to mark (ephemeral). */
export function clearUnread(roomId) {
  const r = room(roomId);
  if (r && (r.info.unread || r.info.mentions)) {
    r.info.unread = 0;
    r.info.mentions = 0;
    touch('rooms');
  }
}

export function setMembers(roomId, members) {
  const r = room(roomId);
  if (!r) return;
  for (const m of members) people.set(m.id, { id: m.id, username: m.username, first_name: m.first_name, last_name: m.last_name });
  r.members = members;
  r.membersStale = false;
  touch(`members:${roomId}`);
}

/** Everyone this page has seen in a member list, by id: a person who left (or was
 *  removed) keeps the full name on their messages, which come with a username only. */
const people = new Map();

/** The person with this id as last seen in a member list, if any. */
export const knownPerson = (id) => people.get(id) || null;

/** Remembers a person found elsewhere (the directory), unless a member list already
 *  named them (it is the fresher). */
export function rememberPerson(user) {
  if (!user || user.id == null || people.has(user.id)) return;
  people.set(user.id, { id: user.id, username: user.username, first_name: user.first_name, last_name: user.last_name });
}

/** `user_updated`: a person's new name, wherever it shows (member lists and the
 *  authors of messages through them, a DM's title, their own name if it is me). */
export function userUpdated(user) {
  if (!user || user.id == null) return;
  const names = { username: user.username, first_name: user.first_name, last_name: user.last_name };
  if (people.has(user.id)) people.set(user.id, { ...people.get(user.id), ...names });
  const topics = ['rooms'];
  if (state.me && state.me.id === user.id) {
    state.me = { ...state.me, ...names };
    topics.push('me');
  }
  for (const r of state.rooms.values()) {
    let changed = false;
    if (r.members && r.members.some((m) => m.id === user.id)) {
      // A new array: views keyed on the list's identity rebuild their lookups.
      r.members = r.members.map((m) => (m.id === user.id ? { ...m, ...names } : m));
      changed = true;
    }
    if (r.info.peer && r.info.peer.id === user.id) {
      r.info.peer = { ...r.info.peer, username: user.username };
      r.info.name = user.username;
      changed = true;
    }
    for (const ev of r.events) {
      if (ev.author && ev.author.id === user.id && ev.author.username !== user.username) {
        ev.author = { ...ev.author, username: user.username };
        changed = true;
      }
    }
    if (changed) topics.push(`members:${r.info.id}`, `room:${r.info.id}`);
  }
  touch(...topics);
}

/** Total unread across conversations, for the title and the menu button. */
export function totalUnread() {
  let n = 0;
  // A muted room is quiet: only its mentions count.
  for (const r of state.rooms.values()) n += r.info.notify === 'muted' ? r.info.mentions || 0 : r.info.unread || 0;
  return n;
}

// ---------------------------------------------------------------- outbox

const outboxKey = (userId) => `rtm.outbox.${userId}`;

function loadOutbox(userId) {
  try {
    const raw = JSON.parse(sessionStorage.getItem(outboxKey(userId)) || '[]');
    return raw
      .filter((p) => p && typeof p.client_id === 'string' && typeof p.text === 'string')
      .map((p) => ({
        key: `c:${userId}:${p.client_id}`,
        client_id: p.client_id,
        room: p.room,
        text: p.text,
        ts: p.ts || Date.now(),
        status: p.status === 'failed' ? 'failed' : 'queued',
        error: p.error || null,
        reply_to: Number.isInteger(p.reply_to) ? p.reply_to : null,
        attachments: copyAttachments(p.attachments),
        v: 1,
      }));
  } catch {
    return [];
  }
}

function saveOutbox() {
  if (!state.me) return;
  try {
    const keep = state.outbox.map(({ client_id, room: r, text, ts, status, error, reply_to, attachments }) => ({
      client_id,
      room: r,
      text,
      ts,
      status,
      error,
      reply_to,
      attachments,
    }));
    if (keep.length) sessionStorage.setItem(outboxKey(state.me.id), JSON.stringify(keep));
    else sessionStorage.removeItem(outboxKey(state.me.id));
  } catch {
    /* storage full or disabled: the queue still lives in memory */
  }
}

export const findPending = (clientId) => state.outbox.find((p) => p.client_id === clientId) || null;
export const pendingFor = (roomId) => state.outbox.filter((p) => p.room === roomId);

/** Queues a message typed by the user; returns the pending item. `replyTo`: the seq
 *  of the message it answers, or null. `attachments`: the Attachment objects of its
 *  finished uploads (files.js; PROTOCOL §3.9), shown while it is pending. */
export function addPending(roomId, clientId, text, replyTo = null, attachments = []) {
  const p = {
    key: `c:${state.me.id}:${clientId}`,
    client_id: clientId,
    room: roomId,
    text,
    ts: Date.now(),
    /** 'queued' (waiting for the socket) | 'sending' (sent, no ack yet) | 'failed'. */
    status: 'queued',
    error: null,
    reply_to: replyTo,
    attachments: copyAttachments(attachments),
    v: 1,
  };
  state.outbox.push(p);
  saveOutbox();
  touch(`room:${roomId}`);
  return p;
}

function setPendingStatus(p, status, error = null) {
  p.status = status;
  p.error = error;
  p.v++;
  saveOutbox();
  touch(`room:${p.room}`);
}

export function markSending(clientId) {
  const p = findPending(clientId);
  if (p) setPendingStatus(p, 'sending');
}

export function failPending(clientId, message) {
  const p = findPending(clientId);
  if (p) setPendingStatus(p, 'failed', message);
}

export function retryPending(clientId) {
  const p = findPending(clientId);
  if (p) setPendingStatus(p, 'queued');
  return p;
}

export function discardPending(clientId) {
  removeFromOutbox(clientId);
}

function removeFromOutbox(clientId) {
  const i = state.outbox.findIndex((p) => p.client_id === clientId);
  if (i < 0) return null;
  const [p] = state.outbox.splice(i, 1);
  saveOutbox();
  touch(`room:${p.room}`);
  return p;
}

/** The server acknowledged a send: the pending copy becomes a normal message. */
export function ackPending(clientId, roomId, seq) {
  const p = removeFromOutbox(clientId);
  if (!p || !state.me) return;
  applyEvent(
    {
      room: roomId ?? p.room,
      seq: seq ?? null,
      kind: 'text',
      author: { id: state.me.id, username: state.me.username },
      text: p.text,
      ts: p.ts,
      client_id: clientId,
      attachments: p.attachments,
    },
    'ack',
  );
}

/** The socket went away: nothing is in flight any more. */
export function onDisconnected() {
  for (const r of state.rooms.values()) {
    r.loadingHistory = false;
    r.resyncing = false;
    if (r.typing.size) {
      r.typing.clear();
      touch(`typing:${r.info.id}`);
    }
  }
  for (const p of state.outbox) {
    if (p.status === 'sending') {
      p.status = 'queued';
      p.v++;
    }
  }
  saveOutbox();
  touch('rooms', 'all');
}

// ---------------------------------------------------------------- message actions
// (issue 12: edit, delete, reactions, replies, mentions, notification levels; the
// views are web/js/actions.js, reactions.js, mentions.js). PROTOCOL.md §3.8.

/** Event kinds that act on another message (`target`) instead of being shown. */
const ACTION_KINDS = new Set(['edit', 'delete', 'reaction']);

/** A copy of the reactions list, keeping only well-formed entries. */
function copyReactions(list) {
  if (!Array.isArray(list)) return [];
  return list
    .filter((x) => x && typeof x.emoji === 'string' && Array.isArray(x.users) && x.users.length)
    .map((x) => ({ emoji: x.emoji, users: x.users.filter(Number.isInteger) }));
}

/** The message-action fields of an event, as a shown item keeps them. */
function actionFields(ev) {
  return {
    /** [{id, username}] named by the text's <@ID> tokens (current usernames). */
    mentions: Array.isArray(ev.mentions) ? ev.mentions : [],
    /** {seq, author, excerpt} or {seq, missing: true}, or null. */
    reply_to: ev.reply_to && Number.isInteger(ev.reply_to.seq) ? ev.reply_to : null,
    /** When the text was last edited (ms), or null. */
    edited: ev.edited || null,
    deleted: !!ev.deleted,
    /** [{emoji, users: [user id]}], in the order first given. */
    reactions: copyReactions(ev.reactions),
    /** [Attachment] (files and images, PROTOCOL §3.9); kept by edits, gone on delete. */
    attachments: copyAttachments(ev.attachments),
    /** A `moderation` notice's fields (issue 15, PROTOCOL §3.10), or null. */
    mod: ev.kind === 'moderation' ? moderationFields(ev) : null,
  };
}

/** A copy of an attachments list, keeping only entries with a file id. */
function copyAttachments(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((a) => a && typeof a.id === 'string' && typeof a.name === 'string').map((a) => ({ ...a }));
}

/** Takes the server's copy of a message's current state (history, resume, a live
 *  duplicate). Returns true when something shown changed. */
function takeActionFields(item, ev) {
  if (item.kind !== 'text' || ev.kind !== 'text') return false;
  const f = actionFields(ev);
  const text = ev.text ?? item.text;
  const same =
    item.text === text &&
    item.edited === f.edited &&
    item.deleted === f.deleted &&
    JSON.stringify([item.mentions, item.reply_to, item.reactions, item.attachments]) ===
      JSON.stringify([f.mentions, f.reply_to, f.reactions, f.attachments]);
  if (same) return false;
  Object.assign(item, f, { text });
  return true;
}

/** Does this shown message mention the signed-in user (by <@ID>, someone else's text)? */
export function mentionsMe(item) {
  const me = state.me;
  if (!me || !item || !item.mentions || isMine(item.author)) return false;
  return item.mentions.some((m) => m && m.id === me.id);
}

function bumpMentions(r) {
  if (state.currentRoomId === r.info.id && state.reading) return;
  r.info.mentions = (r.info.mentions || 0) + 1;
}

/**
 * Applies an `action` event (live, or replayed by `resumed`) to the message it names,
 * as §3.8 says: edit replaces the text (ignored once deleted), delete leaves a
 * tombstone, a reaction adds or removes its author. Idempotent, so replaying actions
 * already applied changes nothing. An action whose target is not held is ignored.
 */
export function applyAction(ev) {
  const r = state.rooms.get(ev.room);
  if (!r) return;
  if (Number.isInteger(ev.seq)) {
    if (ev.seq > r.syncedSeq) r.actionSeqs.add(ev.seq);
    if (ev.seq > (r.info.last_seq || 0)) r.info.last_seq = ev.seq;
    advanceSynced(r);
  }
  const item = r.bySeq.get(ev.target);
  if (!item || item.kind !== 'text') return;
  let changed = false;
  if (ev.kind === 'edit') {
    if (item.deleted) return;
    const text = typeof ev.text === 'string' ? ev.text : item.text;
    const mentions = Array.isArray(ev.mentions) ? ev.mentions : [];
    changed = item.text !== text || item.edited !== ev.ts || JSON.stringify(item.mentions) !== JSON.stringify(mentions);
    const wasMention = mentionsMe(item);
    item.text = text;
    item.mentions = mentions;
    // An edit that adds or removes a mention of you in an unread message moves the
    // count, as the server's does (§3.8).
    const isMention = mentionsMe(item);
    if (wasMention !== isMention && item.seq > Math.max(r.info.read_seq || 0, r.localReadSeq || 0)) {
      r.info.mentions = Math.max(0, (r.info.mentions || 0) + (isMention ? 1 : -1));
      touch('rooms');
    }
    item.edited = ev.ts || item.edited || Date.now();
  } else if (ev.kind === 'delete') {
    changed = !item.deleted || item.text !== '' || item.reactions.length > 0;
    item.deleted = true;
    item.text = '';
    item.reactions = [];
    item.mentions = [];
    item.attachments = [];
  } else if (ev.kind === 'reaction' && typeof ev.emoji === 'string' && ev.author) {
    if (item.deleted) return;
    const uid = ev.author.id;
    let entry = item.reactions.find((x) => x.emoji === ev.emoji);
    if (ev.on !== false) {
      if (!entry) item.reactions.push((entry = { emoji: ev.emoji, users: [] }));
      if (!entry.users.includes(uid)) {
        entry.users.push(uid);
        changed = true;
      }
    } else if (entry && entry.users.includes(uid)) {
      entry.users = entry.users.filter((u) => u !== uid);
      if (!entry.users.length) item.reactions = item.reactions.filter((x) => x !== entry);
      changed = true;
    }
  }
  if (changed) {
    item.v++;
    touch(`room:${r.info.id}`);
  }
}

/** Our notification level for a room changed (`notify` frame or our own command). */
export function setNotify(roomId, level) {
  const r = room(roomId);
  if (!r || !['all', 'mentions', 'muted'].includes(level) || r.info.notify === level) return;
  r.info.notify = level;
  touch('rooms', 'current');
}

// ---------------------------------------------------------------- moderation and blocking
// (issue 15: roles, mutes, bans, read-only rooms, blocks; the views are
// web/js/moderation.js, members.js and dialogs.js). PROTOCOL.md §2.9, §3.10.

/** The fields of a `moderation` notice that say what was done. */
function moderationFields(ev) {
  const user = ev.user && Number.isInteger(ev.user.id) ? { id: ev.user.id, username: String(ev.user.username || '') } : null;
  return {
    action: typeof ev.action === 'string' ? ev.action : '',
    user,
    role: typeof ev.role === 'string' ? ev.role : null,
    until: Number.isFinite(ev.until) ? ev.until : null,
    name: typeof ev.name === 'string' ? ev.name : null,
    read_only: typeof ev.read_only === 'boolean' ? ev.read_only : null,
  };
}

/** My role in a room: 'owner' (the admin counts as owner everywhere), 'moderator' or
 *  'member'. Older servers send no `role`: the owner id and the admin flag decide. */
export function myRole(r) {
  if (!r || r.info.kind === 'dm') return 'member';
  if (r.info.role === 'owner' || r.info.role === 'moderator') return r.info.role;
  if (state.me && (state.me.is_admin || r.info.owner === state.me.id)) return 'owner';
  return r.info.role || 'member';
}

/** A live moderation notice changes what is shown beside it: the subject's role and
 *  mute in the member list, my own role, the room's name and read-only flag. (History
 *  and resume are older than what `hello` and the member list already say.) */
function applyModeration(r, item) {
  const m = item.mod;
  if (!m) return;
  const id = r.info.id;
  const uid = m.user ? m.user.id : null;
  const patchMember = (fields) => {
    if (!r.members || uid == null || !r.members.some((x) => x.id === uid)) return;
    r.members = r.members.map((x) => (x.id === uid ? { ...x, ...fields } : x));
  };
  const me = state.me;
  switch (m.action) {
    case 'role':
      if (m.role) patchMember({ role: m.role });
      if (me && uid === me.id && r.info.role !== 'owner' && m.role) r.info.role = m.role;
      break;
    case 'mute':
      patchMember({ muted_until: m.until });
      break;
    case 'unmute':
      patchMember({ muted_until: null });
      break;
    case 'kick':
    case 'ban':
      if (r.members && uid != null) r.members = r.members.filter((x) => x.id !== uid);
      r.membersStale = true;
      break;
    case 'rename':
      if (m.name) r.info.name = m.name;
      break;
    case 'read_only':
      if (m.read_only != null) r.info.read_only = m.read_only;
      break;
    default:
      break;
  }
  touch(`members:${id}`, 'rooms', 'current');
}

/** `room_updated` (after a PATCH) or the admin console: the room's name, read-only and
 *  archived flags as they now are (fields not given stay). */
export function roomFlags(id, f) {
  const r = room(id);
  if (!r || !f) return;
  if (typeof f.name === 'string' && f.name) r.info.name = f.name;
  if (typeof f.read_only === 'boolean') r.info.read_only = f.read_only;
  if (typeof f.archived === 'boolean') r.info.archived = f.archived;
  if (typeof f.role === 'string') r.info.role = f.role;
  touch('rooms', 'current', `room:${id}`);
}

/** A member's mute as the server said it (an `error` `muted` with `until`; 0/null lifts it). */
export function setMemberMute(roomId, userId, until) {
  const r = room(roomId);
  if (!r || !r.members) return;
  if (!r.members.some((x) => x.id === userId)) return;
  r.members = r.members.map((x) => (x.id === userId ? { ...x, muted_until: until || null } : x));
  touch(`members:${roomId}`, 'rooms');
}

/** The signed-in user's mute in a room (ms), or 0 when not muted now. */
export function myMuteUntil(r) {
  if (!r || !r.members || !state.me) return 0;
  const m = r.members.find((x) => x.id === state.me.id);
  const until = m && m.muted_until ? m.muted_until : 0;
  return until > Date.now() ? until : 0;
}

export const isBlocked = (userId) => state.blocked.has(userId);

/** I blocked (`on`) or unblocked someone. */
export function setBlocked(userId, on) {
  if (on === state.blocked.has(userId)) return;
  if (on) state.blocked.add(userId);
  else state.blocked.delete(userId);
  const topics = ['blocked', 'rooms', 'current'];
  for (const r of state.rooms.values()) topics.push(`members:${r.info.id}`, `room:${r.info.id}`);
  touch(...topics);
}
