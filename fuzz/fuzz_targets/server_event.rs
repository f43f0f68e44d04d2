//! Feeds arbitrary frames to the server-event decoder, as the WebSocket transport does for
//! every text frame: no input may panic, hang or exhaust memory; what decodes must re-encode
//! into a frame that decodes again, as the same event type.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime_agents::Error;
use realtime_agents::protocol::ServerEvent;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer rejects anything else before decoding).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ServerEvent::from_json(text) {
        Ok(event) => {
            let encoded = event.to_json();
            let again = match ServerEvent::from_json(&encoded) {
                Ok(again) => again,
                Err(e) => panic!("re-encoding of {text:?} does not decode: {e}\n{encoded}"),
            };
            assert_eq!(again.event_type(), event.event_type());
            assert_eq!(again.event_id(), event.event_id());
            // The `Value` path accepts what the text path accepts.
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
                let by_value = ServerEvent::from_value(value)
                    .unwrap_or_else(|e| panic!("text decodes, value does not: {e}"));
                assert_eq!(by_value.event_type(), event.event_type());
            }
        }
        Err(e) => {
            // What the session reports for it.
            let error = Error::from(e);
            assert!(matches!(error, Error::Protocol(_)));
            assert!(!error.to_string().is_empty());
        }
    }
});
