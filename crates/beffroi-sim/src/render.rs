//! How a device's message looks on the wire: topic and payload in each [`Format`].
//!
//! The layout of each payload is written once, in [`payload`], against the [`Out`] trait:
//! the player writes real values straight into a buffer ([`Direct`]), the load generator
//! records a [`Template`] once per device and only fills in time, counters and values for
//! each message.

use std::io::Write;

use beffroi_core::{DeviceIdx, FieldIdx, FieldType, Territory, Timestamp, Value};
use beffroi_wire::Format;

use crate::rng::mix;

/// The dynamic parts of a payload are asked for by name; the rest is literal JSON.
pub(crate) trait Out {
    /// Literal JSON text.
    fn lit(&mut self, s: &str);
    /// Event time in seconds since the epoch (SenML `bt`), as a JSON number.
    fn time_secs(&mut self);
    /// Event time as RFC 3339, without quotes.
    fn time_rfc3339(&mut self);
    /// LoRaWAN frame counter, as a JSON number.
    fn fcnt(&mut self);
    /// A UUID-shaped deduplication id, without quotes.
    fn dedup_id(&mut self);
    /// The `i`-th value, as a JSON value.
    fn value(&mut self, i: usize);
}

/// Topic a device publishes this format on.
pub(crate) fn topic(
    t: &Territory,
    topic_territory: &str,
    device: DeviceIdx,
    format: Format,
) -> String {
    let d = t.device(device);
    match format {
        Format::Senml => format!("beffroi/{topic_territory}/{}/senml", d.id),
        Format::Json => format!("beffroi/{topic_territory}/{}/json", d.id),
        Format::Chirpstack => format!(
            "application/beffroi/device/{}/event/up",
            d.dev_eui.as_deref().unwrap_or("")
        ),
    }
}

/// Writes the payload of one message carrying `fields` of `device`.
///
/// - SenML: `[{"bn":"<device>/","bt":<s>,"n":"<field>","v":1.2},{"n":"<field>","vb":true}]`;
///   `bn` makes the pack self-describing over HTTP, and a topic hint `<device>` strips it.
/// - plain JSON: `{"device":"<device>","time":"<RFC 3339>","values":{"<field>":1.2}}`.
/// - ChirpStack v4 uplink event with its usual envelope and the decoded `object`.
pub(crate) fn payload<O: Out>(
    out: &mut O,
    t: &Territory,
    device: DeviceIdx,
    format: Format,
    fields: &[FieldIdx],
) {
    let d = t.device(device);
    let kind = t.kind(d.kind);
    match format {
        Format::Senml => {
            out.lit("[");
            for (i, f) in fields.iter().enumerate() {
                let spec = &kind.fields[f.get()];
                if i == 0 {
                    out.lit("{\"bn\":");
                    string(out, &d.id, "/");
                    out.lit(",\"bt\":");
                    out.time_secs();
                    out.lit(",\"n\":");
                } else {
                    out.lit(",{\"n\":");
                }
                string(out, &spec.name, "");
                out.lit(match spec.ty {
                    FieldType::Number => ",\"v\":",
                    FieldType::Bool => ",\"vb\":",
                    FieldType::Text => ",\"vs\":",
                });
                out.value(i);
                out.lit("}");
            }
            out.lit("]");
        }
        Format::Json => {
            out.lit("{\"device\":");
            string(out, &d.id, "");
            out.lit(",\"time\":\"");
            out.time_rfc3339();
            out.lit("\",\"values\":");
            object(out, kind, fields);
            out.lit("}");
        }
        Format::Chirpstack => {
            let eui = d.dev_eui.as_deref().unwrap_or("");
            out.lit("{\"deduplicationId\":\"");
            out.dedup_id();
            out.lit("\",\"time\":\"");
            out.time_rfc3339();
            out.lit("\",\"deviceInfo\":{\"tenantName\":");
            string(out, &t.name, "");
            out.lit(",\"applicationName\":\"beffroi\",\"deviceProfileName\":");
            string(out, &kind.id, "");
            out.lit(",\"deviceName\":");
            string(out, &d.id, "");
            out.lit(",\"devEui\":");
            string(out, eui, "");
            out.lit("},\"devAddr\":\"");
            out.lit(&format!("{:08x}", crate::rng::hash_parts(&[eui], 0) as u32));
            out.lit("\",\"adr\":true,\"dr\":5,\"fCnt\":");
            out.fcnt();
            out.lit(",\"fPort\":10,\"confirmed\":false,\"object\":");
            object(out, kind, fields);
            out.lit("}");
        }
    }
}

fn object<O: Out>(out: &mut O, kind: &beffroi_core::DeviceKind, fields: &[FieldIdx]) {
    out.lit("{");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.lit(",");
        }
        string(out, &kind.fields[f.get()].name, "");
        out.lit(":");
        out.value(i);
    }
    out.lit("}");
}

/// A JSON string literal of `s` followed by `suffix` (which needs no escaping).
fn string<O: Out>(out: &mut O, s: &str, suffix: &str) {
    out.lit("\"");
    out.lit(&escape(s));
    out.lit(suffix);
    out.lit("\"");
}

/// JSON string escaping (RFC 8259 §7), without the quotes.
pub(crate) fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut e = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => e.push_str("\\\""),
            '\\' => e.push_str("\\\\"),
            '\n' => e.push_str("\\n"),
            '\r' => e.push_str("\\r"),
            '\t' => e.push_str("\\t"),
            c if (c as u32) < 0x20 => e.push_str(&format!("\\u{:04x}", c as u32)),
            c => e.push(c),
        }
    }
    std::borrow::Cow::Owned(e)
}

// Writing into a `Vec<u8>` cannot fail: the `io::Result`s below are always `Ok`.

/// Seconds with up to three decimals, no trailing zeros (`1795694400.12`): the shortest
/// text that parses back to the same `f64`, exact to the millisecond.
pub(crate) fn write_time_secs(buf: &mut Vec<u8>, t: Timestamp) {
    let ms = t.millis();
    if ms < 0 {
        let _ = write!(buf, "{}", ms as f64 / 1000.0);
        return;
    }
    let _ = write!(buf, "{}", ms / 1000);
    let mut frac = ms % 1000;
    if frac != 0 {
        let mut digits = 3;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        let _ = write!(buf, ".{frac:0digits$}");
    }
}

/// RFC 3339 formatting with the text up to the second cached: consecutive messages mostly
/// fall in the same second, and formatting a calendar date is the costly part.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rfc3339 {
    second: Option<i64>,
    /// `2026-11-26T12:00:00.` for `second`.
    prefix: Vec<u8>,
}

impl Rfc3339 {
    pub(crate) fn write(&mut self, buf: &mut Vec<u8>, t: Timestamp) {
        let second = t.millis().div_euclid(1000);
        if self.second != Some(second) {
            self.prefix.clear();
            let _ = write!(self.prefix, "{}", Timestamp(second * 1000));
            // Drop `000Z`, keep the dot.
            self.prefix.truncate(self.prefix.len().saturating_sub(4));
            self.second = Some(second);
        }
        let ms = t.millis().rem_euclid(1000) as u32;
        buf.extend_from_slice(&self.prefix);
        buf.extend_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

pub(crate) fn write_u32(buf: &mut Vec<u8>, n: u32) {
    let _ = write!(buf, "{n}");
}

/// A version-4-shaped UUID from 64 random bits.
pub(crate) fn write_dedup(buf: &mut Vec<u8>, x: u64) {
    let y = mix(x);
    let _ = write!(
        buf,
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xFFFF,
        x & 0xFFF,
        8 + ((y >> 62) & 0x3),
        (y >> 48) & 0xFFF,
        y & 0xFFFF_FFFF_FFFF
    );
}

pub(crate) fn write_number(buf: &mut Vec<u8>, x: f64) {
    // Display of an f64 never uses an exponent and is a valid JSON number when finite.
    if x.is_finite() {
        let _ = write!(buf, "{x}");
    } else {
        buf.extend_from_slice(b"null");
    }
}

pub(crate) fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Number(x) => write_number(buf, *x),
        Value::Bool(true) => buf.extend_from_slice(b"true"),
        Value::Bool(false) => buf.extend_from_slice(b"false"),
        Value::Text(s) => {
            buf.push(b'"');
            buf.extend_from_slice(escape(s).as_bytes());
            buf.push(b'"');
        }
    }
}

/// Writes a payload with real values straight into `buf`.
pub(crate) struct Direct<'a> {
    pub(crate) buf: Vec<u8>,
    pub(crate) time: Timestamp,
    pub(crate) fcnt: u32,
    pub(crate) dedup: u64,
    pub(crate) values: &'a [Value],
    pub(crate) rfc3339: &'a mut Rfc3339,
}

impl Out for Direct<'_> {
    fn lit(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn time_secs(&mut self) {
        write_time_secs(&mut self.buf, self.time);
    }
    fn time_rfc3339(&mut self) {
        self.rfc3339.write(&mut self.buf, self.time);
    }
    fn fcnt(&mut self) {
        write_u32(&mut self.buf, self.fcnt);
    }
    fn dedup_id(&mut self) {
        write_dedup(&mut self.buf, self.dedup);
    }
    fn value(&mut self, i: usize) {
        if let Some(v) = self.values.get(i) {
            write_value(&mut self.buf, v);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// Byte range of the template's text.
    Lit(u32, u32),
    TimeSecs,
    TimeRfc3339,
    FCnt,
    Dedup,
    Value(u16),
}

/// A payload recorded once, filled in many times.
#[derive(Clone, Debug, Default)]
pub(crate) struct Template {
    text: String,
    parts: Vec<Part>,
}

impl Template {
    /// Records the payload layout of `fields` of `device`.
    pub(crate) fn record(
        t: &Territory,
        device: DeviceIdx,
        format: Format,
        fields: &[FieldIdx],
    ) -> Self {
        let mut tpl = Template::default();
        payload(&mut tpl, t, device, format, fields);
        tpl
    }

    /// Expected payload size, to allocate once.
    pub(crate) fn size_hint(&self) -> usize {
        self.text.len() + 64 + 16 * self.parts.len()
    }

    /// Writes the payload; `value(i, buf)` writes the `i`-th value.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill(
        &self,
        buf: &mut Vec<u8>,
        rfc3339: &mut Rfc3339,
        time: Timestamp,
        fcnt: u32,
        dedup: u64,
        mut value: impl FnMut(usize, &mut Vec<u8>),
    ) {
        for p in &self.parts {
            match *p {
                Part::Lit(a, b) => {
                    buf.extend_from_slice(&self.text.as_bytes()[a as usize..b as usize])
                }
                Part::TimeSecs => write_time_secs(buf, time),
                Part::TimeRfc3339 => rfc3339.write(buf, time),
                Part::FCnt => write_u32(buf, fcnt),
                Part::Dedup => write_dedup(buf, dedup),
                Part::Value(i) => value(usize::from(i), buf),
            }
        }
    }
}

impl Out for Template {
    fn lit(&mut self, s: &str) {
        let a = self.text.len() as u32;
        self.text.push_str(s);
        let b = self.text.len() as u32;
        match self.parts.last_mut() {
            Some(Part::Lit(_, end)) if *end == a => *end = b,
            _ => self.parts.push(Part::Lit(a, b)),
        }
    }
    fn time_secs(&mut self) {
        self.parts.push(Part::TimeSecs);
    }
    fn time_rfc3339(&mut self) {
        self.parts.push(Part::TimeRfc3339);
    }
    fn fcnt(&mut self) {
        self.parts.push(Part::FCnt);
    }
    fn dedup_id(&mut self) {
        self.parts.push(Part::Dedup);
    }
    fn value(&mut self, i: usize) {
        self.parts.push(Part::Value(i as u16));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;

    fn direct(format: Format, device: &str, fields: &[(&str, Value)]) -> String {
        let t = fixture::small();
        let d = t.device_id(device).expect("fixture device");
        let kind = t.kind_of(d);
        let idx: Vec<FieldIdx> = fields
            .iter()
            .map(|(n, _)| kind.field(n).expect("fixture field"))
            .collect();
        let values: Vec<Value> = fields.iter().map(|(_, v)| v.clone()).collect();
        let mut out = Direct {
            buf: Vec::new(),
            time: Timestamp(1_795_694_400_123),
            fcnt: 7,
            dedup: 42,
            values: &values,
            rfc3339: &mut Rfc3339::default(),
        };
        payload(&mut out, &t, d, format, &idx);
        String::from_utf8(out.buf).expect("utf-8")
    }

    #[test]
    fn senml_pack() {
        assert_eq!(
            direct(
                Format::Senml,
                "a1",
                &[
                    ("on", Value::Bool(true)),
                    ("badge", Value::Text("B\"1".into()))
                ]
            ),
            r#"[{"bn":"a1/","bt":1795694400.123,"n":"on","vb":true},{"n":"badge","vs":"B\"1"}]"#
        );
    }

    #[test]
    fn plain_json() {
        assert_eq!(
            direct(Format::Json, "g1", &[("level_m", Value::Number(1.5))]),
            r#"{"device":"g1","time":"2026-11-26T12:00:00.123Z","values":{"level_m":1.5}}"#
        );
    }

    #[test]
    fn chirpstack_uplink() {
        let p = direct(Format::Chirpstack, "g1", &[("level_m", Value::Number(2.0))]);
        let v: serde_json::Value = serde_json::from_str(&p).expect("json");
        assert_eq!(v["deviceInfo"]["devEui"], "0011223344556677");
        assert_eq!(v["deviceInfo"]["deviceName"], "g1");
        assert_eq!(v["fCnt"], 7);
        assert_eq!(v["object"]["level_m"], 2.0);
        let id = v["deduplicationId"].as_str().expect("string");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn template_matches_direct() {
        let t = fixture::small();
        let d = t.device_id("a1").expect("fixture device");
        let fields = [FieldIdx(0), FieldIdx(1)];
        let values = [Value::Bool(false), Value::Text("x".into())];
        for format in [Format::Senml, Format::Json, Format::Chirpstack] {
            let tpl = Template::record(&t, d, format, &fields);
            let mut a = Vec::new();
            tpl.fill(
                &mut a,
                &mut Rfc3339::default(),
                Timestamp(5_000),
                3,
                9,
                |i, b| write_value(b, &values[i]),
            );
            let mut out = Direct {
                buf: Vec::new(),
                time: Timestamp(5_000),
                fcnt: 3,
                dedup: 9,
                values: &values,
                rfc3339: &mut Rfc3339::default(),
            };
            payload(&mut out, &t, d, format, &fields);
            assert_eq!(a, out.buf);
        }
    }

    #[test]
    fn cached_rfc3339_is_the_timestamp_display() {
        let mut c = Rfc3339::default();
        for ms in [
            0,
            1,
            999,
            1_000,
            1_795_694_400_123,
            1_795_694_400_999,
            1_795_694_401_000,
            -1,
        ] {
            let mut b = Vec::new();
            c.write(&mut b, Timestamp(ms));
            assert_eq!(
                String::from_utf8(b).expect("utf-8"),
                Timestamp(ms).to_string()
            );
        }
    }

    #[test]
    fn senml_times_are_the_shortest_f64_text() {
        for ms in [
            0,
            5,
            50,
            500,
            120,
            1_795_694_400_000,
            1_795_694_400_123,
            1_795_694_400_100,
            -1_500,
        ] {
            let mut b = Vec::new();
            write_time_secs(&mut b, Timestamp(ms));
            assert_eq!(
                String::from_utf8(b).expect("utf-8"),
                (ms as f64 / 1000.0).to_string()
            );
        }
    }

    #[test]
    fn escapes_strings() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c\n\u{1}"), "a\\\"b\\\\c\\n\\u0001");
    }
}
