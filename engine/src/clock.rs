//! Time as the engine sees it: [`WallClock`] in production, [`VirtualClock`] in tests and in
//! `flowbot run --clock virtual`, where waiting for a timer jumps straight to its due time (a
//! three-day timer finishes in milliseconds).
//!
//! Times are milliseconds since the Unix epoch (UTC) throughout the engine.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of the current time that can wait for a moment.
pub trait Clock: Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Resolves at `due_ms` (at once when it has passed). A virtual clock jumps to `due_ms`.
    fn sleep_until(&self, due_ms: u64) -> Sleep;

    /// Whether time only moves when the engine waits for it. The engine then jumps only while
    /// no handler is running, so that virtual time never overtakes work in progress.
    fn is_virtual(&self) -> bool {
        false
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        wall_now_ms()
    }

    fn sleep_until(&self, due_ms: u64) -> Sleep {
        let wait = due_ms.saturating_sub(wall_now_ms());
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// The current system time in milliseconds since the Unix epoch.
pub fn wall_now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_millis() as u64
}

/// A clock that stands still until the engine waits for a timer, then jumps to its due time.
/// Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    now: Arc<AtomicU64>,
}

impl VirtualClock {
    /// A virtual clock starting at `start_ms`.
    pub fn starting_at(start_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// A virtual clock starting at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::starting_at(wall_now_ms())
    }

    /// Moves time forward by `by` (never backwards).
    pub fn advance(&self, by: std::time::Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Moves time forward to `to_ms`; earlier times are ignored.
    pub fn advance_to(&self, to_ms: u64) {
        self.now.fetch_max(to_ms, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, due_ms: u64) -> Sleep {
        self.advance_to(due_ms);
        Box::pin(std::future::ready(()))
    }

    fn is_virtual(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_clock_jumps_to_the_due_time_without_waiting() {
        let clock = VirtualClock::starting_at(1_000);
        let three_days = 3 * 24 * 3600 * 1000;
        clock.sleep_until(1_000 + three_days).await;
        assert_eq!(clock.now_ms(), 1_000 + three_days);
        // Sleeping until a past moment does not move time backwards.
        clock.sleep_until(5).await;
        assert_eq!(clock.now_ms(), 1_000 + three_days);
        clock.advance(std::time::Duration::from_millis(10));
        assert_eq!(clock.now_ms(), 1_000 + three_days + 10);
    }

    #[tokio::test]
    async fn wall_clock_sleeps_until_the_moment() {
        let clock = WallClock;
        let due = clock.now_ms() + 20;
        clock.sleep_until(due).await;
        assert!(clock.now_ms() >= due);
        assert!(!clock.is_virtual());
    }
}
