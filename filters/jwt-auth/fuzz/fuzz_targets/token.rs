//! Token parsing and extraction from request headers: any input must give a token or a
//! `TokenError`, never a panic, and a parsed token's signing input must be a prefix of it.
#![no_main]

use filter_core::HeaderMap;
use jwt_auth::token::{parse, TokenSources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(jwt) = parse(&text, 8192) {
        assert!(text.starts_with(jwt.signing_input));
        assert!(jwt.signing_input.ends_with(jwt.payload_b64));
    }
    // The same bytes as an Authorization header, a query and a cookie.
    let headers = HeaderMap::from([
        (":path", format!("/x?access_token={text}").as_str()),
        ("authorization", format!("Bearer {text}").as_str()),
        ("cookie", format!("session={text}").as_str()),
    ]);
    let _ = TokenSources::default().extract(&headers);
});
