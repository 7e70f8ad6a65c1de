// Shared by the browser scripts: Debian's Chromium driven by playwright-core.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function launch({ viewport = { width: 1600, height: 900 }, locale = 'fr-FR' } = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'beffroi-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport,
    locale,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-gl=angle', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
  });
  const close = async () => {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}

/** A separate API session for the script's own calls (the console's session id is in an
 * HttpOnly cookie the page cannot read). */
export async function apiLogin(base, password, username = 'admin') {
  const r = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!r.ok) throw new Error(`API login failed: ${r.status}`);
  return (await r.json()).token;
}

export async function login(page, base, password, username = 'admin') {
  await page.goto(base + '/');
  await page.locator('#login-user').fill(username);
  await page.locator('#login-password').fill(password);
  await page.locator('#login-submit').click();
  await page.locator('#live-status[data-status=connected]').waitFor({ timeout: 15000 });
}

export function step(msg) {
  console.log(`[${new Date().toISOString().slice(11, 23)}] ${msg}`);
}
