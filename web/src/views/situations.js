// Situations in the queue: the incidents of one real event shown as one entry, with the
// incidents inside; acting on the situation (acknowledge, resolve, assign) reaches every
// incident of it the operator may see; split and merge; bulk acknowledgement. The server
// cuts each situation to the caller's scope (GET /api/v1/situations): what is shown here is
// never more than what the caller may see.

import * as api from '../api.js';
import * as live from '../live.js';
import { h, toast } from '../dom.js';
import { t, tOr, fmtTime, fmtAgo, localTitle, incidentTitle } from '../i18n.js';

/** A situation's title in the reader's language: its leading incident's. */
export function situationTitle(s) {
  const lead = live.incidents.get(s.lead);
  return lead ? incidentTitle(lead) : localTitle(s.title);
}

/** The situation an incident is in (null: none known yet). */
export function situationOf(incidentId) {
  for (const s of live.situations.values()) {
    if (s.incidents.some((i) => i.id === incidentId)) return s;
  }
  return null;
}

/** Groups the incidents shown in the queue by situation, in the queue's order (the first
 *  incident of a group places it). Incidents of no known situation stand alone. */
export function group(incidents) {
  // incident id → its situation, built once per call (not a scan per incident).
  const of = new Map();
  for (const s of live.situations.values()) for (const m of s.incidents) of.set(m.id, s);
  const groups = [];
  const byId = new Map();
  for (const i of incidents) {
    const s = of.get(i.id) ?? null;
    const key = s ? `s${s.id}` : `i${i.id}`;
    let g = byId.get(key);
    if (!g) {
      g = { situation: s, incidents: [] };
      byId.set(key, g);
      groups.push(g);
    }
    g.incidents.push(i);
  }
  return groups;
}

export async function act(id, action, extra = {}) {
  return api.post(`/situations/${id}/actions`, { action, ...extra });
}

/** Acknowledges the situations, in one request; says how many were and were not. */
export async function acknowledgeMany(ids) {
  const r = await api.post('/situations/acknowledge', { ids });
  toast(t('situation.bulk_done', { n: r.acknowledged.length, refused: r.refused.length }),
    r.refused.length ? 'error' : undefined);
  return r;
}

/** The head of a situation of several incidents in the queue. */
export function head(s, { selected, onSelect }) {
  const now = live.serverNow();
  const canAct = api.can('incident.act');
  return h(`div.situation-head.row-${s.severity}`, { dataset: { situation: s.id, severity: s.severity, status: s.status } },
    canAct && h('input.bulk', { type: 'checkbox', title: t('situation.select'), checked: selected,
      on: { change: (e) => onSelect(s.id, e.target.checked), click: (e) => e.stopPropagation() } }),
    h(`span.sev.sev-${s.severity}`, t(`severity.${s.severity}`)),
    h('div.row-main', h('div.row-title', situationTitle(s)),
      h('div.row-sub', t('situation.count', { n: s.incidents.length }), ' · ',
        tOr(`family.${s.family}`, s.family ?? tOr(`category.${s.category}`, s.category)))),
    h('div.row-meta', h(`span.status.st-${s.status}`, t(`status.${s.status}`)),
      h('span.age', { title: fmtTime(s.opened_at) }, fmtAgo(s.opened_at, now)),
      canAct && s.unacknowledged > 0 && h('button.situation-ack', { type: 'button', dataset: { situation: s.id },
        on: { click: (e) => { e.stopPropagation(); act(s.id, 'acknowledge').then(() => toast(t('situation.acknowledged'))).catch((x) => toast(api.errorText(x), 'error')); } } },
      t('action.acknowledge'))));
}

/** The incidents of a situation in its panel: folded when there are many (the queue lists
 *  them too), the open ones first. */
function members(s, incident) {
  const rank = (m) => (live.OPEN.has(m.status) ? 0 : 1);
  const list = [...s.incidents].sort((a, b) => rank(a) - rank(b));
  const ul = h('ul.situation-members', ...list.map((m) => h(`li${m.id === incident.id ? '.current' : ''}`,
    h(`span.sev.sev-${m.severity}`, t(`severity.${m.severity}`)), ' ',
    h('a', { href: `#/incidents/${m.id}` }, incidentTitle(live.incidents.get(m.id) ?? m)), ' ',
    h(`span.status.st-${m.status}`, t(`status.${m.status}`)))));
  if (list.length <= 6) return ul;
  const open = list.filter((m) => live.OPEN.has(m.status)).length;
  return h('details.situation-fold', h('summary', t('situation.members', { n: list.length, open })), ul);
}

/** The situation panel above an incident's detail: what the situation holds, its actions,
 *  its log; split this incident out, or merge another situation in. */
export function panel(incident, reload) {
  const s = situationOf(incident.id);
  if (!s) return null;
  const canAct = api.can('incident.act');
  const several = s.incidents.length > 1;
  const run = (p) => p.then(() => { toast(t('situation.done')); reload(); }).catch((x) => toast(api.errorText(x), 'error'));
  const others = [...live.situations.values()].filter((o) => o.id !== s.id && live.isOpen(o));
  let mergeSelect = null;
  if (canAct && others.length) {
    mergeSelect = h('select#situation-merge', h('option', { value: '' }, t('situation.merge_pick')),
      ...others.map((o) => h('option', { value: o.id }, `#${o.id} · ${situationTitle(o)}`)));
  }
  return h('section.block.situation-panel#situation-panel', { dataset: { situation: s.id, count: s.incidents.length } },
    h('h3', t('situation.title', { id: s.id, n: s.incidents.length })),
    several && members(s, incident),
    canAct && h('div.actions#situation-actions',
      several && s.unacknowledged > 0 && h('button.action', { type: 'button', dataset: { action: 'situation-acknowledge' },
        on: { click: () => run(act(s.id, 'acknowledge')) } }, t('situation.acknowledge_all')),
      several && live.isOpen(s) && h('button.action', { type: 'button', dataset: { action: 'situation-resolve' },
        on: { click: () => run(act(s.id, 'resolve')) } }, t('situation.resolve_all')),
      several && h('button.action', { type: 'button', dataset: { action: 'situation-split' },
        on: { click: () => run(api.post(`/situations/${s.id}/split`, { incident: incident.id })) } }, t('situation.split')),
      mergeSelect && h('span.inline', mergeSelect, h('button', { type: 'button', dataset: { action: 'situation-merge' },
        on: { click: () => { const from = Number(mergeSelect.value); if (from) run(api.post(`/situations/${s.id}/merge`, { from })); } } },
      t('situation.merge')))));
}
