//! Which metadata process serves: a lease with an epoch, kept in the shared database.
//!
//! Two or more `strata metadata` processes run on one PostgreSQL database. One holds the
//! lease and serves; the others are standbys that refuse every call with `UNAVAILABLE`
//! and name the leader (gRPC metadata [`LEADER_HEADER`]) so that clients move to it.
//!
//! Guarantees:
//! - Safety never depends on timing: the store fences every mutating transaction with the
//!   epoch this process was granted ([`LeaseStore::fence`]); once a standby took over
//!   (raising the epoch), nothing the old leader sends can commit.
//! - The leader stops serving on its own once it has not renewed for most of the lease
//!   ([`SERVE_FRACTION`] of the TTL, measured on its monotonic clock), before any standby
//!   may take over; a process paused past its lease (SIGSTOP, a long GC-like stall) wakes
//!   up refusing calls, and finds out at its next renewal that it was deposed.
//! - A standby takes over within one TTL plus one poll interval ([`LeaseConfig::poll`])
//!   after the leader's last renewal; a leader that stops cleanly releases the lease
//!   so a standby takes over at its next poll.
//! - Every change of role bumps [`Leadership::changes`], so in-memory state that belongs
//!   to a term (consumer groups, the agent registry, watch streams) is dropped with it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Request, Status};

use crate::metrics::MetadataMetrics;
use crate::store::StoreError;

/// gRPC response metadata naming the leader's address on a standby's refusal.
pub const LEADER_HEADER: &str = "x-strata-leader";

/// Share of the TTL after a renewal was sent during which the leader keeps serving.
pub const SERVE_FRACTION: f64 = 0.8;

/// The lease row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Current epoch (0 before anyone held the lease).
    pub epoch: i64,
    /// Instance id of the holder.
    pub holder: String,
    /// gRPC URL the holder advertises.
    pub address: String,
    /// Milliseconds until it expires by the database's clock (negative: expired).
    pub expires_in_ms: i64,
}

/// A store that can hold the leader's lease and fence writes with its epoch.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease for `ttl` if it has expired; returns the new epoch, or `None` while
    /// another process holds it.
    async fn try_acquire(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError>;
    /// Extends the lease `(holder, epoch)` by `ttl` from now; `false` when it is no longer
    /// the current lease (this process was deposed).
    async fn renew(&self, holder: &str, epoch: i64, ttl: Duration) -> Result<bool, StoreError>;
    /// Ends the lease `(holder, epoch)` now if it is still current.
    async fn release(&self, holder: &str, epoch: i64) -> Result<(), StoreError>;
    /// The lease as stored.
    async fn current(&self) -> Result<LeaseRecord, StoreError>;
    /// Fences later write transactions with `Some(epoch)`, or refuses them all (`None`).
    fn fence(&self, epoch: Option<i64>);
}

/// What this process is, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Serving, with this lease epoch (0: a single process without a lease).
    Leader {
        /// The lease epoch.
        epoch: i64,
    },
    /// Refusing calls; the leader's address when known.
    Standby {
        /// The leader's advertised gRPC URL.
        leader: Option<String>,
    },
}

/// How this process campaigns for the lease.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// This process's instance id (unique per start).
    pub holder: String,
    /// The gRPC URL agents and the CLI use to reach this process.
    pub address: String,
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
}

impl LeaseConfig {
    /// How often the leader renews and a standby checks the lease.
    pub fn poll(&self) -> Duration {
        (self.ttl / 5).max(Duration::from_millis(50))
    }
}

struct State {
    role: Role,
    /// While leader under a lease: serve until then.
    serve_until: Option<Instant>,
}

/// This process's role, shared by the gRPC gate and the campaign.
#[derive(Clone)]
pub struct Leadership {
    state: Arc<Mutex<State>>,
    changes: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("role", &self.role())
            .finish()
    }
}

impl Leadership {
    /// A process that is the leader for good: the only metadata process (SQLite).
    pub fn sole() -> Self {
        Self::with_role(Role::Leader { epoch: 0 })
    }

    fn with_role(role: Role) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                role,
                serve_until: None,
            })),
            changes: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.lock().role.clone()
    }

    /// True while this process should answer calls.
    pub fn is_serving(&self) -> bool {
        let state = self.lock();
        matches!(state.role, Role::Leader { .. })
            && state.serve_until.is_none_or(|until| Instant::now() < until)
    }

    /// A counter raised at every change of role.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Lets a call through while serving; refuses it with `UNAVAILABLE` (naming the leader
    /// when known) otherwise.
    pub fn admit<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        if self.is_serving() {
            return Ok(request);
        }
        let leader = match self.role() {
            Role::Standby { leader } => leader,
            Role::Leader { .. } => None,
        };
        let mut status = Status::unavailable(match &leader {
            Some(address) => format!("this metadata process is a standby; the leader is {address}"),
            None => "this metadata process is not the leader (no leader known yet)".to_string(),
        });
        if let Some(value) = leader.and_then(|a| a.parse().ok()) {
            status.metadata_mut().insert(LEADER_HEADER, value);
        }
        Err(status)
    }

    fn set(&self, role: Role, serve_until: Option<Instant>) {
        let changed = {
            let mut state = self.lock();
            let changed = std::mem::discriminant(&state.role) != std::mem::discriminant(&role)
                || matches!((&state.role, &role), (Role::Leader { epoch: a }, Role::Leader { epoch: b }) if a != b);
            state.role = role;
            state.serve_until = serve_until;
            changed
        };
        if changed {
            self.changes.send_modify(|term| *term += 1);
        }
    }

    /// Starts as a standby and campaigns for the lease in `lease` until `stop` resolves;
    /// then releases the lease if held. The returned handle ends after that release.
    pub fn campaign(
        lease: Arc<dyn LeaseStore>,
        config: LeaseConfig,
        metrics: MetadataMetrics,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        lease.fence(None);
        let leadership = Self::with_role(Role::Standby { leader: None });
        let campaign = Campaign {
            lease,
            config,
            metrics,
            leadership: leadership.clone(),
        };
        let task = tokio::spawn(campaign.run(stop));
        (leadership, task)
    }
}

struct Campaign {
    lease: Arc<dyn LeaseStore>,
    config: LeaseConfig,
    metrics: MetadataMetrics,
    leadership: Leadership,
}

impl Campaign {
    async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticker = tokio::time::interval(self.config.poll());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticker.tick() => {}
            }
            match self.leadership.role() {
                Role::Leader { epoch } => self.renew(epoch).await,
                Role::Standby { .. } => self.try_lead().await,
            }
        }
        if let Role::Leader { epoch } = self.leadership.role() {
            self.step_down("stopping");
            match self.lease.release(&self.config.holder, epoch).await {
                Ok(()) => tracing::info!(epoch, "released the metadata leader lease"),
                Err(error) => {
                    tracing::warn!(%error, "could not release the lease; it expires on its own")
                }
            }
        }
    }

    async fn try_lead(&self) {
        let sent = Instant::now();
        match self
            .lease
            .try_acquire(&self.config.holder, &self.config.address, self.config.ttl)
            .await
        {
            Ok(Some(epoch)) => {
                self.lease.fence(Some(epoch));
                self.leadership
                    .set(Role::Leader { epoch }, Some(self.serve_until(sent)));
                self.metrics.leader.set(1);
                self.metrics.leader_epoch.set(epoch);
                tracing::info!(epoch, address = %self.config.address, "took the metadata leader lease");
            }
            Ok(None) => {
                let leader = match self.lease.current().await {
                    Ok(record) if record.expires_in_ms > 0 => Some(record.address),
                    _ => None,
                };
                self.leadership.set(Role::Standby { leader }, None);
            }
            Err(error) => tracing::warn!(%error, "cannot read the metadata leader lease"),
        }
    }

    async fn renew(&self, epoch: i64) {
        let sent = Instant::now();
        match self
            .lease
            .renew(&self.config.holder, epoch, self.config.ttl)
            .await
        {
            Ok(true) => self
                .leadership
                .set(Role::Leader { epoch }, Some(self.serve_until(sent))),
            Ok(false) => self.step_down("another process took the lease"),
            Err(error) => {
                tracing::warn!(%error, epoch, "cannot renew the metadata leader lease");
                if !self.leadership.is_serving() {
                    self.step_down("the lease could not be renewed in time");
                }
            }
        }
    }

    fn serve_until(&self, sent: Instant) -> Instant {
        sent + self.config.ttl.mul_f64(SERVE_FRACTION)
    }

    fn step_down(&self, why: &str) {
        self.lease.fence(None);
        self.leadership.set(Role::Standby { leader: None }, None);
        self.metrics.leader.set(0);
        tracing::warn!(reason = why, "no longer the metadata leader");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A lease in memory with the same rules as the database's, for the state machine.
    #[derive(Default)]
    struct MemoryLease {
        row: Mutex<(i64, String, Option<Instant>)>,
        fenced: Mutex<Option<i64>>,
    }

    #[async_trait]
    impl LeaseStore for MemoryLease {
        async fn try_acquire(
            &self,
            holder: &str,
            _: &str,
            ttl: Duration,
        ) -> Result<Option<i64>, StoreError> {
            let mut row = self.row.lock().unwrap();
            if row.2.is_some_and(|expires| expires > Instant::now()) {
                return Ok(None);
            }
            *row = (row.0 + 1, holder.to_string(), Some(Instant::now() + ttl));
            Ok(Some(row.0))
        }
        async fn renew(&self, holder: &str, epoch: i64, ttl: Duration) -> Result<bool, StoreError> {
            let mut row = self.row.lock().unwrap();
            if row.0 != epoch || row.1 != holder {
                return Ok(false);
            }
            row.2 = Some(Instant::now() + ttl);
            Ok(true)
        }
        async fn release(&self, holder: &str, epoch: i64) -> Result<(), StoreError> {
            let mut row = self.row.lock().unwrap();
            if row.0 == epoch && row.1 == holder {
                row.2 = None;
            }
            Ok(())
        }
        async fn current(&self) -> Result<LeaseRecord, StoreError> {
            let row = self.row.lock().unwrap();
            Ok(LeaseRecord {
                epoch: row.0,
                holder: row.1.clone(),
                address: format!("http://{}", row.1),
                expires_in_ms: row.2.map_or(-1, |e| {
                    i64::try_from(e.saturating_duration_since(Instant::now()).as_millis()).unwrap()
                }),
            })
        }
        fn fence(&self, epoch: Option<i64>) {
            *self.fenced.lock().unwrap() = epoch;
        }
    }

    fn config(holder: &str) -> LeaseConfig {
        LeaseConfig {
            holder: holder.into(),
            address: format!("http://{holder}"),
            ttl: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_leader_and_a_standby_that_takes_over_after_a_release() {
        let lease = Arc::new(MemoryLease::default());
        let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
        let (a, task_a) = Leadership::campaign(
            lease.clone(),
            config("a"),
            MetadataMetrics::default(),
            async move {
                let _ = stopped_a.await;
            },
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(a.role(), Role::Leader { epoch: 1 });
        assert!(a.is_serving());
        assert_eq!(*lease.fenced.lock().unwrap(), Some(1));
        let (b, _task_b) = Leadership::campaign(
            lease.clone(),
            config("b"),
            MetadataMetrics::default(),
            std::future::pending(),
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            b.role(),
            Role::Standby {
                leader: Some("http://a".into())
            }
        );
        let refusal = b.admit(Request::new(())).unwrap_err();
        assert_eq!(refusal.code(), tonic::Code::Unavailable);
        assert_eq!(refusal.metadata().get(LEADER_HEADER).unwrap(), "http://a");
        let mut changes = b.changes();
        stop_a.send(()).unwrap();
        task_a.await.unwrap();
        assert!(!a.is_serving());
        changes.changed().await.unwrap();
        assert_eq!(b.role(), Role::Leader { epoch: 2 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_stops_serving_before_its_lease_ends() {
        let lease = Arc::new(MemoryLease::default());
        let (a, _task) = Leadership::campaign(
            lease.clone(),
            config("a"),
            MetadataMetrics::default(),
            std::future::pending(),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(a.is_serving());
        // another process takes the lease behind a's back (as after a long pause)
        *lease.row.lock().unwrap() = (
            7,
            "b".into(),
            Some(Instant::now() + Duration::from_secs(60)),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!a.is_serving());
        assert_eq!(
            a.role(),
            Role::Standby {
                leader: Some("http://b".into())
            }
        );
        assert_eq!(*lease.fenced.lock().unwrap(), None);
    }
}
