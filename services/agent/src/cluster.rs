//! The agent's view of the cluster: which agents are alive, and which one clients should
//! treat as each partition's leader.
//!
//! Every agent accepts every partition; "leader" only spreads clients over agents. It is
//! chosen by rendezvous hashing over the live agents, so every agent names the same leader
//! for a partition, and only the partitions of an agent that joins or leaves move.
//!
//! The same heartbeats bring the live cache nodes, from which the read tier's ring is
//! rebuilt, so the ring follows cache nodes joining and leaving within a heartbeat.

use crate::metadata_client::MetadataClient;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use strata_cache::ring::rendezvous_hash;
use strata_cache::{CacheRing, ReadMetrics};
use strata_proto::metadata::v1::{
    AgentHeartbeatRequest, AgentInfo, CacheNodeHeartbeatRequest, CacheNodeInfo,
};
use tokio_util::sync::CancellationToken;

/// The live agents as last reported by the metadata service.
#[derive(Debug, Clone)]
pub struct ClusterView {
    me: AgentInfo,
    live: Arc<RwLock<Vec<AgentInfo>>>,
    lease: Duration,
    ring: CacheRing,
    read_metrics: ReadMetrics,
}

impl ClusterView {
    /// A view holding only this agent until the first heartbeat answers; each heartbeat
    /// also replaces the members of `ring` with the live cache nodes.
    pub fn new(me: AgentInfo, lease: Duration, ring: CacheRing, read_metrics: ReadMetrics) -> Self {
        Self {
            live: Arc::new(RwLock::new(vec![me.clone()])),
            me,
            lease,
            ring,
            read_metrics,
        }
    }

    /// This agent.
    pub fn me(&self) -> &AgentInfo {
        &self.me
    }

    /// Live agents ordered by node id (this one at least).
    pub fn agents(&self) -> Vec<AgentInfo> {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        if live.iter().any(|a| a.node_id == self.me.node_id) {
            live.clone()
        } else {
            // the registry forgot us (e.g. the metadata service restarted): we are still alive
            let mut all = live.clone();
            all.push(self.me.clone());
            all.sort_by_key(|a| a.node_id);
            all
        }
    }

    /// The agent clients should use for `partition` of `topic_id`, among `agents`.
    pub fn leader<'a>(
        agents: &'a [AgentInfo],
        topic_id: &[u8; 16],
        partition: i32,
    ) -> Option<&'a AgentInfo> {
        agents
            .iter()
            .max_by_key(|a| (rendezvous_score(topic_id, partition, a.node_id), a.node_id))
    }

    /// Renews this agent's lease once and refreshes the live list.
    pub async fn heartbeat(&self, client: &MetadataClient) -> Result<(), tonic::Status> {
        let request = AgentHeartbeatRequest {
            agent: Some(self.me.clone()),
            lease_ms: u32::try_from(self.lease.as_millis()).unwrap_or(u32::MAX),
        };
        let response = client.clone().agent_heartbeat(request).await?.into_inner();
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = response.agents;
        let members = self.ring.set_members(&response.cache_nodes);
        self.read_metrics.ring_members.set(members as i64);
        Ok(())
    }

    /// Heartbeats every `interval` until `stop` is cancelled.
    pub fn spawn_heartbeats(
        &self,
        client: MetadataClient,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let view = self.clone();
        every(interval, stop, move || {
            let (view, client) = (view.clone(), client.clone());
            async move {
                if let Err(status) = view.heartbeat(&client).await {
                    tracing::warn!(%status, node_id = view.me.node_id, "agent heartbeat failed");
                }
            }
        });
    }
}

/// Keeps a cache node on the metadata service's list of live cache nodes, from which every
/// agent builds its ring.
///
/// Cloning is cheap and clones share the registration state.
#[derive(Debug, Clone)]
pub struct CacheNodeRegistration {
    node: CacheNodeInfo,
    lease: Duration,
    registered: Arc<AtomicBool>,
}

impl CacheNodeRegistration {
    /// A registration of this process as the cache node peers reach at `address` (in
    /// `zone`), lasting `lease` past each heartbeat; none made yet.
    pub fn new(address: String, zone: Option<String>, lease: Duration) -> Self {
        let node = CacheNodeInfo {
            address,
            availability_zone: zone.unwrap_or_default(),
            instance_id: uuid::Uuid::new_v4().to_string(),
        };
        Self {
            node,
            lease,
            registered: Arc::default(),
        }
    }

    /// The node as peers reach it.
    pub fn node(&self) -> &CacheNodeInfo {
        &self.node
    }

    /// True when the last heartbeat was accepted: agents route blocks to the node.
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    /// Registers (or renews) the node once; returns the live cache nodes.
    pub async fn heartbeat(
        &self,
        client: &MetadataClient,
    ) -> Result<Vec<CacheNodeInfo>, tonic::Status> {
        let request = CacheNodeHeartbeatRequest {
            node: Some(self.node.clone()),
            lease_ms: u32::try_from(self.lease.as_millis()).unwrap_or(u32::MAX),
        };
        let outcome = client.clone().cache_node_heartbeat(request).await;
        self.registered.store(outcome.is_ok(), Ordering::Relaxed);
        Ok(outcome?.into_inner().nodes)
    }

    /// Heartbeats every `interval` until `stop` is cancelled.
    pub fn spawn(&self, client: MetadataClient, interval: Duration, stop: CancellationToken) {
        let registration = self.clone();
        every(interval, stop, move || {
            let (registration, client) = (registration.clone(), client.clone());
            async move {
                if let Err(status) = registration.heartbeat(&client).await {
                    let address = &registration.node.address;
                    tracing::warn!(%status, %address, "cache node heartbeat failed");
                }
            }
        });
    }
}

/// Runs `beat` every `interval` (the first at once) until `stop` is cancelled.
fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut beat: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let beats = async {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                beat().await;
            }
        };
        stop.run_until_cancelled(beats).await;
    });
}

/// The node's score for the partition: stable across processes and versions.
fn rendezvous_score(topic_id: &[u8; 16], partition: i32, node_id: i32) -> u64 {
    let (partition, node) = (partition.to_be_bytes(), node_id.to_be_bytes());
    rendezvous_hash(topic_id.iter().chain(&partition).chain(&node).copied())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn agent(node_id: i32) -> AgentInfo {
        AgentInfo {
            node_id,
            host: "h".into(),
            port: 1,
            availability_zone: String::new(),
            instance_id: String::new(),
        }
    }

    #[test]
    fn leaders_spread_over_agents_and_move_little_when_one_leaves() {
        let three = [agent(1), agent(2), agent(3)];
        let topic = [7u8; 16];
        let before: Vec<i32> = (0..300)
            .map(|p| ClusterView::leader(&three, &topic, p).unwrap().node_id)
            .collect();
        for node in 1..=3 {
            let owned = before.iter().filter(|n| **n == node).count();
            assert!(
                (60..=140).contains(&owned),
                "node {node} leads {owned} of 300"
            );
        }
        let two = [agent(1), agent(3)];
        let after: Vec<i32> = (0..300)
            .map(|p| ClusterView::leader(&two, &topic, p).unwrap().node_id)
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 2 {
                assert_eq!(a, b, "partitions of the remaining agents stay put");
            }
        }
    }

    #[test]
    fn this_agent_is_always_in_its_own_view() {
        let ring = CacheRing::new(None, None);
        let view = ClusterView::new(agent(5), Duration::from_secs(5), ring, Default::default());
        *view.live.write().unwrap() = vec![agent(1)];
        assert_eq!(
            view.agents().iter().map(|a| a.node_id).collect::<Vec<_>>(),
            [1, 5]
        );
    }
}
