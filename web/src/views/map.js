// The live map: no base map by default (a plain background), optional raster tiles or a
// local PMTiles archive from the deployment; communes, sites, devices clustered by the
// server for the visible box (GET /api/v1/map/clusters: the page never holds 100,000
// points), open incidents by severity. A cluster is a ring of its devices' states in
// proportion, its disc coloured by the share in alarm (one alarm among 422 devices is a
// sliver and a badge, not a red cluster) and a badge with the count of devices in alarm.
// The view is framed on the user's communes; counts are the user's (the server cuts the
// devices to the caller's communes, the live store holds the incidents the caller sees).

import * as maplibregl from '/console/vendor/maplibre-gl.mjs';
import * as api from '../api.js';
import { peopleCountText, MIN_GROUP } from '../privacy.js';
import * as live from '../live.js';
import { navigate } from '../router.js';
import { h, clear, toast } from '../dom.js';
import { t, getLang, onLangChange, inLang, incidentTitle, locale } from '../i18n.js';
import { deviceChart } from '../chart.js';
import * as situations from './situations.js';

export const route = 'map';
export const navKey = 'nav.map';
export const permission = 'device.read';

const STATE_COLORS = ['#3d8bfd', '#ff4d4f', '#f5a623', '#9b59b6'];
const STATE_NAMES = ['normal', 'alarm', 'silent', 'quarantined'];
// A cluster's disc: blue with no alarm, red from half its devices in alarm.
const shareColor = ['interpolate-hcl', ['linear'], ['get', 'alarm_share'], 0, STATE_COLORS[0], 0.5, STATE_COLORS[1]];
const clusterRadius = (n) => (n < 10 ? 10 : n < 100 ? 13 : n < 1000 ? 17 : n < 10000 ? 22 : 28);
// Ring segments are drawn in steps of 1/RING_STEPS of the circle; a state with devices
// gets one step at least, so that a single alarm shows.
const RING_STEPS = 60;
const RING_WIDTH = 4;
const stateColor = (prop) => ['match', ['get', prop], 'alarm', STATE_COLORS[1], 'silent', STATE_COLORS[2], 'quarantined', STATE_COLORS[3], STATE_COLORS[0]];
// Clusters are fetched for the view grown by this fraction of its size on each side, and
// fetched again when the view leaves that box or the zoom level changes.
const MARGIN = 0.5;
const MOVE_DEBOUNCE_MS = 120;
const LIVE_REFRESH_MS = 1000;
const SEVERITY_COLORS = { critical: '#ff2d55', major: '#ff7a1a', minor: '#ffd23f', info: '#5ac8fa' };
const LAYERS = {
  basemap: ['basemap'],
  communes: ['communes-fill', 'communes-line', 'communes'],
  sites: ['sites-fill', 'sites-line', 'sites-point'],
  devices: ['device-clusters', 'device-rings', 'device-counts', 'device-badges', 'device-points'],
  incidents: ['incidents-halo', 'incidents'],
};
// Layer visibility survives view changes.
const visible = { basemap: true, communes: true, sites: true, devices: true, incidents: true };

// Test and benchmark hooks (read by web/e2e/*.mjs).
const probe = (window.__beffroi ??= {});

export function mount(el) {
  probe.mapReady = false;
  for (const k of ['devicesLoadedMs', 'devicesLoadedAt', 'firstRenderMs', 'firstRenderAt', 'fetches']) delete probe[k];
  const t0 = performance.now();
  const container = h('div.map#map');
  const counters = h('div.counters#map-counters', t('map.loading'));
  const panel = h('aside.map-panel');
  const details = h('div.device-details#device-details', { hidden: true });
  const openList = h('section.map-incidents#map-incidents');
  el.append(h('section.map-view', container, h('div.map-side', panel, openList, details), counters));

  const map = new maplibregl.Map({
    container,
    style: { version: 8, sources: {}, layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#0e1726' } }] },
    center: [5.04, 47.32],
    zoom: 10,
    attributionControl: false,
    maxPitch: 0,
    dragRotate: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');
  probe.map = map;

  let total = null; // devices of the territory, from the clusters' answer
  let communes = null;
  let view = null; // { level, bbox: [w, s, e, n] } of the clusters on the map
  let inflight = null; // AbortController of the request under way
  let moveTimer = null;
  let liveTimer = null;
  let lastLive = 0;
  let destroyed = false;
  let hasBasemap = false;
  let listSeverity = '';
  const markers = [];

  // The user's communes (all of them for a territory-wide user).
  const scoped = () => (communes ? communes.features.filter((f) => f.properties.in_scope !== false) : []);
  const counts = () => {
    const n = total ?? 0;
    const nf = new Intl.NumberFormat(getLang() === 'fr' ? 'fr-FR' : 'en-GB');
    const inScope = scoped().length;
    // "Open" as in the queue: new, acknowledged, in progress.
    const open = live.openIncidents().length;
    counters.dataset.devices = n;
    counters.dataset.communes = inScope;
    counters.dataset.incidents = open;
    counters.textContent = t('map.counters', { devices: nf.format(n), communes: nf.format(inScope), incidents: nf.format(open) });
  };

  const paintPanel = () => {
    clear(panel).append(...[
      h('h3', t('map.layers')),
      ...Object.keys(LAYERS).filter((k) => k !== 'basemap' || hasBasemap).map((k) =>
        h('label.toggle', h('input', {
          type: 'checkbox', checked: visible[k], dataset: { layer: k },
          on: { change: (e) => { visible[k] = e.target.checked; applyVisibility(); } },
        }), t(`map.layer.${k}`))),
      !hasBasemap && h('p.muted', t('map.nobasemap')),
      h('h3', t('map.legend')),
      h('ul.legend', ...STATE_NAMES.map((s, i) =>
        h('li', h('span.dot', { style: `background:${STATE_COLORS[i]}` }), t(`state.${s}`))),
      ...Object.entries(SEVERITY_COLORS).map(([s, c]) =>
        h('li', h('span.dot.ring', { style: `border-color:${c}` }), t(`severity.${s}`)))),
      h('p.muted.legend-cluster', t('map.legend_cluster')),
    ].filter(Boolean));
  };

  const applyVisibility = () => {
    for (const [k, ids] of Object.entries(LAYERS)) {
      for (const id of ids) if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', visible[k] ? 'visible' : 'none');
    }
    for (const m of markers) m.getElement().hidden = !visible.communes;
  };

  // Count labels are images: a style without glyphs (no base map, no internet) cannot draw
  // text, but it can draw icons. Each label is drawn once, before the data that needs it.
  // A cluster's count the reader's way, compact (`1,5 k` in French).
  const countLabel = (n) => new Intl.NumberFormat(locale(), { notation: 'compact', maximumFractionDigits: 1 }).format(n);
  const labelImage = (text) => {
    const id = `count-${text}`;
    if (map.hasImage(id)) return;
    const ratio = window.devicePixelRatio || 1;
    const canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d');
    const font = `600 ${11 * ratio}px system-ui, sans-serif`;
    ctx.font = font;
    canvas.width = Math.ceil(ctx.measureText(text).width + 4 * ratio);
    canvas.height = Math.ceil(14 * ratio);
    ctx.font = font;
    ctx.fillStyle = '#ffffff';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(text, canvas.width / 2, canvas.height / 2 + ratio / 2);
    map.addImage(id, ctx.getImageData(0, 0, canvas.width, canvas.height), { pixelRatio: ratio });
  };

  // A cluster's ring: its devices' states in proportion, drawn once per distinct look.
  const ringImage = (p) => {
    const r = clusterRadius(p.count);
    const byState = STATE_NAMES.map((k) => p[k] ?? 0);
    let steps = byState.map((n) => (n > 0 ? Math.max(1, Math.round((n / p.count) * RING_STEPS)) : 0));
    // Give back what the minimum steps took from the largest state.
    const big = steps.indexOf(Math.max(...steps));
    steps[big] = Math.max(1, steps[big] - (steps.reduce((a, b) => a + b, 0) - RING_STEPS));
    const id = `ring-${r}-${steps.join('-')}`;
    if (map.hasImage(id)) return id;
    const ratio = window.devicePixelRatio || 1;
    const size = Math.ceil((r + RING_WIDTH + 1) * 2 * ratio);
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext('2d');
    ctx.lineWidth = RING_WIDTH * ratio;
    const total = steps.reduce((a, b) => a + b, 0);
    let start = -Math.PI / 2;
    steps.forEach((k, i) => {
      if (!k) return;
      const end = start + (k / total) * 2 * Math.PI;
      ctx.beginPath();
      ctx.strokeStyle = STATE_COLORS[i];
      ctx.arc(size / 2, size / 2, (r + RING_WIDTH / 2) * ratio, start, end);
      ctx.stroke();
      start = end;
    });
    map.addImage(id, ctx.getImageData(0, 0, size, size), { pixelRatio: ratio });
    return id;
  };
  // The count of devices in alarm, white on red.
  const badgeImage = (text) => {
    const id = `badge-${text}`;
    if (map.hasImage(id)) return id;
    const ratio = window.devicePixelRatio || 1;
    const canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d');
    const font = `700 ${10 * ratio}px system-ui, sans-serif`;
    ctx.font = font;
    const hgt = Math.ceil(14 * ratio);
    canvas.width = Math.max(hgt, Math.ceil(ctx.measureText(text).width + 8 * ratio));
    canvas.height = hgt;
    ctx.fillStyle = STATE_COLORS[1];
    ctx.beginPath();
    ctx.roundRect(0, 0, canvas.width, canvas.height, hgt / 2);
    ctx.fill();
    ctx.font = font;
    ctx.fillStyle = '#ffffff';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(text, canvas.width / 2, canvas.height / 2 + ratio / 2);
    map.addImage(id, ctx.getImageData(0, 0, canvas.width, canvas.height), { pixelRatio: ratio });
    return id;
  };

  // The box to ask for: the view grown by MARGIN on each side.
  const wantedBox = () => {
    const b = map.getBounds();
    const [w, s, e, n] = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
    const dx = (e - w) * MARGIN;
    const dy = (n - s) * MARGIN;
    return [Math.max(-180, w - dx), Math.max(-85, s - dy), Math.min(180, e + dx), Math.min(85, n + dy)];
  };
  const covers = (outer, b) => outer[0] <= Math.max(-180, b.getWest()) && outer[1] <= Math.max(-85, b.getSouth())
    && outer[2] >= Math.min(180, b.getEast()) && outer[3] >= Math.min(85, b.getNorth());

  /** Fetches the clusters of the view unless those on the map already cover it. */
  const refresh = async (force = false) => {
    clearTimeout(moveTimer);
    moveTimer = null;
    if (destroyed) return;
    const level = Math.floor(map.getZoom());
    if (!force && view && view.level === level && covers(view.bbox, map.getBounds())) return;
    inflight?.abort();
    const ctl = new AbortController();
    inflight = ctl;
    const bbox = wantedBox().map((x) => x.toFixed(5)).join(',');
    const started = performance.now();
    try {
      const fc = await api.get(`/map/clusters?z=${map.getZoom().toFixed(3)}&bbox=${bbox}`, { signal: ctl.signal });
      if (destroyed || ctl.signal.aborted) return;
      for (const f of fc.features) {
        if (!f.properties.count) continue;
        const p = f.properties;
        p.label = countLabel(p.count);
        labelImage(p.label);
        p.ring = ringImage(p);
        p.radius = clusterRadius(p.count);
        if (p.alarm > 0) p.badge = badgeImage(countLabel(p.alarm));
      }
      map.getSource('devices')?.setData(fc);
      view = { level: fc.level, bbox: fc.bbox };
      total = fc.total;
      probe.fetches = (probe.fetches ?? 0) + 1;
      probe.lastFetchMs = performance.now() - started;
      probe.lastFeatures = fc.features.length;
      probe.devicesLoadedMs ??= performance.now() - t0;
      probe.devicesLoadedAt ??= performance.now();
      counts();
    } catch (e) {
      if (e.name === 'AbortError') return;
      toast(t('error.generic', { message: e.message }), 'error');
    } finally {
      if (inflight === ctl) inflight = null;
    }
  };
  const scheduleRefresh = () => {
    clearTimeout(moveTimer);
    moveTimer = setTimeout(() => refresh(), MOVE_DEBOUNCE_MS);
  };
  // Device states change live: fetch the view again, at most once a second.
  const liveRefresh = () => {
    if (liveTimer) return;
    const wait = Math.max(0, lastLive + LIVE_REFRESH_MS - performance.now());
    liveTimer = setTimeout(() => {
      liveTimer = null;
      lastLive = performance.now();
      refresh(true);
    }, wait);
  };
  // Resolves once no request is scheduled or under way and the map has drawn the result
  // (browser tests and the benchmark wait on it after moving the map).
  probe.settled = () => new Promise((resolve) => {
    const check = () => {
      if (destroyed) return resolve();
      if (moveTimer || inflight || !view) return setTimeout(check, 25);
      if (map.loaded() && !map.isMoving()) return resolve();
      map.once('idle', check);
    };
    check();
  });

  const incidentGeojson = () => ({
    type: 'FeatureCollection',
    features: live.openIncidents().map((i) => ({
      type: 'Feature', geometry: { type: 'Point', coordinates: i.position },
      properties: { id: i.id, severity: i.severity, title: incidentTitle(i) },
    })),
  });

  // The open incidents beside the map (the queue's order), each with "locate".
  const LIST_MAX = 30;
  const paintList = () => {
    const all = live.openIncidents().sort(live.compareIncidents);
    const shown = listSeverity ? all.filter((i) => i.severity === listSeverity) : all;
    const sev = h('select#map-incidents-severity', { on: { change: (e) => { listSeverity = e.target.value; paintList(); } } },
      h('option', { value: '' }, t('map.incidents_all')),
      ...Object.keys(SEVERITY_COLORS).map((k) => h('option', { value: k, selected: k === listSeverity }, t(`severity.${k}`))));
    const row = (i) => h(`li.map-incident.row-${i.severity}`, { dataset: { id: i.id } },
      h(`span.sev.sev-${i.severity}`, t(`severity.${i.severity}`)),
      h('a.map-incident-title', { href: `#/incidents/${i.id}` }, incidentTitle(i)),
      h('span.muted', i.commune_name),
      h('button.ghost.locate', { type: 'button', on: { click: () => locate(i) } }, t('map.locate')));
    // One entry per situation (the incidents of one real event), its incidents inside.
    const rows = situations.group(shown.slice(0, LIST_MAX)).map((g) => {
      const s = g.situation;
      if (!s || g.incidents.length < 2) return g.incidents.map(row);
      return h(`li.map-situation.row-${s.severity}`, { dataset: { situation: s.id } },
        h('div.map-situation-head',
          h(`span.sev.sev-${s.severity}`, t(`severity.${s.severity}`)),
          h('span.map-incident-title', situations.situationTitle(s)),
          h('span.muted', t('situation.count', { n: g.incidents.length })),
          h('button.ghost.locate-situation', { type: 'button', on: { click: () => locateAll(g.incidents) } }, t('map.locate'))),
        h('ul.map-situation-incidents', ...g.incidents.map(row)));
    }).flat();
    clear(openList).append(
      h('h3', t('map.incidents_open', { n: new Intl.NumberFormat(getLang() === 'fr' ? 'fr-FR' : 'en-GB').format(all.length) })),
      sev,
      h('ul.map-incident-list', ...(rows.length ? rows : [h('li.muted', t('queue.empty'))])),
      ...(shown.length > LIST_MAX ? [h('p.muted', t('map.incidents_more', { n: shown.length - LIST_MAX }))] : []),
    );
    openList.dataset.count = shown.length;
  };
  const locate = (i) => {
    probe.located = i.id;
    map.flyTo({ center: i.position, zoom: Math.max(map.getZoom(), 15), essential: true });
  };
  // A situation: the view framed on all its incidents.
  const locateAll = (list) => {
    const lons = list.map((i) => i.position[0]);
    const lats = list.map((i) => i.position[1]);
    map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]],
      { padding: 60, maxZoom: 16, essential: true });
  };

  const onIncidents = () => {
    map.getSource('incidents')?.setData(incidentGeojson());
    counts();
    paintList();
  };

  const loadBasemap = async () => {
    let cfg = {};
    try {
      cfg = await (await fetch('/console/config.json')).json();
    } catch {
      return;
    }
    if (cfg.tiles) {
      map.addSource('basemap', { type: 'raster', tiles: [cfg.tiles], tileSize: 256, attribution: cfg.attribution ?? '' });
      map.addLayer({ id: 'basemap', type: 'raster', source: 'basemap', paint: { 'raster-opacity': 0.55, 'raster-saturation': -0.6 } }, map.getLayer('communes-fill') ? 'communes-fill' : undefined);
      hasBasemap = true;
    } else if (cfg.pmtiles) {
      await loadScript('/console/vendor/pmtiles.js');
      const protocol = new window.pmtiles.Protocol();
      maplibregl.addProtocol('pmtiles', protocol.tile);
      const url = `${location.origin}${cfg.pmtiles}`;
      const archive = new window.pmtiles.PMTiles(url);
      protocol.add(archive);
      const header = await archive.getHeader();
      const before = map.getLayer('communes-fill') ? 'communes-fill' : undefined;
      if (header.tileType === 1) {
        // Vector tiles: draw every layer of the archive as thin lines and muted fills.
        const meta = await archive.getMetadata();
        map.addSource('basemap', { type: 'vector', url: `pmtiles://${url}`, attribution: cfg.attribution ?? '' });
        for (const vl of meta?.vector_layers ?? []) {
          map.addLayer({ id: `basemap-${vl.id}`, type: 'line', source: 'basemap', 'source-layer': vl.id, paint: { 'line-color': '#2a3a55', 'line-width': 0.8 } }, before);
          LAYERS.basemap.push(`basemap-${vl.id}`);
        }
      } else {
        map.addSource('basemap', { type: 'raster', url: `pmtiles://${url}`, tileSize: 256, attribution: cfg.attribution ?? '' });
        map.addLayer({ id: 'basemap', type: 'raster', source: 'basemap', paint: { 'raster-opacity': 0.55 } }, before);
      }
      hasBasemap = true;
    }
    if (hasBasemap && cfg.attribution) map.addControl(new maplibregl.AttributionControl({ compact: true }));
    paintPanel();
    applyVisibility();
  };

  // Fetched while MapLibre starts up.
  const data = Promise.all([
    api.get('/territory/communes'),
    api.get('/territory/sites'),
  ]);
  data.catch(() => {}); // reported by load()

  const load = async () => {
    const [communesFc, sites] = await data;
    if (destroyed) return;
    communes = communesFc;

    map.addSource('communes', { type: 'geojson', data: communesFc });
    // A commune is its boundary where communes.geojson gives one, else a circle at its
    // position; its name goes at `label` either way.
    const polygon = ['match', ['geometry-type'], ['Polygon', 'MultiPolygon'], true, false];
    map.addLayer({ id: 'communes-fill', type: 'fill', source: 'communes', filter: polygon,
      paint: { 'fill-color': '#f5b942', 'fill-opacity': 0.04 } });
    // Communes outside the user's scope are drawn faint.
    map.addLayer({ id: 'communes-line', type: 'line', source: 'communes', filter: polygon,
      paint: { 'line-color': '#f5b942', 'line-width': 1.2, 'line-opacity': ['case', ['==', ['get', 'in_scope'], false], 0.25, 0.7] } });
    map.addLayer({ id: 'communes', type: 'circle', source: 'communes', filter: ['==', ['geometry-type'], 'Point'], paint: {
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 8, 6, 14, 14], 'circle-color': 'rgba(245,185,66,0.12)',
      'circle-stroke-color': '#f5b942', 'circle-stroke-width': 1.5 } });
    for (const f of communesFc.features) {
      const m = new maplibregl.Marker({ element: h('div.commune-label', f.properties.name), anchor: 'top', offset: [0, 10] })
        .setLngLat(f.properties.label ?? f.geometry.coordinates).addTo(map);
      markers.push(m);
    }
    map.addSource('sites', { type: 'geojson', data: sites });
    map.addLayer({ id: 'sites-fill', type: 'fill', source: 'sites', filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': '#5ac8fa', 'fill-opacity': 0.08 } });
    map.addLayer({ id: 'sites-line', type: 'line', source: 'sites', filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'line-color': '#5ac8fa', 'line-width': 1, 'line-opacity': 0.6 } });
    map.addLayer({ id: 'sites-point', type: 'circle', source: 'sites', minzoom: 12, filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-radius': 3, 'circle-color': '#5ac8fa', 'circle-opacity': 0.5 } });

    map.addSource('devices', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
    map.addLayer({ id: 'device-clusters', type: 'circle', source: 'devices', filter: ['has', 'count'], paint: {
      'circle-color': shareColor,
      'circle-opacity': 0.8,
      'circle-radius': ['get', 'radius'] } });
    map.addLayer({ id: 'device-rings', type: 'symbol', source: 'devices', filter: ['has', 'count'], layout: {
      'icon-image': ['get', 'ring'], 'icon-allow-overlap': true, 'icon-ignore-placement': true } });
    map.addLayer({ id: 'device-counts', type: 'symbol', source: 'devices', filter: ['has', 'count'], layout: {
      'icon-image': ['concat', 'count-', ['get', 'label']], 'icon-allow-overlap': true, 'icon-ignore-placement': true } });
    map.addLayer({ id: 'device-badges', type: 'symbol', source: 'devices', filter: ['all', ['has', 'count'], ['>', ['get', 'alarm'], 0]], layout: {
      'icon-image': ['get', 'badge'], 'icon-allow-overlap': true, 'icon-ignore-placement': true,
      'icon-anchor': 'bottom-left', 'icon-offset': ['literal', [6, -6]] } });
    map.addLayer({ id: 'device-points', type: 'circle', source: 'devices', filter: ['has', 'id'], paint: {
      'circle-color': stateColor('state'),
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 10, 3, 16, 7],
      'circle-stroke-color': '#0e1726', 'circle-stroke-width': 1 } });

    map.addSource('incidents', { type: 'geojson', data: incidentGeojson() });
    map.addLayer({ id: 'incidents-halo', type: 'circle', source: 'incidents', paint: {
      'circle-radius': 18, 'circle-color': ['match', ['get', 'severity'], 'critical', SEVERITY_COLORS.critical, 'major', SEVERITY_COLORS.major, 'minor', SEVERITY_COLORS.minor, SEVERITY_COLORS.info],
      'circle-opacity': 0.25, 'circle-blur': 0.4 } });
    map.addLayer({ id: 'incidents', type: 'circle', source: 'incidents', paint: {
      'circle-radius': 8, 'circle-color': '#0e1726', 'circle-stroke-width': 3,
      'circle-stroke-color': ['match', ['get', 'severity'], 'critical', SEVERITY_COLORS.critical, 'major', SEVERITY_COLORS.major, 'minor', SEVERITY_COLORS.minor, SEVERITY_COLORS.info] } });

    // Fit the user's communes (the whole territory when none is marked).
    let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
    const grow = ([x, y]) => { w = Math.min(w, x); e = Math.max(e, x); s = Math.min(s, y); n = Math.max(n, y); };
    const walk = (c) => (typeof c[0] === 'number' ? grow(c) : c.forEach(walk));
    const mine = scoped().length ? scoped() : communesFc.features;
    const ids = new Set(mine.map((f) => f.properties.id));
    mine.forEach((f) => walk(f.geometry.coordinates));
    sites.features.forEach((f) => f.geometry && ids.has(f.properties.commune) && walk(f.geometry.coordinates));
    probe.framedOn = [...ids];
    if (w < e) map.fitBounds([[w, s], [e, n]], { padding: 40, animate: false });

    applyVisibility();
    counts();
    await refresh(true);
    if (destroyed) return;
    map.on('moveend', scheduleRefresh);
    map.once('idle', () => {
      probe.firstRenderMs = performance.now() - t0;
      probe.firstRenderAt = performance.now();
      probe.mapReady = true;
      counters.dataset.ready = 'true';
    });
    await loadBasemap();
  };

  // A cluster: zoom to its devices' box, one level at least.
  map.on('click', 'device-clusters', (e) => {
    const p = e.features[0].properties;
    const cam = map.cameraForBounds([[p.west, p.south], [p.east, p.north]], { padding: 80, maxZoom: 17 });
    const zoom = Math.max(cam?.zoom ?? 0, Math.floor(map.getZoom()) + 1);
    map.easeTo({ center: cam?.center ?? e.features[0].geometry.coordinates, zoom });
  });
  map.on('click', 'device-points', (e) => showDevice(e.features[0].properties.id));
  // For the browser test: open a device's panel without hunting for its point.
  probe.showDevice = (id) => showDevice(id);
  map.on('click', 'incidents', (e) => navigate(`#/incidents/${e.features[0].properties.id}`));
  for (const l of ['device-clusters', 'device-points', 'incidents']) {
    map.on('mouseenter', l, () => (map.getCanvas().style.cursor = 'pointer'));
    map.on('mouseleave', l, () => (map.getCanvas().style.cursor = ''));
  }

  let chart = null;
  async function showDevice(id) {
    details.hidden = false;
    clear(details).append(h('p.muted', '…'));
    try {
      const d = await api.get(`/devices/${encodeURIComponent(id)}`);
      if (chart) chart.destroy();
      const plot = h('div.chart');
      // Element.append would write `false` for an action the role does not have: filtered.
      clear(details).append(...[
        h('div.panel-head', h('h3', t('device.title', { id: d.id })),
          h('button.ghost', { type: 'button', on: { click: () => (details.hidden = true) } }, t('device.close'))),
        h('dl.kv',
          h('dt', t('device.kind')), h('dd', inLang(d.kind_label, d.kind_label_en)),
          h('dt', t('device.site')), h('dd', d.site),
          h('dt', t('device.commune')), h('dd', d.commune),
          h('dt', t('device.state')), h('dd', h(`span.state.${d.state}`, t(`state.${d.state}`))),
          h('dt', t('device.trust')), h('dd', d.trust ? t(`trust.${d.trust}`) : '—'),
          h('dt', t('device.quarantine')), h('dd#device-quarantined', t(d.quarantined ? 'device.quarantined' : 'device.not_quarantined'))),
        api.can('device.quarantine') && quarantineForm(d),
        h('h4', t('device.history')), plot].filter(Boolean));
      chart = deviceChart(plot, d.recent);
      if (!chart) plot.append(h('p.muted', t('device.nohistory')));
      // People counts below the minimum group size are null: said, never drawn.
      if (d.recent.some((o) => o.suppressed)) plot.append(h('p.muted.suppressed', `${peopleCountText(null, true)} — ${t('people.suppressed', { n: MIN_GROUP })}`));
      probe.deviceShown = d.id;
    } catch (e) {
      clear(details).append(h('p.error', t('error.generic', { message: e.message })));
    }
  }

  // Quarantine or release, with a reason (POST /devices/{id}/quarantine | release).
  function quarantineForm(d) {
    const reason = h('input#quarantine-reason', { type: 'text', required: true, maxLength: 500,
      placeholder: t('device.quarantine_reason') });
    const verb = d.quarantined ? 'release' : 'quarantine';
    return h('form.quarantine', { on: { submit: async (e) => {
      e.preventDefault();
      if (!reason.value.trim()) return;
      try {
        await api.post(`/devices/${encodeURIComponent(d.id)}/${verb}`, { reason: reason.value.trim() });
        toast(t(`device.${verb}_done`, { id: d.id }));
        showDevice(d.id);
      } catch (err) {
        toast(t('error.generic', { message: err.message }), 'error');
      }
    } } }, reason, h(`button#quarantine-${verb}`, { type: 'submit' }, t(`device.${verb}`)));
  }

  const offs = [
    live.on('device', () => { if (view) liveRefresh(); }),
    live.on('incidents', onIncidents),
    live.on('situations', paintList),
    live.on('resync', () => { if (view) liveRefresh(); }),
    onLangChange(() => { paintPanel(); counts(); paintList(); }),
  ];
  paintPanel();
  paintList();
  map.on('load', () => load().catch((e) => toast(t('error.generic', { message: e.message }), 'error')));

  return () => {
    destroyed = true;
    clearTimeout(moveTimer);
    clearTimeout(liveTimer);
    inflight?.abort();
    offs.forEach((f) => f());
    if (chart) chart.destroy();
    map.remove();
    probe.map = null;
  };
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(s);
  });
}

