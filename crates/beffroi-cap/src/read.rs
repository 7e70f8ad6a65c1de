//! A CAP 1.2 alert read from untrusted XML.
//!
//! The document is read into a small tree under hard limits, then mapped to an [`Alert`].
//! Refused: a DTD (`<!DOCTYPE`), hence external entities and entity expansion; an entity
//! other than XML's five (`&amp;` …) and character references; a document over
//! [`MAX_BYTES`], deeper than [`MAX_DEPTH`] or with more than [`MAX_ELEMENTS`] elements;
//! text that is not UTF-8; a root that is not `alert` in the CAP 1.2 namespace. Elements
//! the standard does not define are ignored.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::{
    Alert, Area, CapTime, Category, Certainty, Circle, Info, LatLon, MsgType, NAMESPACE,
    NamedValue, Reference, ResponseType, Scope, Severity, Status, Urgency, valid_identifier,
};

/// Largest document read (CAP alerts are a few kilobytes).
pub const MAX_BYTES: usize = 1 << 20;
/// Deepest nesting (an alert's is 4: alert, info, area, geocode).
pub const MAX_DEPTH: usize = 8;
/// Most elements in one document.
pub const MAX_ELEMENTS: usize = 10_000;

/// Why a document is not read as an alert, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {path}: {kind}")]
pub struct CapError {
    /// 1-based; the line of the element (or of the offending byte).
    pub line: usize,
    /// The element path, `alert/info[0]/urgency`; `document` before the root.
    pub path: String,
    pub kind: CapErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapErrorKind {
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("not UTF-8")]
    NotUtf8,
    #[error("a DTD (<!DOCTYPE>) is refused: no entity is defined or fetched")]
    Dtd,
    #[error("entity `&{0};` is refused: only XML's predefined entities and character references")]
    Entity(String),
    #[error("nested deeper than {0} elements")]
    TooDeep(usize),
    #[error("more than {0} elements")]
    TooManyElements(usize),
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("not a CAP 1.2 alert: {0}")]
    NotCap(String),
    #[error("required, missing")]
    Missing,
    #[error("`{value}` is not {expected}")]
    Invalid {
        value: String,
        expected: &'static str,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) name: String,
    /// Byte offset of its start tag.
    at: usize,
    /// Attributes by local name (namespace declarations left out).
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, at: usize) -> usize {
        1 + self.0.as_bytes()[..at.min(self.0.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }
}

fn err(lines: &Lines<'_>, at: usize, path: impl Into<String>, kind: CapErrorKind) -> CapError {
    CapError {
        line: lines.of(at),
        path: path.into(),
        kind,
    }
}

/// Reads the document into a tree of local names, under the limits; the root must be
/// `root` = (local name, namespace).
pub(crate) fn tree(xml: &str, root_name: (&str, &str)) -> Result<Node, CapError> {
    let lines = Lines(xml);
    let mut r = NsReader::from_str(xml);
    r.config_mut().trim_text(false);
    r.config_mut().expand_empty_elements = true;
    r.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    let path = |stack: &[Node]| -> String {
        if stack.is_empty() {
            "document".into()
        } else {
            stack
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join("/")
        }
    };
    loop {
        let at = r.buffer_position() as usize;
        let ev = r.read_resolved_event();
        let (ns, ev) = match ev {
            Ok((ns, ev)) => (
                match ns {
                    ResolveResult::Bound(n) => Some(n.as_ref().to_string()),
                    _ => None,
                },
                ev,
            ),
            Err(e) => {
                return Err(err(
                    &lines,
                    r.error_position() as usize,
                    path(&stack),
                    CapErrorKind::Malformed(e.to_string()),
                ));
            }
        };
        match ev {
            Event::DocType(_) => return Err(err(&lines, at, path(&stack), CapErrorKind::Dtd)),
            Event::Start(s) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(err(
                        &lines,
                        at,
                        path(&stack),
                        CapErrorKind::TooManyElements(MAX_ELEMENTS),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(err(
                        &lines,
                        at,
                        path(&stack),
                        CapErrorKind::TooDeep(MAX_DEPTH),
                    ));
                }
                let name = s.local_name().as_ref().to_string();
                if stack.is_empty() {
                    if root.is_some() {
                        return Err(err(
                            &lines,
                            at,
                            "document",
                            CapErrorKind::Malformed("more than one root element".into()),
                        ));
                    }
                    if name != root_name.0 || ns.as_deref() != Some(root_name.1) {
                        let found = match &ns {
                            Some(n) => format!("`{name}` in namespace `{n}`"),
                            None => format!("`{name}` in no namespace"),
                        };
                        return Err(err(
                            &lines,
                            at,
                            "document",
                            CapErrorKind::NotCap(format!(
                                "the root is {found}, not `{}` in `{}`",
                                root_name.0, root_name.1
                            )),
                        ));
                    }
                }
                let mut attrs = Vec::new();
                for a in s.attributes() {
                    let a = a.map_err(|e| {
                        err(
                            &lines,
                            at,
                            path(&stack),
                            CapErrorKind::Malformed(e.to_string()),
                        )
                    })?;
                    let key = a.key.as_ref();
                    if key == "xmlns" || key.starts_with("xmlns:") {
                        continue;
                    }
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| {
                            err(
                                &lines,
                                at,
                                path(&stack),
                                CapErrorKind::Entity(e.to_string()),
                            )
                        })?;
                    attrs.push((a.key.local_name().as_ref().to_string(), value.into_owned()));
                }
                stack.push(Node {
                    name,
                    at,
                    attrs,
                    ..Node::default()
                });
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(err(
                        &lines,
                        at,
                        "document",
                        CapErrorKind::Malformed("an end tag without its start".into()),
                    ));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => {
                        return Err(err(
                            &lines,
                            at,
                            "document",
                            CapErrorKind::Malformed("text outside the root element".into()),
                        ));
                    }
                }
            }
            Event::CData(c) => {
                let text = c.to_string();
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&text);
                }
            }
            Event::GeneralRef(g) => {
                let resolved: Option<String> = match g.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    Ok(None) => {
                        quick_xml::escape::resolve_predefined_entity(&g).map(str::to_string)
                    }
                    Err(_) => None,
                };
                let Some(s) = resolved else {
                    return Err(err(
                        &lines,
                        at,
                        path(&stack),
                        CapErrorKind::Entity(g.to_string()),
                    ));
                };
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&s);
                }
            }
            Event::Eof => break,
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(err(
            &lines,
            xml.len(),
            path(&stack),
            CapErrorKind::Malformed("the document ends inside an element".into()),
        ));
    }
    root.ok_or_else(|| {
        err(
            &lines,
            0,
            "document",
            CapErrorKind::NotCap("no root element".into()),
        )
    })
}

/// Maps the tree, naming every error by its path.
struct Map<'a> {
    lines: Lines<'a>,
}

impl Map<'_> {
    fn fail(&self, n: &Node, path: &str, kind: CapErrorKind) -> CapError {
        err(&self.lines, n.at, path, kind)
    }

    fn all<'n>(&self, n: &'n Node, name: &str) -> impl Iterator<Item = &'n Node> {
        n.children.iter().filter(move |c| c.name == name)
    }

    fn opt(&self, n: &Node, name: &str) -> Option<String> {
        self.all(n, name).next().map(|c| c.text.trim().to_string())
    }

    fn req(&self, n: &Node, path: &str, name: &str) -> Result<String, CapError> {
        match self.all(n, name).next() {
            Some(c) if !c.text.trim().is_empty() => Ok(c.text.trim().to_string()),
            Some(c) => Err(self.fail(c, &format!("{path}/{name}"), CapErrorKind::Missing)),
            None => Err(self.fail(n, &format!("{path}/{name}"), CapErrorKind::Missing)),
        }
    }

    fn value<T>(
        &self,
        n: &Node,
        path: &str,
        name: &str,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, CapError> {
        let text = self.req(n, path, name)?;
        parse(&text).ok_or_else(|| {
            let at = self.all(n, name).next().unwrap_or(n);
            self.fail(
                at,
                &format!("{path}/{name}"),
                CapErrorKind::Invalid {
                    value: text,
                    expected,
                },
            )
        })
    }

    fn time(&self, n: &Node, path: &str, name: &str) -> Result<Option<CapTime>, CapError> {
        match self.all(n, name).next() {
            None => Ok(None),
            Some(c) => CapTime::parse(c.text.trim()).map(Some).ok_or_else(|| {
                self.fail(
                    c,
                    &format!("{path}/{name}"),
                    CapErrorKind::Invalid {
                        value: c.text.trim().to_string(),
                        expected: "a time with an offset (2026-12-07T10:00:00+01:00)",
                    },
                )
            }),
        }
    }

    fn named(&self, n: &Node, path: &str, name: &str) -> Result<Vec<NamedValue>, CapError> {
        self.all(n, name)
            .enumerate()
            .map(|(i, c)| {
                let p = format!("{path}/{name}[{i}]");
                Ok(NamedValue {
                    name: self.req(c, &p, "valueName")?,
                    value: self.opt(c, "value").unwrap_or_default(),
                })
            })
            .collect()
    }

    fn area(&self, n: &Node, path: &str) -> Result<Area, CapError> {
        let mut polygons = Vec::new();
        for (i, c) in self.all(n, "polygon").enumerate() {
            let p = format!("{path}/polygon[{i}]");
            let ring: Option<Vec<LatLon>> = c.text.split_whitespace().map(lat_lon).collect();
            match ring {
                Some(r) if r.len() >= 4 && r.first() == r.last() => polygons.push(r),
                _ => {
                    return Err(self.fail(
                        c,
                        &p,
                        CapErrorKind::Invalid {
                            value: c.text.trim().chars().take(80).collect(),
                            expected: "a closed ring of at least four `lat,lon` points",
                        },
                    ));
                }
            }
        }
        let mut circles = Vec::new();
        for (i, c) in self.all(n, "circle").enumerate() {
            let p = format!("{path}/circle[{i}]");
            let mut parts = c.text.split_whitespace();
            let circle = match (
                parts.next().and_then(lat_lon),
                parts.next().and_then(|r| r.parse::<f64>().ok()),
                parts.next(),
            ) {
                (Some(centre), Some(radius_km), None)
                    if radius_km.is_finite() && radius_km >= 0.0 =>
                {
                    Some(Circle { centre, radius_km })
                }
                _ => None,
            };
            match circle {
                Some(c) => circles.push(c),
                None => {
                    return Err(self.fail(
                        c,
                        &p,
                        CapErrorKind::Invalid {
                            value: c.text.trim().chars().take(80).collect(),
                            expected: "`lat,lon radius_km`",
                        },
                    ));
                }
            }
        }
        Ok(Area {
            area_desc: self.req(n, path, "areaDesc")?,
            polygons,
            circles,
            geocodes: self.named(n, path, "geocode")?,
        })
    }

    fn info(&self, n: &Node, path: &str) -> Result<Info, CapError> {
        let mut categories = Vec::new();
        for (i, c) in self.all(n, "category").enumerate() {
            match Category::parse(c.text.trim()) {
                Some(v) => categories.push(v),
                None => {
                    return Err(self.fail(c, &format!("{path}/category[{i}]"), CapErrorKind::Invalid {
                        value: c.text.trim().to_string(),
                        expected: "a CAP category (Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other)",
                    }));
                }
            }
        }
        if categories.is_empty() {
            return Err(self.fail(n, &format!("{path}/category"), CapErrorKind::Missing));
        }
        let mut response_types = Vec::new();
        for (i, c) in self.all(n, "responseType").enumerate() {
            match ResponseType::parse(c.text.trim()) {
                Some(v) => response_types.push(v),
                None => {
                    return Err(self.fail(
                        c,
                        &format!("{path}/responseType[{i}]"),
                        CapErrorKind::Invalid {
                            value: c.text.trim().to_string(),
                            expected: "a CAP response type",
                        },
                    ));
                }
            }
        }
        let areas = self
            .all(n, "area")
            .enumerate()
            .map(|(i, a)| self.area(a, &format!("{path}/area[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Info {
            language: self.opt(n, "language"),
            categories,
            event: self.req(n, path, "event")?,
            response_types,
            urgency: self.value(
                n,
                path,
                "urgency",
                "a CAP urgency (Immediate, Expected, Future, Past, Unknown)",
                Urgency::parse,
            )?,
            severity: self.value(
                n,
                path,
                "severity",
                "a CAP severity (Extreme, Severe, Moderate, Minor, Unknown)",
                Severity::parse,
            )?,
            certainty: self.value(
                n,
                path,
                "certainty",
                "a CAP certainty (Observed, Likely, Possible, Unlikely, Unknown)",
                Certainty::parse,
            )?,
            event_codes: self.named(n, path, "eventCode")?,
            effective: self.time(n, path, "effective")?,
            onset: self.time(n, path, "onset")?,
            expires: self.time(n, path, "expires")?,
            sender_name: self.opt(n, "senderName"),
            headline: self.opt(n, "headline"),
            description: self.opt(n, "description"),
            instruction: self.opt(n, "instruction"),
            web: self.opt(n, "web"),
            contact: self.opt(n, "contact"),
            parameters: self.named(n, path, "parameter")?,
            areas,
        })
    }

    fn alert(&self, n: &Node) -> Result<Alert, CapError> {
        let path = "alert";
        let ident = |name: &str| -> Result<String, CapError> {
            let v = self.req(n, path, name)?;
            if valid_identifier(&v) {
                Ok(v)
            } else {
                let at = self.all(n, name).next().unwrap_or(n);
                Err(self.fail(
                    at,
                    &format!("{path}/{name}"),
                    CapErrorKind::Invalid {
                        value: v,
                        expected: "an identifier without spaces, commas, `<` or `&`",
                    },
                ))
            }
        };
        let identifier = ident("identifier")?;
        let sender = ident("sender")?;
        let sent = self
            .time(n, path, "sent")?
            .ok_or_else(|| self.fail(n, "alert/sent", CapErrorKind::Missing))?;
        let mut references = Vec::new();
        if let Some(text) = self.opt(n, "references") {
            for r in text.split_whitespace() {
                let mut parts = r.splitn(3, ',');
                let parsed = match (
                    parts.next(),
                    parts.next(),
                    parts.next().and_then(CapTime::parse),
                ) {
                    (Some(s), Some(i), Some(t)) if valid_identifier(s) && valid_identifier(i) => {
                        Some(Reference {
                            sender: s.to_string(),
                            identifier: i.to_string(),
                            sent: t,
                        })
                    }
                    _ => None,
                };
                match parsed {
                    Some(p) => references.push(p),
                    None => {
                        let at = self.all(n, "references").next().unwrap_or(n);
                        return Err(self.fail(
                            at,
                            "alert/references",
                            CapErrorKind::Invalid {
                                value: r.chars().take(120).collect(),
                                expected: "`sender,identifier,sent` triples separated by spaces",
                            },
                        ));
                    }
                }
            }
        }
        let infos = self
            .all(n, "info")
            .enumerate()
            .map(|(i, c)| self.info(c, &format!("alert/info[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Alert {
            identifier,
            sender,
            sent,
            status: self.value(
                n,
                path,
                "status",
                "a CAP status (Actual, Exercise, System, Test, Draft)",
                Status::parse,
            )?,
            msg_type: self.value(
                n,
                path,
                "msgType",
                "a CAP message type (Alert, Update, Cancel, Ack, Error)",
                MsgType::parse,
            )?,
            source: self.opt(n, "source"),
            scope: self.value(
                n,
                path,
                "scope",
                "a CAP scope (Public, Restricted, Private)",
                Scope::parse,
            )?,
            restriction: self.opt(n, "restriction"),
            addresses: self.opt(n, "addresses"),
            codes: self
                .all(n, "code")
                .map(|c| c.text.trim().to_string())
                .collect(),
            note: self.opt(n, "note"),
            references,
            incidents: self.opt(n, "incidents"),
            infos,
        })
    }
}

fn lat_lon(s: &str) -> Option<LatLon> {
    let (a, b) = s.split_once(',')?;
    let (lat, lon) = (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?);
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
        .then_some(LatLon { lat, lon })
}

/// The document as text, within [`MAX_BYTES`].
pub(crate) fn text(bytes: &[u8]) -> Result<&str, CapError> {
    let at_start = |kind| CapError {
        line: 1,
        path: "document".into(),
        kind,
    };
    if bytes.len() > MAX_BYTES {
        return Err(at_start(CapErrorKind::TooLarge(MAX_BYTES)));
    }
    std::str::from_utf8(bytes).map_err(|_| at_start(CapErrorKind::NotUtf8))
}

/// Reads one CAP 1.2 alert.
pub fn parse_alert(bytes: &[u8]) -> Result<Alert, CapError> {
    let xml = text(bytes)?;
    let root = tree(xml, ("alert", NAMESPACE))?;
    Map { lines: Lines(xml) }.alert(&root)
}
