// The map with every device of the territory: node web/e2e/map-bench.mjs <base-url> <password> [runs]
// Prints the time from navigation to the first complete render (MapLibre's `idle` with the
// first clusters of the view, computed by the server, drawn) and the frame rate while
// panning at three zooms, the view's clusters being fetched again as it moves.
// Figures go to BENCHMARKS.md.

import { launch, login, step } from './lib.mjs';

const [base, password, runsArg] = process.argv.slice(2);
if (!base || !password) {
  console.error('usage: node web/e2e/map-bench.mjs <base-url> <password> [runs]');
  process.exit(2);
}
const runs = Number(runsArg ?? 3);
const { context, close } = await launch({ viewport: { width: 1600, height: 900 } });
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(60000);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  await login(page, base, password);
  const loads = [];
  for (let r = 0; r < runs; r++) {
    // A fresh navigation: the timings below count from its start.
    await page.goto(`${base}/#/map`);
    await page.reload();
    await page.locator('#map-counters[data-ready=true]').waitFor();
    const m = await page.evaluate(() => ({
      devices: Number(document.getElementById('map-counters').dataset.devices),
      devicesLoadedAt: window.__beffroi.devicesLoadedAt,
      firstRenderAt: window.__beffroi.firstRenderAt,
      mapViewMs: window.__beffroi.firstRenderMs,
      fetchMs: window.__beffroi.lastFetchMs,
      features: window.__beffroi.lastFeatures,
    }));
    loads.push(m);
    step(`run ${r + 1}: ${m.devices} devices, first clusters (${m.features} features, request ${m.fetchMs.toFixed(0)} ms) in the page at ${m.devicesLoadedAt.toFixed(0)} ms, first render at ${m.firstRenderAt.toFixed(0)} ms after navigation (drawing: ${(m.firstRenderAt - m.devicesLoadedAt).toFixed(0)} ms)`);
  }

  const pans = [];
  for (const zoom of (process.env.ZOOMS ?? "11,13,15.5").split(",").filter(Boolean).map(Number)) {
    const r = await page.evaluate(async (zoom) => {
      const map = window.__beffroi.map;
      map.jumpTo({ center: [5.04, 47.32], zoom });
      await window.__beffroi.settled();
      const fetches0 = window.__beffroi.fetches;
      const rendered = map.queryRenderedFeatures({ layers: ['device-clusters', 'device-points'] }).length;
      const gaps = [];
      let running = true;
      let last = performance.now();
      const tick = (now) => {
        gaps.push(now - last);
        last = now;
        if (running) requestAnimationFrame(tick);
      };
      const t0 = performance.now();
      requestAnimationFrame((now) => { last = now; requestAnimationFrame(tick); });
      // Nine pans drifting 1,200 px east, then nine back: the view leaves the box of clusters
      // it has (the view plus half a view on each side) and fetches the next.
      const moves = [[250, 0], [0, 150], [150, -150]];
      for (let i = 0; i < 18; i++) {
        const [dx, dy] = moves[i % moves.length].map((d) => (i < 9 ? d : -d));
        map.panBy([dx, dy], { duration: 400, easing: (x) => x });
        await new Promise((res) => map.once('moveend', res));
      }
      running = false;
      const elapsed = performance.now() - t0;
      await window.__beffroi.settled();
      const fetches = window.__beffroi.fetches - fetches0;
      gaps.sort((a, b) => a - b);
      return {
        zoom, rendered, fetches, frames: gaps.length, seconds: elapsed / 1000,
        fps: gaps.length / (elapsed / 1000),
        p50: gaps[Math.floor(gaps.length * 0.5)], p95: gaps[Math.floor(gaps.length * 0.95)], max: gaps[gaps.length - 1],
      };
    }, zoom);
    pans.push(r);
    step(`pan at zoom ${zoom}: ${r.rendered} clusters/points drawn, ${r.fetches} refetches, ${r.fps.toFixed(1)} fps over ${r.seconds.toFixed(1)} s, frame p50 ${r.p50.toFixed(1)} ms, p95 ${r.p95.toFixed(1)} ms, max ${r.max.toFixed(0)} ms`);
  }
  const loadavg = (await import('node:os')).loadavg().map((x) => +x.toFixed(2));
  const summary = {
    loadavg,
    devices: loads[0].devices,
    runs,
    first_render_ms_median: Math.round(median(loads.map((l) => l.firstRenderAt))),
    devices_loaded_ms_median: Math.round(median(loads.map((l) => l.devicesLoadedAt))),
    first_render_ms: loads.map((l) => Math.round(l.firstRenderAt)),
    pan: pans.map((p) => ({ zoom: p.zoom, refetches: p.fetches, fps: +p.fps.toFixed(1), p95_ms: +p.p95.toFixed(1), max_ms: Math.round(p.max) })),
  };
  console.log(`MAP BENCH ${JSON.stringify(summary)}`);
} catch (e) {
  console.error(e.stack || String(e));
  await close();
  process.exit(1);
}
await close();
