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

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v != null) el.setAttribute(k, String(v));
  for (const c of children) if (c != null) el.append(c);
  return el;
}

/**
 * The readings of one field around an incident's trigger, as SVG: the series, a horizontal
 * line per threshold, the trigger marked (a vertical line at its time and a point at its
 * value). Everything shown to people comes in `labels` and the formatters, so the caller
 * translates and formats (numbers, times in the territory's zone).
 *
 * `points`: [[ms, value]] in time order; `from`, `to`: the window in ms; `thresholds`:
 * numbers; `trigger`: { at: ms, value } (value may be null); `fmtNum(v)`, `fmtTime(ms)`;
 * `labels`: { title, threshold(v), trigger(v, ms) }. Data attributes name what is drawn
 * (`data-threshold`, `data-trigger-value`, `data-trigger-at`, `data-points`).
 */
export function evidenceChart({ points, from, to, thresholds = [], trigger, fmtNum, fmtTime, labels }) {
  const W = 560, H = 200, L = 48, R = 12, T = 12, B = 24;
  const values = points.map((p) => p[1]).concat(thresholds);
  if (trigger?.value != null) values.push(trigger.value);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.1;
  lo -= pad; hi += pad;
  const span = Math.max(1, to - from);
  const x = (ms) => L + ((ms - from) / span) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const inside = points.filter((p) => p[0] >= from && p[0] <= to);
  const d = inside.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
  const root = svg('svg', {
    class: 'evidence-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': labels.title,
    'data-points': inside.length, 'data-from': new Date(from).toISOString(), 'data-to': new Date(to).toISOString(),
  }, svg('title', null, labels.title));
  root.append(
    svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    svg('text', { class: 'tick', x: L - 4, y: y(hi - pad) + 4, 'text-anchor': 'end' }, fmtNum(hi - pad)),
    svg('text', { class: 'tick', x: L - 4, y: y(lo + pad) + 4, 'text-anchor': 'end' }, fmtNum(lo + pad)),
    svg('text', { class: 'tick', x: L, y: H - 6, 'text-anchor': 'start' }, fmtTime(from)),
    svg('text', { class: 'tick', x: W - R, y: H - 6, 'text-anchor': 'end' }, fmtTime(to)),
  );
  for (const th of thresholds) {
    root.append(svg('g', { class: 'threshold', 'data-threshold': th },
      svg('line', { x1: L, y1: y(th), x2: W - R, y2: y(th) }),
      svg('text', { x: W - R - 4, y: y(th) - 4, 'text-anchor': 'end' }, labels.threshold(th))));
  }
  if (d) root.append(svg('path', { class: 'series', d }));
  if (trigger && trigger.at >= from && trigger.at <= to) {
    const g = svg('g', {
      class: 'trigger', 'data-trigger-at': new Date(trigger.at).toISOString(),
      'data-trigger-value': trigger.value ?? '',
    }, svg('title', null, labels.trigger(trigger.value, trigger.at)),
    svg('line', { x1: x(trigger.at), y1: T, x2: x(trigger.at), y2: H - B }));
    if (trigger.value != null) g.append(svg('circle', { cx: x(trigger.at), cy: y(trigger.value), r: 5 }));
    root.append(g);
  }
  return root;
}
