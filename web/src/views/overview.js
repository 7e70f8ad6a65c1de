// The overview: the key figures of the command post (open incidents by severity,
// unacknowledged, escalated, mean times to acknowledge and resolve today, devices, crises,
// events), refreshed live, and the shift handover: the outgoing operators' notes (written
// and marked read here), the open incidents grouped, overdue procedure steps, engaged units,
// active crises and events, shelved alarms, and people's actions since the start of the
// shift (the system's chatter left out); printable on one or two pages, times in the
// territory's time zone. Route: #/overview.

import * as api from '../api.js';
import * as live from '../live.js';
import { navigate } from '../router.js';
import { h, clear, toast } from '../dom.js';
import { t, tOr, fmtTime, getLang, onLangChange, tMessage, incidentTitle, localTitle, actorName } from '../i18n.js';
import { mountHealth } from './health.js';
import { mountLinks } from './links.js';

export const route = 'overview';
export const navKey = 'nav.overview';
// The key figures need `supervise`, the handover `handover`: either opens the tab.
export const permission = ['supervise', 'handover'];

const SEVERITIES = ['critical', 'major', 'minor', 'info'];
const SHIFT_HOURS = 8;
// At most one refresh of the figures per this many ms, however busy the stream is.
const THROTTLE_MS = 2000;

let state = null;

/** A duration in seconds as "45 s", "12 min 05 s", "2 h 05 min"; null: "—". */
export function fmtDuration(s) {
  if (s == null || !Number.isFinite(s)) return '—';
  const n = Math.max(0, Math.round(s));
  const pad = (x) => String(x).padStart(2, '0');
  if (n < 60) return t('duration.s', { s: n });
  if (n < 3600) return t('duration.ms', { m: Math.floor(n / 60), s: pad(n % 60) });
  if (n < 86400) return t('duration.hm', { h: Math.floor(n / 3600), m: pad(Math.floor((n % 3600) / 60)) });
  return t('duration.dh', { d: Math.floor(n / 86400), h: Math.floor((n % 86400) / 3600) });
}

function localInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A function that runs `f` at most once per `ms` (the last call is never lost). */
function throttle(f, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => { timer = null; last = Date.now(); f(); }, wait);
  };
}

export function mount(el) {
  const strip = h('section.kpi-strip#kpi-strip', { 'aria-live': 'polite' });
  const since = h('input#handover-since', { type: 'datetime-local', value: localInput(live.serverNow() - SHIFT_HOURS * 3600e3) });
  const handover = h('section.handover#handover');
  const head = h('div.handover-head');
  const health = h('div.health-wrap');
  const links = h('div.links-wrap');
  // Each part for the roles that may read it: the key figures (`supervise`: the
  // supervisor), the alarm health of the user's communes, the handover (`handover`: the
  // operator too).
  const figures = api.can('supervise');
  const handing = api.can('handover');
  el.append(h('section.overview-view#overview', figures && strip, api.can('incident.read') && health,
    api.can('territory.read') && links, handing && h('div.handover-wrap', head, handover)));
  state = { strip, since, handover, head, kpis: null, data: null, timers: [], communes: new Map() };
  // Commune names for the notes' scopes (ids in the handover).
  if (api.can('handover')) {
    api.get('/territory').then((tt) => {
      if (!state) return;
      for (const c of tt.communes ?? []) state.communes.set(c.id, c.name);
      paintHandover();
    }).catch(() => {});
  }
  const unmountHealth = api.can('incident.read') ? mountHealth(health) : () => {};
  const unmountLinks = api.can('territory.read') ? mountLinks(links) : () => {};

  const refreshKpis = figures ? throttle(loadKpis, THROTTLE_MS) : () => {};
  const refreshHandover = handing ? throttle(loadHandover, THROTTLE_MS * 2) : () => {};
  since.addEventListener('change', () => refreshHandover());
  const offs = [
    live.on('incidents', () => { refreshKpis(); refreshHandover(); }),
    live.on('device', refreshKpis),
    live.on('crisis', refreshKpis),
    live.on('event', refreshKpis),
    live.on('resync', () => { refreshKpis(); refreshHandover(); }),
    onLangChange(() => { paintHead(); paintKpis(); paintHandover(); }),
  ];
  // Means and "today" move on with the clock.
  const ticker = setInterval(refreshKpis, 60000);
  paintHead();
  paintKpis();
  if (figures) loadKpis();
  if (handing) loadHandover();
  return () => { offs.forEach((f) => f()); clearInterval(ticker); unmountHealth(); unmountLinks(); state = null; };
}

async function loadKpis() {
  try {
    const k = await api.get('/overview');
    if (!state) return;
    state.kpis = k;
    paintKpis();
  } catch (e) {
    if (state) clear(state.strip).append(h('p.error', api.errorText(e)));
  }
}

async function loadHandover() {
  if (!state) return;
  const local = state.since.value;
  const query = local ? `?since=${encodeURIComponent(new Date(local).toISOString())}` : '';
  try {
    const d = await api.get(`/handover${query}`);
    if (!state) return;
    state.data = d;
    paintHandover();
  } catch (e) {
    if (state) toast(api.errorText(e), 'error');
  }
}

function kpi(key, value, opts = {}) {
  return h(`div.kpi${opts.cls ? '.' + opts.cls : ''}`, { dataset: { kpi: key, value: value ?? '' }, title: opts.title ?? null },
    h('div.kpi-value', opts.text ?? (value == null ? '—' : Number(value).toLocaleString())),
    h('div.kpi-label', t(`kpi.${key}`)),
    opts.sub && h('div.kpi-sub', opts.sub));
}

function paintKpis() {
  if (!state) return;
  const k = state.kpis;
  const strip = clear(state.strip);
  if (!k) { strip.append(h('p.muted', '…')); return; }
  const bySev = k.open_by_severity ?? {};
  strip.dataset.now = k.now;
  strip.append(
    h('div.kpi-group.open',
      h('a.kpi.kpi-total', { href: '#/incidents', dataset: { kpi: 'open_total', value: k.open_total } },
        h('div.kpi-value', k.open_total.toLocaleString()), h('div.kpi-label', t('kpi.open_total'))),
      h('div.sev-counts', ...SEVERITIES.map((s) => h(`div.sev-count.sc-${s}${bySev[s] ? '.nonzero' : ''}`, { dataset: { kpi: `open_${s}`, value: bySev[s] ?? 0 } },
        h('span.n', String(bySev[s] ?? 0)), h('span.l', t(`severity.${s}`)))))),
    kpi('unacknowledged', k.unacknowledged, { cls: k.unacknowledged ? 'warn' : '' }),
    kpi('escalated', k.escalated, { cls: k.escalated ? 'alert' : '' }),
    kpi('mtta', k.mtta_today_s, { text: fmtDuration(k.mtta_today_s), sub: t('kpi.today_n', { n: k.acknowledged_today }) }),
    kpi('mttr', k.mttr_today_s, { text: fmtDuration(k.mttr_today_s), sub: t('kpi.today_n', { n: k.resolved_today }) }),
    h('div.kpi-group.devices', { dataset: { kpi: 'devices_total', value: k.devices_total } },
      h('div.kpi-value', h('span.state.silent', { dataset: { kpi: 'devices_silent', value: k.devices_silent } }, k.devices_silent.toLocaleString()),
        h('span.sep', ' / '), h('span.state.alarm', { dataset: { kpi: 'devices_alarm', value: k.devices_alarm } }, k.devices_alarm.toLocaleString()),
        h('span.sep', ' / '), h('span.total', k.devices_total.toLocaleString())),
      h('div.kpi-label', t('kpi.devices'))),
    kpi('active_crises', k.active_crises, { cls: k.active_crises ? 'alert' : '' }),
    h('a.kpi', { href: '#/events', dataset: { kpi: 'active_events', value: k.active_events } },
      h('div.kpi-value', k.active_events.toLocaleString()), h('div.kpi-label', t('kpi.active_events'))),
  );
}

function paintHead() {
  if (!state) return;
  clear(state.head).append(
    h('h2', t('handover.title')),
    h('label.since', h('span', t('handover.since')), state.since),
    h('button.ghost#handover-reset', { type: 'button', on: { click: () => { state.since.value = localInput(live.serverNow() - SHIFT_HOURS * 3600e3); loadHandover(); } } }, t('handover.reset')),
    h('button#handover-print', { type: 'button', on: { click: () => window.print() } }, t('handover.print')),
  );
}

/** A time of the handover in the territory's time zone (the command post's, whatever the
 * workstation's), in the current language. */
function zoned(iso, withDate = true) {
  if (!iso) return '';
  const tz = state?.data?.timezone || undefined;
  const opts = withDate ? { dateStyle: 'short', timeStyle: 'short' } : { timeStyle: 'short' };
  try {
    return new Intl.DateTimeFormat(getLang() === 'fr' ? 'fr-FR' : 'en-GB', { ...opts, timeZone: tz }).format(new Date(iso));
  } catch (e) {
    return fmtTime(iso);
  }
}

const who = (actor) => actorName(actor);

async function writeNote(ta, button) {
  const text = ta.value.trim();
  if (!text) { toast(t('error.code.note_empty'), 'error'); return; }
  button.disabled = true;
  try {
    await api.post('/handover/notes', { text });
    ta.value = '';
    toast(t('handover.note.saved'));
    await loadHandover();
  } catch (e) {
    toast(api.errorText(e), 'error');
  } finally {
    button.disabled = false;
  }
}

async function markRead(id) {
  try {
    await api.post(`/handover/notes/${id}/read`, {});
    await loadHandover();
  } catch (e) {
    toast(api.errorText(e), 'error');
  }
}

function notesBlock(d) {
  const ta = h('textarea#handover-note-text', { rows: 3, maxlength: 4000, placeholder: t('handover.note.placeholder') });
  const button = h('button#handover-note-submit', { type: 'submit' }, t('handover.note.submit'));
  const form = h('form.note-form#handover-note-form', { on: { submit: (e) => { e.preventDefault(); writeNote(ta, button); } } },
    h('label', { for: 'handover-note-text' }, t('handover.note.label')), ta,
    h('div.inline', h('span.muted', t('handover.note.hint')), button));
  return h('section.block#handover-notes', h('h3', t('handover.notes', { n: d.notes.length })),
    form,
    d.notes.length ? h('ul.notes', ...d.notes.map((n) => h(`li.note${n.read_by_me ? '.read' : ''}`, { dataset: { id: n.id, read: n.read_by_me } },
      h('div.note-head', h('strong', who(n.author)), ' · ', h('time', zoned(n.at)),
        n.communes.length ? h('span.muted', ` · ${n.communes.map(communeName).join(', ')}`) : h('span.muted', ` · ${t('handover.note.territory')}`)),
      h('p.note-text', n.text),
      h('div.note-foot',
        n.reads.length ? h('span.muted.note-reads', t('handover.note.reads', { list: n.reads.map((r) => `${who(r.by)} (${zoned(r.at, false)})`).join(', ') })) : h('span.muted', t('handover.note.unread')),
        !n.read_by_me && h('button.ghost.note-read', { type: 'button', dataset: { id: n.id }, on: { click: () => markRead(n.id) } }, t('handover.note.mark_read'))))))
      : h('p.muted', t('handover.note.none')));
}

function communeName(id) {
  return state?.communes.get(id) ?? id;
}

function table(id, cols, rows) {
  return h(`table.handover-table#${id}`, h('thead', h('tr', ...cols.map((c) => h('th', t(`handover.col.${c}`))))), h('tbody', ...rows));
}

function paintHandover() {
  if (!state) return;
  const d = state.data;
  const el = clear(state.handover);
  if (!d) { el.append(h('p.muted', '…')); return; }
  const open = d.open_incidents;
  const me = api.currentUser()?.user;
  const section = (id, title, body, empty) => h(`section.block#${id}`, h('h3', title), body ?? h('p.muted', empty));
  el.dataset.chatter = d.chatter_left_out;
  el.append(...[
    h('p.print-only.print-head', t('handover.printhead', { since: zoned(d.since), now: zoned(d.now), user: me ?? '' })),
    notesBlock(d),
    section('handover-groups', t('handover.open', { n: open.length }),
      d.groups.length ? h('div.groups#handover-open', ...d.groups.map((g) => h('div.group', { dataset: { category: g.category, commune: g.commune } },
        h('h4', h(`span.sev.sev-${g.worst}`, t(`severity.${g.worst}`)), ' ', tOr(`category.${g.category}`, g.category), ' — ', g.commune_name, h('span.muted', ` (${g.incidents.length})`),
          g.situation != null && h('span.muted.handover-situation', { dataset: { situation: g.situation } }, ` · ${t('handover.situation', { id: g.situation })}`)),
        table(`handover-group-${g.category}-${g.commune}`, ['severity', 'title', 'status', 'unit', 'opened'], g.incidents.map((i) =>
          h('tr', { dataset: { id: i.id }, on: { click: () => navigate(`#/incidents/${i.id}`) } },
            h('td', h(`span.sev.sev-${i.severity}`, t(`severity.${i.severity}`))),
            h('td', h('span.muted', `#${i.id} `), incidentTitle(i), i.escalated_at ? h('span.tag.overdue', ` ${t('incident.escalated')}`) : null),
            h('td', h(`span.status.st-${i.status}`, t(`status.${i.status}`))),
            h('td', i.unit ?? i.owner ?? '—'),
            h('td.num', zoned(i.opened_at)))))))) : null,
      t('handover.noopen')),
    section('handover-overdue', t('handover.overdue', { n: d.overdue_steps.length }),
      d.overdue_steps.length ? table('handover-overdue-table', ['incident', 'step', 'due'], d.overdue_steps.map((s) =>
        h('tr', h('td', h('a', { href: `#/incidents/${s.incident}` }, `#${s.incident}`), ' ', localTitle(s.title)), h('td', s.text), h('td.num', zoned(s.due_at))))) : null,
      t('handover.nooverdue')),
    section('handover-units', t('handover.units', { n: d.engaged_units.length }),
      d.engaged_units.length ? table('handover-units-table', ['unit', 'missions', 'since_at'], d.engaged_units.map((u) =>
        h('tr', h('td', u.name), h('td', u.missions.map((m) => `#${m}`).join(', ') || '—'), h('td.num', zoned(u.since))))) : null,
      t('handover.nounits')),
    section('handover-crises', t('handover.crises', { n: d.active_crises.length + d.active_events.length }),
      d.active_crises.length || d.active_events.length ? h('ul.plain',
        ...d.active_crises.map((c) => h('li', { dataset: { crisis: c.id } }, h('a', { href: `#/crisis/${c.id}` }, c.title), ' ',
          h('span.muted', t('handover.crisis_line', { level: c.level, at: zoned(c.opened_at) })))),
        ...d.active_events.map((e) => h('li', { dataset: { event: e.id } }, e.name, ' ',
          h('span.muted', t('handover.event_line', { from: zoned(e.starts_at), to: zoned(e.ends_at) }))))) : null,
      t('handover.nocrises')),
    section('handover-shelved', t('handover.shelved', { n: d.shelved.length }),
      d.shelved.length ? table('handover-shelved-table', ['incident', 'reason', 'actor', 'until'], d.shelved.map((s) =>
        h('tr', h('td', h('a', { href: `#/incidents/${s.incident}` }, `#${s.incident}`)), h('td', s.reason), h('td', who(s.by)), h('td.num', zoned(s.until))))) : null,
      t('handover.noshelved')),
    section('handover-log-block', t('handover.log', { n: d.log.length, since: zoned(d.since) }),
      d.log.length ? table('handover-log', ['at', 'incident', 'actor', 'action', 'detail'], d.log.map((e) =>
        h('tr', { dataset: { incident: e.incident, action: e.action } },
          h('td.num', zoned(e.at)),
          h('td', h('a', { href: `#/incidents/${e.incident}` }, `#${e.incident}`), ' ', localTitle(e.title)),
          h('td', who(e.actor)),
          h('td', actionLabel(e.action)),
          h('td.detail', e.message ? tMessage(e.message, {}, e.detail) : e.detail)))) : null,
      t('handover.nolog')),
    d.chatter_left_out > 0 && h('p.muted#handover-chatter', t('handover.chatter', { n: d.chatter_left_out })),
  ].filter((x) => x != null && x !== false));

}

function actionLabel(action) {
  const key = `handover.action.${action}`;
  const s = t(key);
  return s === key ? action : s;
}
