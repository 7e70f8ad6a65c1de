//! `federation.toml`: this instance's name, and one agreement per partner.
//!
//! ```toml
//! name = "dijon"                    # how partners know this instance (default: the territory id)
//!
//! [[partner]]
//! name = "quetigny"                 # how this instance knows the partner (its `name`)
//! url = "https://beffroi.quetigny.example"   # the partner's server
//! public_key = "…"                  # the partner's key (base64), pinned: `beffroi federation key`
//! categories = ["flood", "fire"]    # what is sent: these categories…
//! min_severity = "major"            # …from this severity…
//! communes = ["talant", "plombieres-les-dijon"]   # …in this border zone ("*": all communes)
//! fields = ["title", "site"]        # optional fields sent besides category, severity, status, commune, time
//! tlp = "amber"                     # the marking the partner must respect
//! receive = true                    # their shared incidents appear here…
//! category = "neighbour"            # …as incidents of this category
//! notes = true                      # notes written here on their incidents go back to
//!                                   # them, and theirs on ours are read (both sides say so)
//! ```

use std::sync::Arc;

use base64::Engine as _;
use beffroi_core::{CommuneIdx, Severity, Territory};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile};
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

/// Optional fields an agreement may share. Category, severity, status, commune and times
/// always go: without them the partner cannot act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The rule's title, scrubbed, its pseudonyms re-keyed for the partner.
    Title,
    /// The site's name.
    Site,
    /// The site's position (otherwise the commune's centre).
    Position,
}

impl Field {
    pub const ALL: [Field; 3] = [Field::Title, Field::Site, Field::Position];
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Site => "site",
            Field::Position => "position",
        }
    }
    pub fn parse(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// The Traffic Light Protocol marking a partner must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tlp {
    Clear,
    Green,
    Amber,
    Red,
}

impl Tlp {
    pub const ALL: [Tlp; 4] = [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::Red];
    pub fn as_str(self) -> &'static str {
        match self {
            Tlp::Clear => "clear",
            Tlp::Green => "green",
            Tlp::Amber => "amber",
            Tlp::Red => "red",
        }
    }
    pub fn parse(s: &str) -> Option<Tlp> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix("tlp:").unwrap_or(&s);
        match s {
            "white" => Some(Tlp::Clear),
            _ => Tlp::ALL.into_iter().find(|t| t.as_str() == s),
        }
    }
}

/// One agreement.
#[derive(Clone, Debug, PartialEq)]
pub struct Partner {
    pub name: String,
    /// The partner's server, without a trailing slash.
    pub url: String,
    /// The partner's pinned signing key.
    pub key: VerifyingKey,
    pub categories: Vec<Arc<str>>,
    pub min_severity: Severity,
    /// The border zone: the communes whose incidents are sent (`None`: every commune).
    pub communes: Option<Vec<CommuneIdx>>,
    pub fields: Vec<Field>,
    pub tlp: Tlp,
    /// Their shared incidents appear here.
    pub receive: bool,
    /// The category of their incidents here.
    pub category: Arc<str>,
    /// Operators' notes on the partner's incidents are sent back to it, and its notes on
    /// the incidents shared with it are read.
    pub notes: bool,
}

impl Partner {
    /// Whether an incident of `category`, `severity` in `commune` is sent.
    pub fn shares(&self, category: &str, severity: Severity, commune: CommuneIdx) -> bool {
        self.categories.iter().any(|c| &**c == category)
            && severity >= self.min_severity
            && self
                .communes
                .as_ref()
                .is_none_or(|cs| cs.contains(&commune))
    }
}

/// `federation.toml`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Federation {
    pub name: String,
    pub partners: Vec<Partner>,
}

impl Federation {
    pub fn partner(&self, name: &str) -> Option<&Partner> {
        self.partners.iter().find(|p| p.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    partner: Vec<toml::Spanned<RawPartner>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartner {
    name: String,
    url: String,
    public_key: String,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    min_severity: Option<String>,
    #[serde(default)]
    communes: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    tlp: Option<String>,
    #[serde(default)]
    receive: Option<bool>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    notes: bool,
}

/// An instance or partner name: 1 to 40 of `a-z 0-9 - _`.
pub fn valid_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Reads a public key as `federation key` prints it (base64 of 32 bytes).
pub fn parse_key(s: &str) -> Option<VerifyingKey> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    VerifyingKey::from_bytes(&<[u8; 32]>::try_from(bytes).ok()?).ok()
}

/// Reads `federation.toml` against the territory and the categories its rules raise;
/// every error of the file at once.
pub fn parse(
    src: &SourceFile,
    territory: &Territory,
    categories: &[&str],
) -> Result<Federation, ConfigErrors> {
    let raw: Raw = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let name = raw.name.unwrap_or_else(|| territory.id.to_string());
    if !valid_name(&name) {
        errors.push(ConfigError::new(
            src.path.clone(),
            Some(1),
            Some("name"),
            format!("`{name}`: 1 to 40 of a-z, 0-9, `-` and `_`"),
        ));
    }
    let mut partners: Vec<Partner> = Vec::new();
    for (i, p) in raw.partner.iter().enumerate() {
        let line = Some(src.line(p.span().start));
        let p = p.get_ref();
        let mut fail = |field: &str, msg: String| {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some(&format!("partner[{i}].{field}")),
                msg,
            ));
        };
        if !valid_name(&p.name) {
            fail(
                "name",
                format!("`{}`: 1 to 40 of a-z, 0-9, `-` and `_`", p.name),
            );
        } else if p.name == name {
            fail(
                "name",
                "a partner cannot have this instance's own name".into(),
            );
        } else if partners.iter().any(|o| o.name == p.name) {
            fail("name", format!("partner `{}` is declared twice", p.name));
        }
        let url = p.url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(['?', '#', ' '])
        {
            fail(
                "url",
                "the partner's server, http(s)://host[:port][/path]".into(),
            );
        }
        let key = parse_key(&p.public_key);
        if key.is_none() {
            fail(
                "public_key",
                "the partner's public key, base64 of 32 bytes (`beffroi federation key` on their side prints it)".into(),
            );
        }
        for c in &p.categories {
            if !categories.contains(&c.as_str()) {
                fail(
                    "categories",
                    format!(
                        "no rule raises `{c}` (rules' categories: {})",
                        categories.join(", ")
                    ),
                );
            }
        }
        if p.categories.iter().any(|c| c == "cyber") {
            fail(
                "categories",
                "`cyber` goes to partners as STIX over TAXII (taxii.toml), under TLP".into(),
            );
        }
        let min_severity = match p.min_severity.as_deref() {
            None => Severity::Major,
            Some(s) => Severity::parse(s).unwrap_or_else(|| {
                fail("min_severity", "info, minor, major or critical".into());
                Severity::Major
            }),
        };
        let communes = if p.communes.iter().any(|c| c == "*") {
            None
        } else {
            let mut out = Vec::new();
            for c in &p.communes {
                match territory.commune_id(c) {
                    Some(i) => out.push(i),
                    None => fail("communes", format!("no commune `{c}` in the territory")),
                }
            }
            if p.communes.is_empty() && !p.categories.is_empty() {
                fail(
                    "communes",
                    "name the border zone's communes, or \"*\" for all".into(),
                );
            }
            Some(out)
        };
        let mut fields = Vec::new();
        for f in &p.fields {
            match Field::parse(f) {
                Some(f) if !fields.contains(&f) => fields.push(f),
                Some(_) => {}
                None => fail(
                    "fields",
                    format!("`{f}`: one of {}", Field::ALL.map(Field::as_str).join(", ")),
                ),
            }
        }
        let tlp = match p.tlp.as_deref() {
            None => Tlp::Amber,
            Some(s) => Tlp::parse(s).unwrap_or_else(|| {
                fail("tlp", "clear, green, amber or red".into());
                Tlp::Amber
            }),
        };
        let category = p.category.clone().unwrap_or_else(|| "neighbour".into());
        if !valid_name(&category) {
            fail(
                "category",
                format!("`{category}`: 1 to 40 of a-z, 0-9, `-` and `_`"),
            );
        }
        if let Some(key) = key {
            partners.push(Partner {
                name: p.name.clone(),
                url,
                key,
                categories: p.categories.iter().map(|c| Arc::from(c.as_str())).collect(),
                min_severity,
                communes,
                fields,
                tlp,
                receive: p.receive.unwrap_or(true),
                category: category.into(),
                notes: p.notes,
            });
        }
    }
    errors.into_result(Federation { name, partners })
}
