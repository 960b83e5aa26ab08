// format.js: pure helpers that turn data into display strings (times, dates, names,
// retention policies), plus small utilities with no DOM or state: ids, debouncing,
// character counting and @mention matching.

const pad2 = (n) => String(n).padStart(2, '0');

/** Local time as HH:MM. */
export function timeHM(ts) {
  const d = new Date(ts);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** Full local date and time, for title attributes. */
export function fullDate(ts) {
  return new Date(ts).toLocaleString(undefined, {
    weekday: 'long',
    year: 'numeric',
    month: 'long',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

/** Machine-readable ISO date for <time datetime>. */
export function isoDate(ts) {
  return new Date(ts).toISOString();
}

/** A local calendar-day key (YYYY-MM-DD), used to place day separators. */
export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
}

/** "Today", "Yesterday" or a long local date. */
export function dayLabel(ts) {
  const now = new Date();
  const today = dayKey(now.getTime());
  const yesterday = dayKey(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1).getTime());
  const key = dayKey(ts);
  if (key === today) return 'Today';
  if (key === yesterday) return 'Yesterday';
  return new Date(ts).toLocaleDateString(undefined, {
    weekday: 'long',
    year: 'numeric',
    month: 'long',
    day: 'numeric',
  });
}

/** "First Last", falling back to the username. */
export function fullName(u) {
  const name = [u.first_name, u.last_name].filter(Boolean).join(' ').trim();
  return name || u.username || '';
}

/** One sentence describing a retention policy. */
export function retentionText(r) {
  if (!r) return '';
  if (r.ephemeral) return 'Ephemeral: nothing is kept.';
  const n = r.keep_messages;
  const d = r.keep_days;
  const msgs = n != null ? `the last ${n.toLocaleString()} message${n === 1 ? '' : 's'}` : '';
  const days = d != null ? `${d.toLocaleString()} day${d === 1 ? '' : 's'}` : '';
  if (msgs && days) return `Keeps ${msgs}, for at most ${days}.`;
  if (msgs) return `Keeps ${msgs}.`;
  if (days) return `Keeps messages for ${days}.`;
  return '';
}

/** The retention select's value for a policy ("messages" | "days" | "both" | "ephemeral"). */
export function retentionChoice(r) {
  if (!r || r.ephemeral) return 'ephemeral';
  if (r.keep_messages != null && r.keep_days != null) return 'both';
  if (r.keep_days != null) return 'days';
  return 'messages';
}

/** A random RFC 4122 v4 UUID. crypto.randomUUID needs a secure context, which a
 *  LAN server over plain http is not, so fall back to getRandomValues. */
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function' && globalThis.isSecureContext) {
    return crypto.randomUUID();
  }
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Calls `fn` once `ms` have passed without another call. */
export function debounce(fn, ms) {
  let t = 0;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

/** Length in Unicode scalar values, as the server counts it. */
export function charCount(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * A regex for "@username" as a whole word (case-insensitive). Group 1 is the
 * character before the "@" (or empty at the start), so callers can find the tag.
 */
export function mentionRegex(username, global = false) {
  return new RegExp(
    `(^|[^A-Za-z0-9_.@-])@${escapeRe(username)}(?![A-Za-z0-9_-]|\\.[A-Za-z0-9_-])`,
    global ? 'gi' : 'i',
  );
}
