// socket.js: the one WebSocket per tab and everything that keeps it honest.
//
// - Connects to /ws (the session cookie authenticates it) and decodes server text
//   frames, which are one JSON object or a JSON array of them.
// - Reconnects on its own with exponential backoff (1 s doubling to 30 s, ±20 %
//   jitter), sooner when the browser comes back online or the tab is shown again.
// - After each `hello`, resumes every loaded room from the last seq it holds
//   (following `more`, reloading on `gap`), so nothing is missed or shown twice.
// - Sends queued messages (the store's outbox) once live, with their original
//   client_id, so a retry after a drop is deduplicated by the server.
// - Keeps the link alive with ping/pong and drops it when pongs stop coming.
// Frames are applied to the store; the app is told about live messages (for
// notifications) and about a lost session through the callbacks given to `Sync`.

import * as store from './store.js';
import { get, sentence } from './api.js';

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const HELLO_TIMEOUT_MS = 15000;
const PING_EVERY_MS = 25000;
const PONG_TIMEOUT_MS = 10000;
const TYPING_EVERY_MS = 3000;
const HISTORY_PAGE = 50;

/** Functions that see every server frame before it is applied (see tapFrames). */
const frameTaps = [];

/** Lets a view watch server frames it has its own use for (e.g. `user_updated` for the
 *  names on mention chips): `fn(frame)` is called for each frame, before the store
 *  applies it. */
export function tapFrames(fn) {
  frameTaps.push(fn);
}

export class Sync {
  /**
   * @param {object} hooks
   *   onHello(): the socket is live again (after every hello).
   *   onLiveEvent(item, roomState): a new message/notice arrived live.
   *   onUnauthenticated(): the session is gone; show the sign-in screen.
   *   onServerError(message): an error frame that belongs to no request.
   *   onReload(): the account behind the socket changed; reload the page.
   */
  constructor(hooks = {}) {
    this.hooks = hooks;
    this.ws = null;
    this.helloSeen = false;
    this.stopped = true;
    this.attempt = 0;
    this.nextReq = 0;
    /** request id -> { kind, room, before, client_id } */
    this.requests = new Map();
    this.lastTypingSent = new Map();
    /** Uploads handed to the next send by withAttachments (null: none). */
    this.carry = null;
    this.timers = { retry: 0, hello: 0, ping: 0, pong: 0 };
    /** Set by a `closing` frame: why the server is closing this connection. */
    this.closingCode = '';
    this.closingReason = '';
    this.onOnline = () => this.retryNow();
    // The browser says the network is gone: a socket on a dead network can take
    // minutes to notice, so drop it now and resume once the network is back.
    this.onOffline = () => this.drop('the network is offline');
    this.onVisible = () => {
      if (document.visibilityState === 'visible' && store.state.conn.status === 'reconnecting') this.retryNow();
    };
  }

  /** True when commands can be sent. */
  get live() {
    return !!(this.ws && this.helloSeen && this.ws.readyState === WebSocket.OPEN);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.connect();
  }

  /** Closes for good (sign-out): no reconnect. */
  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    document.removeEventListener('visibilitychange', this.onVisible);
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    this.helloSeen = false;
    this.requests.clear();
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, 'bye');
      } catch {
        /* already closed */
      }
    }
    store.setConn('offline', { retryAt: 0 });
  }

  /** Skips the backoff wait and connects now (the "Retry now" button). */
  retryNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timers.retry);
    this.connect();
  }

  clearTimers() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      clearInterval(this.timers[k]);
      this.timers[k] = 0;
    }
  }

  // ------------------------------------------------------------ connection

  connect() {
    clearTimeout(this.timers.retry);
    store.setConn('connecting', { retryAt: 0 });
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      console.warn('WebSocket failed to start', e);
      this.ws = null;
      this.closed('could not open the connection');
      return;
    }
    this.ws = ws;
    this.helloSeen = false;
    this.closingReason = '';
    ws.onmessage = (e) => this.receive(e.data);
    ws.onclose = (e) => {
      if (this.ws === ws) this.closed(this.closingReason || (e.reason ? e.reason : ''));
    };
    ws.onerror = () => {
      /* a close event follows */
    };
    // A socket that opens but never says hello is as good as dead.
    this.timers.hello = setTimeout(() => this.drop('the server did not answer'), HELLO_TIMEOUT_MS);
  }

  /** Abandons the current socket at once (its close event may take minutes on a
   *  dead network) and goes through the normal reconnect path. */
  drop(reason) {
    const ws = this.ws;
    if (!ws) return;
    detach(ws);
    try {
      ws.close(4000, 'timeout');
    } catch {
      /* ignore */
    }
    this.closed(reason);
  }

  closed(reason) {
    const hadHello = this.helloSeen;
    this.ws = null;
    this.helloSeen = false;
    this.clearTimers();
    // Whatever was asked and not answered is lost with the socket; the store puts
    // unacknowledged sends back in the queue (same client_id) for the next hello.
    this.requests.clear();
    store.onDisconnected();
    if (this.stopped) return;
    // A refused upgrade looks like any other close: ask whether the session lives.
    if (!hadHello || this.closingCode) this.checkSession();
    this.closingCode = '';
    this.scheduleReconnect(reason);
  }

  scheduleReconnect(reason) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.attempt, 10));
    const delay = Math.min(BACKOFF_MAX_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
    this.attempt++;
    store.setConn('reconnecting', { retryAt: Date.now() + delay, reason: reason || '' });
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  async checkSession() {
    try {
      await get('/api/me');
    } catch (e) {
      if (e.status === 401 && !this.stopped) {
        this.stop();
        this.hooks.onUnauthenticated?.();
      }
    }
  }

  // ------------------------------------------------------------ sending

  /** Sends one command; `meta` is remembered under its request id for the reply. */
  sendFrame(frame, meta) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    try {
      this.ws.send(JSON.stringify(frame));
    } catch (e) {
      console.warn('send failed', e);
      return false;
    }
    if (meta && frame.id) this.requests.set(frame.id, meta);
    return true;
  }

  newId() {
    this.nextReq = (this.nextReq + 1) % 1e9;
    return `r${this.nextReq}`;
  }

  /** An id for a fire-and-forget command (typing, read): an error naming it (say,
   *  a read marker that raced with leaving the room) is not the user's business. */
  quietId() {
    this.nextReq = (this.nextReq + 1) % 1e9;
    return `q${this.nextReq}`;
  }

  /** Queues a message for a room and sends it when possible (`replyTo`: the seq of
   *  the message it answers, PROTOCOL §3.8; `attachments`: Attachment objects of
   *  finished uploads, §3.9; when not given, those handed over by withAttachments). */
  sendMessage(roomId, clientId, text, replyTo = null, attachments = null) {
    // The message ends the others' "is typing" line, so the next keystroke in this
    // room must be able to start it again at once (not up to 3 s later).
    this.lastTypingSent.delete(roomId);
    let files = attachments;
    if (files == null && this.carry && this.carry.room === roomId) {
      files = this.carry.list;
      this.carry.used = true;
    }
    const p = store.addPending(roomId, clientId, text, replyTo, files || []);
    this.sendPending(p);
  }

  /** Runs `fn` (a composer mode's submit, e.g. a reply's) so that a message it sends
   *  to `roomId` carries `list` (the composer's finished uploads); returns
   *  { result, used } where `used` says whether a message took them. */
  withAttachments(roomId, list, fn) {
    this.carry = { room: roomId, list, used: false };
    try {
      const result = fn();
      return { result, used: this.carry.used };
    } finally {
      this.carry = null;
    }
  }

  /** Sends a queued message if the socket is live (no-op otherwise: it waits). */
  sendPending(p) {
    if (!this.live || p.status === 'failed') return;
    const id = this.newId();
    const frame = { type: 'send', id, room: p.room, client_id: p.client_id, text: p.text };
    if (p.reply_to != null) frame.reply_to = p.reply_to;
    if (p.attachments && p.attachments.length) frame.attachments = p.attachments.map((a) => a.id);
    const ok = this.sendFrame(
      frame,
      { kind: 'send', room: p.room, client_id: p.client_id },
    );
    if (ok) store.markSending(p.client_id);
  }

  /** Tries a failed message again, with the same client_id. */
  retry(clientId) {
    const p = store.retryPending(clientId);
    if (p) this.sendPending(p);
  }

  flushOutbox() {
    for (const p of [...store.state.outbox]) if (p.status === 'queued') this.sendPending(p);
  }

  /** Asks for the page of history before the oldest event shown (or the newest). */
  loadHistory(roomId) {
    const r = store.room(roomId);
    if (!r || r.loadingHistory || r.resyncing || !this.live) return;
    if (store.isEphemeral(r)) return;
    if (r.loaded && !r.hasMore) return;
    const before = store.oldestSeq(r);
    const frame = { type: 'history', id: this.newId(), room: roomId, limit: HISTORY_PAGE };
    if (before != null) frame.before = before;
    if (this.sendFrame(frame, { kind: 'history', room: roomId, newest: before == null })) {
      store.setLoadingHistory(roomId, true);
    }
  }

  /** Loads a room's first page if it has none yet. */
  ensureLoaded(roomId) {
    const r = store.room(roomId);
    if (r && !r.loaded) this.loadHistory(roomId);
  }

  resume(roomId, after) {
    this.sendFrame({ type: 'resume', id: this.newId(), room: roomId, after }, { kind: 'resume', room: roomId });
  }

  /** "I am typing", at most once every 3 s per room. */
  typing(roomId) {
    if (!this.live) return;
    const now = Date.now();
    if (now - (this.lastTypingSent.get(roomId) || 0) < TYPING_EVERY_MS) return;
    this.lastTypingSent.set(roomId, now);
    this.sendFrame({ type: 'typing', id: this.quietId(), room: roomId });
  }

  /** Everything up to `seq` has been read. Sent only when it moves the marker. */
  read(roomId, seq) {
    const r = store.room(roomId);
    if (!r || seq == null) return;
    const known = Math.max(r.info.read_seq || 0, r.localReadSeq || 0);
    if (seq > known && this.live) this.sendFrame({ type: 'read', id: this.quietId(), room: roomId, seq });
    store.markRead(roomId, seq);
  }

  // ------------------------------------------------------------ receiving

  receive(data) {
    if (typeof data !== 'string') return;
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      console.warn('ignoring a frame that is not JSON');
      return;
    }
    const frames = Array.isArray(parsed) ? parsed : [parsed];
    for (const f of frames) {
      if (!f || typeof f !== 'object') continue;
      try {
        this.handle(f);
      } catch (e) {
        console.error('frame handling failed', f.type, e);
      }
    }
  }

  handle(f) {
    for (const fn of frameTaps) {
      try {
        fn(f);
      } catch (e) {
        console.error('frame tap failed', e);
      }
    }
    switch (f.type) {
      case 'hello':
        return this.onHello(f);
      case 'message':
      case 'notice': {
        const item = store.applyEvent(f, 'live');
        if (item) this.hooks.onLiveEvent?.(item, store.room(f.room));
        return;
      }
      case 'action':
        return store.applyAction(f);
      case 'notify':
        return store.setNotify(f.room, f.level);
      case 'ack':
        return this.onAck(f);
      case 'error':
        return this.onError(f);
      case 'history': {
        const req = this.take(f.id);
        store.applyHistory(f.room, f.events || [], f.more, req ? req.newest : false);
        return;
      }
      case 'resumed': {
        this.take(f.id);
        const events = f.events || [];
        const last = events.length ? events[events.length - 1].seq : null;
        // `more` with nothing to continue from would loop: take it as done.
        const more = !!f.more && last != null;
        store.applyResumed(f.room, events, f.last_seq, more);
        if (more) this.resume(f.room, last);
        else this.afterResync(f.room);
        return;
      }
      case 'gap':
        this.take(f.id);
        store.applyGap(f.room, f.last_seq);
        if (store.state.currentRoomId === f.room) this.loadHistory(f.room);
        return;
      case 'presence':
        return store.setPresence(f.room, f.online || []);
      case 'presence_change':
        return store.presenceChange(f.room, f.user, !!f.online);
      case 'typing':
        return store.typing(f.room, f.user);
      case 'read':
        return store.markRead(f.room, f.seq);
      case 'room_joined':
        return store.upsertRoom(f.room);
      case 'room_left':
        return store.removeRoom(f.room);
      case 'room_updated':
        if (store.roomUpdated(f.room, f.topic, f.retention, f.owner) && store.state.currentRoomId === f.room) {
          this.loadHistory(f.room);
        }
        return;
      case 'user_updated':
        return store.userUpdated(f.user);
      case 'block_changed':
        return store.setBlocked(f.user, f.blocked === true);
      case 'closing':
        // The server is about to close us; the close event does the rest.
        this.closingCode = f.code || 'closing';
        this.closingReason = f.reason || f.code || '';
        return;
      case 'pong':
        clearTimeout(this.timers.pong);
        this.timers.pong = 0;
        return;
      default:
        return; // a newer server may send more; ignore what we do not know
    }
  }

  take(id) {
    if (!id) return null;
    const req = this.requests.get(id) || null;
    this.requests.delete(id);
    return req;
  }

  onHello(f) {
    clearTimeout(this.timers.hello);
    if (store.state.me && f.user && f.user.id !== store.state.me.id) {
      // Another account signed in in this browser: start over.
      this.stop();
      this.hooks.onReload?.();
      return;
    }
    this.helloSeen = true;
    this.attempt = 0;
    const { resumes, reads } = store.applyHello(f);
    store.setConn('live', { retryAt: 0, reason: '' });
    for (const { room, after } of resumes) this.resume(room, after);
    for (const { room, seq } of reads) this.sendFrame({ type: 'read', id: this.quietId(), room, seq });
    this.flushOutbox();
    this.startPing();
    const cur = store.state.currentRoomId;
    if (cur != null) this.ensureLoaded(cur);
    this.hooks.onHello?.();
  }

  afterResync(roomId) {
    // A room whose resume finished may now page older history if it wants to.
    if (store.state.currentRoomId === roomId) this.ensureLoaded(roomId);
  }

  onAck(f) {
    const req = this.take(f.id);
    const clientId = f.client_id || (req && req.kind === 'send' ? req.client_id : null);
    if (clientId) store.ackPending(clientId, f.room ?? (req && req.room), f.seq);
  }

  onError(f) {
    const message = sentence(f.message || f.code || 'error');
    if (typeof f.id === 'string' && f.id.startsWith('q')) {
      console.debug('ignored error for', f.id, f.code, message);
      return;
    }
    const req = this.take(f.id);
    if (!req) {
      this.hooks.onServerError?.(message, f.code);
      return;
    }
    switch (req.kind) {
      case 'send':
        store.failPending(req.client_id, message);
        break;
      case 'history':
        store.setLoadingHistory(req.room, false);
        this.hooks.onServerError?.(message, f.code);
        break;
      case 'resume': {
        // Cannot resume: treat as a gap and reload the newest history.
        const r = store.room(req.room);
        store.applyGap(req.room, r ? r.info.last_seq : 0);
        if (store.state.currentRoomId === req.room) this.loadHistory(req.room);
        break;
      }
      default:
        this.hooks.onServerError?.(message, f.code);
    }
  }

  startPing() {
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      if (!this.live || this.timers.pong) return;
      this.sendFrame({ type: 'ping', id: this.newId() });
      this.timers.pong = setTimeout(() => this.drop('the connection stopped answering'), PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }
}

function detach(ws) {
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}
