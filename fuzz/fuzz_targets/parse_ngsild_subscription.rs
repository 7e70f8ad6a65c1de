//! A subscription creation body (untrusted JSON): never a panic; a subscription read
//! shows itself as JSON, and its notification names it.
#![no_main]

use beffroi_ngsild::context::JsonLdContext;
use beffroi_ngsild::{Subscription, Timestamp, notification_body, parse_subscription};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let context = JsonLdContext::new("https://beffroi.example/ngsi-ld/v1/jsonldContexts/beffroi");
    if let Ok(request) = parse_subscription(data, &context) {
        let subscription = Subscription::new(request, || "urn:ngsi-ld:Subscription:fuzz".to_owned());
        let Some(now) = Timestamp::from_millis(1_767_225_600_000) else {
            return;
        };
        let shown = subscription.to_json(now);
        assert_eq!(shown["type"], "Subscription");
        let body = notification_body(&subscription, &[], now, &context);
        assert_eq!(body["subscriptionId"], shown["id"]);
    }
});
