//! Hot reload of the rules file of a running `beffroi serve`: an invalid file keeps the
//! rules in force and says why; a valid one replaces them.

mod support;
use support::copy_dir;
use support::replace;

use std::time::Duration;

use support::beffroi::Beffroi;
use support::http::{Api, metric};
use support::poll;

fn rule_ids(api: &Api) -> Vec<String> {
    let v = api.get_ok("/api/v1/rules");
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn an_invalid_rules_file_keeps_the_rules_in_force_and_a_valid_one_replaces_them() {
    let work = tempfile::tempdir().expect("tmp");
    let deployment = work.path().join("deployment");
    let demo = support::demo::dir();
    copy_dir(&demo.join("territory"), &deployment.join("territory"));
    std::fs::copy(demo.join("rules.toml"), deployment.join("rules.toml")).expect("copy");
    // The register the kinds' personal fields name.
    std::fs::copy(demo.join("privacy.toml"), deployment.join("privacy.toml")).expect("copy");
    std::fs::copy(
        demo.join("procedures.toml"),
        deployment.join("procedures.toml"),
    )
    .expect("copy");
    let rules_path = deployment.join("rules.toml");
    let original = std::fs::read_to_string(&rules_path).expect("read");

    let b = Beffroi::start_with(None, Some(deployment.clone()));
    let api = Api::login(&b.base());
    let before = rule_ids(&api);
    assert!(before.iter().any(|r| r == "fire-alarm"), "{before:?}");

    // An invalid file: an unknown severity.
    replace(
        &rules_path,
        &original.replacen("severity = \"critical\"", "severity = \"urgent\"", 1),
    );
    poll(
        "the invalid reload is counted",
        Duration::from_secs(20),
        || b.log(),
        || {
            metric(
                &api.metrics(),
                "beffroi_rule_reloads_total",
                &[("result", "invalid")],
            )
            .filter(|n| *n >= 1.0)
        },
    );
    assert_eq!(rule_ids(&api), before, "the rules in force are kept");
    let log = b.log();
    assert!(
        log.contains("rules.toml:") && log.contains("unknown severity `urgent`"),
        "the log says which file, line and field:\n{log}"
    );

    // A valid file without the fire alarm rule replaces the rules.
    let start = original
        .find("id = \"fire-alarm\"")
        .expect("the demo has fire-alarm");
    let block_start = original[..start].rfind("[[rule]]").expect("rule header");
    let block_end = original[start..]
        .find("[[rule]]")
        .map(|i| start + i)
        .unwrap_or(original.len());
    let without = format!("{}{}", &original[..block_start], &original[block_end..]);
    replace(&rules_path, &without);
    let after = poll(
        "the valid reload takes effect",
        Duration::from_secs(20),
        || b.log(),
        || {
            let ids = rule_ids(&api);
            (ids.len() == before.len() - 1).then_some(ids)
        },
    );
    assert!(!after.iter().any(|r| r == "fire-alarm"), "{after:?}");
    assert!(
        metric(
            &api.metrics(),
            "beffroi_rule_reloads_total",
            &[("result", "ok")]
        )
        .is_some_and(|n| n >= 1.0)
    );
}

#[test]
fn the_units_file_reloads_keeping_the_units_state_and_refusing_an_invalid_file() {
    let work = tempfile::tempdir().expect("tmp");
    let deployment = work.path().join("deployment");
    copy_dir(&support::demo::dir(), &deployment);
    let units_path = deployment.join("units.toml");
    let original = std::fs::read_to_string(&units_path).expect("read");

    let b = Beffroi::start_with(None, Some(deployment.clone()));
    let api = Api::login(&b.base());
    let unit_ids = |api: &Api| -> Vec<String> {
        api.get_ok("/api/v1/units")
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect()
    };
    let before = unit_ids(&api);
    let (status, v) = api.post(
        "/api/v1/units/pm-dijon-1/status",
        r#"{"status": "off_duty"}"#,
    );
    assert_eq!(status, 200, "{v}");

    // An unknown commune: refused, the units in force stay.
    replace(
        &units_path,
        &format!(
            "{original}\n[[unit]]\nid = \"pm-x\"\nname = \"X\"\nkind = \"police\"\ncommunes = [\"atlantis\"]\n"
        ),
    );
    poll(
        "the invalid units file is reported",
        Duration::from_secs(20),
        || b.log(),
        || {
            let log = b.log();
            (log.contains("units.toml:") && log.contains("no commune `atlantis`")).then_some(())
        },
    );
    assert_eq!(unit_ids(&api), before);

    // A valid file with one more unit: added, and pm-dijon-1 stays off duty.
    replace(
        &units_path,
        &format!(
            "{original}\n[[unit]]\nid = \"pm-ahuy-1\"\nname = \"PM Ahuy\"\nkind = \"police\"\ncommunes = [\"ahuy\"]\n"
        ),
    );
    let after = poll(
        "the new unit",
        Duration::from_secs(20),
        || b.log(),
        || {
            let ids = unit_ids(&api);
            (ids.len() == before.len() + 1).then_some(ids)
        },
    );
    assert!(after.iter().any(|u| u == "pm-ahuy-1"), "{after:?}");
    assert_eq!(
        api.get_ok("/api/v1/units/pm-dijon-1")["status"],
        "off_duty",
        "the state of a unit still declared is kept"
    );
}
