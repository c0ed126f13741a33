//! The rendezvous ring: which cache node owns each block.
//!
//! Every block has one owner among the live cache nodes of the reader's zone: the node with
//! the highest score for (object key, block index, node address). Every reader computes the
//! same owner from the same member list, so a block is read from the bucket once per zone
//! (by its owner) however many agents serve it. When a node joins or leaves, only the blocks
//! it gains or loses change owner; the others keep theirs, and with them their cached copy.
//!
//! The member list comes from the metadata service's cache-node registry and is replaced
//! wholesale on every heartbeat ([`CacheRing::set_members`]); lookups never block on it.

use std::sync::{Arc, RwLock};

use strata_proto::metadata::v1::CacheNodeInfo;

use crate::block_cache::BlockId;

/// The owners of blocks, for one reader.
///
/// Cloning is cheap and clones share the member list.
#[derive(Debug, Clone)]
pub struct CacheRing {
    /// This process's own cache address, when it is a cache node itself.
    me: Option<Arc<str>>,
    /// This process's zone; nodes of other zones are used only when it has none.
    zone: Option<String>,
    members: Arc<RwLock<Arc<[Arc<str>]>>>,
}

/// Where a block should be loaded from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// From the bucket by this process: no ring, or this process owns the block.
    Bucket,
    /// From the cache node at this address.
    Peer(Arc<str>),
}

impl CacheRing {
    /// An empty ring (every block routed to the bucket until members are set).
    ///
    /// `me` is this process's own cache address when it serves the cache role, so blocks it
    /// owns are read from the bucket instead of from itself; `zone` restricts the ring to
    /// the nodes of this zone whenever there are any.
    pub fn new(me: Option<String>, zone: Option<String>) -> Self {
        Self {
            me: me.map(Arc::from),
            zone: zone.filter(|z| !z.is_empty()),
            members: Arc::new(RwLock::new(Arc::from(Vec::new()))),
        }
    }

    /// Replaces the members with the live `nodes`: those of this process's zone if any
    /// node is in it, else all of them. Returns how many are on the ring now.
    pub fn set_members(&self, nodes: &[CacheNodeInfo]) -> usize {
        let local: Vec<&CacheNodeInfo> = match &self.zone {
            Some(zone) if nodes.iter().any(|n| &n.availability_zone == zone) => nodes
                .iter()
                .filter(|n| &n.availability_zone == zone)
                .collect(),
            _ => nodes.iter().collect(),
        };
        let mut addresses: Vec<Arc<str>> = local
            .iter()
            .map(|n| Arc::from(n.address.as_str()))
            .collect();
        addresses.sort();
        addresses.dedup();
        let count = addresses.len();
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(addresses);
        count
    }

    /// The addresses on the ring, sorted.
    pub fn members(&self) -> Arc<[Arc<str>]> {
        Arc::clone(&self.members.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Where `block` should be loaded from by this process.
    pub fn route(&self, block: &BlockId) -> Route {
        let members = self.members();
        let owner = members
            .iter()
            .max_by_key(|address| (score(block, address), Arc::clone(address)));
        match owner {
            Some(owner) if Some(owner) != self.me.as_ref() => Route::Peer(Arc::clone(owner)),
            _ => Route::Bucket,
        }
    }
}

/// The score of `address` for `block`: [`rendezvous_hash`] of the object key, the block
/// index and the node address.
fn score(block: &BlockId, address: &str) -> u64 {
    let index = block.index.to_be_bytes();
    // the 0xff separator keeps ("ab", "c") and ("a", "bc") apart
    let parts = block.object.as_bytes().iter().chain(&[0xff]).chain(&index);
    rendezvous_hash(parts.chain(address.as_bytes()).copied())
}

/// A 64-bit hash for rendezvous placement: FNV-1a finished with a multiply-xorshift (FNV's
/// low bits mix poorly for short inputs). Stable across processes and versions, so every
/// process that hashes the same bytes picks the same owner.
pub fn rendezvous_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn node(address: &str, zone: &str) -> CacheNodeInfo {
        CacheNodeInfo {
            address: address.into(),
            availability_zone: zone.into(),
            instance_id: String::new(),
        }
    }

    fn blocks(n: u64) -> Vec<BlockId> {
        let objects: Vec<Arc<str>> = (0..10).map(|i| Arc::from(format!("seg/{i:04}"))).collect();
        (0..n)
            .map(|i| BlockId {
                object: Arc::clone(&objects[(i % 10) as usize]),
                index: i / 10,
            })
            .collect()
    }

    fn owners(ring: &CacheRing, blocks: &[BlockId]) -> Vec<Route> {
        blocks.iter().map(|b| ring.route(b)).collect()
    }

    #[test]
    fn an_empty_ring_routes_everything_to_the_bucket() {
        let ring = CacheRing::new(None, None);
        assert!(owners(&ring, &blocks(20))
            .iter()
            .all(|r| *r == Route::Bucket));
    }

    #[test]
    fn blocks_spread_evenly_and_only_a_leaving_nodes_blocks_move() {
        let ring = CacheRing::new(None, None);
        let three = [node("a:1", ""), node("b:1", ""), node("c:1", "")];
        assert_eq!(ring.set_members(&three), 3);
        let all = blocks(3000);
        let before = owners(&ring, &all);
        let mut counts: HashMap<Route, usize> = HashMap::new();
        for route in &before {
            *counts.entry(route.clone()).or_default() += 1;
        }
        for count in counts.values() {
            assert!((850..=1150).contains(count), "{counts:?}");
        }
        ring.set_members(&[node("a:1", ""), node("c:1", "")]);
        let after = owners(&ring, &all);
        let b = Route::Peer(Arc::from("b:1"));
        for (was, is) in before.iter().zip(&after) {
            if *was != b {
                assert_eq!(was, is, "blocks of the remaining nodes stay put");
            } else {
                assert_ne!(*is, b);
            }
        }
        // and when it comes back, it gets exactly its old blocks back
        ring.set_members(&three);
        assert_eq!(owners(&ring, &all), before);
    }

    #[test]
    fn every_reader_agrees_on_the_owner_whatever_order_it_learned_the_members_in() {
        let one = CacheRing::new(None, None);
        let two = CacheRing::new(None, None);
        one.set_members(&[node("a:1", ""), node("b:1", ""), node("c:1", "")]);
        two.set_members(&[node("c:1", ""), node("a:1", ""), node("b:1", "")]);
        let all = blocks(500);
        assert_eq!(owners(&one, &all), owners(&two, &all));
    }

    #[test]
    fn a_node_reads_the_blocks_it_owns_from_the_bucket() {
        let members = [node("a:1", ""), node("b:1", "")];
        let a = CacheRing::new(Some("a:1".into()), None);
        let outsider = CacheRing::new(None, None);
        a.set_members(&members);
        outsider.set_members(&members);
        for block in blocks(200) {
            match outsider.route(&block) {
                Route::Peer(owner) if &*owner == "a:1" => {
                    assert_eq!(a.route(&block), Route::Bucket)
                }
                other => assert_eq!(a.route(&block), other),
            }
        }
    }

    #[test]
    fn readers_use_the_nodes_of_their_zone_when_it_has_any() {
        let members = [node("a:1", "z1"), node("b:1", "z2"), node("c:1", "z2")];
        let in_z1 = CacheRing::new(None, Some("z1".into()));
        assert_eq!(in_z1.set_members(&members), 1);
        assert!(owners(&in_z1, &blocks(50))
            .iter()
            .all(|r| *r == Route::Peer(Arc::from("a:1"))));
        let in_z3 = CacheRing::new(None, Some("z3".into()));
        assert_eq!(
            in_z3.set_members(&members),
            3,
            "no node in z3: use them all"
        );
        let no_zone = CacheRing::new(None, None);
        assert_eq!(no_zone.set_members(&members), 3);
    }
}
