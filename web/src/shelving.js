// Shelved alarms (ISA-18.2): the incidents whose alarm an operator set aside for a while,
// with a reason. Read from GET /api/v1/shelved (the caller's scope) at start, after every
// resync and every shelving from this console, and every 15 s (another console may shelve);
// a shelf past its end stops counting at once, on the engine's clock. A shelved incident
// does not alert (alerting.js), is tagged and filterable in the queue, and its detail offers
// to shelve or unshelve it.

import * as api from './api.js';
import * as live from './live.js';
import { h, toast } from './dom.js';
import { t, fmtTime } from './i18n.js';

const REFRESH_MS = 15000;
/** alarm key (an incident's deduplication key) → ShelfDto: a new incident of a shelved
 * alarm is shelved too. */
const shelves = new Map();
let maxMinutes = 480;
const listeners = new Set();
let timer = null;
let offs = [];

function emit() {
  for (const f of listeners) {
    try { f(); } catch (e) { console.error(e); }
  }
}

/** Calls `f` whenever the shelf changes; returns the function that stops it. */
export function onChange(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** The shelf of this incident while it is in force, else null. */
export function shelfOf(inc) {
  const s = shelves.get(inc.key);
  return s && Date.parse(s.until) > live.serverNow() ? s : null;
}

export const isShelved = (inc) => shelfOf(inc) != null;

export async function refresh() {
  if (!api.can('incident.read')) return;
  try {
    const d = await api.get('/shelved');
    shelves.clear();
    for (const s of d.shelves) shelves.set(s.key, s);
    maxMinutes = d.max_minutes;
    emit();
  } catch (e) {
    // The shelf is read again at the next refresh.
  }
}

export function start() {
  stop();
  offs = [live.on('resync', refresh)];
  timer = setInterval(refresh, REFRESH_MS);
  return refresh();
}

export function stop() {
  offs.forEach((f) => f());
  offs = [];
  clearInterval(timer);
  timer = null;
  shelves.clear();
}

async function post(path, body) {
  try {
    await api.post(path, body);
    await refresh();
    return true;
  } catch (e) {
    toast(api.errorText(e), 'error');
    return false;
  }
}

/** The shelving part of an incident's detail: who shelved it, why and until when, with the
 * button that takes it back; or the form that shelves it (a reason, a bounded duration). */
export function shelfBlock(d, canAct) {
  const s = shelfOf(d);
  if (s) {
    return h('section.block.shelf#shelf', { dataset: { shelved: 'true' } },
      h('h3', t('shelf.title')),
      h('p#shelf-info', t('shelf.info', { who: s.by.replace(/^user:/, ''), until: fmtTime(s.until) })),
      h('p.evidence#shelf-reason', s.reason),
      canAct && h('button#unshelve', { type: 'button', on: { click: () => post(`/incidents/${d.id}/unshelve`, {}) } }, t('shelf.unshelve')));
  }
  if (!canAct || !live.isOpen(d)) return null;
  const reason = h('input#shelve-reason', { placeholder: t('shelf.reason'), required: true, maxlength: 500 });
  const minutes = h('select#shelve-minutes', ...[15, 30, 60, 120, 240, 480].filter((m) => m <= maxMinutes)
    .map((m) => h('option', { value: m, selected: m === 60 }, t('shelf.for', { h: Math.floor(m / 60), m: String(m % 60).padStart(2, '0') }))));
  const submit = (e) => {
    e.preventDefault();
    if (!reason.value.trim()) { toast(t('error.code.reason_required'), 'error'); return; }
    post(`/incidents/${d.id}/shelve`, { reason: reason.value, minutes: Number(minutes.value) });
  };
  return h('section.block.shelf#shelf', { dataset: { shelved: 'false' } },
    h('h3', t('shelf.title')), h('p.muted', t('shelf.hint', { max: Math.floor(maxMinutes / 60) })),
    h('form.inline#shelve-form', { on: { submit } }, reason, minutes, h('button#shelve-submit', { type: 'submit' }, t('shelf.shelve'))));
}
