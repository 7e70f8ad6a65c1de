// The units board (#/units): every unit grouped by kind, its communes, its status
// (available, engaged, off duty), its current missions with their severity and status,
// and buttons to change its status (permission `unit.status`). Follows the live stream:
// `unit` events replace a unit, incident events refresh the missions shown.

import * as api from '../api.js';
import * as live from '../live.js';
import { h, clear, toast } from '../dom.js';
import { t, fmtTime, fmtAgo, onLangChange, localTitle } from '../i18n.js';

export const route = 'units';
export const navKey = 'nav.units';
export const permission = 'unit.read';

const KINDS = ['police', 'technical', 'video', 'other'];
const STATUSES = ['available', 'engaged', 'off_duty'];

let state = null;

export function mount(el) {
  const summary = h('div.units-summary#units-summary');
  const board = h('div.units-board#units-board');
  el.append(h('section.units-view', h('div.pane-head', h('h2#units-title'), summary), board));
  state = { summary, board, units: null, communes: new Map(), missions: new Map(), error: null };

  let frame = 0;
  const schedule = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; paint(); }); };
  const offs = [
    live.on('unit', (u) => {
      if (!state?.units) return;
      const i = state.units.findIndex((x) => x.id === u.id);
      if (i >= 0) state.units[i] = u;
      else state.units.push(u);
      schedule();
    }),
    live.on('incidents', schedule),
    live.on('resync', () => load()),
    onLangChange(paint),
  ];
  const ticker = setInterval(schedule, 30000); // ages move on
  api.get('/territory').then((tt) => {
    if (!state) return;
    for (const c of tt.communes) state.communes.set(c.id, c.name);
    schedule();
  }).catch(() => {});
  load();
  paint();
  return () => { offs.forEach((f) => f()); clearInterval(ticker); cancelAnimationFrame(frame); state = null; };
}

async function load() {
  try {
    const units = await api.get('/units');
    if (!state) return;
    state.units = units;
    state.error = null;
  } catch (e) {
    if (!state) return;
    state.error = e;
  }
  paint();
}

/** A mission as shown: the live incident when the store has it, else the unit's detail. */
function mission(unit, id) {
  const inc = live.incidents.get(id);
  if (inc) return inc;
  const known = state.missions.get(id);
  if (known) return known;
  // Not among the open incidents the console follows (not loaded yet, or over the limit):
  // ask the unit for the details of its missions, once.
  if (!state.missions.has(`unit:${unit.id}`)) {
    state.missions.set(`unit:${unit.id}`, true);
    api.get(`/units/${encodeURIComponent(unit.id)}`).then((d) => {
      if (!state) return;
      for (const m of d.mission_details ?? []) state.missions.set(m.id, m);
      paint();
    }).catch(() => {});
  }
  return { id, title: '', severity: null, status: null };
}

function paint() {
  if (!state) return;
  document.getElementById('units-title').textContent = t('units.title');
  clear(state.board);
  clear(state.summary);
  if (state.error) {
    state.board.append(h('p.error', api.errorText(state.error)));
    return;
  }
  if (!state.units) {
    state.board.append(h('p.muted', '…'));
    return;
  }
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const u of state.units) counts[u.status] = (counts[u.status] ?? 0) + 1;
  state.summary.append(...STATUSES.map((s) =>
    h(`span.unit-status.us-${s}`, { dataset: { status: s, count: counts[s] } }, `${counts[s]} ${t(`units.status.${s}`)}`)));
  if (!state.units.length) {
    state.board.append(h('p.muted', t('units.empty')));
    return;
  }
  const kinds = [...KINDS, ...new Set(state.units.map((u) => u.kind).filter((k) => !KINDS.includes(k)))];
  for (const kind of kinds) {
    const units = state.units.filter((u) => u.kind === kind).sort((a, b) => a.name.localeCompare(b.name));
    if (!units.length) continue;
    state.board.append(h('section.unit-group', { dataset: { kind } },
      h('h3', `${t(`units.kind.${kind}`)} (${units.length})`),
      h('div.unit-grid', ...units.map(card))));
  }
}

function card(u) {
  const canSet = api.can('unit.status');
  const now = live.serverNow();
  const scope = u.communes.length ? u.communes.map((c) => state.communes.get(c) ?? c).join(', ') : t('units.everywhere');
  const missions = u.missions.map((id) => mission(u, id));
  return h(`article.unit-card.us-${u.status}`, { id: `unit-${u.id}`, dataset: { id: u.id, status: u.status } },
    h('header.unit-head',
      h('div',
        h('div.unit-name', u.name),
        h('div.sub', h('span.unit-id', u.id), ' · ', t(`units.kind.${u.kind}`))),
      h(`span.unit-status.big.us-${u.status}`, { dataset: { status: u.status } }, t(`units.status.${u.status}`))),
    h('div.unit-scope', h('span.muted', `${t('units.communes')} : `), scope),
    h('div.unit-missions',
      h('h4', t('units.missions', { n: missions.length })),
      missions.length
        ? h('ul.missions', ...missions.map((m) => h('li.mission', { dataset: { id: m.id } },
          m.severity && h(`span.sev.sev-${m.severity}`, t(`severity.${m.severity}`)),
          h('a', { href: `#/incidents/${m.id}` }, `#${m.id} ${localTitle(m.title ?? '')}`),
          m.status && h(`span.status.st-${m.status}`, t(`status.${m.status}`)),
          m.opened_at && h('span.age', { title: fmtTime(m.opened_at) }, fmtAgo(m.opened_at, now)))))
        : h('p.muted', t('units.no_mission'))),
    h('footer.unit-foot',
      h('span.muted', { title: fmtTime(u.updated_at) }, t('units.updated', { when: fmtAgo(u.updated_at, now) })),
      canSet && h('div.unit-actions', ...STATUSES.filter((s) => s !== u.status).map((s) =>
        h(`button.set-status.us-${s}`, { type: 'button', dataset: { status: s }, on: { click: () => setStatus(u, s) } },
          t(`units.set.${s}`))))));
}

async function setStatus(u, status) {
  try {
    const updated = await api.post(`/units/${encodeURIComponent(u.id)}/status`, { status });
    if (!state?.units) return;
    const i = state.units.findIndex((x) => x.id === updated.id);
    if (i >= 0) state.units[i] = updated;
    toast(t('units.changed', { name: updated.name, status: t(`units.status.${updated.status}`) }));
    paint();
  } catch (e) {
    toast(api.errorText(e), 'error');
  }
}
