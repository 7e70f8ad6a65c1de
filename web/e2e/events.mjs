// Browser steps for the overview and event mode, called by console.mjs:
// the KPI strip matches GET /api/v1/overview, the alarm-health panel GET /api/v1/alarm-health,
// and the handover lists the open incidents;
// the demo's event in progress is listed; an event is declared with a perimeter drawn with
// mouse clicks (after a GeoJSON import and a rejected rule), then cancelled.
// Leaves the page on the incident queue.

import { statSync } from 'node:fs';
import { join } from 'node:path';
import { step } from './lib.mjs';

/** The browser's local `datetime-local` value of `base` (ms) plus `minutes`. */
function localInputIn(page, base, minutes) {
  return page.evaluate(([b, m]) => {
    const d = new Date(b + m * 60000);
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }, [base, minutes]);
}

export async function eventsSteps(page, { token, api, check, shots, errors }) {
  const shot = async (name) => {
    const path = join(shots, name);
    await page.screenshot({ path, style: '#toast { display: none !important; }' });
    check(statSync(path).size > 10000, `${name} is a real screenshot`);
  };

  step('overview: KPI strip matches GET /api/v1/overview, live');
  await page.locator('a.tab[data-route=overview]').click();
  await page.locator('#kpi-strip [data-kpi=open_total]').waitFor();
  // An incident opens while the overview is shown: the figures follow without a reload.
  const before = (await api(token, 'GET', '/overview')).body.open_total;
  const busy = new Set((await api(token, 'GET', '/incidents?status=active')).body.map((i) => i.site));
  const panel = (await api(token, 'GET', '/devices?kind=intrusion_panel')).body.find((d) => !busy.has(d.site));
  check(panel, 'an intrusion panel without an incident');
  const ingest = await api(token, 'POST', `/devices/${panel.id}/observations`, [{ n: 'intrusion', vb: true }]);
  check(ingest.status === 200, `observation accepted: ${JSON.stringify(ingest)}`);
  await page.locator(`#kpi-strip [data-kpi=open_total]:not([data-value="${before}"])`).waitFor();
  // The figures move with the demo's scenarios: compare the page with the API until both
  // agree (the page refreshes from the live stream).
  await page.waitForFunction(async (tok) => {
    const r = await fetch('/api/v1/overview', { headers: { Authorization: `Bearer ${tok}` } });
    const k = await r.json();
    const v = (key) => document.querySelector(`#kpi-strip [data-kpi=${key}]`)?.dataset.value;
    return v('open_total') === String(k.open_total) && v('devices_total') === String(k.devices_total) &&
      v('open_critical') === String(k.open_by_severity.critical) && v('active_events') === String(k.active_events);
  }, token, { polling: 500 });
  const kpis = (await api(token, 'GET', '/overview')).body;
  check(kpis.devices_total > 0, 'the demo has devices');
  check(kpis.active_events >= 1, `the demo's concert is in progress (${kpis.active_events})`);
  const mtta = await page.locator('#kpi-strip [data-kpi=mtta] .kpi-value').innerText();
  check(kpis.mtta_today_s == null ? mtta === '—' : /\d/.test(mtta) && !mtta.includes('.'), `MTTA formatted as a duration: ${mtta}`);

  step('overview: the alarm-health panel shows GET /api/v1/alarm-health and its thresholds');
  await page.locator('#alarm-health [data-health=peak]').waitFor();
  await page.waitForFunction(async (tok) => {
    const r = await fetch('/api/v1/alarm-health', { headers: { Authorization: `Bearer ${tok}` } });
    const d = await r.json();
    const v = (key) => document.querySelector(`#alarm-health [data-health=${key}]`)?.dataset.value;
    return v('peak') === String(d.peak_per_window) && v('arrivals') === String(d.arrivals) &&
      v('standing') === String(d.standing) && v('stale') === String(d.stale) && v('chattering') === String(d.chattering);
  }, token, { polling: 500 });
  const health = (await api(token, 'GET', '/alarm-health')).body;
  check(health.arrivals >= 1 && health.peak_per_window >= 1, `the incident opened above is an arrival: ${JSON.stringify(health)}`);
  check(health.thresholds.flood_per_window === 10 && health.thresholds.window_minutes === 10, 'ISA-18.2 thresholds');
  const healthText = await page.locator('#alarm-health').innerText();
  check(/Santé des alarmes/.test(healthText) && /inondation au-delà de 10 \/ 10 min/.test(healthText), `French labels and the flood threshold: ${healthText}`);
  const average = await page.locator('#alarm-health [data-health=average] .kpi-value').innerText();
  check(/^\d+,\d\d$/.test(average), `the average in French notation: ${average}`);
  check((await page.locator('#alarm-health').getAttribute('data-flood')) === String(health.peak_per_window > 10), 'the flood flag follows the worst window');

  step('overview: the handover lists the open incidents');
  const handover = (await api(token, 'GET', '/handover')).body;
  check(handover.open_incidents.some((i) => i.device === panel.id), 'the new incident is in the handover');
  for (const i of handover.open_incidents.slice(0, 20)) {
    await page.locator(`#handover-open tr[data-id="${i.id}"]`).waitFor();
  }
  if (handover.log.length) await page.locator('#handover-log tbody tr').first().waitFor();
  // Moving the shift start reloads the log.
  await page.locator('#handover-since').fill(await localInputIn(page, Date.parse(kpis.now), -1));
  await page.locator('#handover-since').dispatchEvent('change');
  await page.locator('#handover-reset').click();
  await page.locator('#handover-reset').blur();
  if (handover.log.length) await page.locator('#handover-log tbody tr').first().waitFor();
  await shot('overview.png');

  step('events: the demo concert is listed, in progress');
  await page.locator('a.tab[data-route=events]').click();
  const concert = page.locator('li.event-row[data-id="zenith-concert"][data-status=active]');
  await concert.waitFor();
  const concertApi = (await api(token, 'GET', '/events/zenith-concert')).body;
  check(concertApi.status === 'active', `zenith-concert is active: ${concertApi.status}`);
  if (concertApi.occupancy == null) {
    // Never a number when the aggregate is withheld.
    const label = await concert.locator('.gauge-label').innerText();
    await concert.locator('.gauge[data-occupancy=null] .below').waitFor();
    check(!/\d+\s*\/\s*\d/.test(label), `withheld occupancy is not shown as a number: ${label}`);
  } else {
    await concert.locator('.gauge:not([data-occupancy=null])').waitFor();
  }
  await concert.click();
  await page.locator('#event-detail[data-id="zenith-concert"]').waitFor();
  await page.locator('#event-map[data-ready=true]').waitFor();
  await page.locator('#event-rules').waitFor();
  await shot('events.png');

  step('events: declare — import a GeoJSON file');
  await page.locator('#event-new').click();
  await page.locator('#event-form').waitFor();
  await page.locator('#event-draw-map[data-ready=true]').waitFor();
  const square = { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry: { type: 'Polygon',
    coordinates: [[[5.03, 47.31], [5.05, 47.31], [5.05, 47.33], [5.03, 47.33], [5.03, 47.31]]] } }] };
  await page.locator('#event-import').setInputFiles({ name: 'perimetre.geojson', mimeType: 'application/geo+json', buffer: Buffer.from(JSON.stringify(square)) });
  await page.locator('#perimeter-status[data-closed=true][data-vertices="4"]').waitFor();
  await page.locator('#perimeter-clear').click();
  await page.locator('#perimeter-status[data-vertices="0"]').waitFor();

  step('events: declare — draw the perimeter with mouse clicks');
  const box = await page.locator('#event-draw-map canvas').boundingBox();
  const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
  await page.mouse.click(cx - 90, cy - 60);
  await page.mouse.click(cx + 90, cy - 60);
  await page.mouse.click(cx + 90, cy + 60);
  await page.mouse.click(cx + 20, cy + 100); // a stray vertex…
  await page.locator('#perimeter-status[data-vertices="4"][data-closed=false]').waitFor();
  await page.locator('#perimeter-undo').click(); // …undone
  await page.locator('#perimeter-status[data-vertices="3"]').waitFor();
  await page.mouse.dblclick(cx - 90, cy + 60); // the last vertex, and the polygon closes
  await page.locator('#perimeter-status[data-vertices="4"][data-closed=true]').waitFor();
  const drawnRing = await page.evaluate(() => window.__beffroi.draw.vertices);

  const name = `Braderie e2e ${Date.now() % 100000}`;
  await page.locator('#event-name').fill(name);
  await page.locator('#event-starts').fill(await localInputIn(page, Date.parse(kpis.now), -30));
  await page.locator('#event-ends').fill(await localInputIn(page, Date.parse(kpis.now), 180));
  await page.locator('#event-warning').fill('500');
  await page.locator('#event-critical').fill('800');

  step('events: a rule the server rejects shows its line and field');
  await page.locator('#event-rules-input').fill('[[rule]]\nid = "crowd"\ntitle = "Foule"\nseverity = "apocalyptic"\n');
  await page.locator('#event-submit').click();
  const ruleError = page.locator('#event-rules-errors li').first();
  await ruleError.waitFor();
  const ruleErrorText = await ruleError.innerText();
  check(/\d/.test(ruleErrorText), `the rule error gives its line: ${ruleErrorText}`);
  // The 400 was expected: not a page error.
  for (let i = errors.length - 1; i >= 0; i--) if (/^400 .*\/api\/v1\/events$/.test(errors[i])) errors.splice(i, 1);
  await page.locator('#event-form h2').scrollIntoViewIfNeeded();
  await shot('event-form.png');
  await page.locator('#event-rules-input').fill('');

  step('events: declared, listed, in force');
  await page.locator('#event-submit').click();
  const detail = page.locator('#event-detail[data-status=active]', { hasText: name });
  await detail.waitFor();
  const id = await detail.getAttribute('data-id');
  await page.locator(`li.event-row[data-id="${id}"][data-status=active]`).waitFor();
  check(page.url().endsWith(`#/events/${id}`), `the page shows the new event: ${page.url()}`);
  const created = (await api(token, 'GET', `/events/${id}`)).body;
  check(created.name === name && created.status === 'active' && created.origin === 'api', `the API has it: ${JSON.stringify(created)}`);
  check(created.capacity?.warning === 500 && created.capacity?.critical === 800, 'capacity thresholds saved');
  const ring = created.perimeter.coordinates[0];
  check(ring.length === 5 && drawnRing.every((p, i) => Math.abs(p[0] - ring[i][0]) < 1e-9 && Math.abs(p[1] - ring[i][1]) < 1e-9),
    `the saved perimeter is the drawn one: ${JSON.stringify(ring)}`);
  await page.locator('#event-map[data-ready=true]').waitFor();
  await shot('event.png');

  step('events: cancel');
  await page.locator('#event-cancel').click();
  await page.locator('#event-cancel.armed').click();
  await page.locator(`#event-detail[data-id="${id}"][data-status=cancelled]`).waitFor();
  await page.locator(`li.event-row[data-id="${id}"][data-status=cancelled]`).waitFor();
  const cancelled = (await api(token, 'GET', `/events/${id}`)).body;
  check(cancelled.status === 'cancelled' && cancelled.cancelled_by, `cancelled through the API: ${JSON.stringify(cancelled)}`);

  await page.locator('a.tab[data-route=incidents]').click();
  await page.locator('#queue-title').waitFor();
}
