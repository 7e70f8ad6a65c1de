// One session for every tab of the browser (ADR 0030). The session id rides in the HttpOnly
// cookie, which every tab of the origin sends; the CSRF token lives in each tab's
// sessionStorage, which a new tab does not inherit. Tabs of the same origin hand it over on
// a BroadcastChannel: a tab without a token asks, a logged-in tab answers; a login is
// announced (every tab follows the cookie it replaced), and so is a logout. Nothing is
// persisted and nothing goes over the network: the token only moves between pages of the
// origin, which could read it in their own storage anyway.

import * as api from './api.js';

const NAME = 'beffroi.session';
let channel = null;
const handlers = { token: null, logout: null };

/** Starts listening. `onToken(csrf)`: another tab holds (or just opened) a session whose
 * CSRF token differs from ours; `onLogout()`: another tab logged out. */
export function listen(onToken, onLogout) {
  handlers.token = onToken;
  handlers.logout = onLogout;
  if (channel || typeof BroadcastChannel !== 'function') return;
  channel = new BroadcastChannel(NAME);
  channel.addEventListener('message', (e) => {
    const m = e.data;
    if (!m || typeof m !== 'object') return;
    if (m.type === 'ask') {
      const tok = api.token();
      if (tok) channel.postMessage({ type: 'token', csrf: tok });
    } else if (m.type === 'token') {
      if (typeof m.csrf === 'string' && m.csrf && m.csrf !== api.token()) handlers.token?.(m.csrf);
    } else if (m.type === 'logout') {
      if (api.token()) handlers.logout?.();
    }
  });
}

/** Asks the other tabs for the session's CSRF token (answered through `onToken`). */
export function ask() {
  channel?.postMessage({ type: 'ask' });
}

/** Tells the other tabs this tab logged in with this token. */
export function announce(csrf) {
  channel?.postMessage({ type: 'token', csrf });
}

/** Tells the other tabs this tab logged out. */
export function announceLogout() {
  channel?.postMessage({ type: 'logout' });
}
