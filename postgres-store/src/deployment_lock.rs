//! The cluster-wide deployment lock of nodes sharing a database: a session-level advisory lock
//! (`pg_try_advisory_lock`) on a connection of its own, held while a node chooses a version
//! number or moves a timer start event's schedule and commits it (see
//! [`Store::lock_deployments`](flowbot_engine::store::Store::lock_deployments)).
//!
//! The lock belongs to the connection's session, and the connection to the lock: dropping the
//! holder closes the connection, which ends the session and releases the lock. A node that dies
//! holding it, or whose connection breaks, releases it the same way, so it is never left behind.
//! (Not a pooled connection: the engine reads through the pool while it holds the lock, and a
//! pool of one connection would wait for itself.)

use crate::connect::Target;
use crate::error::describe;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// The advisory lock's key (beside the migrations' `…0001` and the writer's node lock `…0002`).
const DEPLOYMENT_LOCK: i64 = 0x666c_6f77_0003;
/// How long a node waits for another node's deployment before it gives up.
pub(crate) const DEPLOYMENT_LOCK_WAIT: Duration = Duration::from_secs(30);
/// Pause between two tries while another node holds the lock.
const RETRY_EVERY: Duration = Duration::from_millis(20);
/// Pause between two connections while the database does not answer.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// The lock: the connection whose session holds it. Dropping it closes the connection.
pub(crate) struct HeldDeploymentLock {
    _session: tokio_postgres::Client,
}

/// Takes the lock on a new connection to `target` (its connection task on `runtime`); `Ok(None)`
/// when another node held it for all of [`DEPLOYMENT_LOCK_WAIT`]. A database that does not
/// answer (restarting) is tried again within the same time, so a deployment or a timer start
/// event's tick waits out a short restart instead of failing.
pub(crate) async fn acquire(
    target: &Target,
    runtime: &Handle,
) -> Result<Option<HeldDeploymentLock>, String> {
    let deadline = Instant::now() + DEPLOYMENT_LOCK_WAIT;
    loop {
        let attempt = match target.connect(runtime).await {
            Ok(session) => try_lock(session, deadline).await,
            Err(err) => Err(err.to_string()),
        };
        match attempt {
            Err(_) if Instant::now() < deadline => tokio::time::sleep(RECONNECT_EVERY).await,
            done => return done,
        }
    }
}

/// Polls for the lock on `session` until `deadline`.
async fn try_lock(
    session: tokio_postgres::Client,
    deadline: Instant,
) -> Result<Option<HeldDeploymentLock>, String> {
    loop {
        let taken: bool = session
            .query_one("SELECT pg_try_advisory_lock($1)", &[&DEPLOYMENT_LOCK])
            .await
            .map_err(|e| describe(&e))?
            .get(0);
        if taken {
            return Ok(Some(HeldDeploymentLock { _session: session }));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}
