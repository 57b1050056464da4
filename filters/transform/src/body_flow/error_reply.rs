//! The error a refused response becomes: the 502's JSON body, and (stream mode) the edits that
//! turn the upstream's response headers into the 502's.

use filter_core::{HeaderEdit, HeaderMap};

/// `error` of the JSON error body.
pub const ERROR: &str = "bad_gateway";
/// `message` of the JSON error body: nothing of the upstream or of the rule.
pub const ERROR_MESSAGE: &str = "the upstream response could not be processed";

/// The JSON error body of a refused response, as `filter_core::Host::send_json_error` writes
/// it for the 502 local reply.
pub fn error_body(request_id: Option<&str>) -> Vec<u8> {
    serde_json::json!({
        "error": ERROR,
        "message": ERROR_MESSAGE,
        "request_id": request_id.unwrap_or(""),
    })
    .to_string()
    .into_bytes()
}

/// (stream) The edits that turn a response's headers into the 502's: every header the upstream
/// sent goes (nothing of it reaches the client, as with the hold mode's local reply), then
/// `:status: 502` and `content-type: application/json`. Without `content-length` Envoy frames
/// the error body itself.
pub fn error_headers(response: Option<&HeaderMap>) -> Vec<HeaderEdit> {
    let mut edits: Vec<HeaderEdit> = Vec::new();
    for (name, _) in response.into_iter().flat_map(HeaderMap::iter) {
        let remove = HeaderEdit::Remove(name.to_ascii_lowercase());
        if !name.starts_with(':') && !edits.contains(&remove) {
            edits.push(remove);
        }
    }
    edits.push(HeaderEdit::Set(":status".to_string(), "502".to_string()));
    edits.push(HeaderEdit::Set(
        "content-type".to_string(),
        "application/json".to_string(),
    ));
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_is_the_gateways_json_error() {
        let body: serde_json::Value = serde_json::from_slice(&error_body(Some("req-1"))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "bad_gateway",
                "message": "the upstream response could not be processed",
                "request_id": "req-1",
            })
        );
        let body: serde_json::Value = serde_json::from_slice(&error_body(None)).unwrap();
        assert_eq!(body["request_id"], "");
    }

    #[test]
    fn error_headers_drop_everything_the_upstream_sent() {
        let response = HeaderMap::new(
            [
                (":status", "200"),
                ("content-type", "text/html"),
                ("content-encoding", "gzip"),
                ("content-length", "42"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-secret-hint", "v"),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        );
        let mut out = response.clone();
        for edit in error_headers(Some(&response)) {
            edit.apply_to(&mut out);
        }
        let mut pairs: Vec<(&str, &str)> = out.iter().collect();
        pairs.sort_unstable();
        assert_eq!(
            pairs,
            [(":status", "502"), ("content-type", "application/json")]
        );
        assert_eq!(
            error_headers(None),
            [
                HeaderEdit::Set(":status".into(), "502".into()),
                HeaderEdit::Set("content-type".into(), "application/json".into()),
            ]
        );
    }
}
