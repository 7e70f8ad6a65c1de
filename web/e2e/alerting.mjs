// Alerting in the browser: node web/e2e/alerting.mjs <base-url> <password> <screenshot-dir>
// A critical incident arrives live: the banner and the tab title count it and a tone is
// scheduled, repeated until it is acknowledged; acknowledging clears the banner and stops
// the repetition; the mute silences the tone (remembered across a reload) but not the
// banner; a second tab shares the session without a login; desktop notifications are asked
// for only by the button. Exits non-zero on the first failure.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiLogin, launch, login, step } from './lib.mjs';

const [base, password, shots] = process.argv.slice(2);
if (!base || !password || !shots) {
  console.error('usage: node web/e2e/alerting.mjs <base-url> <password> <screenshot-dir>');
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

const probe = (page) => page.evaluate(() => {
  const a = window.__beffroi?.alerting;
  return a ? { beeps: a.beeps.critical, major: a.beeps.major, notifications: a.notifications, count: a.count, repeating: a.repeating, owner: a.owner } : null;
});

const { context, close } = await launch();
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(TIMEOUT);
const errors = [];
const watch = (p) => {
  p.on('pageerror', (e) => errors.push(e.message));
  p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  p.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
};
watch(page);

try {
  step('login: nothing to alert about');
  await login(page, base, password);
  const token = await apiLogin(base, password);
  await page.locator('#alert-mute').waitFor();
  check(await page.locator('#alert-banner').isHidden(), 'no banner without a critical incident');
  check(await page.title() === 'Beffroi', `title: ${await page.title()}`);
  let p = await probe(page);
  check(p && p.beeps === 0 && !p.repeating && p.count === 0, `nothing scheduled: ${JSON.stringify(p)}`);
  // Notifications are asked for by a button, never on load.
  check(await page.evaluate(() => Notification.permission) === 'default', 'the page did not ask for notifications');
  await page.locator('#alert-menu summary').click();
  check(await page.locator('#alert-notify').isVisible(), 'the notifications button is offered');
  await page.locator('#alert-menu summary').click();

  // Fire panels of sites without an open incident: each raises one critical incident.
  const panels = (await api(token, 'GET', '/devices?kind=fire_panel')).body;
  const busy = new Set((await api(token, 'GET', '/incidents?status=active')).body.map((i) => i.site));
  const free = [];
  for (const d of panels) if (!busy.has(d.site) && !free.some((f) => f.site === d.site)) free.push(d);
  check(free.length >= 3, `three fire panels on quiet sites (${free.length})`);
  const fire = async (d) => {
    const r = await api(token, 'POST', `/devices/${d.id}/observations`, [{ n: 'fire', vb: true }]);
    check(r.status === 200 && r.body.accepted === 1, `observation accepted: ${JSON.stringify(r)}`);
  };

  step('a critical incident arrives: banner, title, tone');
  await fire(free[0]);
  await page.locator('#alert-banner[data-count="1"]:not([hidden])').waitFor();
  await page.waitForFunction(() => document.title === '(1) Beffroi');
  await page.waitForFunction(() => window.__beffroi.alerting.beeps.critical === 1);
  p = await probe(page);
  check(p.repeating, `the tone repeats while it is unacknowledged: ${JSON.stringify(p)}`);
  await page.evaluate(() => window.__beffroi.alerting.tick());
  p = await probe(page);
  check(p.beeps === 2, `one repetition schedules one more tone: ${JSON.stringify(p)}`);
  const text = await page.locator('#alert-banner').innerText();
  check(/1 situation critique non acquittée/.test(text), `the banner says it in French: ${text}`);
  await page.screenshot({ path: join(shots, 'alert-banner.png') });

  step('the banner opens the queue on them; acknowledging clears it');
  await page.locator('#alert-banner-link').click();
  await page.waitForFunction(() => location.hash === '#/incidents');
  check(await page.locator('#filter-severity').inputValue() === 'critical', 'the queue is filtered on critical');
  check(await page.locator('#filter-status').inputValue() === 'new', 'the queue is filtered on unacknowledged');
  const rows = page.locator('li.incident-row');
  await rows.first().waitFor();
  check(await rows.count() === 1, `one row: ${await rows.count()}`);
  check(await page.locator('li.incident-row[data-severity=critical][data-status=new]').count() === 1, 'the critical one');
  await rows.first().click();
  const detail = page.locator('#incident-detail');
  await detail.locator('#detail-status[data-status=new]').waitFor();
  await detail.locator('button[data-action=acknowledge]').click();
  await detail.locator('#detail-status[data-status=acknowledged]').waitFor();
  await page.locator('#alert-banner').waitFor({ state: 'hidden' });
  await page.waitForFunction(() => document.title === 'Beffroi');
  p = await probe(page);
  check(!p.repeating && p.count === 0, `the repetition stopped: ${JSON.stringify(p)}`);
  await page.evaluate(() => window.__beffroi.alerting.tick());
  p = await probe(page);
  check(p.beeps === 2, `no tone once acknowledged: ${JSON.stringify(p)}`);

  step('mute: no tone, the banner and the title stay');
  await page.locator('#alert-mute').click();
  await page.locator('#alert-mute[data-state=muted][aria-pressed=true]').waitFor();
  await fire(free[1]);
  await page.locator('#alert-banner[data-count="1"]:not([hidden])').waitFor();
  await page.waitForFunction(() => document.title === '(1) Beffroi');
  await page.evaluate(() => window.__beffroi.alerting.tick());
  p = await probe(page);
  check(p.beeps === 2, `muted: no tone on arrival nor on repetition: ${JSON.stringify(p)}`);
  step('the mute is remembered across a reload');
  await page.reload();
  await page.locator('#live-status[data-status=connected]').waitFor();
  await page.locator('#alert-mute[data-state=muted]').waitFor();
  await page.locator('#alert-banner[data-count="1"]:not([hidden])').waitFor();
  await page.waitForFunction(() => document.title === '(1) Beffroi');
  await page.evaluate(() => window.__beffroi.alerting.tick());
  p = await probe(page);
  check(p.beeps === 0 && p.repeating, `still muted after the reload: ${JSON.stringify(p)}`);

  step('a second tab shares the session');
  const second = await context.newPage();
  second.setDefaultTimeout(TIMEOUT);
  watch(second);
  await second.goto(base + '/');
  await second.locator('#live-status[data-status=connected]').waitFor();
  check(await second.locator('#login-user').count() === 0, 'no login form in the second tab');
  await second.locator('#alert-banner[data-count="1"]:not([hidden])').waitFor();
  check(await second.evaluate(() => !!sessionStorage.getItem('beffroi.csrf')), 'the second tab holds the CSRF token');
  check(!(await probe(second)).owner, 'one tab plays the sound');
  // It acts with the session: acknowledging there (a POST with the CSRF token) clears both.
  await second.locator('#alert-banner-link').click();
  await second.locator('li.incident-row').first().click();
  await second.locator('#incident-detail button[data-action=acknowledge]').click();
  await second.locator('#incident-detail #detail-status[data-status=acknowledged]').waitFor();
  await second.locator('#alert-banner').waitFor({ state: 'hidden' });
  await page.locator('#alert-banner').waitFor({ state: 'hidden' });
  await page.waitForFunction(() => document.title === 'Beffroi');

  step('desktop notifications once allowed; sound back on');
  await context.grantPermissions(['notifications'], { origin: base });
  await page.locator('#alert-menu summary').click();
  await page.locator('#alert-notify').click();
  await page.locator('#alert-notify').waitFor({ state: 'hidden' });
  await page.locator('#alert-mute').click();
  await page.locator('#alert-mute[data-state=on]').waitFor();
  await fire(free[2]);
  await page.locator('#alert-banner[data-count="1"]:not([hidden])').waitFor();
  await page.waitForFunction(() => window.__beffroi.alerting.notifications === 1);
  await page.waitForFunction(() => window.__beffroi.alerting.beeps.critical === 1);

  step('major incidents sound their own tone once the operator asks for it');
  const intrusion = (await api(token, 'GET', '/devices?kind=intrusion_panel')).body
    .find((d) => !busy.has(d.site) && !free.slice(0, 3).some((f) => f.site === d.site));
  check(intrusion, 'an intrusion panel on a quiet site');
  await page.locator('#alert-major').check();
  const r = await api(token, 'POST', `/devices/${intrusion.id}/observations`, [{ n: 'intrusion', vb: true }]);
  check(r.status === 200 && r.body.accepted === 1, `observation accepted: ${JSON.stringify(r)}`);
  await page.waitForFunction(() => window.__beffroi.alerting.beeps.major === 1);
  await page.waitForFunction(() => window.__beffroi.alerting.notifications === 2);
  p = await probe(page);
  check(p.count === 1 && p.beeps === 1, `the banner counts critical incidents only: ${JSON.stringify(p)}`);
  await page.screenshot({ path: join(shots, 'alert-menu.png') });

  step('one real event is one situation: a correlation joins the fire alarm of its site');
  const devices = [
    ...(await api(token, 'GET', '/devices?kind=smoke_detector')).body,
    ...(await api(token, 'GET', '/devices?kind=temperature')).body,
  ];
  const at = (site, kind) => devices.find((d) => d.site === site && d.kind === kind);
  const combo = panels.find((d) => !busy.has(d.site) && !free.slice(0, 3).some((f) => f.site === d.site)
    && d.site !== intrusion.site && at(d.site, 'smoke_detector') && at(d.site, 'temperature'));
  check(combo, 'a quiet site with a fire panel, a smoke detector and a temperature sensor');
  const before = (await probe(page)).beeps;
  await fire(combo);
  await page.locator('#alert-banner[data-count="2"]:not([hidden])').waitFor();
  await page.waitForFunction((n) => window.__beffroi.alerting.beeps.critical === n + 1, before);
  for (const [kind, rec] of [['smoke_detector', { n: 'smoke', vb: true }], ['temperature', { n: 'temp_c', v: 64.5 }]]) {
    const rr = await api(token, 'POST', `/devices/${at(combo.site, kind).id}/observations`, [rec]);
    check(rr.status === 200 && rr.body.accepted === 1, `${kind} accepted: ${JSON.stringify(rr)}`);
  }
  // The smoke-and-heat incident joins the situation: announced again, counted once.
  await page.waitForFunction((n) => window.__beffroi.alerting.beeps.critical === n + 2, before);
  p = await probe(page);
  check(p.count === 2, `two critical situations, not three: ${JSON.stringify(p)}`);
  await page.locator('#alert-banner-link').click();
  await page.locator('li.situation li.incident-row').nth(1).waitFor();
  check(await page.locator('li.situation').count() === 1, 'one situation of two incidents in the queue');
  check(await page.locator('li.situation li.incident-row').count() === 2, 'its two incidents inside');
  await page.screenshot({ path: join(shots, 'situation.png') });
  await page.locator('li.situation button.situation-ack').click();
  await page.locator('#alert-banner[data-count="1"]:not([hidden])').waitFor();
  check((await probe(page)).count === 1, 'the situation acknowledged at once');

  const serious = errors.filter((e) => !/Failed to load resource|GL Driver/.test(e));
  check(serious.length === 0, `no error in the pages: ${serious.join(' | ')}`);

  // (The first tab's stream may see the session end before the message: a 401 is fine here.)
  step('a logout in one tab logs the other out');
  await second.locator('#logout').click();
  await second.locator('#login-user').waitFor();
  await page.locator('#login-user').waitFor();
  await page.waitForFunction(() => document.title === 'Beffroi');
  console.log('ALERTING E2E OK');
} catch (e) {
  await page.screenshot({ path: join(shots, 'alerting-failure.png') }).catch(() => {});
  console.error(e.stack || String(e));
  console.error('page errors:', errors.join('\n'));
  await close();
  process.exit(1);
}
await close();
