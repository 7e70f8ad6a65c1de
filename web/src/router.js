// Hash routes (#/map, #/incidents/12…) mapped to view modules. A view module exports
// `route` (the first path segment), `navKey` (i18n key of its tab, or null), `mount(el,
// params)` returning an optional cleanup function, and may export `onKey(event)`.

const views = new Map();
let current = null;
let cleanup = null;
let outlet = null;
const changeListeners = new Set();

export function register(view) {
  views.set(view.route, view);
}

export function registered() {
  return [...views.values()];
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

export function currentView() {
  return current;
}

export function onRouteChange(f) {
  changeListeners.add(f);
}

export function parse(hash = location.hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return { route: parts[0] ?? '', args: parts.slice(1) };
}

export function start(el, fallback) {
  outlet = el;
  window.addEventListener('hashchange', render);
  if (!views.has(parse().route)) location.replace(`#/${fallback}`);
  render();
}

export function stop() {
  window.removeEventListener('hashchange', render);
  if (cleanup) cleanup();
  cleanup = null;
  current = null;
}

function render() {
  const { route, args } = parse();
  const view = views.get(route);
  if (!view) return;
  // A view that handles its own sub-routes (incident id) is not remounted.
  if (current === view && view.update) {
    view.update(args);
  } else {
    if (cleanup) cleanup();
    while (outlet.firstChild) outlet.firstChild.remove();
    current = view;
    cleanup = view.mount(outlet, args) ?? null;
  }
  for (const f of changeListeners) f(view, args);
}
