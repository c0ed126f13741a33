//! Changing a topic's configs (IncrementalAlterConfigs), in SQLite.

use rusqlite::{params, Transaction};

use super::{db, select_topic};
use crate::store::{ConfigChange, StoreError, TopicRecord};
use crate::topic_rules::apply_changes;

/// Applies `changes` to the topic named `name`; returns the topic after.
pub(super) fn alter(
    tx: &Transaction<'_>,
    name: &str,
    changes: &[ConfigChange],
) -> Result<TopicRecord, StoreError> {
    let Some(mut topic) = select_topic(tx, "name = ?1", &name)? else {
        return Err(StoreError::TopicNotFound(format!("{name:?}")));
    };
    apply_changes(&mut topic.configs, changes);
    let configs = serde_json::to_string(&topic.configs)
        .map_err(|e| StoreError::InvalidConfig(e.to_string()))?;
    tx.execute(
        "UPDATE topics SET configs = ?2 WHERE topic_id = ?1",
        params![&topic.topic_id[..], configs],
    )
    .map_err(db)?;
    Ok(topic)
}
