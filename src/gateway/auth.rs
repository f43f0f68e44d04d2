//! Who may call: Twilio's request signatures and per-call stream tokens.
//!
//! Twilio signs every webhook request and the media stream's WebSocket upgrade with the
//! account's auth token (`X-Twilio-Signature`). Stream URLs lose their query string, so the
//! webhook also hands the stream a token as a `<Parameter>`: an HMAC of the call's `CallSid`
//! and an expiry, which any replica that knows the secret can check when `start` arrives.
//! Nothing is stored: the webhook and the stream may land on different replicas.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// Twilio's signature of a request: base64 of HMAC-SHA1 keyed with the auth token over the
/// full URL followed by each POST parameter, sorted by name, as name then value.
///
/// ```
/// use realtime_agents::gateway::twilio_signature;
/// // The example of Twilio's webhook security page.
/// let params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
///               ("From", "+12349013030"), ("To", "+18005551212")];
/// assert_eq!(
///     twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
///     "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
/// );
/// ```
pub fn twilio_signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let tag = twilio_mac(auth_token, url, params).finalize().into_bytes();
    base64_simd::STANDARD.encode_to_string(tag)
}

/// Whether `header` is Twilio's signature of the request (compared in constant time).
pub(crate) fn twilio_signature_ok<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    header: Option<&str>,
) -> bool {
    let Some(claimed) = header.and_then(|h| base64_simd::STANDARD.decode_to_vec(h).ok()) else {
        return false;
    };
    twilio_mac(auth_token, url, params)
        .verify_slice(&claimed)
        .is_ok()
}

fn twilio_mac<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> Hmac<Sha1> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort();
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha1>>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn token_mac(secret: &str, call_id: &str, expires: u64) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(call_id.as_bytes());
    mac.update(b".");
    mac.update(expires.to_string().as_bytes());
    mac
}

/// A token for the media stream of call `call_id`, valid for `ttl`: `{expiry}.{hex HMAC}`.
pub(crate) fn mint_stream_token(secret: &str, call_id: &str, ttl: Duration) -> String {
    let expires = now_secs() + ttl.as_secs().max(1);
    let tag = token_mac(secret, call_id, expires).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{expires}.{hex}")
}

/// Checks a stream token against the call it claims to be for.
pub(crate) fn check_stream_token(
    secret: &str,
    call_id: &str,
    token: &str,
) -> Result<(), &'static str> {
    let (expires, hex) = token.split_once('.').ok_or("malformed token")?;
    let expires: u64 = expires.parse().map_err(|_| "malformed token")?;
    if hex.len() != 64 || !hex.is_ascii() {
        return Err("malformed token");
    }
    let tag: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| "malformed token")?;
    token_mac(secret, call_id, expires)
        .verify_slice(&tag)
        .map_err(|_| "token does not match the call")?;
    if now_secs() > expires {
        return Err("token expired");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject() {
        let params = [("CallSid", "CA1"), ("From", "+15550100")];
        let url = "https://voice.example.com/twilio/voice";
        let good = twilio_signature("tok", url, &params);
        assert!(twilio_signature_ok("tok", url, &params, Some(&good)));
        assert!(!twilio_signature_ok("other", url, &params, Some(&good)));
        assert!(!twilio_signature_ok(
            "tok",
            "https://evil.example/twilio/voice",
            &params,
            Some(&good)
        ));
        assert!(!twilio_signature_ok("tok", url, &params, None));
        assert!(!twilio_signature_ok(
            "tok",
            url,
            &params,
            Some("not base64!")
        ));
        let no_params: [(&str, &str); 0] = [];
        let upgrade = twilio_signature("tok", "wss://voice.example.com/twilio/stream", &no_params);
        assert!(twilio_signature_ok(
            "tok",
            "wss://voice.example.com/twilio/stream",
            &no_params,
            Some(&upgrade)
        ));
    }

    #[test]
    fn stream_tokens_are_bound_to_their_call_and_expire() {
        let token = mint_stream_token("secret", "CA1", Duration::from_secs(60));
        assert_eq!(check_stream_token("secret", "CA1", &token), Ok(()));
        assert_eq!(
            check_stream_token("secret", "CA2", &token),
            Err("token does not match the call")
        );
        assert_eq!(
            check_stream_token("other", "CA1", &token),
            Err("token does not match the call")
        );
        assert_eq!(
            check_stream_token("secret", "CA1", "12.zz"),
            Err("malformed token")
        );
        let expired = {
            let expires = now_secs() - 1;
            let tag = token_mac("secret", "CA1", expires).finalize().into_bytes();
            let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
            format!("{expires}.{hex}")
        };
        assert_eq!(
            check_stream_token("secret", "CA1", &expired),
            Err("token expired")
        );
    }
}
