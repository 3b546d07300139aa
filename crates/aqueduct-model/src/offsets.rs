//! Offset bookkeeping for at-least-once mirroring (see `docs/adr/0001-offset-commit-rule.md`).
//!
//! Records of one source partition are sent in offset order, but the destination may acknowledge them in
//! any order (different destination partitions, different producers, retries). The committable offset is the
//! first offset that is not yet acknowledged: everything below it has reached the destination. An
//! acknowledgement that arrives out of order never moves the commit past an unacknowledged record.

use std::collections::VecDeque;

/// In-flight records of one source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Offsets sent and not yet popped, in send order, with their acknowledgement flag.
    pending: VecDeque<(i64, bool)>,
    /// The offset to commit when nothing is pending: one past the last acknowledged record, or the
    /// position the partition started from.
    watermark: i64,
    /// Number of pending offsets that are not acknowledged.
    unacked: usize,
    /// After a reset the consumer's position may still be the old one until its seek lands: the committable
    /// offset may not skip ahead to it before a record at the new position was sent.
    position_trusted: bool,
}

/// What [`PartitionOffsets::acked`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The acknowledgement was recorded.
    Recorded,
    /// The offset was not in flight (already acknowledged, or from before a rewind): ignored.
    Unknown,
}

impl PartitionOffsets {
    /// Starts tracking at `position`, the offset of the next record to be read.
    pub fn new(position: i64) -> Self {
        Self {
            pending: VecDeque::new(),
            watermark: position,
            unacked: 0,
            position_trusted: true,
        }
    }

    /// Records that `offset` was handed to a producer. Offsets must grow.
    pub fn sent(&mut self, offset: i64) {
        let last = self.pending.back().map_or(self.watermark - 1, |(o, _)| *o);
        debug_assert!(offset > last, "offset {offset} sent after {last}");
        if offset <= last {
            return;
        }
        self.pending.push_back((offset, false));
        self.unacked += 1;
        self.position_trusted = true;
    }

    /// Records the destination's acknowledgement of `offset`.
    pub fn acked(&mut self, offset: i64) -> AckOutcome {
        let Ok(index) = self.pending.binary_search_by_key(&offset, |(o, _)| *o) else {
            return AckOutcome::Unknown;
        };
        let entry = &mut self.pending[index];
        if entry.1 {
            return AckOutcome::Unknown;
        }
        entry.1 = true;
        self.unacked -= 1;
        while let Some(&(front, true)) = self.pending.front() {
            self.watermark = front + 1;
            self.pending.pop_front();
        }
        AckOutcome::Recorded
    }

    /// The offset to commit: every record below it was acknowledged.
    pub fn committable(&self) -> i64 {
        self.pending.front().map_or(self.watermark, |(o, _)| *o)
    }

    /// Records sent and not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.unacked
    }

    /// Forgets everything in flight and restarts at `position` (after a rewind to the committable offset).
    pub fn reset(&mut self, position: i64) {
        self.pending.clear();
        self.unacked = 0;
        self.watermark = position;
        self.position_trusted = false;
    }

    /// Moves the committable offset up to `position` when nothing is in flight: the offsets between the
    /// last acknowledged record and `position` held no record to copy (a transaction's commit marker,
    /// aborted records). Returns whether it moved.
    pub fn skip_idle_to(&mut self, position: i64) -> bool {
        if position <= self.watermark {
            // The consumer is where the bookkeeping is: its position can be believed from now on.
            self.position_trusted = true;
            return false;
        }
        if !self.pending.is_empty() || !self.position_trusted {
            return false;
        }
        self.watermark = position;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_an_idle_partition_skips_ahead() {
        let mut offsets = PartitionOffsets::new(10);
        offsets.sent(10);
        assert!(!offsets.skip_idle_to(12), "a record is in flight");
        assert_eq!(offsets.committable(), 10);
        offsets.acked(10);
        assert!(offsets.skip_idle_to(12), "the marker after the last record");
        assert_eq!(offsets.committable(), 12);
        assert!(!offsets.skip_idle_to(11), "never backwards");
        assert_eq!(offsets.committable(), 12);
        // After a rewind the consumer may still report its old position until the seek lands.
        offsets.reset(5);
        assert!(!offsets.skip_idle_to(20), "the old position after a rewind");
        assert_eq!(offsets.committable(), 5);
        assert!(!offsets.skip_idle_to(5), "the seek landed");
        assert!(offsets.skip_idle_to(6));
        offsets.reset(6);
        offsets.sent(6);
        offsets.acked(6);
        assert!(offsets.skip_idle_to(8), "a record read after the rewind");
    }

    #[test]
    fn starts_at_its_position() {
        let offsets = PartitionOffsets::new(42);
        assert_eq!(offsets.committable(), 42);
        assert_eq!(offsets.in_flight(), 0);
    }

    #[test]
    fn out_of_order_ack_does_not_pass_an_unacked_record() {
        let mut offsets = PartitionOffsets::new(10);
        for o in 10..15 {
            offsets.sent(o);
        }
        assert_eq!(offsets.acked(12), AckOutcome::Recorded);
        assert_eq!(offsets.acked(14), AckOutcome::Recorded);
        assert_eq!(offsets.committable(), 10);
        assert_eq!(offsets.acked(10), AckOutcome::Recorded);
        assert_eq!(offsets.committable(), 11);
        assert_eq!(offsets.acked(11), AckOutcome::Recorded);
        assert_eq!(offsets.committable(), 13);
        assert_eq!(offsets.acked(13), AckOutcome::Recorded);
        assert_eq!(offsets.committable(), 15);
        assert_eq!(offsets.in_flight(), 0);
    }

    #[test]
    fn gaps_in_source_offsets_are_fine() {
        // Compacted topics and transaction markers leave holes in the offsets.
        let mut offsets = PartitionOffsets::new(0);
        offsets.sent(3);
        offsets.sent(7);
        assert_eq!(offsets.committable(), 3);
        offsets.acked(7);
        assert_eq!(offsets.committable(), 3);
        offsets.acked(3);
        assert_eq!(offsets.committable(), 8);
    }

    #[test]
    fn duplicate_and_stale_acks_are_ignored() {
        let mut offsets = PartitionOffsets::new(0);
        offsets.sent(0);
        offsets.sent(1);
        assert_eq!(offsets.acked(0), AckOutcome::Recorded);
        assert_eq!(offsets.acked(0), AckOutcome::Unknown);
        offsets.reset(1);
        assert_eq!(offsets.acked(1), AckOutcome::Unknown);
        assert_eq!(offsets.committable(), 1);
    }

    proptest! {
        /// For any order of acknowledgements, the committable offset is exactly the first unacknowledged
        /// offset (or one past the last sent when all are acknowledged), and it never goes backwards.
        #[test]
        fn committable_is_first_unacked(
            start in 0i64..1000,
            gaps in proptest::collection::vec(1i64..4, 1..200),
            seed in any::<u64>(),
        ) {
            let mut sent = Vec::new();
            let mut next = start;
            for gap in &gaps {
                sent.push(next);
                next += gap;
            }
            let mut offsets = PartitionOffsets::new(start);
            for o in &sent {
                offsets.sent(*o);
            }
            // A deterministic shuffle from the seed.
            let mut order: Vec<usize> = (0..sent.len()).collect();
            let mut state = seed | 1;
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut acked = vec![false; sent.len()];
            let mut previous = offsets.committable();
            for i in order {
                acked[i] = true;
                offsets.acked(sent[i]);
                let expected = acked
                    .iter()
                    .position(|a| !a)
                    .map_or(sent.last().unwrap() + 1, |first| sent[first]);
                prop_assert_eq!(offsets.committable(), expected);
                prop_assert!(offsets.committable() >= previous);
                previous = offsets.committable();
            }
            prop_assert_eq!(offsets.in_flight(), 0);
        }
    }
}
