// The federation panel of the overview (GET /api/v1/federation/links): each partner's
// link with its state, the messages queued for it, and the last exchange. Shown only when
// the deployment has agreements. `mountLinks(el)` fills `el` and returns its cleanup.

import * as api from '../api.js';
import { h, clear } from '../dom.js';
import { t, getLang, onLangChange } from '../i18n.js';

const EVERY_MS = 10000;

function time(ms) {
  if (!ms) return '—';
  const locale = getLang() === 'fr' ? 'fr-FR' : 'en-GB';
  return new Intl.DateTimeFormat(locale, { day: '2-digit', month: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date(ms));
}

function error(code) {
  if (!code) return '';
  if (code.startsWith('status_')) return t('links.error.status', { status: code.slice(7) });
  const known = ['unreachable', 'refused', 'unreadable'];
  return known.includes(code) ? t(`links.error.${code}`) : code;
}

export function mountLinks(el) {
  const panel = h('section.federation-links#federation-links', { 'aria-live': 'polite' });
  el.append(panel);
  let links = [];
  let alive = true;

  async function load() {
    try {
      const l = await api.get('/federation/links');
      if (!alive) return;
      links = Array.isArray(l) ? l : [];
    } catch {
      if (!alive) return;
    }
    paint();
  }

  function paint() {
    const p = clear(panel);
    p.hidden = links.length === 0;
    if (!links.length) return;
    p.append(
      h('h2', t('links.title')),
      h('table.links',
        h('thead', h('tr',
          h('th', t('links.col.partner')), h('th', t('links.col.state')),
          h('th', t('links.col.backlog')), h('th', t('links.col.last_ok')))),
        h('tbody', links.map((l) => h(`tr.link-${l.state}`, { dataset: { partner: l.partner, state: l.state, backlog: String(l.backlog) } },
          h('td', l.partner),
          h('td', t(`links.state.${l.state}`), l.error ? h('span.muted', ` — ${error(l.error)}`) : null),
          h('td', String(l.backlog)),
          h('td', time(l.last_ok)))))));
  }

  const timer = setInterval(load, EVERY_MS);
  const off = onLangChange(paint);
  load();
  return () => { alive = false; clearInterval(timer); off(); };
}
