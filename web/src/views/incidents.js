// The queue (situations, each with its incidents; severity, then age; filters; bulk
// acknowledgement) and the incident detail (its situation, rule, evidence, readings, SOP
// checklist, assignment, log, comment, lifecycle actions).
// Routes: #/incidents and #/incidents/{id}. Shortcuts: j/k, a, u.

import * as api from '../api.js';
import * as live from '../live.js';
import { navigate } from '../router.js';
import { h, clear, toast } from '../dom.js';
import { t, tOr, fmtTime, fmtAgo, getLang, onLangChange, tMessage, incidentTitle, fmtNumber, actorName } from '../i18n.js';
import { evidenceChart } from '../chart.js';
import { miniMap } from '../minimap.js';
import { peopleCountText } from '../privacy.js';
import { withPseudonyms } from './unmask.js';
import * as situations from './situations.js';
import * as shelving from '../shelving.js';

export const route = 'incidents';
export const navKey = 'nav.incidents';
export const permission = 'incident.read';

const filters = { commune: '', category: '', status: 'open', unit: '', severity: '', shelved: '' };
const NO_FILTER = { commune: '', category: '', status: 'open', unit: '', severity: '', shelved: '' };
const OPEN = live.OPEN;
const LIFECYCLE = [
  ['acknowledge', (s) => s === 'new'],
  ['start', (s) => s === 'new' || s === 'acknowledged'],
  ['resolve', (s) => OPEN.has(s)],
  ['close', (s) => s === 'resolved'],
  ['reopen', (s) => s === 'resolved'],
];

let state = null;

export function mount(el, args) {
  const queue = h('ul.queue#queue', { role: 'listbox' });
  const filterBar = h('div.filters');
  const countEl = h('span.count#queue-count');
  const detail = h('section.detail#incident-detail');
  el.append(h('section.incidents-view',
    h('div.queue-pane', h('div.pane-head', h('h2#queue-title'), countEl), filterBar, queue),
    detail));
  const bulkBar = h('div.bulk-bar#bulk-bar', { hidden: true });
  state = { el, queue, filterBar, countEl, detail, bulkBar, picked: new Set(), selected: null, detailData: null, units: null, rules: null, territory: null, order: [] };
  filterBar.after(bulkBar);

  const refreshQueue = () => paintQueue();
  let frame = 0;
  const schedule = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; refreshQueue(); }); };
  const offs = [
    live.on('incidents', (ev) => {
      schedule();
      if (ev.incident && ev.incident.id === state.selected) loadDetail(state.selected, true);
      if (ev.reset && state.selected) loadDetail(state.selected, true);
    }),
    live.on('situations', () => { schedule(); if (state.detailData) paintDetail(); }),
    live.on('unit', () => { state.units = null; loadUnits().then(() => state?.detailData && paintDetail()); }),
    live.on('resync', () => state.selected && loadDetail(state.selected, true)),
    onLangChange(() => { paintFilters(); paintQueue(); paintDetail(); }),
    shelving.onChange(() => { schedule(); paintDetail(); }),
  ];
  const ticker = setInterval(schedule, 30000); // ages ("3 min ago") move on
  Promise.all([
    api.get('/territory').then((tt) => { if (state) state.territory = tt; }).catch(() => {}),
    api.get('/rules').then((r) => { if (state) state.rules = new Map(r.map((x) => [x.id, x])); }).catch(() => {}),
    loadUnits(),
  ]).then(() => { if (!state) return; paintFilters(); paintQueue(); if (state.detailData) paintDetail(); }); // the view may be gone
  paintFilters();
  paintQueue();
  update(args);
  return () => { offs.forEach((f) => f()); clearInterval(ticker); cancelAnimationFrame(frame); state.minimap?.map?.remove(); state = null; };
}

/** Opens the queue with these filters, the others cleared (the alerting banner: the
 * unacknowledged critical incidents). */
export function openFiltered(f) {
  Object.assign(filters, NO_FILTER, f);
  if (state) {
    paintFilters();
    paintQueue();
  }
  navigate('#/incidents');
}

export function update(args) {
  const id = Number(args?.[0]);
  if (Number.isFinite(id) && id > 0) {
    state.selected = id;
    loadDetail(id);
  } else {
    state.selected = null;
    state.detailData = null;
    paintDetail();
  }
  markSelected();
}

async function loadUnits() {
  // The units are read for the assignment and the unit filter: not by roles without units.
  if (!api.can('unit.read')) { state.units = false; return; }
  let units;
  try {
    units = await api.get('/units');
  } catch (e) {
    units = e.status === 404 ? false : null; // false: the server has no unit list
  }
  if (state) state.units = units; // the view may have been left meanwhile
}

export function onKey(e) {
  if (!state) return false;
  if (e.key === 'j' || e.key === 'k') {
    const order = state.order;
    if (!order.length) return true;
    const i = order.indexOf(state.selected);
    const next = i < 0 ? 0 : Math.min(order.length - 1, Math.max(0, i + (e.key === 'j' ? 1 : -1)));
    navigate(`#/incidents/${order[next]}`);
    return true;
  }
  if (e.key === 'a' && state.detailData && api.can('incident.act')) {
    if (state.detailData.status === 'new') doAction('acknowledge');
    return true;
  }
  if (e.key === 'u' && state.detailData) {
    state.detail.querySelector('#assign-unit')?.focus();
    return true;
  }
  return false;
}

function visibleIncidents() {
  const list = [...live.incidents.values()].filter((i) => {
    if (filters.status === 'open' && !OPEN.has(i.status)) return false;
    if (filters.status && filters.status !== 'open' && filters.status !== 'active' && i.status !== filters.status) return false;
    if (filters.commune && i.commune !== filters.commune) return false;
    if (filters.category && i.category !== filters.category) return false;
    if (filters.severity && i.severity !== filters.severity) return false;
    const unit = i.unit ?? i.owner ?? '';
    if (filters.unit === '-' && unit) return false;
    if (filters.unit && filters.unit !== '-' && unit !== filters.unit) return false;
    if (filters.shelved && (filters.shelved === 'only') !== shelving.isShelved(i)) return false;
    return true;
  });
  return list.sort(live.compareIncidents);
}

function paintFilters() {
  if (!state) return;
  const select = (name, options) => h('label', t(`filter.${name}`), h(`select#filter-${name}`, {
    on: { change: (e) => { filters[name] = e.target.value; paintQueue(); } },
  }, ...options.map(([v, label]) => h('option', { value: v, selected: filters[name] === v }, label))));
  const communes = state.territory?.communes ?? [];
  const categories = new Set([...(state.rules?.values() ?? [])].map((r) => r.category));
  for (const i of live.incidents.values()) categories.add(i.category);
  const units = state.units ? state.units.map((u) => [u.id, u.name]) : [...new Set([...live.incidents.values()].map((i) => i.unit ?? i.owner).filter(Boolean))].map((u) => [u, u]);
  clear(state.filterBar).append(
    select('status', [['open', t('status.open')], ['active', t('status.active')], ...['new', 'acknowledged', 'in_progress', 'resolved'].map((s) => [s, t(`status.${s}`)])]),
    select('severity', [['', t('filter.all')], ...['critical', 'major', 'minor', 'info'].map((v) => [v, t(`severity.${v}`)])]),
    select('commune', [['', t('filter.all')], ...communes.map((c) => [c.id, c.name])]),
    select('category', [['', t('filter.all')], ...[...categories].sort().map((c) => [c, tOr(`category.${c}`, c)])]),
    select('unit', [['', t('filter.all')], ['-', t('filter.none')], ...units]),
    select('shelved', [['', t('filter.all')], ['hide', t('shelf.filter.hide')], ['only', t('shelf.filter.only')]]),
  );
  document.getElementById('queue-title').textContent = t('queue.title');
}

function paintQueue() {
  if (!state) return;
  const list = visibleIncidents();
  // One entry per situation: its incidents inside, in the queue's order.
  const groups = situations.group(list);
  state.order = groups.flatMap((g) => g.incidents.map((i) => i.id));
  state.countEl.textContent = t('queue.count_situations', { s: groups.length, n: list.length });
  state.countEl.dataset.count = list.length;
  state.countEl.dataset.situations = groups.length;
  const now = live.serverNow();
  clear(state.queue);
  if (!list.length) state.queue.append(h('li.empty', t('queue.empty')));
  for (const id of [...state.picked]) if (!live.situations.has(id)) state.picked.delete(id);
  paintBulk();
  const onSelect = (id, on) => { if (on) state.picked.add(id); else state.picked.delete(id); paintBulk(); };
  for (const g of groups) {
    const s = g.situation;
    if (s && s.incidents.length > 1) {
      state.queue.append(h('li.situation', { dataset: { situation: s.id } },
        situations.head(s, { selected: state.picked.has(s.id), onSelect }),
        h('ul.situation-incidents', ...g.incidents.map((i) => incidentRow(i, now, null)))));
    } else {
      for (const i of g.incidents) state.queue.append(incidentRow(i, now, s && { s, onSelect }));
    }
  }
  markSelected();
}

function paintBulk() {
  const n = state.picked.size;
  const bar = clear(state.bulkBar);
  bar.hidden = n === 0;
  if (!n) return;
  bar.append(h('span', t('situation.picked', { n })),
    h('button#bulk-acknowledge', { type: 'button', on: { click: () => {
      const ids = [...state.picked];
      state.picked.clear();
      situations.acknowledgeMany(ids).catch((e) => toast(api.errorText(e), 'error')).finally(paintQueue);
    } } }, t('situation.acknowledge_picked')),
    h('button', { type: 'button', on: { click: () => { state.picked.clear(); paintQueue(); } } }, t('situation.unpick')));
}

/** One incident of the queue; `alone`: the situation it makes on its own (a checkbox to
 *  pick it for a bulk acknowledgement). */
function incidentRow(i, now, alone) {
  const canAct = api.can('incident.act');
  {
    const shelf = shelving.shelfOf(i);
    return h(`li.incident-row.row-${i.severity}.st-${i.status}${shelf ? '.shelved' : ''}`, {
      role: 'option', dataset: { id: i.id, status: i.status, severity: i.severity, shelved: !!shelf },
      on: { click: () => navigate(`#/incidents/${i.id}`) },
    },
    alone && canAct && h('input.bulk', { type: 'checkbox', title: t('situation.select'), checked: state.picked.has(alone.s.id),
      on: { change: (e) => alone.onSelect(alone.s.id, e.target.checked), click: (e) => e.stopPropagation() } }),
    h(`span.sev.sev-${i.severity}`, t(`severity.${i.severity}`)),
    h('div.row-main', h('div.row-title', incidentTitle(i)),
      h('div.row-sub', `${i.commune_name} · ${i.site_name}`)),
    h('div.row-meta', h(`span.status.st-${i.status}`, t(`status.${i.status}`)),
      h('span.age', { title: i.reopened_at ? `${t('incident.reopened')} ${fmtTime(i.reopened_at)}` : fmtTime(i.opened_at) },
        i.reopened_at ? `↻ ${fmtAgo(i.reopened_at, now)}` : fmtAgo(i.opened_at, now)),
      (i.unit ?? i.owner) && h('span.unit', i.unit ?? i.owner),
      shelf && h('span.tag.shelved', { title: t('shelf.until', { until: fmtTime(shelf.until) }) }, t('shelf.tag'))));
  }
}

function markSelected() {
  if (!state) return;
  for (const li of state.queue.querySelectorAll('li.incident-row')) {
    const sel = Number(li.dataset.id) === state.selected;
    li.classList.toggle('selected', sel);
    li.setAttribute('aria-selected', sel);
    if (sel) li.scrollIntoView({ block: 'nearest' });
  }
}

let loadSeq = 0;
async function loadDetail(id, quiet) {
  const seq = ++loadSeq;
  if (!quiet) { state.detailData = null; clear(state.detail).append(h('p.muted', '…')); }
  try {
    const d = await api.get(`/incidents/${id}`);
    if (!state || seq !== loadSeq) return;
    state.detailData = d;
    // The readings of the device that fired the rule, around its trigger; without a
    // trigger (incidents stored before it), the device's latest readings.
    const device = d.trigger?.device ?? d.device;
    const win = readingsWindow(d);
    const key = `${device}|${win ? `${win.from}|${win.until}` : ''}`;
    if (device && (!quiet || key !== state.readingsKey)) {
      const q = win ? `?from=${encodeURIComponent(win.from)}&until=${encodeURIComponent(win.until)}` : '';
      api.get(`/devices/${encodeURIComponent(device)}${q}`).then((dev) => {
        if (state?.detailData?.id === id) { state.deviceData = dev; state.readingsKey = key; state.window = win; paintDetail(); }
      }).catch(() => {});
    }
    if (!quiet) { state.deviceData = null; state.readingsKey = null; state.window = null; }
    paintDetail();
  } catch (e) {
    if (!state || seq !== loadSeq) return;
    clear(state.detail).append(h('p.error', api.errorText(e)));
  }
}

async function doAction(action, extra) {
  const d = state?.detailData;
  if (!d) return;
  try {
    await api.act(d.id, action, extra);
    toast(t('action.done', { action: t(`action.${action}`) }));
    await loadDetail(d.id, true);
  } catch (e) {
    toast(api.errorText(e), 'error');
  }
}

function paintDetail() {
  if (!state) return;
  const d = state.detailData;
  const el = clear(state.detail);
  if (!d) {
    if (!state.selected) el.append(h('p.muted.placeholder', t('incident.none')));
    return;
  }
  const canAct = api.can('incident.act');
  const rule = state.rules?.get(d.rule);
  const unit = d.unit ?? d.owner;
  el.dataset.id = d.id;
  el.dataset.status = d.status;
  // Native append() would print a skipped part (null / false) as text.
  el.append(...[
    h('header.detail-head',
      h(`span.sev.big.sev-${d.severity}`, t(`severity.${d.severity}`)),
      h('div', h('h2#detail-title', withPseudonyms(incidentTitle(d), d)),
        h('div.sub', `#${d.id} · ${d.commune_name} · ${d.site_name} · ${tOr(`category.${d.category}`, d.category)}`)),
      h(`span.status.big.st-${d.status}#detail-status`, { dataset: { status: d.status } }, t(`status.${d.status}`))),
    situations.panel(d, () => loadDetail(d.id, true)),
    d.supervisor_attention && h('div.banner.warn', t('incident.supervisor')),
    d.escalated_at && h('div.banner.warn', `${t('incident.escalated')} — ${fmtTime(d.escalated_at)}`),
    canAct && h('div.actions#lifecycle', ...LIFECYCLE.filter(([, ok]) => ok(d.status)).map(([a]) =>
      h(`button.action.act-${a}`, { type: 'button', dataset: { action: a }, on: { click: () => doAction(a) } }, t(`action.${a}`)))),
    h('dl.kv',
      h('dt', t('incident.opened')), h('dd', `${fmtZoned(Date.parse(d.opened_at))} (${fmtAgo(d.opened_at, live.serverNow())})`),
      d.reopened_at && [h('dt', t('incident.reopened')), h('dd#detail-reopened', { dataset: { at: d.reopened_at } }, `${fmtZoned(Date.parse(d.reopened_at))} (${fmtAgo(d.reopened_at, live.serverNow())})`)],
      d.acknowledged_at && [h('dt', t('incident.acknowledged')), h('dd', fmtTime(d.acknowledged_at))],
      h('dt', t('incident.rule')), h('dd', rule ? `${d.rule} · ${tOr(`ruletype.${rule.type}`, rule.type)}, ${tOr(`severity.${rule.severity}`, rule.severity)}` : d.rule),
      h('dt', t('incident.alarms')), h('dd', `${d.alarm_count} · ${t(d.condition_active ? 'incident.condition_active' : 'incident.condition_cleared')}`),
      h('dt', t('incident.unit')), h('dd#detail-unit', unit ?? '—'),
      d.technique && [h('dt', t('incident.technique')),
        h('dd#detail-technique', h('a', { href: d.technique.url, target: '_blank', rel: 'noopener noreferrer' },
          `${d.technique.id} · ${d.technique.name}`), ' ', h('span.muted', t('incident.technique_hint')))]),
    h('section.block#evidence', h('h3', t('incident.evidence')),
      d.trigger && triggerFacts(d),
      d.trigger && state.deviceData && chart(state.deviceData, d),
      h(d.trigger ? 'p.evidence.legacy' : 'p.evidence', { title: d.trigger ? t('evidence.latest_text') : null },
        d.evidence ? withPseudonyms(d.evidence_message ? tMessage(d.evidence_message, {}, d.evidence) : d.evidence, d) : '—'),
      d.carried_pseudonyms?.length > 0 && h('p.carried#detail-carried', h('span.muted', t('incident.carried')), ' ',
        withPseudonyms(d.carried_pseudonyms.join(' '), d)),
      state.deviceData && observations(state.deviceData, d)),
    surroundings(d),
    sop(d, canAct),
    shelving.shelfBlock(d, canAct),
    assignment(d),
    h('section.block', h('h3', t('log.title')),
      d.log?.length ? h('ol.log#incident-log', ...d.log.map((e) => h('li', { dataset: { action: e.action } },
        h('time', fmtTime(e.at)), h('span.actor', actorName(e.actor)), h('span.what', tOr(`handover.action.${e.action}`, e.action)), e.detail && h('span.detail', withPseudonyms(e.message ? tMessage(e.message, {}, e.detail) : e.detail, d)))))
        : h('p.muted', t('log.empty')),
      canAct && commentBox()),
  ].filter((part) => part != null && part !== false));
}

const MIN = 60000;
const WINDOW_MAX = 48 * 60 * MIN;

/** The readings the detail asks for: from 30 min before the trigger (and before the time
 * its condition had to last) to now, or to 30 min after the resolution; 48 h at most. */
function readingsWindow(d) {
  if (!d.trigger) return null;
  const at = Date.parse(d.trigger.at);
  const from = at - 30 * MIN - (d.trigger.window_s ?? 0) * 1000;
  const end = d.resolved_at ? Date.parse(d.resolved_at) + 30 * MIN : Math.max(live.serverNow(), at + 30 * MIN);
  const until = Math.min(end, from + WINDOW_MAX);
  return { from: new Date(from).toISOString(), until: new Date(until).toISOString() };
}

/** The incident's surroundings on a small map: one map per selected incident, kept across
 * repaints (its element is moved, not redrawn). */
function surroundings(d) {
  if (!Array.isArray(d.position)) return null;
  if (state.minimap?.id !== d.id) {
    state.minimap?.map?.remove();
    const el = h('div.minimap#incident-minimap', { role: 'img', 'aria-label': t('evidence.minimap') });
    const m = { id: d.id, el, map: null };
    state.minimap = m;
    // Drawn once the element is in the page (after this paint).
    requestAnimationFrame(() => {
      if (state?.minimap !== m) return;
      miniMap(el, d, api.can('device.read')).then((map) => {
        if (state?.minimap === m) m.map = map;
        else map.remove();
      }).catch(() => { el.dataset.ready = 'unavailable'; });
    });
  }
  return h('section.block#surroundings', h('h3', t('evidence.surroundings')), state.minimap.el);
}

/** Numbers in the reader's language. */
function fmtNum(v) {
  if (v == null || !Number.isFinite(v)) return '—';
  return new Intl.NumberFormat(getLang() === 'en' ? 'en-GB' : 'fr-FR', { maximumFractionDigits: 3 }).format(v);
}

/** Date and time in the reader's language and the territory's time zone (the browser's
 * when the territory declares none, or one this browser does not know). */
function fmtZoned(ms, short) {
  const locale = getLang() === 'en' ? 'en-GB' : 'fr-FR';
  const opts = short ? { hour: '2-digit', minute: '2-digit' } : { dateStyle: 'short', timeStyle: 'medium' };
  const tz = state?.territory?.timezone;
  let f;
  try {
    f = new Intl.DateTimeFormat(locale, tz ? { ...opts, timeZone: tz } : opts);
  } catch {
    f = new Intl.DateTimeFormat(locale, opts);
  }
  return f.format(new Date(ms));
}

function withUnit(v, unit) {
  return v == null ? '—' : `${fmtNum(v)}${unit ? ' ' + unit : ''}`;
}

/** The condition that fired, as a sentence in the reader's language. */
function conditionText(tr) {
  const u = tr.unit;
  const op = tr.op && t(`evidence.op.${tr.op}`, { threshold: withUnit(tr.threshold, u), high: withUnit(tr.threshold_high, u) });
  const min = tr.window_s != null ? fmtNum(tr.window_s / 60) : null;
  switch (tr.kind) {
    case 'absence': return t('evidence.absence', { min });
    case 'rate': return t('evidence.rate', { field: tr.field, op: op ?? '', count: tr.count, min });
    case 'correlation': return t('evidence.correlation', { count: tr.count, min })
      + (tr.radius_m != null ? ` ${t('evidence.radius', { m: fmtNum(tr.radius_m) })}` : '');
    case 'aggregate': return t('evidence.aggregate', { threshold: fmtNum(tr.threshold), high: fmtNum(tr.threshold_high) });
    default: return `${tr.field ?? ''} ${op ?? ''}${min ? ' ' + t('evidence.sustained', { min }) : ''}`.trim();
  }
}

function triggerFacts(d) {
  const tr = d.trigger;
  const fact = (id, label, value, data) => h(`span#${id}`, { dataset: data ?? {} }, h('span.label', label), value);
  return h('div.trigger-facts#trigger-facts', { dataset: { kind: tr.kind } },
    fact('trigger-at', t('evidence.fired_at'), fmtZoned(Date.parse(tr.at)), { at: tr.at }),
    tr.device && fact('trigger-device', t('evidence.device'), tr.device),
    fact('trigger-condition', t('evidence.condition'), conditionText(tr)),
    tr.value != null && fact('trigger-value', t('evidence.value'), withUnit(tr.value, tr.unit), { value: tr.value }),
    d.peak != null && fact('trigger-peak', t('evidence.peak'), withUnit(d.peak, tr.unit), { value: d.peak }),
    d.current != null && fact('trigger-current', t('evidence.current'),
      `${withUnit(d.current, tr.unit)}${d.current_at ? ` (${fmtZoned(Date.parse(d.current_at), true)})` : ''}`, { value: d.current }));
}

/** The triggering field charted over the window, with its threshold(s) and the trigger. */
function chart(dev, d) {
  const tr = d.trigger;
  const win = state.window;
  if (!tr.field || !win) return null;
  const points = dev.recent.filter((o) => o.field === tr.field && typeof o.value === 'number')
    .map((o) => [Date.parse(o.time), o.value]).sort((a, b) => a[0] - b[0]);
  if (!points.length) return h('p.muted#evidence-chart-empty', t('evidence.no_readings'));
  const thresholds = [tr.threshold, tr.threshold_high].filter((v) => v != null && tr.kind !== 'aggregate');
  const unit = tr.unit ? ` ${tr.unit}` : '';
  return h('figure.chart#evidence-chart', evidenceChart({
    points,
    from: Date.parse(win.from),
    to: Date.parse(win.until),
    thresholds,
    trigger: { at: Date.parse(tr.at), value: tr.value },
    fmtNum,
    fmtTime: (ms) => fmtZoned(ms, true),
    labels: {
      title: t('evidence.chart', { field: tr.field }),
      threshold: (v) => t('evidence.threshold', { value: `${fmtNum(v)}${unit}` }),
      trigger: (v, ms) => t('evidence.trigger_marker', { value: `${fmtNum(v)}${unit}`, time: fmtZoned(ms) }),
    },
  }));
}

/** The readings around the trigger (the triggering field's, nearest to it first), or the
 * device's latest when the incident has no trigger. */
function observations(dev, incident) {
  const tr = incident.trigger;
  let rows;
  if (tr) {
    const at = Date.parse(tr.at);
    const series = dev.recent.filter((o) => !tr.field || o.field === tr.field);
    rows = series.map((o) => ({ o, gap: Math.abs(Date.parse(o.time) - at) }))
      .sort((a, b) => a.gap - b.gap).slice(0, 9).map((x) => x.o)
      .sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  } else {
    rows = dev.recent.slice(0, 8);
  }
  if (!rows.length) return null;
  // A personal value is its pseudonym: a chip, unmaskable if this incident carries it.
  const shown = (o) => (typeof o.value === 'string' ? withPseudonyms(o.value, incident)
    : (typeof o.value === 'boolean' ? t(`msg.bool.${o.value}`) : fmtNumber(observedValue(o), o.unit, 3)));
  const isTrigger = (o) => tr && o.field === tr.field && Date.parse(o.time) === Date.parse(tr.at);
  return h('div', h('h4', t(tr ? 'evidence.readings_around' : 'incident.observations')),
    h('table.obs#evidence-readings', ...rows.map((o) =>
      h(isTrigger(o) ? 'tr.trigger' : 'tr', { dataset: isTrigger(o) ? { time: o.time, trigger: 'true' } : { time: o.time } },
        h('td', tr ? fmtZoned(Date.parse(o.time)) : fmtTime(o.time)), h('td', o.field), h('td.num', shown(o))))));
}

/** A reading as shown: a suppressed people count is "< 10", never a number. */
export function observedValue(o) {
  return o.suppressed ? peopleCountText(o.value, true) : o.value;
}

function sop(d, canAct) {
  const steps = d.sop?.steps ?? [];
  return h('section.block#sop', h('h3', d.sop?.title ?? t('sop.title')),
    steps.length ? h('ol.sop', ...steps.map((s) => h(`li.step${s.done_at ? '.done' : ''}${s.overdue ? '.overdue' : ''}${s.skipped ? '.skipped' : ''}`,
      { dataset: { index: s.index, done: !!s.done_at } },
      h('span.step-text', s.text),
      h('span.step-meta',
        s.done_at ? t('sop.done', { who: (s.done_by ?? '').replace(/^user:/, ''), when: fmtTime(s.done_at) })
          : [s.overdue && h('span.tag.overdue', t('sop.overdue')), s.skipped && h('span.tag.skipped', t('sop.skipped')),
            s.due_at && h('span.due', t('sop.due', { when: fmtTime(s.due_at) })),
            canAct && d.status !== 'closed' && h('button.tick', { type: 'button', dataset: { step: s.index },
              on: { click: () => doAction('complete_step', { step: s.index }) } }, t('sop.tick'))]))))
      : h('p.muted', t('sop.none')));
}

function assignment(d) {
  if (!api.can('incident.assign') || d.status === 'closed') return null;
  const current = d.unit ?? d.owner ?? '';
  let input;
  if (state.units) {
    input = h('select#assign-unit', h('option', { value: '' }, t('assign.select')),
      ...state.units.map((u) => h('option', { value: u.id, selected: u.id === current, disabled: u.status === 'off_duty' },
        `${u.name} — ${t(`unit.${u.status}`)}`)));
  } else {
    input = h('input#assign-unit', { placeholder: t('assign.free'), value: current });
  }
  const submit = () => {
    const unit = input.value.trim();
    if (unit) doAction('assign', { unit, owner: unit });
  };
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter') submit(); });
  return h('section.block#assignment', h('h3', t('assign.title')),
    state.units === false && h('p.muted', t('assign.unavailable')),
    h('div.inline', input, h('button#assign-submit', { type: 'button', on: { click: submit } }, t('assign.button'))));
}

function commentBox() {
  const ta = h('textarea#comment-text', { rows: 2, placeholder: t('comment.placeholder') });
  return h('form.comment', { on: { submit: (e) => { e.preventDefault(); const text = ta.value.trim(); if (text) doAction('comment', { text }).then(() => (ta.value = '')); } } },
    ta, h('button#comment-submit', { type: 'submit' }, t('comment.submit')));
}
