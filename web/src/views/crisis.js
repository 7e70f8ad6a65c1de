// Crisis mode. #/crisis: the active and closed crises and the form that activates one
// (kind, title, level, one commune, several or the whole territory). #/crisis/{id}: the
// crisis page — level, the safeguard plan (PCS) roles and their holders, the main courante
// (operators' entries and the incident changes the server appends), the board of its
// incidents, closing with a summary, and then the printable report. Follows the live
// stream's `crisis` events (and incident events of the crisis' communes).

import * as api from '../api.js';
import * as live from '../live.js';
import { navigate } from '../router.js';
import { h, clear, toast } from '../dom.js';
import { t, fmtTime, getLang, onLangChange } from '../i18n.js';

export const route = 'crisis';
export const navKey = 'nav.crisis';
export const permission = 'crisis.read';

const KINDS = ['flood', 'snow', 'fire', 'other'];
const LEVELS = [1, 2, 3];

let state = null;

export function mount(el, args) {
  const root = h('section.crisis-view');
  el.append(root);
  state = { root, id: null, list: null, detail: null, communes: null, error: null, report: null, inputs: {}, draft: { kind: 'flood', scope: 'one', level: 1 } };

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
  api.get('/territory').then((tt) => { if (state) { state.communes = tt.communes; paint(); } }).catch(() => {});
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
        h('span', { title: c.opened_by }, t('crisis.opened_at', { when: fmtTime(c.opened_at) })))));
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
        h('div.sub', `#${d.id} · ${t(`crisis.kind.${d.kind}`)} · ${scopeText(d.communes)} · ${t('crisis.opened_by', { when: fmtTime(d.opened_at), who: d.opened_by })}`)),
      h(`span.status.big.cs-${d.status}#crisis-status`, { dataset: { status: d.status } }, t(`crisis.status.${d.status}`))),
    manage && levelBar(d),
    h('div.crisis-grid',
      h('div.crisis-col', mainCourante(d, manage)),
      h('div.crisis-col', incidentBoard(d), roles(d, manage),
        d.status === 'active' ? (api.can('crisis.manage') && closeForm(d)) : closedBlock(d)))));
  const log = root.querySelector('#crisis-log');
  if (log) log.scrollTop = log.scrollHeight;
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
    h('time', fmtTime(e.at)),
    h('span.actor', e.actor.replace(/^user:/, '')),
    h(`span.kind-tag.k-${e.kind}`, t(`crisis.log.kind.${e.kind}`)),
    e.incident != null ? h('a.text', { href: `#/incidents/${e.incident}` }, e.text) : h('span.text', e.text))))
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
      h('td', h('a', { href: `#/incidents/${i.id}` }, i.title), h('div.row-sub', `${i.commune_name} · ${i.site_name}`)),
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
    h('p.muted', t('crisis.closed_by', { when: fmtTime(d.closed_at), who: d.closed_by ?? '' })),
    h('div.actions',
      h('button.primary#report-open', { type: 'button', on: { click: () => openReport(d.id) } }, t('crisis.report.open')),
      h('button#report-print', { type: 'button', disabled: !r?.html, on: { click: printReport } }, t('crisis.report.print'))),
    r?.error && h('p.error', t('error.generic', { message: r.error })),
    r?.html ? h('iframe.report-frame#report-frame', { title: t('crisis.report.title'), srcdoc: r.html })
      : h('p.muted', '…'));
}

/** The report: fetched here with the session cookie, shown inline and opened as a Blob. */
async function fetchReport(id) {
  const resp = await fetch(`/api/v1/crises/${id}/report?lang=${getLang()}`, {
    headers: { Accept: 'text/html' }, credentials: 'same-origin',
  });
  if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText}`);
  // The report (no script: shown inline or as a Blob it falls under the console's
  // Content-Security-Policy) ends with a print hint in the report's language; the console
  // shows its own Print button and the hint in the console's language.
  const html = await resp.text();
  return html.replace(/<p class="noprint">[\s\S]*?<\/p>/, `<p class="noprint">${t('crisis.report.print_hint')}</p>`);
}

async function loadReport() {
  if (!state?.id) return;
  const id = state.id;
  state.report = { html: null };
  try {
    const html = await fetchReport(id);
    if (state?.id === id) state.report = { html };
  } catch (e) {
    if (state?.id === id) state.report = { error: e.message };
  }
  paint();
}

async function openReport(id) {
  try {
    const html = state?.report?.html ?? (await fetchReport(id));
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
