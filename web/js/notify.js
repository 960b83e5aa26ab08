// notify.js: browser notifications (Notification API), opt-in only. The user turns
// them on with the sidebar button (which asks the browser's permission); the choice
// is remembered in localStorage. Browsers allow notifications only in a secure
// context (https or localhost), so on a plain-http LAN address the button says so.

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
