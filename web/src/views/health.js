// The alarm-health panel of the overview (ISA-18.2 / EEMUA 191 figures of the caller's
// scope over the last 24 hours, from GET /api/v1/alarm-health): the worst 10-minute window
// against the flood threshold, the average against the target, standing, stale and
// chattering alarms. `mountHealth(el)` fills `el` and returns its cleanup.

import * as api from '../api.js';
import * as live from '../live.js';
import { h, clear } from '../dom.js';
import { t, getLang, onLangChange } from '../i18n.js';

// At most one reload per this many ms, however busy the stream is.
const THROTTLE_MS = 2000;

function locale() {
  return getLang() === 'fr' ? 'fr-FR' : 'en-GB';
}

function num(n, digits = 0) {
  if (n == null || !Number.isFinite(Number(n))) return '—';
  return new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
}

function time(iso) {
  if (!iso) return '—';
  return new Intl.DateTimeFormat(locale(), { day: '2-digit', month: '2-digit', hour: '2-digit', minute: '2-digit' }).format(new Date(iso));
}

function figure(key, value, text, opts = {}) {
  return h(`div.kpi.health-figure${opts.cls ? '.' + opts.cls : ''}`, { dataset: { health: key, value: value ?? '' } },
    h('div.kpi-value', text),
    h('div.kpi-label', t(`health.${key}`)),
    opts.sub && h('div.kpi-sub', opts.sub));
}

export function mountHealth(el) {
  const panel = h('section.alarm-health#alarm-health', { 'aria-live': 'polite' });
  el.append(panel);
  let data = null;
  let error = null;
  let alive = true;
  let timer = null;

  async function load() {
    try {
      const d = await api.get('/alarm-health');
      if (!alive) return;
      data = d;
      error = null;
    } catch (e) {
      if (!alive) return;
      error = e;
    }
    paint();
  }

  function later() {
    if (timer) return;
    timer = setTimeout(() => { timer = null; load(); }, THROTTLE_MS);
  }

  function paint() {
    const p = clear(panel);
    p.append(h('h2', t('health.title')));
    if (error && !data) { p.append(h('p.error', t('health.unavailable'))); return; }
    if (!data) { p.append(h('p.muted', '…')); return; }
    const d = data;
    const th = d.thresholds;
    const flood = d.peak_per_window > th.flood_per_window;
    p.dataset.flood = String(flood);
    p.dataset.situationsFlood = String(!!(d.situations && d.situations.peak_per_window > th.flood_per_window));
    const sit = d.situations;
    const sitFlood = sit && sit.peak_per_window > th.flood_per_window;
    p.append(
      // What the operator handles: situations (one per real event).
      sit && h('div.kpi-strip.health-strip.health-situations',
        figure('sit_peak', sit.peak_per_window, num(sit.peak_per_window), {
          cls: sitFlood ? 'alert' : (sit.peak_per_window > th.target_per_window ? 'warn' : ''),
          sub: [
            t('health.flood_threshold', { n: num(th.flood_per_window), m: num(th.window_minutes) }),
            sit.peak_at ? ` · ${t('health.peak_at', { at: time(sit.peak_at) })}` : '',
          ].join(''),
        }),
        figure('sit_average', sit.average_per_window, num(sit.average_per_window, 2), {
          cls: sit.average_per_window > th.target_per_window ? 'warn' : '',
          sub: t('health.target', { n: num(th.target_per_window), m: num(th.window_minutes) }),
        }),
        figure('sit_arrivals', sit.arrivals, num(sit.arrivals), {
          sub: t('health.sit_for_incidents', { n: num(d.arrivals) }),
        }),
        figure('sit_standing', sit.standing, num(sit.standing), { cls: sit.standing ? 'warn' : '' }),
      ),
      h('div.kpi-strip.health-strip',
        figure('peak', d.peak_per_window, num(d.peak_per_window), {
          cls: flood ? 'alert' : (d.peak_per_window > th.target_per_window ? 'warn' : ''),
          sub: [
            t('health.flood_threshold', { n: num(th.flood_per_window), m: num(th.window_minutes) }),
            d.peak_at ? ` · ${t('health.peak_at', { at: time(d.peak_at) })}` : '',
          ].join(''),
        }),
        figure('average', d.average_per_window, num(d.average_per_window, 2), {
          cls: d.average_per_window > th.target_per_window ? 'warn' : '',
          sub: t('health.target', { n: num(th.target_per_window), m: num(th.window_minutes) }),
        }),
        figure('arrivals', d.arrivals, num(d.arrivals), {
          sub: t('health.flood_windows', { n: num(d.flood_windows) }),
        }),
        figure('standing', d.standing, num(d.standing), { cls: d.standing ? 'warn' : '' }),
        figure('stale', d.stale, num(d.stale), {
          cls: d.stale ? 'alert' : '',
          sub: t('health.stale_after', { h: num(th.stale_after_hours) }),
        }),
        figure('chattering', d.chattering, num(d.chattering), {
          cls: d.chattering ? 'warn' : '',
          sub: t('health.chatter_rule', { n: num(th.chatter_arrivals), m: num(th.chatter_window_minutes) }),
        }),
        figure('shelved', d.shelved ?? 0, num(d.shelved ?? 0), { sub: t('health.shelved_sub') }),
      ),
      h('p.muted.health-note', (sit ? sitFlood : flood) ? t('health.flood') : t('health.ok')),
    );
  }

  const offs = [
    live.on('incidents', later),
    live.on('situations', later),
    live.on('resync', later),
    onLangChange(paint),
  ];
  const ticker = setInterval(load, 60000);
  paint();
  load();
  return () => {
    alive = false;
    offs.forEach((f) => f());
    clearInterval(ticker);
    if (timer) clearTimeout(timer);
  };
}
