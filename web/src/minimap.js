// A small map of an incident's surroundings, for its detail: the incident's position and
// the devices around it coloured by state, the triggering device ringed. Like the live map
// (views/map.js) it draws on a plain background with no glyphs: nothing is fetched from
// outside the server (no tiles, no fonts).

import * as api from './api.js';

const STATE_COLORS = ['match', ['coalesce', ['get', 'state'], ['get', 'worst']],
  'alarm', '#ff4d4f', 'silent', '#f5a623', 'quarantined', '#9b59b6', '#3d8bfd'];
const SEVERITY_COLORS = { critical: '#ff2d55', major: '#ff7a1a', minor: '#ffd23f', info: '#5ac8fa' };
// The box of devices read around the incident, in degrees (about 450 m × 450 m at 47° N).
const HALF_LON = 0.006;
const HALF_LAT = 0.004;

let lib = null;

/**
 * Draws the surroundings of `incident` into `el` (already in the page); resolves to the
 * MapLibre map, which the caller removes when the detail changes. The devices are read
 * only with `devices` (the caller's `device.read`). `el.dataset.ready` is set once drawn,
 * `el.dataset.devices` to how many device points (or groups) it shows.
 */
export async function miniMap(el, incident, devices) {
  lib ??= await import('/console/vendor/maplibre-gl.mjs');
  const [lon, lat] = incident.position;
  const map = new lib.Map({
    container: el,
    style: { version: 8, sources: {}, layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#0e1726' } }] },
    center: [lon, lat],
    zoom: 15.5,
    attributionControl: false,
    interactive: false,
  });
  el.dataset.lon = lon;
  el.dataset.lat = lat;
  map.on('load', async () => {
    let features = [];
    if (devices) {
      try {
        const bbox = [lon - HALF_LON, lat - HALF_LAT, lon + HALF_LON, lat + HALF_LAT].map((x) => x.toFixed(5)).join(',');
        features = (await api.get(`/map/clusters?z=17&bbox=${bbox}`)).features ?? [];
      } catch {
        features = [];
      }
    }
    if (!map.getStyle()) return; // removed meanwhile
    const trigger = incident.trigger?.device ?? incident.device ?? '';
    map.addSource('near', { type: 'geojson', data: { type: 'FeatureCollection', features } });
    map.addLayer({
      id: 'near', type: 'circle', source: 'near',
      paint: {
        'circle-radius': ['case', ['has', 'count'], 7, 5],
        'circle-color': STATE_COLORS,
        'circle-stroke-color': '#ffffff',
        'circle-stroke-width': ['case', ['==', ['get', 'id'], trigger], 3, 0.8],
      },
    });
    map.addSource('incident', { type: 'geojson', data: { type: 'Feature', geometry: { type: 'Point', coordinates: [lon, lat] }, properties: {} } });
    map.addLayer({
      id: 'incident', type: 'circle', source: 'incident',
      paint: {
        'circle-radius': 14, 'circle-color': 'rgba(0,0,0,0)',
        'circle-stroke-color': SEVERITY_COLORS[incident.severity] ?? '#ff2d55', 'circle-stroke-width': 3,
      },
    });
    el.dataset.devices = features.length;
    el.dataset.ready = 'true';
  });
  return map;
}
