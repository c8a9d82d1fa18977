//! Group commit: one background flusher makes the commits of many instances durable with one
//! flush, and acknowledges each commit only after the flush that covers it.

use super::StoreError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Makes everything applied so far durable (a store's flush), called off the async threads.
pub(crate) type FlushFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Commits a group flush refused one by one, by their [number](Ack::number), with the reason
/// (the rest of the flush is durable): a store on a shared database refuses the commits to shards
/// another node took over and writes the others.
pub type Refused = Vec<(u64, StoreError)>;

/// Resolves once a commit is durable. A commit to memory is durable at once; a commit to a store
/// that flushes per step becomes durable when the flush that [`Ack::durable`] runs (on a blocking
/// thread, never on an async worker) returns; with group commit, when the flusher's flush that
/// covers it returns.
#[must_use = "a step is not durable until its Ack has resolved"]
pub struct Ack {
    pending: Pending,
    /// The highest notification-log number the commit was given, if it appended any.
    last_notification: NotificationNumber,
}

/// The highest notification-log number a commit was given. A store that numbers entries as it
/// queues them (memory, sled) knows it at commit; one that numbers them as it writes them
/// (PostgreSQL, where several nodes append to one log) sets it once the commit is durable.
#[derive(Debug, Clone, Default)]
pub enum NotificationNumber {
    /// The commit appended no entry.
    #[default]
    None,
    /// Known at commit.
    Known(u64),
    /// Set by the store when the commit is durable.
    Pending(Arc<OnceLock<u64>>),
}

impl NotificationNumber {
    /// The number, once known (for a pending one: after the ack has resolved).
    pub fn get(&self) -> Option<u64> {
        match self {
            NotificationNumber::None => None,
            NotificationNumber::Known(n) => Some(*n),
            NotificationNumber::Pending(cell) => cell.get().copied(),
        }
    }
}

enum Pending {
    /// Durable already.
    Ready,
    /// Durable once the group committer has flushed commit number `.1`.
    Group(Arc<Shared>, u64),
    /// Durable once this flush has run.
    Flush(FlushFn),
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = match &self.pending {
            Pending::Ready => "ready".to_string(),
            Pending::Group(_, seq) => format!("group commit {seq}"),
            Pending::Flush(_) => "flush pending".to_string(),
        };
        f.debug_struct("Ack")
            .field("pending", &pending)
            .field("last_notification", &self.last_notification)
            .finish()
    }
}

impl Ack {
    /// An acknowledgement that is already durable.
    pub fn ready() -> Self {
        Self {
            pending: Pending::Ready,
            last_notification: NotificationNumber::None,
        }
    }

    /// An acknowledgement that becomes durable once `flush` has run.
    pub(crate) fn after_flush(flush: FlushFn) -> Self {
        Self {
            pending: Pending::Flush(flush),
            last_notification: NotificationNumber::None,
        }
    }

    /// The same acknowledgement, carrying the highest notification-log number of its commit.
    pub fn with_last_notification(mut self, last: NotificationNumber) -> Self {
        self.last_notification = last;
        self
    }

    /// The highest number the commit's notification-log entries were given (`None` when it
    /// appended none; a pending one is known once the ack has resolved). Once the ack has
    /// resolved, every entry up to this number is durable.
    pub fn last_notification(&self) -> NotificationNumber {
        self.last_notification.clone()
    }

    /// The commit's number in its group committer (`None` for other acks): what a flush that
    /// refuses single commits names ([`Refused`]).
    pub fn number(&self) -> Option<u64> {
        match &self.pending {
            Pending::Group(_, seq) => Some(*seq),
            Pending::Ready | Pending::Flush(_) => None,
        }
    }

    /// Blocks the current thread until the commit is durable.
    pub fn wait(self) -> Result<(), StoreError> {
        let (shared, seq) = match self.pending {
            Pending::Ready => return Ok(()),
            Pending::Flush(flush) => return flush().map_err(StoreError::FlushFailed),
            Pending::Group(shared, seq) => (shared, seq),
        };
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(err) = &state.failed {
                return Err(err.clone());
            }
            if state.flushed >= seq {
                return state.refused.remove(&seq).map_or(Ok(()), Err);
            }
            state = shared
                .flushed_cv
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits (asynchronously) until the commit is durable.
    pub async fn durable(self) -> Result<(), StoreError> {
        let (shared, seq) = match self.pending {
            Pending::Ready => return Ok(()),
            Pending::Flush(flush) => {
                // An fsync blocks: it runs on tokio's blocking pool, not on an async worker.
                return match tokio::runtime::Handle::try_current() {
                    Ok(_) => tokio::task::spawn_blocking(move || flush())
                        .await
                        .unwrap_or_else(|e| Err(format!("the flush stopped: {e}")))
                        .map_err(StoreError::FlushFailed),
                    Err(_) => flush().map_err(StoreError::FlushFailed),
                };
            }
            Pending::Group(shared, seq) => (shared, seq),
        };
        // Each waiter is woken once, by the flush that covers its commit (not by every flush).
        let woken = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(err) = &state.failed {
                return Err(err.clone());
            }
            if state.flushed >= seq {
                return state.refused.remove(&seq).map_or(Ok(()), Err);
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.entry(seq).or_default().push(tx);
            rx
        };
        match woken.await {
            Ok(result) => result,
            Err(_) => Err(StoreError::FlushFailed(
                "the store was closed before the step was flushed".into(),
            )),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Number of commits applied (in memory) so far.
    committed: u64,
    /// Number of commits known to be on disk.
    flushed: u64,
    /// When the oldest commit no flush has taken yet was registered (`None` when there is
    /// none): the flusher's window runs from it.
    oldest_untaken: Option<Instant>,
    /// Set when a flush failed: every waiter gets the error.
    failed: Option<StoreError>,
    /// Commits a flush refused one by one (the others of the flush are durable), by number,
    /// until their acks are resolved.
    refused: HashMap<u64, StoreError>,
    /// Set when the store closes.
    shutdown: bool,
    /// Async waiters by the commit they wait for.
    waiters: BTreeMap<u64, Vec<oneshot::Sender<Result<(), StoreError>>>>,
}

impl State {
    /// Wakes the async waiters of every commit up to `flushed` (all of them, with the error,
    /// after a failed flush).
    fn wake_waiters(&mut self) {
        let outcome = match &self.failed {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        };
        let woken = match outcome {
            Ok(()) => {
                let later = self.waiters.split_off(&(self.flushed + 1));
                std::mem::replace(&mut self.waiters, later)
            }
            Err(_) => std::mem::take(&mut self.waiters),
        };
        for (seq, senders) in woken {
            let outcome = match (&outcome, self.refused.remove(&seq)) {
                (Ok(()), Some(refused)) => Err(refused),
                (outcome, _) => outcome.clone(),
            };
            for sender in senders {
                let _ = sender.send(outcome.clone());
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher when commits are pending.
    pending_cv: Condvar,
    /// Wakes blocking waiters after a flush.
    flushed_cv: Condvar,
    /// Pending commits that make the flusher flush without waiting out its window.
    max_batch: u64,
}

/// Counters of a group committer, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlushStats {
    /// Flushes performed.
    pub flushes: u64,
    /// Commits covered by those flushes.
    pub commits: u64,
    /// Time spent flushing, in seconds.
    pub flush_seconds: f64,
}

/// The background flusher of a group-committing store: a store registers each applied commit
/// with [`GroupCommitter::committed`] and hands its [`Ack`] to the caller; the flusher thread
/// calls the store's flush function, which makes everything registered before it durable, at
/// most every `window` (or once `max_batch` commits are pending), and resolves the acks it covered.
#[derive(Debug)]
pub struct GroupCommitter {
    shared: Arc<Shared>,
    stats: Arc<Mutex<FlushStats>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommitter {
    /// Starts the flusher; `flush` makes everything committed so far durable, except the
    /// commits it names as refused (their acks fail with the reason given). It runs on the
    /// flusher's own thread (never on an async worker), so it may block. After a failed flush the
    /// flusher stops: every waiting and later ack fails with the flush's error.
    pub fn start<F>(window: Duration, max_batch: usize, flush: F) -> std::io::Result<Self>
    where
        F: Fn() -> Result<Refused, StoreError> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            pending_cv: Condvar::new(),
            flushed_cv: Condvar::new(),
            max_batch: max_batch.max(1) as u64,
        });
        let stats = Arc::new(Mutex::new(FlushStats::default()));
        let thread = std::thread::Builder::new()
            .name("flowbot-group-commit".into())
            .spawn({
                let shared = shared.clone();
                let stats = stats.clone();
                move || flusher_loop(&shared, &stats, window, flush)
            })?;
        Ok(Self {
            shared,
            stats,
            thread: Some(thread),
        })
    }

    /// Registers one applied commit; call it after the commit's transaction has returned.
    pub fn committed(&self) -> Ack {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.committed += 1;
        let seq = state.committed;
        state.oldest_untaken.get_or_insert_with(Instant::now);
        let pending = state.committed - state.flushed;
        drop(state);
        // The flusher sleeps either idle (nothing pending) or out its window (until the batch
        // is full); it needs waking only when one of those ends, not on every commit.
        if pending == 1 || pending == self.shared.max_batch {
            self.shared.pending_cv.notify_one();
        }
        Ack {
            pending: Pending::Group(self.shared.clone(), seq),
            last_notification: NotificationNumber::None,
        }
    }

    /// An acknowledgement that resolves once every commit registered so far is durable, without
    /// registering one: a read barrier for a store whose reads see only flushed data.
    pub fn barrier(&self) -> Ack {
        let state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.flushed >= state.committed && state.failed.is_none() {
            return Ack::ready();
        }
        Ack {
            pending: Pending::Group(self.shared.clone(), state.committed),
            last_notification: NotificationNumber::None,
        }
    }

    /// Flush counters so far.
    pub fn stats(&self) -> FlushStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown = true;
        self.shared.pending_cv.notify_all();
        if let Some(thread) = self.thread.take() {
            // The flusher flushes what is pending before it stops; a panic there has already
            // been reported through `failed`.
            let _ = thread.join();
        }
        let stats = self.stats();
        tracing::info!(
            flushes = stats.flushes,
            commits = stats.commits,
            flush_seconds = stats.flush_seconds,
            "group commit stopped"
        );
    }
}

fn flusher_loop<F>(shared: &Shared, stats: &Mutex<FlushStats>, window: Duration, flush: F)
where
    F: Fn() -> Result<Refused, StoreError>,
{
    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        while state.committed == state.flushed && !state.shutdown {
            state = shared
                .pending_cv
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.committed == state.flushed && state.shutdown {
            return;
        }
        // Collect more commits until the oldest pending one has waited `window` (commits made
        // while the last flush ran may have waited that long already), unless enough are pending.
        let deadline = state.oldest_untaken.unwrap_or_else(Instant::now) + window;
        while !state.shutdown && state.committed - state.flushed < shared.max_batch {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = shared
                .pending_cv
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let target = state.committed;
        let covered = target - state.flushed;
        state.oldest_untaken = None;
        drop(state);
        let flush_started = Instant::now();
        let result = flush();
        let flush_time = flush_started.elapsed().as_secs_f64();
        state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(refused) => {
                state.refused.extend(refused);
                state.flushed = target;
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.flushes += 1;
                s.commits += covered;
                s.flush_seconds += flush_time;
            }
            Err(err) => {
                tracing::error!(error = %err, "group flush failed; no further step is acknowledged");
                state.failed = Some(err);
                state.wake_waiters();
                shared.flushed_cv.notify_all();
                return;
            }
        }
        state.wake_waiters();
        shared.flushed_cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A committer whose flushes return what the test sends, when it sends it.
    fn gated_committer() -> (GroupCommitter, mpsc::Sender<Result<Refused, StoreError>>) {
        let (release, gate) = mpsc::channel::<Result<Refused, StoreError>>();
        let gate = Mutex::new(gate);
        let flush = move || {
            gate.lock()
                .unwrap()
                .recv()
                .unwrap_or_else(|_| Err(StoreError::FlushFailed("gate closed".into())))
        };
        (
            GroupCommitter::start(Duration::ZERO, 512, flush).unwrap(),
            release,
        )
    }

    #[tokio::test]
    async fn async_waiters_resolve_after_the_flush_that_covers_them() {
        let (committer, release) = gated_committer();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(committer.committed().durable()))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "acknowledged before any flush returned"
        );
        release.send(Ok(Refused::new())).unwrap();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        let late = committer.committed();
        release.send(Ok(Refused::new())).unwrap();
        late.durable().await.unwrap();
        assert!(committer.stats().commits >= 4);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_waiter_and_every_later_commit() {
        let (committer, release) = gated_committer();
        let waiter = tokio::spawn(committer.committed().durable());
        release
            .send(Err(StoreError::FlushFailed("disk gone".into())))
            .unwrap();
        let err = waiter.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        let after = committer.committed().durable().await.unwrap_err();
        assert!(after.to_string().contains("disk gone"), "{after}");
    }

    #[tokio::test]
    async fn a_commit_refused_by_a_flush_fails_alone() {
        let (committer, release) = gated_committer();
        let acks: Vec<Ack> = (0..3).map(|_| committer.committed()).collect();
        let refused = acks[1].number().unwrap();
        let waiters: Vec<_> = acks
            .into_iter()
            .map(|ack| tokio::spawn(ack.durable()))
            .collect();
        let fenced = StoreError::Fenced {
            path: "db".into(),
            shards: vec![7],
            owner: "node-b".into(),
        };
        release.send(Ok(vec![(refused, fenced)])).unwrap();
        let outcomes: Vec<_> = futures_outcomes(waiters).await;
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(
            matches!(&outcomes[1], Err(StoreError::Fenced { shards, .. }) if shards == &[7]),
            "{outcomes:?}"
        );
        // The committer goes on.
        let later = committer.committed();
        release.send(Ok(Refused::new())).unwrap();
        later.durable().await.unwrap();
    }

    #[test]
    fn a_commit_made_during_a_flush_is_flushed_next_once_it_has_waited_its_window() {
        let window = Duration::from_millis(500);
        let (release, gate) = mpsc::channel::<Result<Refused, StoreError>>();
        let (started, flush_started) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let flush = move || {
            started.send(()).unwrap();
            gate.lock().unwrap().recv().unwrap()
        };
        let committer = GroupCommitter::start(window, 512, flush).unwrap();
        let first = committer.committed();
        flush_started.recv().unwrap();
        // Made while the first flush runs, which then outlasts the commit's window.
        let second = committer.committed();
        std::thread::sleep(window + Duration::from_millis(200));
        release.send(Ok(Refused::new())).unwrap();
        first.wait().unwrap();
        let flushed_next = flush_started.recv_timeout(window / 2).is_ok();
        release.send(Ok(Refused::new())).unwrap();
        second.wait().unwrap();
        assert!(
            flushed_next,
            "the commit waited out a second window after the flush it missed"
        );
        assert_eq!(committer.stats().flushes, 2);
    }

    async fn futures_outcomes(
        waiters: Vec<tokio::task::JoinHandle<Result<(), StoreError>>>,
    ) -> Vec<Result<(), StoreError>> {
        let mut outcomes = Vec::new();
        for waiter in waiters {
            outcomes.push(waiter.await.unwrap());
        }
        outcomes
    }
}
