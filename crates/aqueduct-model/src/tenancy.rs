//! What a tenant may mirror: the source clusters and topics it may read, the destination clusters and topics
//! it may write, and the prefix of its streams' consumer groups. Pure logic; the API refuses a definition
//! outside the policy, and discovery never reads or writes a topic outside it.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::config::DatastreamConfig;
use crate::naming::TopicNaming;
use crate::ConfigError;

/// Topics of one cluster, by anchored regular expressions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicGrant {
    pub cluster: String,
    /// Anchored regular expressions of topic names. Internal topics (`__*`) match only a pattern that
    /// itself starts with `__`.
    pub topics: Vec<String>,
}

/// A tenant's policy, `[tenants.<name>]` in the node file (the same on every node).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// What its streams may read.
    #[serde(default)]
    pub read: Vec<TopicGrant>,
    /// What its streams may write.
    #[serde(default)]
    pub write: Vec<TopicGrant>,
    /// Every consumer group of its streams starts with this; a stream without `group_id` gets
    /// `<prefix><name>`.
    pub group_prefix: Option<String>,
}

/// A grant with its patterns compiled.
#[derive(Debug, Clone)]
struct Compiled {
    cluster: String,
    patterns: Vec<(Regex, bool)>,
}

impl Compiled {
    fn new(grant: &TopicGrant) -> Result<Self, regex::Error> {
        let patterns = grant
            .topics
            .iter()
            .map(|p| Ok((Regex::new(&format!("^(?:{p})$"))?, p.starts_with("__"))))
            .collect::<Result<_, regex::Error>>()?;
        Ok(Self {
            cluster: grant.cluster.clone(),
            patterns,
        })
    }

    fn allows(&self, cluster: &str, topic: &str) -> bool {
        let internal = topic.starts_with("__");
        self.cluster == cluster
            && self.patterns.iter().any(|(regex, names_internal)| {
                (!internal || *names_internal) && regex.is_match(topic)
            })
    }
}

/// A tenant's policy, ready to check against.
#[derive(Debug, Clone)]
pub struct Policy {
    tenant: String,
    read: Vec<Compiled>,
    write: Vec<Compiled>,
    group_prefix: Option<String>,
}

/// A rule of a tenant's policy that a datastream breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    /// The tenant has no policy: it may not mirror anything.
    NoPolicy {
        tenant: String,
    },
    SourceCluster {
        tenant: String,
        cluster: String,
    },
    SourceTopic {
        tenant: String,
        cluster: String,
        topic: String,
    },
    DestinationCluster {
        tenant: String,
        cluster: String,
    },
    DestinationTopic {
        tenant: String,
        cluster: String,
        topic: String,
    },
    GroupPrefix {
        tenant: String,
        group: String,
        prefix: String,
    },
}

impl PolicyViolation {
    /// The datastream field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            PolicyViolation::NoPolicy { .. } => "owner",
            PolicyViolation::SourceCluster { .. } | PolicyViolation::SourceTopic { .. } => {
                "sources"
            }
            PolicyViolation::DestinationCluster { .. } => "destination",
            PolicyViolation::DestinationTopic { .. } => "destination_topic",
            PolicyViolation::GroupPrefix { .. } => "group_id",
        }
    }
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyViolation::NoPolicy { tenant } => {
                write!(f, "tenant {tenant} has no policy ([tenants.{tenant}] in the node file)")
            }
            PolicyViolation::SourceCluster { tenant, cluster } => write!(
                f,
                "tenant {tenant} may not read cluster {cluster} (tenants.{tenant}.read)"
            ),
            PolicyViolation::SourceTopic {
                tenant,
                cluster,
                topic,
            } => write!(
                f,
                "tenant {tenant} may not read topic {topic} of cluster {cluster} (tenants.{tenant}.read{})",
                if topic.starts_with("__") {
                    "; internal topics only when a pattern names them"
                } else {
                    ""
                }
            ),
            PolicyViolation::DestinationCluster { tenant, cluster } => write!(
                f,
                "tenant {tenant} may not write cluster {cluster} (tenants.{tenant}.write)"
            ),
            PolicyViolation::DestinationTopic {
                tenant,
                cluster,
                topic,
            } => write!(
                f,
                "tenant {tenant} may not write topic {topic} of cluster {cluster} (tenants.{tenant}.write)"
            ),
            PolicyViolation::GroupPrefix {
                tenant,
                group,
                prefix,
            } => write!(
                f,
                "consumer group {group} does not start with {prefix} (tenants.{tenant}.group_prefix)"
            ),
        }
    }
}

impl Policy {
    pub fn new(tenant: &str, policy: &TenantPolicy) -> Result<Self, ConfigError> {
        let compile = |grants: &[TopicGrant], what: &str| {
            grants
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    Compiled::new(g).map_err(|e| {
                        ConfigError::invalid(
                            format!("tenants.{tenant}.{what}[{i}].topics"),
                            e.to_string(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            tenant: tenant.to_string(),
            read: compile(&policy.read, "read")?,
            write: compile(&policy.write, "write")?,
            group_prefix: policy.group_prefix.clone(),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn group_prefix(&self) -> Option<&str> {
        self.group_prefix.as_deref()
    }

    pub fn may_read(&self, cluster: &str, topic: &str) -> bool {
        self.read.iter().any(|g| g.allows(cluster, topic))
    }

    pub fn may_write(&self, cluster: &str, topic: &str) -> bool {
        self.write.iter().any(|g| g.allows(cluster, topic))
    }

    /// Checks a datastream against the policy: its clusters, its named topics and where they would be
    /// written, and its consumer group. Topics found by `topic_pattern` are narrowed to the policy when
    /// they are discovered (see [`Policy::may_read`] and [`Policy::may_write`]).
    pub fn check(&self, stream: &DatastreamConfig) -> Result<(), PolicyViolation> {
        let tenant = self.tenant.clone();
        for source in &stream.sources {
            if !self.read.iter().any(|g| g.cluster == source.cluster) {
                return Err(PolicyViolation::SourceCluster {
                    tenant,
                    cluster: source.cluster.clone(),
                });
            }
            for topic in &source.topics {
                if !self.may_read(&source.cluster, topic) {
                    return Err(PolicyViolation::SourceTopic {
                        tenant,
                        cluster: source.cluster.clone(),
                        topic: topic.clone(),
                    });
                }
            }
        }
        if !self.write.iter().any(|g| g.cluster == stream.destination) {
            return Err(PolicyViolation::DestinationCluster {
                tenant,
                cluster: stream.destination.clone(),
            });
        }
        if let Ok(naming) = TopicNaming::parse(&stream.destination_topic) {
            for source in &stream.sources {
                for topic in &source.topics {
                    let destination = naming.destination(&source.cluster, topic);
                    if !self.may_write(&stream.destination, &destination) {
                        return Err(PolicyViolation::DestinationTopic {
                            tenant,
                            cluster: stream.destination.clone(),
                            topic: destination,
                        });
                    }
                }
            }
        }
        if let Some(prefix) = &self.group_prefix {
            let group = stream.group_id();
            if !group.starts_with(prefix.as_str()) {
                return Err(PolicyViolation::GroupPrefix {
                    tenant,
                    group,
                    prefix: prefix.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Every tenant's policy, compiled.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    by_tenant: BTreeMap<String, Policy>,
}

impl Policies {
    pub fn new(tenants: &BTreeMap<String, TenantPolicy>) -> Result<Self, ConfigError> {
        let by_tenant = tenants
            .iter()
            .map(|(name, policy)| Ok((name.clone(), Policy::new(name, policy)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { by_tenant })
    }

    pub fn get(&self, tenant: &str) -> Option<&Policy> {
        self.by_tenant.get(tenant)
    }

    /// Checks a stream a tenant asks for; a tenant without a policy may not mirror anything.
    pub fn check(&self, tenant: &str, stream: &DatastreamConfig) -> Result<(), PolicyViolation> {
        match self.get(tenant) {
            Some(policy) => policy.check(stream),
            None => Err(PolicyViolation::NoPolicy {
                tenant: tenant.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(cluster: &str, topics: &[&str]) -> TopicGrant {
        TopicGrant {
            cluster: cluster.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn policies() -> Policies {
        let policy = TenantPolicy {
            read: vec![
                grant("eu", &[r"payments\..*", "orders"]),
                grant("us", &["__consumer_offsets"]),
            ],
            write: vec![grant(
                "aggregate",
                &[r"eu\.payments\..*", r"eu\.orders", r"payments\..*"],
            )],
            group_prefix: Some("payments.".to_string()),
        };
        Policies::new(&BTreeMap::from([("payments".to_string(), policy)])).unwrap()
    }

    fn stream() -> DatastreamConfig {
        serde_json::from_value(serde_json::json!({
            "name": "pay",
            "destination": "aggregate",
            "destination_topic": "{source}.{topic}",
            "group_id": "payments.pay",
            "sources": [{"cluster": "eu", "topics": ["payments.cards", "orders"]}]
        }))
        .unwrap()
    }

    #[test]
    fn a_stream_inside_the_policy_passes() {
        assert_eq!(policies().check("payments", &stream()), Ok(()));
    }

    #[test]
    fn each_rule_is_named_when_broken() {
        let p = policies();
        let change = |f: &dyn Fn(&mut DatastreamConfig)| {
            let mut s = stream();
            f(&mut s);
            s
        };
        let cases: Vec<(DatastreamConfig, &str, &str)> = vec![
            (
                change(&|s| s.sources[0].cluster = "ap".into()),
                "sources",
                "may not read cluster ap",
            ),
            (
                change(&|s| s.sources[0].topics[1] = "invoices".into()),
                "sources",
                "may not read topic invoices",
            ),
            (
                change(&|s| s.sources[0].topics[1] = "__consumer_offsets".into()),
                "sources",
                "internal topics",
            ),
            (
                change(&|s| s.destination = "eu".into()),
                "destination",
                "may not write cluster eu",
            ),
            (
                change(&|s| s.destination_topic = "copy.{topic}".into()),
                "destination_topic",
                "may not write topic copy.payments.cards",
            ),
            (
                change(&|s| s.group_id = Some("other".into())),
                "group_id",
                "does not start with payments.",
            ),
            (change(&|s| s.group_id = None), "group_id", "aqueduct-pay"),
        ];
        for (s, field, words) in cases {
            let error = p.check("payments", &s).unwrap_err();
            assert_eq!(error.field(), field, "{error}");
            assert!(error.to_string().contains(words), "{error}");
            assert!(error.to_string().contains("tenants.payments"), "{error}");
        }
        let error = p.check("nobody", &stream()).unwrap_err();
        assert_eq!(
            error,
            PolicyViolation::NoPolicy {
                tenant: "nobody".into()
            }
        );
    }

    #[test]
    fn internal_topics_match_only_patterns_that_name_them() {
        let p = policies();
        let policy = p.get("payments").unwrap();
        assert!(!policy.may_read("eu", "__consumer_offsets"));
        assert!(policy.may_read("us", "__consumer_offsets"));
        assert!(!policy.may_read("us", "__transaction_state"));
        // A catch-all pattern does not reach internal topics.
        let open = TenantPolicy {
            read: vec![grant("eu", &[".*"])],
            ..TenantPolicy::default()
        };
        let open = Policy::new("open", &open).unwrap();
        assert!(open.may_read("eu", "anything"));
        assert!(!open.may_read("eu", "__consumer_offsets"));
    }

    #[test]
    fn patterns_are_anchored_and_bad_ones_name_their_key() {
        let p = policies();
        let policy = p.get("payments").unwrap();
        assert!(!policy.may_read("eu", "xpayments.cards"));
        assert!(!policy.may_read("eu", "orders2"));
        let bad = TenantPolicy {
            read: vec![grant("eu", &["("])],
            ..TenantPolicy::default()
        };
        let error = Policy::new("t", &bad).unwrap_err();
        assert_eq!(error.key, "tenants.t.read[0].topics");
    }
}
