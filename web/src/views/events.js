// Event mode: the events (scheduled, active, ended, cancelled) with their live aggregate
// occupancy against the capacity thresholds, an event's page (perimeter on a small map,
// temporary rules, cancellation) and the form that declares one, its perimeter drawn on
// the map or imported from a GeoJSON file. Routes: #/events, #/events/new, #/events/{id}.

import * as maplibregl from '/console/vendor/maplibre-gl.mjs';
import * as api from '../api.js';
import * as live from '../live.js';
import { navigate } from '../router.js';
import { h, clear, toast } from '../dom.js';
import { t, fmtTime, onLangChange } from '../i18n.js';
import { peopleCountText } from '../privacy.js';

export const route = 'events';
export const navKey = 'nav.events';
export const permission = 'event.read';

const STATUS_ORDER = { active: 0, scheduled: 1, ended: 2, cancelled: 3 };
const PERIMETER_COLOR = '#f5b942';
// Test hooks (read by web/e2e/events.mjs).
const probe = (window.__beffroi ??= {});

let state = null;

export function mount(el, args) {
  const list = h('ul.event-list#event-list');
  const countEl = h('span.count#event-count');
  const side = h('section.event-pane#event-pane');
  const newButton = api.can('event.manage') &&
    h('a.button.primary#event-new', { href: '#/events/new' });
  el.append(h('section.events-view',
    h('div.event-list-pane', h('div.pane-head', h('h2#events-title'), countEl), newButton && h('div.pane-tools', newButton), list),
    side));
  state = { list, countEl, side, newButton, events: new Map(), communes: null, page: null, cleanupPage: null };

  const offs = [
    live.on('event', (ev) => {
      if (!state) return;
      state.events.set(ev.id, ev);
      paintList();
      if (state.page?.kind === 'event' && state.page.id === ev.id) paintEvent(ev, true);
    }),
    live.on('resync', () => loadEvents()),
    onLangChange(() => { paintList(); if (state.page?.kind !== 'form') update(state.args); }),
  ];
  // Statuses move on with the clock (scheduled → active → ended) without a change to
  // announce: re-read the list now and then.
  const ticker = setInterval(() => loadEvents(), 60000);
  paintList();
  loadEvents();
  update(args);
  return () => {
    offs.forEach((f) => f());
    clearInterval(ticker);
    if (state?.cleanupPage) state.cleanupPage();
    state = null;
  };
}

export function update(args) {
  if (!state) return;
  state.args = args;
  if (state.cleanupPage) state.cleanupPage();
  state.cleanupPage = null;
  const id = args?.[0];
  clear(state.side);
  if (id === 'new') {
    state.page = { kind: 'form' };
    state.cleanupPage = mountForm(state.side);
  } else if (id) {
    state.page = { kind: 'event', id };
    loadEvent(id);
  } else {
    state.page = null;
    state.side.append(h('p.muted.placeholder', t('events.select')));
  }
  markSelected();
}

async function loadEvents() {
  try {
    const all = await api.get('/events');
    if (!state) return;
    state.events = new Map(all.map((e) => [e.id, e]));
    paintList();
  } catch (e) {
    if (state) clear(state.list).append(h('li.empty.error', api.errorText(e)));
  }
}

function communes() {
  state.communes ??= api.get('/territory/communes');
  return state.communes;
}

function paintList() {
  if (!state) return;
  document.getElementById('events-title').textContent = t('events.title');
  if (state.newButton) state.newButton.textContent = t('events.new');
  const all = [...state.events.values()].sort((a, b) =>
    (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9) || a.starts_at.localeCompare(b.starts_at));
  state.countEl.textContent = t('events.count', { n: all.length });
  state.countEl.dataset.count = all.length;
  clear(state.list);
  if (!all.length) state.list.append(h('li.empty', t('events.empty')));
  for (const e of all) {
    state.list.append(h(`li.event-row.ev-${e.status}`, {
      dataset: { id: e.id, status: e.status },
      on: { click: () => navigate(`#/events/${encodeURIComponent(e.id)}`) },
    },
    h('div.event-row-head', h('span.event-name', e.name), statusPill(e.status)),
    h('div.row-sub', windowText(e)),
    gauge(e)));
  }
  markSelected();
}

function markSelected() {
  if (!state) return;
  const id = state.page?.kind === 'event' ? state.page.id : null;
  for (const li of state.list.querySelectorAll('li.event-row')) li.classList.toggle('selected', li.dataset.id === id);
}

function statusPill(status) {
  return h(`span.status.ev-status.ev-${status}`, { dataset: { status } }, t(`events.status.${status}`));
}

function windowText(e) {
  return `${fmtTime(e.starts_at)} → ${fmtTime(e.ends_at)}`;
}

/** Occupancy against the thresholds: a bar up to the critical level, the warning marked.
 * A null occupancy is never a number: no counter, or below the minimum group size. */
function gauge(e) {
  const cap = e.capacity;
  const occ = e.occupancy;
  const num = (n) => Math.round(n).toLocaleString();
  let level = 'none';
  if (occ != null && cap) level = occ >= cap.critical ? 'critical' : occ >= cap.warning ? 'warning' : 'ok';
  let label;
  if (!e.counters) label = t('events.nocounter');
  else if (occ == null) label = e.suppressed ? `${peopleCountText(null, true)} — ${t('events.belowgroup')}` : t('events.belowgroup');
  else label = cap ? t('events.occupancy', { n: num(occ), max: num(cap.critical) }) : t('events.occupancy.nocap', { n: num(occ) });
  const full = cap ? cap.critical : null;
  return h(`div.gauge.g-${level}`, {
    dataset: { occupancy: occ == null ? 'null' : String(occ), level },
    title: cap ? t('events.thresholds', { warning: num(cap.warning), critical: num(cap.critical) }) : t('events.nocapacity'),
  },
  e.counters > 0 && h('div.gauge-track',
    occ != null && full ? h('div.gauge-fill', { style: `width:${Math.min(100, (occ / full) * 100).toFixed(1)}%` }) : null,
    cap ? h('div.gauge-warn', { style: `left:${Math.min(100, (cap.warning / cap.critical) * 100).toFixed(1)}%` }) : null),
  h('div.gauge-label', occ == null ? h('span.below', label) : label,
    e.counters ? h('span.muted', ` · ${t('events.counters', { n: e.counters })}`) : null));
}

// ——— the event page ———

let loadSeq = 0;
async function loadEvent(id) {
  const seq = ++loadSeq;
  state.side.append(h('p.muted', '…'));
  try {
    const e = await api.get(`/events/${encodeURIComponent(id)}`);
    if (!state || seq !== loadSeq || state.page?.id !== id) return;
    state.events.set(e.id, e);
    paintList();
    paintEvent(e);
  } catch (err) {
    if (!state || seq !== loadSeq) return;
    clear(state.side).append(h('p.error', err.code === 'event_not_found' ? t('events.notfound') : api.errorText(err)));
  }
}

/** Paints the event's page; `quiet` (a live change) keeps the map and repaints the rest. */
function paintEvent(e, quiet) {
  const side = state.side;
  if (quiet && state.page.mapSlot) {
    const info = side.querySelector('.event-info');
    if (info) info.replaceWith(eventInfo(e));
    return;
  }
  if (state.cleanupPage) state.cleanupPage();
  const mapEl = h('div.event-map#event-map');
  clear(side).append(eventInfo(e), h('section.block', h('h3', t('events.perimeter')), mapEl),
    h('section.block', h('h3', t('events.rules')),
      e.rules?.trim() ? h('pre.rules#event-rules', e.rules) : h('p.muted', t('events.norules')),
      e.rule_ids?.length ? h('p.muted', t('events.ruleids', { ids: e.rule_ids.join(', ') })) : null));
  state.page.mapSlot = mapEl;
  const map = smallMap(mapEl);
  map.on('load', async () => {
    await addCommunes(map);
    map.addSource('perimeter', { type: 'geojson', data: { type: 'Feature', geometry: e.perimeter, properties: {} } });
    addPerimeterLayers(map, 'perimeter');
    fit(map, e.perimeter.coordinates[0]);
    map.once('idle', () => { mapEl.dataset.ready = 'true'; });
  });
  state.cleanupPage = () => { map.remove(); if (probe.eventMap === map) probe.eventMap = null; };
}

function eventInfo(e) {
  const open = e.status === 'scheduled' || e.status === 'active';
  let armed = false;
  const cancel = api.can('event.manage') && open && h('button.action.danger#event-cancel', {
    type: 'button',
    on: {
      click: async (ev) => {
        // Two steps rather than a blocking confirm(): the first click arms the button.
        if (!armed) { armed = true; ev.target.textContent = t('events.cancel.confirm'); ev.target.classList.add('armed'); return; }
        ev.target.disabled = true;
        try {
          const done = await api.post(`/events/${encodeURIComponent(e.id)}/cancel`);
          toast(t('events.cancelled', { name: done.name }));
          state?.events.set(done.id, done);
          paintList();
          if (state?.page?.id === done.id) paintEvent(done, true);
        } catch (err) {
          ev.target.disabled = false;
          toast(api.errorText(err), 'error');
        }
      },
    },
  }, t('events.cancel'));
  const cap = e.capacity;
  return h('div.event-info#event-detail', { dataset: { id: e.id, status: e.status } },
    h('header.detail-head', h('div', h('h2#event-title', e.name), h('div.sub', `${e.id} · ${t(`events.origin.${e.origin}`)} · ${e.created_by.replace(/^user:/, '')}`)), statusPill(e.status)),
    e.status === 'cancelled' && h('div.banner.warn', t('events.wascancelled', { who: (e.cancelled_by ?? '').replace(/^user:/, ''), when: fmtTime(e.cancelled_at) })),
    cancel && h('div.actions', cancel),
    h('dl.kv',
      h('dt', t('events.window')), h('dd', windowText(e)),
      h('dt', t('events.capacity')), h('dd', cap ? t('events.thresholds', { warning: cap.warning.toLocaleString(), critical: cap.critical.toLocaleString() }) : t('events.nocapacity')),
      h('dt', t('events.occupancy.title')), h('dd', gauge(e))));
}

// ——— maps ———

function smallMap(container) {
  const map = new maplibregl.Map({
    container,
    style: { version: 8, sources: {}, layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#0e1726' } }] },
    center: [5.04, 47.32], zoom: 11, attributionControl: false, maxPitch: 0, dragRotate: false,
    doubleClickZoom: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');
  probe.eventMap = map;
  return map;
}

async function addCommunes(map) {
  let fc;
  try {
    fc = await communes();
  } catch {
    return null; // the perimeter still shows on the plain background
  }
  if (!map.style) return null;
  map.addSource('communes', { type: 'geojson', data: fc });
  map.addLayer({ id: 'communes-line', type: 'line', source: 'communes',
    filter: ['match', ['geometry-type'], ['Polygon', 'MultiPolygon'], true, false],
    paint: { 'line-color': '#8a6d2f', 'line-width': 1 } });
  map.addLayer({ id: 'communes', type: 'circle', source: 'communes', filter: ['==', ['geometry-type'], 'Point'], paint: {
    'circle-radius': 5, 'circle-color': 'rgba(245,185,66,0.12)', 'circle-stroke-color': '#8a6d2f', 'circle-stroke-width': 1 } });
  for (const f of fc.features) {
    new maplibregl.Marker({ element: h('div.commune-label.small', f.properties.name), anchor: 'top', offset: [0, 6] })
      .setLngLat(f.properties.label ?? f.geometry.coordinates).addTo(map);
  }
  return fc;
}

function addPerimeterLayers(map, source) {
  map.addLayer({ id: `${source}-fill`, type: 'fill', source, filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': PERIMETER_COLOR, 'fill-opacity': 0.18 } });
  map.addLayer({ id: `${source}-line`, type: 'line', source, filter: ['!=', ['geometry-type'], 'Point'], paint: { 'line-color': PERIMETER_COLOR, 'line-width': 2 } });
  map.addLayer({ id: `${source}-points`, type: 'circle', source, filter: ['==', ['geometry-type'], 'Point'], paint: {
    'circle-radius': 4, 'circle-color': '#0e1726', 'circle-stroke-color': PERIMETER_COLOR, 'circle-stroke-width': 2 } });
}

function fit(map, coords, padding = 40) {
  let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
  for (const [x, y] of coords) { w = Math.min(w, x); e = Math.max(e, x); s = Math.min(s, y); n = Math.max(n, y); }
  if (w <= e && s <= n) map.fitBounds([[w, s], [e, n]], { padding, animate: false, maxZoom: 16 });
}

// ——— the declaration form ———

/** The outer ring of a GeoJSON Polygon, a Feature holding one, or a FeatureCollection
 * holding one (the first Polygon feature); throws a translated message otherwise. */
export function ringOf(geojson) {
  let g = geojson;
  if (g?.type === 'FeatureCollection') {
    const polys = (g.features ?? []).filter((f) => f?.geometry?.type === 'Polygon');
    if (polys.length !== 1) throw new Error(t('events.import.count', { n: polys.length }));
    g = polys[0];
  }
  if (g?.type === 'Feature') g = g.geometry;
  if (g?.type !== 'Polygon') throw new Error(t('events.import.notpolygon', { type: g?.type ?? '?' }));
  const ring = g.coordinates?.[0];
  if (!Array.isArray(ring) || ring.some((p) => !Array.isArray(p) || !Number.isFinite(p[0]) || !Number.isFinite(p[1]))) {
    throw new Error(t('events.import.coords'));
  }
  const pts = ring.map((p) => [p[0], p[1]]);
  const [a, b] = [pts[0], pts[pts.length - 1]];
  if (pts.length > 1 && a[0] === b[0] && a[1] === b[1]) pts.pop();
  if (pts.length < 3) throw new Error(t('events.import.few'));
  return pts;
}

function localInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function mountForm(side) {
  if (!api.can('event.manage')) {
    side.append(h('p.muted.placeholder', t('events.forbidden')));
    return null;
  }
  const now = live.serverNow();
  const field = (key, input, errKey) => h('label.field', h('span', t(key)), input, h(`div.error.field-error`, { dataset: { for: errKey } }));
  const name = h('input#event-name', { required: true, maxlength: 120, placeholder: t('events.form.name.placeholder') });
  const starts = h('input#event-starts', { type: 'datetime-local', required: true, value: localInput(now) });
  const ends = h('input#event-ends', { type: 'datetime-local', required: true, value: localInput(now + 4 * 3600e3) });
  const warning = h('input#event-warning', { type: 'number', min: 1, step: 1, placeholder: '30000' });
  const critical = h('input#event-critical', { type: 'number', min: 1, step: 1, placeholder: '40000' });
  const rules = h('textarea#event-rules-input', { rows: 10, spellcheck: 'false', placeholder: '[[rule]]\nid = "…"\n…' });
  const rulesErrors = h('ul.error.rule-errors#event-rules-errors');
  const formError = h('div.error#event-form-error');
  const perimeterStatus = h('div.perimeter-status#perimeter-status');
  const perimeterError = h('div.error#perimeter-error');
  const mapEl = h('div.event-map.drawing#event-draw-map');
  const file = h('input#event-import', { type: 'file', accept: '.geojson,.json,application/geo+json,application/json' });
  const undoBtn = h('button#perimeter-undo', { type: 'button' }, t('events.draw.undo'));
  const closeBtn = h('button#perimeter-close', { type: 'button' }, t('events.draw.close'));
  const clearBtn = h('button.ghost#perimeter-clear', { type: 'button' }, t('events.draw.clear'));
  const submit = h('button.primary#event-submit', { type: 'submit' }, t('events.form.submit'));

  // The perimeter being drawn: vertices [lon, lat] and whether the ring is closed.
  const draw = { vertices: [], closed: false };
  probe.draw = draw;
  const map = smallMap(mapEl);
  map.getCanvas().style.cursor = 'crosshair';

  const drawn = () => {
    const v = draw.vertices;
    const features = v.map((p) => ({ type: 'Feature', geometry: { type: 'Point', coordinates: p }, properties: {} }));
    if (draw.closed) features.push({ type: 'Feature', geometry: { type: 'Polygon', coordinates: [[...v, v[0]]] }, properties: {} });
    else if (v.length > 1) features.push({ type: 'Feature', geometry: { type: 'LineString', coordinates: v }, properties: {} });
    return { type: 'FeatureCollection', features };
  };
  const paintDraw = () => {
    map.getSource('draw')?.setData(drawn());
    const n = draw.vertices.length;
    perimeterStatus.dataset.vertices = n;
    perimeterStatus.dataset.closed = draw.closed;
    perimeterStatus.textContent = draw.closed ? t('events.draw.closed', { n }) : n ? t('events.draw.open', { n }) : t('events.draw.hint');
    undoBtn.disabled = n === 0;
    closeBtn.disabled = draw.closed || n < 3;
    clearBtn.disabled = n === 0;
    mapEl.classList.toggle('closed', draw.closed);
  };
  map.on('click', (e) => {
    if (draw.closed) return;
    const p = [e.lngLat.lng, e.lngLat.lat];
    const last = draw.vertices[draw.vertices.length - 1];
    // The second click of a double-click lands on the vertex the first one added.
    if (last) {
      const a = map.project(last);
      if (Math.hypot(a.x - e.point.x, a.y - e.point.y) < 4) return;
    }
    draw.vertices.push(p);
    perimeterError.textContent = '';
    paintDraw();
  });
  map.on('dblclick', (e) => {
    e.preventDefault();
    if (!draw.closed && draw.vertices.length >= 3) { draw.closed = true; paintDraw(); }
  });
  undoBtn.addEventListener('click', () => {
    if (draw.closed) draw.closed = false;
    else draw.vertices.pop();
    paintDraw();
  });
  closeBtn.addEventListener('click', () => { if (draw.vertices.length >= 3) { draw.closed = true; paintDraw(); } });
  clearBtn.addEventListener('click', () => { draw.vertices = []; draw.closed = false; file.value = ''; paintDraw(); });
  file.addEventListener('change', async () => {
    const f = file.files?.[0];
    if (!f) return;
    perimeterError.textContent = '';
    try {
      let json;
      try {
        json = JSON.parse(await f.text());
      } catch (err) {
        throw new Error(t('events.import.json', { message: err.message }));
      }
      draw.vertices = ringOf(json);
      draw.closed = true;
      paintDraw();
      fit(map, draw.vertices);
      toast(t('events.import.done', { name: f.name, n: draw.vertices.length }));
    } catch (err) {
      perimeterError.textContent = `${f.name}: ${err.message}`;
    }
  });

  map.on('load', async () => {
    const fc = await addCommunes(map);
    // The other events in force or to come, for reference.
    const others = [...(state?.events.values() ?? [])].filter((e) => e.status === 'active' || e.status === 'scheduled');
    map.addSource('others', { type: 'geojson', data: { type: 'FeatureCollection', features: others.map((e) => ({ type: 'Feature', geometry: e.perimeter, properties: { name: e.name } })) } });
    map.addLayer({ id: 'others', type: 'line', source: 'others', paint: { 'line-color': '#5ac8fa', 'line-width': 1.5, 'line-dasharray': [2, 2] } });
    map.addSource('draw', { type: 'geojson', data: drawn() });
    addPerimeterLayers(map, 'draw');
    if (fc?.features.length) fit(map, fc.features.map((f) => f.properties.label ?? f.geometry.coordinates), 30);
    map.once('idle', () => { mapEl.dataset.ready = 'true'; });
  });

  const showErrors = (err) => {
    const list = err.details?.errors ?? [];
    for (const el of side.querySelectorAll('.field-error')) el.textContent = '';
    clear(rulesErrors);
    formError.textContent = '';
    if (!list.length) { formError.textContent = api.errorText(err); return; }
    for (const x of list) {
      const fieldName = x.field ?? '';
      const where = [x.line != null && t('events.err.line', { n: x.line }), fieldName && t('events.err.field', { field: fieldName })].filter(Boolean).join(', ');
      const text = where ? `${where} — ${x.message}` : x.message;
      const top = fieldName.split('.')[0];
      if (top === 'perimeter') perimeterError.textContent = text;
      else if (['name', 'starts_at', 'ends_at', 'capacity'].includes(top) && x.line == null) {
        side.querySelector(`.field-error[data-for="${top}"]`).textContent = text;
      } else {
        rulesErrors.append(h('li', { dataset: { line: x.line ?? '', field: fieldName } }, text));
      }
    }
  };

  const form = h('form.event-form#event-form', {
    novalidate: true,
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        for (const el of side.querySelectorAll('.field-error')) el.textContent = '';
        clear(rulesErrors);
        formError.textContent = '';
        perimeterError.textContent = '';
        let bad = false;
        const need = (cond, errKey, key) => {
          if (cond) return;
          bad = true;
          if (errKey === 'perimeter') perimeterError.textContent = t(key);
          else side.querySelector(`.field-error[data-for="${errKey}"]`).textContent = t(key);
        };
        need(name.value.trim(), 'name', 'events.form.required');
        need(starts.value, 'starts_at', 'events.form.required');
        need(ends.value, 'ends_at', 'events.form.required');
        need(!starts.value || !ends.value || new Date(ends.value) > new Date(starts.value), 'ends_at', 'events.form.order');
        const w = warning.value.trim(), c = critical.value.trim();
        need(!w === !c, 'capacity', 'events.form.capacity.both');
        need(!w || !c || Number(c) >= Number(w), 'capacity', 'events.form.capacity.order');
        need(draw.closed, 'perimeter', draw.vertices.length ? 'events.form.perimeter.open' : 'events.form.perimeter');
        if (bad) return;
        const body = {
          name: name.value.trim(),
          perimeter: { type: 'Polygon', coordinates: [[...draw.vertices, draw.vertices[0]]] },
          starts_at: new Date(starts.value).toISOString(),
          ends_at: new Date(ends.value).toISOString(),
          ...(w ? { capacity: { warning: Number(w), critical: Number(c) } } : {}),
          ...(rules.value.trim() ? { rules: rules.value } : {}),
        };
        submit.disabled = true;
        try {
          const created = await api.post('/events', body);
          toast(t('events.declared', { name: created.name }));
          state?.events.set(created.id, created);
          paintList();
          navigate(`#/events/${encodeURIComponent(created.id)}`);
        } catch (err) {
          showErrors(err);
          submit.disabled = false;
        }
      },
    },
  },
  h('h2', t('events.form.title')),
  h('div.form-cols',
    h('div.form-main',
      field('events.form.name', name, 'name'),
      h('div.field-row', field('events.form.starts', starts, 'starts_at'), field('events.form.ends', ends, 'ends_at')),
      h('fieldset.field-row', h('legend', t('events.capacity')),
        field('events.form.warning', warning, 'capacity'), field('events.form.critical', critical, 'critical')),
      h('label.field', h('span', t('events.form.rules')), rules, h('span.muted.hint', t('events.form.rules.hint'))),
      rulesErrors,
      formError,
      h('div.actions', submit, h('a.button.ghost', { href: '#/events' }, t('events.form.cancel')))),
    h('fieldset.form-map', h('legend', t('events.perimeter')),
      h('p.muted.hint', t('events.draw.help')),
      mapEl,
      h('div.draw-tools', perimeterStatus, h('span.spacer'), undoBtn, closeBtn, clearBtn),
      h('label.import', h('span', t('events.import')), file),
      perimeterError)));
  side.append(form);
  paintDraw();
  name.focus();
  return () => { map.remove(); if (probe.eventMap === map) probe.eventMap = null; };
}
