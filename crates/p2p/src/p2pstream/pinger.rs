//! The keepalive timer: when to send a Ping, and when the missing Pong means the peer is gone.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

/// How long a connection may be quiet before we ping. go-ethereum pings every 15 s; matching it
/// keeps NAT mappings alive and detects dead peers within half a minute.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// How long we wait for the Pong before disconnecting with `PingTimeout`. 20 s (reth's value)
/// tolerates a peer busy with a few MiB of responses on a slow link, since Pong queues behind them.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What the pinger asks its stream to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingerEvent {
    /// Send a Ping now.
    Ping,
    /// The Pong did not come in time: disconnect with `PingTimeout`.
    Timeout,
}

#[derive(Debug)]
enum State {
    /// Waiting for the next ping tick.
    Ready,
    /// A Ping is out; this sleep ends at its deadline.
    WaitingForPong(Pin<Box<Sleep>>),
}

/// The ping/pong state machine of one connection.
#[derive(Debug)]
pub struct Pinger {
    interval: Interval,
    timeout: Duration,
    state: State,
}

impl Pinger {
    /// A pinger that pings every `interval` (first after one interval) and gives up `timeout`
    /// after an unanswered Ping.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        let mut interval = tokio::time::interval_at(Instant::now() + interval, interval);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { interval, timeout, state: State::Ready }
    }

    /// Records a Pong; unsolicited Pongs are ignored, as go-ethereum does.
    pub fn on_pong(&mut self) {
        if matches!(self.state, State::WaitingForPong(_)) {
            self.state = State::Ready;
            self.interval.reset();
        }
    }

    /// Whether a Ping is unanswered.
    pub fn is_waiting_for_pong(&self) -> bool {
        matches!(self.state, State::WaitingForPong(_))
    }

    /// Polls for the next event.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<PingerEvent> {
        match &mut self.state {
            State::Ready => {
                if self.interval.poll_tick(cx).is_ready() {
                    self.state = State::WaitingForPong(Box::pin(tokio::time::sleep(self.timeout)));
                    // register the timeout's waker now
                    let _ = self.poll_event(cx);
                    return Poll::Ready(PingerEvent::Ping);
                }
                Poll::Pending
            }
            State::WaitingForPong(sleep) => {
                if sleep.as_mut().poll(cx).is_ready() {
                    Poll::Ready(PingerEvent::Timeout)
                } else {
                    Poll::Pending
                }
            }
        }
    }
}
