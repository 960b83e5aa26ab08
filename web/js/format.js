// format.js: helpers that turn data into what is shown: display strings (times, dates,
// names, retention policies), avatars (initials and a colour per user id), and message
// text with its small formatting subset (parseMessage: text -> plain tree, no DOM;
// renderMessage: tree -> DOM nodes built with createElement/textContent only). Plus
// small utilities with no state: ids, debouncing, character counting, @mention matching.

import { safeHref } from './dom.js';

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

// ---------------------------------------------------------------- avatars

/** How many avatar colours there are: CSS classes `.av-0` … `.av-11` in style.css, each
 *  dark enough for white initials at a contrast of at least 4.5:1 (WCAG AA). */
export const AVATAR_COLOURS = 12;

/** The avatar colour of a user: a hash of the id, so it is the same on every screen and
 *  after renames, and neighbouring ids (people who signed up together) differ. */
export function avatarColour(userId) {
  let x = Number(userId) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x % AVATAR_COLOURS;
}

/** One or two letters for an avatar: first and last name's initials, else the
 *  username's first character. Code points, not UTF-16 halves. */
export function initials(u) {
  const first = (s) => (s ? [...s.trim()][0] || '' : '');
  const a = first(u.first_name);
  const b = first(u.last_name);
  const letters = a || b ? a + b : first(u.username);
  return letters.toLocaleUpperCase() || '?';
}

// ---------------------------------------------------------------- message formatting
//
// The subset (a small Markdown dialect, as people type it in Slack or Zulip):
//   **bold**   *italic*   _italic_   `inline code`   ```code block```   > block quote
//   [text](https://target)   bare http(s) URLs and www.-addresses (as http://, as
//   GitHub and Slack link them)   and the reader's @mention highlighted.
// Anything else stays literal text. parseMessage() builds a tree of plain objects;
// renderMessage() turns it into DOM nodes whose text is only ever set as text nodes.
//
// Linear time on hostile input (10,000 asterisks, unterminated markers, thousands of
// brackets): a closing marker is never searched for by scanning forward; one backward
// pass per marker kind builds a "next closer at or after i" table, so each opener costs
// O(1) and each character is visited once per table. `steps` counts that work so the
// browser test can check it grows linearly. Nesting is capped at MAX_DEPTH.

const MAX_DEPTH = 8;
// Bare URLs; punctuation that usually ends a sentence is trimmed afterwards (trimUrl).
// A www. address counts when it starts a word (not `foo.www.x`, `me@www.x`, `/www.x`)
// and has a dot after its next label.
const BARE_URL_RE = /\bhttps?:\/\/[^\s<>"'`]+|(?<![\w.@/:-])www\.[^\s<>"'`./]+\.[^\s<>"'`]+/gi;
// Characters that can make a text read differently from what it is: bidi controls and
// marks, zero-width and other invisible characters.
const DECEPTIVE_RE = /[\u00AD\u061C\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]/;
// Something in a link's text that names a place: a URL or a domain-looking word.
const DOMAINISH_RE = /(?:[a-z][a-z0-9+.-]*:\/\/)?(?:[^\s./?#@:()[\]<>]+\.)+[^\s./?#@:()[\]<>]{2,}/giu;
const WORD_CHAR_RE = /[\p{L}\p{N}_]/u;
const isSpace = (c) => c === undefined || c === ' ' || c === '\n' || c === '\t' || c === '\r' || /\s/.test(c);
const isWord = (c) => c !== undefined && WORD_CHAR_RE.test(c);

/** Drops trailing punctuation that usually ends a sentence rather than a URL. */
function trimUrl(url) {
  let open = 0;
  let close = 0;
  for (const c of url) {
    if (c === '(') open++;
    else if (c === ')') close++;
  }
  while (url.length) {
    const c = url[url.length - 1];
    if ('.,;:!?*_\''.includes(c)) url = url.slice(0, -1);
    else if (c === ')' && close > open) {
      url = url.slice(0, -1);
      close--;
    } else break;
  }
  return url;
}

/** The href of an http(s) URL, without user:password@ (which only serves to make a
 *  link read as another host), or null for anything else. */
function linkHref(raw) {
  const href = safeHref(raw);
  if (!href) return null;
  const u = new URL(href);
  if (!u.username && !u.password) return href;
  u.username = '';
  u.password = '';
  return u.href;
}

/** Host of a URL-or-domain string as the URL parser sees it (lower case, punycode), or null. */
function hostOf(s) {
  try {
    return new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `http://${s}`).hostname;
  } catch {
    return null;
  }
}

/** Could the text of a [text](href) link make someone expect another destination? */
function textMisleads(text, href) {
  if (DECEPTIVE_RE.test(text) || text.length > 300) return true;
  const target = hostOf(href);
  for (const m of text.matchAll(DOMAINISH_RE)) if (hostOf(m[0]) !== target) return true;
  return false;
}

/** Does a bare URL read as another host than the one it goes to (user@host tricks,
 *  look-alike letters that the parser turns into punycode, invisible characters)? */
function bareUrlMisleads(raw, href) {
  if (DECEPTIVE_RE.test(raw)) return true;
  const apparent = raw.replace(/^https?:\/\//i, '').split(/[/?#\\]/)[0].toLowerCase();
  let real;
  try {
    real = new URL(href).host;
  } catch {
    return true;
  }
  return apparent !== real;
}

/** Table: for each i, the smallest j >= i with ok(j), else n (one backward pass). */
function nextTable(n, ok, cost) {
  const t = new Int32Array(n + 2).fill(n);
  for (let j = n - 1; j >= 0; j--) t[j] = ok(j) ? j : t[j + 1];
  cost.steps += n;
  return t;
}

/** Inline formatting of one block's text. Returns a list of inline nodes. */
function parseInline(s, cost) {
  const n = s.length;
  // 1. Code spans first: a backtick pairs with the next one (an empty pair is literal).
  //    Nothing inside a code span is formatting.
  const codeEnd = new Int32Array(n + 1).fill(-1);
  const atom = new Uint8Array(n + 1); // 1: inside a code span or a bare URL
  for (let i = 0, open = -1; i < n; i++) {
    cost.steps++;
    if (s[i] !== '`') continue;
    if (open < 0) open = i;
    else if (i === open + 1) open = i;
    else {
      codeEnd[open] = i;
      atom.fill(1, open, i + 1);
      open = -1;
    }
  }
  // 2. Bare URLs outside code spans: no emphasis marker inside them counts.
  for (const m of s.matchAll(BARE_URL_RE)) {
    if (atom[m.index]) continue;
    atom.fill(1, m.index, m.index + trimUrl(m[0]).length);
  }
  cost.steps += n;
  const star = (j) => s[j] === '*';
  const nonMarker = nextTable(n, (j) => s[j] !== '*' && s[j] !== '_' && !isSpace(s[j]), cost);
  const tri = nextTable(n, (j) => !atom[j] && star(j) && star(j + 1) && star(j + 2) && !isSpace(s[j - 1]), cost);
  const dbl = nextTable(n, (j) => !atom[j] && star(j) && star(j + 1) && !isSpace(s[j - 1]), cost);
  const sgl = nextTable(n, (j) => !atom[j] && star(j) && !star(j + 1) && !star(j - 1) && !isSpace(s[j - 1]), cost);
  const und = nextTable(
    n,
    (j) => !atom[j] && s[j] === '_' && s[j - 1] !== '_' && !isSpace(s[j - 1]) && !isWord(s[j + 1]),
    cost,
  );
  const rbr = nextTable(n, (j) => s[j] === ']', cost);
  const rpar = nextTable(n, (j) => s[j] === ')', cost);
  const lpar = nextTable(n, (j) => s[j] === '(', cost);
  const space = nextTable(n, (j) => isSpace(s[j]), cost);
  const code = nextTable(n, (j) => codeEnd[j] >= 0, cost);

  // An [text](http…) link starting at i, or null.
  const link = (i, to) => {
    const j = rbr[i + 1];
    if (j >= to || s[j + 1] !== '(' || code[i] <= j) return null;
    let k = rpar[j + 2];
    // One level of parentheses inside the target (…/Rust_(language)).
    if (lpar[j + 2] < k) k = rpar[k + 1];
    if (k >= to || space[j + 2] < k || code[j] <= k) return null;
    const target = s.slice(j + 2, k);
    const text = s.slice(i + 1, j);
    if (!/^https?:\/\//i.test(target) || !text.trim()) return null;
    const href = linkHref(target);
    if (!href) return null;
    return { end: k + 1, node: { t: 'link', href, text, showTarget: textMisleads(text, href) } };
  };

  const parse = (from, to, depth) => {
    const out = [];
    let plain = from;
    const flush = (end) => {
      if (end > plain) out.push({ t: 'text', s: s.slice(plain, end) });
    };
    let i = from;
    while (i < to) {
      cost.steps++;
      const c = s[i];
      let node = null;
      let next = i;
      if (c === '`' && codeEnd[i] >= 0 && codeEnd[i] < to) {
        node = { t: 'code', s: s.slice(i + 1, codeEnd[i]) };
        next = codeEnd[i] + 1;
      } else if (c === '[' && !atom[i]) {
        const l = link(i, to);
        if (l) {
          node = l.node;
          next = l.end;
        }
      } else if ((c === '*' || c === '_') && !atom[i] && depth < MAX_DEPTH) {
        // Openers: the marker, then a non-space; the content holds something that is
        // not a marker; the closer lies inside the current range.
        const emph = (len, table, wrap) => {
          if (i + len >= to || isSpace(s[i + len])) return false;
          const j = table[i + len + 1];
          if (j + len > to || nonMarker[i + len] >= j) return false;
          node = wrap(parse(i + len, j, depth + 1));
          next = j + len;
          return true;
        };
        if (c === '*') {
          const run = star(i + 1) ? (star(i + 2) ? 3 : 2) : 1;
          (run === 3 && emph(3, tri, (kids) => ({ t: 'b', c: [{ t: 'i', c: kids }] }))) ||
            (run >= 2 && emph(2, dbl, (kids) => ({ t: 'b', c: kids }))) ||
            (run === 1 && emph(1, sgl, (kids) => ({ t: 'i', c: kids })));
        } else if (!isWord(s[i - 1]) && s[i + 1] !== '_') {
          emph(1, und, (kids) => ({ t: 'i', c: kids }));
        }
      }
      if (node) {
        flush(i);
        out.push(node);
        i = next;
        plain = next;
      } else i++;
    }
    flush(to);
    return out;
  };
  return parse(0, n, 0);
}

/**
 * Parses a message into blocks: `{t:'p', c}` (inline nodes), `{t:'quote', c}` (lines
 * starting with ">"), `{t:'pre', s}` (between ``` fences, kept verbatim). Inline nodes:
 * `{t:'text', s}`, `{t:'b'|'i', c}`, `{t:'code', s}`, `{t:'link', href, text, showTarget}`.
 * Bare URLs stay inside text nodes (renderMessage links them). Returns {blocks, steps}.
 */
export function parseMessage(text) {
  const cost = { steps: 0 };
  const lines = String(text).split('\n');
  const n = lines.length;
  // closeAt[i]: the first line at or after i that ends with ``` (a fence can close there).
  const closeAt = new Int32Array(n + 1).fill(-1);
  for (let k = n - 1; k >= 0; k--) closeAt[k] = lines[k].trimEnd().endsWith('```') ? k : closeAt[k + 1];
  cost.steps += n;
  const blocks = [];
  let para = [];
  let quote = [];
  const flushPara = () => {
    if (para.length) blocks.push({ t: 'p', c: parseInline(para.join('\n'), cost) });
    para = [];
  };
  const flushQuote = () => {
    if (quote.length) blocks.push({ t: 'quote', c: parseInline(quote.join('\n'), cost) });
    quote = [];
  };
  for (let i = 0; i < n; i++) {
    cost.steps++;
    const line = lines[i];
    if (line.startsWith('```')) {
      const rest = line.slice(3);
      const restEnd = rest.trimEnd();
      let body = null;
      let last = i;
      cost.steps += line.length;
      if (restEnd.length > 3 && restEnd.endsWith('```')) body = [restEnd.slice(0, -3)];
      else if (closeAt[i + 1] >= 0) {
        last = closeAt[i + 1];
        body = rest.trim() ? [rest] : [];
        for (let j = i + 1; j < last; j++) body.push(lines[j]);
        const tail = lines[last].trimEnd().slice(0, -3);
        if (tail.trim()) body.push(tail);
        cost.steps += last - i;
      }
      if (body) {
        flushPara();
        flushQuote();
        blocks.push({ t: 'pre', s: body.join('\n') });
        i = last;
        // The line break after a block belongs to the block.
        continue;
      }
    }
    if (line.startsWith('>')) {
      flushPara();
      quote.push(line.slice(line.startsWith('> ') ? 2 : 1));
      continue;
    }
    flushQuote();
    para.push(line);
  }
  flushPara();
  flushQuote();
  return { blocks, steps: cost.steps };
}

/** Plain text with bare URLs as links and the reader's @mention marked. */
function appendPlain(parent, s, mentionRe) {
  const addText = (t) => {
    if (!t) return;
    if (!mentionRe) {
      parent.append(document.createTextNode(t));
      return;
    }
    let last = 0;
    for (const m of t.matchAll(mentionRe)) {
      const at = m.index + m[1].length; // m[1] is the character before '@'
      if (at > last) parent.append(document.createTextNode(t.slice(last, at)));
      const mark = document.createElement('mark');
      mark.className = 'mention-tag';
      mark.textContent = m[0].slice(m[1].length);
      parent.append(mark);
      last = at + mark.textContent.length;
    }
    if (last < t.length) parent.append(document.createTextNode(t.slice(last)));
  };
  let last = 0;
  for (const m of s.matchAll(BARE_URL_RE)) {
    const raw = trimUrl(m[0]);
    const href = linkHref(/^www\./i.test(raw) ? `http://${raw}` : raw);
    if (!href) continue;
    addText(s.slice(last, m.index));
    // Invisible or bidi characters in the URL itself: show the parsed form instead
    // (then the text is the target, nothing more to show).
    const text = DECEPTIVE_RE.test(raw) ? href : raw;
    appendLink(parent, href, text, text !== href && bareUrlMisleads(raw, href));
    last = m.index + raw.length;
  }
  addText(s.slice(last));
}

function appendLink(parent, href, text, showTarget) {
  const a = document.createElement('a');
  a.href = href;
  a.rel = 'noopener noreferrer';
  a.target = '_blank';
  a.title = href;
  a.textContent = text;
  parent.append(a);
  if (showTarget) {
    // The parsed href is ASCII (punycode host, percent-encoded path): it cannot hide
    // behind bidi tricks of its own.
    const t = document.createElement('span');
    t.className = 'link-target';
    t.dir = 'ltr';
    t.textContent = `(${href})`;
    parent.append(' ', t);
  }
}

function appendInline(parent, nodes, mentionRe) {
  for (const node of nodes) {
    switch (node.t) {
      case 'text':
        appendPlain(parent, node.s, mentionRe);
        break;
      case 'code': {
        const el = document.createElement('code');
        el.className = 'md-code';
        el.textContent = node.s;
        parent.append(el);
        break;
      }
      case 'link':
        appendLink(parent, node.href, node.text, node.showTarget);
        break;
      default: {
        const el = document.createElement(node.t === 'b' ? 'strong' : 'em');
        appendInline(el, node.c, mentionRe);
        parent.append(el);
      }
    }
  }
}

/**
 * A message text as a DocumentFragment of formatted nodes (see parseMessage). Plain
 * paragraphs are inline nodes of the fragment itself, so an unformatted message's
 * textContent is exactly its text; quotes and code blocks are block elements.
 */
export function renderMessage(text, mentionRe = null) {
  const frag = document.createDocumentFragment();
  for (const b of parseMessage(text).blocks) {
    if (b.t === 'p') appendInline(frag, b.c, mentionRe);
    else if (b.t === 'quote') {
      const q = document.createElement('blockquote');
      q.className = 'md-quote';
      appendInline(q, b.c, mentionRe);
      frag.append(q);
    } else {
      const pre = document.createElement('pre');
      pre.className = 'md-pre';
      const code = document.createElement('code');
      code.textContent = b.s;
      pre.append(code);
      frag.append(pre);
    }
  }
  return frag;
}
