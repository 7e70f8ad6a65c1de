// Screens fitted to roles: node web/e2e/roles.mjs <base-url> <accounts.json> <screenshot-dir>
// <accounts.json>: {"user": "password", …} — the demo's accounts, one per role, and admin.
// For each role, logs in to the French console, opens every tab it shows and every other
// route by its address, and checks that no request was refused (403) and that no raw
// server text (English, "permission") is on screen. Then the operator assigns a unit of
// their communes to an incident of their communes. Exits non-zero on the first failure;
// prints ROLES E2E OK at the end.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiLogin, launch, step } from './lib.mjs';

const [base, accountsFile, shots] = process.argv.slice(2);
if (!base || !accountsFile || !shots) {
  console.error('usage: node web/e2e/roles.mjs <base-url> <accounts.json> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const accounts = JSON.parse(readFileSync(accountsFile, 'utf8'));
const ROLES = ['operator', 'supervisor', 'technician', 'dpo', 'auditor', 'security_analyst', 'crisis_director'];
const ROUTES = ['map', 'incidents', 'units', 'crisis', 'events', 'overview', 'privacy'];
// What a screen may never show: the server's own texts and the names of permissions.
const RAW = [/permission/i, /\bneeds\b/i, /\bno such\b/i, /\bforbidden\b/i, /\bError\b/, /\bnot found\b/i, /\bhttp_\d+/];

function check(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

async function api(token, method, path, body) {
  const r = await fetch(`${base}/api/v1${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

const { context, close } = await launch({ locale: 'fr-FR' });
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(20000);
const refused = []; // every 403, whoever asked
const serverTexts = new Set(); // the messages of every error answer
const pageErrors = [];
let inflight = 0;
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('request', (r) => { if (r.url().includes('/api/v1/') && !r.url().includes('/stream')) inflight++; });
const done = (r) => { if (r.url().includes('/api/v1/') && !r.url().includes('/stream')) inflight = Math.max(0, inflight - 1); };
page.on('requestfinished', done);
page.on('requestfailed', done);
let who = '';
page.on('response', async (r) => {
  if (!r.url().includes('/api/v1/')) return;
  if (r.status() === 403) refused.push(`${who}: 403 ${r.request().method()} ${r.url()}`);
  if (r.status() >= 400) {
    try {
      const m = (await r.json())?.error?.message;
      if (m) serverTexts.add(m);
    } catch { /* not JSON */ }
  }
});

/** Until no API request (the live stream aside) has been pending for two checks in a row. */
async function settle() {
  let quiet = 0;
  for (let i = 0; i < 80 && quiet < 2; i++) {
    await page.waitForTimeout(150);
    quiet = inflight === 0 ? quiet + 1 : 0;
  }
}

async function screenIsClean(where) {
  const text = await page.evaluate(() => document.body.innerText);
  for (const re of RAW) check(!re.test(text), `${where}: ${re} on screen: ${(text.match(new RegExp(`.{0,60}${re.source}.{0,60}`, re.flags)) ?? [''])[0]}`);
  for (const m of serverTexts) check(!text.includes(m), `${where}: the server's text "${m}" on screen`);
}

async function logIn(user) {
  who = user;
  await page.goto(base + '/#/');
  await page.locator('#login-user').fill(user);
  await page.locator('#login-password').fill(accounts[user]);
  await page.locator('#login-submit').click();
  await page.locator('#logout').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('nav.tabs a.tab').length > 0);
}

async function logOut() {
  await page.locator('#logout').click();
  await page.locator('#login-user').waitFor();
}

try {
  for (const role of ROLES) {
    check(accounts[role], `the demo printed the ${role} account`);
    step(`${role}: log in`);
    await logIn(role);
    const me = await page.evaluate(async () => (await fetch('/api/v1/auth/me')).json());
    const tabs = await page.$$eval('nav.tabs a.tab', (as) => as.map((a) => a.dataset.route));
    step(`  tabs ${tabs.join(', ')}`);
    check(tabs.length > 0, `${role} has tabs`);
    await settle();
    await screenIsClean(`${role} home`);
    for (const tab of tabs) {
      await page.locator(`nav.tabs a.tab[data-route=${tab}]`).click();
      await page.waitForFunction((r) => location.hash.startsWith(`#/${r}`), tab);
      await settle();
      await screenIsClean(`${role} ${tab}`);
      await page.screenshot({ path: join(shots, `${role}-${tab}.png`) });
    }
    // A route without its tab, typed or followed from a link, leads home instead.
    for (const route of ROUTES.filter((r) => !tabs.includes(r))) {
      await page.evaluate((r) => { location.hash = `#/${r}`; }, route);
      await page.waitForFunction((r) => !location.hash.startsWith(`#/${r}`), route);
      await settle();
      await screenIsClean(`${role} #/${route}`);
    }
    check(refused.length === 0, `no request refused: ${refused.join(' | ')}`);
    // Tabs are what the role may use: the key figures and the handover for the desk and its
    // supervision, units, crises and events for those who read them.
    const has = (p) => me.permissions.includes(p);
    const want = { map: has('device.read'), incidents: has('incident.read'), units: has('unit.read'), crisis: has('crisis.read'),
      events: has('event.read'), overview: has('supervise') || has('handover'), privacy: has('privacy.read') };
    for (const [r, shown] of Object.entries(want)) check(tabs.includes(r) === shown, `${role}: tab ${r} shown=${tabs.includes(r)}, expected ${shown}`);
    if (role === 'operator') {
      check(tabs.includes('overview'), 'the operator has the Synthèse tab (the handover)');
      await page.locator('nav.tabs a.tab[data-route=overview]').click();
      await page.locator('#handover-open, #handover .muted').first().waitFor();
      check(await page.locator('#kpi-strip').count() === 0, 'the key figures stay the supervisor\'s');
    }
    if (role === 'technician' || role === 'security_analyst') {
      for (const r of ['units', 'crisis', 'events', 'overview']) check(!tabs.includes(r), `${role}: no ${r} tab`);
    }
    if (role === 'dpo') check(tabs.join() === 'privacy', `the DPO sees the data protection view only: ${tabs}`);
    await logOut();
  }

  step('operator: assigns a unit of their communes to an incident of their communes');
  const admin = await apiLogin(base, accounts.admin);
  const opToken = await apiLogin(base, accounts.operator, 'operator');
  const opMe = await api(opToken, 'GET', '/auth/me');
  check(opMe.body.permissions.includes('incident.assign'), `the operator may assign: ${opMe.body.permissions}`);
  const communes = opMe.body.scope.communes;
  check(Array.isArray(communes) && communes.length > 0, `the operator is scoped to communes: ${JSON.stringify(opMe.body.scope)}`);
  const units = (await api(opToken, 'GET', '/units')).body;
  const unit = units.find((u) => u.status === 'available' && u.communes.some((c) => communes.includes(c)));
  check(unit, `an available unit of ${communes}: ${JSON.stringify(units.map((u) => [u.id, u.status, u.communes]))}`);
  const panels = (await api(admin, 'GET', '/devices?kind=intrusion_panel')).body;
  const busy = new Set((await api(admin, 'GET', '/incidents?status=active')).body.map((i) => i.site));
  const panel = panels.find((d) => communes.includes(d.commune) && !busy.has(d.site));
  check(panel, `an intrusion panel in ${communes} without an incident`);
  const ingest = await api(admin, 'POST', `/devices/${panel.id}/observations`, [{ n: 'intrusion', vb: true }]);
  check(ingest.status === 200 && ingest.body.accepted === 1, `observation accepted: ${JSON.stringify(ingest)}`);
  await logIn('operator');
  await page.locator('nav.tabs a.tab[data-route=incidents]').click();
  let incident = null;
  for (let i = 0; i < 100 && !incident; i++) {
    const list = (await api(opToken, 'GET', '/incidents?status=active')).body;
    incident = list.find((x) => x.device === panel.id);
    if (!incident) await page.waitForTimeout(100);
  }
  check(incident, `the operator sees the incident of ${panel.id}`);
  await page.evaluate((id) => { location.hash = `#/incidents/${id}`; }, incident.id);
  const detail = page.locator('#incident-detail');
  await detail.locator('#detail-title').waitFor();
  await detail.locator('select#assign-unit').selectOption(unit.id);
  await detail.locator('#assign-submit').click();
  await detail.locator('#detail-unit', { hasText: unit.id }).waitFor();
  await settle();
  await screenIsClean('operator assignment');
  await page.screenshot({ path: join(shots, 'operator-assign.png') });
  const after = await api(admin, 'GET', `/units/${unit.id}`);
  check(after.body.status === 'engaged' && after.body.missions.includes(incident.id), `the unit is engaged: ${JSON.stringify(after.body)}`);
  console.log(`ASSIGNED ${incident.id} ${unit.id}`);

  check(refused.length === 0, `no request refused: ${refused.join(' | ')}`);
  const serious = pageErrors.filter((e) => !/GL Driver/.test(e));
  check(serious.length === 0, `no error in the page: ${serious.join(' | ')}`);
  console.log('ROLES E2E OK');
} catch (e) {
  await page.screenshot({ path: join(shots, 'roles-failure.png') }).catch(() => {});
  console.error(e.stack || String(e));
  await close();
  process.exit(1);
}
await close();
