// A device's recent readings as a uPlot chart: one series per numeric field.

import uPlot from '/console/vendor/uPlot.esm.js';

const COLORS = ['#5ac8fa', '#f5b942', '#ff7a1a', '#34c759'];

/** Draws the numeric readings of `recent` (ObservationDto[]) into `el`; null when none. */
export function deviceChart(el, recent) {
  const byField = new Map();
  for (const o of recent) {
    if (typeof o.value !== 'number') continue;
    if (!byField.has(o.field)) byField.set(o.field, { unit: o.unit, points: [] });
    byField.get(o.field).points.push([Date.parse(o.time) / 1000, o.value]);
  }
  if (byField.size === 0) return null;
  const fields = [...byField.keys()].slice(0, COLORS.length);
  const times = [...new Set(fields.flatMap((f) => byField.get(f).points.map((p) => p[0])))].sort((a, b) => a - b);
  const data = [times];
  for (const f of fields) {
    const m = new Map(byField.get(f).points);
    data.push(times.map((x) => (m.has(x) ? m.get(x) : null)));
  }
  const axis = { stroke: '#9fb0c8', grid: { stroke: 'rgba(159,176,200,0.12)' }, ticks: { stroke: 'rgba(159,176,200,0.2)' } };
  return new uPlot({
    width: Math.max(260, el.clientWidth || 320),
    height: 180,
    spanGaps: true,
    series: [{}, ...fields.map((f, i) => ({
      label: byField.get(f).unit ? `${f} (${byField.get(f).unit})` : f,
      stroke: COLORS[i], width: 2, points: { show: times.length < 40 },
    }))],
    axes: [axis, axis],
  }, data, el);
}
