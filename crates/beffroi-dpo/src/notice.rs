//! The public notice of a device that observes public space (`public_space = true` on its
//! kind): what the town must publish about it (GDPR art. 13 and 14; CNIL's position on
//! augmented cameras): who processes, why, on what legal basis, for how long, the rights
//! and how to exercise them, the DPO, the right to complain to the CNIL.

use std::fmt::Write;

use beffroi_core::privacy::PrivacyPolicy;
use beffroi_core::territory::{DeviceIdx, Territory};
use serde::Serialize;

use crate::html::escape;
use crate::register::{
    ControllerEntry, DataItem, LegalBasisEntry, Protection, RetentionEntry, purpose_of,
};

/// Where complaints go (GDPR art. 77).
pub const CNIL: &str = "Commission nationale de l'informatique et des libertés (CNIL), 3 place de Fontenoy, TSA 80715, 75334 Paris Cedex 07 — www.cnil.fr/plaintes";

#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub device: String,
    pub kind: String,
    pub kind_label: String,
    /// The kind's label in English, when the kinds file gives one.
    pub kind_label_en: Option<String>,
    pub site: String,
    pub site_id: String,
    pub commune: String,
    pub commune_id: String,
    pub controller: ControllerEntry,
    pub activities: Vec<NoticeActivity>,
    /// What the device measures.
    pub data: Vec<DataItem>,
    /// Whether any of it is personal (or a count of people).
    pub concerns_people: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct NoticeActivity {
    pub id: String,
    pub name: String,
    pub purposes: Vec<String>,
    pub legal_basis: LegalBasisEntry,
    pub recipients: Vec<String>,
    pub retention: Vec<RetentionEntry>,
}

/// A safe file name for a device's page.
pub fn file_stem(device: &str) -> String {
    device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The notice of device `d`, or `None` when its kind does not observe public space.
pub fn build(t: &Territory, p: &PrivacyPolicy, d: DeviceIdx) -> Option<Notice> {
    let public = t
        .devices
        .get(d.get())
        .is_some_and(|dev| t.kind(dev.kind).public_space);
    if !public {
        return None;
    }
    of_device(t, &register_for_notices(t, p), d)
}

/// The register the notices draw from (device fields only).
fn register_for_notices(t: &Territory, p: &PrivacyPolicy) -> crate::Register {
    crate::register::build(t, p, &[], beffroi_core::Timestamp(0))
}

fn of_device(t: &Territory, reg: &crate::Register, d: DeviceIdx) -> Option<Notice> {
    let dev = t.devices.get(d.get())?;
    let k = t.kind(dev.kind);
    if !k.public_space {
        return None;
    }
    let site = t.site(dev.site);
    let commune = t.commune(site.commune);
    let data: Vec<DataItem> = reg
        .activities
        .iter()
        .flat_map(|a| a.data.iter())
        .chain(reg.unassigned.iter())
        .filter(|i| {
            i.field
                .split_once('.')
                .is_some_and(|(kind, _)| kind == &*k.id)
        })
        .cloned()
        .collect();
    let mut ids: Vec<&str> = Vec::new();
    for f in &k.fields {
        if let Some(id) = purpose_of(k, f)
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    let activities = ids
        .iter()
        .filter_map(|id| reg.activities.iter().find(|a| a.id == *id))
        .map(|a| {
            let mine: Vec<&str> = a
                .data
                .iter()
                .filter(|i| data.iter().any(|x| x.field == i.field))
                .map(|i| i.category)
                .collect();
            NoticeActivity {
                id: a.id.clone(),
                name: a.name.clone(),
                purposes: a.purposes.clone(),
                legal_basis: a.legal_basis.clone(),
                recipients: a.recipients.clone(),
                retention: a
                    .retention
                    .iter()
                    .filter(|r| mine.contains(&r.category))
                    .cloned()
                    .collect(),
            }
        })
        .collect();
    Some(Notice {
        device: dev.id.to_string(),
        kind: k.id.to_string(),
        kind_label: k.label.to_string(),
        kind_label_en: k.label_en.as_deref().map(Into::into),
        site: site.name.to_string(),
        site_id: site.id.to_string(),
        commune: commune.name.to_string(),
        commune_id: commune.id.to_string(),
        controller: reg.controller.clone(),
        concerns_people: data.iter().any(|i| i.protection != Protection::Technical),
        activities,
        data,
    })
}

/// The notices of every device observing public space, by commune, site and device.
pub fn all(t: &Territory, p: &PrivacyPolicy) -> Vec<Notice> {
    let reg = register_for_notices(t, p);
    let mut v: Vec<Notice> = (0..t.devices.len())
        .filter_map(|i| of_device(t, &reg, DeviceIdx(i as u32)))
        .collect();
    v.sort_by(|a, b| (&a.commune, &a.site, &a.device).cmp(&(&b.commune, &b.site, &b.device)));
    v
}

/// The body of a notice page (between `<body>` and `</body>`).
pub(crate) fn render_body(o: &mut String, n: &Notice) {
    let c = &n.controller;
    let _ = write!(
        o,
        "<h1>Information du public</h1>\n<p><strong>{}</strong> — {}, {}</p>\n\
<p class=\"meta\">Dispositif <code>{}</code> ({}), site « {} », commune de {}.</p>\n\
<h2>Qui traite ces données ?</h2><dl><dt>Responsable du traitement</dt><dd>{}<br>{}</dd>\
<dt>Délégué à la protection des données</dt><dd>{}</dd></dl>\n",
        escape(&n.kind_label),
        escape(&n.site),
        escape(&n.commune),
        escape(&n.device),
        escape(&n.kind),
        escape(&n.site),
        escape(&n.commune),
        escape(&c.name),
        escape(&c.address),
        escape(&c.dpo_contact)
    );
    o.push_str("<h2>Ce que mesure ce dispositif</h2><ul>");
    for d in &n.data {
        let _ = write!(
            o,
            "<li>{} — {}</li>",
            escape(&d.description),
            escape(d.protection.label_fr())
        );
    }
    o.push_str("</ul>");
    o.push_str(
        "<p>Aucune image, aucun enregistrement vidéo ni aucune donnée biométrique n'est \
collecté par Beffroi ; il n'y a ni reconnaissance faciale ni catégorisation des personnes.</p>",
    );
    for a in &n.activities {
        let _ = write!(
            o,
            "<h2>Pourquoi : {}</h2><dl><dt>Finalités</dt><dd><ul>",
            escape(&a.name)
        );
        for p in &a.purposes {
            let _ = write!(o, "<li>{}</li>", escape(p));
        }
        let _ = write!(
            o,
            "</ul></dd><dt>Base légale</dt><dd>{} ({})</dd><dt>Destinataires</dt><dd>{}</dd>\
<dt>Durée de conservation</dt><dd>",
            escape(a.legal_basis.label_fr),
            escape(&a.legal_basis.article.replace("GDPR ", "RGPD, ")),
            escape(&a.recipients.join(" ; "))
        );
        if a.retention.is_empty() {
            o.push_str("aucune donnée conservée");
        } else {
            let parts: Vec<String> = a
                .retention
                .iter()
                .map(|r| {
                    let cat = beffroi_core::DataCategory::parse(r.category)
                        .map_or(r.category, crate::fr::data_of);
                    format!("{} : {}", escape(cat), escape(&r.label_fr))
                })
                .collect();
            o.push_str(&parts.join(" ; "));
        }
        o.push_str("</dd></dl>");
    }
    if n.activities.is_empty() {
        o.push_str(
            "<p class=\"warn\">Aucune activité du registre n'est rattachée à ce dispositif.</p>",
        );
    }
    let _ = writeln!(
        o,
        "<h2>Vos droits</h2><p>Vous disposez d'un droit d'accès, de rectification, d'effacement et \
de limitation du traitement des données vous concernant, ainsi que d'un droit d'opposition \
(RGPD, art. 15 à 21). Pour les exercer : <strong>{}</strong>. Pour toute question : le délégué à la \
protection des données, <strong>{}</strong>.</p>\
<p>Si vous estimez, après nous avoir contactés, que vos droits ne sont pas respectés, vous pouvez \
adresser une réclamation à la {}.</p>",
        escape(&c.contact),
        escape(&c.dpo_contact),
        escape(CNIL)
    );
}
