//! The agent's view of topics: a cache over the metadata service.
//!
//! Positive entries live for a short time so that a topic deleted through another agent is
//! noticed soon; misses always ask the metadata service, so a topic created elsewhere is seen
//! at once.

use crate::metadata_client::MetadataClient;
use std::sync::Arc;

use crate::limits::RateLimit;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use moka::future::Cache;
use strata_proto::metadata::v1 as pb;
use tonic::Code;

/// How long a cached topic is trusted.
const TOPIC_TTL: Duration = Duration::from_secs(2);

/// A topic as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Stable id.
    pub id: uuid::Uuid,
    /// Name.
    pub name: String,
    /// Number of partitions.
    pub partition_count: i32,
    /// Effective configs: (name, value, is_default).
    pub configs: Vec<(String, String, bool)>,
}

impl Topic {
    /// True when `partition` exists.
    pub fn has_partition(&self, partition: i32) -> bool {
        (0..self.partition_count).contains(&partition)
    }

    /// The effective value of a config.
    pub fn config(&self, name: &str) -> Option<&str> {
        self.configs
            .iter()
            .find(|c| c.0 == name)
            .map(|c| c.1.as_str())
    }

    fn from_pb(topic: pb::Topic) -> Result<Self, ResponseError> {
        let id = uuid::Uuid::from_slice(&topic.topic_id)
            .map_err(|_| ResponseError::UnknownServerError)?;
        Ok(Self {
            id,
            name: topic.name,
            partition_count: topic.partition_count,
            configs: topic
                .configs
                .into_iter()
                .map(|c| (c.name, c.value, c.is_default))
                .collect(),
        })
    }
}

/// Maps a metadata-service status to the Kafka error a client should see.
pub fn kafka_error_of(status: &tonic::Status) -> ResponseError {
    let kind = status
        .metadata()
        .get(ERROR_KIND_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match (status.code(), kind) {
        (Code::AlreadyExists, _) => ResponseError::TopicAlreadyExists,
        (Code::NotFound, _) => ResponseError::UnknownTopicOrPartition,
        (Code::InvalidArgument, "invalid-topic") => ResponseError::InvalidTopicException,
        (Code::InvalidArgument, "invalid-partitions") => ResponseError::InvalidPartitions,
        (Code::InvalidArgument, "invalid-config") => ResponseError::InvalidConfig,
        (Code::InvalidArgument, _) => ResponseError::InvalidRequest,
        (Code::Unavailable | Code::DeadlineExceeded, _) => ResponseError::RequestTimedOut,
        _ => ResponseError::UnknownServerError,
    }
}

/// gRPC metadata key under which the metadata service names the kind of an error.
pub const ERROR_KIND_HEADER: &str = "x-strata-error";

/// Cached topic lookups by name and by id.
#[derive(Debug, Clone)]
pub struct TopicCache {
    client: MetadataClient,
    by_name: Cache<String, Arc<Topic>>,
    by_id: Cache<uuid::Uuid, Arc<Topic>>,
    default_partitions: i32,
    auto_create: Arc<RateLimit>,
    auto_create_throttled: prometheus_client::metrics::counter::Counter,
}

impl TopicCache {
    /// A cache in front of `client` that auto-creates at most `auto_create_per_second`
    /// topics a second, in bursts of ten seconds' worth, counting refusals in `throttled`.
    pub fn new(
        client: MetadataClient,
        default_partitions: i32,
        auto_create_per_second: u32,
        throttled: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self {
            client,
            by_name: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TOPIC_TTL)
                .build(),
            by_id: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TOPIC_TTL)
                .build(),
            default_partitions,
            auto_create: Arc::new(RateLimit::new(
                auto_create_per_second,
                auto_create_per_second.saturating_mul(10),
            )),
            auto_create_throttled: throttled,
        }
    }

    /// The topic named `name`; `UnknownTopicOrPartition` when it does not exist.
    pub async fn by_name(&self, name: &str) -> Result<Arc<Topic>, ResponseError> {
        if let Some(topic) = self.by_name.get(name).await {
            return Ok(topic);
        }
        self.fetch(pb::get_topic_request::Key::Name(name.to_string()))
            .await
    }

    /// The topic with id `id`; `UnknownTopicId` when it does not exist.
    pub async fn by_id(&self, id: uuid::Uuid) -> Result<Arc<Topic>, ResponseError> {
        if let Some(topic) = self.by_id.get(&id).await {
            return Ok(topic);
        }
        self.fetch(pb::get_topic_request::Key::TopicId(id.as_bytes().to_vec()))
            .await
            .map_err(|e| match e {
                ResponseError::UnknownTopicOrPartition => ResponseError::UnknownTopicId,
                other => other,
            })
    }

    /// The topic named `name`, created with the default partition count if missing and the
    /// auto-creation rate allows (otherwise `UnknownTopicOrPartition`, as if creation were
    /// off: clients ask again later).
    pub async fn get_or_create(&self, name: &str) -> Result<Arc<Topic>, ResponseError> {
        match self.by_name(name).await {
            Err(ResponseError::UnknownTopicOrPartition) => {}
            other => return other,
        }
        if !self.auto_create.try_take() {
            self.auto_create_throttled.inc();
            tracing::debug!(topic = %name, "topic auto-creation over its rate; not created");
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        let created = self
            .create(name, self.default_partitions, Default::default(), false)
            .await;
        match created {
            Ok(topic) => Ok(topic),
            // another client created it first
            Err(ResponseError::TopicAlreadyExists) => self.by_name(name).await,
            Err(e) => Err(e),
        }
    }

    /// Creates a topic; with `validate_only` only checks that it could be created.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: std::collections::HashMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, ResponseError> {
        let request = pb::CreateTopicRequest {
            name: name.to_string(),
            partition_count: partitions,
            configs,
            validate_only,
        };
        let response = self
            .client
            .clone()
            .create_topic(request)
            .await
            .map_err(|s| kafka_error_of(&s))?;
        let topic = response
            .into_inner()
            .topic
            .ok_or(ResponseError::UnknownServerError)?;
        let topic = Arc::new(Topic::from_pb(topic)?);
        if !validate_only {
            self.remember(&topic).await;
        }
        Ok(topic)
    }

    /// Deletes a topic by name.
    pub async fn delete(&self, name: &str) -> Result<uuid::Uuid, ResponseError> {
        let request = pb::DeleteTopicRequest {
            name: name.to_string(),
        };
        let response = self
            .client
            .clone()
            .delete_topic(request)
            .await
            .map_err(|s| kafka_error_of(&s))?;
        self.by_name.invalidate(name).await;
        let id = uuid::Uuid::from_slice(&response.into_inner().topic_id)
            .map_err(|_| ResponseError::UnknownServerError)?;
        self.by_id.invalidate(&id).await;
        Ok(id)
    }

    /// Changes a topic's configs (or, with `validate_only`, only checks the changes);
    /// the error carries the metadata service's message.
    pub async fn alter_configs(
        &self,
        name: &str,
        changes: Vec<pb::TopicConfigChange>,
        validate_only: bool,
    ) -> Result<(), (ResponseError, String)> {
        let request = pb::AlterTopicConfigsRequest {
            name: name.to_string(),
            changes,
            validate_only,
        };
        let response = self
            .client
            .clone()
            .alter_topic_configs(request)
            .await
            .map_err(|s| (kafka_error_of(&s), s.message().to_string()))?;
        if validate_only {
            return Ok(());
        }
        match response.into_inner().topic.map(Topic::from_pb) {
            Some(Ok(topic)) => self.remember(&Arc::new(topic)).await,
            // the change is stored; the cache catches up within its TTL
            _ => self.by_name.invalidate(name).await,
        }
        Ok(())
    }

    /// Every topic.
    pub async fn list(&self) -> Result<Vec<Arc<Topic>>, ResponseError> {
        let response = self
            .client
            .clone()
            .list_topics(pb::ListTopicsRequest {})
            .await
            .map_err(|s| kafka_error_of(&s))?;
        let mut topics = Vec::new();
        for topic in response.into_inner().topics {
            let topic = Arc::new(Topic::from_pb(topic)?);
            self.remember(&topic).await;
            topics.push(topic);
        }
        Ok(topics)
    }

    async fn fetch(&self, key: pb::get_topic_request::Key) -> Result<Arc<Topic>, ResponseError> {
        let request = pb::GetTopicRequest { key: Some(key) };
        let response = self
            .client
            .clone()
            .get_topic(request)
            .await
            .map_err(|s| kafka_error_of(&s))?;
        let topic = response
            .into_inner()
            .topic
            .ok_or(ResponseError::UnknownServerError)?;
        let topic = Arc::new(Topic::from_pb(topic)?);
        self.remember(&topic).await;
        Ok(topic)
    }

    async fn remember(&self, topic: &Arc<Topic>) {
        self.by_name
            .insert(topic.name.clone(), Arc::clone(topic))
            .await;
        self.by_id.insert(topic.id, Arc::clone(topic)).await;
    }
}
