//! [`Captured`]: the events logged on this thread while a closure runs, for tests of what the
//! sync logs and at which level (a plain `tracing` subscriber, with no dependency of its own).

use std::{
    fmt::{Debug, Write},
    sync::{Arc, Mutex, PoisonError},
};

use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};

/// One event: its level, and its message and fields as `name=value` text.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) level: Level,
    pub(crate) text: String,
}

impl Captured {
    /// Runs `f` with every event it logs on this thread captured (at every level); returns
    /// `f`'s result and the events in order.
    pub(crate) fn run<T>(f: impl FnOnce() -> T) -> (T, Vec<Self>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let capture = Capture(Arc::clone(&events));
        let out = tracing::subscriber::with_default(capture, f);
        let events = events.lock().unwrap_or_else(PoisonError::into_inner).clone();
        (out, events)
    }

    /// Whether an operator running at the default level (info) sees it.
    pub(crate) fn is_loud(&self) -> bool {
        self.level <= Level::INFO
    }
}

/// The subscriber behind [`Captured::run`].
struct Capture(Arc<Mutex<Vec<Captured>>>);

/// Writes an event's fields as `name=value`, space-separated.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        let captured = Captured { level: *event.metadata().level(), text: text.0 };
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(captured);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
