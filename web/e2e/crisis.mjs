// Browser steps for the units board and crisis mode, called by console.mjs after the
// incident steps: the units board (statuses, a status change, a mission appearing live),
// then a crisis activated for the commune of the incident handled earlier (listing at once
// the incidents open there), a log entry, a PCS role, that incident's change appended by
// the server, closing with a summary and the printable report (inline and in a new tab; in
// the console's language, times in the territory's time zone, names rather than account
// ids). Throws on the first failure.

import { join } from 'node:path';
import { step } from './lib.mjs';

/**
 * @param page   the logged-in console page
 * @param ctx    { api(token, method, path, body), check(cond, msg), token, shots,
 *                 incident: id of the (resolved) incident of the earlier steps,
 *                 unit: the unit that was engaged on it }
 */
export async function crisisSteps(page, ctx) {
  const { api, check, token, shots } = ctx;

  step('units board: every unit with its status');
  await page.locator('a.tab[data-route=units]').click();
  const units = await api(token, 'GET', '/units');
  check(units.status === 200 && units.body.length > 0, `GET /units lists the demo units: ${units.status}`);
  for (const u of units.body) {
    await page.locator(`.unit-card[data-id="${u.id}"][data-status="${u.status}"]`).waitFor();
  }
  check(await page.locator('.unit-card').count() === units.body.length, 'one card per unit');
  // The unit engaged on the incident resolved earlier is available again, without mission.
  await page.locator(`.unit-card[data-id="${ctx.unit}"][data-status=available]`).waitFor();
  check(await page.locator(`.unit-card[data-id="${ctx.unit}"] li.mission`).count() === 0, `${ctx.unit} has no mission left`);
  const offDuty = units.body.find((u) => u.status === 'off_duty');
  check(offDuty, 'the demo has an off-duty unit');
  check(await page.locator(`.unit-card[data-id="${offDuty.id}"] .unit-head .unit-status`).innerText() !== '', 'the status is written');

  step('units board: change a status from the board, and live from elsewhere');
  // An available police patrol without mission, with a town hall free of incident in its
  // area (for the mission below).
  const panels = (await api(token, 'GET', '/devices?kind=intrusion_panel')).body;
  const busy = new Set((await api(token, 'GET', '/incidents?status=active')).body.map((i) => i.site));
  const freePanel = (u) => panels.find((d) => /mairie/.test(d.site) && !busy.has(d.site) && (!u.communes.length || u.communes.includes(d.commune)));
  const spare = units.body.find((u) => u.kind === 'police' && u.status === 'available' && u.missions.length === 0 && freePanel(u));
  check(spare, 'an available patrol without mission, with a free town hall in its area');
  const card = page.locator(`.unit-card[data-id="${spare.id}"]`);
  await card.locator('button.set-status[data-status=off_duty]').click();
  await page.locator(`.unit-card[data-id="${spare.id}"][data-status=off_duty]`).waitFor();
  check((await api(token, 'GET', `/units/${spare.id}`)).body.status === 'off_duty', 'the board changed the status on the server');
  // Changed by another operator: the board follows the stream.
  const back = await api(token, 'POST', `/units/${spare.id}/status`, { status: 'available' });
  check(back.status === 200, `status set back: ${JSON.stringify(back)}`);
  await page.locator(`.unit-card[data-id="${spare.id}"][data-status=available]`).waitFor();

  step('units board: a mission appears live');
  // A fresh incident at a town hall of the unit's area (an intrusion panel without incident).
  const panel = freePanel(spare);
  const siteName = (await api(token, 'GET', '/territory/sites')).body.features.find((f) => f.properties.id === panel.site).properties.name;
  const ingest = await api(token, 'POST', `/devices/${panel.id}/observations`, [{ n: 'intrusion', vb: true }]);
  check(ingest.status === 200 && ingest.body.accepted === 1, `observation accepted: ${JSON.stringify(ingest)}`);
  await page.locator('a.tab[data-route=incidents]').click();
  const row = page.locator('li.incident-row[data-status=new]', { hasText: siteName }).first();
  await row.waitFor();
  const mission = { id: Number(await row.getAttribute('data-id')), severity: await row.getAttribute('data-severity') };
  await page.locator('a.tab[data-route=units]').click();
  await page.locator(`.unit-card[data-id="${spare.id}"][data-status=available]`).waitFor();
  const assigned = await api(token, 'POST', `/incidents/${mission.id}/actions`, { action: 'assign', unit: spare.id });
  check(assigned.status === 200, `assigned: ${JSON.stringify(assigned)}`);
  const missionCard = page.locator(`.unit-card[data-id="${spare.id}"][data-status=engaged]`);
  await missionCard.locator(`li.mission[data-id="${mission.id}"] a[href="#/incidents/${mission.id}"]`).waitFor();
  await missionCard.locator(`li.mission[data-id="${mission.id}"] .sev.sev-${mission.severity}`).waitFor();
  await page.screenshot({ path: join(shots, 'units.png') });

  step('crisis: activate for one commune');
  const incident = (await api(token, 'GET', `/incidents/${ctx.incident}`)).body;
  check(incident?.commune, `the incident of the earlier steps: ${JSON.stringify(incident)}`);
  const commune = incident.commune;
  // At least one incident open in the commune before the activation: a fresh intrusion at
  // a town hall of the commune without incident.
  const isOpen = (i) => ['new', 'acknowledged', 'in_progress'].includes(i.status);
  const openIn = async () => (await api(token, 'GET', '/incidents?status=active')).body.filter((i) => i.commune === commune && isOpen(i));
  if ((await openIn()).length === 0) {
    const taken = new Set((await api(token, 'GET', '/incidents?status=active')).body.map((i) => i.site));
    const free = panels.find((d) => d.commune === commune && !taken.has(d.site));
    check(free, `an intrusion panel without incident in ${commune}`);
    const sent = await api(token, 'POST', `/devices/${free.id}/observations`, [{ n: 'intrusion', vb: true }]);
    check(sent.status === 200 && sent.body.accepted === 1, `observation accepted: ${JSON.stringify(sent)}`);
  }
  const openBefore = (await openIn()).map((i) => i.id);
  check(openBefore.length > 0, `an incident open in ${commune} before the activation`);
  await page.locator('a.tab[data-route=crisis]').click();
  const form = page.locator('#crisis-form');
  await form.waitFor();
  const title = `Crue de l’Ouche — exercice ${Date.now() % 100000}`;
  await form.locator('#crisis-kind').selectOption('flood');
  await form.locator('#crisis-title').fill(title);
  await form.locator('#crisis-level').selectOption('2');
  await form.locator('input[name=crisis-scope][value=one]').check();
  await form.locator(`#crisis-commune option[value="${commune}"]`).waitFor({ state: 'attached' });
  await form.locator('#crisis-commune').selectOption(commune);
  await form.locator('#crisis-activate').click();
  await page.locator('#crisis-status[data-status=active]').waitFor();
  await page.locator('#crisis-heading', { hasText: title }).waitFor();
  await page.locator('#crisis-level-badge[data-level="2"]').waitFor();
  const id = Number(await page.locator('.crisis-view').getAttribute('data-id'));
  check(id > 0 && page.url().endsWith(`#/crisis/${id}`), `on the crisis page: ${page.url()}`);
  const created = (await api(token, 'GET', `/crises/${id}`)).body;
  check(created.status === 'active' && created.level === 2 && created.kind === 'flood', `created: ${JSON.stringify(created)}`);
  check(JSON.stringify(created.communes) === JSON.stringify([commune]), `scope is the one commune: ${created.communes}`);
  await page.locator(`#crisis-perimeter g.in[data-id="${commune}"] circle`).waitFor();
  check(await page.locator('#crisis-perimeter g.in').count() === 1, 'the perimeter shows the one commune');

  step('crisis: the incidents open in the commune are in it from its activation');
  const listed = new Set(created.incidents.map((i) => i.id));
  check(openBefore.every((i) => listed.has(i)), `open incidents ${openBefore} attached: ${[...listed]}`);
  for (const i of openBefore) {
    await page.locator(`#crisis-incidents tr[data-id="${i}"]`).waitFor();
    await page.locator(`#crisis-log li.k-incident[data-incident="${i}"]`).first().waitFor();
  }

  step('crisis: listed as active');
  await page.locator('.crisis-head a.back').click();
  await page.locator(`#crises-active li.crisis-row[data-id="${id}"][data-status=active]`).waitFor();
  await page.screenshot({ path: join(shots, 'crisis-list.png') });
  await page.locator(`#crises-active li.crisis-row[data-id="${id}"] a`).click();
  await page.locator('#crisis-status[data-status=active]').waitFor();

  step('crisis: level, role, log entry');
  await page.locator('#crisis-levels button[data-level="3"]').click();
  await page.locator('#crisis-level-badge[data-level="3"]').waitFor();
  await page.locator('#role-dos').fill('Mme la maire');
  await page.locator('tr[data-role=dos] button.assign-role').click();
  await page.locator('#crisis-log li.k-system', { hasText: 'Mme la maire' }).waitFor();
  const entry = 'Montée des eaux quai Nicolas-Rolin : fermeture de la voie';
  await page.locator('#crisis-log-text').fill(entry);
  await page.locator('#crisis-log-submit').click();
  await page.locator('#crisis-log li.k-entry', { hasText: entry }).waitFor();

  step('crisis: an incident change of the commune is appended to the log, live');
  const note = 'Ronde de contrôle après la crue';
  const commented = await api(token, 'POST', `/incidents/${ctx.incident}/actions`, { action: 'comment', text: note });
  check(commented.status === 200, `comment: ${JSON.stringify(commented)}`);
  const incEntry = page.locator(`#crisis-log li.k-incident[data-incident="${ctx.incident}"]`, { hasText: note });
  await incEntry.waitFor();
  await page.locator(`#crisis-incidents tr[data-id="${ctx.incident}"]`).waitFor();
  await page.screenshot({ path: join(shots, 'crisis.png') });
  await incEntry.locator(`a[href="#/incidents/${ctx.incident}"]`).click();
  await page.locator(`#incident-detail[data-id="${ctx.incident}"]`).waitFor();
  await page.goBack();
  await page.locator('#crisis-status[data-status=active]').waitFor();

  step('crisis: close with a summary');
  const summary = 'Décrue amorcée à 18 h ; voies rouvertes, aucun blessé.';
  await page.locator('#crisis-summary').fill(summary);
  await page.locator('#crisis-close').click(); // arms
  await page.locator('#crisis-close[data-armed]').click(); // confirms
  await page.locator('#crisis-status[data-status=closed]').waitFor();
  await page.locator('#crisis-summary-text', { hasText: summary }).waitFor();

  step('crisis: the report (inline and in a new tab)');
  const inline = page.frameLocator('#report-frame').locator('body');
  await inline.locator('h1', { hasText: title }).waitFor();
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.locator('#report-open').click()]);
  const popupErrors = [];
  popup.on('console', (m) => { if (m.type() === 'error') popupErrors.push(m.text()); });
  await popup.waitForLoadState();
  await popup.locator('h1', { hasText: title }).waitFor();
  const report = await popup.locator('body').innerText();
  for (const [what, text] of [['title', title], ['log entry', entry], ['summary', summary], ['incident change', note]]) {
    check(report.includes(text), `the report has the ${what} "${text}"`);
  }
  // In the console's language, at the territory's local time, with names and labels.
  const tz = (await api(token, 'GET', '/territory')).body.timezone;
  check(tz === 'Europe/Paris', `the demo territory's time zone: ${tz}`);
  const lang = await page.evaluate(() => document.documentElement.lang);
  const done = (await api(token, 'GET', `/crises/${id}`)).body;
  const local = (iso) => new Intl.DateTimeFormat(lang === 'en' ? 'en-GB' : 'fr-FR', { dateStyle: 'short', timeStyle: 'medium', timeZone: tz }).format(new Date(iso));
  for (const [what, iso] of [['opening', done.opened_at], ['closing', done.closed_at]]) {
    check(report.includes(local(iso)), `the report gives the ${what} at local time "${local(iso)}"`);
  }
  check(!/\bUTC\b|\d{2}:\d{2}:\d{2}(\.\d+)?Z/.test(report), 'no UTC time in the report');
  check(!report.includes('user:'), 'people by name, not account ids');
  const statusLabel = lang === 'en' ? 'Closed' : 'Clôturée';
  check(report.includes(statusLabel), `the status as a label: ${statusLabel}`);
  check(lang === 'en' || !/\b(opened|attached|closed):? /.test(report), 'no English server text in the French report');
  await popup.screenshot({ path: join(shots, 'report.png'), fullPage: true });
  check(popupErrors.length === 0, `no error in the report's tab: ${popupErrors.join(' | ')}`);
  await popup.close();
  await page.screenshot({ path: join(shots, 'crisis-closed.png') });
  await page.locator('.crisis-head a.back').click();
  await page.locator(`#crises-closed li.crisis-row[data-id="${id}"][data-status=closed]`).waitFor();
  const closed = (await api(token, 'GET', `/crises/${id}`)).body;
  check(closed.status === 'closed' && closed.summary_text === summary, `closed on the server: ${JSON.stringify(closed.summary_text)}`);
  return { crisis: id };
}
