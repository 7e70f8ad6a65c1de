//! The broker's log text is untrusted (clients pick their ids and user names): the parser
//! never panics, line by line or on a whole message.
#![no_main]

use beffroi_mqtt::broker_log::BrokerLogParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut p = BrokerLogParser::default();
    for line in text.lines() {
        let _ = p.parse(line);
    }
    let _ = p.parse(&text);
});
