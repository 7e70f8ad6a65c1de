// Every user-facing string of the console, one table per language. Views add nothing
// outside these tables: `t(key, vars)` looks a key up in the current language.

const TABLES = {
  fr: {
    'app.name': 'Beffroi',
    'app.tagline': 'Poste de commandement',
    'nav.map': 'Carte',
    'nav.incidents': 'Incidents',
    'nav.units': 'Unités',
    'nav.crisis': 'Crise',
    'nav.events': 'Événements',
    'nav.overview': 'Synthèse',
    'lang.switch': 'English',
    'lang.code': 'FR',
    'login.title': 'Connexion au poste de commandement',
    'login.username': 'Identifiant',
    'login.password': 'Mot de passe',
    'login.submit': 'Se connecter',
    'login.failed': 'Identifiant ou mot de passe incorrect.',
    'login.expired': 'Session expirée (le serveur a peut-être redémarré) : reconnectez-vous.',
    'logout': 'Déconnexion',
    'live.connected': 'En direct',
    'live.reconnecting': 'Reconnexion…',
    'live.offline': 'Hors ligne',
    'error.generic': 'Erreur : {message}',
    'error.network': 'Serveur injoignable.',
    'map.layers': 'Couches',
    'map.layer.basemap': 'Fond de carte',
    'map.layer.communes': 'Communes',
    'map.layer.sites': 'Sites',
    'map.layer.devices': 'Capteurs',
    'map.layer.incidents': 'Incidents',
    'map.legend': 'Légende',
    'map.loading': 'Chargement de la carte…',
    'map.counters': '{devices} capteurs · {communes} communes · {incidents} incidents ouverts',
    'map.nobasemap': 'Sans fond de carte',
    'device.title': 'Capteur {id}',
    'device.kind': 'Type',
    'device.site': 'Site',
    'device.commune': 'Commune',
    'device.state': 'État',
    'device.history': 'Historique récent',
    'device.nohistory': 'Aucune mesure récente.',
    'device.close': 'Fermer',
    'state.normal': 'Normal',
    'state.alarm': 'En alarme',
    'state.silent': 'Silencieux',
    'state.quarantined': 'En quarantaine',
    'severity.critical': 'Critique',
    'severity.major': 'Majeur',
    'severity.minor': 'Mineur',
    'severity.info': 'Info',
    'ruletype.threshold': 'seuil',
    'ruletype.absence': 'absence de données',
    'ruletype.rate': 'taux',
    'ruletype.correlation': 'corrélation',
    'ruletype.aggregate': 'agrégat (jauge)',
    'status.new': 'Nouveau',
    'status.acknowledged': 'Pris en compte',
    'status.in_progress': 'En cours',
    'status.resolved': 'Résolu',
    'status.closed': 'Clos',
    'status.open': 'Ouverts',
    'status.active': 'Actifs (non clos)',
    'queue.title': 'File des incidents',
    'queue.empty': 'Aucun incident.',
    'queue.count': '{n} incident(s)',
    'filter.commune': 'Commune',
    'filter.category': 'Catégorie',
    'filter.status': 'Statut',
    'filter.unit': 'Unité',
    'filter.all': 'Toutes',
    'filter.none': 'Sans unité',
    'incident.none': 'Sélectionnez un incident dans la file (j / k).',
    'incident.rule': 'Règle',
    'incident.evidence': 'Éléments déclencheurs',
    'incident.observations': 'Mesures du capteur',
    'incident.opened': 'Ouvert',
    'incident.acknowledged': 'Pris en compte',
    'incident.site': 'Site',
    'incident.commune': 'Commune',
    'incident.unit': 'Unité',
    'incident.alarms': 'Alarmes',
    'incident.condition_active': 'Condition toujours active',
    'incident.condition_cleared': 'Condition retombée',
    'incident.supervisor': 'Attention du superviseur requise',
    'incident.escalated': 'Escaladé au superviseur',
    'incident.reminded': 'Relance envoyée',
    'sop.title': 'Fiche réflexe',
    'sop.none': 'Pas de fiche réflexe pour cette catégorie.',
    'sop.tick': 'Fait',
    'sop.done': 'Fait par {who} à {when}',
    'sop.overdue': 'En retard',
    'sop.skipped': 'Sautée',
    'sop.due': 'Échéance {when}',
    'assign.title': 'Affectation',
    'assign.select': 'Choisir une unité…',
    'assign.button': 'Affecter',
    'assign.free': 'Identifiant de l’unité',
    'assign.unavailable': 'Liste des unités indisponible : saisissez l’identifiant.',
    'unit.available': 'disponible',
    'unit.engaged': 'engagée',
    'unit.off_duty': 'hors service',
    'log.title': 'Journal',
    'log.empty': 'Journal vide.',
    'comment.placeholder': 'Ajouter une note au journal…',
    'comment.submit': 'Ajouter',
    'action.acknowledge': 'Prendre en compte',
    'action.start': 'Démarrer',
    'action.resolve': 'Résoudre',
    'action.close': 'Clore',
    'action.reopen': 'Rouvrir',
    'action.comment': 'Note',
    'action.assign': 'Affectation',
    'action.complete_step': 'Étape de la fiche',
    'action.done': 'Action « {action} » enregistrée.',
    'time.ago.s': 'il y a {n} s',
    'time.ago.m': 'il y a {n} min',
    'time.ago.h': 'il y a {n} h',
    'time.ago.d': 'il y a {n} j',
    'help.title': 'Raccourcis clavier',
    'help.next': 'Incident suivant',
    'help.prev': 'Incident précédent',
    'help.ack': 'Prendre en compte l’incident affiché',
    'help.assign': 'Affecter l’incident affiché à une unité',
    'help.map': 'Carte',
    'help.queue': 'File des incidents',
    'help.help': 'Afficher / masquer cette aide',
    'help.close': 'Fermer',
    'category.access': 'Contrôle d’accès',
    'category.crowd': 'Foule',
    'category.device': 'Équipement',
    'category.fire': 'Incendie',
    'category.flood': 'Inondation',
    'category.intrusion': 'Intrusion',
    'category.road': 'Voirie',
    'notfound': 'Page introuvable.',
  },
  en: {
    'app.name': 'Beffroi',
    'app.tagline': 'Command post',
    'nav.map': 'Map',
    'nav.incidents': 'Incidents',
    'nav.units': 'Units',
    'nav.crisis': 'Crisis',
    'nav.events': 'Events',
    'nav.overview': 'Overview',
    'lang.switch': 'Français',
    'lang.code': 'EN',
    'login.title': 'Sign in to the command post',
    'login.username': 'Username',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.failed': 'Wrong username or password.',
    'login.expired': 'Session expired (the server may have restarted): please sign in again.',
    'logout': 'Sign out',
    'live.connected': 'Live',
    'live.reconnecting': 'Reconnecting…',
    'live.offline': 'Offline',
    'error.generic': 'Error: {message}',
    'error.network': 'Server unreachable.',
    'map.layers': 'Layers',
    'map.layer.basemap': 'Base map',
    'map.layer.communes': 'Communes',
    'map.layer.sites': 'Sites',
    'map.layer.devices': 'Devices',
    'map.layer.incidents': 'Incidents',
    'map.legend': 'Legend',
    'map.loading': 'Loading the map…',
    'map.counters': '{devices} devices · {communes} communes · {incidents} open incidents',
    'map.nobasemap': 'No base map',
    'device.title': 'Device {id}',
    'device.kind': 'Kind',
    'device.site': 'Site',
    'device.commune': 'Commune',
    'device.state': 'State',
    'device.history': 'Recent history',
    'device.nohistory': 'No recent reading.',
    'device.close': 'Close',
    'state.normal': 'Normal',
    'state.alarm': 'Alarm',
    'state.silent': 'Silent',
    'state.quarantined': 'Quarantined',
    'severity.critical': 'Critical',
    'severity.major': 'Major',
    'severity.minor': 'Minor',
    'severity.info': 'Info',
    'ruletype.threshold': 'threshold',
    'ruletype.absence': 'missing data',
    'ruletype.rate': 'rate',
    'ruletype.correlation': 'correlation',
    'ruletype.aggregate': 'aggregate (capacity)',
    'status.new': 'New',
    'status.acknowledged': 'Acknowledged',
    'status.in_progress': 'In progress',
    'status.resolved': 'Resolved',
    'status.closed': 'Closed',
    'status.open': 'Open',
    'status.active': 'Active (not closed)',
    'queue.title': 'Incident queue',
    'queue.empty': 'No incident.',
    'queue.count': '{n} incident(s)',
    'filter.commune': 'Commune',
    'filter.category': 'Category',
    'filter.status': 'Status',
    'filter.unit': 'Unit',
    'filter.all': 'All',
    'filter.none': 'No unit',
    'incident.none': 'Select an incident in the queue (j / k).',
    'incident.rule': 'Rule',
    'incident.evidence': 'What triggered it',
    'incident.observations': 'Device readings',
    'incident.opened': 'Opened',
    'incident.acknowledged': 'Acknowledged',
    'incident.site': 'Site',
    'incident.commune': 'Commune',
    'incident.unit': 'Unit',
    'incident.alarms': 'Alarms',
    'incident.condition_active': 'Condition still active',
    'incident.condition_cleared': 'Condition cleared',
    'incident.supervisor': 'Needs the supervisor’s attention',
    'incident.escalated': 'Escalated to the supervisor',
    'incident.reminded': 'Reminder sent',
    'sop.title': 'Standard operating procedure',
    'sop.none': 'No procedure for this category.',
    'sop.tick': 'Done',
    'sop.done': 'Done by {who} at {when}',
    'sop.overdue': 'Overdue',
    'sop.skipped': 'Skipped',
    'sop.due': 'Due {when}',
    'assign.title': 'Assignment',
    'assign.select': 'Choose a unit…',
    'assign.button': 'Assign',
    'assign.free': 'Unit id',
    'assign.unavailable': 'Unit list unavailable: type the unit id.',
    'unit.available': 'available',
    'unit.engaged': 'engaged',
    'unit.off_duty': 'off duty',
    'log.title': 'Log',
    'log.empty': 'Empty log.',
    'comment.placeholder': 'Add a note to the log…',
    'comment.submit': 'Add',
    'action.acknowledge': 'Acknowledge',
    'action.start': 'Start',
    'action.resolve': 'Resolve',
    'action.close': 'Close',
    'action.reopen': 'Reopen',
    'action.comment': 'Note',
    'action.assign': 'Assignment',
    'action.complete_step': 'Procedure step',
    'action.done': 'Action “{action}” recorded.',
    'time.ago.s': '{n} s ago',
    'time.ago.m': '{n} min ago',
    'time.ago.h': '{n} h ago',
    'time.ago.d': '{n} d ago',
    'help.title': 'Keyboard shortcuts',
    'help.next': 'Next incident',
    'help.prev': 'Previous incident',
    'help.ack': 'Acknowledge the incident shown',
    'help.assign': 'Assign the incident shown to a unit',
    'help.map': 'Map',
    'help.queue': 'Incident queue',
    'help.help': 'Show / hide this help',
    'help.close': 'Close',
    'category.access': 'Access control',
    'category.crowd': 'Crowd',
    'category.device': 'Device',
    'category.fire': 'Fire',
    'category.flood': 'Flood',
    'category.intrusion': 'Intrusion',
    'category.road': 'Road',
    'notfound': 'Page not found.',
  },
};

export const LANGS = Object.keys(TABLES);
const KEY = 'beffroi.lang';
let lang = pick();
const listeners = new Set();

function pick() {
  const saved = localStorage.getItem(KEY);
  if (saved && TABLES[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || 'fr']) {
    const base = String(l).slice(0, 2).toLowerCase();
    if (TABLES[base]) return base;
  }
  return 'fr';
}

export function getLang() {
  return lang;
}

export function setLang(l) {
  if (!TABLES[l] || l === lang) return;
  lang = l;
  localStorage.setItem(KEY, l);
  document.documentElement.lang = l;
  for (const f of listeners) f(l);
}

/** Calls `f` after every language change. */
export function onLangChange(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** A label for a deployment-defined id (category…): its translation if the table has one,
 * else the id itself. */
export function tOr(key, fallback) {
  const s = TABLES[lang][key] ?? TABLES.fr[key];
  return s ?? fallback;
}

export function t(key, vars) {
  let s = TABLES[lang][key] ?? TABLES.fr[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

/** Date and time in the current language. */
export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toLocaleString(lang === 'fr' ? 'fr-FR' : 'en-GB', {
    day: '2-digit', month: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function fmtAgo(iso, now = Date.now()) {
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return t('time.ago.s', { n: s });
  if (s < 3600) return t('time.ago.m', { n: Math.floor(s / 60) });
  if (s < 86400) return t('time.ago.h', { n: Math.floor(s / 3600) });
  return t('time.ago.d', { n: Math.floor(s / 86400) });
}

document.documentElement.lang = lang;
