// Aggregates in the browser: a people count below the minimum group size is never drawn as a
// number. A counter reports 7 people; its panel on the map says "< 10" and shows no 7.

import { join } from 'node:path';
import { step } from './lib.mjs';

export async function privacySteps(page, { api, check, token, shots }) {
  step('privacy: a small people count is withheld');
  const counters = await api(token, 'GET', '/devices?kind=people_counter');
  check(counters.status === 200 && counters.body.length > 0, 'the demo has people counters');
  // A counter outside the concert's perimeter, so that its event is not disturbed.
  const counter = counters.body.find((d) => !/zenith/.test(d.id)) ?? counters.body[0];
  const sent = await api(token, 'POST', `/devices/${counter.id}/observations`, [{ n: 'occupancy', v: 7 }]);
  check(sent.status === 200 && sent.body.accepted === 1, `count accepted: ${JSON.stringify(sent)}`);
  const detail = await api(token, 'GET', `/devices/${counter.id}`);
  const latest = detail.body.recent.find((o) => o.field === 'occupancy');
  check(latest && latest.value === null && latest.suppressed === true, `the API withholds it: ${JSON.stringify(latest)}`);
  await page.evaluate((id) => window.__beffroi.showDevice(id), counter.id);
  const note = page.locator('#device-details p.suppressed');
  await note.waitFor();
  const text = await page.locator('#device-details').innerText();
  check((await note.innerText()).includes('< 10'), `the panel says "< 10": ${await note.innerText()}`);
  check(!/(^|[^\d.:])7([^\d.:]|$)/.test(text.replace(counter.id, '')), `no 7 in the panel: ${text}`);
  await page.screenshot({ path: join(shots, 'people-count-withheld.png') });
}

/** A pseudonym in an incident's log is a chip; the administrator, who does not hold
 * `personal.unmask`, gets no "Identifier" action on it. */
export async function pseudonymChipSteps(page, { check, detail }) {
  step('privacy: a pseudonym in the log is a chip, without unmasking for the administrator');
  const p = 'plate:1:abcdefghijklmnopqrst';
  await detail.locator('#comment-text').fill(`Véhicule signalé : ${p}`);
  await detail.locator('#comment-submit').click();
  const chip = detail.locator(`#incident-log .pseudo-chip[data-pseudonym="${p}"]`);
  await chip.waitFor();
  check(await chip.locator('button.unmask').count() === 0, 'no unmask action without personal.unmask');
}
