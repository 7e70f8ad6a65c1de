// Pseudonyms in the incident detail: each one a chip; for a user with `personal.unmask`,
// an "Identifier" action that asks the purpose and a justification, then shows the value
// once, and hides it again after 60 s or when the dialog is closed. The value is never
// kept anywhere else (not in the state, not in storage, not in the URL).

import * as api from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { splitPseudonyms, PURPOSES, MIN_JUSTIFICATION, REVEAL_MS } from '../privacy.js';

/** A text with its pseudonyms as chips; the unmask action on those `incident` carries
 * (`carried_pseudonyms`: recorded from the reading that raised it — a pseudonym in a title,
 * an evidence text or a log entry is shown, never unmaskable through it). */
export function withPseudonyms(text, incident) {
  const parts = splitPseudonyms(text);
  if (!parts.some((p) => p.pseudonym)) return text;
  return parts.map((p) => (p.pseudonym ? chip(p.pseudonym, incident) : p.text));
}

function chip(pseudonym, incident) {
  const carried = incident?.carried_pseudonyms?.includes(pseudonym);
  return h('span.pseudo-chip', { title: t('unmask.chip_hint'), dataset: { pseudonym } },
    h('code', pseudonym),
    carried && api.can('personal.unmask') && h('button.unmask', {
      type: 'button',
      on: { click: (e) => { e.stopPropagation(); openDialog(pseudonym, incident.id); } },
    }, t('unmask.action')));
}

let open = null;

function openDialog(pseudonym, incidentId) {
  open?.close();
  const purpose = h('select#unmask-purpose', h('option', { value: '' }, t('unmask.purpose.choose')),
    ...PURPOSES.map((p) => h('option', { value: p }, t(`unmask.purpose.${p}`))));
  const why = h('textarea#unmask-justification', { rows: 3, placeholder: t('unmask.justification.placeholder') });
  const error = h('p.error#unmask-error');
  const result = h('div#unmask-result');
  const submit = h('button#unmask-submit', { type: 'submit' }, t('unmask.submit'));
  let timer = 0;
  const close = () => {
    clearTimeout(timer);
    result.textContent = '';
    overlay.remove();
    if (open?.overlay === overlay) open = null;
  };
  const form = h('form.unmask-form', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        error.textContent = '';
        const justification = why.value.trim();
        if (!purpose.value) { error.textContent = t('unmask.purpose.required'); return; }
        if (justification.length < MIN_JUSTIFICATION) {
          error.textContent = t('unmask.justification.short', { n: MIN_JUSTIFICATION });
          return;
        }
        submit.disabled = true;
        try {
          const r = await api.post(`/incidents/${incidentId}/unmask`, { pseudonym, purpose: purpose.value, justification });
          form.hidden = true;
          if (r.status === 'pending') {
            // A second approver decides first (`[privacy] unmask_approval`): nothing shown yet.
            result.append(h('p.muted#unmask-pending', t(`unmask.pending.${r.approval}`, { id: r.request_id })));
            return;
          }
          result.append(
            h('p.muted', t('unmask.once', { s: Math.round(REVEAL_MS / 1000) })),
            h('p.unmasked#unmask-value', r.value));
          timer = setTimeout(close, REVEAL_MS);
        } catch (err) {
          error.textContent = t(`unmask.error.${err.code}`) !== `unmask.error.${err.code}`
            ? t(`unmask.error.${err.code}`) : t('error.generic', { message: err.message });
        } finally {
          submit.disabled = false;
        }
      },
    },
  },
  h('label', t('unmask.purpose'), purpose),
  h('label', t('unmask.justification'), why),
  h('p.muted', t('unmask.audited')),
  error, submit);
  const overlay = h('div.modal#unmask-dialog', { role: 'dialog', 'aria-modal': 'true',
    on: { click: (e) => { if (e.target === overlay) close(); }, keydown: (e) => { if (e.key === 'Escape') close(); } } },
  h('div.modal-box',
    h('header', h('h3', t('unmask.title')), h('button.close#unmask-close', { type: 'button', 'aria-label': t('unmask.close'), on: { click: close } }, '×')),
    h('p', h('code', pseudonym)),
    form, result));
  document.body.append(overlay);
  open = { overlay, close };
  purpose.focus();
}
