// The live store: one EventSource on /api/v1/stream, the open incidents and situations
// kept up to date from it, and a resync (refetch of the lists) after every reconnection — a
// restarted server, a network cut. Views subscribe to `incidents`, `situations`, `device`,
// `unit`, `crisis`, `event`, `status` and `resync`.

import * as api from './api.js';

const listeners = new Map();
let source = null;
let status = 'offline';
let retryTimer = null;
let retryDelay = 1000;
let hadError = false;
let stopped = true;

/** id → IncidentDto of every incident not closed. */
export const incidents = new Map();

/** id → SituationDto (as the server cut it to the caller's scope) of every situation with
 *  an incident not closed: what the queue lists and the alerting counts. */
export const situations = new Map();
/** Open situations: one of their incidents is open. */
export const openSituations = () => [...situations.values()].filter(isOpen);

/** What "open" means everywhere in the console (the API's `status=open`): resolved
 *  incidents are kept in `incidents` until closed, but are not open. */
export const OPEN = new Set(['new', 'acknowledged', 'in_progress']);
export const isOpen = (i) => OPEN.has(i.status);
/** The open incidents the caller sees (the store is filled with the caller's visibility). */
export const openIncidents = () => [...incidents.values()].filter(isOpen);

export function on(type, f) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(f);
  return () => listeners.get(type).delete(f);
}

function emit(type, data) {
  for (const f of listeners.get(type) ?? []) {
    try {
      f(data);
    } catch (e) {
      console.error(e);
    }
  }
}

// The engine's clock may run ahead of the browser's (the demo's accelerated clock, a
// skewed workstation): ages are computed against the latest time the server reported.
let skew = 0;
function observe(iso) {
  const d = Date.parse(iso) - Date.now();
  if (Number.isFinite(d) && d > skew) skew = d;
}

/** The engine's "now" as best known: the browser's clock plus the observed skew. */
export function serverNow() {
  return Date.now() + skew;
}

export function getStatus() {
  return status;
}

function setStatus(s) {
  status = s;
  emit('status', s);
}

export async function refetchIncidents() {
  const [list, sits] = await Promise.all([
    api.get('/incidents?status=active&limit=5000'),
    api.get('/situations?status=all').catch(() => []),
  ]);
  incidents.clear();
  for (const i of list) {
    incidents.set(i.id, i);
    observe(i.updated_at);
  }
  situations.clear();
  for (const s of sits) if (s.status !== 'closed') situations.set(s.id, s);
  emit('incidents', { reset: true });
  emit('situations', { reset: true });
}

export function start() {
  stopped = false;
  connect();
  return refetchIncidents();
}

export function stop() {
  stopped = true;
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  incidents.clear();
  situations.clear();
  setStatus('offline');
}

function connect() {
  if (stopped) return;
  const tok = api.token();
  if (!tok) return;
  // Same origin: the session cookie goes with the request (no token in the URL).
  source = new EventSource('/api/v1/stream');
  source.addEventListener('open', () => {
    retryDelay = 1000;
    setStatus('connected');
    if (hadError) {
      hadError = false;
      // Events were missed while disconnected: reload what the views show.
      refetchIncidents().catch(() => {});
      emit('resync');
    }
  });
  source.addEventListener('error', () => {
    hadError = true;
    setStatus('reconnecting');
    // The browser retries by itself while the stream answered 200 before; a refused
    // connection or a 401 closes it for good: retry ourselves, checking the session.
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      clearTimeout(retryTimer);
      retryTimer = setTimeout(probe, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    }
  });
  source.addEventListener('incident', (e) => {
    const inc = JSON.parse(e.data);
    observe(inc.updated_at);
    if (inc.status === 'closed') incidents.delete(inc.id);
    else incidents.set(inc.id, inc);
    emit('incidents', { incident: inc, created: !!inc.created });
  });
  source.addEventListener('situation', (e) => {
    const sit = JSON.parse(e.data);
    observe(sit.updated_at);
    if (sit.status === 'closed' || sit.merged_into) situations.delete(sit.id);
    else situations.set(sit.id, sit);
    emit('situations', { situation: sit, created: !!sit.created });
  });
  for (const type of ['device', 'unit', 'crisis', 'event']) {
    source.addEventListener(type, (e) => {
      const data = JSON.parse(e.data);
      if (data.at) observe(data.at);
      emit(type, data);
    });
  }
  source.addEventListener('lagged', () => {
    refetchIncidents().catch(() => {});
    emit('resync');
  });
}

async function probe() {
  if (stopped) return;
  try {
    await api.get('/incidents?limit=1');
    connect();
  } catch (e) {
    // 401 logs out through api.onUnauthorized; anything else: the server is still down.
    if (e.status !== 401) {
      setStatus('offline');
      retryTimer = setTimeout(probe, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    }
  }
}

export const SEVERITY_RANK = { critical: 4, major: 3, minor: 2, info: 1 };

/** When an incident last (re)opened: a re-opening is recent activity, not an old case. */
export function lastOpened(i) {
  return i.last_opened_at ?? i.reopened_at ?? i.opened_at;
}

/** Severity first (critical on top), then the most recent (re-)opening first. */
export function compareIncidents(a, b) {
  return (
    (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0) ||
    lastOpened(b).localeCompare(lastOpened(a)) ||
    b.id - a.id
  );
}
