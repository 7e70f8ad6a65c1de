// The shift handover: node web/e2e/handover.mjs <base-url> <accounts.json> <screenshot-dir>
// <accounts.json>: {"user": "password", …} — the demo's accounts (operator, supervisor).
// The outgoing operator writes a note carrying a plate and a phone number: it is shown
// pseudonymised, with its time in the territory's time zone; the handover lists people's
// actions only (no reminder, raise again or condition cleared); printed, it drops the
// navigation, the form and the buttons and fits on one or two pages. The incoming
// supervisor sees the note unread and marks it read: the reader is shown. Then a critical
// incident arrives in the supervisor's communes: the alerting counts it; shelved from its
// detail (a reason, a duration), it no longer counts nor sounds, is tagged in the queue and
// found by the filter, and is listed in the handover; unshelved, it counts again. Exits
// non-zero on the first failure; prints HANDOVER E2E OK at the end.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiLogin, launch, step } from './lib.mjs';

const [base, accountsFile, shots] = process.argv.slice(2);
if (!base || !accountsFile || !shots) {
  console.error('usage: node web/e2e/handover.mjs <base-url> <accounts.json> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const accounts = JSON.parse(readFileSync(accountsFile, 'utf8'));
const CHATTER = ['reminder', 'raised_again', 'condition_cleared', 'auto_resolved', 'escalated', 'escalated_to_supervisor'];

async function api(token, method, path, body) {
  const r = await fetch(`${base}/api/v1${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

const alerted = () => page.evaluate(() => window.__beffroi?.alerting?.count ?? null);

function check(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

const { context, close } = await launch({ locale: 'fr-FR' });
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(20000);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));

async function logIn(user) {
  await page.goto(base + '/#/');
  await page.locator('#login-user').fill(user);
  await page.locator('#login-password').fill(accounts[user]);
  await page.locator('#login-submit').click();
  await page.locator('#logout').waitFor();
}

async function logOut() {
  await page.locator('#logout').click();
  await page.locator('#login-user').waitFor();
}

/** The handover as the page's session reads it (the same call as the view). */
async function handover() {
  return page.evaluate(async () => (await fetch('/api/v1/handover')).json());
}

async function openHandover() {
  await page.goto(base + '/#/overview');
  await page.locator('#handover-notes').waitFor();
}

try {
  check(accounts.operator && accounts.supervisor, 'the demo printed the operator and supervisor accounts');

  step('operator: write a handover note carrying a plate and a phone number');
  await logIn('operator');
  await openHandover();
  const typed = 'Véhicule AB-123-CD devant la mairie, riverain joint au 06 12 34 56 78. Pompe 3 à surveiller.';
  await page.locator('#handover-note-text').fill(typed);
  await page.locator('#handover-note-submit').click();
  const note = page.locator('ul.notes li.note').first();
  await note.locator('.note-text', { hasText: 'Pompe 3 à surveiller' }).waitFor();
  const shown = await note.locator('.note-text').innerText();
  check(!shown.includes('AB-123-CD') && !shown.includes('06 12 34 56 78'), `the note is shown pseudonymised: ${shown}`);
  check(/plate:|\[plate\]/.test(shown), `the plate became a pseudonym: ${shown}`);
  const body = await page.evaluate(() => document.body.innerText);
  check(!body.includes('AB-123-CD'), 'the plate is nowhere on the page');

  step('times in the territory time zone, the author\'s own note not read by them');
  const h = await handover();
  check(h.timezone === 'Europe/Paris', `the territory's time zone: ${h.timezone}`);
  const mine = h.notes[0];
  check(mine.text === shown.trim(), 'the page shows the stored note');
  const expected = new Intl.DateTimeFormat('fr-FR', { dateStyle: 'short', timeStyle: 'short', timeZone: h.timezone }).format(new Date(mine.at));
  const head = await note.locator('.note-head').innerText();
  check(head.includes(expected), `the note's time is "${expected}" (Europe/Paris): ${head}`);

  step('the log holds people\'s actions, not the chatter');
  const actions = await page.$$eval('#handover-log tbody tr', (rows) => rows.map((r) => r.dataset.action));
  check(actions.length === h.log.length, `every line the API hands over is shown (${actions.length} / ${h.log.length})`);
  for (const a of actions) check(!CHATTER.includes(a), `no chatter in the handover log: ${a}`);
  await page.screenshot({ path: join(shots, 'handover-operator.png'), fullPage: true });

  step('printed: no navigation, no form, no button; one or two pages');
  await page.emulateMedia({ media: 'print' });
  for (const sel of ['header.topbar', 'nav.tabs', '#handover-note-form', '#handover-print', '.health-wrap']) {
    const visible = await page.locator(sel).first().isVisible().catch(() => false);
    check(!visible, `${sel} is not printed`);
  }
  check(await page.locator('.print-head').isVisible(), 'the printed page says what it is');
  const pdf = await page.pdf({ format: 'A4', printBackground: false });
  const pages = (pdf.toString('latin1').match(/\/Type\s*\/Page[^s]/g) ?? []).length;
  step(`  ${pages} page(s)`);
  check(pages >= 1 && pages <= 2, `the handover prints on one or two pages, not ${pages}`);
  await page.emulateMedia({ media: 'screen' });
  await logOut();

  step('supervisor: the note is there, unread; marking it read records the reader');
  await logIn('supervisor');
  await openHandover();
  const theirs = page.locator(`ul.notes li.note[data-id="${mine.id}"]`);
  await theirs.waitFor();
  check(await theirs.getAttribute('data-read') === 'false', 'not read yet by the supervisor');
  await theirs.locator('button.note-read').click();
  await page.locator(`ul.notes li.note[data-id="${mine.id}"][data-read="true"]`).waitFor();
  const reads = await page.locator(`ul.notes li.note[data-id="${mine.id}"] .note-reads`).innerText();
  check(reads.includes('supervisor'), `the reader is shown: ${reads}`);
  check((await handover()).notes.find((n) => n.id === mine.id).reads.length === 1, 'one read recorded');

  step('a critical incident in the supervisor\'s communes is counted by the alerting');
  const admin = await apiLogin(base, accounts.admin, 'admin');
  const sup = await apiLogin(base, accounts.supervisor, 'supervisor');
  const panels = (await api(sup, 'GET', '/devices?kind=fire_panel')).body;
  const busy = new Set((await api(sup, 'GET', '/incidents?status=active')).body.map((i) => i.site));
  const panel = panels.find((d) => !busy.has(d.site));
  check(panel, 'a fire panel of the supervisor\'s communes on a quiet site');
  await page.waitForFunction(() => window.__beffroi?.alerting?.count != null);
  const before = await alerted();
  const fired = await api(admin, 'POST', `/devices/${panel.id}/observations`, [{ n: 'fire', vb: true }]);
  check(fired.status === 200 && fired.body.accepted === 1, `observation accepted: ${JSON.stringify(fired)}`);
  await page.waitForFunction((n) => window.__beffroi.alerting.count === n + 1, before);
  const incident = (await api(sup, 'GET', '/incidents?status=active')).body.find((i) => i.device === panel.id);
  check(incident && incident.severity === 'critical' && incident.status === 'new', 'a new critical incident');

  step('shelved from its detail: no longer counted, tagged in the queue, found by the filter');
  await page.goto(`${base}/#/incidents/${incident.id}`);
  await page.locator('#shelve-form').waitFor();
  await page.locator('#shelve-submit').click();
  check(await page.locator('#shelf[data-shelved=true]').count() === 0, 'no shelving without a reason');
  await page.locator('#shelve-reason').fill('Exercice incendie en cours');
  await page.locator('#shelve-minutes').selectOption('30');
  await page.locator('#shelve-submit').click();
  await page.locator('#shelf[data-shelved=true]').waitFor();
  await page.waitForFunction((n) => window.__beffroi.alerting.count === n, before);
  const repeating = await page.evaluate(() => window.__beffroi.alerting.repeating);
  check(repeating === (before > 0), `the tone repeats only for other unacknowledged criticals (${before}): ${repeating}`);
  await page.locator(`li.incident-row[data-id="${incident.id}"][data-shelved=true] .tag.shelved`).waitFor();
  await page.locator('#filter-shelved').selectOption('only');
  const onlyShelved = await page.$$eval('li.incident-row', (rows) => rows.map((r) => r.dataset.shelved));
  check(onlyShelved.length >= 1 && onlyShelved.every((x) => x === 'true'), `the filter shows shelved alarms only: ${onlyShelved}`);
  await page.locator('#filter-shelved').selectOption('');
  const listed = (await handover()).shelved;
  check(listed.some((x) => x.incident === incident.id && x.reason === 'Exercice incendie en cours'), 'the handover lists the shelved alarm');
  await page.screenshot({ path: join(shots, 'shelved.png'), fullPage: true });

  step('unshelved: counted again');
  await page.locator('#unshelve').click();
  await page.locator('#shelf[data-shelved=false]').waitFor();
  await page.waitForFunction((n) => window.__beffroi.alerting.count === n + 1, before);
  await page.goto(`${base}/#/overview`);
  await page.locator('#handover-notes').waitFor();

  step('in English, the same handover');
  await page.evaluate(() => { localStorage.setItem('beffroi.lang', 'en'); });
  await page.reload();
  await page.locator('#handover-notes').waitFor();
  const title = await page.locator('.handover-head h2').innerText();
  check(title === 'Shift handover', `the English title: ${title}`);
  await page.screenshot({ path: join(shots, 'handover-supervisor-en.png'), fullPage: true });

  check(pageErrors.length === 0, `no error in the page: ${pageErrors.join('; ')}`);
  console.log('HANDOVER E2E OK');
} catch (e) {
  console.error(e.stack ?? String(e));
  await page.screenshot({ path: join(shots, 'handover-failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await close();
}
