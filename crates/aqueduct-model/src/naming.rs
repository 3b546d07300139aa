//! Which source topics a datastream reads and what their destination topics are called.

use regex::Regex;

/// The destination topic naming rule: a template with `{topic}` and optionally `{source}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNaming {
    template: String,
}

impl TopicNaming {
    /// Parses a template; it must contain `{topic}` and no other placeholder than `{source}`.
    pub fn parse(template: &str) -> Result<Self, String> {
        if !template.contains("{topic}") {
            return Err(format!("`{template}` must contain {{topic}}"));
        }
        let rest = template.replace("{topic}", "").replace("{source}", "");
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "`{template}` may only use the placeholders {{topic}} and {{source}}"
            ));
        }
        if !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "`{template}` may only add letters, digits, `.`, `_` and `-` to the topic name"
            ));
        }
        Ok(Self {
            template: template.to_string(),
        })
    }

    /// The destination topic of `topic` read from cluster `source`.
    pub fn destination(&self, source: &str, topic: &str) -> String {
        self.template
            .replace("{source}", source)
            .replace("{topic}", topic)
    }

    /// True when every topic of `source` keeps its name.
    pub fn is_identity_for(&self, source: &str) -> bool {
        self.destination(source, "t") == "t"
    }
}

/// Selects source topics: named ones, plus those matching a pattern, minus those matching the exclusion.
#[derive(Debug, Clone)]
pub struct TopicFilter {
    topics: Vec<String>,
    pattern: Option<Regex>,
    exclude: Option<Regex>,
}

impl TopicFilter {
    /// Patterns are anchored: they must match the whole topic name.
    pub fn new(
        topics: &[String],
        pattern: Option<&str>,
        exclude: Option<&str>,
    ) -> Result<Self, regex::Error> {
        let anchored = |p: &str| Regex::new(&format!("^(?:{p})$"));
        Ok(Self {
            topics: topics.to_vec(),
            pattern: pattern.map(anchored).transpose()?,
            exclude: exclude.map(anchored).transpose()?,
        })
    }

    /// True when `topic` is mirrored. Internal topics (`__consumer_offsets`, ...) match only by name.
    pub fn matches(&self, topic: &str) -> bool {
        if self.exclude.as_ref().is_some_and(|e| e.is_match(topic)) {
            return false;
        }
        if self.topics.iter().any(|t| t == topic) {
            return true;
        }
        !topic.starts_with("__") && self.pattern.as_ref().is_some_and(|p| p.is_match(topic))
    }
}

/// Topic configs that are not copied to a created destination topic: replication throttles and durability
/// settings belong to the destination cluster, and timestamp rules would reject mirrored records.
pub const UNREPLICATED_TOPIC_CONFIGS: &[&str] = &[
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "message.timestamp.difference.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "message.timestamp.type",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];

/// True when a source topic config is copied to the destination topic created for it.
pub fn is_replicated_topic_config(name: &str) -> bool {
    !UNREPLICATED_TOPIC_CONFIGS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_prefix_suffix_and_source() {
        assert_eq!(
            TopicNaming::parse("{topic}")
                .unwrap()
                .destination("dc1", "orders"),
            "orders"
        );
        assert_eq!(
            TopicNaming::parse("{source}.{topic}")
                .unwrap()
                .destination("dc1", "orders"),
            "dc1.orders"
        );
        assert_eq!(
            TopicNaming::parse("agg-{topic}-v2")
                .unwrap()
                .destination("dc1", "orders"),
            "agg-orders-v2"
        );
        assert!(TopicNaming::parse("{topic}")
            .unwrap()
            .is_identity_for("dc1"));
        assert!(!TopicNaming::parse("x.{topic}")
            .unwrap()
            .is_identity_for("dc1"));
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(TopicNaming::parse("orders").is_err());
        assert!(TopicNaming::parse("{topic}-{partition}").is_err());
        assert!(TopicNaming::parse("a/{topic}").is_err());
    }

    #[test]
    fn filter_combines_names_pattern_and_exclusion() {
        let filter = TopicFilter::new(
            &["__special".to_string(), "plain".to_string()],
            Some("orders\\..*"),
            Some(".*\\.tmp"),
        )
        .unwrap();
        assert!(filter.matches("plain"));
        assert!(filter.matches("orders.eu"));
        assert!(!filter.matches("orders.eu.tmp"));
        assert!(!filter.matches("xorders.eu"), "patterns are anchored");
        assert!(filter.matches("__special"));
        assert!(!filter.matches("__consumer_offsets"));
        let all = TopicFilter::new(&[], Some(".*"), None).unwrap();
        assert!(is_replicated_topic_config("cleanup.policy"));
        assert!(!is_replicated_topic_config("min.insync.replicas"));
        assert!(!all.matches("__consumer_offsets"));
    }
}
