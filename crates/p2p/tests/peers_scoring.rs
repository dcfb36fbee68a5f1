//! Peer scoring: penalty classes against the thresholds, exponential decay with its half-life,
//! bans and their expiry (paused tokio time, so every instant is exact).

use leafsync_p2p::{
    PeerId, PenaltyClass,
    peers::score::{
        BAN_DURATION, HIGH_PENALTY, LOW_PENALTY, MAX_BANS, MAX_REMEMBERED_SCORES, MID_PENALTY,
        MIN_SCORE, MIN_SCORE_BEFORE_BAN, MIN_SCORE_BEFORE_DISCONNECT, PeerScores, SCORE_HALF_LIFE,
        Score, ScoreState,
    },
};
use std::time::Duration;
use tokio::time::Instant;

fn offences_to_disconnect(class: PenaltyClass) -> usize {
    let now = Instant::now();
    let mut score = Score::new(now);
    for n in 1..=1000 {
        if score.apply(class, now) != ScoreState::Healthy {
            return n;
        }
    }
    panic!("{class:?} never disconnects");
}

#[tokio::test(start_paused = true)]
async fn classes_disconnect_after_the_documented_number_of_offences() {
    assert_eq!(offences_to_disconnect(PenaltyClass::Fatal), 1);
    assert_eq!(offences_to_disconnect(PenaltyClass::High), 5);
    assert_eq!(offences_to_disconnect(PenaltyClass::Mid), 10);
    assert_eq!(offences_to_disconnect(PenaltyClass::Low), 40);
    assert_eq!(5.0 * HIGH_PENALTY, MIN_SCORE_BEFORE_DISCONNECT);
    assert_eq!(10.0 * MID_PENALTY, MIN_SCORE_BEFORE_DISCONNECT);
    assert_eq!(40.0 * LOW_PENALTY, MIN_SCORE_BEFORE_DISCONNECT);
    let now = Instant::now();
    let mut score = Score::new(now);
    assert_eq!(score.apply(PenaltyClass::Fatal, now), ScoreState::Ban);
    assert_eq!(score.value(now), MIN_SCORE);
}

#[tokio::test(start_paused = true)]
async fn scores_decay_with_the_half_life() {
    let start = Instant::now();
    let mut score = Score::new(start);
    for _ in 0..5 {
        score.apply(PenaltyClass::High, start);
    }
    assert_eq!(score.state(start), ScoreState::Disconnect);
    tokio::time::advance(SCORE_HALF_LIFE).await;
    let now = Instant::now();
    assert!((score.value(now) - MIN_SCORE_BEFORE_DISCONNECT / 2.0).abs() < 1e-9);
    assert_eq!(score.state(now), ScoreState::Healthy, "forgiven after one half-life");
    tokio::time::advance(SCORE_HALF_LIFE).await;
    assert!((score.value(Instant::now()) - MIN_SCORE_BEFORE_DISCONNECT / 4.0).abs() < 1e-9);
    // A penalty applies to the decayed value.
    score.apply(PenaltyClass::Mid, Instant::now());
    assert!((score.value(Instant::now()) - (-5.0 + MID_PENALTY)).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn continued_offences_while_disconnecting_reach_the_ban_threshold() {
    let now = Instant::now();
    let mut scores = PeerScores::default();
    let peer = PeerId::repeat_byte(7);
    let mut state = ScoreState::Healthy;
    let mut n = 0;
    while state != ScoreState::Ban {
        state = scores.penalise(peer, PenaltyClass::High, now);
        n += 1;
    }
    assert_eq!(n, (MIN_SCORE_BEFORE_BAN / HIGH_PENALTY).ceil() as usize);
    assert!(scores.is_banned(&peer, now));
}

#[tokio::test(start_paused = true)]
async fn bans_expire_and_the_score_has_recovered_by_then() {
    let mut scores = PeerScores::default();
    let peer = PeerId::repeat_byte(1);
    let other = PeerId::repeat_byte(2);
    let start = Instant::now();
    assert_eq!(scores.penalise(peer, PenaltyClass::Fatal, start), ScoreState::Ban);
    assert_eq!(scores.banned_until(&peer), Some(start + BAN_DURATION));
    assert!(!scores.is_banned(&other, start));

    tokio::time::advance(BAN_DURATION - Duration::from_secs(1)).await;
    assert!(scores.is_banned(&peer, Instant::now()), "still banned just before expiry");
    tokio::time::advance(Duration::from_secs(1)).await;
    let now = Instant::now();
    assert!(!scores.is_banned(&peer, now), "ban expired");
    assert_eq!(scores.banned_until(&peer), None, "expired ban removed");
    assert!(scores.score(&peer, now) > MIN_SCORE_BEFORE_DISCONNECT, "score decayed above");
}

/// L3: throw-away identities cannot grow the ban list or the score table without bound, and a
/// penalty costs amortised O(1) (100 000 fatal penalties run in well under a second; before, each
/// one scanned every ban and sorted 4096 scores).
#[tokio::test(start_paused = true)]
async fn ban_list_and_scores_stay_bounded_under_many_identities() {
    let mut scores = PeerScores::default();
    let id = |n: u32| {
        let mut bytes = [0u8; 64];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        PeerId::from(bytes)
    };
    let start = Instant::now();
    let count = 100_000u32;
    for n in 0..count {
        // A millisecond apart: the order of the bans is their expiry order.
        let now = start + Duration::from_millis(u64::from(n));
        assert_eq!(scores.penalise(id(n), PenaltyClass::Fatal, now), ScoreState::Ban);
        assert!(scores.ban_count() <= MAX_BANS);
        assert!(scores.score_count() <= MAX_REMEMBERED_SCORES);
    }
    let now = start + Duration::from_millis(u64::from(count));
    assert_eq!(scores.ban_count(), MAX_BANS);
    // The newest bans are kept, the oldest were forgotten first.
    assert!(scores.is_banned(&id(count - 1), now));
    assert!(scores.is_banned(&id(count - MAX_BANS as u32), now));
    assert!(!scores.is_banned(&id(count - MAX_BANS as u32 - 1), now));
    assert!(!scores.is_banned(&id(0), now));
    // A peer banned again keeps one entry, with the later expiry.
    scores.ban(id(count - 1), now);
    assert_eq!(scores.banned_until(&id(count - 1)), Some(now + BAN_DURATION));
    assert_eq!(scores.ban_count(), MAX_BANS);
}
