//! JSON-RPC 2.0 batches: many calls in one request, answered in one response. Headers for
//! eth/69 peers are read this way: a query of 1,024 headers is 11 round trips to the execution
//! client instead of 1,024, and the one connection that all peers' queries share is held that
//! much shorter. A client that refuses batches is asked one call at a time from then on.

use serde_json::{Value, json, value::RawValue};
use tracing::{debug, warn};

use super::{Awaited, NUMBER_DIFFERS, RpcClient, as_requested};
use crate::{
    error::{IngestError, RpcError},
    header::RpcHeader,
};

/// Most calls in one batch (100): erigon's default limit (`--rpc.batch.limit`), the lowest of the
/// execution clients' (geth's is 1,000, Nethermind's and Besu's 1,024; reth has none). 100
/// mainnet headers are about 130 KB of JSON, 100 blocks with their transactions' hashes 2 MB.
pub const MAX_BATCH_CALLS: usize = 100;

/// JSON-RPC 2.0's "invalid request": what geth answers, under the first call's id, for a batch
/// over its limit (`--rpc.batch-request-limit`, "batch too large"); no single header call gets
/// it. A server without batches answers it (or "method not found", or "parse error") in one
/// object.
const INVALID_REQUEST: i64 = -32600;

/// The errors of a whole batch that say the server takes no batches.
const REFUSALS: [i64; 3] = [INVALID_REQUEST, -32601, -32700];

/// One header call's answer: the header, `None` for a block the client does not have, or the
/// call's error.
pub type HeaderAnswer = Result<Option<RpcHeader>, IngestError>;

/// Malformed batch answers (a proxy that rewrites ids, say) after which a client is asked call
/// by call for good; each before that has its batch read call by call.
const MAX_MALFORMED_BATCHES: u32 = 3;

/// What one batch of header calls came to.
enum Tried {
    /// The answers (see [`RpcClient::header_batch`]).
    Answers(Vec<HeaderAnswer>),
    /// Over the client's batch size limit: asked again in halves.
    TooLarge,
    /// Refused as a whole, or answered malformed: asked call by call.
    CallByCall,
}

impl RpcClient {
    /// The headers of blocks `numbers` (at most [`MAX_BATCH_CALLS`]), read in batches with the
    /// method [`RpcClient::header`] would use. The answers come in the order asked, and end at
    /// the first call that does not give a header, or where the client left calls unanswered
    /// (geth past its response size limit). A header whose number is not the one asked is an
    /// error. A client that finds the batch too large (geth under a lower
    /// `--rpc.batch-request-limit`) is asked in halves from then on; one that refuses batches
    /// (an "invalid request", "method not found" or "parse error" object in place of the
    /// answers) is warned about once and asked call by call from then on, as is one whose
    /// batch answers were malformed `MAX_MALFORMED_BATCHES` (3) times (each such batch is read
    /// call by call). Any other error of the whole batch (a proxy's rate limit) or of the
    /// transport is returned: the next query tries batches again.
    pub async fn header_batch(
        &mut self,
        numbers: &[u64],
    ) -> Result<Vec<HeaderAnswer>, IngestError> {
        let mut rest = &numbers[..numbers.len().min(MAX_BATCH_CALLS)];
        let mut answers = Vec::with_capacity(rest.len());
        while !rest.is_empty() && self.batch_calls > 1 {
            let batch = &rest[..rest.len().min(self.batch_calls)];
            match self.try_header_batch(batch).await? {
                Tried::Answers(got) => {
                    let whole =
                        got.len() == batch.len() && got.iter().all(|a| matches!(a, Ok(Some(_))));
                    answers.extend(got);
                    if !whole {
                        return Ok(answers);
                    }
                    rest = &rest[batch.len()..];
                }
                Tried::TooLarge => self.batch_calls /= 2,
                Tried::CallByCall => break,
            }
        }
        for &number in rest {
            let answer = self.header(number).await;
            let go_on = matches!(answer, Ok(Some(_)));
            answers.push(answer);
            if !go_on {
                break;
            }
        }
        Ok(answers)
    }

    /// One batch of header calls.
    async fn try_header_batch(&mut self, numbers: &[u64]) -> Result<Tried, IngestError> {
        let method =
            if self.headers_as_blocks { "eth_getBlockByNumber" } else { "eth_getHeaderByNumber" };
        let first = self.next_id;
        let len = numbers.len() as u64;
        self.next_id += len;
        let calls = numbers.iter().zip(first..).map(|(number, id)| {
            let at = format!("{number:#x}");
            let params = if self.headers_as_blocks { json!([at, false]) } else { json!([at]) };
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        });
        let request = Value::Array(calls.collect());
        let body = self.send(method, Awaited::Batch { first, len }, &request).await?;
        let answers = match decode_batch(method, first, numbers.len(), &body) {
            Ok(Batch::Answers(answers)) => answers,
            Ok(Batch::TooLarge(error)) => {
                debug!(calls = numbers.len(), %error, "batch too large: asking in halves");
                return Ok(Tried::TooLarge);
            }
            Ok(Batch::Refused(error)) => {
                warn!(
                    url = self.url(),
                    %error,
                    "the execution client refuses JSON-RPC batches: headers for peers are read \
                     one call at a time"
                );
                self.batch_calls = 0;
                return Ok(Tried::CallByCall);
            }
            Err(error @ (IngestError::InvalidResponse { .. } | IngestError::Decode { .. })) => {
                self.malformed_batches += 1;
                if self.malformed_batches >= MAX_MALFORMED_BATCHES {
                    warn!(
                        url = self.url(),
                        %error,
                        "the execution client's batch answers are malformed: headers for peers \
                         are read one call at a time"
                    );
                    self.batch_calls = 0;
                } else {
                    debug!(%error, "a malformed batch answer: this batch is read call by call");
                }
                return Ok(Tried::CallByCall);
            }
            Err(error) => return Err(error),
        };
        let checked = answers.into_iter().zip(numbers).map(|(answer, &number)| match answer? {
            Some(raw) => match serde_json::from_str::<Option<RpcHeader>>(raw.get()) {
                Ok(header) => as_requested(method, header, |h| h.number == number, NUMBER_DIFFERS),
                Err(source) => Err(IngestError::Decode { method, source }),
            },
            None => Ok(None),
        });
        Ok(Tried::Answers(checked.collect()))
    }
}

/// A batch's answer, decoded up to each call's `result`.
#[derive(Debug)]
enum Batch<'a> {
    /// Each call's `result` (`None` for `null`) or error, in the order asked, up to the first
    /// call left unanswered.
    Answers(Vec<Result<Option<&'a RawValue>, IngestError>>),
    /// Over the client's limit of calls a batch ("batch too large"), with this error.
    TooLarge(RpcError),
    /// The batch was refused as a whole, with this error.
    Refused(RpcError),
}

/// Decodes the answer `body` to the batch of `len` calls whose ids start at `first`. The
/// answers may come in any order (JSON-RPC 2.0); an answer with an id not asked, or asked
/// twice, makes the whole body malformed.
fn decode_batch<'a>(
    method: &'static str,
    first: u64,
    len: usize,
    body: &'a [u8],
) -> Result<Batch<'a>, IngestError> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        id: Option<u64>,
        #[serde(borrow)]
        result: Option<&'a RawValue>,
        error: Option<RpcError>,
    }
    let malformed = |reason| IngestError::InvalidResponse { method, reason };
    let decode = |source| IngestError::Decode { method, source };
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        // One object for the whole batch: a server that takes no batches, or a passing error
        // (a proxy's rate limit) of this one.
        let whole: Answer<'_> = serde_json::from_slice(body).map_err(decode)?;
        return match whole.error {
            Some(error) if REFUSALS.contains(&error.code) => Ok(Batch::Refused(error)),
            Some(error) => Err(error.into()),
            None => Err(malformed("a batch answered by one result")),
        };
    }
    let answers: Vec<Answer<'_>> = serde_json::from_slice(body).map_err(decode)?;
    let mut slots: Vec<Option<Result<Option<&RawValue>, IngestError>>> = Vec::new();
    slots.resize_with(len, || None);
    for answer in answers {
        let index = answer
            .id
            .and_then(|id| id.checked_sub(first))
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < len)
            .ok_or(malformed("an answer with an id not asked in the batch"))?;
        if index == 0
            && let Some(error) = answer.error.as_ref().filter(|e| e.code == INVALID_REQUEST)
        {
            let too_large = error.message.contains("too large");
            return Ok(if too_large { Batch::TooLarge } else { Batch::Refused }(error.clone()));
        }
        let slot = match (answer.result, answer.error) {
            (_, Some(error)) => Err(error.into()),
            // `"result": null` (no such block) reads as absent.
            (result, None) => Ok(result),
        };
        if slots[index].replace(slot).is_some() {
            return Err(malformed("two answers with one id in the batch"));
        }
    }
    Ok(Batch::Answers(slots.into_iter().map_while(|slot| slot).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(body: &str, len: usize) -> Vec<Result<Option<String>, i64>> {
        match decode_batch("m", 10, len, body.as_bytes()).unwrap() {
            Batch::Answers(answers) => answers
                .into_iter()
                .map(|a| match a {
                    Ok(raw) => Ok(raw.map(|r| r.get().to_owned())),
                    Err(IngestError::Rpc(e)) => Err(e.code),
                    Err(other) => panic!("unexpected {other}"),
                })
                .collect(),
            Batch::Refused(error) | Batch::TooLarge(error) => panic!("refused: {error}"),
        }
    }

    #[test]
    fn answers_are_put_in_the_order_asked_and_end_at_the_first_missing() {
        let body = r#"[{"id":11,"result":"b"},{"id":10,"result":"a"},{"id":12,"result":null}]"#;
        let strings = |v: &[&str]| v.iter().map(|s| Ok(Some(format!("\"{s}\"")))).collect();
        let mut expected: Vec<_> = strings(&["a", "b"]);
        expected.push(Ok(None));
        assert_eq!(answers(body, 3), expected);
        // The call with id 11 unanswered: the answers end before it.
        let body = r#"[{"id":10,"result":"a"},{"id":12,"result":"c"}]"#;
        assert_eq!(answers(body, 3), strings(&["a"]));
        let body = r#"[{"id":10,"result":"a"},{"id":11,"error":{"code":-32000,"message":"x"}}]"#;
        assert_eq!(answers(body, 2), vec![Ok(Some("\"a\"".into())), Err(-32000)]);
    }

    #[test]
    fn a_refused_batch_is_told_apart_from_a_malformed_answer() {
        // geth's answer to a batch over its limit: too large, asked again in halves.
        let body = r#"[{"id":10,"error":{"code":-32600,"message":"batch too large"}}]"#;
        let too_large = decode_batch("m", 10, 2, body.as_bytes()).unwrap();
        assert!(matches!(too_large, Batch::TooLarge(RpcError { code: -32600, .. })));
        // Servers without batches.
        for (body, code) in [
            (r#"{"id":null,"error":{"code":-32600,"message":"invalid request"}}"#, -32600),
            (r#"{"id":null,"error":{"code":-32700,"message":"parse error"}}"#, -32700),
            (r#"[{"id":10,"error":{"code":-32600,"message":"invalid request"}}]"#, -32600),
        ] {
            let refused = decode_batch("m", 10, 2, body.as_bytes()).unwrap();
            assert!(
                matches!(refused, Batch::Refused(RpcError { code: c, .. }) if c == code),
                "{body}"
            );
        }
        // A passing error of the whole batch (a proxy's rate limit) is that batch's only.
        let body = r#"{"id":null,"error":{"code":-32005,"message":"limit exceeded"}}"#;
        let passing = decode_batch("m", 10, 2, body.as_bytes());
        assert!(matches!(passing, Err(IngestError::Rpc(RpcError { code: -32005, .. }))));
        for body in [
            r#"[{"id":12,"result":"a"}]"#,
            r#"[{"id":10,"result":"a"},{"id":10,"result":"a"}]"#,
            r#"[{"result":"a"}]"#,
            r#"{"id":10,"result":"a"}"#,
            r#"[1, 2]"#,
            // A proxy that rewrites ids.
            r#"[{"id":"gbiid:10","result":"a"}]"#,
        ] {
            let malformed = decode_batch("m", 10, 2, body.as_bytes());
            assert!(
                matches!(
                    malformed,
                    Err(IngestError::InvalidResponse { .. } | IngestError::Decode { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn a_batch_answer_over_websocket_is_recognised() {
        let batch = Awaited::Batch { first: 10, len: 2 };
        assert!(batch.is_answered_by(r#"[{"id":11,"result":1}]"#));
        assert!(batch.is_answered_by(r#"{"id":null,"error":{"code":-32600,"message":"x"}}"#));
        assert!(!batch.is_answered_by(r#"[{"id":12,"result":1}]"#));
        assert!(!batch.is_answered_by(r#"{"id":10,"result":1}"#));
        assert!(!batch.is_answered_by(r#"{"jsonrpc":"2.0","method":"eth_subscription"}"#));
        assert!(Awaited::One(3).is_answered_by(r#"{"id":3,"result":1}"#));
    }
}
