// Privacy helpers of the console, pure (no DOM, no i18n) so that they are tested with
// `node --test web/test/` and used by the views:
// - people counts: a suppressed count (below the minimum group size, `null` with
//   `"suppressed": true` from the API) is printed "< 10", never as a number;
// - pseudonyms (`plate:3:k7f3qx2mn4pz7qab3c2d`) found in a text, to be shown as chips.

/** Minimum group size the API applies (`/crowd` says it; 10 by default). */
export const MIN_GROUP = 10;

/** A people count as text: "< 10" when suppressed or null, else the whole number. */
export function peopleCountText(value, suppressed, min = MIN_GROUP) {
  if (suppressed || value == null || !Number.isFinite(Number(value)) || Number(value) < min) return `< ${min}`;
  return String(Math.round(Number(value)));
}

/** Pseudonyms as produced by the server (beffroi_privacy::parse_pseudonym): `kind:epoch:`
 * then 20 base32 characters, kind one of plate, badge, mac, phone, email, name, id. */
export const PSEUDONYM = /(?<![\w:])((?:plate|badge|mac|phone|email|name|id):\d+:[a-z2-7]{20})(?![\w:])/g;

/** Splits a text into parts: `{ text }` and `{ pseudonym }`, in order. */
export function splitPseudonyms(text) {
  const parts = [];
  let last = 0;
  for (const m of String(text ?? '').matchAll(PSEUDONYM)) {
    if (m.index > last) parts.push({ text: text.slice(last, m.index) });
    parts.push({ pseudonym: m[1] });
    last = m.index + m[1].length;
  }
  if (last < String(text ?? '').length) parts.push({ text: String(text).slice(last) });
  return parts;
}

/** The purposes the server accepts for unmasking (beffroi_core::privacy::UnmaskPurpose). */
export const PURPOSES = ['incident_response', 'judicial_requisition', 'subject_request'];
/** Shortest justification the server accepts, in characters. */
export const MIN_JUSTIFICATION = 15;
/** How long an unmasked value stays on screen, in milliseconds. */
export const REVEAL_MS = 60_000;
