//! The librdkafka properties a datastream definition may set: an allow-list of tunables with bounds.
//! Everything else (properties that load code or files, weaken security, carry credentials or change what
//! Aqueduct manages) belongs in a cluster's `properties` in the node file, which only the operator writes.

use std::fmt;

/// Which client a property is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    Consumer,
    Producer,
}

impl ClientRole {
    /// The datastream field that holds this client's properties.
    pub fn field(self) -> &'static str {
        match self {
            ClientRole::Consumer => "consumer_properties",
            ClientRole::Producer => "producer_properties",
        }
    }
}

/// The values a tunable accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Accepts {
    /// An integer within the bounds, both included.
    Integer(i64, i64),
    /// A number (librdkafka takes fractions for some timings) within the bounds.
    Number(f64, f64),
    /// One of these words.
    OneOf(&'static [&'static str]),
}

const COMPRESSION: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];
const MIB: i64 = 1024 * 1024;

/// The consumer tunables a datastream may set.
const CONSUMER: &[(&str, Accepts)] = &[
    ("fetch.min.bytes", Accepts::Integer(1, 100 * MIB)),
    ("fetch.max.bytes", Accepts::Integer(1024, 1024 * MIB)),
    (
        "max.partition.fetch.bytes",
        Accepts::Integer(1024, 1024 * MIB),
    ),
    ("fetch.wait.max.ms", Accepts::Integer(0, 10_000)),
    ("fetch.error.backoff.ms", Accepts::Integer(0, 60_000)),
    ("fetch.queue.backoff.ms", Accepts::Integer(0, 60_000)),
    ("queued.min.messages", Accepts::Integer(1, 10_000_000)),
    ("queued.max.messages.kbytes", Accepts::Integer(1, 2_097_151)),
    (
        "receive.message.max.bytes",
        Accepts::Integer(1000, 2_147_483_647),
    ),
    ("socket.timeout.ms", Accepts::Integer(10, 300_000)),
];

/// The producer tunables a datastream may set.
const PRODUCER: &[(&str, Accepts)] = &[
    ("linger.ms", Accepts::Number(0.0, 10_000.0)),
    ("queue.buffering.max.ms", Accepts::Number(0.0, 10_000.0)),
    ("batch.size", Accepts::Integer(1, 2_147_483_647)),
    ("batch.num.messages", Accepts::Integer(1, 1_000_000)),
    ("compression.type", Accepts::OneOf(COMPRESSION)),
    ("compression.codec", Accepts::OneOf(COMPRESSION)),
    ("compression.level", Accepts::Integer(-1, 12)),
    ("message.max.bytes", Accepts::Integer(1000, 1_000_000_000)),
    (
        "queue.buffering.max.messages",
        Accepts::Integer(1, 2_147_483_647),
    ),
    (
        "queue.buffering.max.kbytes",
        Accepts::Integer(1, 2_147_483_647),
    ),
    ("request.timeout.ms", Accepts::Integer(1000, 900_000)),
    ("message.timeout.ms", Accepts::Integer(1000, 2_147_483_647)),
    ("delivery.timeout.ms", Accepts::Integer(1000, 2_147_483_647)),
    ("retry.backoff.ms", Accepts::Integer(1, 300_000)),
    ("retry.backoff.max.ms", Accepts::Integer(1, 300_000)),
    // The idempotent producer keeps order with at most 5 requests in flight per connection.
    (
        "max.in.flight.requests.per.connection",
        Accepts::Integer(1, 5),
    ),
    ("socket.timeout.ms", Accepts::Integer(10, 300_000)),
];

/// Why a datastream may not set a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyError {
    /// Not a tunable a datastream may set.
    NotAllowed { role: ClientRole, name: String },
    /// A tunable, with a value outside what it accepts.
    BadValue {
        role: ClientRole,
        name: String,
        value: String,
        accepts: String,
    },
}

impl PropertyError {
    /// The config key at fault, relative to the datastream (`producer_properties.linger.ms`).
    pub fn key(&self) -> String {
        match self {
            PropertyError::NotAllowed { role, name }
            | PropertyError::BadValue { role, name, .. } => {
                format!("{}.{name}", role.field())
            }
        }
    }
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyError::NotAllowed { role, name } => write!(
                f,
                "`{name}` is not a property a datastream may set; {} may set only {}. Other properties \
                 (security, credentials, files, plugins, debugging) belong in the cluster's properties in \
                 the node file",
                role.field(),
                allowed(*role).join(", ")
            ),
            PropertyError::BadValue {
                name,
                value,
                accepts,
                ..
            } => write!(f, "`{name}` = {value:?}: {accepts}"),
        }
    }
}

fn table(role: ClientRole) -> &'static [(&'static str, Accepts)] {
    match role {
        ClientRole::Consumer => CONSUMER,
        ClientRole::Producer => PRODUCER,
    }
}

/// The property names a datastream may set for `role`.
pub fn allowed(role: ClientRole) -> Vec<&'static str> {
    table(role).iter().map(|(name, _)| *name).collect()
}

fn describe(accepts: Accepts) -> String {
    match accepts {
        Accepts::Integer(low, high) => format!("must be a whole number from {low} to {high}"),
        Accepts::Number(low, high) => format!("must be a number from {low} to {high}"),
        Accepts::OneOf(words) => format!("must be one of {}", words.join(", ")),
    }
}

fn accepted(accepts: Accepts, value: &str) -> bool {
    let value = value.trim();
    match accepts {
        Accepts::Integer(low, high) => value
            .parse::<i64>()
            .is_ok_and(|v| (low..=high).contains(&v)),
        Accepts::Number(low, high) => value
            .parse::<f64>()
            .is_ok_and(|v| v.is_finite() && (low..=high).contains(&v)),
        Accepts::OneOf(words) => words.iter().any(|w| w.eq_ignore_ascii_case(value)),
    }
}

/// Checks one property a datastream sets for `role`.
pub fn check(role: ClientRole, name: &str, value: &str) -> Result<(), PropertyError> {
    let Some((_, accepts)) = table(role).iter().find(|(n, _)| *n == name) else {
        return Err(PropertyError::NotAllowed {
            role,
            name: name.to_string(),
        });
    };
    if accepted(*accepts, value) {
        Ok(())
    } else {
        Err(PropertyError::BadValue {
            role,
            name: name.to_string(),
            value: value.to_string(),
            accepts: describe(*accepts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunables_within_bounds_pass() {
        assert_eq!(
            check(ClientRole::Consumer, "fetch.max.bytes", "104857600"),
            Ok(())
        );
        assert_eq!(check(ClientRole::Producer, "linger.ms", "0.5"), Ok(()));
        assert_eq!(
            check(ClientRole::Producer, "compression.type", "LZ4"),
            Ok(())
        );
        assert_eq!(
            check(
                ClientRole::Producer,
                "max.in.flight.requests.per.connection",
                "5"
            ),
            Ok(())
        );
    }

    #[test]
    fn out_of_bounds_values_name_what_is_accepted() {
        let error = check(
            ClientRole::Producer,
            "max.in.flight.requests.per.connection",
            "6",
        )
        .unwrap_err();
        assert_eq!(
            error.key(),
            "producer_properties.max.in.flight.requests.per.connection"
        );
        assert!(error.to_string().contains("from 1 to 5"), "{error}");
        assert!(check(ClientRole::Producer, "linger.ms", "NaN").is_err());
        assert!(check(ClientRole::Producer, "linger.ms", "-1").is_err());
        assert!(check(ClientRole::Producer, "compression.type", "brotli").is_err());
        assert!(check(ClientRole::Consumer, "fetch.wait.max.ms", "ten").is_err());
    }

    #[test]
    fn code_files_security_and_managed_properties_are_refused_for_everyone() {
        for name in [
            "plugin.library.paths",
            "ssl.ca.location",
            "ssl.keystore.location",
            "ssl.engine.location",
            "ssl.engine.id",
            "enable.ssl.certificate.verification",
            "ssl.endpoint.identification.algorithm",
            "security.protocol",
            "sasl.password",
            "isolation.level",
            "debug",
            "bootstrap.servers",
            "group.id",
            "acks",
            "enable.idempotence",
            "transactional.id",
        ] {
            for role in [ClientRole::Consumer, ClientRole::Producer] {
                let error = check(role, name, "x").unwrap_err();
                assert!(matches!(error, PropertyError::NotAllowed { .. }), "{name}");
                assert!(error.to_string().contains("node file"), "{error}");
            }
        }
    }

    #[test]
    fn a_property_of_the_other_client_is_not_allowed() {
        assert!(check(ClientRole::Consumer, "linger.ms", "5").is_err());
        assert!(check(ClientRole::Producer, "fetch.max.bytes", "1048576").is_err());
    }
}
