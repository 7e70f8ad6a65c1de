// The console's browser test: node web/e2e/console.mjs <base-url> <password> <screenshot-dir>
// Logs in, sees the map, receives an incident live, handles it (acknowledge, SOP steps,
// assignment, resolve), goes through the units board and a crisis (crisis.mjs) and
// switches the language. Exits non-zero on the first failure.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiLogin, launch, login, step } from './lib.mjs';
import { eventsSteps } from './events.mjs';
import { crisisSteps } from './crisis.mjs';
import { privacySteps, pseudonymChipSteps } from './people.mjs';

const [base, password, shots] = process.argv.slice(2);
if (!base || !password || !shots) {
  console.error('usage: node web/e2e/console.mjs <base-url> <password> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const TIMEOUT = 20000;

async function api(token, method, path, body) {
  const r = await fetch(`${base}/api/v1${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

function check(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

const { context, close } = await launch();
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(TIMEOUT);
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });

try {
  step('login');
  await login(page, base, password);
  const kept = await page.evaluate(() => ({ csrf: sessionStorage.getItem('beffroi.csrf'), cookie: document.cookie }));
  check(kept.csrf, 'the CSRF token is kept in sessionStorage');
  check(!kept.cookie.includes('beffroi_session'), 'the session cookie is HttpOnly (not readable by the page)');
  const token = await apiLogin(base, password);

  step('map: communes and devices rendered');
  await page.locator('#map-counters[data-ready=true]').waitFor();
  const rendered = await page.evaluate(() => {
    const map = window.__beffroi.map;
    return {
      communes: map.queryRenderedFeatures({ layers: ['communes'] }).length,
      devices: map.queryRenderedFeatures({ layers: ['device-clusters', 'device-points'] }).length,
      loaded: Number(document.getElementById('map-counters').dataset.devices),
    };
  });
  const territory = await api(token, 'GET', '/territory');
  step(`  rendered ${JSON.stringify(rendered)}`);
  check(rendered.communes === territory.body.communes.length, `every commune is drawn (${rendered.communes} of ${territory.body.communes.length})`);
  check(rendered.devices > 0, 'device clusters or points are drawn');
  check(rendered.loaded === territory.body.devices, `every device is loaded (${rendered.loaded} of ${territory.body.devices})`);
  await page.screenshot({ path: join(shots, 'map.png') });

  step('device details and chart');
  const point = await page.evaluate(async () => {
    const map = window.__beffroi.map;
    map.jumpTo({ center: [5.0415, 47.322], zoom: 16.5 });
    await window.__beffroi.settled(); // the clusters of the new view are fetched and drawn
    // The point nearest the centre (not under the side panel).
    const c = map.project(map.getCenter());
    const pts = map.queryRenderedFeatures({ layers: ['device-points'] }).map((f) => map.project(f.geometry.coordinates));
    pts.sort((a, b) => Math.hypot(a.x - c.x, a.y - c.y) - Math.hypot(b.x - c.x, b.y - c.y));
    // …whose topmost feature is the device itself (not an incident drawn over it).
    const free = pts.find((p) => map.queryRenderedFeatures([p.x, p.y])[0]?.layer.id === 'device-points' && p.x > 420);
    const r = map.getCanvas().getBoundingClientRect();
    return free ? { x: r.left + free.x, y: r.top + free.y } : null;
  });
  check(point, 'a single device is drawn at street zoom');
  await page.mouse.click(point.x, point.y);
  await page.locator('#device-details h3').waitFor();
  await page.screenshot({ path: join(shots, 'device.png') });

  await privacySteps(page, { api, check, token, shots });

  step('queue; an incident arrives live');
  await page.locator('a.tab[data-route=incidents]').click();
  await page.locator('#queue-count').waitFor();
  const devices = await api(token, 'GET', '/devices?kind=intrusion_panel');
  const active = await api(token, 'GET', '/incidents?status=active');
  const busy = new Set(active.body.map((i) => i.site));
  const panel = devices.body.find((d) => /mairie/.test(d.site) && !busy.has(d.site));
  check(panel, 'a town-hall intrusion panel without an incident');
  const site = (await api(token, 'GET', '/territory/sites')).body.features.find((f) => f.properties.id === panel.site);
  const navigations = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });
  const ingest = await api(token, 'POST', `/devices/${panel.id}/observations`, [{ n: 'intrusion', vb: true }]);
  check(ingest.status === 200 && ingest.body.accepted === 1, `observation accepted: ${JSON.stringify(ingest)}`);
  const row = page.locator('li.incident-row[data-status=new]', { hasText: site.properties.name });
  await row.first().waitFor();
  check(navigations.every((u) => !u.startsWith(base + '/?') && u.includes('#')), `no reload: ${navigations}`);
  await page.screenshot({ path: join(shots, 'queue.png') });

  step('filters and keyboard');
  await page.locator('#filter-category').selectOption('intrusion');
  await row.first().waitFor();
  await page.locator('#filter-category').selectOption('flood');
  await row.first().waitFor({ state: 'detached' });
  await page.locator('#filter-category').selectOption('');
  await row.first().waitFor();
  await page.keyboard.press('j');
  await page.waitForFunction(() => /^#\/incidents\/\d+$/.test(location.hash));
  await page.locator('#incident-detail #detail-title').waitFor();

  step('detail: acknowledge');
  await row.first().click();
  const detail = page.locator('#incident-detail');
  await detail.locator('#detail-status[data-status=new]').waitFor();
  await page.keyboard.press('a'); // the shortcut
  await detail.locator('#detail-status[data-status=acknowledged]').waitFor();

  step('SOP steps ticked');
  const steps = await detail.locator('#sop li.step').count();
  check(steps > 0, 'the intrusion procedure has steps');
  for (let i = 0; i < steps; i++) {
    await detail.locator(`#sop li.step[data-index="${i}"] button.tick`).click();
    await detail.locator(`#sop li.step[data-index="${i}"][data-done=true]`).waitFor();
  }
  const doneText = await detail.locator('#sop li.step').first().locator('.step-meta').innerText();
  check(doneText.includes('admin'), `the step says who ticked it: ${doneText}`);

  step('assign a unit');
  const incidentId = Number(await detail.getAttribute('data-id'));
  const units = await api(token, 'GET', '/units');
  check(units.status === 200 && units.body.length > 0, `GET /api/v1/units lists the demo units: ${units.status}`);
  const unit = (units.body.find((u) => u.status === 'available' && u.communes.includes(panel.commune))
    ?? units.body.find((u) => u.status === 'available' && !u.communes.length))?.id;
  check(unit, `an available unit for ${panel.commune}`);
  await detail.locator('select#assign-unit').selectOption(unit);
  await detail.locator('#assign-submit').click();
  await detail.locator('#detail-unit', { hasText: unit }).waitFor();
  await page.locator(`li.incident-row.selected .unit`, { hasText: unit }).waitFor();
  console.log(`UNIT ${unit}`);
  // The unit is engaged on this mission: on the server, and in the assignment list (live).
  const engaged = await api(token, 'GET', `/units/${unit}`);
  check(engaged.body.status === 'engaged' && engaged.body.missions.includes(incidentId), `the unit is engaged on #${incidentId}: ${JSON.stringify(engaged.body)}`);
  await detail.locator(`select#assign-unit option[value="${unit}"]`, { hasText: /engagée|engaged/ }).waitFor({ state: 'attached' });

  step('comment');
  await detail.locator('#comment-text').fill('Levée de doute vidéo : RAS');
  await detail.locator('#comment-submit').click();
  await detail.locator('#incident-log li', { hasText: 'Levée de doute vidéo' }).waitFor();
  await page.screenshot({ path: join(shots, 'detail.png') });
  await pseudonymChipSteps(page, { check, detail });

  step('resolve');
  await detail.locator('button[data-action=resolve]').click();
  await detail.locator('#detail-status[data-status=resolved]').waitFor();
  // The open queue drops it.
  await page.locator(`li.incident-row.selected`).waitFor({ state: 'detached' });

  await crisisSteps(page, { api, check, token, shots, incident: incidentId, unit });
  await eventsSteps(page, { token, api, check, shots, errors });

  step('language switch');
  await page.locator('a.tab[data-route=incidents]').click();
  const before = await page.locator('#queue-title').innerText();
  const lang = await page.evaluate(() => document.documentElement.lang);
  await page.locator('#lang-switch').click();
  const expected = lang === 'fr' ? 'Incident queue' : 'File des incidents';
  await page.locator('#queue-title', { hasText: expected }).waitFor();
  check(before !== expected, `the title changed from "${before}"`);
  check(await page.evaluate(() => document.documentElement.lang) !== lang, 'the document language changed');

  step('help overlay');
  await page.keyboard.press('?');
  await page.locator('#help:not([hidden])').waitFor();
  await page.keyboard.press('Escape');
  await page.locator('#help').waitFor({ state: 'hidden' });

  // /auth/me comes with the access-control work; the console treats its 404 as "all permissions".
  const serious = errors.filter((e) => !/Failed to load resource|GL Driver/.test(e));
  check(serious.length === 0, `no error in the page: ${serious.join(' | ')}`);
  console.log('CONSOLE E2E OK');
} catch (e) {
  await page.screenshot({ path: join(shots, 'failure.png') }).catch(() => {});
  console.error(e.stack || String(e));
  console.error('page errors:', errors.join('\n'));
  await close();
  process.exit(1);
}
await close();
