//! [`ManualClock`]: time that stands still until someone moves it (`clock = "manual"`), for a
//! service whose day is driven from outside: a demo or an end-to-end test advances it through
//! the admin API, and the timers due by then fire.
//!
//! Invariant: time never goes backwards; a sleeper wakes exactly when the time it waits for is
//! reached, and never before.

use flowbot_engine::clock::{wall_now_ms, Clock, Sleep};
use tokio::sync::watch;

/// A clock moved only by [`ManualClock::advance_to`].
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<u64>,
}

impl ManualClock {
    /// A manual clock standing at `start_ms`.
    pub fn starting_at(start_ms: u64) -> Self {
        Self {
            now: watch::Sender::new(start_ms),
        }
    }

    /// A manual clock standing at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::starting_at(wall_now_ms())
    }

    /// Moves time to `to_ms` (an earlier time leaves it where it is); returns the time now.
    pub fn advance_to(&self, to_ms: u64) -> u64 {
        self.now.send_if_modified(|now| {
            let moved = to_ms > *now;
            if moved {
                *now = to_ms;
            }
            moved
        });
        *self.now.borrow()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, due_ms: u64) -> Sleep {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; should it go, the sleeper stays asleep.
            if now.wait_for(|now| *now >= due_ms).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sleepers_wake_when_the_clock_reaches_their_time_and_time_never_goes_back() {
        let clock = ManualClock::starting_at(1_000);
        let sleep = clock.sleep_until(5_000);
        tokio::pin!(sleep);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut sleep)
                .await
                .is_err(),
            "asleep before its time"
        );
        assert_eq!(clock.advance_to(4_999), 4_999);
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut sleep)
            .await
            .is_err());
        assert_eq!(clock.advance_to(5_000), 5_000);
        tokio::time::timeout(Duration::from_secs(5), &mut sleep)
            .await
            .expect("awake at its time");
        assert_eq!(clock.advance_to(10), 5_000, "never backwards");
        assert_eq!(clock.now_ms(), 5_000);
        clock.sleep_until(3_000).await;
    }
}
