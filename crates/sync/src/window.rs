//! [`PeerWindow`]: how many requests a peer gets at once, sized from the bandwidth-delay product
//! of its connection (what BBR calls the in-flight target: bottleneck bandwidth × round-trip
//! propagation time, times a gain).
//!
//! The peer is measured as a *pipe*, not answer by answer. Its throughput is the bytes it
//! delivered over the time it had at least one request outstanding (busy time is counted once,
//! however many requests share it), so ten answers arriving back to back behind a 50 ms link show
//! the link's rate, not a tenth of it. Its round trip is the shortest one seen lately (queueing
//! behind its own earlier answers is not latency). The pipe is then throughput × round trip plus
//! one answer of the peer's average size, and the window is enough requests of that size to hold
//! [`WINDOW_GAIN`] pipes in flight: while the window is what limits the peer, a round trip at
//! that window shows twice the throughput, so the window doubles per round trip (slow start)
//! until the link, the server or this client is the bottleneck, and then stays at twice the
//! pipe's size.
//!
//! The answer added to the pipe is what BBR calls the send quantum. An answer is not a packet: a
//! 2 MiB chunk occupies a 100 Mbit/s link for ~170 ms, longer than a 50 ms round trip, and the
//! shortest round trip is usually that of a small answer (a `GetNodes` of the skeleton, an empty
//! piece), which leaves that time out. Without it a peer answering one large chunk at a time
//! measured a throughput of one answer per (round trip + server time + transmission), and a
//! product that asked for less than one request: its window stayed at one and its link idled
//! between answers (`bench sync` at 1M: two of four links idle ~45% of the time).
//!
//! The shortest round trip is measured again every [`MIN_RTT_LIFETIME`] (BBR's `PROBE_RTT`):
//! the window drops to one request until the peer's answers are all in, and the round trip of the
//! one request then sent alone becomes the estimate. A full window never shows the round trip
//! alone: each of its answers waits behind the earlier ones. Taking the shortest of those once the
//! old estimate expired fed the queue back into the window: a peer's round trip read 0.4, 0.9,
//! then 1.5 s behind a 50 ms link, every window reached [`MAX_IN_FLIGHT_PER_PEER`], and a
//! 4M-account `bench sync` held up to 64 answers in flight (118 MB decoded at its memory peak);
//! re-measured alone, 15–31 kept the same links full.
//!
//! The request sent alone is a probe where the peer has the pivot's nodes
//! ([`PeerWindow::probe_due`]; the syncer asks the root node): first, before anything else is
//! asked of a new peer, and at every re-measurement. A large answer's round trip, even alone,
//! includes its own time on the link (~144 ms for 1.8 MB at 100 Mbit/s) and the server's read:
//! in `bench sync` at 1M the peers whose first answers were chunks measured 0.27–0.58 s behind
//! a 50 ms link and kept ~9 requests in flight for the whole sync (each re-measurement again a
//! chunk), those whose first was the skeleton's small `GetNodes` 53–55 ms and ~3, which kept
//! their links as full; at the end the deep windows drained while the other links idled. The
//! probe's answer feeds the round trip only, not the throughput or the average answer size.
//!
//! Only delivered bytes make the window grow. A peer that stalls delivers nothing while its busy
//! time runs, so its estimate can only fall; a timeout adds its whole wait as busy time with no
//! bytes and halves what was delivered ([`PeerWindow::penalise`]), and until the peer delivers
//! again its window is one request. The window is also clamped to the protocol's
//! [`MAX_IN_FLIGHT_PER_PEER`], and the syncer keeps its global in-flight byte budget on top.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::MAX_IN_FLIGHT_PER_PEER;

/// Weight of a new answer in the moving sums (0.1, as msgrate's `measurementImpact`): the
/// estimate covers about the last ten answers, which with a full window is a round trip or two.
pub const WINDOW_MEASUREMENT_IMPACT: f64 = 0.1;

/// Requests in flight per unit of measured bandwidth-delay product (2, BBR's `cwnd_gain`): a
/// window of exactly the pipe's size would leave it idle while each answer's successor crosses
/// the link; twice keeps it full through jitter and lets an under-used window double per round
/// trip.
pub const WINDOW_GAIN: f64 = 2.0;

/// Requests a peer gets before any answer has been measured (2): one being served while the
/// next crosses the link. Grows from the first round trip on.
pub const INITIAL_WINDOW: usize = 2;

/// How long the shortest round trip seen stays the estimate (10 s, BBR's `min_rtt` window):
/// then the peer is re-measured with one request alone (see the module docs), so a peer whose
/// path got longer is re-measured within that time.
pub const MIN_RTT_LIFETIME: Duration = Duration::from_secs(10);

/// Shortest busy time and round trip a finished request counts for (1 ms): answers faster
/// than the clock can tell (a peer in the same process, paused time in tests) would otherwise
/// make a product of 0 × infinity. A peer answering instantly gets a window of [`WINDOW_GAIN`]
/// requests.
pub const MIN_MEASURED_TIME: Duration = Duration::from_millis(1);

/// Smallest average answer size the window is computed with (1 KiB): a peer answering almost
/// nothing ("too large", empty) would otherwise divide a small product by almost zero; the
/// window is clamped to [`MAX_IN_FLIGHT_PER_PEER`] in any case.
pub const MIN_ANSWER_BYTES: f64 = 1024.0;

/// A peer's pipe as measured by the syncer; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerWindow {
    /// Exponentially weighted sum of the bytes delivered per finished request.
    delivered: f64,
    /// Exponentially weighted sum, with the same weights, of the busy seconds each finished
    /// request closed (time with at least one request outstanding since the previous event).
    busy: f64,
    /// Moving average of an answer's size.
    answer_bytes: f64,
    /// Answers measured.
    answers: u64,
    /// The shortest round trip seen, and when it was seen.
    min_rtt: Option<(Duration, Instant)>,
    /// Start of the busy time not yet counted (`None` while nothing is outstanding).
    mark: Option<Instant>,
    /// The last finished request timed out or came back empty ([`Self::penalise`]): one request
    /// until the next answer.
    penalised: bool,
    /// The round trip is being measured again: `min_rtt` expired, the window is one request
    /// until one request has gone out alone and come back.
    probe: Probe,
    /// A probe ([`Self::probe_sent`]) is out: nothing else goes until it is back.
    probing: bool,
}

/// Where a peer stands in measuring its round trip again ([`MIN_RTT_LIFETIME`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Probe {
    /// The estimate is fresh.
    #[default]
    Off,
    /// The estimate expired: the peer's requests in flight are draining.
    Draining,
    /// One request went out with nothing else in flight: its round trip is the new estimate.
    Alone,
}

impl PeerWindow {
    /// Whether the next request, with `in_flight` outstanding, should be a probe: a small
    /// request sent alone whose round trip becomes the estimate ([`Self::probed`]). Due for a
    /// peer not measured yet and when the estimate expired and its requests drained. Any
    /// request sent alone then measures a round trip, but a large answer's includes its own
    /// transmission and the server's read: behind a 100 Mbit/s link a 1.8 MB chunk's round trip
    /// read 0.27–0.58 s against 53 ms for a small answer, and the window held 2–3 times the
    /// requests the pipe needs, for the whole sync (each re-measurement again a chunk).
    pub fn probe_due(&self, in_flight: usize) -> bool {
        !self.probing
            && in_flight == 0
            && (self.min_rtt.is_none() && self.answers == 0 || self.probe != Probe::Off)
    }

    /// A probe goes out: the window is one request (the probe) until it is back. Its time is no
    /// busy time: it delivers nothing the throughput should count.
    pub fn probe_sent(&mut self) {
        self.probing = true;
        self.mark = None;
    }

    /// The probe came back at `now` after `rtt` (`None`: it failed, and the next request is a
    /// probe again). A round trip measured alone is the estimate, shorter or not; the
    /// throughput and the answer size are not touched (a probe's few hundred bytes would make
    /// the window in requests far too large until the average answer recovered).
    pub fn probed(&mut self, now: Instant, rtt: Option<Duration>) {
        self.probing = false;
        self.mark = None;
        if let Some(rtt) = rtt {
            self.min_rtt = Some((rtt.max(MIN_MEASURED_TIME), now));
            self.probe = Probe::Off;
            self.penalised = false;
        }
    }

    /// A request goes out at `now` while `in_flight` others are outstanding: an idle peer
    /// starts a busy period.
    pub fn sent(&mut self, now: Instant, in_flight: usize) {
        if in_flight == 0 || self.mark.is_none() {
            self.mark = Some(now);
        }
        if self.probe == Probe::Draining && in_flight == 0 {
            self.probe = Probe::Alone;
        }
    }

    /// A request finished at `now`, leaving `in_flight` outstanding. `answer` is its size and
    /// round trip when an answer came (`None`: timeout, disconnect, no answer): the busy time
    /// since the previous event (at least [`MIN_MEASURED_TIME`]) is counted against what it
    /// delivered.
    pub fn finished(&mut self, now: Instant, answer: Option<(u64, Duration)>, in_flight: usize) {
        let busy = self.mark.map_or(Duration::ZERO, |m| now.saturating_duration_since(m));
        let busy = busy.max(MIN_MEASURED_TIME).as_secs_f64();
        let bytes = answer.map_or(0, |(bytes, _)| bytes) as f64;
        let keep = 1.0 - WINDOW_MEASUREMENT_IMPACT;
        self.delivered = keep * self.delivered + WINDOW_MEASUREMENT_IMPACT * bytes;
        self.busy = keep * self.busy + WINDOW_MEASUREMENT_IMPACT * busy;
        self.mark = (in_flight > 0).then_some(now);
        let Some((bytes, rtt)) = answer else {
            // A lone request that brought nothing measured nothing: the next one goes alone.
            if self.probe == Probe::Alone {
                self.probe = Probe::Draining;
            }
            return;
        };
        self.penalised = false;
        let rtt = rtt.max(MIN_MEASURED_TIME);
        self.answer_bytes = if self.answers == 0 {
            bytes as f64
        } else {
            keep * self.answer_bytes + WINDOW_MEASUREMENT_IMPACT * bytes as f64
        };
        self.answers += 1;
        self.min_rtt = match self.min_rtt {
            // The request that went out alone: its round trip is the estimate, shorter or not.
            Some(_) if self.probe == Probe::Alone && in_flight == 0 => {
                self.probe = Probe::Off;
                Some((rtt, now))
            }
            Some((min, at)) if min <= rtt => {
                if self.probe == Probe::Off && now.saturating_duration_since(at) >= MIN_RTT_LIFETIME
                {
                    self.probe = Probe::Draining;
                }
                Some((min, at))
            }
            // Shorter than the estimate: no queue can make a round trip shorter.
            _ => {
                self.probe = Probe::Off;
                Some((rtt, now))
            }
        };
    }

    /// A timeout or an empty answer: the peer delivered nothing useful, halve its throughput;
    /// its window is one request until it answers again.
    pub fn penalise(&mut self) {
        self.delivered /= 2.0;
        self.penalised = true;
    }

    /// Measured throughput, bytes per second of busy time (0 before the first finished request).
    pub fn throughput(&self) -> f64 {
        if self.busy > 0.0 { self.delivered / self.busy } else { 0.0 }
    }

    /// Where the peer stands when work is handed out, higher first: its throughput, or
    /// infinity until a request of it has finished, so that a new peer is asked at once and
    /// measured (which only matters while work is scarce: the skeleton's first levels, the
    /// last items; otherwise every window is filled).
    pub fn rank(&self) -> f64 {
        if self.answers == 0 && self.busy == 0.0 { f64::INFINITY } else { self.throughput() }
    }

    /// The shortest recent round trip (`None` before the first answer).
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(|(rtt, _)| rtt)
    }

    /// Requests the peer should have in flight: [`WINDOW_GAIN`] × (throughput × round trip +
    /// one answer), in answers of its average size, between 1 and [`MAX_IN_FLIGHT_PER_PEER`];
    /// [`INITIAL_WINDOW`] until a request has finished, 1 while none has been answered, after a
    /// timeout or an empty answer until the next answer, and while the round trip is measured
    /// again.
    pub fn window(&self) -> usize {
        if self.probing {
            return 1;
        }
        let Some(rtt) = self.min_rtt() else {
            // Unmeasured; or every request so far failed, which earns no more than one.
            return if self.busy > 0.0 { 1 } else { INITIAL_WINDOW };
        };
        if self.penalised || self.probe != Probe::Off {
            return 1;
        }
        let answer = self.answer_bytes.max(MIN_ANSWER_BYTES);
        let pipe = self.throughput() * rtt.as_secs_f64() + answer;
        let requests = WINDOW_GAIN * pipe / answer;
        (requests.ceil() as usize).clamp(1, MAX_IN_FLIGHT_PER_PEER)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::link::Link;

    /// Bytes per second of the test link (100 Mbit/s).
    const LINK: f64 = 12.5e6;

    /// One peer behind a [`LINK`] with a round trip of `rtt_ms`, answering `answer` bytes per
    /// request `server_ms` after it arrives (requests are served side by side), driven for
    /// `secs` with the window as the only limit (the syncer's loop in miniature). Returns the
    /// bytes delivered per second.
    fn drive(window: &mut PeerWindow, rtt_ms: u64, server_ms: u64, answer: u64, secs: u64) -> f64 {
        Pipe::new(rtt_ms, server_ms, answer).run(window, Instant::now(), secs).rate
    }

    /// The peer's side of [`drive`]: requests take half the round trip and the server's time to
    /// be ready, and their answers cross one [`Link`] of [`LINK`] bytes per second.
    struct Pipe {
        /// From a request's sending to its answer being ready at the server.
        ready_after: Duration,
        /// The server's part of `ready_after`.
        server: Duration,
        down: Link,
        answer: u64,
    }

    /// What [`Pipe::run`] saw.
    struct Driven {
        /// Bytes delivered per second.
        rate: f64,
        /// When it stopped (the simulated clock).
        end: Instant,
        /// The largest window, and the most requests in flight, over the last half of the run.
        late_window: usize,
    }

    impl Pipe {
        fn new(rtt_ms: u64, server_ms: u64, answer: u64) -> Self {
            let half = Duration::from_millis(rtt_ms) / 2;
            let server = Duration::from_millis(server_ms);
            let ready_after = half + server;
            Self { ready_after, server, down: Link::new(half, LINK as u64 * 8), answer }
        }

        fn run(&self, window: &mut PeerWindow, start: Instant, secs: u64) -> Driven {
            self.run_probing(window, start, secs, false)
        }

        /// [`Self::run`], and with `probes` a small request alone whenever one is due (the
        /// syncer's probe of the root node): its round trip is the link's alone.
        fn run_probing(
            &self,
            window: &mut PeerWindow,
            start: Instant,
            secs: u64,
            probes: bool,
        ) -> Driven {
            let duration = Duration::from_secs(secs);
            let mut now = start;
            // (sent, arrives) of the requests outstanding, in arrival order.
            let mut outstanding: VecDeque<(Instant, Instant)> = VecDeque::new();
            let (mut delivered, mut late_window) = (0u64, 0);
            while now < start + duration {
                if probes && window.probe_due(outstanding.len()) {
                    window.probe_sent();
                    let rtt = self.down.arrival(500, now + self.ready_after - self.server) - now;
                    now += rtt;
                    window.probed(now, Some(rtt));
                }
                while outstanding.len() < window.window() {
                    window.sent(now, outstanding.len());
                    let arrives = self.down.arrival(self.answer, now + self.ready_after);
                    outstanding.push_back((now, arrives));
                }
                if now >= start + duration / 2 {
                    late_window = late_window.max(window.window()).max(outstanding.len());
                }
                let Some((sent, arrives)) = outstanding.pop_front() else { break };
                now = arrives;
                window.finished(now, Some((self.answer, now - sent)), outstanding.len());
                delivered += self.answer;
            }
            let rate = delivered as f64 / (now - start).as_secs_f64();
            Driven { rate, end: now, late_window }
        }
    }

    #[test]
    fn small_answers_behind_a_long_link_fill_the_window_and_the_link() {
        // 70 KB chunks behind 50 ms: the pipe holds ~9 of them; the window opens to the
        // protocol's limit and the link runs at its rate.
        let mut window = PeerWindow::default();
        let rate = drive(&mut window, 50, 0, 70_000, 5);
        assert_eq!(window.window(), MAX_IN_FLIGHT_PER_PEER);
        assert!(rate > 0.9 * LINK, "{rate}");
    }

    #[test]
    fn large_answers_need_only_a_few_in_flight() {
        // 1 MB chunks behind 50 ms: one answer takes 80 ms on the link, the pipe holds about
        // 1.6 of them; the window settles at about twice that and the link stays full.
        let mut window = PeerWindow::default();
        let rate = drive(&mut window, 50, 0, 1_000_000, 10);
        assert!(rate > 0.9 * LINK, "{rate}");
        assert!((3..=6).contains(&window.window()), "{}", window.window());
    }

    #[test]
    fn large_answers_fill_the_link_when_the_round_trip_was_measured_by_a_small_one() {
        // The skeleton's small answer sets the shortest round trip (50 ms); then 1.8 MB chunks
        // that the server reads in 100 ms and the link carries in 144 ms. One at a time the
        // link would idle half the time (an answer every 294 ms); the answer counted in the
        // pipe keeps three in flight.
        let mut window = PeerWindow::default();
        one_at_a_time(&mut window, 1, 1_000, 50, 0);
        let rate = drive(&mut window, 50, 100, 1_800_000, 8);
        assert!(rate > 0.9 * LINK, "{rate}");
        assert_eq!(window.window(), 3);
    }

    #[test]
    fn a_full_window_does_not_feed_its_queue_back_into_the_round_trip() {
        // 2 MB answers behind 50 ms for a minute: each answer takes 160 ms on the link, the pipe
        // holds about 2.6 MB. Its round trip expires every 10 s; measured from a full window,
        // the new one would include the queue behind it and the window would climb to the
        // protocol's limit. Measured alone it stays near the pipe.
        let mut window = PeerWindow::default();
        let driven = Pipe::new(50, 0, 2_000_000).run(&mut window, Instant::now(), 60);
        assert_full_within(&driven, &window, 5, 300);
    }

    /// The link stayed full, with at most `most` requests in flight late in the run, and the
    /// round trip estimate under `rtt_ms`.
    fn assert_full_within(driven: &Driven, window: &PeerWindow, most: usize, rtt_ms: u64) {
        assert!(driven.rate > 0.9 * LINK, "{}", driven.rate);
        assert!(driven.late_window <= most, "window reached {}", driven.late_window);
        let rtt = window.min_rtt().unwrap_or_default();
        assert!(rtt < Duration::from_millis(rtt_ms), "{rtt:?}");
    }

    #[test]
    fn a_longer_path_is_measured_again() {
        // 50 ms for 15 s, then 250 ms: within a round trip's lifetime (and the drain that
        // follows) the estimate is the longer path's, and the window grows to fill it.
        let mut window = PeerWindow::default();
        let near = Pipe::new(50, 0, 1_000_000).run(&mut window, Instant::now(), 15);
        let far = || Pipe::new(250, 0, 1_000_000);
        let changed = far().run(&mut window, near.end, 20);
        let rtt = window.min_rtt().unwrap_or_default();
        assert!(rtt >= Duration::from_millis(250), "{rtt:?}");
        // A run ends with answers still on its link: the next one starts on an idle link.
        let settled = far().run(&mut window, changed.end, 10);
        assert!(settled.rate > 0.9 * LINK, "{}", settled.rate);
    }

    #[test]
    fn a_lone_request_that_times_out_is_sent_alone_again() {
        // A full window behind 50 ms for 15 s; a round trip's lifetime later an answer that
        // queued (500 ms) finds the estimate expired, and the window drops to one. The lone
        // request then times out; the next one goes alone too, and its round trip (300 ms) is
        // the estimate, longer than the expired one.
        let mut window = PeerWindow::default();
        let driven = Pipe::new(50, 0, 1_000_000).run(&mut window, Instant::now(), 15);
        assert!(window.window() > 1, "{}", window.window());
        let mut now = driven.end + MIN_RTT_LIFETIME;
        window.finished(now, Some((1_000_000, Duration::from_millis(500))), 0);
        assert_eq!(window.window(), 1);
        assert!(window.min_rtt() < Some(Duration::from_millis(500)));
        window.sent(now, 0);
        now += Duration::from_secs(12);
        window.finished(now, None, 0);
        window.penalise();
        assert_eq!(window.window(), 1);
        window.sent(now, 0);
        now += Duration::from_millis(300);
        window.finished(now, Some((1_000_000, Duration::from_millis(300))), 0);
        assert_eq!(window.min_rtt(), Some(Duration::from_millis(300)));
        assert!(window.window() > 1, "{}", window.window());
    }

    /// `count` requests one at a time, each answered with `bytes` after `rtt_ms`, `gap_ms`
    /// apart (idle in between).
    fn one_at_a_time(window: &mut PeerWindow, count: usize, bytes: u64, rtt_ms: u64, gap_ms: u64) {
        let (rtt, gap) = (Duration::from_millis(rtt_ms), Duration::from_millis(gap_ms));
        let mut now = Instant::now();
        for _ in 0..count {
            window.sent(now, 0);
            now += rtt;
            window.finished(now, Some((bytes, rtt)), 0);
            now += gap;
        }
    }

    #[test]
    fn a_slow_server_gets_a_small_window() {
        // A server that needs 205 ms per 70 KB answer, one at a time (350 KB/s): the pipe holds
        // one answer besides the one counted as on the wire, twice that is 4 (a fast peer's
        // window is 16).
        let mut window = PeerWindow::default();
        one_at_a_time(&mut window, 50, 70_000, 205, 0);
        assert!(window.window() <= 4, "{}", window.window());
        assert!(window.throughput() < 400_000.0, "{}", window.throughput());
    }

    #[test]
    fn a_stalled_peer_does_not_grow_and_a_timeout_shrinks_it_to_one() {
        let mut window = PeerWindow::default();
        drive(&mut window, 50, 0, 70_000, 2);
        let full = window.window();
        assert_eq!(full, MAX_IN_FLIGHT_PER_PEER);
        // It stalls with a full window: nothing finishes, nothing changes, nothing is added.
        let mut now = Instant::now() + Duration::from_secs(3);
        // The first of its requests times out after 12 s, the rest follow.
        let before = window.throughput();
        for left in (0..full).rev() {
            now += Duration::from_millis(1);
            window.finished(now + Duration::from_secs(12), None, left);
            window.penalise();
            assert!(window.throughput() <= before);
        }
        assert_eq!(window.window(), 1);
        // An empty answer is a measurement too, and halves the estimate: still one.
        window.sent(now, 0);
        window.finished(now + Duration::from_millis(50), Some((10, Duration::from_millis(50))), 0);
        window.penalise();
        assert_eq!(window.window(), 1);
    }

    #[test]
    fn idle_time_is_not_busy_time() {
        // Two answers of 1 MB in 100 ms each, an hour apart: 10 MB/s, not 1 MB/hour.
        let mut window = PeerWindow::default();
        one_at_a_time(&mut window, 2, 1_000_000, 100, 3_600_000);
        assert!((window.throughput() - 1e7).abs() < 1.0, "{}", window.throughput());
    }

    #[test]
    fn instant_answers_get_the_gain() {
        // Answers in no measurable time (same process, paused clock): 1 ms each, a pipe of one
        // answer besides the one on the wire, window 4.
        let mut window = PeerWindow::default();
        one_at_a_time(&mut window, 20, 70_000, 0, 0);
        assert_eq!(window.window(), 4);
        assert!(window.throughput() > 1e7, "{}", window.throughput());
    }

    #[test]
    fn probes_keep_the_window_at_the_pipe_whatever_the_answers_size() {
        // 1.8 MB answers that the server reads in 100 ms, behind 50 ms, for a minute. Measured
        // on the answers themselves, the round trip holds their transmission (144 ms) and the
        // read: the window doubles the pipe's needs. Measured by a small probe alone, at the
        // start and at every re-measurement, it is the link's, and three requests keep the
        // link full.
        let pipe = || Pipe::new(50, 100, 1_800_000);
        let mut unprobed = PeerWindow::default();
        let driven = pipe().run_probing(&mut unprobed, Instant::now(), 60, false);
        assert!(driven.late_window >= 5, "without probes: {}", driven.late_window);
        let mut probed = PeerWindow::default();
        let driven = pipe().run_probing(&mut probed, Instant::now(), 60, true);
        assert_full_within(&driven, &probed, 3, 60);
    }

    #[test]
    fn a_probe_measures_the_round_trip_only() {
        let mut window = PeerWindow::default();
        assert!(window.probe_due(0), "an unmeasured peer is probed first");
        assert!(!window.probe_due(1), "a probe goes alone");
        let now = Instant::now();
        window.probe_sent();
        assert_eq!(window.window(), 1);
        assert!(!window.probe_due(0), "one probe at a time");
        // A failed probe: the next request is a probe again.
        window.probed(now + Duration::from_secs(10), None);
        assert!(window.probe_due(0));
        window.probe_sent();
        let rtt = Duration::from_millis(50);
        window.probed(now + Duration::from_secs(10) + rtt, Some(rtt));
        assert_eq!(window.min_rtt(), Some(rtt));
        assert_eq!((window.throughput(), window.window()), (0.0, INITIAL_WINDOW));
        assert!(!window.probe_due(0), "measured");
    }

    #[test]
    fn an_unmeasured_peer_gets_the_initial_window() {
        assert_eq!(PeerWindow::default().window(), INITIAL_WINDOW);
        assert_eq!(PeerWindow::default().throughput(), 0.0);
        assert_eq!(PeerWindow::default().rank(), f64::INFINITY);
        // A first request that times out leaves one.
        let mut window = PeerWindow::default();
        let now = Instant::now();
        window.sent(now, 0);
        window.finished(now + Duration::from_secs(12), None, 0);
        assert_eq!(window.window(), 1);
        assert_eq!(window.rank(), 0.0);
    }
}
