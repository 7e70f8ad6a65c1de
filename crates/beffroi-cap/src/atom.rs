//! The Atom feed (RFC 4287) that lists a territory's CAP alerts, each entry linking to the
//! alert's own document, as alert hubs and aggregators read them.

use std::fmt::Write as _;

use crate::CapTime;
use crate::write::escape;

/// The media type of a CAP document, for the entries' links.
pub const CAP_MEDIA_TYPE: &str = "application/cap+xml";

#[derive(Clone, Debug, PartialEq)]
pub struct Feed {
    /// A permanent IRI naming the feed.
    pub id: String,
    pub title: String,
    /// Who publishes it (the territory).
    pub author: String,
    pub updated: CapTime,
    /// The feed's own URL.
    pub self_url: String,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// A permanent IRI naming this version of the alert.
    pub id: String,
    pub title: String,
    pub updated: CapTime,
    /// The CAP document's URL.
    pub link: String,
    pub summary: Option<String>,
}

/// The feed as an Atom document.
pub fn feed_xml(f: &Feed) -> String {
    let mut x = String::with_capacity(1024 + 512 * f.entries.len());
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let _ = writeln!(x, "  <id>{}</id>", escape(&f.id));
    let _ = writeln!(x, "  <title>{}</title>", escape(&f.title));
    let _ = writeln!(x, "  <updated>{}</updated>", f.updated.to_cap());
    let _ = writeln!(x, "  <author><name>{}</name></author>", escape(&f.author));
    let _ = writeln!(
        x,
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>",
        escape(&f.self_url)
    );
    for e in &f.entries {
        x.push_str("  <entry>\n");
        let _ = writeln!(x, "    <id>{}</id>", escape(&e.id));
        let _ = writeln!(x, "    <title>{}</title>", escape(&e.title));
        let _ = writeln!(x, "    <updated>{}</updated>", e.updated.to_cap());
        let _ = writeln!(
            x,
            "    <link rel=\"alternate\" type=\"{CAP_MEDIA_TYPE}\" href=\"{}\"/>",
            escape(&e.link)
        );
        if let Some(s) = &e.summary {
            let _ = writeln!(x, "    <summary>{}</summary>", escape(s));
        }
        x.push_str("  </entry>\n");
    }
    x.push_str("</feed>\n");
    x
}
