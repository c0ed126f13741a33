#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const SESSION: Duration = Duration::from_secs(10);

fn args(member_id: &str, instance: Option<&str>) -> JoinArgs {
    JoinArgs {
        member_id: member_id.to_string(),
        instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(b"r")),
            ("roundrobin".into(), Bytes::from_static(b"rr")),
        ],
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

fn wait<T: std::fmt::Debug>(step: Step<T>) -> oneshot::Receiver<T> {
    match step {
        Step::Wait(rx) => rx,
        Step::Reply(reply) => panic!("expected to wait, got {reply:?}"),
    }
}

fn reply<T: std::fmt::Debug>(step: Step<T>) -> T {
    match step {
        Step::Reply(reply) => reply,
        Step::Wait(_) => panic!("expected an answer now"),
    }
}

/// Joins a new member through MEMBER_ID_REQUIRED; returns its id and the join receiver.
fn join_new(group: &mut Group, now: Instant) -> (String, oneshot::Receiver<JoinOutcome>) {
    let first = reply(group.join(args("", None), now));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    let id = first.member_id;
    let rx = wait(group.join(args(&id, None), now));
    (id, rx)
}

#[test]
fn first_round_waits_for_the_initial_delay_then_elects_a_leader() {
    let t0 = Instant::now();
    let mut group = Group::default();
    let (a, mut rx_a) = join_new(&mut group, t0);
    let (b, mut rx_b) = join_new(&mut group, t0 + Duration::from_millis(10));
    assert!(
        rx_a.try_recv().is_err(),
        "the initial delay holds the first round"
    );
    group.tick(t0 + INITIAL_REBALANCE_DELAY);
    let out_a = rx_a.try_recv().unwrap();
    let out_b = rx_b.try_recv().unwrap();
    assert_eq!(out_a.generation, 1);
    assert_eq!(out_a.leader, a);
    assert_eq!(out_a.protocol.as_deref(), Some("range"));
    assert_eq!(out_a.members.len(), 2, "the leader sees every member");
    assert!(out_b.members.is_empty());
    assert_eq!(group.state, GroupState::CompletingRebalance);

    // the follower's sync waits for the leader's assignment
    let t1 = t0 + INITIAL_REBALANCE_DELAY;
    let mut follower = wait(group.sync(&b, None, 1, vec![], t1));
    let leader = wait(group.sync(
        &a,
        None,
        1,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
        t1,
    ));
    assert_eq!(
        follower.try_recv().unwrap().unwrap(),
        Bytes::from_static(b"B")
    );
    drop(leader);
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(group.heartbeat(&b, None, 1, t1), None);
    assert_eq!(
        group.heartbeat(&b, None, 0, t1),
        Some(ResponseError::IllegalGeneration)
    );
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance() {
    let t0 = Instant::now();
    let mut group = Group::default();
    let (a, _rx_a) = join_new(&mut group, t0);
    let (b, _rx_b) = join_new(&mut group, t0);
    let t1 = t0 + INITIAL_REBALANCE_DELAY;
    group.tick(t1);
    drop(group.sync(&a, None, 1, vec![], t1));
    assert_eq!(group.state, GroupState::Stable);
    // only b keeps heartbeating
    let t2 = t1 + SESSION - Duration::from_millis(1);
    assert_eq!(group.heartbeat(&b, None, 1, t2), None);
    group.tick(t1 + SESSION);
    assert!(!group.members.contains_key(&a));
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(&b, None, 1, t1 + SESSION),
        Some(ResponseError::RebalanceInProgress)
    );
    let mut rx = wait(group.join(args(&b, None), t1 + SESSION));
    let out = rx.try_recv().unwrap();
    assert_eq!((out.generation, out.leader.as_str()), (2, b.as_str()));
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_deadline() {
    let t0 = Instant::now();
    let mut group = Group::default();
    let (a, _) = join_new(&mut group, t0);
    let (b, _) = join_new(&mut group, t0);
    let t1 = t0 + INITIAL_REBALANCE_DELAY;
    group.tick(t1);
    drop(group.sync(&a, None, 1, vec![], t1));
    // a rejoins (e.g. subscription changed); b never does
    let mut rx = wait(group.join(args(&a, None), t1));
    group.heartbeat(&b, None, 1, t1);
    assert!(rx.try_recv().is_err());
    group.tick(t1 + Duration::from_secs(30));
    let out = rx.try_recv().unwrap();
    assert_eq!(out.generation, 2);
    assert_eq!(group.members.len(), 1);
}

#[test]
fn leaving_last_member_empties_the_group() {
    let t0 = Instant::now();
    let mut group = Group::default();
    let (a, _) = join_new(&mut group, t0);
    group.tick(t0 + INITIAL_REBALANCE_DELAY);
    assert_eq!(group.leave(&a, None, t0), None);
    assert_eq!(group.state, GroupState::Empty);
    assert_eq!(
        group.leave(&a, None, t0),
        Some(ResponseError::UnknownMemberId)
    );
    assert!(
        group.check_commit("", None, -1).is_ok(),
        "simple commits are allowed once empty"
    );
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let t0 = Instant::now();
    let mut group = Group::default();
    let mut rx = wait(group.join(args("", Some("worker-1")), t0));
    let t1 = t0 + INITIAL_REBALANCE_DELAY;
    group.tick(t1);
    let first = rx.try_recv().unwrap();
    let old_id = first.member_id.clone();
    drop(group.sync(
        &old_id,
        Some("worker-1"),
        1,
        vec![(old_id.clone(), Bytes::from_static(b"P"))],
        t1,
    ));
    assert_eq!(group.state, GroupState::Stable);

    // restarted process: same instance id, no member id
    let again = reply(group.join(args("", Some("worker-1")), t1));
    assert_eq!(again.error, None);
    assert_eq!(again.generation, 1, "no rebalance");
    assert_ne!(again.member_id, old_id);
    assert!(
        again.skip_assignment,
        "the static leader keeps the current assignment"
    );
    assert_eq!(
        group.heartbeat(&old_id, Some("worker-1"), 1, t1),
        Some(ResponseError::FencedInstanceId)
    );
    let sync = reply(group.sync(&again.member_id, Some("worker-1"), 1, vec![], t1));
    assert_eq!(sync.unwrap(), Bytes::from_static(b"P"));
}

#[test]
fn incompatible_protocols_are_refused() {
    let t0 = Instant::now();
    let mut group = Group::default();
    let _ = join_new(&mut group, t0);
    let mut other = args("", None);
    other.require_known_member_id = false;
    other.protocols = vec![("cooperative-sticky".into(), Bytes::new())];
    let out = reply(group.join(other, t0));
    assert_eq!(out.error, Some(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn unknown_members_are_rejected_everywhere() {
    let t0 = Instant::now();
    let mut group = Group::default();
    assert_eq!(
        reply(group.join(args("ghost", None), t0)).error,
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        group.heartbeat("ghost", None, 0, t0),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        reply(group.sync("ghost", None, 0, vec![], t0)).unwrap_err(),
        ResponseError::UnknownMemberId
    );
    assert_eq!(
        group.check_commit("ghost", None, 3),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn before_v9_a_restarted_static_leader_is_answered_as_a_follower() {
    let t0 = Instant::now();
    let mut group = Group::default();
    let mut rx = wait(group.join(args("", Some("worker-1")), t0));
    let t1 = t0 + INITIAL_REBALANCE_DELAY;
    group.tick(t1);
    let old_id = rx.try_recv().unwrap().member_id;
    drop(group.sync(
        &old_id,
        Some("worker-1"),
        1,
        vec![(old_id.clone(), Bytes::from_static(b"P"))],
        t1,
    ));
    let mut old_client = args("", Some("worker-1"));
    old_client.supports_skip_assignment = false;
    let again = reply(group.join(old_client, t1));
    assert_eq!(again.error, None);
    assert_eq!(
        again.leader, old_id,
        "not the caller: it syncs as a follower"
    );
    assert!(again.members.is_empty() && !again.skip_assignment);
    assert_eq!(
        reply(group.sync(&again.member_id, Some("worker-1"), 1, vec![], t1)).unwrap(),
        Bytes::from_static(b"P")
    );
}
