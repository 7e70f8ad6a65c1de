// Crisis mode. #/crisis: the active and closed crises and the form that activates one
// (kind, title, level, one commune, several or the whole territory). #/crisis/{id}: the
// crisis page — level, the safeguard plan (PCS) roles and their holders, the main courante
// (operators' entries and the incident changes the server appends), the board of its
// incidents (those open at its activation and those that open or change since), its
// perimeter (a sketch of the communes at their positions), closing
// with a summary, and then the printable report, rendered here from the crisis in the
// reader's language, with labels and names, and times in the territory's time zone. Follows
// the live stream's `crisis` events (and incident events of the crisis' communes).

import * as api from '../api.js';
import * as live from '../live.js';
import { navigate } from '../router.js';
import { h, clear, toast } from '../dom.js';
import { t, tOr, getLang, onLangChange, tMessage, incidentTitle } from '../i18n.js';

export const route = 'crisis';
export const navKey = 'nav.crisis';
export const permission = 'crisis.read';

const KINDS = ['flood', 'snow', 'fire', 'other'];
const LEVELS = [1, 2, 3];

let state = null;

export function mount(el, args) {
  const root = h('section.crisis-view');
  el.append(root);
  state = { root, id: null, list: null, detail: null, communes: null, tz: null, error: null, report: null, inputs: {}, draft: { kind: 'flood', scope: 'one', level: 1 } };

  let timer = 0;
  const reloadSoon = () => { clearTimeout(timer); timer = setTimeout(reload, 150); };
  const offs = [
    live.on('crisis', (c) => {
      if (!state) return;
      if (state.list) {
        const i = state.list.findIndex((x) => x.id === c.id);
        if (i >= 0) state.list[i] = c;
        else state.list.unshift(c);
        if (state.id == null) paint();
      }
      if (state.id === c.id) reloadSoon();
    }),
    live.on('incidents', (ev) => {
      // An incident of an active crisis' scope: its board and log change.
      const d = state?.detail;
      if (!d || d.status !== 'active' || !ev.incident) return;
      if (!d.communes.length || d.communes.includes(ev.incident.commune)) reloadSoon();
    }),
    live.on('resync', () => reload()),
    onLangChange(() => { paint(); if (state?.report) loadReport(); }),
  ];
  api.get('/territory').then((tt) => {
    if (!state) return;
    state.communes = tt.communes;
    state.tz = tt.timezone ?? null;
    paint();
    if (state.report) loadReport();
  }).catch(() => {});
  update(args);
  return () => { offs.forEach((f) => f()); clearTimeout(timer); state = null; };
}

export function update(args) {
  if (!state) return;
  const id = Number(args?.[0]);
  state.id = Number.isFinite(id) && id > 0 ? id : null;
  state.detail = null;
  state.report = null;
  state.error = null;
  state.inputs = {};
  paint();
  reload();
}

let seq = 0;
async function reload() {
  if (!state) return;
  const mine = ++seq;
  const id = state.id;
  try {
    if (id == null) {
      const list = await api.get('/crises');
      if (!state || mine !== seq) return;
      state.list = list;
    } else {
      const d = await api.get(`/crises/${id}`);
      if (!state || mine !== seq || state.id !== id) return;
      const wasActive = state.detail?.status === 'active';
      state.detail = d;
      if (d.status === 'closed' && (wasActive || !state.report)) loadReport();
    }
    state.error = null;
  } catch (e) {
    if (!state || mine !== seq) return;
    state.error = e;
  }
  paint();
}

function communeName(id) {
  return state.communes?.find((c) => c.id === id)?.name ?? id;
}

function scopeText(communes) {
  return communes.length ? communes.map(communeName).join(', ') : t('crisis.scope.all');
}

/** Date and time in the reader's language and the territory's time zone (the browser's
 * when the territory declares none, or one this browser does not know). */
function fmtLocal(iso, withZone = false) {
  if (!iso) return '';
  const locale = getLang() === 'en' ? 'en-GB' : 'fr-FR';
  const opts = { dateStyle: 'short', timeStyle: 'medium' };
  let f;
  try {
    f = new Intl.DateTimeFormat(locale, state?.tz ? { ...opts, timeZone: state.tz } : opts);
  } catch {
    f = new Intl.DateTimeFormat(locale, opts);
  }
  const text = f.format(new Date(iso));
  return withZone ? `${text} (${f.resolvedOptions().timeZone})` : text;
}

/** Who did it, as people read it: an account's name, "System", "Rule x". */
function personName(actor) {
  if (!actor) return '';
  if (actor === 'system') return t('crisis.actor.system');
  if (actor.startsWith('rule:')) return t('crisis.actor.rule', { rule: actor.slice(5) });
  return actor.replace(/^user:(token:)?/, '');
}

function roleName(d, id) {
  const r = d.roles?.find((x) => x.role === id);
  return r ? (getLang() === 'en' ? r.name_en : r.name) : id;
}

/** A log line in the reader's language: the lines the server composes (opening, level,
 * role, closing, an incident attached or changed) are read back into their parts; an
 * operator's entry is shown as written. */
function logText(d, e) {
  if (e.message) return tMessage(e.message, { role: (id) => roleName(d, id), timeZone: state?.tz ?? undefined }, e.text);
  const x = e.text ?? '';
  let m;
  if (e.kind === 'incident') {
    const cut = x.lastIndexOf(' — ');
    if (cut < 0) return x;
    const [, action, detail] = x.slice(cut + 3).match(/^([a-z_]+)(?:: ([\s\S]*))?$/) ?? [];
    if (!action) return x;
    const label = tOr(`crisis.action.${action}`, tOr(`handover.action.${action}`, action));
    return `${x.slice(0, cut)} — ${label}${detail ? ` : ${detail}` : ''}`;
  }
  if (e.kind !== 'system') return x;
  if ((m = x.match(/^opened: (\w+) — ([\s\S]*) \(level (\d)\)$/))) {
    return t('crisis.text.opened', { kind: tOr(`crisis.kind.${m[1]}`, m[1]), title: m[2], level: m[3] });
  }
  if ((m = x.match(/^level (\d) → (\d)$/))) return t('crisis.text.level', { from: m[1], to: m[2] });
  if ((m = x.match(/^role (\S+) \([\s\S]*\): ([\s\S]*)$/))) {
    return m[2] === 'vacant' ? t('crisis.text.role_vacant', { role: roleName(d, m[1]) })
      : t('crisis.text.role', { role: roleName(d, m[1]), holder: m[2] });
  }
  if ((m = x.match(/^closed: ([\s\S]*)$/))) return t('crisis.text.closed', { summary: m[1] });
  return x;
}

function paint() {
  if (!state) return;
  // A live refresh must not take the operator's text or focus away.
  const focused = document.activeElement;
  const keep = focused?.id && state.root.contains(focused)
    ? { id: focused.id, start: focused.selectionStart, end: focused.selectionEnd } : null;
  const root = clear(state.root);
  delete root.dataset.id;
  paintView(root);
  for (const [id, value] of Object.entries(state.inputs)) {
    const el = document.getElementById(id);
    if (el && 'value' in el) el.value = value;
  }
  const again = keep && document.getElementById(keep.id);
  if (again) {
    again.focus();
    if (keep.start != null && again.setSelectionRange) again.setSelectionRange(keep.start, keep.end);
  }
}

/** Keeps what is typed in a text field across repaints. */
function draft(el) {
  el.addEventListener('input', () => { if (state) state.inputs[el.id] = el.value; });
  return el;
}

function paintView(root) {
  if (state.error) {
    root.append(h('p.error', state.error.status === 404 ? t('crisis.notfound') : t('error.generic', { message: state.error.message })),
      h('a', { href: '#/crisis' }, t('crisis.back')));
    return;
  }
  if (state.id == null) paintList(root);
  else paintDetail(root);
}

// — the list and the activation form —

function paintList(root) {
  const list = state.list;
  const active = list?.filter((c) => c.status === 'active') ?? [];
  const closed = list?.filter((c) => c.status !== 'active') ?? [];
  const section = (id, title, items, empty) => h(`section.crisis-list#${id}`,
    h('h2', `${title} (${items.length})`),
    !list ? h('p.muted', '…') : items.length ? h('ul.crises', ...items.map(crisisRow)) : h('p.muted', empty));
  root.append(h('div.crisis-home',
    h('div.crisis-lists',
      section('crises-active', t('crisis.active'), active, t('crisis.none_active')),
      section('crises-closed', t('crisis.closed'), closed, t('crisis.none_closed'))),
    api.can('crisis.manage') && activationForm()));
}

function crisisRow(c) {
  return h(`li.crisis-row.lvl-${c.level}.cs-${c.status}`, { dataset: { id: c.id, status: c.status, level: c.level } },
    h('a.crisis-link', { href: `#/crisis/${c.id}` },
      h(`span.level.lvl-${c.level}`, t('crisis.level_n', { n: c.level })),
      h('div.row-main',
        h('div.row-title', c.title),
        h('div.row-sub', `${t(`crisis.kind.${c.kind}`)} · ${scopeText(c.communes)}`)),
      h('div.row-meta',
        h(`span.status.cs-${c.status}`, t(`crisis.status.${c.status}`)),
        h('span', t('crisis.incident_count', { n: c.incident_count })),
        h('span', { title: personName(c.opened_by) }, t('crisis.opened_at', { when: fmtLocal(c.opened_at) })))));
}

function activationForm() {
  const d = state.draft;
  const communes = state.communes ?? [];
  const labelled = (key, control) => h('label', h('span', t(key)), control);
  const kind = h('select#crisis-kind', { on: { change: (e) => (d.kind = e.target.value) } },
    ...KINDS.map((k) => h('option', { value: k, selected: d.kind === k }, t(`crisis.kind.${k}`))));
  const title = draft(h('input#crisis-title', { required: true, maxlength: 200, value: d.title ?? '', placeholder: t('crisis.title_placeholder'),
    on: { input: (e) => (d.title = e.target.value) } }));
  const level = h('select#crisis-level', { on: { change: (e) => (d.level = Number(e.target.value)) } },
    ...LEVELS.map((n) => h('option', { value: n, selected: d.level === n }, `${n} — ${t(`crisis.level_desc.${n}`)}`)));
  const one = h('select#crisis-commune', { on: { change: (e) => (d.commune = e.target.value) } },
    h('option', { value: '' }, t('crisis.choose_commune')),
    ...communes.map((c) => h('option', { value: c.id, selected: d.commune === c.id }, c.name)));
  d.several ??= new Set();
  const several = h('div.commune-checks#crisis-communes', ...communes.map((c) => h('label.check',
    h('input', { type: 'checkbox', value: c.id, checked: d.several.has(c.id),
      on: { change: (e) => (e.target.checked ? d.several.add(c.id) : d.several.delete(c.id)) } }), c.name)));
  const scopePanes = { one: h('div.scope-pane', one), several: h('div.scope-pane', several), all: h('div.scope-pane.muted', t('crisis.scope.all_hint')) };
  const showScope = () => { for (const [k, p] of Object.entries(scopePanes)) p.hidden = k !== d.scope; };
  const scopeRadio = (v) => h('label.check', h('input', { type: 'radio', name: 'crisis-scope', value: v, checked: d.scope === v,
    on: { change: () => { d.scope = v; showScope(); } } }), t(`crisis.scope.${v}`));
  showScope();
  const err = h('p.error#crisis-form-error', { role: 'alert' });
  const submit = h('button.primary#crisis-activate', { type: 'submit' }, t('crisis.activate'));
  return h('form.crisis-form.block#crisis-form', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        err.textContent = '';
        const text = (d.title ?? '').trim();
        let scope = [];
        if (d.scope === 'one') scope = d.commune ? [d.commune] : null;
        if (d.scope === 'several') scope = d.several.size ? [...d.several] : null;
        if (!text) { err.textContent = t('crisis.need_title'); title.focus(); return; }
        if (!scope) { err.textContent = t('crisis.need_commune'); return; }
        submit.disabled = true;
        try {
          const c = await api.post('/crises', { kind: d.kind, title: text, communes: scope, level: d.level });
          state.draft = { kind: 'flood', scope: 'one', level: 1 };
          toast(t('crisis.activated', { title: c.title }));
          navigate(`#/crisis/${c.id}`);
        } catch (x) {
          err.textContent = t('error.generic', { message: x.message });
          submit.disabled = false;
        }
      },
    },
  },
  h('h2', t('crisis.activate_title')),
  labelled('crisis.kind', kind),
  labelled('crisis.title', title),
  labelled('crisis.level', level),
  h('fieldset.scope', h('legend', t('crisis.scope')), h('div.scope-choice', scopeRadio('one'), scopeRadio('several'), scopeRadio('all')),
    scopePanes.one, scopePanes.several, scopePanes.all),
  err, submit);
}

// — the crisis page —

function paintDetail(root) {
  const d = state.detail;
  if (!d) { root.append(h('p.muted', '…')); return; }
  const manage = api.can('crisis.manage') && d.status === 'active';
  root.dataset.id = d.id;
  // (root.append, unlike h(), writes `false` as text: the optional parts go through h.)
  root.append(h('div.crisis-page',
    h('header.crisis-head',
      h('a.back', { href: '#/crisis', title: t('crisis.back') }, '←'),
      h(`span.level.big.lvl-${d.level}#crisis-level-badge`, { dataset: { level: d.level } }, t('crisis.level_n', { n: d.level })),
      h('div.crisis-title',
        h('h2#crisis-heading', d.title),
        h('div.sub', `#${d.id} · ${t(`crisis.kind.${d.kind}`)} · ${scopeText(d.communes)} · ${t('crisis.opened_by', { when: fmtLocal(d.opened_at), who: personName(d.opened_by) })}`)),
      h(`span.status.big.cs-${d.status}#crisis-status`, { dataset: { status: d.status } }, t(`crisis.status.${d.status}`))),
    manage && levelBar(d),
    h('div.crisis-grid',
      h('div.crisis-col', mainCourante(d, manage)),
      h('div.crisis-col', perimeter(d), incidentBoard(d), roles(d, manage),
        d.status === 'active' ? (api.can('crisis.manage') && closeForm(d)) : closedBlock(d)))));
  const log = root.querySelector('#crisis-log');
  if (log) log.scrollTop = log.scrollHeight;
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

/** The crisis perimeter: the territory's communes at their positions, those of the crisis
 * filled and named (every commune for a crisis over the whole territory). */
function perimeter(d) {
  const all = state.communes ?? [];
  if (!all.length) return h('section.block#crisis-perimeter', h('h3', t('crisis.perimeter')), h('p.muted', '…'));
  const inside = (c) => !d.communes.length || d.communes.includes(c.id);
  const lat0 = all.reduce((a, c) => a + c.position[1], 0) / all.length;
  const k = Math.cos((lat0 * Math.PI) / 180);
  const pts = all.map((c) => ({ c, x: c.position[0] * k, y: -c.position[1] }));
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 0.01);
  const pad = span * 0.12;
  const r = span * 0.025;
  const box = [Math.min(...xs) - pad, Math.min(...ys) - pad, Math.max(...xs) - Math.min(...xs) + 2 * pad, Math.max(...ys) - Math.min(...ys) + 2 * pad];
  const font = span * 0.045;
  const map = svg('svg', { viewBox: box.join(' '), role: 'img', 'aria-label': t('crisis.perimeter'), width: '100%', height: '220', preserveAspectRatio: 'xMidYMid meet' },
    ...pts.sort((a, b) => inside(a.c) - inside(b.c)).map(({ c, x, y }) => {
      const inPerimeter = inside(c);
      return svg('g', { 'data-id': c.id, class: inPerimeter ? 'in' : 'out' },
        svg('title', {}, c.name),
        svg('circle', { cx: x, cy: y, r: inPerimeter ? r * 1.4 : r, fill: inPerimeter ? '#d9480f' : '#adb5bd', 'fill-opacity': inPerimeter ? 0.8 : 0.5, stroke: '#fff', 'stroke-width': r * 0.2 }),
        inPerimeter && d.communes.length ? svg('text', { x: x + r * 1.8, y: y + font * 0.35, 'font-size': font, fill: 'currentColor' }, c.name) : '');
    }));
  return h('section.block#crisis-perimeter', h('h3', t('crisis.perimeter')), map,
    h('p.muted', d.communes.length ? t('crisis.perimeter_n', { n: d.communes.length, total: all.length }) : t('crisis.scope.all_hint')));
}

function levelBar(d) {
  return h('div.actions.level-bar#crisis-levels', h('span.muted', t('crisis.change_level')),
    ...LEVELS.map((n) => h(`button.level-btn.lvl-${n}`, {
      type: 'button', dataset: { level: n }, disabled: n === d.level, 'aria-pressed': String(n === d.level),
      on: { click: () => send(d, 'level', { level: n }) },
    }, `${n} — ${t(`crisis.level_desc.${n}`)}`)));
}

async function send(d, what, body) {
  try {
    const updated = await api.post(`/crises/${d.id}/${what}`, body);
    if (state?.id === d.id) { state.detail = updated; paint(); }
    return updated;
  } catch (e) {
    toast(t('error.generic', { message: e.message }), 'error');
    return null;
  }
}

function mainCourante(d, manage) {
  const entries = d.log ?? [];
  const list = entries.length ? h('ol.crisis-log#crisis-log', ...entries.map((e) => h(`li.k-${e.kind}`, { dataset: { kind: e.kind, incident: e.incident ?? '' } },
    h('time', { datetime: e.at }, fmtLocal(e.at)),
    h('span.actor', personName(e.actor)),
    h(`span.kind-tag.k-${e.kind}`, t(`crisis.log.kind.${e.kind}`)),
    e.incident != null ? h('a.text', { href: `#/incidents/${e.incident}` }, logText(d, e)) : h('span.text', logText(d, e)))))
    : h('p.muted#crisis-log', t('crisis.log.empty'));
  let box = null;
  if (manage) {
    const ta = draft(h('textarea#crisis-log-text', { rows: 2, placeholder: t('crisis.log.placeholder') }));
    const btn = h('button#crisis-log-submit', { type: 'submit' }, t('crisis.log.submit'));
    box = h('form.comment#crisis-log-form', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          const text = ta.value.trim();
          if (!text) return;
          btn.disabled = true;
          delete state.inputs['crisis-log-text'];
          const ok = await send(d, 'log', { text });
          if (ok) document.getElementById('crisis-log-text')?.focus();
          else { btn.disabled = false; if (state) state.inputs['crisis-log-text'] = text; }
        },
      },
    }, ta, btn);
    ta.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) box.requestSubmit(); });
  }
  return h('section.block.courante', h('h3', t('crisis.log.title', { n: entries.length })), list, box);
}

function incidentBoard(d) {
  const rows = [...(d.incidents ?? [])].sort(live.compareIncidents);
  return h('section.block#crisis-incidents', h('h3', t('crisis.incidents', { n: rows.length })),
    rows.length ? h('table.board', h('thead', h('tr', h('th', '#'), h('th', t('crisis.inc.title')), h('th', t('crisis.inc.severity')),
      h('th', t('crisis.inc.status')), h('th', t('crisis.inc.unit')))),
    h('tbody', ...rows.map((i) => h(`tr.row-${i.severity}`, { dataset: { id: i.id, status: i.status } },
      h('td', h('a', { href: `#/incidents/${i.id}` }, `#${i.id}`)),
      h('td', h('a', { href: `#/incidents/${i.id}` }, incidentTitle(i)), h('div.row-sub', `${i.commune_name} · ${i.site_name}`)),
      h('td', h(`span.sev.sev-${i.severity}`, t(`severity.${i.severity}`))),
      h('td', h(`span.status.st-${i.status}`, t(`status.${i.status}`))),
      h('td.unit', i.unit ?? i.owner ?? '—')))))
      : h('p.muted', t('crisis.no_incident')));
}

function roles(d, manage) {
  const en = getLang() === 'en';
  return h('section.block#crisis-roles', h('h3', t('crisis.roles')),
    h('table.board.roles', h('tbody', ...d.roles.map((r) => {
      const input = manage && draft(h('input.holder-input', { id: `role-${r.role}`, value: r.holder ?? '', placeholder: t('crisis.holder_placeholder'), 'aria-label': en ? r.name_en : r.name }));
      const save = () => {
        const holder = input.value.trim();
        delete state.inputs[input.id];
        if (holder !== (r.holder ?? '')) send(d, 'roles', { role: r.role, holder: holder || null });
      };
      if (input) input.addEventListener('keydown', (e) => { if (e.key === 'Enter') save(); });
      return h('tr', { dataset: { role: r.role } },
        h('th', en ? r.name_en : r.name),
        h('td.holder', manage
          ? h('div.inline', input, h('button.assign-role', { type: 'button', on: { click: save } }, t('crisis.assign')))
          : (r.holder ?? h('span.muted', t('crisis.vacant')))));
    }))));
}

function closeForm(d) {
  const ta = draft(h('textarea#crisis-summary', { rows: 3, placeholder: t('crisis.summary_placeholder') }));
  const btn = h('button.danger#crisis-close', { type: 'submit' }, t('crisis.close'));
  // Two steps rather than a native dialog: the first click arms, the second closes.
  const cancel = h('button.ghost#crisis-close-cancel', { type: 'button', hidden: true,
    on: { click: () => { delete btn.dataset.armed; btn.textContent = t('crisis.close'); cancel.hidden = true; } } }, t('crisis.cancel'));
  return h('form.block.crisis-close#crisis-close-form', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        const summary = ta.value.trim();
        if (!summary) { toast(t('crisis.need_summary'), 'error'); ta.focus(); return; }
        if (!btn.dataset.armed) {
          btn.dataset.armed = 'true';
          btn.textContent = t('crisis.close_confirm');
          cancel.hidden = false;
          return;
        }
        btn.disabled = true;
        delete state.inputs['crisis-summary'];
        const closed = await send(d, 'close', { summary });
        if (closed) loadReport();
        else btn.disabled = false;
      },
    },
  }, h('h3', t('crisis.close_title')), ta, h('div.actions', btn, cancel));
}

function closedBlock(d) {
  const r = state.report;
  return h('section.block#crisis-report',
    h('h3', t('crisis.summary')),
    h('p.summary#crisis-summary-text', d.summary_text || '—'),
    h('p.muted', t('crisis.closed_by', { when: fmtLocal(d.closed_at), who: personName(d.closed_by) })),
    h('div.actions',
      h('button.primary#report-open', { type: 'button', on: { click: () => openReport(d.id) } }, t('crisis.report.open')),
      h('button#report-print', { type: 'button', disabled: !r?.html, on: { click: printReport } }, t('crisis.report.print'))),
    r?.error && h('p.error', t('error.generic', { message: r.error })),
    r?.html ? h('iframe.report-frame#report-frame', { title: t('crisis.report.title'), srcdoc: r.html })
      : h('p.muted', '…'));
}

const REPORT_CSS = 'body{font-family:system-ui,sans-serif;margin:2rem;color:#111;max-width:60rem}'
  + 'h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;border-bottom:2px solid #333;margin-top:1.6rem}'
  + 'table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid #999;padding:.25rem .4rem;text-align:left;vertical-align:top}'
  + 'th{background:#eee}.meta td:first-child{font-weight:bold;width:14rem}.k-entry{background:#fffbe6}.k-system{background:#eef4ff}'
  + '.muted{color:#555;font-size:.85rem}'
  + '@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}.noprint{display:none}@page{size:A4;margin:15mm}}';

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** The printable report of a crisis, from what the server answered for this reader (the
 * incidents, and log lines, of its visibility only): a self-contained page without script. */
export function reportHtml(d, now = new Date().toISOString()) {
  const title = `${t('crisis.report.title')} ${d.id} — ${d.title}`;
  const row = (cells, tag = 'td', cls = '') => `<tr${cls ? ` class="${cls}"` : ''}>${cells.map((c) => `<${tag}>${esc(c)}</${tag}>`).join('')}</tr>`;
  const meta = [
    [t('crisis.kind'), t(`crisis.kind.${d.kind}`)],
    [t('crisis.scope'), scopeText(d.communes)],
    [t('crisis.level'), `${d.level} — ${t(`crisis.level_desc.${d.level}`)}`],
    [t('crisis.report.status'), t(`crisis.status.${d.status}`)],
    [t('crisis.report.opened_at'), fmtLocal(d.opened_at)],
    [t('crisis.report.opened_by'), personName(d.opened_by)],
    [t('crisis.report.closed_at'), fmtLocal(d.closed_at)],
    [t('crisis.report.closed_by'), personName(d.closed_by)],
  ];
  const logTable = (heading, keep) => `<h2>${esc(heading)}</h2><table>${row([t('crisis.report.time'), t('crisis.report.author'), t('crisis.report.entry')], 'th')}`
    + (d.log ?? []).filter((e) => keep(e.kind)).map((e) => row([fmtLocal(e.at), personName(e.actor), logText(d, e)], 'td', `k-${esc(e.kind)}`)).join('')
    + '</table>';
  const incidents = [...(d.incidents ?? [])].sort((a, b) => a.id - b.id);
  return `<!DOCTYPE html><html lang="${getLang()}"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${REPORT_CSS}</style></head><body>`
    + `<h1>${esc(title)}</h1>`
    + `<p class="muted">${esc(t('crisis.report.printed', { when: fmtLocal(now, true) }))}</p>`
    + `<table class="meta">${meta.map((r) => row(r)).join('')}</table>`
    + `<h2>${esc(t('crisis.summary'))}</h2><p>${esc(d.summary_text || t('crisis.report.none'))}</p>`
    + `<h2>${esc(t('crisis.roles'))}</h2><table>${row([t('crisis.report.role'), t('crisis.report.holder')], 'th')}`
    + d.roles.map((r) => row([getLang() === 'en' ? r.name_en : r.name, r.holder ?? t('crisis.vacant')])).join('') + '</table>'
    + logTable(t('crisis.report.timeline'), (k) => k !== 'incident')
    + logTable(t('crisis.report.incident_actions'), (k) => k === 'incident')
    + `<h2>${esc(t('crisis.report.incidents'))}</h2><table>`
    + row(['#', t('crisis.inc.title'), t('crisis.inc.severity'), t('crisis.inc.status'), t('crisis.report.commune'), t('crisis.inc.unit'), t('crisis.report.opened'), t('crisis.report.resolved')], 'th')
    + incidents.map((i) => row([`#${i.id}`, incidentTitle(i), t(`severity.${i.severity}`), t(`status.${i.status}`), i.commune_name ?? communeName(i.commune),
      i.unit ?? i.owner ?? '', fmtLocal(i.opened_at), fmtLocal(i.resolved_at)])).join('')
    + '</table>'
    + (d.hidden_incidents > 0 ? `<p class="muted">${esc(t('crisis.report.hidden', { n: d.hidden_incidents }))}</p>` : '')
    + `<p class="noprint">${esc(t('crisis.report.print_hint'))}</p></body></html>`;
}

async function loadReport() {
  if (!state?.id) return;
  const id = state.id;
  try {
    const d = state.detail?.id === id ? state.detail : await api.get(`/crises/${id}`);
    if (state?.id === id) state.report = { html: reportHtml(d) };
  } catch (e) {
    if (state?.id === id) state.report = { error: e.message };
  }
  paint();
}

async function openReport(id) {
  try {
    const html = state?.report?.html ?? reportHtml(await api.get(`/crises/${id}`));
    const url = URL.createObjectURL(new Blob([html], { type: 'text/html;charset=utf-8' }));
    const w = window.open(url, '_blank');
    if (!w) toast(t('crisis.report.blocked'), 'error');
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    toast(t('error.generic', { message: e.message }), 'error');
  }
}

function printReport() {
  document.getElementById('report-frame')?.contentWindow?.print();
}
