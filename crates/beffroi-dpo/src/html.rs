//! Printable, self-contained French HTML pages (no script, no external resource; the
//! style is inline). Every string that comes from the configuration goes through
//! [`escape`].

use std::fmt::Write;

use crate::notice::Notice;
use crate::register::{DataItem, Register};

/// The CSP the pages need: their inline style, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1b1b1b;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}\
h1{font-size:1.6rem;border-bottom:3px solid #000091;padding-bottom:.3rem}h2{font-size:1.25rem;margin-top:2rem;color:#000091}\
h3{font-size:1.05rem;margin:1rem 0 .3rem}table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}\
th,td{border:1px solid #bbb;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.92rem}th{background:#eef}\
.meta{color:#555;font-size:.9rem}.warn{border:2px solid #b34000;background:#fff4ef;padding:.5rem 1rem}\
.activity{page-break-inside:avoid;border-top:1px solid #ccc;margin-top:1.5rem}dl{display:grid;grid-template-columns:14rem 1fr;gap:.2rem 1rem}\
dt{font-weight:600}dd{margin:0}code{font-size:.88rem}ul{margin:.2rem 0;padding-left:1.2rem}\
@media print{body{margin:0;max-width:none}h2{page-break-after:avoid}}";

/// Opens a page: doctype, `lang="fr"`, title, style.
pub fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
}

pub fn page_end(out: &mut String) {
    out.push_str("</body>\n</html>\n");
}

fn list(out: &mut String, items: &[String], empty: &str) {
    if items.iter().all(|s| s.trim().is_empty()) {
        let _ = write!(out, "<em>{}</em>", escape(empty));
        return;
    }
    out.push_str("<ul>");
    for i in items.iter().filter(|s| !s.trim().is_empty()) {
        let _ = write!(out, "<li>{}</li>", escape(i));
    }
    out.push_str("</ul>");
}

fn data_table(out: &mut String, data: &[DataItem]) {
    if data.is_empty() {
        out.push_str("<p><em>Aucune donnée rattachée.</em></p>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Donnée</th><th>Description</th><th>Catégorie</th>\
<th>Identifiant</th><th>Protection</th></tr></thead><tbody>",
    );
    for d in data {
        let cat =
            beffroi_core::DataCategory::parse(d.category).map_or(d.category, crate::fr::category);
        let ident = d
            .identifier
            .and_then(beffroi_core::territory::Identifier::parse)
            .map_or("—", crate::fr::identifier);
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.field),
            escape(&d.description),
            escape(cat),
            escape(ident),
            escape(d.protection.label_fr())
        );
    }
    out.push_str("</tbody></table>");
}

/// The register as a printable page.
pub fn register(r: &Register) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let title = format!(
        "Registre des activités de traitement — {}",
        r.controller.name
    );
    page_start(&mut o, &title);
    let _ = write!(
        o,
        "<h1>Registre des activités de traitement</h1>\n\
<p class=\"meta\">Article 30 du règlement (UE) 2016/679 (RGPD). Territoire « {} » (<code>{}</code>). \
Généré par Beffroi à partir de la configuration le {}.</p>\n",
        escape(&r.territory.name),
        escape(&r.territory.id),
        escape(&r.generated_at)
    );
    if !r.problems.is_empty() {
        o.push_str("<div class=\"warn\"><strong>Registre incomplet :</strong><ul>");
        for p in &r.problems {
            let _ = write!(
                o,
                "<li><code>{}</code> : {}</li>",
                escape(&p.at),
                escape(&p.message)
            );
        }
        o.push_str("</ul></div>\n");
    }
    let c = &r.controller;
    let _ = write!(
        o,
        "<h2>Responsable du traitement</h2>\n<dl><dt>Nom</dt><dd>{}</dd><dt>Adresse</dt><dd>{}</dd>\
<dt>Exercice des droits</dt><dd>{}</dd><dt>Délégué à la protection des données</dt><dd>{}</dd></dl>\n",
        escape(&c.name),
        escape(&c.address),
        escape(&c.contact),
        escape(&c.dpo_contact)
    );
    let s = &r.summary;
    let _ = write!(
        o,
        "<h2>Synthèse</h2>\n<table><tbody>\
<tr><th>Activités de traitement</th><td>{}</td></tr>\
<tr><th>Champs personnels des capteurs</th><td>{} (dont {} pseudonymisés)</td></tr>\
<tr><th>Champs personnels des enregistrements de Beffroi</th><td>{}</td></tr>\
<tr><th>Comptages de personnes (agrégats)</th><td>{}</td></tr>\
<tr><th>Capteurs observant l'espace public (information du public)</th><td>{}</td></tr>\
</tbody></table>\n<ol>",
        s.activities,
        s.personal_device_fields,
        s.pseudonymised_fields,
        s.personal_record_fields,
        s.aggregated_fields,
        s.public_space_devices
    );
    for a in &r.activities {
        let _ = write!(
            o,
            "<li><a href=\"#activity-{}\">{}</a></li>",
            escape(&a.id),
            escape(&a.name)
        );
    }
    o.push_str("</ol>\n");
    for (n, a) in r.activities.iter().enumerate() {
        let _ = write!(
            o,
            "<section class=\"activity\" id=\"activity-{}\">\n<h2>{}. {}</h2>\n<p class=\"meta\">Identifiant : <code>{}</code></p>\n<dl>",
            escape(&a.id),
            n + 1,
            escape(&a.name),
            escape(&a.id)
        );
        o.push_str("<dt>Finalités</dt><dd>");
        list(&mut o, &a.purposes, "Aucune finalité déclarée");
        let _ = write!(
            o,
            "</dd><dt>Base légale</dt><dd>{} ({})</dd>",
            escape(a.legal_basis.label_fr),
            escape(&a.legal_basis.article.replace("GDPR ", "RGPD, "))
        );
        if let Some(sc) = &a.special_condition {
            let _ = write!(
                o,
                "<dt>Condition de l'art. 9 (ou 10)</dt><dd>{}</dd>",
                escape(sc)
            );
        }
        o.push_str("<dt>Personnes concernées</dt><dd>");
        list(&mut o, &a.data_subjects, "Aucune catégorie déclarée");
        o.push_str("</dd><dt>Destinataires</dt><dd>");
        list(&mut o, &a.recipients, "Aucun destinataire déclaré");
        o.push_str("</dd><dt>Durées de conservation</dt><dd>");
        if a.retention.is_empty() {
            o.push_str("<em>Aucune donnée conservée au titre de cette activité.</em>");
        } else {
            o.push_str("<ul>");
            for re in &a.retention {
                let cat = beffroi_core::DataCategory::parse(re.category)
                    .map_or(re.category, crate::fr::data_of);
                let _ = write!(
                    o,
                    "<li>{} : <strong>{}</strong> — {}</li>",
                    escape(cat),
                    escape(&re.label_fr),
                    escape(&re.note)
                );
            }
            o.push_str("</ul>");
        }
        let _ = write!(
            o,
            "</dd><dt>Transferts hors UE</dt><dd>{}</dd></dl>\n<h3>Catégories de données</h3>",
            escape(
                a.transfers
                    .as_deref()
                    .unwrap_or("Aucun transfert hors de l'Union européenne")
            )
        );
        data_table(&mut o, &a.data);
        o.push_str("<h3>Mesures de sécurité</h3><p>Déclarées :</p>");
        list(
            &mut o,
            &a.security_measures.declared,
            "Aucune mesure déclarée en propre",
        );
        o.push_str("<p>Appliquées par construction par Beffroi :</p><ul>");
        for m in &a.security_measures.by_construction {
            let _ = write!(o, "<li>{}</li>", escape(&m.label_fr));
        }
        o.push_str("</ul>\n<h3>Capteurs concernés</h3>");
        if a.kinds.is_empty() {
            o.push_str("<p><em>Aucun capteur : données des enregistrements de Beffroi.</em></p>");
        } else {
            o.push_str(
                "<table><thead><tr><th>Type</th><th>Espace public</th><th>Lié à la vidéo</th>\
<th>Nombre</th><th>Par commune</th></tr></thead><tbody>",
            );
            for k in &a.kinds {
                let communes: Vec<String> = k
                    .communes
                    .iter()
                    .map(|c| format!("{} : {}", escape(&c.name), c.devices))
                    .collect();
                let _ = write!(
                    o,
                    "<tr><td>{} (<code>{}</code>)</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&k.label),
                    escape(&k.kind),
                    if k.public_space { "oui" } else { "non" },
                    if k.video_linked { "oui" } else { "non" },
                    k.devices,
                    communes.join(" ; ")
                );
            }
            o.push_str("</tbody></table>");
        }
        o.push_str("</section>\n");
    }
    if !r.declared_fields.is_empty() {
        o.push_str(
            "<h2>Champs déclarés hors de la liste fermée</h2>\n<p>Ces champs de capteurs \
observant l’espace public n’ont pas de signification dans la liste fermée de Beffroi ; la \
collectivité a déclaré ce qu’ils sont et pourquoi ils sont nécessaires.</p>\n<ul>",
        );
        for d in &r.declared_fields {
            let _ = write!(
                o,
                "<li><code>{}.{}</code> : {}</li>",
                escape(&d.kind),
                escape(&d.field),
                escape(&d.declaration)
            );
        }
        o.push_str("</ul>\n");
    }
    if !r.unassigned.is_empty() {
        o.push_str("<h2>Données personnelles sans activité</h2>");
        data_table(&mut o, &r.unassigned);
    }
    page_end(&mut o);
    o
}

/// One public notice page.
pub fn notice(n: &Notice) -> String {
    let mut o = String::with_capacity(8 * 1024);
    page_start(
        &mut o,
        &format!("Information du public — {} — {}", n.site, n.commune),
    );
    crate::notice::render_body(&mut o, n);
    page_end(&mut o);
    o
}

/// The index of the notices: one line per device, linking `{device}.html`.
pub fn notices_index(territory: &str, notices: &[Notice]) -> String {
    let mut o = String::with_capacity(notices.len() * 200 + 2048);
    page_start(&mut o, &format!("Information du public — {territory}"));
    let _ = write!(
        o,
        "<h1>Dispositifs observant l'espace public</h1>\n<p class=\"meta\">Territoire « {} » : {} dispositifs. \
Chaque page donne l'information due au public (RGPD, art. 13 et 14).</p>\n\
<table><thead><tr><th>Commune</th><th>Site</th><th>Dispositif</th><th>Finalité</th></tr></thead><tbody>",
        escape(territory),
        notices.len()
    );
    for n in notices {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td><a href=\"{}.html\">{}</a> ({})</td><td>{}</td></tr>",
            escape(&n.commune),
            escape(&n.site),
            escape(&crate::notice::file_stem(&n.device)),
            escape(&n.device),
            escape(&n.kind_label),
            escape(
                &n.activities
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ; ")
            )
        );
    }
    o.push_str("</tbody></table>\n");
    page_end(&mut o);
    o
}
