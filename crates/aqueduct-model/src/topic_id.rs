//! Which incarnation of a source topic a partition belongs to. Kafka gives every topic a new id when it is
//! created, so a topic deleted and created again under the same name has a new one. Aqueduct records the id
//! with every offset it commits and compares it whenever a partition starts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::RecreatedTopicPolicy;

/// A Kafka topic id in Kafka's own text form (22 characters of URL-safe base64, as the Kafka tools print it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(String);

impl TopicId {
    /// The all-zero id brokers answer for topics they have no id for.
    const ZERO: &'static str = "AAAAAAAAAAAAAAAAAAAAAA";

    /// The id with these 128 bits (as Kafka's `Uuid` holds them); `None` for the all-zero id.
    pub fn from_bits(most_significant: i64, least_significant: i64) -> Option<Self> {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        if most_significant == 0 && least_significant == 0 {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&most_significant.to_be_bytes());
        bytes[8..].copy_from_slice(&least_significant.to_be_bytes());
        // URL-safe base64 without padding, as Kafka's `Uuid.toString` writes it.
        let mut text = String::with_capacity(22);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                text.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        Some(Self(text))
    }

    /// Parses Kafka's text form; `None` for anything else and for the all-zero id (no id known).
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 22
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (valid && text != Self::ZERO).then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A source topic a datastream mirrored that is gone from its cluster (deleted and not created again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTopic {
    pub cluster: String,
    pub topic: String,
    /// When the stream found it gone (milliseconds since the Unix epoch).
    pub since_unix_ms: u64,
}

const METADATA_PREFIX: &str = "aqueduct;topic-id=";

/// The metadata Aqueduct commits with an offset of a partition of topic `id`.
pub fn commit_metadata(id: &TopicId) -> String {
    format!("{METADATA_PREFIX}{id}")
}

/// The topic id in a committed offset's metadata, when Aqueduct wrote it.
pub fn topic_id_in_commit_metadata(metadata: &str) -> Option<TopicId> {
    metadata
        .strip_prefix(METADATA_PREFIX)
        .and_then(TopicId::parse)
}

/// Whether a partition that starts belongs to the topic its offsets were taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incarnation {
    /// The committed offset was taken from this topic: resume it.
    Same,
    /// Nothing tells of an earlier topic (no committed offset with an id, none seen before): start as usual.
    Unknown,
    /// The committed offset, or the topic this node mirrored before, had another id: the topic was deleted
    /// and created again, and offsets of the old one must not be resumed in the new one.
    Recreated { previous: TopicId },
}

/// Compares the id committed with the partition's offset and the id this node last saw for the topic with
/// the topic's id now.
pub fn incarnation(
    committed: Option<&TopicId>,
    last_seen: Option<&TopicId>,
    current: &TopicId,
) -> Incarnation {
    if let Some(previous) = committed.filter(|id| *id != current) {
        return Incarnation::Recreated {
            previous: previous.clone(),
        };
    }
    if let Some(previous) = last_seen.filter(|id| *id != current) {
        return Incarnation::Recreated {
            previous: previous.clone(),
        };
    }
    if committed.is_some() {
        Incarnation::Same
    } else {
        Incarnation::Unknown
    }
}

/// What to do with a partition of a re-created topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecreatedStart {
    /// Read the new topic from its earliest offset; the committed offset is ignored.
    Earliest,
    /// Do not read: the partition is stopped with this reason.
    Stop(String),
}

/// Applies the stream's policy to a partition of a re-created topic.
pub fn recreated_start(
    topic: &str,
    previous: &TopicId,
    current: &TopicId,
    policy: RecreatedTopicPolicy,
) -> RecreatedStart {
    match policy {
        RecreatedTopicPolicy::RestartEarliest => RecreatedStart::Earliest,
        RecreatedTopicPolicy::Fail => RecreatedStart::Stop(format!(
            "source topic {topic} was deleted and created again (topic id {previous}, now {current}): \
             its old offsets mean nothing in the new topic; set on_source_topic_recreated = \
             \"restart-earliest\" to mirror the new topic from its start"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> TopicId {
        TopicId::parse(&c.to_string().repeat(22)).unwrap()
    }

    #[test]
    fn bits_are_written_as_kafka_writes_them() {
        // Kafka's Uuid(0x0123456789abcdef, 0xfedcba9876543210).toString()
        let id =
            TopicId::from_bits(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210_u64 as i64).unwrap();
        assert_eq!(id.as_str(), "ASNFZ4mrze_-3LqYdlQyEA");
        assert_eq!(TopicId::parse(id.as_str()), Some(id));
        assert_eq!(TopicId::from_bits(0, 0), None);
        let ones = TopicId::from_bits(-1, -1).unwrap();
        assert_eq!(ones.as_str(), "_____________________w");
    }

    #[test]
    fn only_kafka_s_text_form_parses() {
        assert!(TopicId::parse("q9Vd3bH5QkWyR1x0cMZ0Tg").is_some());
        assert!(TopicId::parse("q9Vd3bH5QkWyR1x0cMZ0T").is_none());
        assert!(TopicId::parse("q9Vd3bH5QkWyR1x0cMZ0T=").is_none());
        assert!(TopicId::parse("AAAAAAAAAAAAAAAAAAAAAA").is_none());
        assert!(TopicId::parse("").is_none());
    }

    #[test]
    fn commit_metadata_round_trips_and_ignores_foreign_metadata() {
        let a = id('a');
        assert_eq!(topic_id_in_commit_metadata(&commit_metadata(&a)), Some(a));
        assert_eq!(topic_id_in_commit_metadata(""), None);
        assert_eq!(topic_id_in_commit_metadata("written by another tool"), None);
        assert_eq!(topic_id_in_commit_metadata("aqueduct;topic-id=short"), None);
    }

    #[test]
    fn a_different_committed_or_last_seen_id_is_a_re_created_topic() {
        let (old, new) = (id('a'), id('b'));
        assert_eq!(incarnation(Some(&new), None, &new), Incarnation::Same);
        assert_eq!(incarnation(Some(&new), Some(&new), &new), Incarnation::Same);
        assert_eq!(incarnation(None, None, &new), Incarnation::Unknown);
        assert_eq!(incarnation(None, Some(&new), &new), Incarnation::Unknown);
        let recreated = Incarnation::Recreated {
            previous: old.clone(),
        };
        assert_eq!(incarnation(Some(&old), None, &new), recreated);
        assert_eq!(incarnation(None, Some(&old), &new), recreated);
        assert_eq!(incarnation(Some(&old), Some(&new), &new), recreated);
        // This node mirrored the old topic: an offset committed since under the new id may still be an old
        // offset, written into the new topic by a consumer that had not noticed the change.
        assert_eq!(incarnation(Some(&new), Some(&old), &new), recreated);
    }

    #[test]
    fn the_policy_restarts_or_stops_with_a_reason_that_names_both_ids() {
        let (old, new) = (id('a'), id('b'));
        assert_eq!(
            recreated_start("orders", &old, &new, RecreatedTopicPolicy::RestartEarliest),
            RecreatedStart::Earliest
        );
        let RecreatedStart::Stop(reason) =
            recreated_start("orders", &old, &new, RecreatedTopicPolicy::Fail)
        else {
            panic!("fail stops the partition");
        };
        assert!(reason.contains("orders"), "{reason}");
        assert!(
            reason.contains(old.as_str()) && reason.contains(new.as_str()),
            "{reason}"
        );
        assert!(reason.contains("on_source_topic_recreated"), "{reason}");
    }
}
