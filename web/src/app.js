// Boot: the login page, or the shell (top bar, views, help, keyboard shortcuts).

import * as api from './api.js';
import * as live from './live.js';
import * as router from './router.js';
import * as alerting from './alerting.js';
import * as session from './session.js';
import { h, clear } from './dom.js';
import { t, getLang, setLang, onLangChange, LANGS } from './i18n.js';
import * as login from './views/login.js';
import * as mapView from './views/map.js';
import * as incidentsView from './views/incidents.js';
import * as unitsView from './views/units.js';
import * as crisisView from './views/crisis.js';
import * as eventsView from './views/events.js';
import * as overviewView from './views/overview.js';
import * as privacyView from './views/privacy.js';

router.register(mapView);
router.register(incidentsView);
router.register(unitsView);
router.register(crisisView);
router.register(eventsView);
router.register(overviewView);
router.register(privacyView);

const root = document.getElementById('app');
let shellCleanup = null;

api.onUnauthorized(() => showLogin(t('login.expired')));
// Another tab of this browser logged in (or answers our question): follow its session; it
// logged out: so do we.
session.listen(adoptSession, () => showLogin());

function teardown() {
  if (shellCleanup) shellCleanup();
  shellCleanup = null;
  alerting.stop();
  live.stop();
  router.stop();
}

function showLogin(message) {
  teardown();
  api.clearSession();
  const rerender = () => {
    clear(root);
    root.append(login.render(onLogin, message, langButton()));
  };
  rerender();
  shellCleanup = onLangChange(rerender);
}

async function onLogin() {
  session.announce(api.token());
  await onLoggedIn();
}

async function adoptSession(csrf) {
  teardown();
  api.setToken(csrf);
  try {
    await onLoggedIn();
  } catch (e) {
    showLogin(e.status === 401 ? t('login.expired') : undefined);
  }
}

async function onLoggedIn() {
  if (shellCleanup) shellCleanup();
  shellCleanup = null;
  await api.loadMe();
  showShell();
}

function langButton() {
  const other = LANGS.find((l) => l !== getLang());
  return h('button.lang#lang-switch', {
    type: 'button', title: t('lang.switch'), lang: other,
    on: { click: () => setLang(other) },
  }, t('lang.switch'));
}

function showShell() {
  clear(root);
  router.setPermissions(api.can);
  const nav = h('nav.tabs');
  const liveDot = h('span.live#live-status');
  const userBox = h('span.user');
  const alertControls = h('span.alert-controls');
  const langSlot = h('span');
  const bar = h('header.topbar',
    h('a.brand', { href: `#/${router.firstAllowed() ?? 'map'}` }, h('img', { src: '/console/icon.svg', alt: '' }), h('span.brand-name', 'Beffroi'), h('span.tagline#tagline')),
    nav, h('div.spacer'), liveDot, userBox, langSlot,
    alertControls, h('button.ghost#logout', { type: 'button', on: { click: logout } }));
  const banner = h('div.alert-slot');
  const main = h('main#view');
  const help = helpOverlay();
  root.append(bar, banner, main, help);

  const paint = () => {
    clear(nav);
    for (const v of router.registered()) {
      // A view names the permission its tab needs (`export const permission`).
      if (!v.navKey || !router.allowed(v)) continue;
      nav.append(h('a.tab', { href: `#/${v.route}`, dataset: { route: v.route } }, t(v.navKey)));
    }
    markTab();
    document.getElementById('tagline').textContent = t('app.tagline');
    document.getElementById('logout').textContent = t('logout');
    userBox.textContent = api.currentUser()?.user ?? '';
    clear(langSlot).append(langButton());
    paintLive(live.getStatus());
    clear(help).append(...helpContent());
  };
  const markTab = () => {
    const cur = router.currentView()?.route;
    for (const a of nav.querySelectorAll('a.tab')) a.classList.toggle('active', a.dataset.route === cur);
  };
  const paintLive = (s) => {
    liveDot.className = `live ${s}`;
    liveDot.dataset.status = s;
    liveDot.textContent = t(`live.${s}`);
  };
  const offs = [
    onLangChange(paint),
    live.on('status', paintLive),
  ];
  router.onRouteChange(markTab);
  paint();
  // Roles without incident.read (the DPO) have no live stream to follow, nor alerts.
  if (api.can('incident.read')) {
    alerting.start(api.currentUser()?.user ?? null, { banner, controls: alertControls });
    live.start().catch(() => {});
  } else liveDot.hidden = true;
  // The first tab the role may open (the map; the DPO, who holds neither incidents nor
  // devices: the data protection view).
  router.start(main, router.firstAllowed() ?? 'map');

  const keys = (e) => onKey(e, help);
  document.addEventListener('keydown', keys);
  shellCleanup = () => {
    offs.forEach((f) => f());
    document.removeEventListener('keydown', keys);
  };
}

async function logout() {
  try {
    await api.post('/auth/logout');
  } catch {
    /* the session may be gone already */
  }
  session.announceLogout();
  showLogin();
}

function helpContent() {
  const row = (k, key) => h('tr', h('td', h('kbd', k)), h('td', t(key)));
  return [
    h('div.help-box', { role: 'dialog', 'aria-label': t('help.title') },
      h('h2', t('help.title')),
      h('table', row('j', 'help.next'), row('k', 'help.prev'), row('a', 'help.ack'),
        row('u', 'help.assign'), row('g m', 'help.map'), row('g i', 'help.queue'), row('?', 'help.help')),
      h('button', { type: 'button', on: { click: () => (document.getElementById('help').hidden = true) } }, t('help.close'))),
  ];
}

function helpOverlay() {
  const el = h('div#help.overlay', { hidden: true });
  el.addEventListener('click', (e) => { if (e.target === el) el.hidden = true; });
  return el;
}

let pendingG = false;
function onKey(e, help) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = e.target?.tagName;
  if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || e.target?.isContentEditable) {
    if (e.key === 'Escape') e.target.blur();
    return;
  }
  if (e.key === 'Escape') { help.hidden = true; return; }
  if (e.key === '?') { help.hidden = !help.hidden; e.preventDefault(); return; }
  if (pendingG) {
    pendingG = false;
    if (e.key === 'm') router.navigate('#/map');
    if (e.key === 'i') router.navigate('#/incidents');
    return;
  }
  if (e.key === 'g') { pendingG = true; return; }
  const view = router.currentView();
  if (view?.onKey?.(e)) { e.preventDefault(); return; }
  // j/k from any other view open the queue.
  if ((e.key === 'j' || e.key === 'k') && view !== incidentsView) {
    router.navigate('#/incidents');
    e.preventDefault();
  }
}

if (api.token()) {
  api.loadMe().then(showShell, (e) => showLogin(e.status === 401 ? t('login.expired') : undefined));
} else {
  showLogin();
  // A tab of this browser may already hold the session: no second login.
  session.ask();
}
