//! Images and video frames are not observations: SenML data values, data URIs and the
//! base64 of an image or a video are refused as `image_refused`, long texts as
//! `text_too_long`, and the rejection never quotes the value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use beffroi_core::Timestamp;
use beffroi_core::territory::fixture;
use beffroi_wire::{Context, Format, MAX_TEXT, RejectReason, Rejection, decode, validate};
use proptest::prelude::*;

const NOW: Timestamp = Timestamp(1_795_694_400_000);

/// Decodes and validates one SenML record of the fixture's alarm `a1`.
fn senml_badge(record: serde_json::Value) -> Result<(), Rejection> {
    let payload = serde_json::to_vec(&serde_json::json!([record])).expect("json");
    let t = fixture::small();
    let records = decode(
        Format::Senml,
        &payload,
        Context {
            device_hint: None,
            received: NOW,
        },
    )?;
    for r in &records {
        validate(&t, r, NOW)?;
    }
    Ok(())
}

fn text(value: &str) -> Result<(), Rejection> {
    senml_badge(serde_json::json!({"n": "a1:badge", "vs": value}))
}

const SIGNATURES: [&[u8]; 6] = [
    b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00",
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
    b"GIF87a\x01\0\x01\0",
    b"GIF89a\x01\0\x01\0",
    b"RIFF\x24\0\0\0WEBPVP8 ",
    b"\0\0\0\x18ftypmp42\0\0\0\0",
];

#[test]
fn senml_data_values_are_refused_on_any_field() {
    for n in ["a1:badge", "a1:on", "g1:level_m"] {
        let e = senml_badge(serde_json::json!({"n": n, "vd": "aGVsbG8"})).expect_err("vd");
        assert_eq!(e.reason, RejectReason::ImageRefused, "{n}");
        assert!(!e.detail.contains("aGVsbG8"));
    }
}

#[test]
fn plain_text_values_still_pass() {
    for ok in [
        "AB-123-CD",
        "badge-4711",
        "open",
        "Porte forcée",
        &"x".repeat(MAX_TEXT),
    ] {
        text(ok).expect(ok);
    }
}

#[test]
fn long_text_is_refused_without_quoting_it() {
    let long = "y".repeat(MAX_TEXT + 1);
    let e = text(&long).expect_err("too long");
    assert_eq!(e.reason, RejectReason::TextTooLong);
    assert!(!e.detail.contains("yyyy"), "{}", e.detail);
}

#[test]
fn plain_json_form_is_covered_too() {
    let t = fixture::small();
    let img = STANDARD.encode(SIGNATURES[1]);
    let payload =
        serde_json::to_vec(&serde_json::json!({"device": "a1", "values": {"badge": img}}))
            .expect("json");
    let records = decode(
        Format::Json,
        &payload,
        Context {
            device_hint: None,
            received: NOW,
        },
    )
    .expect("decodes");
    let e = validate(&t, &records[0], NOW).expect_err("image");
    assert_eq!(e.reason, RejectReason::ImageRefused);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any image or video, whatever follows its signature, base64 or data URI, on a text
    /// or a number field: refused, and never quoted.
    #[test]
    fn media_is_refused_and_never_quoted(
        sig in 0..SIGNATURES.len(),
        tail in proptest::collection::vec(any::<u8>(), 0..400),
        as_data_uri in any::<bool>(),
        field in prop::sample::select(vec!["a1:badge", "g1:level_m"]),
    ) {
        let mut bytes = SIGNATURES[sig].to_vec();
        bytes.extend(tail);
        let b64 = STANDARD.encode(&bytes);
        let value = if as_data_uri { format!("data:image/jpeg;base64,{b64}") } else { b64.clone() };
        let e = senml_badge(serde_json::json!({"n": field, "vs": value})).expect_err("media");
        prop_assert_eq!(e.reason, RejectReason::ImageRefused);
        prop_assert!(!e.detail.contains(&b64[..8.min(b64.len())]));
    }

    /// Short texts that are not media are accepted (no false positive on identifiers).
    #[test]
    fn ordinary_short_text_is_accepted(s in "[A-Za-z0-9 _.:-]{0,64}") {
        prop_assume!(!s.trim_start().to_ascii_lowercase().starts_with("data:"));
        prop_assume!(beffroi_wire::media::sniff(&s).is_none());
        prop_assert!(text(&s).is_ok());
    }

    /// Every text over the bound is refused, whatever it holds.
    #[test]
    fn every_long_text_is_refused(s in "[a-z ]{257,600}") {
        let e = text(&s).expect_err("long");
        prop_assert_eq!(e.reason, RejectReason::TextTooLong);
    }
}
