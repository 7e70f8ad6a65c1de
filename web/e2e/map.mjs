// The map of a user scoped to communes: node web/e2e/map.mjs <base-url> <password> <screenshot-dir>
// The server has an operator `op` (the admin's password) scoped to dijon and talant. The
// script opens incidents in and out of that scope through the admin's API, resolves one,
// then logs in as the operator: the map is framed on the two communes, counts two
// communes, the operator's devices and as many open incidents as the queue; the device
// panel of a role without quarantine prints no literal "false". Exits non-zero on failure.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiLogin, launch, login, step } from './lib.mjs';

const [base, password, shots] = process.argv.slice(2);
if (!base || !password || !shots) {
  console.error('usage: node web/e2e/map.mjs <base-url> <password> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const SCOPE = ['dijon', 'talant'];

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
page.setDefaultTimeout(20000);
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));

try {
  step('incidents in and out of the operator\'s communes; one resolved');
  const admin = await apiLogin(base, password);
  const panels = (await api(admin, 'GET', '/devices?kind=intrusion_panel')).body;
  const bySite = new Map();
  for (const d of panels) if (!bySite.has(d.site)) bySite.set(d.site, d);
  const inScope = [...bySite.values()].filter((d) => SCOPE.includes(d.commune)).slice(0, 3);
  const outside = [...bySite.values()].filter((d) => !SCOPE.includes(d.commune)).slice(0, 2);
  check(inScope.length === 3 && outside.length === 2, `intrusion panels in and out of scope: ${inScope.length}, ${outside.length}`);
  for (const d of [...inScope, ...outside]) {
    const r = await api(admin, 'POST', `/devices/${d.id}/observations`, [{ n: 'intrusion', vb: true }]);
    check(r.status === 200 && r.body.accepted === 1, `observation accepted: ${JSON.stringify(r)}`);
  }
  let opened = [];
  for (let i = 0; i < 50 && opened.length < 5; i++) {
    opened = (await api(admin, 'GET', '/incidents?status=open')).body.filter((x) => x.rule === 'intrusion-alarm');
    if (opened.length < 5) await new Promise((r) => setTimeout(r, 100));
  }
  check(opened.length === 5, `five intrusion incidents: ${opened.length}`);
  const mine = opened.find((x) => SCOPE.includes(x.commune));
  const resolved = await api(admin, 'POST', `/incidents/${mine.id}/actions`, { action: 'resolve' });
  check(resolved.status === 200, `resolve: ${JSON.stringify(resolved.body)}`);

  const op = await apiLogin(base, password, 'op');
  const me = (await api(op, 'GET', '/auth/me')).body;
  check(JSON.stringify([...me.scope.communes].sort()) === JSON.stringify(SCOPE), `op's scope: ${JSON.stringify(me.scope)}`);
  const open = (await api(op, 'GET', '/incidents?status=open')).body;
  const active = (await api(op, 'GET', '/incidents?status=active')).body;
  check(open.length === 2 && active.length === 3, `op sees 2 open and 3 active: ${open.length}, ${active.length}`);
  const devices = (await api(op, 'GET', '/devices')).body;

  step('the operator\'s map');
  await login(page, base, password, 'op');
  await page.locator('#map-counters[data-ready=true]').waitFor();
  await page.evaluate(() => window.__beffroi.settled());
  const m = await page.evaluate(() => {
    const map = window.__beffroi.map;
    const b = map.getBounds();
    const c = document.getElementById('map-counters');
    return {
      framedOn: window.__beffroi.framedOn,
      bounds: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()],
      devices: Number(c.dataset.devices),
      communes: Number(c.dataset.communes),
      incidents: Number(c.dataset.incidents),
      text: c.textContent,
    };
  });
  step(`  ${JSON.stringify(m)}`);
  check(JSON.stringify([...m.framedOn].sort()) === JSON.stringify(SCOPE), `framed on the operator's communes: ${m.framedOn}`);
  // Every commune's label position: the scope's inside the view, not all the others.
  const communes = (await api(op, 'GET', '/territory/communes')).body.features;
  const within = (f) => {
    const [x, y] = f.properties.label;
    return x >= m.bounds[0] && x <= m.bounds[2] && y >= m.bounds[1] && y <= m.bounds[3];
  };
  check(communes.filter((f) => SCOPE.includes(f.properties.id)).every(within), 'the scope\'s communes are in view');
  const others = communes.filter((f) => !SCOPE.includes(f.properties.id));
  check(others.filter(within).length < others.length / 2, `the view is not the territory's: ${others.filter(within).length} of ${others.length} other communes in view`);
  check(m.communes === 2, `two communes counted: ${m.communes}`);
  check(m.devices === devices.length, `the operator's devices counted: ${m.devices} of ${devices.length}`);
  check(m.incidents === open.length, `open incidents as the API counts them: ${m.incidents} vs ${open.length}`);
  const drawn = await page.evaluate(() => window.__beffroi.map.queryRenderedFeatures({ layers: ['incidents'] }).length);
  check(drawn <= open.length, `no resolved incident drawn as open: ${drawn}`);
  await page.screenshot({ path: join(shots, 'map-operator.png') });

  step('the open incidents beside the map; locate');
  const rows = page.locator('#map-incidents li.map-incident');
  check((await rows.count()) === open.length, `${await rows.count()} incidents listed, ${open.length} open`);
  const first = Number(await rows.first().getAttribute('data-id'));
  const target = open.find((i) => i.id === first);
  check(target, `the listed incident ${first} is an open one`);
  await rows.first().locator('button.locate').click();
  await page.waitForFunction((id) => window.__beffroi.located === id, first);
  await page.evaluate(() => new Promise((r) => (window.__beffroi.map.isMoving() ? window.__beffroi.map.once('moveend', r) : r())));
  const centre = await page.evaluate(() => { const c = window.__beffroi.map.getCenter(); return [c.lng, c.lat, window.__beffroi.map.getZoom()]; });
  check(Math.hypot(centre[0] - target.position[0], centre[1] - target.position[1]) < 1e-3 && centre[2] >= 15, `located on ${target.position}: ${centre}`);
  await page.locator('#map-incidents-severity').selectOption('info');
  check((await rows.count()) === 0, 'no info incident among intrusions');
  await page.locator('#map-incidents-severity').selectOption('');

  step('device panel without quarantine: no literal false');
  await page.evaluate((id) => window.__beffroi.showDevice(id), devices[0].id);
  await page.locator('#device-details h3').waitFor();
  await page.locator('#device-quarantined').waitFor();
  const panel = await page.evaluate(() => ({
    details: document.getElementById('device-details').innerText,
    side: document.querySelector('.map-side').innerText,
  }));
  check(!/\bfalse\b|\bnull\b|\bundefined\b/.test(panel.side), `no false/null/undefined printed: ${panel.side}`);
  check(!(await page.locator('#quarantine-quarantine').count()), 'no quarantine form for an operator');

  step('the queue counts what the map counts');
  await page.locator('a.tab[data-route=incidents]').click();
  await page.locator('#queue-count').waitFor();
  await page.waitForFunction(() => document.getElementById('queue-count').dataset.count !== undefined);
  const queue = Number(await page.locator('#queue-count').getAttribute('data-count'));
  check(queue === m.incidents, `queue ${queue} = map ${m.incidents}`);

  check(errors.length === 0, `no page errors: ${errors.join('; ')}`);
  console.log('MAP E2E OK');
} catch (e) {
  console.error(e.stack || String(e));
  await page.screenshot({ path: join(shots, 'map-failure.png') }).catch(() => {});
  await close();
  process.exit(1);
}
await close();
