//! The registries of live processes, by lease: agents (by node id) and the read tier's
//! cache nodes (by address).
//!
//! Kept in memory: after a metadata service restart every process re-registers with its
//! next heartbeat, so the lists are complete again within one heartbeat interval. A node id
//! is held by one agent process (instance id) at a time until its lease lapses; a cache
//! node's address is its identity, so a restarted cache node simply replaces its entry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use strata_proto::metadata::v1::{AgentInfo, CacheNodeInfo};
use tokio::time::Instant;

/// Longest lease a process may ask for.
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

/// Entries that live until their lease expires, ordered by key.
#[derive(Debug)]
struct LeaseTable<K, V> {
    entries: Mutex<BTreeMap<K, (V, Instant)>>,
}

impl<K, V> Default for LeaseTable<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<K: Ord, V: Clone> LeaseTable<K, V> {
    fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Drops expired entries, lets `check` refuse the renewal given the live entry under
    /// `key`, then (re)inserts `value` until `now + lease`; returns the live values.
    fn renew<E>(
        &self,
        key: K,
        value: V,
        lease: Duration,
        now: Instant,
        check: impl FnOnce(&V) -> Result<(), E>,
    ) -> Result<Vec<V>, E> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (_, expires)| *expires > now);
        if let Some((current, _)) = entries.get(&key) {
            check(current)?;
        }
        entries.insert(key, (value, now + lease.min(MAX_LEASE)));
        Ok(entries.values().map(|(value, _)| value.clone()).collect())
    }

    fn live(&self, now: Instant) -> Vec<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .values()
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value.clone())
            .collect()
    }
}

/// Live agents by node id.
#[derive(Debug, Default)]
pub struct AgentRegistry {
    agents: LeaseTable<i32, AgentInfo>,
}

impl AgentRegistry {
    /// Forgets every agent (a new leadership term starts empty; agents re-register).
    pub fn clear(&self) {
        self.agents.clear();
    }

    /// Registers `agent` (or renews it) until `now + lease`; returns the live agents.
    pub fn heartbeat(
        &self,
        agent: AgentInfo,
        lease: Duration,
        now: Instant,
    ) -> Result<Vec<AgentInfo>, RegistryError> {
        let node_id = agent.node_id;
        let instance = agent.instance_id.clone();
        self.agents.renew(node_id, agent, lease, now, |holder| {
            if holder.instance_id == instance {
                Ok(())
            } else {
                Err(RegistryError::NodeIdTaken {
                    node_id,
                    holder: format!("{}:{}", holder.host, holder.port),
                })
            }
        })
    }
}

/// Live cache nodes by address.
#[derive(Debug, Default)]
pub struct CacheNodeRegistry {
    nodes: LeaseTable<String, CacheNodeInfo>,
}

impl CacheNodeRegistry {
    /// Forgets every node (a new leadership term starts empty; nodes re-register).
    pub fn clear(&self) {
        self.nodes.clear();
    }

    /// Registers `node` (or renews it, replacing an earlier process at the same address)
    /// until `now + lease`; returns the live nodes ordered by address.
    pub fn heartbeat(
        &self,
        node: CacheNodeInfo,
        lease: Duration,
        now: Instant,
    ) -> Vec<CacheNodeInfo> {
        let address = node.address.clone();
        let renewed: Result<_, std::convert::Infallible> =
            self.nodes.renew(address, node, lease, now, |_| Ok(()));
        renewed.unwrap_or_else(|never| match never {})
    }

    /// The live nodes ordered by address.
    pub fn live(&self, now: Instant) -> Vec<CacheNodeInfo> {
        self.nodes.live(now)
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

    fn cache_node(address: &str, instance: &str) -> CacheNodeInfo {
        CacheNodeInfo {
            address: address.into(),
            availability_zone: String::new(),
            instance_id: instance.into(),
        }
    }

    #[test]
    fn cache_nodes_live_while_their_lease_runs_and_a_restart_replaces_its_entry() {
        let registry = CacheNodeRegistry::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(5);
        registry.heartbeat(cache_node("b:1", "x"), lease, t0);
        let live = registry.heartbeat(cache_node("a:1", "y"), lease, t0 + Duration::from_secs(3));
        let addresses: Vec<_> = live.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(addresses, ["a:1", "b:1"]);
        // b:1 restarted under a new instance id: it replaces the old entry
        let live = registry.heartbeat(cache_node("b:1", "z"), lease, t0 + Duration::from_secs(4));
        assert_eq!(live.len(), 2);
        assert_eq!(live[1].instance_id, "z");
        // a:1 stopped heartbeating
        let live = registry.live(t0 + Duration::from_secs(8) + Duration::from_millis(1));
        let addresses: Vec<_> = live.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(addresses, ["b:1"]);
        registry.clear();
        assert!(registry.live(t0).is_empty());
    }
}
