// notify.js: browser notifications (Notification API), opt-in only. The user turns
// them on with the sidebar button (which asks the browser's permission); the choice
// is remembered in localStorage. Browsers allow notifications only in a secure
// context (https or localhost), so on a plain-http LAN address the button says so.
//
// What alerts (issue 12): forMessage() decides for a message that arrived live while
// the tab is hidden, by the room's notification level (PROTOCOL.md §3.8): "all" every
// message, "mentions" only messages that mention you, "muted" nothing. A mention is a
// `<@ID>` naming you (the event's `mentions`), or your @username typed as text.

import * as store from './store.js';
import { mentionRegex } from './format.js';
import { messageLine } from './mentions.js';

const PREF_KEY = 'rtm.notifications';

export function supported() {
  return 'Notification' in window && window.isSecureContext;
}

/** 'unsupported' | 'insecure' | 'denied' | 'off' | 'on' */
export function status() {
  if (!('Notification' in window)) return 'unsupported';
  if (!window.isSecureContext) return 'insecure';
  if (Notification.permission === 'denied') return 'denied';
  if (Notification.permission === 'granted' && localStorage.getItem(PREF_KEY) === 'on') return 'on';
  return 'off';
}

export const enabled = () => status() === 'on';

/** Turns notifications on (asking permission if needed) or off. Returns the new status. */
export async function toggle() {
  const s = status();
  if (s === 'on') {
    localStorage.setItem(PREF_KEY, 'off');
    return status();
  }
  if (s !== 'off') return s;
  let permission = Notification.permission;
  if (permission !== 'granted') {
    try {
      permission = await Notification.requestPermission();
    } catch {
      permission = 'denied';
    }
  }
  if (permission === 'granted') localStorage.setItem(PREF_KEY, 'on');
  return status();
}

/** The button label and whether it can be pressed, for a status. */
export function describe(s) {
  switch (s) {
    case 'on':
      return { label: 'Notifications on (turn off)', disabled: false, pressed: true };
    case 'off':
      return { label: 'Enable notifications', disabled: false, pressed: false };
    case 'denied':
      return { label: 'Notifications blocked by the browser', disabled: true, pressed: false };
    case 'insecure':
      return { label: 'Notifications need HTTPS', disabled: true, pressed: false };
    default:
      return { label: 'Notifications not supported', disabled: true, pressed: false };
  }
}

/** Shows one notification (text only; the browser renders it as plain text). */
export function show({ title, body, tag, onClick }) {
  if (!enabled()) return;
  try {
    const n = new Notification(title, { body, tag, icon: '/favicon.svg' });
    n.onclick = () => {
      window.focus();
      n.close();
      onClick?.();
    };
  } catch (e) {
    // Some platforms only allow notifications from a service worker.
    console.warn('notification failed', e);
  }
}

/** Does a message alert at this room level? `mention`: it mentions you. */
export function wanted(level, mention) {
  if (level === 'muted') return false;
  if (level === 'mentions') return !!mention;
  return true;
}

/** Does this message mention the signed-in user (a <@ID> chip or a typed @username)? */
export function mentionsMe(item) {
  const me = store.state.me;
  if (!me || !item || store.isMine(item.author)) return false;
  return store.mentionsMe(item) || mentionRegex(me.username).test(item.text || '');
}

/**
 * A text message `item` of room `r` arrived live: shows a notification when the tab is
 * hidden, notifications are on, and the room's level wants it. Returns true if shown.
 */
export function forMessage(item, r, onClick) {
  if (!r || !item || item.kind !== 'text' || store.isMine(item.author)) return false;
  if (!document.hidden || !enabled()) return false;
  const mention = mentionsMe(item);
  if (!wanted(r.info.notify || 'all', mention)) return false;
  const name = item.author.username;
  const dm = r.info.kind === 'dm';
  const text = messageLine(item);
  let title;
  if (dm) title = `${name} (direct message)`;
  else if (mention) title = `${name} mentioned you in #${r.info.name}`;
  else title = `${name} in #${r.info.name}`;
  show({
    title,
    body: text.length > 200 ? `${text.slice(0, 200)}…` : text,
    tag: `rtm-room-${r.info.id}`,
    onClick,
  });
  return true;
}
