//! AlterTopicConfigs: changing the configs of an existing topic.
//!
//! Every change is checked ([`topic_rules::validate_changes`]) before anything is stored,
//! so a request with one bad change changes nothing. The new configs take effect at once
//! for new reads of the topic; retention applies them at its next pass.

use strata_proto::metadata::v1 as pb;
use tonic::Status;

use crate::service::{status_of, topic_to_pb};
use crate::store::{ConfigChange, MetadataStore, StoreError};
use crate::topic_rules;

/// Serves AlterTopicConfigs.
pub(crate) async fn alter(
    store: &dyn MetadataStore,
    request: pb::AlterTopicConfigsRequest,
) -> Result<pb::AlterTopicConfigsResponse, Status> {
    topic_rules::validate_name(&request.name).map_err(status_of)?;
    let changes: Vec<ConfigChange> = request
        .changes
        .into_iter()
        .map(|c| ConfigChange {
            name: c.name,
            value: (!c.reset).then_some(c.value),
        })
        .collect();
    topic_rules::validate_changes(&changes).map_err(status_of)?;
    let topic = if request.validate_only {
        let found = store
            .topic_by_name(&request.name)
            .await
            .map_err(status_of)?;
        let mut topic = found
            .ok_or_else(|| status_of(StoreError::TopicNotFound(format!("{:?}", request.name))))?;
        topic_rules::apply_changes(&mut topic.configs, &changes);
        topic
    } else {
        let topic = store
            .alter_topic_configs(&request.name, changes)
            .await
            .map_err(status_of)?;
        tracing::info!(topic = %topic.name, configs = ?topic.configs, "topic configs changed");
        topic
    };
    Ok(pb::AlterTopicConfigsResponse {
        topic: Some(topic_to_pb(topic)),
    })
}
