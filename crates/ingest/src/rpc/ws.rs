//! What comes over the WebSocket: text messages, `newHeads` notifications, and the answer a
//! request awaits among them.

use tokio_tungstenite::tungstenite::Message;

use super::SUBSCRIPTION_METHOD;
use crate::error::IngestError;

/// The text of a WebSocket message; `None` for control frames.
pub(super) fn read_text(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<String>, IngestError> {
    match msg {
        None | Some(Ok(Message::Close(_))) => Err(IngestError::WebSocketClosed),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(Message::Text(t))) => Ok(Some(t.as_str().to_owned())),
        Some(Ok(Message::Binary(b))) => Ok(String::from_utf8(b.to_vec()).ok()),
        Some(Ok(_)) => Ok(None),
    }
}

pub(super) fn is_notification(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Note<'a> {
        #[serde(borrow)]
        method: Option<&'a str>,
    }
    serde_json::from_str::<Note<'_>>(text).is_ok_and(|n| n.method == Some(SUBSCRIPTION_METHOD))
}

/// What a request awaits over WebSocket: the answer with its id, or a batch's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Awaited {
    /// The answer whose id is this.
    One(u64),
    /// A batch's answer: ids `first..first + len`.
    Batch { first: u64, len: u64 },
}

impl Awaited {
    /// Whether the message `text` is the answer awaited. A batch's is an array holding one of
    /// its ids, or an error without an id (a server refusing the batch as a whole).
    pub(super) fn is_answered_by(self, text: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Option<u64>,
            error: Option<serde::de::IgnoredAny>,
        }
        match self {
            Self::One(id) => serde_json::from_str::<Id>(text).is_ok_and(|i| i.id == Some(id)),
            Self::Batch { first, len } => {
                let ours = |id: Option<u64>| id.is_some_and(|id| id.wrapping_sub(first) < len);
                match serde_json::from_str::<Vec<Id>>(text) {
                    Ok(ids) => ids.iter().any(|i| ours(i.id)),
                    Err(_) => serde_json::from_str::<Id>(text)
                        .is_ok_and(|i| i.id.is_none() && i.error.is_some()),
                }
            }
        }
    }
}
