// The API client: the session rides in an HttpOnly cookie the page cannot read; the page
// keeps only the session's CSRF token (sessionStorage), sent in X-CSRF-Token on every
// state-changing request. JSON in and out, typed errors.

import { t, tOr } from './i18n.js';

const CSRF = 'beffroi.csrf';

/** A failed request. Its `message` is what a person reads: the translation of its `code`
 * (`error.code.<code>`), in the current language, or a generic message with the status;
 * the server's own text (English, for developers and logs) is kept as `serverMessage` and
 * never shown. */
export class ApiError extends Error {
  constructor(status, code, serverMessage) {
    super();
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.serverMessage = serverMessage;
  }

  get message() {
    return tOr(`error.code.${this.code}`, null) ?? t('error.unknown', { status: this.status });
  }
}

/** The message to show for any failure: an API error's translated message, and for anything
 * else (a bug of the console) a generic one, never its raw text. */
export function errorText(e) {
  if (e instanceof ApiError) return e.message;
  return t('error.unexpected');
}

/** The session's CSRF token; present while the console believes it is logged in. */
export function token() {
  return sessionStorage.getItem(CSRF);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(CSRF, t);
  else sessionStorage.removeItem(CSRF);
}

const unauthorized = new Set();
/** Calls `f` when the API answers 401 (expired session, server restarted). */
export function onUnauthorized(f) {
  unauthorized.add(f);
}

export async function request(method, path, body, { signal } = {}) {
  const headers = { Accept: 'application/json' };
  const tok = token();
  if (tok && method !== 'GET') headers['X-CSRF-Token'] = tok;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', e.message);
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = data?.error ?? {};
    if (resp.status === 401 && path !== '/auth/login') for (const f of unauthorized) f();
    const e = new ApiError(resp.status, err.code ?? 'http_' + resp.status, err.message ?? resp.statusText);
    e.details = err.details ?? null; // e.g. {errors: [{line, field, message}]} of a rejected event
    throw e;
  }
  return data;
}

/** `opts.signal`: an AbortSignal; an aborted request rejects with the DOM's AbortError. */
export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body) => request('POST', path, body ?? {});

/** An incident action: acknowledge, start, resolve, close, reopen, comment, complete_step, assign. */
export function act(id, action, extra = {}) {
  return post(`/incidents/${id}/actions`, { action, ...extra });
}

const ALL_PERMISSIONS = ['incident.read', 'incident.act', 'incident.assign', 'device.read', 'unit.read', 'unit.status', 'crisis.read', 'crisis.manage', 'event.read', 'event.manage', 'supervise', 'handover', 'device.quarantine', 'privacy.read'];
let me = null;

/** Who the token belongs to and what it may do (GET /auth/me; every permission when the
 * server does not have that route yet). */
export async function loadMe() {
  try {
    me = await get('/auth/me');
  } catch (e) {
    if (e.status !== 404) throw e;
    me = { user: null, roles: [], permissions: ALL_PERMISSIONS };
  }
  return me;
}

export function can(permission) {
  return !!me && (me.permissions ?? []).includes(permission);
}

/** Holds at least one of these permissions. */
export function canAny(permissions) {
  return permissions.some(can);
}

export function currentUser() {
  return me;
}

export function clearSession() {
  me = null;
  setToken(null);
}
