//! French labels of the register and the notices (the register is a legal document of a
//! French town). Codes stay English in the JSON; these are for the HTML.

use beffroi_core::Duration;
use beffroi_core::privacy::LegalBasis;
use beffroi_core::territory::{DataCategory, Identifier};

pub fn category(c: DataCategory) -> &'static str {
    match c {
        DataCategory::Technical => "technique",
        DataCategory::Personal => "personnelle",
        DataCategory::Sensitive => "sensible (art. 9 ou 10 RGPD)",
    }
}

pub fn identifier(i: Identifier) -> &'static str {
    match i {
        Identifier::LicencePlate => "plaque d'immatriculation",
        Identifier::Badge => "numéro de badge",
        Identifier::MacAddress => "adresse MAC",
        Identifier::PhoneNumber => "numéro de téléphone",
        Identifier::Email => "adresse électronique",
        Identifier::Name => "nom",
        Identifier::Other => "autre identifiant",
    }
}

pub fn legal_basis(b: LegalBasis) -> &'static str {
    match b {
        LegalBasis::Consent => "Consentement de la personne",
        LegalBasis::Contract => "Exécution d'un contrat",
        LegalBasis::LegalObligation => "Respect d'une obligation légale",
        LegalBasis::VitalInterests => "Sauvegarde des intérêts vitaux",
        LegalBasis::PublicTask => {
            "Mission d'intérêt public ou relevant de l'exercice de l'autorité publique"
        }
        LegalBasis::LegitimateInterests => "Intérêts légitimes",
    }
}

/// The article in French ("RGPD, art. 6(1)(e)").
pub fn article(b: LegalBasis) -> String {
    b.article().replace("GDPR", "RGPD,")
}

/// A duration in words: "30 jours", "12 heures", "5 minutes".
pub fn duration(d: Duration) -> String {
    let mins = d.millis() / 60_000;
    let plural = |n: i64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    if mins > 0 && mins % (24 * 60) == 0 {
        plural(mins / (24 * 60), "jour", "jours")
    } else if mins > 0 && mins % 60 == 0 {
        plural(mins / 60, "heure", "heures")
    } else if mins > 0 {
        plural(mins, "minute", "minutes")
    } else {
        plural(d.millis() / 1000, "seconde", "secondes")
    }
}

/// What a record of Beffroi is, in French.
pub fn record(record: &str) -> &'static str {
    match record {
        "incident" => "Incident",
        "incident_log" => "Journal de l'incident",
        "crisis_log" => "Main courante de crise",
        "audit" => "Journal d'audit",
        _ => "Enregistrement",
    }
}

/// What a record field holds, in French (the core's notes are in English).
pub fn record_field(record: &str, field: &str) -> Option<&'static str> {
    Some(match (record, field) {
        ("incident", "title") => "Titre tiré du modèle de la règle : site, capteur, valeur mesurée",
        ("incident", "evidence") => {
            "Valeurs déclenchantes ; les identifiants n'y figurent que sous pseudonyme"
        }
        ("incident", "owner") => "Compte de l'agent qui a pris l'incident",
        ("incident_log", "detail") => {
            "Notes des opérateurs ; plaques, téléphones, courriels, adresses MAC et noms balisés [[…]] pseudonymisés"
        }
        ("crisis_log", "text") => {
            "Main courante de crise ; identifiants pseudonymisés comme dans les notes"
        }
        ("audit", "actor") => "Qui a fait quoi : journal d'audit chaîné et signé",
        _ => return None,
    })
}

/// "données personnelles", for retention lines.
pub fn data_of(c: DataCategory) -> &'static str {
    match c {
        DataCategory::Technical => "données techniques",
        DataCategory::Personal => "données personnelles",
        DataCategory::Sensitive => "données sensibles",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::privacy::days;

    #[test]
    fn durations_in_words() {
        assert_eq!(duration(days(30)), "30 jours");
        assert_eq!(duration(days(1)), "1 jour");
        assert_eq!(duration(Duration::from_mins(120)), "2 heures");
        assert_eq!(duration(Duration::from_mins(5)), "5 minutes");
    }

    #[test]
    fn every_record_field_has_a_french_description() {
        for r in beffroi_core::privacy::RECORD_FIELDS {
            assert!(
                record_field(r.record, r.field).is_some(),
                "{}.{}",
                r.record,
                r.field
            );
            assert_ne!(record(r.record), "Enregistrement", "{}", r.record);
        }
    }
}
