//! An [`Alert`] as CAP 1.2 XML, in the schema's element order.

use std::fmt::Write as _;

use crate::{Alert, Area, Info, LatLon, NAMESPACE, NamedValue};

/// Escapes text for an element's content or an attribute value (quick-xml's escaping),
/// after dropping the control characters XML 1.0 does not allow.
pub fn escape(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .collect();
    quick_xml::escape::escape(kept.as_str()).into_owned()
}

struct Out {
    xml: String,
    depth: usize,
}

impl Out {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.xml.push_str("  ");
        }
    }
    fn open(&mut self, name: &str) {
        self.indent();
        let _ = writeln!(self.xml, "<{name}>");
        self.depth += 1;
    }
    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.indent();
        let _ = writeln!(self.xml, "</{name}>");
    }
    fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        let _ = writeln!(self.xml, "<{name}>{}</{name}>", escape(text));
    }
    fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(name, t);
        }
    }
    fn named(&mut self, name: &str, nv: &NamedValue) {
        self.open(name);
        self.leaf("valueName", &nv.name);
        self.leaf("value", &nv.value);
        self.close(name);
    }
}

fn point(p: LatLon) -> String {
    format!("{},{}", coord(p.lat), coord(p.lon))
}

/// A coordinate with at most 6 decimals (about 10 cm), without trailing zeros.
fn coord(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn area(o: &mut Out, a: &Area) {
    o.open("area");
    o.leaf("areaDesc", &a.area_desc);
    for ring in &a.polygons {
        let text: Vec<String> = ring.iter().map(|p| point(*p)).collect();
        o.leaf("polygon", &text.join(" "));
    }
    for c in &a.circles {
        o.leaf(
            "circle",
            &format!("{} {}", point(c.centre), coord(c.radius_km)),
        );
    }
    for g in &a.geocodes {
        o.named("geocode", g);
    }
    o.close("area");
}

fn info(o: &mut Out, i: &Info) {
    o.open("info");
    o.opt("language", i.language.as_deref());
    for c in &i.categories {
        o.leaf("category", c.as_str());
    }
    o.leaf("event", &i.event);
    for r in &i.response_types {
        o.leaf("responseType", r.as_str());
    }
    o.leaf("urgency", i.urgency.as_str());
    o.leaf("severity", i.severity.as_str());
    o.leaf("certainty", i.certainty.as_str());
    for c in &i.event_codes {
        o.named("eventCode", c);
    }
    o.opt("effective", i.effective.map(|t| t.to_cap()).as_deref());
    o.opt("onset", i.onset.map(|t| t.to_cap()).as_deref());
    o.opt("expires", i.expires.map(|t| t.to_cap()).as_deref());
    o.opt("senderName", i.sender_name.as_deref());
    o.opt("headline", i.headline.as_deref());
    o.opt("description", i.description.as_deref());
    o.opt("instruction", i.instruction.as_deref());
    o.opt("web", i.web.as_deref());
    o.opt("contact", i.contact.as_deref());
    for p in &i.parameters {
        o.named("parameter", p);
    }
    for a in &i.areas {
        area(o, a);
    }
    o.close("info");
}

/// The alert as a CAP 1.2 document (UTF-8, with its XML declaration).
pub fn alert_xml(a: &Alert) -> String {
    let mut o = Out {
        xml: String::with_capacity(2048),
        depth: 0,
    };
    o.xml
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(o.xml, "<alert xmlns=\"{NAMESPACE}\">");
    o.depth = 1;
    o.leaf("identifier", &a.identifier);
    o.leaf("sender", &a.sender);
    o.leaf("sent", &a.sent.to_cap());
    o.leaf("status", a.status.as_str());
    o.leaf("msgType", a.msg_type.as_str());
    o.opt("source", a.source.as_deref());
    o.leaf("scope", a.scope.as_str());
    o.opt("restriction", a.restriction.as_deref());
    o.opt("addresses", a.addresses.as_deref());
    for c in &a.codes {
        o.leaf("code", c);
    }
    o.opt("note", a.note.as_deref());
    if !a.references.is_empty() {
        let refs: Vec<String> = a
            .references
            .iter()
            .map(|r| format!("{},{},{}", r.sender, r.identifier, r.sent.to_cap()))
            .collect();
        o.leaf("references", &refs.join(" "));
    }
    o.opt("incidents", a.incidents.as_deref());
    for i in &a.infos {
        info(&mut o, i);
    }
    o.xml.push_str("</alert>\n");
    o.xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_control_characters_dropped() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(escape("bell\u{7}\nline"), "bell\nline");
    }

    #[test]
    fn coordinates_are_short() {
        assert_eq!(coord(47.32), "47.32");
        assert_eq!(coord(5.0), "5");
        assert_eq!(coord(-0.0000001), "0");
        assert_eq!(coord(5.123456789), "5.123457");
    }
}
