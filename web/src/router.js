// Hash routes (#/map, #/incidents/12…) mapped to view modules. A view module exports
// `route` (the first path segment), `navKey` (i18n key of its tab, or null), `mount(el,
// params)` returning an optional cleanup function, and may export `onKey(event)` and
// `permission` (a permission name, or a list of which one is enough): without it the view
// has no tab and its route leads to the home view instead (a link, a shortcut or a typed
// address never opens a screen whose requests the server would refuse).

const views = new Map();
let current = null;
let cleanup = null;
let outlet = null;
let home = null;
let may = () => true;
const changeListeners = new Set();

export function register(view) {
  views.set(view.route, view);
}

export function registered() {
  return [...views.values()];
}

/** `can(permission)`: whether the user holds a permission (from GET /auth/me). */
export function setPermissions(can) {
  may = can;
}

/** The user may open this view: it names no permission, or the user holds one it names. */
export function allowed(view) {
  const p = view?.permission;
  if (!p) return true;
  return (Array.isArray(p) ? p : [p]).some((x) => may(x));
}

/** The first registered view with a tab that the user may open (null: none). */
export function firstAllowed() {
  return registered().find((v) => v.navKey && allowed(v))?.route ?? null;
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
  home = fallback;
  window.addEventListener('hashchange', render);
  const route = parse().route;
  if (!views.has(route) || !allowed(views.get(route))) location.replace(`#/${fallback}`);
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
  if (!allowed(view)) {
    if (home && route !== home) location.replace(`#/${home}`);
    return;
  }
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
