//! Group commit: the commits of many instances become durable with one flush, and each commit
//! is acknowledged only after the flush that covers it. Two background threads share the work
//! (see [`GroupCommitter`]): one applies groups to the storage, the other syncs them.

use super::StoreError;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Resolves once a commit is durable. A commit to a store that flushes synchronously (or to
/// memory) is durable at once.
#[derive(Debug)]
#[must_use = "a step is not durable until its Ack has resolved"]
pub struct Ack {
    pending: Option<(Arc<Shared>, u64)>,
}

impl Ack {
    /// An acknowledgement that is already durable.
    pub fn ready() -> Self {
        Self { pending: None }
    }

    /// Whether the commit is known to be durable now, without waiting.
    pub fn is_durable(&self) -> bool {
        match &self.pending {
            None => true,
            Some((shared, seq)) => shared.lock().flushed >= *seq,
        }
    }

    /// Blocks the current thread until the commit is durable.
    pub fn wait(self) -> Result<(), StoreError> {
        let Some((shared, seq)) = self.pending else { return Ok(()) };
        let mut state = shared.lock();
        loop {
            if let Some(err) = &state.failed {
                return Err(StoreError::FlushFailed(err.clone()));
            }
            if state.flushed >= seq {
                return Ok(());
            }
            state = shared.flushed_cv.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits (asynchronously) until the commit is durable.
    pub async fn durable(self) -> Result<(), StoreError> {
        let Some((shared, seq)) = self.pending else { return Ok(()) };
        // Each waiter is woken once, by the flush that covers its commit (not by every flush).
        let woken = {
            let mut state = shared.lock();
            if let Some(err) = &state.failed {
                return Err(StoreError::FlushFailed(err.clone()));
            }
            if state.flushed >= seq {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.entry(seq).or_default().push(tx);
            rx
        };
        match woken.await {
            Ok(result) => result.map_err(StoreError::FlushFailed),
            Err(_) => Err(StoreError::FlushFailed("the store was closed before the step was flushed".into())),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Number of commits registered so far.
    committed: u64,
    /// Number of commits the applier has handed to the storage (written, not yet synced).
    applied: u64,
    /// Number of commits known to be on disk.
    flushed: u64,
    /// Set when applying or syncing failed: every waiter gets the error.
    failed: Option<String>,
    /// Set when the store closes.
    shutdown: bool,
    /// Set when the applier has stopped: the syncer syncs what is applied, then stops too.
    applier_done: bool,
    /// Async waiters by the commit they wait for.
    waiters: BTreeMap<u64, Vec<oneshot::Sender<Result<(), String>>>>,
}

impl State {
    /// Wakes the async waiters of every commit up to `flushed` (all of them, with the error,
    /// after a failure).
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
        for sender in woken.into_values().flatten() {
            let _ = sender.send(outcome.clone());
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the applier when commits are pending.
    pending_cv: Condvar,
    /// Wakes the syncer when commits were applied (or the applier stopped).
    applied_cv: Condvar,
    /// Wakes blocking waiters after a sync.
    flushed_cv: Condvar,
    /// Pending commits that make the applier apply without waiting out its window.
    max_batch: u64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failure of either stage: no later commit is acknowledged.
    fn fail(&self, mut state: std::sync::MutexGuard<'_, State>, stage: &str, err: String) {
        tracing::error!(error = %err, stage, "group commit failed; no further step is acknowledged");
        state.failed = Some(err);
        state.applier_done |= stage == "apply";
        state.wake_waiters();
        self.applied_cv.notify_all();
        self.flushed_cv.notify_all();
    }
}

/// Counters of a group committer, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlushStats {
    /// Syncs (flushes to disk) performed.
    pub flushes: u64,
    /// Commits covered by those syncs.
    pub commits: u64,
    /// Time spent syncing, in seconds.
    pub flush_seconds: f64,
    /// Batches applied to the storage before their sync.
    pub applies: u64,
    /// Time spent applying batches, in seconds.
    pub apply_seconds: f64,
}

/// The two background threads of a group-committing store.
///
/// Making a group durable has two stages: *apply* (hand the group's writes to the storage: CPU
/// work) and *sync* (flush them to disk: mostly waiting on the device). They run on separate
/// threads so that the next group is applied while the previous one syncs; a sync covers every
/// group applied before it started.
#[derive(Debug)]
pub(crate) struct GroupCommitter {
    shared: Arc<Shared>,
    stats: Arc<Mutex<FlushStats>>,
    applier: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
}

impl GroupCommitter {
    /// Starts the applier and the syncer. `apply` hands everything committed so far to the
    /// storage; `sync` makes everything applied so far durable.
    pub(crate) fn start<A, S>(window: Duration, max_batch: usize, apply: A, sync: S) -> std::io::Result<Self>
    where
        A: Fn() -> Result<(), String> + Send + 'static,
        S: Fn() -> Result<(), String> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            pending_cv: Condvar::new(),
            applied_cv: Condvar::new(),
            flushed_cv: Condvar::new(),
            max_batch: max_batch.max(1) as u64,
        });
        let stats = Arc::new(Mutex::new(FlushStats::default()));
        let syncer = std::thread::Builder::new().name("flowbot-group-sync".into()).spawn({
            let shared = shared.clone();
            let stats = stats.clone();
            move || syncer_loop(&shared, &stats, sync)
        })?;
        let applier = std::thread::Builder::new().name("flowbot-group-apply".into()).spawn({
            let shared = shared.clone();
            let stats = stats.clone();
            move || applier_loop(&shared, &stats, window, apply)
        });
        let applier = match applier {
            Ok(applier) => applier,
            Err(err) => {
                let mut state = shared.lock();
                state.shutdown = true;
                state.applier_done = true;
                drop(state);
                shared.applied_cv.notify_all();
                let _ = syncer.join();
                return Err(err);
            }
        };
        Ok(Self { shared, stats, applier: Some(applier), syncer: Some(syncer) })
    }

    /// Registers one commit; call it after the commit's writes are readable.
    pub(crate) fn committed(&self) -> Ack {
        let mut state = self.shared.lock();
        state.committed += 1;
        let seq = state.committed;
        let pending = state.committed - state.applied;
        drop(state);
        // The applier sleeps either idle (nothing pending) or out its window (until the batch
        // is full); it needs waking only when one of those ends, not on every commit.
        if pending == 1 || pending == self.shared.max_batch {
            self.shared.pending_cv.notify_one();
        }
        Ack { pending: Some((self.shared.clone(), seq)) }
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> FlushStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.pending_cv.notify_all();
        // The applier applies what is pending before it stops, the syncer then syncs it; a
        // panic in either has already been reported through `failed`.
        if let Some(applier) = self.applier.take() {
            let _ = applier.join();
        }
        if let Some(syncer) = self.syncer.take() {
            let _ = syncer.join();
        }
        let stats = self.stats();
        tracing::info!(
            flushes = stats.flushes,
            commits = stats.commits,
            flush_seconds = stats.flush_seconds,
            apply_seconds = stats.apply_seconds,
            "group commit stopped"
        );
    }
}

fn applier_loop<A>(shared: &Shared, stats: &Mutex<FlushStats>, window: Duration, apply: A)
where
    A: Fn() -> Result<(), String>,
{
    let mut state = shared.lock();
    loop {
        while state.committed == state.applied && !state.shutdown && state.failed.is_none() {
            state = shared.pending_cv.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.failed.is_some() || (state.committed == state.applied && state.shutdown) {
            state.applier_done = true;
            shared.applied_cv.notify_all();
            return;
        }
        // Collect more commits for at most `window`, unless enough are pending already.
        let deadline = Instant::now() + window;
        while !state.shutdown && state.committed - state.applied < shared.max_batch {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = shared.pending_cv.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        let target = state.committed;
        drop(state);
        let started = Instant::now();
        let result = apply();
        let seconds = started.elapsed().as_secs_f64();
        state = shared.lock();
        match result {
            Ok(()) => {
                state.applied = target;
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.applies += 1;
                s.apply_seconds += seconds;
                drop(s);
                shared.applied_cv.notify_one();
            }
            Err(err) => return shared.fail(state, "apply", err),
        }
    }
}

fn syncer_loop<S>(shared: &Shared, stats: &Mutex<FlushStats>, sync: S)
where
    S: Fn() -> Result<(), String>,
{
    let mut state = shared.lock();
    loop {
        while state.applied == state.flushed && !state.applier_done && state.failed.is_none() {
            state = shared.applied_cv.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.failed.is_some() || state.applied == state.flushed {
            return;
        }
        let target = state.applied;
        let covered = target - state.flushed;
        drop(state);
        let started = Instant::now();
        let result = sync();
        let seconds = started.elapsed().as_secs_f64();
        state = shared.lock();
        match result {
            Ok(()) => {
                state.flushed = target;
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.flushes += 1;
                s.commits += covered;
                s.flush_seconds += seconds;
                drop(s);
                state.wake_waiters();
                shared.flushed_cv.notify_all();
            }
            Err(err) => return shared.fail(state, "sync", err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A committer whose flushes return what the test sends, when it sends it.
    fn gated_committer() -> (GroupCommitter, mpsc::Sender<Result<(), String>>) {
        let (release, gate) = mpsc::channel::<Result<(), String>>();
        let gate = Mutex::new(gate);
        let flush = move || gate.lock().unwrap().recv().unwrap_or_else(|_| Err("gate closed".into()));
        (GroupCommitter::start(Duration::ZERO, 512, || Ok(()), flush).unwrap(), release)
    }

    #[tokio::test]
    async fn async_waiters_resolve_after_the_flush_that_covers_them() {
        let (committer, release) = gated_committer();
        let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(committer.committed().durable())).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "acknowledged before any flush returned");
        release.send(Ok(())).unwrap();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        let late = committer.committed();
        release.send(Ok(())).unwrap();
        late.durable().await.unwrap();
        assert!(committer.stats().commits >= 4);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_waiter_and_every_later_commit() {
        let (committer, release) = gated_committer();
        let waiter = tokio::spawn(committer.committed().durable());
        release.send(Err("disk gone".into())).unwrap();
        let err = waiter.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        let after = committer.committed().durable().await.unwrap_err();
        assert!(after.to_string().contains("disk gone"), "{after}");
    }

    #[tokio::test]
    async fn a_sync_acknowledges_only_commits_applied_before_it_started() {
        // The applier is held inside its second apply; the first group syncs meanwhile.
        let (enter_apply, applies) = mpsc::channel::<()>();
        let (release_apply, apply_gate) = mpsc::channel::<()>();
        let apply_gate = Mutex::new(apply_gate);
        let apply = move || {
            let _ = enter_apply.send(());
            apply_gate.lock().unwrap().recv().map_err(|_| "apply gate closed".to_string())
        };
        let committer = GroupCommitter::start(Duration::ZERO, 512, apply, || Ok(())).unwrap();
        let first = tokio::spawn(committer.committed().durable());
        applies.recv().unwrap();
        release_apply.send(()).unwrap();
        first.await.unwrap().unwrap();
        let second = committer.committed();
        applies.recv().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_durable(), "a commit was acknowledged before its group was applied and synced");
        release_apply.send(()).unwrap();
        second.durable().await.unwrap();
        let stats = committer.stats();
        assert_eq!((stats.applies, stats.commits), (2, 2));
    }

    #[tokio::test]
    async fn a_failed_apply_fails_the_waiters_and_nothing_is_synced() {
        let syncs = Arc::new(Mutex::new(0));
        let counted = syncs.clone();
        let sync = move || {
            *counted.lock().unwrap() += 1;
            Ok(())
        };
        let committer = GroupCommitter::start(Duration::ZERO, 512, || Err("tree full".to_string()), sync).unwrap();
        let err = committer.committed().durable().await.unwrap_err();
        assert!(err.to_string().contains("tree full"), "{err}");
        drop(committer);
        assert_eq!(*syncs.lock().unwrap(), 0);
    }
}
