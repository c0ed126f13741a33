//! The group coordinator: Kafka consumer groups, served to agents over gRPC.
//!
//! Agents relay the Kafka bodies of group requests unchanged ([`GroupCoordinator::call`]);
//! membership lives in memory here ([`membership`]), committed offsets in the store.
//! Requests of one group are serialized by one lock; JoinGroup and SyncGroup wait outside it.

pub mod membership;
mod offsets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_clock::Clock;
use thiserror::Error;
use tokio::time::Instant;

use crate::metrics::MetadataMetrics;
use crate::store::MetadataStore;
use membership::{Group, GroupState, JoinArgs, JoinOutcome, Step};

/// Smallest and largest session timeouts accepted (Kafka's broker defaults are 6 s and 30 min;
/// the floor is lower so tests and fast-failover deployments can go below 6 s).
const SESSION_TIMEOUT_RANGE: std::ops::RangeInclusive<i32> = 1_000..=1_800_000;

/// Why a relayed call could not be answered at all.
#[derive(Debug, Error)]
pub enum GroupCallError {
    /// The API is not a group API this coordinator serves.
    #[error("api key {0} is not a group api")]
    NotAGroupApi(i16),
    /// The body does not decode at the given version.
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// The response could not be encoded.
    #[error("cannot encode response: {0}")]
    Encode(String),
}

/// Who made a call, as DescribeGroups shows it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// Kafka client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
}

/// Serves the classic group protocol for every group.
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    store: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    metrics: MetadataMetrics,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator").finish_non_exhaustive()
    }
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, GroupCallError> {
    T::decode(body, version).map_err(|e| GroupCallError::Malformed(e.to_string()))
}

fn encode<T: Encodable>(response: &T, version: i16) -> Result<Bytes, GroupCallError> {
    let mut buf = BytesMut::new();
    response
        .encode(&mut buf, version)
        .map_err(|e| GroupCallError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl GroupCoordinator {
    /// A coordinator over `store`, with a background task expiring sessions.
    pub fn start(
        store: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        metrics: MetadataMetrics,
    ) -> Arc<Self> {
        let coordinator = Arc::new(Self {
            groups: Mutex::new(HashMap::new()),
            store,
            clock,
            metrics,
        });
        let weak = Arc::downgrade(&coordinator);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            loop {
                ticker.tick().await;
                let Some(coordinator) = weak.upgrade() else {
                    return;
                };
                coordinator.tick();
            }
        });
        coordinator
    }

    /// Forgets every group in memory: members of a new leadership term rejoin (committed
    /// offsets are in the store and stay).
    pub fn reset(&self) {
        self.lock().clear();
        self.metrics.groups.set(0);
        self.metrics.group_members.set(0);
    }

    fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for group in groups.values_mut() {
            group.tick(now);
        }
        groups.retain(|_, g| !g.is_idle());
        self.metrics.groups.set(groups.len() as i64);
        self.metrics
            .group_members
            .set(groups.values().map(|g| g.members.len() as i64).sum());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the group `id`, creating it if needed.
    fn with_group<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> T) -> T {
        let mut groups = self.lock();
        f(groups.entry(id.to_string()).or_default())
    }

    /// Answers one relayed group request; `body` is the Kafka request body.
    pub async fn call(
        &self,
        api_key: i16,
        version: i16,
        mut body: Bytes,
        client: ClientInfo,
    ) -> Result<Bytes, GroupCallError> {
        let api = ApiKey::try_from(api_key).map_err(|_| GroupCallError::NotAGroupApi(api_key))?;
        let body = &mut body;
        match api {
            ApiKey::JoinGroup => encode(
                &self.join(decode(body, version)?, version, client).await,
                version,
            ),
            ApiKey::SyncGroup => encode(&self.sync(decode(body, version)?).await, version),
            ApiKey::Heartbeat => encode(&self.heartbeat(decode(body, version)?), version),
            ApiKey::LeaveGroup => encode(&self.leave(decode(body, version)?, version), version),
            ApiKey::OffsetCommit => {
                encode(&self.offset_commit(decode(body, version)?).await, version)
            }
            ApiKey::OffsetFetch => encode(
                &self.offset_fetch(decode(body, version)?, version).await,
                version,
            ),
            ApiKey::OffsetDelete => {
                encode(&self.offset_delete(decode(body, version)?).await, version)
            }
            ApiKey::ListGroups => encode(&self.list_groups(decode(body, version)?).await, version),
            ApiKey::DescribeGroups => {
                encode(&self.describe_groups(decode(body, version)?).await, version)
            }
            ApiKey::DeleteGroups => {
                encode(&self.delete_groups(decode(body, version)?).await, version)
            }
            _ => Err(GroupCallError::NotAGroupApi(api_key)),
        }
    }

    async fn join(
        &self,
        request: JoinGroupRequest,
        version: i16,
        client: ClientInfo,
    ) -> JoinGroupResponse {
        let member_id = request.member_id.to_string();
        let reject = |error: ResponseError| {
            JoinGroupResponse::default()
                .with_error_code(error.code())
                .with_generation_id(-1)
                .with_member_id(request.member_id.clone())
        };
        if request.group_id.is_empty() {
            return reject(ResponseError::InvalidGroupId);
        }
        if !SESSION_TIMEOUT_RANGE.contains(&request.session_timeout_ms) {
            return reject(ResponseError::InvalidSessionTimeout);
        }
        let rebalance_ms = if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        };
        let args = JoinArgs {
            member_id,
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: client.client_id,
            client_host: client.client_host,
            session_timeout: Duration::from_millis(request.session_timeout_ms as u64),
            rebalance_timeout: Duration::from_millis(rebalance_ms.max(0) as u64),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
        };
        let step = self.with_group(&request.group_id, |g| g.join(args, Instant::now()));
        let outcome = match step {
            Step::Reply(outcome) => outcome,
            Step::Wait(rx) => rx.await.unwrap_or_else(|_| JoinOutcome {
                error: Some(ResponseError::UnknownMemberId),
                generation: -1,
                ..JoinOutcome::default()
            }),
        };
        join_response(outcome, version)
    }

    async fn sync(&self, request: SyncGroupRequest) -> SyncGroupResponse {
        let assignments = request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect();
        let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
        let step = self.with_group(&request.group_id, |g| {
            let declared = (
                request.protocol_type.as_deref(),
                request.protocol_name.as_deref(),
            );
            let mismatch = matches!(declared.0, Some(t) if Some(t) != g.protocol_type.as_deref())
                || matches!(declared.1, Some(p) if Some(p) != g.protocol.as_deref());
            if mismatch && g.members.contains_key(request.member_id.as_str()) {
                return (
                    Step::Reply(Err(ResponseError::InconsistentGroupProtocol)),
                    None,
                    None,
                );
            }
            let step = g.sync(
                &request.member_id,
                instance.as_deref(),
                request.generation_id,
                assignments,
                Instant::now(),
            );
            (step, g.protocol_type.clone(), g.protocol.clone())
        });
        let (step, protocol_type, protocol) = step;
        let outcome = match step {
            Step::Reply(outcome) => outcome,
            Step::Wait(rx) => rx.await.unwrap_or(Err(ResponseError::UnknownMemberId)),
        };
        let response = SyncGroupResponse::default()
            .with_protocol_type(protocol_type.map(StrBytes::from_string))
            .with_protocol_name(protocol.map(StrBytes::from_string));
        match outcome {
            Ok(assignment) => response.with_assignment(assignment),
            Err(error) => response.with_error_code(error.code()),
        }
    }

    fn heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
        let error = self.with_group(&request.group_id, |g| {
            g.heartbeat(
                &request.member_id,
                instance.as_deref(),
                request.generation_id,
                Instant::now(),
            )
        });
        HeartbeatResponse::default().with_error_code(code(error))
    }

    fn leave(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let now = Instant::now();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(request.group_id.as_str()) else {
            return LeaveGroupResponse::default()
                .with_error_code(ResponseError::UnknownMemberId.code());
        };
        if version < 3 {
            let error = group.leave(&request.member_id, None, now);
            return LeaveGroupResponse::default().with_error_code(code(error));
        }
        let members = request
            .members
            .iter()
            .map(|m| {
                let error = group.leave(&m.member_id, m.group_instance_id.as_deref(), now);
                MemberResponse::default()
                    .with_member_id(m.member_id.clone())
                    .with_group_instance_id(m.group_instance_id.clone())
                    .with_error_code(code(error))
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    }

    async fn list_groups(&self, request: ListGroupsRequest) -> ListGroupsResponse {
        let mut listed: Vec<(String, String, &'static str)> = self
            .lock()
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        match self.store.groups_with_offsets().await {
            Ok(stored) => {
                for id in stored {
                    if !listed.iter().any(|(l, _, _)| *l == id) {
                        listed.push((id, "consumer".to_string(), GroupState::Empty.name()));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot list groups with offsets");
                return ListGroupsResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code());
            }
        }
        listed.sort();
        let wanted = |state: &str| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state))
        };
        let groups = listed
            .into_iter()
            .filter(|(_, _, state)| wanted(state))
            .map(|(id, protocol_type, state)| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(&id)))
                    .with_protocol_type(text(&protocol_type))
                    .with_group_state(StrBytes::from_static_str(state))
                    .with_group_type(StrBytes::from_static_str("classic"))
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    async fn describe_groups(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        // groups without members are remembered only by their committed offsets
        let stored = self.store.groups_with_offsets().await.unwrap_or_default();
        let groups = self.lock();
        let described = request
            .groups
            .iter()
            .map(|id| {
                let base = DescribedGroup::default().with_group_id(id.clone());
                let Some(g) = groups.get(id.as_str()) else {
                    let state = if stored.iter().any(|s| s == id.as_str()) {
                        "Empty"
                    } else {
                        "Dead"
                    };
                    return base
                        .with_group_state(StrBytes::from_static_str(state))
                        .with_protocol_type(StrBytes::from_static_str("consumer"));
                };
                let protocol = g.protocol.clone().unwrap_or_default();
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(text(&m.id))
                            .with_group_instance_id(m.instance_id.as_deref().map(text))
                            .with_client_id(text(&m.client_id))
                            .with_client_host(text(&m.client_host))
                            .with_member_metadata(m.metadata_for(&protocol))
                            .with_member_assignment(m.assignment.clone())
                    })
                    .collect();
                base.with_group_state(StrBytes::from_static_str(g.state.name()))
                    .with_protocol_type(text(g.protocol_type.as_deref().unwrap_or_default()))
                    .with_protocol_data(text(&protocol))
                    .with_members(members)
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(described)
    }

    async fn delete_groups(&self, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(request.groups_names.len());
        for id in request.groups_names {
            let active = self
                .lock()
                .get(id.as_str())
                .is_some_and(|g| !g.members.is_empty());
            let error = if active {
                Some(ResponseError::NonEmptyGroup)
            } else {
                self.lock().remove(id.as_str());
                match self.store.delete_group_offsets(&id).await {
                    Ok(true) => None,
                    Ok(false) => Some(ResponseError::GroupIdNotFound),
                    Err(_) => Some(ResponseError::CoordinatorNotAvailable),
                }
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code(error)),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    /// The state of a group, for offset checks: active members and their generation.
    fn check_commit(
        &self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let groups = self.lock();
        match groups.get(group) {
            Some(g) => g.check_commit(member, instance, generation),
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    fn has_members(&self, group: &str) -> bool {
        self.lock()
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }
}

/// The JoinGroup response; before v7 the protocol name is not nullable.
fn join_response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let members = outcome
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(id))
                .with_group_instance_id(instance.map(StrBytes::from_string))
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(code(outcome.error))
        .with_generation_id(outcome.generation)
        .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(match outcome.protocol {
            Some(p) => Some(StrBytes::from_string(p)),
            None if version < 7 => Some(StrBytes::default()),
            None => None,
        })
        .with_leader(StrBytes::from_string(outcome.leader))
        .with_member_id(StrBytes::from_string(outcome.member_id))
        .with_skip_assignment(outcome.skip_assignment)
        .with_members(members)
}
