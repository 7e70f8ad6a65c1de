// Alerting: what makes an operator notice a critical situation at once, whatever the view.
// The situations of the live store (already cut to the caller's scope by the server) that
// are critical and hold an unacknowledged incident are counted in a banner above every
// view and in the tab's title: one real event, one count, however many incidents it
// opened. A critical situation that arrives (new, escalated to critical, or a new incident
// joining it unacknowledged) sounds a tone made in the browser with the Web Audio API (no
// media file), repeated every 10 s while any critical situation stays unacknowledged, and
// raises a desktop notification once the operator allowed them (a button asks; never on
// load). Major incidents alert too (their own tone, not repeated)
// when the operator chose so. The mute silences the sound only. Preferences are kept per
// operator in localStorage. With several tabs open, one of them (the holder of a Web Lock)
// plays the sound. `window.__beffroi.alerting` counts what was scheduled, for the tests.
// A shelved incident (shelving.js, ISA-18.2) neither sounds nor counts.

import * as live from './live.js';
import { h, clear } from './dom.js';
import { t, getLang, onLangChange, localTitle } from './i18n.js';
import { openFiltered } from './views/incidents.js';
import * as shelving from './shelving.js';

/** Milliseconds between two repetitions of the critical tone. */
export const REPEAT_MS = 10000;
const RANK = { critical: 2, major: 1 };

// Tones per severity: critical, three high square beeps alternating two pitches; major,
// two softer, lower sine beeps.
const TONES = {
  critical: { type: 'square', freq: [988, 784], beeps: 3, len: 0.16, gap: 0.08, gain: 0.16 },
  major: { type: 'sine', freq: [660], beeps: 2, len: 0.22, gap: 0.14, gain: 0.22 },
};

const probe = (window.__beffroi ??= {});
const counters = { critical: 0, major: 0, notifications: 0 };

let running = null;

function prefKey(name, user) {
  return `beffroi.alert.${name}.${user ?? ''}`;
}

/** Starts alerting for `user`; `slots.banner` and `slots.controls` receive the banner and
 * the buttons. Returns the function that stops it. */
export function start(user, slots) {
  stop();
  const st = {
    user,
    slots,
    // id → the highest rank already alerted for that incident.
    alerted: new Map(),
    // Situation id → its unacknowledged incidents when last seen.
    waiting: new Map(),
    loaded: false,
    count: 0,
    timer: null,
    ctx: null,
    owner: !navigator.locks,
    releaseLock: null,
    lockAbort: new AbortController(),
    offs: [],
    muted: localStorage.getItem(prefKey('muted', user)) === '1',
    major: localStorage.getItem(prefKey('major', user)) === '1',
  };
  running = st;
  st.banner = h('div.alert-banner#alert-banner', { role: 'alert', hidden: true });
  st.sound = h('button.ghost.alert-sound#alert-mute', { type: 'button', on: { click: onSoundClick } });
  st.majorBox = h('input#alert-major', { type: 'checkbox', checked: st.major, on: { change: toggleMajor } });
  st.majorLabel = h('span');
  st.notifyBtn = h('button.alert-notify#alert-notify', { type: 'button', on: { click: askNotifications } });
  st.menuTitle = h('summary');
  // The mute stays in sight; the rarer settings fold into a menu.
  st.menu = h('details.alert-menu#alert-menu', st.menuTitle,
    h('div.alert-menu-box', h('label', st.majorBox, st.majorLabel), st.notifyBtn));
  clear(slots.banner).append(st.banner);
  clear(slots.controls).append(st.sound, st.menu);

  // Browsers start audio only after a gesture on the page: the first click or key unlocks it.
  const unlock = () => { if (!st.muted) audio(); };
  document.addEventListener('pointerdown', unlock, true);
  document.addEventListener('keydown', unlock, true);
  const onStorage = (e) => {
    if (e.key === prefKey('muted', user)) st.muted = e.newValue === '1';
    else if (e.key === prefKey('major', user)) st.major = e.newValue === '1';
    else return;
    paint();
  };
  window.addEventListener('storage', onStorage);
  st.offs.push(
    () => document.removeEventListener('pointerdown', unlock, true),
    () => document.removeEventListener('keydown', unlock, true),
    () => window.removeEventListener('storage', onStorage),
    live.on('situations', onSituations),
    onLangChange(paint),
    shelving.onChange(() => onSituations({ reset: true })),
  );
  shelving.start();

  if (navigator.locks) {
    navigator.locks.request('beffroi.alert-sound', { signal: st.lockAbort.signal }, () => {
      if (running !== st) return undefined;
      st.owner = true;
      return new Promise((resolve) => (st.releaseLock = resolve));
    }).catch(() => {});
  }
  // Whatever the live store already holds (a view mounted after the first load).
  if (live.situations.size) onSituations({ reset: true });
  paint();
  return stop;
}

export function stop() {
  const st = running;
  if (!st) return;
  running = null;
  st.offs.forEach((f) => f());
  shelving.stop();
  clearInterval(st.timer);
  st.lockAbort.abort();
  if (st.releaseLock) st.releaseLock();
  if (st.ctx) st.ctx.close().catch(() => {});
  clear(st.slots.banner);
  clear(st.slots.controls);
  document.title = t('app.name');
}

/** The incidents of a situation waiting for an acknowledgement, shelved alarms left out. */
function waiting(sit) {
  return (sit.incidents ?? []).filter((m) => m.status === 'new'
    && !shelving.isShelved(live.incidents.get(m.id) ?? m)).length;
}

/** How loud a situation is: it alerts while one of its incidents waits to be acknowledged
 *  (an incident whose alarm is shelved does not). */
function alerting(sit) {
  if (!(waiting(sit) > 0)) return 0;
  if (sit.severity === 'critical') return RANK.critical;
  if (sit.severity === 'major' && running.major) return RANK.major;
  return 0;
}

function onSituations(ev) {
  const st = running;
  if (!st) return;
  const fresh = [];
  if (ev.reset) {
    for (const inc of live.situations.values()) {
      const r = alerting(inc);
      if (r > (st.alerted.get(inc.id) ?? 0)) {
        // What was already there at the first load is counted, not announced.
        if (st.loaded) fresh.push(inc);
        st.alerted.set(inc.id, r);
      }
    }
    for (const id of [...st.alerted.keys()]) {
      const inc = live.situations.get(id);
      if (!inc || !alerting(inc)) st.alerted.delete(id);
    }
    st.loaded = true;
  } else if (ev.situation) {
    const inc = ev.situation;
    const r = alerting(inc);
    // A new unacknowledged incident joining an alerting situation announces it again.
    const joined = !ev.created && r && waiting(inc) > (st.waiting.get(inc.id) ?? 0);
    if (r > (st.alerted.get(inc.id) ?? 0) || joined) fresh.push(inc);
    st.waiting.set(inc.id, waiting(inc));
    // Once acknowledged it is forgotten: a re-opening announces it again.
    if (!r) st.alerted.delete(inc.id);
    else st.alerted.set(inc.id, Math.max(r, st.alerted.get(inc.id) ?? 0));
  }
  if (fresh.length) {
    const worst = fresh.some((i) => i.severity === 'critical') ? 'critical' : 'major';
    play(worst);
    for (const inc of fresh.slice(0, 5)) notify(inc);
  }
  paint();
}

function unacknowledgedCritical() {
  let n = 0;
  for (const s of live.situations.values()) if (s.severity === 'critical' && waiting(s) > 0) n++;
  return n;
}

function fmtCount(n) {
  return new Intl.NumberFormat(getLang() === 'fr' ? 'fr-FR' : 'en-GB').format(n);
}

function paint() {
  const st = running;
  if (!st) return;
  const n = unacknowledgedCritical();
  st.count = n;
  const base = t('app.name');
  document.title = n ? `(${fmtCount(n)}) ${base}` : base;
  clear(st.banner);
  st.banner.hidden = n === 0;
  st.banner.dataset.count = n;
  if (n) {
    const plural = new Intl.PluralRules(getLang()).select(n) === 'one' ? 'one' : 'other';
    st.banner.append(h('button.alert-banner-link#alert-banner-link', {
      type: 'button',
      on: { click: () => openFiltered({ severity: 'critical', status: 'new' }) },
    }, h('span.alert-banner-text', t(`alert.banner.${plural}`, { n: fmtCount(n) })),
    h('span.alert-banner-show', t('alert.banner.show'))));
  }
  // The repetition runs exactly while a critical incident waits for acknowledgement.
  if (n && !st.timer) st.timer = setInterval(repeat, REPEAT_MS);
  if (!n && st.timer) {
    clearInterval(st.timer);
    st.timer = null;
  }

  const blocked = !st.muted && st.ctx && st.ctx.state !== 'running';
  const sound = st.muted ? 'muted' : blocked ? 'blocked' : 'on';
  st.sound.dataset.state = sound;
  st.sound.setAttribute('aria-pressed', String(st.muted));
  st.sound.textContent = t(`alert.sound.${sound}`);
  st.sound.title = t(`alert.sound.title.${sound}`);
  st.menuTitle.textContent = t('alert.menu');
  st.majorBox.checked = st.major;
  st.majorLabel.textContent = t('alert.major');
  const perm = 'Notification' in window ? Notification.permission : 'unsupported';
  st.notifyBtn.dataset.permission = perm;
  st.notifyBtn.hidden = perm === 'granted' || perm === 'unsupported';
  st.notifyBtn.disabled = perm === 'denied';
  st.notifyBtn.textContent = t(perm === 'denied' ? 'alert.notify.denied' : 'alert.notify.ask');
  st.notifyBtn.title = t('alert.notify.title');
}

/** One step of the repetition (what the timer runs every REPEAT_MS). */
function repeat() {
  if (running && unacknowledgedCritical()) play('critical');
}

function audio() {
  const st = running;
  if (!st) return null;
  if (!st.ctx) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    st.ctx = new AC();
    st.ctx.addEventListener('statechange', paint);
  }
  if (st.ctx.state === 'suspended') st.ctx.resume().catch(() => {});
  return st.ctx;
}

/** Schedules the tone of `severity`; false when muted, not the sounding tab, or no audio. */
function play(severity) {
  const st = running;
  if (!st || st.muted || !st.owner) return false;
  const c = audio();
  const tone = TONES[severity];
  if (!c || !tone) return false;
  let at = c.currentTime + 0.02;
  for (let i = 0; i < tone.beeps; i++) {
    const osc = c.createOscillator();
    const gain = c.createGain();
    osc.type = tone.type;
    osc.frequency.value = tone.freq[i % tone.freq.length];
    // Short ramps: no click at the start and end of each beep.
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(tone.gain, at + 0.01);
    gain.gain.setValueAtTime(tone.gain, at + tone.len - 0.02);
    gain.gain.linearRampToValueAtTime(0, at + tone.len);
    osc.connect(gain).connect(c.destination);
    osc.start(at);
    osc.stop(at + tone.len);
    at += tone.len + tone.gap;
  }
  counters[severity]++;
  return true;
}

function notify(inc) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    // The tag makes a second tab's notification of the same incident replace the first.
    const n = new Notification(t(`alert.notify.${inc.severity}`), {
      body: t('alert.notify.body', { title: localTitle(inc.title), commune: (inc.communes ?? []).join(', ') }),
      tag: `beffroi-situation-${inc.id}`,
      lang: getLang(),
    });
    n.addEventListener('click', () => {
      window.focus();
      location.hash = `#/incidents/${inc.lead}`;
      n.close();
    });
    counters.notifications++;
  } catch {
    /* a platform that shows notifications only through a service worker */
  }
}

function onSoundClick() {
  const st = running;
  if (!st) return;
  if (st.sound.dataset.state === 'blocked') {
    audio();
    return;
  }
  st.muted = !st.muted;
  localStorage.setItem(prefKey('muted', st.user), st.muted ? '1' : '0');
  if (!st.muted) audio();
  paint();
}

function toggleMajor() {
  const st = running;
  if (!st) return;
  st.major = st.majorBox.checked;
  localStorage.setItem(prefKey('major', st.user), st.major ? '1' : '0');
  // Majors already waiting are not announced on switching on, only new ones.
  for (const inc of live.incidents.values()) {
    const r = alerting(inc);
    if (r > (st.alerted.get(inc.id) ?? 0)) st.alerted.set(inc.id, r);
  }
  paint();
}

async function askNotifications() {
  if (!('Notification' in window)) return;
  try {
    await Notification.requestPermission();
  } catch {
    /* the browser refused to ask */
  }
  paint();
}

probe.alerting = {
  /** Tones scheduled per severity and notifications shown since the page loaded. */
  get beeps() {
    return { critical: counters.critical, major: counters.major };
  },
  get notifications() {
    return counters.notifications;
  },
  get count() {
    return running?.count ?? 0;
  },
  /** True while the repetition timer runs. */
  get repeating() {
    return !!running?.timer;
  },
  get owner() {
    return !!running?.owner;
  },
  /** Runs one step of the repetition now, as the timer would. */
  tick: repeat,
};
