//! Where a partition starts: the committed offset when it is still in the log, otherwise the stream's
//! start position, explicit offset or out-of-range policy.

use crate::config::{OutOfRangePolicy, StartPosition};

/// The offsets a partition's log holds: `low` is the first offset still stored, `high` the next to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    pub low: i64,
    pub high: i64,
}

/// Where reading starts, or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// Read from this offset.
    At(i64),
    /// The committed offset is outside the log and the policy is to stop: nothing is skipped silently.
    OutOfRange { committed: i64, bounds: LogBounds },
}

/// Decides where to start reading a partition.
pub fn start_offset(
    committed: Option<i64>,
    explicit: Option<i64>,
    position: StartPosition,
    policy: OutOfRangePolicy,
    bounds: LogBounds,
) -> StartDecision {
    let Some(committed) = committed else {
        return StartDecision::At(match (explicit, position) {
            (Some(offset), _) => offset.clamp(bounds.low, bounds.high),
            (None, StartPosition::Earliest) => bounds.low,
            (None, StartPosition::Latest) => bounds.high,
        });
    };
    if (bounds.low..=bounds.high).contains(&committed) {
        return StartDecision::At(committed);
    }
    match policy {
        OutOfRangePolicy::Fail => StartDecision::OutOfRange { committed, bounds },
        OutOfRangePolicy::ResetEarliest => StartDecision::At(bounds.low),
        OutOfRangePolicy::ResetLatest => StartDecision::At(bounds.high),
    }
}

/// After an out-of-range error (librdkafka names no partition): the offset of a partition that left its log,
/// if any. The consumer's fetch position is what librdkafka refused; the committable offset (below what is in
/// flight) counts too, since a restart would resume there.
pub fn offending_offset(fetching: Option<i64>, committable: i64, bounds: LogBounds) -> Option<i64> {
    let outside = |offset: i64| !(bounds.low..=bounds.high).contains(&offset);
    match fetching {
        Some(position) if outside(position) => Some(position),
        _ if outside(committable) => Some(committable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetch_position_or_the_committable_offset_outside_the_log_is_the_offending_one() {
        let bounds = BOUNDS;
        assert_eq!(offending_offset(Some(150), 120, bounds), None);
        assert_eq!(offending_offset(None, 120, bounds), None);
        assert_eq!(offending_offset(Some(250), 120, bounds), Some(250));
        assert_eq!(offending_offset(Some(250), 50, bounds), Some(250));
        assert_eq!(offending_offset(Some(150), 50, bounds), Some(50));
        assert_eq!(offending_offset(None, 50, bounds), Some(50));
        assert_eq!(offending_offset(Some(200), 100, bounds), None);
    }

    const BOUNDS: LogBounds = LogBounds {
        low: 100,
        high: 200,
    };

    #[test]
    fn committed_offset_inside_the_log_wins() {
        for committed in [100, 150, 200] {
            assert_eq!(
                start_offset(
                    Some(committed),
                    Some(5),
                    StartPosition::Latest,
                    OutOfRangePolicy::Fail,
                    BOUNDS
                ),
                StartDecision::At(committed)
            );
        }
    }

    #[test]
    fn without_a_commit_the_start_position_or_explicit_offset_applies() {
        let f = OutOfRangePolicy::Fail;
        assert_eq!(
            start_offset(None, None, StartPosition::Earliest, f, BOUNDS),
            StartDecision::At(100)
        );
        assert_eq!(
            start_offset(None, None, StartPosition::Latest, f, BOUNDS),
            StartDecision::At(200)
        );
        assert_eq!(
            start_offset(None, Some(150), StartPosition::Latest, f, BOUNDS),
            StartDecision::At(150)
        );
    }

    #[test]
    fn truncated_or_recreated_topics_do_not_jump_silently() {
        // Truncated: the committed offset fell below the log start.
        assert_eq!(
            start_offset(
                Some(50),
                None,
                StartPosition::Earliest,
                OutOfRangePolicy::Fail,
                BOUNDS
            ),
            StartDecision::OutOfRange {
                committed: 50,
                bounds: BOUNDS
            }
        );
        // Re-created: the committed offset is past the end of the new log.
        assert!(matches!(
            start_offset(
                Some(500),
                None,
                StartPosition::Earliest,
                OutOfRangePolicy::Fail,
                BOUNDS
            ),
            StartDecision::OutOfRange { .. }
        ));
        assert_eq!(
            start_offset(
                Some(500),
                None,
                StartPosition::Earliest,
                OutOfRangePolicy::ResetEarliest,
                BOUNDS
            ),
            StartDecision::At(100)
        );
        assert_eq!(
            start_offset(
                Some(50),
                None,
                StartPosition::Earliest,
                OutOfRangePolicy::ResetLatest,
                BOUNDS
            ),
            StartDecision::At(200)
        );
    }
}
