//! The agent registry: which agents are alive, by lease.
//!
//! Kept in memory: after a metadata service restart every agent re-registers with its next
//! heartbeat, so the list is complete again within one heartbeat interval. A node id is held
//! by one agent process (instance id) at a time until its lease lapses.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use strata_proto::metadata::v1::AgentInfo;
use tokio::time::Instant;

/// Longest lease an agent may ask for.
pub const MAX_LEASE: Duration = Duration::from_secs(60);

/// Why a heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another live agent process holds the node id.
    #[error("node id {node_id} is held by another agent at {holder}")]
    NodeIdTaken {
        /// The contested node id.
        node_id: i32,
        /// host:port of the holder.
        holder: String,
    },
}

/// Live agents by node id.
#[derive(Debug, Default)]
pub struct AgentRegistry {
    agents: Mutex<BTreeMap<i32, (AgentInfo, Instant)>>,
}

impl AgentRegistry {
    /// Forgets every agent (a new leadership term starts empty; agents re-register).
    pub fn clear(&self) {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Registers `agent` (or renews it) until `now + lease`; returns the live agents.
    pub fn heartbeat(
        &self,
        agent: AgentInfo,
        lease: Duration,
        now: Instant,
    ) -> Result<Vec<AgentInfo>, RegistryError> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.retain(|_, (_, expires)| *expires > now);
        if let Some((holder, _)) = agents.get(&agent.node_id) {
            if holder.instance_id != agent.instance_id {
                return Err(RegistryError::NodeIdTaken {
                    node_id: agent.node_id,
                    holder: format!("{}:{}", holder.host, holder.port),
                });
            }
        }
        agents.insert(agent.node_id, (agent, now + lease.min(MAX_LEASE)));
        Ok(agents.values().map(|(info, _)| info.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn agent(node_id: i32, instance: &str) -> AgentInfo {
        AgentInfo {
            node_id,
            host: "127.0.0.1".into(),
            port: 9000 + node_id,
            availability_zone: String::new(),
            instance_id: instance.into(),
        }
    }

    #[test]
    fn agents_live_while_their_lease_runs() {
        let registry = AgentRegistry::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(5);
        registry.heartbeat(agent(1, "a"), lease, t0).unwrap();
        let live = registry
            .heartbeat(agent(2, "b"), lease, t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(live.iter().map(|a| a.node_id).collect::<Vec<_>>(), [1, 2]);
        // agent 1 stopped heartbeating
        let live = registry
            .heartbeat(agent(2, "b"), lease, t0 + Duration::from_secs(6))
            .unwrap();
        assert_eq!(live.iter().map(|a| a.node_id).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_node_id_belongs_to_one_process_until_its_lease_lapses() {
        let registry = AgentRegistry::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(5);
        registry.heartbeat(agent(1, "a"), lease, t0).unwrap();
        let taken = registry.heartbeat(agent(1, "b"), lease, t0 + Duration::from_secs(1));
        assert!(matches!(
            taken,
            Err(RegistryError::NodeIdTaken { node_id: 1, .. })
        ));
        assert!(registry
            .heartbeat(agent(1, "b"), lease, t0 + Duration::from_secs(5))
            .is_ok());
    }
}
