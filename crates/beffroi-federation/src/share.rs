//! An incident as an agreement lets it leave: [`share`] decides whether it goes to a
//! partner and projects it onto [`SharedIncident`].
//!
//! What leaves is built field by field from the incident's codes (category, severity,
//! status), its times, its commune, and the agreement's optional fields. The title is the
//! rule's, already scrubbed; the pseudonyms it may quote are re-keyed for the partner
//! ([`rekey`]): the same person gives the same token to one partner across incidents, and
//! unrelated tokens to two partners, and neither can be opened with the territory's vault.
//! Notes, evidence, operators, devices and pseudonymised values never leave.

use beffroi_core::incident::Incident;
use beffroi_core::{Status, Territory};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::agreement::{Field, Partner};
use crate::wire::{MAX_TEXT, SharedIncident};

/// The pseudonym `p` (`kind:epoch:hash`) as `partner` receives it: `kind:x:<hash>`, a
/// keyed hash of the pseudonym under this instance's federation secret and the partner's
/// name. Not a pseudonym of the territory's (its epoch is not a number), so nothing opens
/// it.
pub fn rekey(secret: &[u8; 32], partner: &str, p: &str) -> String {
    let kind = p.split(':').next().unwrap_or("id");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(partner.as_bytes());
    mac.update(&[0]);
    mac.update(p.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut b32 = data_encoding::BASE32_NOPAD
        .encode(&digest)
        .to_ascii_lowercase();
    b32.truncate(20);
    format!("{kind}:x:{b32}")
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':'
}

/// `text` with every pseudonym re-keyed for `partner`.
pub fn rekey_text(secret: &[u8; 32], partner: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if beffroi_privacy::parse_pseudonym(token).is_some() {
            out.push_str(&rekey(secret, partner, token));
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// An operator's note on a partner's incident, as the partner receives it: the text
/// (scrubbed when it was written) with its pseudonyms re-keyed for the partner.
pub fn note(
    reference: &str,
    at: i64,
    text: &str,
    partner: &Partner,
    secret: &[u8; 32],
) -> crate::SharedNote {
    crate::SharedNote {
        reference: reference.to_string(),
        at,
        text: bounded(rekey_text(secret, &partner.name, text)),
    }
}

fn bounded(mut s: String) -> String {
    s.retain(|c| !c.is_control());
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The incident as `partner` receives it, if the agreement shares it.
pub fn share(
    i: &Incident,
    t: &Territory,
    partner: &Partner,
    secret: &[u8; 32],
) -> Option<SharedIncident> {
    if !partner.shares(&i.category, i.severity, i.commune) {
        return None;
    }
    let commune = t.commune(i.commune);
    let site = t.site(i.site);
    let has = |f: Field| partner.fields.contains(&f);
    let at = if has(Field::Position) {
        site.position
    } else {
        commune.position
    };
    Some(SharedIncident {
        reference: format!("INC-{}", i.id.0),
        version: i.updated_at.0,
        category: i.category.to_string(),
        severity: i.severity.as_str().into(),
        status: match i.status {
            Status::New => "new",
            Status::Acknowledged => "acknowledged",
            Status::InProgress => "in_progress",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
        .into(),
        opened_at: i.opened_at.0,
        insee: commune.insee.as_deref().map(str::to_string),
        commune: bounded(commune.name.to_string()),
        position: [at.lon, at.lat],
        title: has(Field::Title)
            .then(|| bounded(rekey_text(secret, &partner.name, i.title.as_str()))),
        site: has(Field::Site).then(|| bounded(site.name.to_string())),
        tlp: partner.tlp.as_str().into(),
    })
}
