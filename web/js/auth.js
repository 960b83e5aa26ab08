// auth.js: the sign-in and sign-up screen. Submits the forms to /api/login and
// /api/register, shows the server's error message inline (and marks the field it is
// about), shows the invite field when registration is by invitation or closed (an
// invite link works in both), and reads an invite code from ?invite=CODE.

import { $, formValues, busy } from './dom.js';
import { post } from './api.js';
import { state } from './store.js';

/** Which sign-up field an error code is about. */
const SIGNUP_FIELD = {
  invalid_email: 'email',
  email_taken: 'email',
  invalid_username: 'username',
  username_taken: 'username',
  invalid_password: 'password',
  invalid_invite: 'invite',
};

const LOGIN_FIELD = {
  invalid_credentials: 'password',
  account_disabled: 'login',
};

/** The invite code from the page URL, if any. */
export function inviteFromUrl() {
  try {
    return new URL(location.href).searchParams.get('invite') || '';
  } catch {
    return '';
  }
}

/** Removes ?invite=… from the address bar once it has been used. */
function forgetInviteParam() {
  const url = new URL(location.href);
  if (!url.searchParams.has('invite')) return;
  url.searchParams.delete('invite');
  history.replaceState(null, '', url.pathname + (url.search === '?' ? '' : url.search) + url.hash);
}

function clearErrors(form, errorEl) {
  errorEl.textContent = '';
  for (const el of form.elements) el.removeAttribute('aria-invalid');
}

function showError(form, errorEl, err, fieldFor) {
  errorEl.textContent = err.message || 'Something went wrong.';
  let name = fieldFor[err.code];
  if (!name && err.code === 'invalid_name') {
    // Tell first from last name by the message when we can.
    name = /last/i.test(err.message) ? 'last_name' : 'first_name';
  }
  const field = name && form.elements.namedItem(name);
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.setAttribute('aria-errormessage', errorEl.id);
    field.focus();
  }
}

/** Updates the sign-up form for the registration mode. */
export function applyRegistrationMode() {
  const mode = state.config.registration;
  const invite = inviteFromUrl();
  // An invite works in closed mode too (the admin's deliberate act): offer the field.
  $('invite-field').hidden = !(mode === 'invite' || mode === 'closed' || invite);
  $('signup-closed').hidden = !(mode === 'closed' && !invite);
  if (invite && !$('signup-invite').value) $('signup-invite').value = invite;
}

/** Shows the auth screen with the 'login' or 'signup' panel, and an optional notice. */
export function showAuthPanel(panel, notice = '') {
  applyRegistrationMode();
  $('login-panel').hidden = panel !== 'login';
  $('signup-panel').hidden = panel !== 'signup';
  const n = $('auth-notice');
  n.textContent = notice;
  n.hidden = !notice;
  const first = panel === 'login' ? $('login-login') : $('signup-first');
  requestAnimationFrame(() => first.focus());
}

/** Wires the forms. `onSignedIn(user)` runs after a successful sign-in or sign-up. */
export function initAuth({ onSignedIn }) {
  $('show-signup').addEventListener('click', () => showAuthPanel('signup'));
  $('show-login').addEventListener('click', () => showAuthPanel('login'));

  for (const form of [$('login-form'), $('signup-form')]) {
    form.addEventListener('input', (e) => e.target.removeAttribute?.('aria-invalid'));
  }

  const loginForm = $('login-form');
  loginForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errorEl = $('login-error');
    clearErrors(loginForm, errorEl);
    const v = formValues(loginForm);
    if (!v.login.trim() || !v.password) {
      showError(loginForm, errorEl, { code: '', message: 'Enter your email or username and your password.' }, {});
      (v.login.trim() ? loginForm.elements.password : loginForm.elements.login).focus();
      return;
    }
    try {
      const res = await busy(loginForm, post('/api/login', { login: v.login.trim(), password: v.password }));
      loginForm.reset();
      onSignedIn(res.user);
    } catch (err) {
      showError(loginForm, errorEl, err, LOGIN_FIELD);
    }
  });

  const signupForm = $('signup-form');
  signupForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errorEl = $('signup-error');
    clearErrors(signupForm, errorEl);
    const v = formValues(signupForm);
    const body = {
      first_name: v.first_name.trim(),
      last_name: v.last_name.trim(),
      email: v.email.trim(),
      username: v.username.trim(),
      password: v.password,
    };
    const invite = (v.invite || '').trim();
    if (invite) body.invite = invite;
    // Every empty field at once (the server names only the first rule it finds broken).
    const labels = { first_name: 'first name', last_name: 'last name', email: 'email', username: 'username', password: 'password' };
    const empty = Object.keys(labels).filter((k) => !body[k]);
    if (empty.length) {
      const names = empty.map((k) => labels[k]);
      const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names[0];
      errorEl.textContent = `Fill in your ${list}.`;
      for (const k of empty) {
        const field = signupForm.elements.namedItem(k);
        field.setAttribute('aria-invalid', 'true');
        field.setAttribute('aria-errormessage', errorEl.id);
      }
      signupForm.elements.namedItem(empty[0]).focus();
      return;
    }
    try {
      const res = await busy(signupForm, post('/api/register', body));
      signupForm.reset();
      forgetInviteParam();
      onSignedIn(res.user);
    } catch (err) {
      showError(signupForm, errorEl, err, SIGNUP_FIELD);
    }
  });
}
