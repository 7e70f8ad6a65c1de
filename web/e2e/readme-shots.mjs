// The README's screenshots: every view of a running `beffroi demo`, in English.
//
//   node web/e2e/readme-shots.mjs http://127.0.0.1:8080 "$BEFFROI_ADMIN_PASSWORD" docs/screenshots
//
// Run it after a few minutes of demo play, so that the queue has incidents of every
// severity and situations of several incidents. It acts through the API (acknowledges and
// assigns one incident, opens a crisis for Dijon, opens and closes a snow crisis for its
// report), then photographs the views: the queue of situations under the alerting banner,
// an incident's evidence chart, and the rest.

import { launch, login } from './lib.mjs';

const [base, password, out] = process.argv.slice(2);
if (!base || !password || !out) {
  console.error('usage: readme-shots.mjs BASE_URL PASSWORD OUT_DIR');
  process.exit(2);
}

const auth = await (await fetch(`${base}/api/v1/auth/login`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ username: 'admin', password }),
})).json();
async function api(method, path, body) {
  const r = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const open = await api('GET', '/incidents?status=open');
const fresh = open.filter((i) => i.status === 'new');
// The one worked on: not a critical one (the alerting banner stays for the pictures).
const incident = fresh.find((i) => i.severity === 'major') ?? fresh[0];
if (!incident) throw new Error('no open incident yet: let the demo play a few minutes');
// The evidence: an incident of several in one situation, fired by a threshold.
const situations = await api('GET', '/situations');
const grouped = situations.filter((s) => s.incidents.length > 1);
let evidence = null;
for (const s of [...grouped, ...situations]) {
  const d = await api('GET', `/incidents/${s.lead}`);
  if (d.trigger && d.trigger.threshold != null && d.device) { evidence = d; break; }
}
const units = await api('GET', '/units');
const unit = units.find((u) => u.status === 'available' && u.kind === 'police')
  ?? units.find((u) => u.status === 'available');
await api('POST', `/incidents/${incident.id}/actions`, { action: 'acknowledge' });
await api('POST', `/incidents/${incident.id}/actions`, { action: 'complete_step', step: 0 });
await api('POST', `/incidents/${incident.id}/actions`, { action: 'assign', unit: unit.id });
await api('POST', `/incidents/${incident.id}/actions`, { action: 'comment', text: 'Patrouille sur place, levée de doute en cours.' });
const flood = await api('POST', '/crises', { kind: 'flood', title: "Crue de l'Ouche", communes: ['dijon'], level: 2 });
await api('POST', `/crises/${flood.id}/roles`, { role: 'dos', holder: 'Mme la maire' });
await api('POST', `/crises/${flood.id}/roles`, { role: 'rac', holder: 'DGS — M. Bernard' });
await api('POST', `/crises/${flood.id}/log`, { text: 'Montée des eaux quai Nicolas-Rolin : fermeture de la voie sur berge' });
await api('POST', `/crises/${flood.id}/log`, { text: "Gymnase des Grésilles ouvert comme centre d'accueil (120 places)" });
const snow = await api('POST', '/crises', { kind: 'snow', title: 'Épisode neigeux — combes', communes: ['talant', 'daix'], level: 1 });
await api('POST', `/crises/${snow.id}/log`, { text: 'Salage des combes engagé, astreinte voirie sur place' });
await api('POST', `/crises/${snow.id}/close`, { summary: 'Chaussées dégagées à 9 h ; aucun accident.' });

const { context, close } = await launch({ locale: 'en-GB' });
const page = await context.newPage();
await login(page, base, password);
async function shot(hash, name, ready, scrollTo) {
  await page.goto(`${base}/${hash}`);
  await page.locator(ready).first().waitFor();
  if (scrollTo) await page.locator(scrollTo).first().scrollIntoViewIfNeeded();
  // A picture, not a test: give the map's clusters, the charts and the transitions a moment
  // (the live stream keeps the network busy, so there is no idle state to wait for).
  await page.waitForTimeout(2500);
  await page.screenshot({ path: `${out}/${name}.png` });
}
await shot('#/map', 'map', '.maplibregl-canvas');
await shot('#/incidents', 'situations', grouped.length ? 'li.situation' : 'li.incident-row');
if (evidence) await shot(`#/incidents/${evidence.id}`, 'evidence', 'svg.evidence-chart', '#evidence');
await shot(`#/incidents/${incident.id}`, 'detail', '#detail-title');
await shot('#/units', 'units', '.unit-status');
await shot(`#/crisis/${flood.id}`, 'crisis', '.crisis-view');
await shot(`#/crisis/${snow.id}`, 'report', 'iframe');
await shot('#/events/zenith-concert', 'events', '.maplibregl-canvas');
await shot('#/overview', 'overview', '.kpi-strip');
await close();
console.log(`screenshots in ${out}`);
