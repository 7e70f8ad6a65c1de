// The French console speaks French:
//   node web/e2e/language.mjs <base-url> <accounts.json> <english.json> <screenshot-dir>
// <accounts.json>: {"user": "password", …} — the demo's accounts, one per role, and admin.
// <english.json>: ["not acknowledged after", …] — the literal parts of the English rendering
// of every message code the server emits.
// With the demo's scenarios playing on its simulated clock, drives an incident (comment,
// unit, procedure step, resolution) and a crisis (level, roles, entry) through the API, then
// visits every view of the French console as the roles that see them — queue, incident
// details and their logs, map and device panel, units, crisis page and report, events,
// overview and handover, privacy — and fails on any English text the server composes and on
// any number written the English way (`3.5`). Prints every finding, then LANGUAGE E2E OK if
// there is none.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiLogin, launch, step } from './lib.mjs';

const [base, accountsFile, englishFile, shots] = process.argv.slice(2);
if (!base || !accountsFile || !englishFile || !shots) {
  console.error('usage: node web/e2e/language.mjs <base-url> <accounts.json> <english.json> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const accounts = JSON.parse(readFileSync(accountsFile, 'utf8'));
const fragments = JSON.parse(readFileSync(englishFile, 'utf8'));

// English words of server text (a French screen has none of them), and English device words.
// A word inside an identifier (`dijon-ouche-gauge-01`, `flood-level-high`, `temp_c`) is not text.
const word = (w, flags = 'i') => new RegExp(`(?<![\\w-])${w}(?![\\w-])`, flags);
const WORDS = [word('after'), word('severity'), word('condition (active|cleared)'), word('device'),
  word('acknowledged'), word('not'), word('the'), word('for \\d+ min', ''), word('sum of'), word('counters'),
  word('warning'), word('critical', ''), word('major', ''), word('minor', ''), word('opened'), word('closed'),
  word('level'), word('attached'), word('gauge'), word('panel'), word('sensor'), word('reader'), word('detector'),
  word('counter'), word('unsigned'), word('message on the topic'), word('quarantined by'), word('true'), word('false'),
  word('silent for'), word('since'), word('within'),
  // An actor as the server writes it, not as people read it.
  /(?<![\w-])(rule|user):[\w-]/];
// A number written the English way: digits, a point, digits (not in an identifier, a version,
// an address or a standard's name such as ISA-18.2).
const ENGLISH_NUMBER = /(?<![\w.-])\d+\.\d+(?![\w.])/;

const findings = [];
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { context, close } = await launch({ locale: 'fr-FR' });
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(20000);
await page.addInitScript(() => localStorage.setItem('beffroi.lang', 'fr'));
let inflight = 0;
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('request', (r) => { if (r.url().includes('/api/v1/') && !r.url().includes('/stream')) inflight++; });
const done = (r) => { if (r.url().includes('/api/v1/') && !r.url().includes('/stream')) inflight = Math.max(0, inflight - 1); };
page.on('requestfinished', done);
page.on('requestfailed', done);

async function settle() {
  let quiet = 0;
  for (let i = 0; i < 80 && quiet < 2; i++) {
    await page.waitForTimeout(150);
    quiet = inflight === 0 ? quiet + 1 : 0;
  }
}

/** Every English fragment and English number on screen (frames included), as findings. */
async function scan(where) {
  let text = await page.evaluate(() => document.body.innerText);
  for (const f of page.frames()) {
    if (f === page.mainFrame()) continue;
    text += '\n' + await f.evaluate(() => document.body?.innerText ?? '').catch(() => '');
  }
  const around = (i, n) => text.slice(Math.max(0, i - 50), i + n + 50).replace(/\s+/g, ' ');
  const seen = new Set();
  const add = (what, i, n) => {
    const line = `${where}: ${what} in «${around(i, n)}»`;
    if (!seen.has(what)) { seen.add(what); findings.push(line); }
  };
  for (const f of fragments) {
    const m = text.match(word(f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), ''));
    if (m) add(`English "${f}"`, m.index, m[0].length);
  }
  for (const re of WORDS) {
    const m = text.match(re);
    if (m) add(`English ${re}`, m.index, m[0].length);
  }
  const m = text.match(ENGLISH_NUMBER);
  if (m) add(`number "${m[0]}" written the English way`, m.index, m[0].length);
}

async function logIn(user) {
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

async function visit(hash, where) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForTimeout(300);
  await settle();
  await scan(where);
}

try {
  const admin = await apiLogin(base, accounts.admin);
  step('scenarios play: waiting for incidents with reminders and escalations in their logs');
  let active = [];
  for (let i = 0; i < 90; i++) {
    active = (await api(admin, 'GET', '/incidents?status=active&limit=500')).body ?? [];
    if (active.length >= 4 && active.some((x) => x.severity === 'critical')) break;
    await sleep(1000);
  }
  check(active.length > 0, 'the scenarios opened incidents');
  // Critical incidents get their reminder 2 minutes (2 s at 60×) after opening.
  await sleep(8000);

  step('an incident handled through the API: comment, unit, procedure step, resolution');
  const units = (await api(admin, 'GET', '/units')).body ?? [];
  const handled = active.find((x) => x.status === 'new') ?? active[0];
  const act = (body) => api(admin, 'POST', `/incidents/${handled.id}/actions`, body);
  await act({ action: 'comment', text: 'Patrouille envoyée sur place' });
  const unit = units.find((u) => u.status === 'available');
  if (unit) await act({ action: 'assign', unit: unit.id });
  await act({ action: 'complete_step', step: 0 });
  await act({ action: 'acknowledge' });
  await act({ action: 'resolve' });

  step('a crisis through the API: opening, level, roles, entry');
  const opened = await api(admin, 'POST', '/crises', { kind: 'flood', title: 'Crue de l’Ouche', level: 1 });
  check(opened.status === 200 || opened.status === 201, `crisis opened: ${JSON.stringify(opened)}`);
  const crisis = opened.body.id;
  await api(admin, 'POST', `/crises/${crisis}/level`, { level: 2 });
  await api(admin, 'POST', `/crises/${crisis}/roles`, { role: 'dos', holder: 'Mme la maire' });
  await api(admin, 'POST', `/crises/${crisis}/roles`, { role: 'dos', holder: null });
  await api(admin, 'POST', `/crises/${crisis}/log`, { text: 'PC ouvert en mairie' });
  await sleep(4000);

  const incidents = ((await api(admin, 'GET', '/incidents?limit=500')).body ?? []).slice(0, 400);
  // Incident details to read: the handled one, and one per category and severity.
  const picked = new Map([[handled.id, handled]]);
  for (const i of incidents) {
    const k = `${i.category}/${i.severity}`;
    if (![...picked.values()].some((p) => `${p.category}/${p.severity}` === k)) picked.set(i.id, i);
  }
  const devices = ((await api(admin, 'GET', '/devices')).body ?? []);
  const kinds = new Map();
  for (const d of devices) if (!kinds.has(d.kind)) kinds.set(d.kind, d);

  const PLAN = {
    operator: ['incidents', 'map', 'units', 'overview'],
    supervisor: ['overview', 'incidents', 'units', 'events'],
    crisis_director: ['crisis', 'incidents', 'events'],
    security_analyst: ['incidents', 'map'],
    technician: ['map', 'incidents'],
    dpo: ['privacy'],
    admin: ['map', 'incidents', 'units', 'crisis', 'events', 'overview', 'privacy'],
  };
  for (const [role, routes] of Object.entries(PLAN)) {
    if (!accounts[role]) continue;
    step(`${role}: every view in French`);
    await logIn(role);
    const tabs = await page.$$eval('nav.tabs a.tab', (as) => as.map((a) => a.dataset.route));
    await settle();
    await scan(`${role} home`);
    for (const r of routes.filter((x) => tabs.includes(x))) {
      await visit(`#/${r}`, `${role} ${r}`);
      await page.screenshot({ path: join(shots, `${role}-${r}.png`) });
      if (r === 'incidents') {
        for (const id of picked.keys()) {
          await visit(`#/incidents/${id}`, `${role} incident ${id}`);
        }
      }
      if (r === 'map') {
        await page.waitForFunction(() => window.__beffroi?.showDevice, null, { timeout: 20000 }).catch(() => {});
        for (const d of kinds.values()) {
          const shown = await page.evaluate((id) => window.__beffroi?.showDevice?.(id), d.id).then(() => true).catch(() => false);
          if (!shown) continue;
          await page.waitForTimeout(300);
          await settle();
          await scan(`${role} map device ${d.id}`);
        }
      }
      if (r === 'crisis') {
        await visit(`#/crisis/${crisis}`, `${role} crisis ${crisis}`);
        await page.screenshot({ path: join(shots, `${role}-crisis-detail.png`) });
        const open = page.locator('#report-open');
        if (await open.count()) {
          await open.click();
          await page.locator('#report-frame').waitFor().catch(() => {});
          await settle();
          await scan(`${role} crisis report`);
        }
      }
    }
    await logOut();
  }

  const serious = pageErrors.filter((e) => !/GL Driver/.test(e));
  check(serious.length === 0, `no error in the page: ${serious.join(' | ')}`);
  for (const f of findings) console.log(`FINDING ${f}`);
  check(findings.length === 0, `${findings.length} English texts or numbers on French screens (see FINDING lines)`);
  console.log('LANGUAGE E2E OK');
} catch (e) {
  await page.screenshot({ path: join(shots, 'language-failure.png') }).catch(() => {});
  console.error(e.stack || String(e));
  await close();
  process.exit(1);
}
await close();
