// Data protection (the DPO's view, permission `privacy.read`): the register of processing
// activities (summary, link to the printable HTML), the access log (audit entries about
// personal data, newest first, paged), the retention status and the legal holds (routes of
// the retention work: a 404 shows "not available"), and the public notices of the devices
// observing public space, by commune. Route: #/privacy.

import * as api from '../api.js';
import { h, clear, toast } from '../dom.js';
import { t, fmtTime, onLangChange, inLang, fmtNumber, tOr, actorName } from '../i18n.js';

export const route = 'privacy';
export const navKey = 'nav.privacy';
/** The tab is shown only to callers holding this permission. */
export const permission = 'privacy.read';

const PAGE = 50;

let state = null;

export function mount(el) {
  const sections = {
    register: h('section.privacy-block#privacy-register'),
    log: h('section.privacy-block#privacy-access-log'),
    retention: h('section.privacy-block#privacy-retention'),
    holds: h('section.privacy-block#privacy-holds'),
    subject: h('section.privacy-block#privacy-subject'),
    notices: h('section.privacy-block#privacy-notices'),
  };
  el.append(h('div.privacy-view#privacy', h('h2.privacy-title', t('privacy.title')),
    sections.register, sections.log, sections.retention, sections.holds,
    api.can('privacy.subject') && sections.subject, sections.notices));
  state = { el, sections, register: null, log: [], next: null, retention: undefined, holds: undefined, notices: null, subject: null };
  const off = onLangChange(() => {
    el.querySelector('.privacy-title').textContent = t('privacy.title');
    paintAll();
  });
  paintAll();
  loadRegister();
  loadLog();
  loadOptional('/privacy/retention', 'retention');
  loadOptional('/privacy/holds', 'holds');
  loadNotices();
  return () => { off(); state = null; };
}

function paintAll() {
  paintRegister();
  paintLog();
  paintRetention();
  paintHolds();
  paintSubject();
  paintNotices();
}

function failed(e) {
  toast(api.errorText(e), 'error');
}

async function loadRegister() {
  try {
    const r = await api.get('/privacy/register');
    if (!state) return;
    state.register = r;
    paintRegister();
  } catch (e) { failed(e); }
}

async function loadLog(before) {
  try {
    const q = before ? `?limit=${PAGE}&before=${encodeURIComponent(before)}` : `?limit=${PAGE}`;
    const r = await api.get(`/privacy/access-log${q}`);
    if (!state) return;
    state.log = before ? state.log.concat(r.entries) : r.entries;
    state.next = r.next_before ?? null;
    paintLog();
  } catch (e) {
    if (state) { state.log = null; paintLog(e); }
  }
}

/** An optional privacy route: 404 means "not in this version". */
async function loadOptional(path, key) {
  try {
    const r = await api.get(path);
    if (state) state[key] = r;
  } catch (e) {
    if (state) state[key] = e.status === 404 ? null : { error: e.message };
  }
  if (!state) return;
  if (key === 'retention') paintRetention(); else paintHolds();
}

async function loadNotices() {
  try {
    const r = await api.get('/privacy/notices');
    if (!state) return;
    state.notices = r;
    paintNotices();
  } catch (e) { failed(e); }
}

function head(title, ...extra) {
  return h('div.privacy-head', h('h3', title), ...extra);
}

function table(cls, headers, rows) {
  return h(`table.data-table${cls}`,
    h('thead', h('tr', headers.map((x) => h('th', x)))),
    h('tbody', rows));
}

function paintRegister() {
  const el = clear(state.sections.register);
  const r = state.register;
  el.append(head(t('privacy.register'),
    h('a.button-link#privacy-register-html', { href: '/api/v1/privacy/register.html', target: '_blank', rel: 'noopener' }, t('privacy.register.open')),
    h('a.button-link', { href: '/api/v1/privacy/register', target: '_blank', rel: 'noopener' }, 'JSON')));
  if (!r) { el.append(h('p.muted', t('privacy.loading'))); return; }
  const s = r.summary;
  el.append(h('p#privacy-register-summary', { dataset: { complete: String(s.complete), activities: String(s.activities) } },
    h('strong', s.complete ? t('privacy.register.complete') : t('privacy.register.incomplete')), ' — ',
    t('privacy.register.summary', {
      activities: s.activities, device: s.personal_device_fields, pseudo: s.pseudonymised_fields,
      records: s.personal_record_fields, aggregates: s.aggregated_fields, public: s.public_space_devices,
    })));
  el.append(h('p.muted', t('privacy.register.controller', { name: r.controller.name, dpo: r.controller.dpo_contact })));
  if (r.problems.length) {
    el.append(h('ul.privacy-problems', r.problems.map((p) => h('li', h('code', p.at), ' : ', p.message))));
  }
  const retention = (a) => a.retention.map((x) => `${t(`privacy.category.${x.category}`)} ${fmtDays(x.seconds)}`).join(' · ');
  el.append(table('#privacy-activities', [t('privacy.col.activity'), t('privacy.col.basis'), t('privacy.col.subjects'),
    t('privacy.col.data'), t('privacy.col.retention')],
  r.activities.map((a) => h('tr', { dataset: { activity: a.id } },
    h('td', h('strong', a.name), h('div.muted', a.purposes.join(' · '))),
    h('td', a.legal_basis.article),
    h('td', a.data_subjects.join(' · ')),
    h('td', a.data.filter((d) => d.category !== 'technical' || d.protection === 'aggregated')
      .map((d) => h('div', h('code', d.field), ' ', h('span.muted', t(`privacy.protection.${d.protection}`))))),
    h('td.num', retention(a))))));
}

function fmtDays(seconds) {
  const d = seconds / 86400;
  return Number.isInteger(d) ? t('privacy.days', { n: d }) : t('privacy.hours', { n: Math.round(seconds / 3600) });
}

function detailText(d) {
  if (d == null) return '';
  if (typeof d !== 'object') return String(d);
  const value = (v) => (v === null ? '—' : typeof v === 'boolean' ? t(`msg.bool.${v}`)
    : typeof v === 'number' ? fmtNumber(v) : typeof v === 'object' ? JSON.stringify(v) : v);
  return Object.entries(d).map(([k, v]) => `${tOr(`privacy.detail.${k}`, k)} : ${value(v)}`).join(' · ');
}

function paintLog(err) {
  const el = clear(state.sections.log);
  el.append(head(t('privacy.log')), h('p.muted.hint', t('privacy.log.hint')));
  if (state.log === null) {
    el.append(h('p.error', t('privacy.unavailable', { message: err?.message ?? '' })));
    return;
  }
  if (!state.log.length) { el.append(h('p.muted#privacy-log-empty', t('privacy.log.empty'))); return; }
  // A cluster's log holds one signed chain per node: say which one each entry is in.
  const nodes = state.log.some((e) => e.node);
  el.append(table('#privacy-log', [t('privacy.col.when'), ...(nodes ? [t('privacy.col.node')] : []),
    t('privacy.col.who'), t('privacy.col.action'), t('privacy.col.target'), t('privacy.col.outcome'),
    t('privacy.col.detail')],
  state.log.map((e) => h('tr', { dataset: { seq: String(e.seq), outcome: e.outcome } },
    h('td.num', fmtTime(e.at)), ...(nodes ? [h('td', e.node ?? '')] : []), h('td', actorName(e.actor)),
    h('td', h('code', e.action)), h('td', e.target ?? ''),
    h('td', { class: `outcome-${e.outcome}` }, t(`privacy.outcome.${e.outcome}`)), h('td.detail', detailText(e.detail))))));
  if (state.next) {
    el.append(h('button#privacy-log-more', { type: 'button', on: { click: () => loadLog(state.next) } }, t('privacy.log.more')));
  }
}

function notAvailable(el, v) {
  if (v === undefined) { el.append(h('p.muted', t('privacy.loading'))); return true; }
  if (v === null) { el.append(h('p.muted.not-available', t('privacy.not_available'))); return true; }
  if (v.error) { el.append(h('p.error', t('privacy.unavailable', { message: v.error }))); return true; }
  return false;
}

function paintRetention() {
  const el = clear(state.sections.retention);
  el.append(head(t('privacy.retention')));
  const r = state.retention;
  if (notAvailable(el, r)) return;
  const rows = [];
  for (const c of r.categories ?? []) {
    for (const s of c.stores ?? []) {
      rows.push(h('tr', h('td', t(`privacy.category.${c.category}`)), h('td.num', t('privacy.days', { n: c.retention_days })),
        h('td', s.store), h('td.num', String(s.rows)), h('td.num', s.oldest ? fmtTime(s.oldest) : '—')));
    }
  }
  el.append(table('#privacy-retention-table', [t('privacy.col.category'), t('privacy.col.retention'), t('privacy.col.store'),
    t('privacy.col.rows'), t('privacy.col.oldest')], rows));
  const last = r.last_purge;
  el.append(h('p.muted', last
    ? t('privacy.retention.last', { at: fmtTime(last.at), removed: detailText(last.removed) })
    : t('privacy.retention.never'), ' ',
  r.next_purge_at ? t('privacy.retention.next', { at: fmtTime(r.next_purge_at) }) : ''));
}

function paintHolds() {
  const el = clear(state.sections.holds);
  el.append(head(t('privacy.holds')));
  const v = state.holds;
  if (notAvailable(el, v)) return;
  if (!v.length) { el.append(h('p.muted', t('privacy.holds.none'))); return; }
  el.append(table('#privacy-holds-table', [t('privacy.col.incident'), t('privacy.col.justification'), t('privacy.col.until'),
    t('privacy.col.by'), t('privacy.col.when')],
  v.map((x) => h('tr', h('td', h('a', { href: `#/incidents/${x.incident_id}` }, `#${x.incident_id}`)),
    h('td', x.justification), h('td.num', fmtTime(x.until)), h('td', x.set_by), h('td.num', fmtTime(x.set_at))))));
}

const IDENTIFIERS = ['licence_plate', 'badge', 'phone_number', 'email', 'mac_address', 'name', 'other'];

// A person's access request (POST /privacy/subject/search, permission privacy.subject):
// the value typed here is sent once and never shown back; the answer lists what carries
// its pseudonym. Erasure is done through the API (docs/privacy.md, section 9).
function paintSubject() {
  const el = clear(state.sections.subject);
  el.append(head(t('privacy.subject')), h('p.muted.hint', t('privacy.subject.hint')));
  const kind = h('select#subject-identifier', IDENTIFIERS.map((i) => h('option', { value: i }, t(`privacy.identifier.${i}`))));
  const value = h('input#subject-value', { type: 'text', required: true, autocomplete: 'off', maxLength: 200, placeholder: t('privacy.subject.value') });
  const out = h('div#subject-result');
  el.append(h('form.draw-tools', { on: { submit: async (e) => {
    e.preventDefault();
    clear(out).append(h('p.muted', t('privacy.loading')));
    try {
      const r = await api.post('/privacy/subject/search', { identifier: kind.value, value: value.value });
      value.value = '';
      clear(out).append(h('pre.subject-json', JSON.stringify(r, null, 2)));
    } catch (err) {
      clear(out).append(h('p.error', err.status === 404 && err.code === 'not_found'
        ? t('privacy.not_available') : api.errorText(err)));
    }
  } } }, kind, value, h('button.primary', { type: 'submit' }, t('privacy.subject.search'))), out);
}

function paintNotices() {
  const el = clear(state.sections.notices);
  el.append(head(t('privacy.notices')), h('p.muted.hint', t('privacy.notices.hint')));
  const list = state.notices;
  if (!list) { el.append(h('p.muted', t('privacy.loading'))); return; }
  const byCommune = new Map();
  for (const n of list) {
    if (!byCommune.has(n.commune)) byCommune.set(n.commune, []);
    byCommune.get(n.commune).push(n);
  }
  el.append(h('p#privacy-notices-count', { dataset: { count: String(list.length) } }, t('privacy.notices.count', { n: list.length, communes: byCommune.size })));
  for (const [commune, items] of byCommune) {
    el.append(h('details.notice-commune',
      h('summary', `${commune} (${items.length})`),
      h('ul.notice-list', items.map((n) => h('li', h('a', { href: n.url, target: '_blank', rel: 'noopener' }, n.device),
        ' — ', inLang(n.kind_label, n.kind_label_en), ', ', n.site)))));
  }
}
