// The live map: no base map by default (a plain background), optional raster tiles or a
// local PMTiles archive from the deployment; communes, sites, devices clustered by
// MapLibre (100,000 stay fluid) and coloured by state, open incidents by severity.

import * as maplibregl from '/console/vendor/maplibre-gl.mjs';
import * as api from '../api.js';
import * as live from '../live.js';
import { navigate } from '../router.js';
import { h, clear, toast } from '../dom.js';
import { t, onLangChange } from '../i18n.js';
import { deviceChart } from '../chart.js';

export const route = 'map';
export const navKey = 'nav.map';

const STATE_COLORS = ['#3d8bfd', '#ff4d4f', '#f5a623', '#9b59b6'];
const SEVERITY_COLORS = { critical: '#ff2d55', major: '#ff7a1a', minor: '#ffd23f', info: '#5ac8fa' };
const LAYERS = {
  basemap: ['basemap'],
  communes: ['communes'],
  sites: ['sites-fill', 'sites-line', 'sites-point'],
  devices: ['device-clusters', 'device-points'],
  incidents: ['incidents-halo', 'incidents'],
};
// Layer visibility survives view changes.
const visible = { basemap: true, communes: true, sites: true, devices: true, incidents: true };

// Test and benchmark hooks (read by web/e2e/*.mjs).
const probe = (window.__beffroi ??= {});

export function mount(el) {
  probe.mapReady = false;
  const t0 = performance.now();
  const container = h('div.map#map');
  const counters = h('div.counters#map-counters', t('map.loading'));
  const panel = h('aside.map-panel');
  const details = h('div.device-details#device-details', { hidden: true });
  el.append(h('section.map-view', container, h('div.map-side', panel, details), counters));

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

  let devices = null; // { ids, lon, lat, state, kind, kinds, index: Map id → i }
  let communes = null;
  let features = null;
  let dirty = false;
  let flushTimer = null;
  let destroyed = false;
  let hasBasemap = false;
  const markers = [];

  const counts = () => {
    const n = devices ? devices.ids.length : 0;
    counters.dataset.devices = n;
    counters.dataset.communes = communes ? communes.features.length : 0;
    counters.dataset.incidents = live.incidents.size;
    counters.textContent = t('map.counters', { devices: n.toLocaleString(), communes: counters.dataset.communes, incidents: live.incidents.size });
  };

  const paintPanel = () => {
    clear(panel).append(
      h('h3', t('map.layers')),
      ...Object.keys(LAYERS).filter((k) => k !== 'basemap' || hasBasemap).map((k) =>
        h('label.toggle', h('input', {
          type: 'checkbox', checked: visible[k], dataset: { layer: k },
          on: { change: (e) => { visible[k] = e.target.checked; applyVisibility(); } },
        }), t(`map.layer.${k}`))),
      !hasBasemap && h('p.muted', t('map.nobasemap')),
      h('h3', t('map.legend')),
      h('ul.legend', ...['normal', 'alarm', 'silent', 'quarantined'].map((s, i) =>
        h('li', h('span.dot', { style: `background:${STATE_COLORS[i]}` }), t(`state.${s}`))),
      ...Object.entries(SEVERITY_COLORS).map(([s, c]) =>
        h('li', h('span.dot.ring', { style: `border-color:${c}` }), t(`severity.${s}`)))),
    );
  };

  const applyVisibility = () => {
    for (const [k, ids] of Object.entries(LAYERS)) {
      for (const id of ids) if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', visible[k] ? 'visible' : 'none');
    }
    for (const m of markers) m.getElement().hidden = !visible.communes;
  };

  const deviceGeojson = () => {
    if (!features) {
      features = new Array(devices.ids.length);
      for (let i = 0; i < devices.ids.length; i++) {
        features[i] = { type: 'Feature', id: i, geometry: { type: 'Point', coordinates: [devices.lon[i], devices.lat[i]] }, properties: { s: devices.state[i] } };
      }
    } else {
      for (let i = 0; i < features.length; i++) features[i].properties.s = devices.state[i];
    }
    return { type: 'FeatureCollection', features };
  };

  const incidentGeojson = () => ({
    type: 'FeatureCollection',
    features: [...live.incidents.values()].filter((i) => i.status !== 'resolved').map((i) => ({
      type: 'Feature', geometry: { type: 'Point', coordinates: i.position },
      properties: { id: i.id, severity: i.severity, title: i.title },
    })),
  });

  const flush = () => {
    flushTimer = null;
    if (!dirty || destroyed) return;
    dirty = false;
    map.getSource('devices')?.setData(deviceGeojson());
  };

  const onDevice = (d) => {
    if (!devices) return;
    const i = devices.index.get(d.device);
    const s = devices.states.indexOf(d.state);
    if (i === undefined || s < 0 || devices.state[i] === s) return;
    devices.state[i] = s;
    dirty = true;
    // Re-clustering 100,000 points costs a few hundred ms in the worker: batch changes.
    flushTimer ??= setTimeout(flush, 1500);
  };

  const onIncidents = () => {
    map.getSource('incidents')?.setData(incidentGeojson());
    counts();
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
      map.addLayer({ id: 'basemap', type: 'raster', source: 'basemap', paint: { 'raster-opacity': 0.55, 'raster-saturation': -0.6 } }, map.getLayer('communes') ? 'communes' : undefined);
      hasBasemap = true;
    } else if (cfg.pmtiles) {
      await loadScript('/console/vendor/pmtiles.js');
      const protocol = new window.pmtiles.Protocol();
      maplibregl.addProtocol('pmtiles', protocol.tile);
      const url = `${location.origin}${cfg.pmtiles}`;
      const archive = new window.pmtiles.PMTiles(url);
      protocol.add(archive);
      const header = await archive.getHeader();
      const before = map.getLayer('communes') ? 'communes' : undefined;
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
    api.get('/map/devices'),
  ]);
  data.catch(() => {}); // reported by load()

  const load = async () => {
    const [communesFc, sites, devs] = await data;
    if (destroyed) return;
    communes = communesFc;
    devices = devs;
    devices.index = new Map(devs.ids.map((id, i) => [id, i]));
    probe.devicesLoadedMs = performance.now() - t0;
    probe.devicesLoadedAt = performance.now();

    map.addSource('communes', { type: 'geojson', data: communesFc });
    map.addLayer({ id: 'communes', type: 'circle', source: 'communes', paint: {
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 8, 6, 14, 14], 'circle-color': 'rgba(245,185,66,0.12)',
      'circle-stroke-color': '#f5b942', 'circle-stroke-width': 1.5 } });
    for (const f of communesFc.features) {
      const m = new maplibregl.Marker({ element: h('div.commune-label', f.properties.name), anchor: 'top', offset: [0, 10] })
        .setLngLat(f.geometry.coordinates).addTo(map);
      markers.push(m);
    }
    map.addSource('sites', { type: 'geojson', data: sites });
    map.addLayer({ id: 'sites-fill', type: 'fill', source: 'sites', filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': '#5ac8fa', 'fill-opacity': 0.08 } });
    map.addLayer({ id: 'sites-line', type: 'line', source: 'sites', filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'line-color': '#5ac8fa', 'line-width': 1, 'line-opacity': 0.6 } });
    map.addLayer({ id: 'sites-point', type: 'circle', source: 'sites', minzoom: 12, filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-radius': 3, 'circle-color': '#5ac8fa', 'circle-opacity': 0.5 } });

    map.addSource('devices', {
      type: 'geojson', data: deviceGeojson(), cluster: true, clusterRadius: 45, clusterMaxZoom: 15,
      ...(probe.tune ?? {}),
      clusterProperties: {
        alarm: ['+', ['case', ['==', ['get', 's'], 1], 1, 0]],
        silent: ['+', ['case', ['==', ['get', 's'], 2], 1, 0]],
      },
    });
    map.addLayer({ id: 'device-clusters', type: 'circle', source: 'devices', filter: ['has', 'point_count'], paint: {
      'circle-color': ['case', ['>', ['get', 'alarm'], 0], STATE_COLORS[1], ['>', ['get', 'silent'], 0], STATE_COLORS[2], STATE_COLORS[0]],
      'circle-opacity': 0.75,
      'circle-radius': ['step', ['get', 'point_count'], 9, 10, 13, 100, 17, 1000, 22, 10000, 28],
      'circle-stroke-color': '#0e1726', 'circle-stroke-width': 1.5 } });
    map.addLayer({ id: 'device-points', type: 'circle', source: 'devices', filter: ['!', ['has', 'point_count']], paint: {
      'circle-color': ['match', ['get', 's'], 1, STATE_COLORS[1], 2, STATE_COLORS[2], 3, STATE_COLORS[3], STATE_COLORS[0]],
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 10, 3, 16, 7],
      'circle-stroke-color': '#0e1726', 'circle-stroke-width': 1 } });

    map.addSource('incidents', { type: 'geojson', data: incidentGeojson() });
    map.addLayer({ id: 'incidents-halo', type: 'circle', source: 'incidents', paint: {
      'circle-radius': 18, 'circle-color': ['match', ['get', 'severity'], 'critical', SEVERITY_COLORS.critical, 'major', SEVERITY_COLORS.major, 'minor', SEVERITY_COLORS.minor, SEVERITY_COLORS.info],
      'circle-opacity': 0.25, 'circle-blur': 0.4 } });
    map.addLayer({ id: 'incidents', type: 'circle', source: 'incidents', paint: {
      'circle-radius': 8, 'circle-color': '#0e1726', 'circle-stroke-width': 3,
      'circle-stroke-color': ['match', ['get', 'severity'], 'critical', SEVERITY_COLORS.critical, 'major', SEVERITY_COLORS.major, 'minor', SEVERITY_COLORS.minor, SEVERITY_COLORS.info] } });

    // Fit the territory.
    let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
    const grow = ([x, y]) => { w = Math.min(w, x); e = Math.max(e, x); s = Math.min(s, y); n = Math.max(n, y); };
    communesFc.features.forEach((f) => grow(f.geometry.coordinates));
    for (let i = 0; i < devs.lon.length; i += Math.max(1, Math.floor(devs.lon.length / 5000))) grow([devs.lon[i], devs.lat[i]]);
    if (w < e) map.fitBounds([[w, s], [e, n]], { padding: 40, animate: false });

    applyVisibility();
    counts();
    map.once('idle', () => {
      probe.firstRenderMs = performance.now() - t0;
      probe.firstRenderAt = performance.now();
      probe.mapReady = true;
      counters.dataset.ready = 'true';
    });
    await loadBasemap();
  };

  map.on('click', 'device-clusters', async (e) => {
    const f = e.features[0];
    const zoom = await map.getSource('devices').getClusterExpansionZoom(f.properties.cluster_id);
    map.easeTo({ center: f.geometry.coordinates, zoom });
  });
  map.on('click', 'device-points', (e) => showDevice(devices.ids[e.features[0].id]));
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
      clear(details).append(
        h('div.panel-head', h('h3', t('device.title', { id: d.id })),
          h('button.ghost', { type: 'button', on: { click: () => (details.hidden = true) } }, t('device.close'))),
        h('dl.kv',
          h('dt', t('device.kind')), h('dd', d.kind_label),
          h('dt', t('device.site')), h('dd', d.site),
          h('dt', t('device.commune')), h('dd', d.commune),
          h('dt', t('device.state')), h('dd', h(`span.state.${d.state}`, t(`state.${d.state}`)))),
        h('h4', t('device.history')), plot);
      chart = deviceChart(plot, d.recent);
      if (!chart) plot.append(h('p.muted', t('device.nohistory')));
      probe.deviceShown = d.id;
    } catch (e) {
      clear(details).append(h('p.error', t('error.generic', { message: e.message })));
    }
  }

  const offs = [
    live.on('device', onDevice),
    live.on('incidents', onIncidents),
    live.on('resync', async () => {
      try {
        const devs = await api.get('/map/devices');
        for (let i = 0; i < devs.ids.length; i++) onDevice({ device: devs.ids[i], state: devs.states[devs.state[i]] });
      } catch { /* next resync */ }
    }),
    onLangChange(() => { paintPanel(); counts(); }),
  ];
  paintPanel();
  map.on('load', () => load().catch((e) => toast(t('error.generic', { message: e.message }), 'error')));

  return () => {
    destroyed = true;
    clearTimeout(flushTimer);
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

