//! The classic consumer-group membership protocol, as a state machine.
//!
//! One [`Group`] holds its members, its generation and its state
//! (Empty → PreparingRebalance → CompletingRebalance → Stable). JoinGroup and SyncGroup
//! calls that must wait get a one-shot receiver; the group answers them when the
//! rebalance round completes. Time comes in as an argument, so tests drive it by hand.
//!
//! Invariants:
//! - A join round completes only when every known member has rejoined, or when the round's
//!   deadline (the largest rebalance timeout) passes; members that did not rejoin are dropped.
//! - Each completed round increments the generation; heartbeats, syncs and commits from
//!   another generation get ILLEGAL_GENERATION.
//! - A static member (`group.instance.id`) that rejoins replaces its old member id without a
//!   rebalance when the group is stable and its protocols are unchanged; the old id is fenced.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a new group waits for more members before its first round completes.
pub const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(1_000);

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment handed out.
    Stable,
}

impl GroupState {
    /// The name Kafka tools show.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup caller is told.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinOutcome {
    /// Kafka error, or None.
    pub error: Option<ResponseError>,
    /// Generation of the completed round.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignment protocol.
    pub protocol: Option<String>,
    /// Member id of the leader.
    pub leader: String,
    /// The caller's member id.
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// True when a static leader rejoined and must not compute a new assignment.
    pub skip_assignment: bool,
}

impl JoinOutcome {
    fn error(error: ResponseError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

/// What a SyncGroup caller is told: an error or its assignment.
pub type SyncOutcome = Result<Bytes, ResponseError>;

/// A call's answer: now, or when the round completes.
#[derive(Debug)]
pub enum Step<T> {
    /// The answer.
    Reply(T),
    /// Await this for the answer.
    Wait(oneshot::Receiver<T>),
}

/// The arguments of a JoinGroup call.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    /// Member id, empty on a first join.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Kafka client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Supported protocols in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a rejoining static leader can be told to keep the assignment.
    pub supports_skip_assignment: bool,
}

/// One member of a group.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Kafka client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// Protocols in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// The member's current assignment.
    pub assignment: Bytes,
    last_seen: Instant,
    join: Option<oneshot::Sender<JoinOutcome>>,
    sync: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    /// Metadata the member sent for `protocol`.
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn fail(&mut self, error: ResponseError) {
        if let Some(join) = self.join.take() {
            let _ = join.send(JoinOutcome::error(error, &self.id));
        }
        if let Some(sync) = self.sync.take() {
            let _ = sync.send(Err(error));
        }
    }
}

/// One consumer group's membership.
#[derive(Debug)]
pub struct Group {
    /// Current state.
    pub state: GroupState,
    /// Generation of the last completed round.
    pub generation: i32,
    /// Protocol type of the members.
    pub protocol_type: Option<String>,
    /// Chosen protocol of the current generation.
    pub protocol: Option<String>,
    /// Leader of the current generation.
    pub leader: Option<String>,
    /// Members in join order.
    pub members: IndexMap<String, Member>,
    pending: HashMap<String, Instant>,
    instances: HashMap<String, String>,
    round_deadline: Option<Instant>,
    initial_delay_until: Option<Instant>,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            round_deadline: None,
            initial_delay_until: None,
        }
    }
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl Group {
    /// Handles JoinGroup.
    pub fn join(&mut self, args: JoinArgs, now: Instant) -> Step<JoinOutcome> {
        if let Err(error) = self.check_protocols(&args) {
            return Step::Reply(JoinOutcome::error(error, &args.member_id));
        }
        if args.member_id.is_empty() {
            return self.join_new(args, now);
        }
        if let Some(instance) = &args.instance_id {
            if self
                .instances
                .get(instance)
                .is_some_and(|id| *id != args.member_id)
            {
                return Step::Reply(JoinOutcome::error(
                    ResponseError::FencedInstanceId,
                    &args.member_id,
                ));
            }
        }
        if self.pending.remove(&args.member_id).is_some() {
            return self.add_and_wait(args.member_id.clone(), args, now);
        }
        let Some(member) = self.members.get(&args.member_id) else {
            return Step::Reply(JoinOutcome::error(
                ResponseError::UnknownMemberId,
                &args.member_id,
            ));
        };
        let unchanged = member.protocols == args.protocols;
        let is_leader = self.leader.as_deref() == Some(args.member_id.as_str());
        if self.state == GroupState::Stable && unchanged && !is_leader {
            let id = args.member_id.clone();
            self.touch(&id, now);
            return Step::Reply(self.current_outcome(&id, false));
        }
        self.add_and_wait(args.member_id.clone(), args, now)
    }

    fn join_new(&mut self, args: JoinArgs, now: Instant) -> Step<JoinOutcome> {
        let id = new_member_id(&args.client_id);
        if let Some(instance) = args.instance_id.clone() {
            if let Some(old_id) = self.instances.get(&instance).cloned() {
                return self.replace_static_member(&old_id, id, args, now);
            }
            self.instances.insert(instance, id.clone());
            return self.add_and_wait(id, args, now);
        }
        if args.require_known_member_id {
            self.pending.insert(id.clone(), now + args.session_timeout);
            return Step::Reply(JoinOutcome::error(ResponseError::MemberIdRequired, &id));
        }
        self.add_and_wait(id, args, now)
    }

    /// A static member came back with a new member id: fence the old id, keep its assignment.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        args: JoinArgs,
        now: Instant,
    ) -> Step<JoinOutcome> {
        let Some(mut old) = self.members.shift_remove(old_id) else {
            if let Some(instance) = &args.instance_id {
                self.instances.insert(instance.clone(), new_id.clone());
            }
            return self.add_and_wait(new_id, args, now);
        };
        old.fail(ResponseError::FencedInstanceId);
        let unchanged = old.protocols == args.protocols;
        if let Some(instance) = &args.instance_id {
            self.instances.insert(instance.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        let member = Member {
            id: new_id.clone(),
            assignment: old.assignment,
            ..self.member_from(&new_id, &args, now)
        };
        self.members.insert(new_id.clone(), member);
        if self.state == GroupState::Stable && unchanged {
            if was_leader && !args.supports_skip_assignment {
                // before v9 a leader always assigns; naming the old id as leader makes the
                // client act as a follower and fetch its stored assignment with SyncGroup
                let mut outcome = self.round_outcome(&new_id, false, false);
                outcome.leader = old_id.to_string();
                return Step::Reply(outcome);
            }
            return Step::Reply(self.current_outcome(&new_id, was_leader));
        }
        self.add_and_wait(new_id, args, now)
    }

    fn member_from(&self, id: &str, args: &JoinArgs, now: Instant) -> Member {
        Member {
            id: id.to_string(),
            instance_id: args.instance_id.clone(),
            client_id: args.client_id.clone(),
            client_host: args.client_host.clone(),
            session_timeout: args.session_timeout,
            rebalance_timeout: args.rebalance_timeout,
            protocols: args.protocols.clone(),
            assignment: Bytes::new(),
            last_seen: now,
            join: None,
            sync: None,
        }
    }

    fn add_and_wait(&mut self, id: String, args: JoinArgs, now: Instant) -> Step<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let fresh = self.member_from(&id, &args, now);
        let member = self.members.entry(id).or_insert(fresh);
        member.protocols = args.protocols;
        member.session_timeout = args.session_timeout;
        member.rebalance_timeout = args.rebalance_timeout;
        member.last_seen = now;
        if let Some(previous) = member.join.replace(tx) {
            let _ = previous.send(JoinOutcome::error(
                ResponseError::RebalanceInProgress,
                &member.id,
            ));
        }
        if self.protocol_type.is_none() {
            self.protocol_type = Some(args.protocol_type);
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
        Step::Wait(rx)
    }

    fn check_protocols(&self, args: &JoinArgs) -> Result<(), ResponseError> {
        if args.protocol_type.is_empty() || args.protocols.is_empty() {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != args.member_id)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != args.protocol_type)
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        let shared = args.protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        });
        if shared {
            Ok(())
        } else {
            Err(ResponseError::InconsistentGroupProtocol)
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                if let Some(sync) = member.sync.take() {
                    let _ = sync.send(Err(ResponseError::RebalanceInProgress));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        if self.state == GroupState::Empty {
            self.initial_delay_until = Some(now + INITIAL_REBALANCE_DELAY.min(timeout));
        }
        self.round_deadline = Some(now + timeout);
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join round when everyone rejoined (after the initial delay) or when
    /// its deadline passed.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let due = self.round_deadline.is_some_and(|d| now >= d);
        let everyone = !self.members.is_empty() && self.members.values().all(|m| m.join.is_some());
        let delayed = self.initial_delay_until.is_some_and(|d| now < d);
        let ready = everyone && !delayed;
        if !due && !ready {
            return;
        }
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in absent {
            self.remove_member(&id, ResponseError::UnknownMemberId);
        }
        self.round_deadline = None;
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        self.protocol = self.choose_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let outcome = self.round_outcome(&id, is_leader, false);
            if let Some(member) = self.members.get_mut(&id) {
                member.last_seen = now;
                if let Some(join) = member.join.take() {
                    let _ = join.send(outcome);
                }
            }
        }
    }

    fn round_outcome(&self, id: &str, with_members: bool, skip_assignment: bool) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata_for(&protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members,
            skip_assignment,
        }
    }

    /// The current generation's answer for a member that rejoined without a rebalance.
    fn current_outcome(&self, id: &str, is_leader: bool) -> JoinOutcome {
        self.round_outcome(id, is_leader, is_leader)
    }

    /// Each member votes for its most preferred protocol that every member supports.
    fn choose_protocol(&self) -> Option<String> {
        let supported_by_all = |name: &str| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        };
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(n, _)| supported_by_all(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(name, _)| name.to_string())
    }

    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.protocol = None;
        self.protocol_type = None;
        self.leader = None;
    }

    fn remove_member(&mut self, id: &str, error: ResponseError) {
        if let Some(mut member) = self.members.shift_remove(id) {
            member.fail(error);
            if let Some(instance) = &member.instance_id {
                if self.instances.get(instance).is_some_and(|m| m == id) {
                    self.instances.remove(instance);
                }
            }
        }
    }

    /// After members left or expired: rebalance the rest, or become empty.
    fn after_departure(&mut self, now: Instant) {
        if self.members.is_empty() {
            if self.state != GroupState::Empty {
                self.generation += 1;
            }
            self.round_deadline = None;
            self.initial_delay_until = None;
            self.become_empty();
            return;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
    }

    fn touch(&mut self, id: &str, now: Instant) {
        if let Some(member) = self.members.get_mut(id) {
            member.last_seen = now;
        }
    }

    /// Checks that `member_id` (and its static id, if any) belongs to the group.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            if let Some(owner) = self.instances.get(instance) {
                if owner != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    /// Handles SyncGroup: the leader's call hands out every member's assignment.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Step<SyncOutcome> {
        if let Err(error) = self.check_member(member_id, instance_id) {
            return Step::Reply(Err(error));
        }
        if generation != self.generation {
            return Step::Reply(Err(ResponseError::IllegalGeneration));
        }
        self.touch(member_id, now);
        match self.state {
            GroupState::Empty => Step::Reply(Err(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => Step::Reply(Err(ResponseError::RebalanceInProgress)),
            GroupState::Stable => Step::Reply(Ok(self.members[member_id].assignment.clone())),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(member) = self.members.get_mut(member_id) {
                    member.sync = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.apply_assignments(assignments);
                }
                Step::Wait(rx)
            }
        }
    }

    fn apply_assignments(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = by_member.remove(&member.id).unwrap_or_default();
            if let Some(sync) = member.sync.take() {
                let _ = sync.send(Ok(member.assignment.clone()));
            }
        }
        self.state = GroupState::Stable;
    }

    /// Handles Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        if let Err(error) = self.check_member(member_id, instance_id) {
            return Some(error);
        }
        self.touch(member_id, now);
        match self.state {
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable
                if generation != self.generation =>
            {
                Some(ResponseError::IllegalGeneration)
            }
            GroupState::CompletingRebalance | GroupState::Stable => None,
        }
    }

    /// Handles one member of a LeaveGroup call (by member id, or by static id).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Option<ResponseError> {
        let id = match instance_id {
            Some(instance) => match self.instances.get(instance) {
                Some(owner) if member_id.is_empty() || owner == member_id => owner.clone(),
                Some(_) => return Some(ResponseError::FencedInstanceId),
                None => return Some(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return Some(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id, ResponseError::UnknownMemberId);
        self.after_departure(now);
        None
    }

    /// Checks a commit's generation and member, as OffsetCommit requires.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            // a commit from outside group management: only while no member is active
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Expires silent members and pending member ids, and completes a round that is due.
    pub fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join.is_none() && m.sync.is_none() && m.last_seen + m.session_timeout <= now
            })
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(member = %id, "member session expired");
                self.remove_member(id, ResponseError::UnknownMemberId);
            }
            self.after_departure(now);
        }
        self.try_complete_join(now);
    }

    /// True when nothing is left to remember in memory.
    pub fn is_idle(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
