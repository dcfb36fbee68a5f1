//! What an HTTP answer that is not a JSON-RPC one says: a refused status, named for an operator.

use crate::error::IngestError;

/// Whether `body` is a JSON-RPC answer (an object with a `result` or an error object; a
/// proxy's `{"error": "Unauthorized"}` is not one).
pub(super) fn is_json_rpc_answer(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Answer<'_>>(body).is_ok_and(|a| {
        a.result.is_some() || a.error.is_some_and(|e| e.get().trim_start().starts_with('{'))
    })
}

/// How much of a refused HTTP answer's body an error quotes (200 bytes): a server's reason
/// ("missing token", "invalid host specified") is short; a page of HTML is cut.
const QUOTED_BODY_BYTES: usize = 200;

/// [`IngestError::HttpStatus`] for an answer with `status` and `body`, with what the status
/// likely means for an operator.
pub(super) fn http_status_error(
    method: &'static str,
    url: &str,
    status: u16,
    body: &[u8],
) -> IngestError {
    let hint = match status {
        401 => {
            " (the engine API's port? it needs a JWT: point `el.rpc` at the execution \
                client's --http or --ws port)"
        }
        403 => {
            " (the execution client refuses this host or origin: geth's --http.vhosts or \
                --ws.origins)"
        }
        404 | 405 => " (not a JSON-RPC endpoint: check the port and path of `el.rpc`)",
        _ => "",
    };
    let quoted = &body[..body.len().min(QUOTED_BODY_BYTES)];
    let body: String = String::from_utf8_lossy(quoted)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned();
    IngestError::HttpStatus { method, url: url.to_owned(), status, hint, body }
}
