// reset.js: the password reset page (issue 15; PROTOCOL.md §2.10). An admin gives
// someone a single-use link /?reset=CODE (no email server needed); opening it shows
// "choose a new password" on the sign-in screen once /api/password-reset/check says
// the code is good (a spent or expired link says so at once, with no form), posts it
// to /api/password-reset, and then shows the sign-in form with a confirmation. The code leaves the address bar
// once it has been used (or refused), so a reload or a shared screenshot cannot
// replay it.
//
// Stable selectors for tests: #reset-panel  #reset-status  #reset-form [name=password]
//   [name=confirm]  #reset-error  (then the sign-in form with #auth-notice)

import { $, h, busy } from './dom.js';
import { post } from './api.js';

/** The reset code in the page URL, if any. */
export function resetFromUrl() {
  try {
    return new URL(location.href).searchParams.get('reset') || '';
  } catch {
    return '';
  }
}

function forgetResetParam() {
  const url = new URL(location.href);
  if (!url.searchParams.has('reset')) return;
  url.searchParams.delete('reset');
  history.replaceState(null, '', url.pathname + (url.search === '?' ? '' : url.search) + url.hash);
}

const MESSAGES = {
  invalid_reset_code:
    'This reset link does not work: it was already used, it expired (links last 24 hours), or it was mistyped. Ask an administrator for a new one.',
  invalid_password: null, // the server's own words say what a password needs
};

/** Bumped by each showReset, so a late answer about an earlier code is ignored. */
let checks = 0;

function build() {
  const panel = h(
    'section',
    { id: 'reset-panel', 'aria-labelledby': 'reset-heading', hidden: true },
    h('h1', { id: 'reset-heading', text: 'Choose a new password' }),
    h('p', { class: 'hint', text: 'Your administrator sent you this link. Setting a password signs you out on every device.' }),
    h('p', { id: 'reset-status', role: 'alert', 'aria-live': 'assertive' }),
    h(
      'form',
      { id: 'reset-form', novalidate: true },
      // A username field helps password managers file the new password (hidden).
      h('input', { type: 'text', name: 'username', autocomplete: 'username', hidden: true }),
      h('label', { for: 'reset-password', text: 'New password' }),
      h('input', { id: 'reset-password', name: 'password', type: 'password', autocomplete: 'new-password', required: true, 'aria-describedby': 'reset-password-hint' }),
      h('p', { id: 'reset-password-hint', class: 'hint', text: 'At least 8 characters.' }),
      h('label', { for: 'reset-confirm', text: 'New password again' }),
      h('input', { id: 'reset-confirm', name: 'confirm', type: 'password', autocomplete: 'new-password', required: true }),
      h('p', { id: 'reset-error', class: 'form-error', role: 'alert', 'aria-live': 'assertive' }),
      h('button', { type: 'submit', class: 'primary', text: 'Set password' }),
    ),
    h('p', { class: 'switch' }, h('button', { type: 'button', id: 'reset-to-login', class: 'linklike', text: 'Back to sign in' })),
  );
  document.querySelector('#auth-screen .auth-card').append(panel);
  return panel;
}

/**
 * Shows the reset form for `code` on the auth screen (which the caller has shown).
 * `done(notice)` shows the sign-in form with a notice afterwards.
 */
export function showReset(code, done) {
  const panel = $('reset-panel') || build();
  for (const id of ['login-panel', 'signup-panel']) $(id).hidden = true;
  panel.hidden = false;
  document.title = 'New password · RT Messenger';
  const form = $('reset-form');
  const err = $('reset-error');
  err.textContent = '';
  const leave = (notice) => {
    panel.hidden = true;
    forgetResetParam();
    done(notice);
  };
  $('reset-to-login').onclick = () => leave('');
  // The link is asked about first, so a spent or expired one says so before anyone
  // types a password. If the server cannot say, the form shows and it judges on submit.
  const status = $('reset-status');
  const mine = ++checks;
  const showForm = () => {
    status.textContent = '';
    form.hidden = false;
    requestAnimationFrame(() => form.elements.password.focus());
  };
  form.hidden = true;
  status.textContent = 'Checking the link…';
  post('/api/password-reset/check', { code }).then(
    () => {
      if (mine === checks) showForm();
    },
    (x) => {
      if (mine !== checks) return;
      if (x.code !== 'invalid_reset_code') return showForm();
      forgetResetParam();
      status.textContent = MESSAGES.invalid_reset_code;
      $('reset-to-login').focus();
    },
  );
  form.onsubmit = async (e) => {
    e.preventDefault();
    err.textContent = '';
    for (const el of form.elements) el.removeAttribute?.('aria-invalid');
    const password = form.elements.password.value;
    const mark = (el, text) => {
      err.textContent = text;
      el.setAttribute('aria-invalid', 'true');
      el.setAttribute('aria-errormessage', 'reset-error');
      el.focus();
    };
    if (!password) return mark(form.elements.password, 'Enter a new password.');
    if (password !== form.elements.confirm.value) return mark(form.elements.confirm, 'The two passwords are not the same.');
    try {
      await busy(form, post('/api/password-reset', { code, password }));
      form.reset();
      leave('Your new password is set. Sign in with it.');
    } catch (x) {
      const text = MESSAGES[x.code] || x.message;
      if (x.code === 'invalid_reset_code') {
        // Nothing on this page can fix a spent code: say so and drop it from the URL.
        forgetResetParam();
        err.textContent = text;
      } else mark(form.elements.password, text);
    }
  };
}
