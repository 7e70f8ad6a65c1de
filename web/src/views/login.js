// The login page: POST /auth/login with the one-time code when the user typed one (the
// server answers every failure alike, so the field is always shown); the session comes back
// as an HttpOnly cookie, the CSRF token is kept in sessionStorage.

import * as api from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';

export function render(onLoggedIn, message, langButton) {
  const err = h('p.error#login-error', { role: 'alert' }, message ?? '');
  const user = h('input#login-user', { name: 'username', autocomplete: 'username', required: true });
  const pass = h('input#login-password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const code = h('input#login-totp', { name: 'totp', autocomplete: 'one-time-code', inputmode: 'numeric', pattern: '[0-9]{6}', maxlength: 6 });
  const codeLabel = h('label#login-totp-label', t('login.totp'), code);
  const submit = h('button.primary#login-submit', { type: 'submit' }, t('login.submit'));
  const form = h('form.login-box', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        err.textContent = '';
        try {
          const body = { username: user.value, password: pass.value };
          if (code.value) body.totp = code.value;
          const r = await api.post('/auth/login', body);
          api.setToken(r.csrf_token);
          await onLoggedIn();
        } catch (x) {
          err.textContent = x.status === 429 ? t('login.throttled')
            : x.status === 401 ? t('login.failed') : x.code === 'network' ? t('error.network') : t('error.generic', { message: x.message });
          submit.disabled = false;
          code.value = '';
          pass.select();
        }
      },
    },
  },
  h('div.login-head', h('img', { src: '/console/icon.svg', alt: '' }), h('div', h('h1', 'Beffroi'), h('p', t('app.tagline')))),
  h('h2', t('login.title')),
  h('label', t('login.username'), user),
  h('label', t('login.password'), pass),
  codeLabel,
  err, submit);
  setTimeout(() => user.focus(), 0);
  return h('div.login-page', h('div.login-lang', langButton), form);
}
