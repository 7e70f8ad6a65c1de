// The login page: POST /auth/login, the token in sessionStorage.

import * as api from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';

export function render(onLoggedIn, message, langButton) {
  const err = h('p.error#login-error', { role: 'alert' }, message ?? '');
  const user = h('input#login-user', { name: 'username', autocomplete: 'username', required: true, value: 'admin' });
  const pass = h('input#login-password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button.primary#login-submit', { type: 'submit' }, t('login.submit'));
  const form = h('form.login-box', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        err.textContent = '';
        try {
          const r = await api.post('/auth/login', { username: user.value, password: pass.value });
          api.setToken(r.token);
          await onLoggedIn();
        } catch (x) {
          err.textContent = x.status === 401 ? t('login.failed') : x.code === 'network' ? t('error.network') : t('error.generic', { message: x.message });
          submit.disabled = false;
          pass.select();
        }
      },
    },
  },
  h('div.login-head', h('img', { src: '/console/icon.svg', alt: '' }), h('div', h('h1', 'Beffroi'), h('p', t('app.tagline')))),
  h('h2', t('login.title')),
  h('label', t('login.username'), user),
  h('label', t('login.password'), pass),
  err, submit);
  setTimeout(() => pass.focus(), 0);
  return h('div.login-page', h('div.login-lang', langButton), form);
}
