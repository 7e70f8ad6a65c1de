//! The Atom feed (RFC 4287) that lists a territory's CAP alerts, each entry linking to the
//! alert's own document, as alert hubs and aggregators read them.

use std::fmt::Write as _;

use crate::CapTime;
use crate::read::CapError;
use crate::write::escape;

/// The Atom namespace.
pub const NAMESPACE: &str = "http://www.w3.org/2005/Atom";

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

/// The links of an Atom feed's entries to their CAP documents, in feed order: per entry,
/// its link of type [`CAP_MEDIA_TYPE`] (or `application/xml`, `text/xml`), else its
/// `alternate` link, else its first. Read under the same limits as an alert (no DTD, no
/// foreign entity). Links are as written: relative ones are the caller's to resolve.
pub fn entry_links(bytes: &[u8]) -> Result<Vec<String>, CapError> {
    let xml = crate::read::text(bytes)?;
    let root = crate::read::tree(xml, ("feed", NAMESPACE))?;
    let attr = |n: &crate::read::Node, k: &str| {
        n.attrs
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let mut out = Vec::new();
    for entry in root.children.iter().filter(|c| c.name == "entry") {
        let links: Vec<&crate::read::Node> =
            entry.children.iter().filter(|c| c.name == "link").collect();
        let typed = links.iter().find(|l| {
            attr(l, "type").is_some_and(|t| {
                let t = t
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                t == CAP_MEDIA_TYPE || t == "application/xml" || t == "text/xml"
            })
        });
        let alternate = links
            .iter()
            .find(|l| attr(l, "rel").is_none_or(|r| r == "alternate"));
        if let Some(href) = typed
            .or(alternate)
            .or(links.first())
            .and_then(|l| attr(l, "href"))
            .filter(|h| !h.is_empty())
        {
            out.push(href);
        }
    }
    Ok(out)
}
