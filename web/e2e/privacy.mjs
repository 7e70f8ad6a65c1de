// The DPO's view in a browser: node web/e2e/privacy.mjs <base-url> <user> <password> <screenshot-dir>
// Logs in as the DPO (who holds neither incidents nor devices: the console opens on the
// data protection view), checks the register summary and activities against the API, the
// access log, the retention and holds sections (shown as "not available" when their routes
// answer 404), the public notices by commune, the printable register, and the language
// switch. Exits non-zero on the first failure; prints PRIVACY E2E OK at the end.

import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { launch, step } from './lib.mjs';

const [base, user, password, shots] = process.argv.slice(2);
if (!base || !user || !password || !shots) {
  console.error('usage: node web/e2e/privacy.mjs <base-url> <user> <password> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

function check(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

const login = await fetch(`${base}/api/v1/auth/login`, {
  method: 'POST', headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ username: user, password }),
});
check(login.ok, `API login as ${user}: ${login.status}`);
const token = (await login.json()).token;
const api = async (path) => {
  const r = await fetch(`${base}/api/v1${path}`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: r.status, body: r.headers.get('content-type')?.includes('json') ? await r.json() : await r.text() };
};

const { context, close } = await launch({ locale: 'fr-FR' });
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(20000);
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
// Privacy routes a deployment may not serve may be absent (404): the view says so; not an error.
const optional = /\/api\/v1\/privacy\/(retention|holds)$/;
page.on('response', (r) => { if (r.status() >= 400 && !optional.test(new URL(r.url()).pathname)) errors.push(`${r.status()} ${r.url()}`); });

try {
  step(`login as ${user}`);
  await page.goto(base + '/');
  await page.locator('#login-user').fill(user);
  await page.locator('#login-password').fill(password);
  await page.locator('#login-submit').click();

  step('the data protection view opens, with its tab');
  await page.locator('#privacy-register-summary').waitFor();
  check(await page.locator('a.tab[data-route=privacy]').count() === 1, 'the privacy tab is shown');
  const reg = (await api('/privacy/register')).body;
  const summary = page.locator('#privacy-register-summary');
  check(await summary.getAttribute('data-complete') === String(reg.summary.complete), 'completeness as the API says');
  check(await summary.getAttribute('data-activities') === String(reg.activities.length), 'activity count');
  check(await page.locator('#privacy-activities tbody tr').count() === reg.activities.length, 'one row per activity');
  for (const a of reg.activities) {
    check(await page.locator(`#privacy-activities tr[data-activity="${a.id}"]`).count() === 1, `activity ${a.id} listed`);
  }

  step('access log');
  await page.locator('#privacy-log, #privacy-log-empty').first().waitFor();
  const log = (await api('/privacy/access-log?limit=50')).body;
  check(log.entries.length > 0, 'the view\'s own read is in the access log');

  step('retention and holds: a table or "not available"');
  for (const id of ['#privacy-retention', '#privacy-holds']) {
    await page.locator(`${id} table, ${id} .not-available, ${id} p.muted:not(:has-text("Chargement"))`).first().waitFor();
  }

  step('public notices by commune');
  await page.locator('#privacy-notices-count').waitFor();
  const notices = (await api('/privacy/notices')).body;
  check(await page.locator('#privacy-notices-count').getAttribute('data-count') === String(notices.length), 'notice count');
  const first = notices[0];
  const notice = await fetch(base + first.url);
  check(notice.ok && (await notice.text()).includes('Information du public'), 'a notice page is public');

  step('the printable register, with the session cookie');
  const html = await page.evaluate(async () => {
    const r = await fetch('/api/v1/privacy/register.html', { credentials: 'same-origin' });
    return { status: r.status, text: await r.text() };
  });
  check(html.status === 200 && html.text.includes('Registre des activités de traitement'), 'register page');

  const path = join(shots, 'privacy.png');
  await page.screenshot({ path, fullPage: false });
  check(statSync(path).size > 10000, 'privacy.png is a real screenshot');

  step('English');
  await page.locator('#lang-switch').click();
  await page.locator('.privacy-title:has-text("Data protection")').waitFor();

  check(errors.length === 0, `no page errors: ${errors.join('; ')}`);
  console.log('PRIVACY E2E OK');
} finally {
  await close();
}
