//! DeleteTopics, by name (v1–v5) or by name or id (v6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use crate::context::Agent;

/// Deletes each named topic independently.
pub async fn handle(agent: &Agent, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = request
        .topic_names
        .into_iter()
        .map(|n| (Some(n), uuid::Uuid::nil()))
        .collect();
    targets.extend(request.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push(delete_one(agent, name, id).await);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn delete_one(
    agent: &Agent,
    name: Option<TopicName>,
    id: uuid::Uuid,
) -> DeletableTopicResult {
    let result = DeletableTopicResult::default()
        .with_name(name.clone())
        .with_topic_id(id);
    let name = match name {
        Some(name) => name.to_string(),
        None => match agent.topics.by_id(id).await {
            Ok(topic) => topic.name.clone(),
            Err(error) => return result.with_error_code(error.code()),
        },
    };
    match agent.topics.delete(&name).await {
        Ok(deleted) => result
            .with_name(Some(TopicName(name.into())))
            .with_topic_id(deleted),
        Err(error) => result.with_error_code(error.code()),
    }
}
