//! The query string of `GET /ngsi-ld/v1/entities` and a `q` (untrusted input): never a
//! panic; a query read selects a page no larger than its limit, from a total it counts.
#![no_main]

use beffroi_ngsild::{Attribute, Entity, QExpr, Query, Value, select};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entity = Entity::new("urn:ngsi-ld:Device:t:d1", "Device")
        .with("deviceState", Attribute::property(Value::Text("ok".into())))
        .with("peopleCount", Attribute::property(Value::Integer(3)));
    if let Ok(q) = QExpr::parse(&text, "q") {
        let _ = q.eval(&entity);
    }
    // The same bytes as `name=value&…` pairs.
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    if let Ok(query) = Query::parse(&pairs) {
        let entities = [entity];
        let page = select(&entities, &query);
        assert!(page.entities.len() <= query.limit, "a page holds at most `limit`");
        assert!(page.total <= entities.len(), "the total counts entities held");
    }
});
