// dom.js: the only way the client builds DOM. `h()` creates elements whose text is
// set with text nodes (never innerHTML), `richText()` turns a message into text nodes
// plus <a> elements for http/https links, and `syncList()` updates a keyed list in
// place so that focus and scroll position survive re-renders.

/**
 * Creates an element. `props`: `class`, `text` (textContent), `dataset` (object),
 * `on<event>` handlers, booleans (present / absent attribute) and other attributes.
 * Children may be nodes, strings (added as text nodes), arrays, null or false.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  appendAll(el, children);
  return el;
}

/** Appends nodes or strings (as text) to a parent. */
export function appendAll(parent, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Shortcut for document.getElementById. */
export const $ = (id) => document.getElementById(id);

/** Shows or hides an element with the `hidden` attribute. */
export function show(el, visible) {
  if (el) el.hidden = !visible;
}

// Matches http(s) URLs; trailing punctuation is trimmed afterwards.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/** Drops punctuation that usually ends a sentence rather than the URL. */
function trimUrl(url) {
  const count = (s, c) => s.split(c).length - 1;
  while (url.length) {
    const c = url[url.length - 1];
    if ('.,;:!?*\''.includes(c)) url = url.slice(0, -1);
    else if (c === ')' && count(url, '(') < count(url, ')')) url = url.slice(0, -1);
    else if (c === ']' && count(url, '[') < count(url, ']')) url = url.slice(0, -1);
    else break;
  }
  return url;
}

/** The normalised href of an http/https URL, or null for anything else. */
export function safeHref(raw) {
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
  } catch {
    /* not a URL */
  }
  return null;
}

/**
 * A message text as a fragment: plain runs become text nodes (optionally with
 * `@mention` runs wrapped in <mark>), http/https URLs become safe links.
 */
export function richText(text, mentionRe) {
  const frag = document.createDocumentFragment();
  const plain = (s) => {
    if (!s) return;
    if (!mentionRe) {
      frag.append(document.createTextNode(s));
      return;
    }
    let last = 0;
    for (const m of s.matchAll(mentionRe)) {
      const at = m.index + m[1].length; // m[1] is the character before '@'
      if (at > last) frag.append(document.createTextNode(s.slice(last, at)));
      const tag = m[0].slice(m[1].length);
      frag.append(h('mark', { class: 'mention-tag', text: tag }));
      last = at + tag.length;
    }
    if (last < s.length) frag.append(document.createTextNode(s.slice(last)));
  };
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    const raw = trimUrl(m[0]);
    const href = safeHref(raw);
    if (!href) continue;
    plain(text.slice(last, m.index));
    frag.append(h('a', { href, rel: 'noopener noreferrer', target: '_blank', text: raw }));
    last = m.index + raw.length;
  }
  plain(text.slice(last));
  return frag;
}

/**
 * Makes `parent`'s children match `items`, reusing the element of each key.
 * `create(item)` builds a new element, `update(el, item)` refreshes one (called for
 * new and reused elements). Elements are moved, never rebuilt, when order changes.
 */
export function syncList(parent, items, keyOf, create, update) {
  const old = new Map();
  for (const el of parent.children) if (el._key !== undefined) old.set(el._key, el);
  let cursor = parent.firstChild;
  for (const item of items) {
    const key = keyOf(item);
    let el = old.get(key);
    if (el) old.delete(key);
    else {
      el = create(item);
      el._key = key;
    }
    update(el, item);
    if (el === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(el, cursor);
  }
  // Everything from the cursor on was not asked for.
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

let toastTimer = 0;
/** A short message at the bottom of the screen (errors that belong to no form). */
/**
 * The keys of an open completion list (`{items, index}`): arrows move, Enter/Tab
 * accept, Escape closes. Returns true when the key was the list's.
 */
export function completionKey(e, list, { render, accept, close }) {
  const n = list.items.length;
  switch (e.key) {
    case 'ArrowDown':
      list.index = (list.index + 1) % n;
      render();
      return true;
    case 'ArrowUp':
      list.index = (list.index + n - 1) % n;
      render();
      return true;
    case 'Enter':
    case 'Tab':
      if (e.shiftKey) return false;
      accept(list.index);
      return true;
    case 'Escape':
      close();
      return true;
    default:
      return false;
  }
}

export function toast(message, ms = 5000) {
  const el = $('toast');
  if (!el) return;
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.hidden = true;
    el.textContent = '';
  }, ms);
}

/** Reads a form's named controls as strings (checkboxes as booleans). */
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    out[el.name] = el.type === 'checkbox' ? el.checked : el.value;
  }
  return out;
}

/** Disables a form's buttons while `promise` runs. */
export async function busy(form, promise) {
  const buttons = [...form.querySelectorAll('button[type=submit], button:not([type])')];
  buttons.forEach((b) => (b.disabled = true));
  form.setAttribute('aria-busy', 'true');
  try {
    return await promise;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    form.removeAttribute('aria-busy');
  }
}
