//! What a valid topic looks like: its name, partition count and configs.
//!
//! The metadata service is the one place these rules are enforced; agents turn the
//! resulting `INVALID_ARGUMENT` into Kafka's own error codes.

use std::collections::BTreeMap;

use crate::store::StoreError;

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 10_000;

/// Checks a topic name: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason: &str| {
        Err(StoreError::InvalidTopic(format!(
            "topic name {name:?} is invalid: {reason}"
        )))
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Checks a partition count for a new topic.
pub fn validate_partition_count(count: i32) -> Result<(), StoreError> {
    if (1..=MAX_PARTITIONS).contains(&count) {
        return Ok(());
    }
    Err(StoreError::InvalidPartitions(format!(
        "partition count {count} is outside 1..={MAX_PARTITIONS}"
    )))
}

/// How a config value is checked.
#[derive(Debug, Clone, Copy)]
enum ValueKind {
    /// An integer at least this large.
    IntAtLeast(i64),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// Anything (kept for client tools that set it; Strata does not act on it).
    Any,
}

/// A topic config Strata knows, with Kafka's default.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// Kafka's name of the config.
    pub name: &'static str,
    /// The value used when the topic does not set one.
    pub default: &'static str,
    kind: ValueKind,
}

const fn def(name: &'static str, default: &'static str, kind: ValueKind) -> ConfigDef {
    ConfigDef {
        name,
        default,
        kind,
    }
}

/// Every topic config Strata accepts, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def("cleanup.policy", "delete", ValueKind::OneOf(&["delete"])),
    def(
        "compression.type",
        "producer",
        ValueKind::OneOf(&["producer", "uncompressed", "zstd", "lz4", "snappy", "gzip"]),
    ),
    def("max.message.bytes", "1048588", ValueKind::IntAtLeast(0)),
    def(
        "message.timestamp.type",
        "CreateTime",
        ValueKind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    def("min.insync.replicas", "1", ValueKind::IntAtLeast(1)),
    def("retention.bytes", "-1", ValueKind::IntAtLeast(-1)),
    def("retention.ms", "604800000", ValueKind::IntAtLeast(-1)),
    def("segment.bytes", "1073741824", ValueKind::IntAtLeast(14)),
    def("segment.ms", "604800000", ValueKind::IntAtLeast(1)),
    def(
        "unclean.leader.election.enable",
        "false",
        ValueKind::OneOf(&["true", "false"]),
    ),
    def("message.downconversion.enable", "true", ValueKind::Any),
];

/// Validates explicitly set configs: known names, well-formed values.
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), StoreError> {
    for (name, value) in configs {
        let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.name == name) else {
            return Err(StoreError::InvalidConfig(format!(
                "unknown topic config {name:?}"
            )));
        };
        let ok = match def.kind {
            ValueKind::IntAtLeast(min) => value.parse::<i64>().is_ok_and(|v| v >= min),
            ValueKind::OneOf(words) => words.contains(&value.as_str()),
            ValueKind::Any => true,
        };
        if !ok {
            return Err(StoreError::InvalidConfig(format!(
                "invalid value {value:?} for topic config {name:?}"
            )));
        }
    }
    Ok(())
}

/// Applies config changes to a topic's explicitly set configs, in order: a value sets the
/// config, `None` removes it so its default applies again.
pub fn apply_changes(
    configs: &mut BTreeMap<String, String>,
    changes: &[crate::store::ConfigChange],
) {
    for change in changes {
        match &change.value {
            Some(value) => configs.insert(change.name.clone(), value.clone()),
            None => configs.remove(&change.name),
        };
    }
}

/// Checks config changes: known names, and well-formed values where one is set.
pub fn validate_changes(changes: &[crate::store::ConfigChange]) -> Result<(), StoreError> {
    for change in changes {
        let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.name == change.name) else {
            return Err(StoreError::InvalidConfig(format!(
                "unknown topic config {:?}",
                change.name
            )));
        };
        if let Some(value) = &change.value {
            let one = BTreeMap::from([(def.name.to_string(), value.clone())]);
            validate_configs(&one)?;
        }
    }
    Ok(())
}

/// Every known config with its effective value: (name, value, is_default).
pub fn effective_configs(set: &BTreeMap<String, String>) -> Vec<(String, String, bool)> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| match set.get(def.name) {
            Some(value) => (def.name.to_string(), value.clone(), false),
            None => (def.name.to_string(), def.default.to_string(), true),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_2-x").is_ok());
        for bad in ["", ".", "..", "bad name!", "a/b", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(validate_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn configs_are_checked_by_kind() {
        let mut set = BTreeMap::new();
        set.insert("retention.ms".to_string(), "-1".to_string());
        assert!(validate_configs(&set).is_ok());
        set.insert("retention.ms".to_string(), "soon".to_string());
        assert!(validate_configs(&set).is_err());
        let mut unknown = BTreeMap::new();
        unknown.insert("no.such.config".to_string(), "1".to_string());
        assert!(validate_configs(&unknown).is_err());
    }

    #[test]
    fn changes_are_checked_then_applied_in_order() {
        use crate::store::ConfigChange;
        let change = |name: &str, value: Option<&str>| ConfigChange {
            name: name.to_string(),
            value: value.map(str::to_string),
        };
        assert!(validate_changes(&[
            change("retention.ms", Some("5")),
            change("retention.bytes", None)
        ])
        .is_ok());
        assert!(validate_changes(&[change("retention.ms", Some("-2"))]).is_err());
        assert!(validate_changes(&[change("no.such.config", None)]).is_err());
        let mut set = BTreeMap::from([("retention.ms".to_string(), "1".to_string())]);
        apply_changes(
            &mut set,
            &[
                change("retention.ms", None),
                change("retention.bytes", Some("7")),
                change("retention.bytes", Some("8")),
            ],
        );
        assert_eq!(
            set,
            BTreeMap::from([("retention.bytes".to_string(), "8".to_string())])
        );
    }

    #[test]
    fn effective_configs_mark_defaults() {
        let mut set = BTreeMap::new();
        set.insert("retention.ms".to_string(), "1000".to_string());
        let all = effective_configs(&set);
        assert_eq!(all.len(), TOPIC_CONFIGS.len());
        assert!(all.contains(&("retention.ms".into(), "1000".into(), false)));
        assert!(all.contains(&("cleanup.policy".into(), "delete".into(), true)));
    }
}
