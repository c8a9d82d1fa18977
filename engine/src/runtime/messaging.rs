//! Messages and signals: correlation to waiting instances, message and signal start events,
//! buffering of early messages, and delivery of the outbox (events thrown by nodes).
//!
//! Invariant: correlation and buffering are serialized (a message is either delivered to a
//! subscriber or buffered, never lost between the two); an outbox entry is removed only after it
//! was delivered.

use super::api::{Correlation, EngineError};
use super::record::{
    buffered_prefix, decode, encode, inbox_key, message_subscription_prefix,
    signal_subscription_prefix, BufferedMessage, Delivery, HistoryEntry, InboxEntry, Subscriber,
};
use super::versions::{Deployed, StartTrigger};
use super::Inner;
use crate::executor::{Wait, WaitKind};
use crate::store::{StepCommit, Table};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One outbox entry: a message or signal a node threw, delivered once its turn is durable.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub(super) struct OutboxEntry {
    /// The throwing instance (its own catches fired in the throwing step).
    #[serde(default)]
    pub instance: Option<String>,
    /// The throwing node.
    pub node: String,
    /// What it threw.
    pub event: crate::graph::ThrownEvent,
    /// The thrower's process variables when it threw a message: an instance the message starts
    /// (at a message start event) starts with them; a waiting receiver gets none of them.
    #[serde(default)]
    pub variables: Map<String, Value>,
}

impl Inner {
    /// Delivers a message to the instance waiting for `name` with `correlation_key`; when none
    /// waits, keeps it for the configured time and delivers it to the first instance that does.
    pub(super) async fn correlate(
        self: &Arc<Self>,
        name: &str,
        correlation_key: Option<&str>,
        variables: Map<String, Value>,
    ) -> Result<Correlation, EngineError> {
        self.correlate_or_start(name, correlation_key, variables, None)
            .await
    }

    /// [`Self::correlate`], where an instance the message starts gets `start_variables` instead
    /// of `variables` when given (a message thrown by a process: the thrower's variables start
    /// the new instance, but never reach a waiting one).
    async fn correlate_or_start(
        self: &Arc<Self>,
        name: &str,
        correlation_key: Option<&str>,
        variables: Map<String, Value>,
        start_variables: Option<Map<String, Value>>,
    ) -> Result<Correlation, EngineError> {
        let inner = self;
        let (target, buffered) = {
            let _lock = inner.correlation.lock().unwrap_or_else(|e| e.into_inner());
            let subscribers = inner.store.scan(
                Table::Subscriptions,
                &message_subscription_prefix(name, correlation_key),
            )?;
            let message_start = match subscribers.first() {
                Some(_) => None,
                None => inner
                    .triggered_starts(
                        |start| matches!(start, StartTrigger::Message { name: n, .. } if n == name),
                    )
                    .into_iter()
                    .next(),
            };
            match (subscribers.first(), message_start) {
                (Some((_, value)), _) => (
                    Some(decode::<Subscriber>(value, "subscription").map_err(EngineError::Decode)?),
                    None,
                ),
                (None, Some((deployed, node))) => {
                    let history = vec![HistoryEntry::StartedByMessage {
                        node: node.clone(),
                        name: name.to_string(),
                        correlation_key: correlation_key.map(str::to_string),
                    }];
                    let _busy = inner.busy();
                    let (ack, effects, info) = inner.begin_instance(
                        deployed,
                        Some(&node),
                        start_variables.unwrap_or(variables),
                        correlation_key.map(str::to_string),
                        history,
                        Vec::new(),
                    )?;
                    drop(_lock);
                    ack.durable().await?;
                    inner.apply_effects(&info.id, effects);
                    return Ok(Correlation::Started { instance: info.id });
                }
                (None, None) => {
                    let expires_ms =
                        inner.clock.now_ms() + inner.options.message_ttl.as_millis() as u64;
                    let mut key = buffered_prefix(name, correlation_key);
                    key.extend_from_slice(
                        &inner
                            .message_seq
                            .fetch_add(1, Ordering::Relaxed)
                            .to_be_bytes(),
                    );
                    key.extend_from_slice(&inner.message_key_tag.to_be_bytes());
                    let mut commit = StepCommit::default();
                    commit.put(
                        Table::BufferedMessages,
                        key,
                        encode(&BufferedMessage {
                            variables: variables.clone(),
                            expires_ms,
                        }),
                    );
                    (None, Some((inner.store.commit(commit)?, expires_ms)))
                }
            }
        };
        if let Some((ack, expires_ms)) = buffered {
            ack.durable().await?;
            tracing::debug!(message = name, "no subscriber yet: message buffered");
            if inner.store.shared() {
                inner.recheck_after_buffering(name, correlation_key).await?;
            }
            return Ok(Correlation::Buffered { expires_ms });
        }
        let sub = target.expect("a subscriber when not buffered");
        let history = vec![HistoryEntry::MessageCorrelated {
            name: name.to_string(),
            correlation_key: correlation_key.map(str::to_string),
            activation: sub.activation,
        }];
        let driven = inner
            .drive(
                &sub.instance,
                sub.activation,
                "message wait",
                is_message_wait,
                variables.clone(),
                history,
                Vec::new(),
            )
            .await;
        match driven {
            Ok(_) => Ok(Correlation::Delivered {
                instance: sub.instance,
                activation: sub.activation,
            }),
            Err(EngineError::NotOwned { .. }) => {
                let delivery = Delivery::Message {
                    name: name.to_string(),
                    correlation_key: correlation_key.map(str::to_string),
                };
                let (instance, activation) = (sub.instance.clone(), sub.activation);
                inner.send_to_inbox(sub, delivery, variables).await?;
                Ok(Correlation::Queued {
                    instance,
                    activation,
                })
            }
            Err(err) => Err(err),
        }
    }

    /// On a store other engines share, a message buffered here and a wait subscribed there at
    /// the same moment could each miss the other (this engine's correlation lock serializes only
    /// its own). Once the message is durable, the subscriptions are read again: every waiter
    /// found now looks for buffered messages itself (here, or through its owner's inbox), and a
    /// waiter that subscribed later looks after its subscription anyway. Only a waiter's own
    /// look takes a buffered message, so it is delivered once.
    pub(super) async fn recheck_after_buffering(
        self: &Arc<Self>,
        name: &str,
        correlation_key: Option<&str>,
    ) -> Result<(), EngineError> {
        let subscribers = self.store.scan(
            Table::Subscriptions,
            &message_subscription_prefix(name, correlation_key),
        )?;
        for (_, value) in subscribers {
            let sub: Subscriber = decode(&value, "subscription").map_err(EngineError::Decode)?;
            if self.owned().holds(&sub.instance) {
                self.take_buffered(&sub.instance, name, correlation_key, sub.activation)
                    .await?;
            } else {
                let delivery = Delivery::CheckBuffered {
                    name: name.to_string(),
                    correlation_key: correlation_key.map(str::to_string),
                };
                self.send_to_inbox(sub, delivery, Map::new()).await?;
            }
        }
        Ok(())
    }

    /// Keeps a message or signal for a wait of a shard another engine owns in the store's inbox,
    /// where the owner takes it ([`Self::deliver_inbox`]); returns once that is durable.
    async fn send_to_inbox(
        &self,
        to: Subscriber,
        delivery: Delivery,
        variables: Map<String, Value>,
    ) -> Result<(), EngineError> {
        let mut commit = StepCommit::default();
        commit.put(
            Table::Inbox,
            inbox_key(&to.instance, to.activation),
            encode(&InboxEntry {
                to,
                delivery,
                variables,
            }),
        );
        self.store.commit(commit)?.durable().await?;
        Ok(())
    }

    /// Delivers the inbox entries of the shards this engine owns, each in the turn that removes
    /// it (so exactly once). A message whose wait is gone meanwhile is correlated anew; a signal
    /// whose wait is gone is dropped.
    pub(super) async fn deliver_inbox(self: &Arc<Self>) {
        let _delivering = self.delivering.lock().await;
        let entries = match self.store.scan(Table::Inbox, b"") {
            Ok(entries) => entries,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the inbox");
                return;
            }
        };
        let owned = self.owned();
        for (key, value) in entries {
            if !key
                .first()
                .is_some_and(|&shard| owned.contains(u32::from(shard)))
            {
                continue;
            }
            let entry: InboxEntry = match decode(&value, "inbox entry") {
                Ok(entry) => entry,
                Err(err) => {
                    tracing::error!(error = %err, "dropping an unreadable inbox entry");
                    self.remove_from_inbox(key).await;
                    continue;
                }
            };
            let InboxEntry {
                to,
                delivery,
                variables,
            } = entry;
            let (history, accepts, expected): (_, fn(&Wait) -> bool, _) = match &delivery {
                Delivery::Message {
                    name,
                    correlation_key,
                } => (
                    HistoryEntry::MessageCorrelated {
                        name: name.clone(),
                        correlation_key: correlation_key.clone(),
                        activation: to.activation,
                    },
                    is_message_wait,
                    "message wait",
                ),
                Delivery::Signal { name } => (
                    HistoryEntry::SignalReceived {
                        name: name.clone(),
                        activation: to.activation,
                    },
                    is_signal_wait,
                    "signal wait",
                ),
                Delivery::CheckBuffered {
                    name,
                    correlation_key,
                } => {
                    let looked = self
                        .take_buffered(
                            &to.instance,
                            name,
                            correlation_key.as_deref(),
                            to.activation,
                        )
                        .await;
                    match looked {
                        Ok(()) => self.remove_from_inbox(key).await,
                        Err(EngineError::NotOwned { .. }) => {}
                        Err(err) => {
                            tracing::error!(instance = %to.instance, error = %err, "looking for a buffered message failed; the request stays")
                        }
                    }
                    continue;
                }
            };
            let removal = vec![(Table::Inbox, key.clone(), None)];
            let driven = self
                .drive(
                    &to.instance,
                    to.activation,
                    expected,
                    accepts,
                    variables.clone(),
                    vec![history],
                    removal,
                )
                .await;
            match driven {
                Ok(_) => {}
                Err(EngineError::NoSuchWait { .. } | EngineError::Exec(_)) => {
                    self.remove_from_inbox(key).await;
                    if let Delivery::Message {
                        name,
                        correlation_key,
                    } = delivery
                    {
                        if let Err(err) = self
                            .correlate(&name, correlation_key.as_deref(), variables)
                            .await
                        {
                            tracing::error!(message = %name, error = %err, "a message whose wait was gone could not be correlated anew");
                        }
                    }
                }
                // The shard moved on meanwhile: its new owner delivers it.
                Err(EngineError::NotOwned { .. }) => {}
                Err(err) => {
                    tracing::error!(instance = %to.instance, error = %err, "delivering an inbox entry failed; it stays")
                }
            }
        }
    }

    /// Removes one inbox entry (its delivery is over).
    async fn remove_from_inbox(&self, key: Vec<u8>) {
        let mut commit = StepCommit::default();
        commit.remove(Table::Inbox, key);
        let removed = match self.store.commit(commit) {
            Ok(ack) => ack.durable().await,
            Err(err) => Err(err),
        };
        if let Err(err) = removed {
            tracing::error!(error = %err, "cannot remove an inbox entry");
        }
    }

    /// The triggered start events that `matches`, with their latest deployed versions (processes
    /// in id order, start events in document order).
    pub(super) fn triggered_starts(
        &self,
        matches: impl Fn(&StartTrigger) -> bool,
    ) -> Vec<(Arc<Deployed>, String)> {
        let versions = self.versions.read().unwrap_or_else(|e| e.into_inner());
        let mut found = Vec::new();
        for deployed in versions.latest_all() {
            for start in deployed.starts.iter().filter(|start| matches(start)) {
                found.push((deployed.clone(), start.node().to_string()));
            }
        }
        found
    }

    /// Delivers a signal to every instance waiting for it and starts an instance of every latest
    /// version with a signal start event of that name; returns how many waits and starts it reached.
    /// The waits of `thrower` are skipped: they caught the signal in the throwing step.
    pub(super) async fn signal(
        self: &Arc<Self>,
        name: &str,
        variables: Map<String, Value>,
        thrower: Option<&str>,
    ) -> Result<usize, EngineError> {
        let subscribers = self
            .store
            .scan(Table::Subscriptions, &signal_subscription_prefix(name))?;
        let mut delivered = 0;
        let starts = self.triggered_starts(
            |start| matches!(start, StartTrigger::Signal { name: n, .. } if n == name),
        );
        for (deployed, node) in starts {
            let history = vec![HistoryEntry::StartedBySignal {
                node: node.clone(),
                name: name.to_string(),
            }];
            let _busy = self.busy();
            let (ack, effects, info) = self.begin_instance(
                deployed,
                Some(&node),
                variables.clone(),
                None,
                history,
                Vec::new(),
            )?;
            ack.durable().await?;
            self.apply_effects(&info.id, effects);
            delivered += 1;
        }
        for (_, value) in subscribers {
            let sub: Subscriber = decode(&value, "subscription").map_err(EngineError::Decode)?;
            if thrower == Some(sub.instance.as_str()) {
                continue;
            }
            let history = vec![HistoryEntry::SignalReceived {
                name: name.to_string(),
                activation: sub.activation,
            }];
            match self
                .drive(
                    &sub.instance,
                    sub.activation,
                    "signal wait",
                    is_signal_wait,
                    variables.clone(),
                    history,
                    Vec::new(),
                )
                .await
            {
                Ok(_) => delivered += 1,
                Err(EngineError::NoSuchWait { .. }) => {}
                Err(EngineError::NotOwned { .. }) => {
                    let delivery = Delivery::Signal {
                        name: name.to_string(),
                    };
                    self.send_to_inbox(sub, delivery, variables.clone()).await?;
                    delivered += 1;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(delivered)
    }

    /// A new message wait looks for a message that arrived before it.
    pub(super) async fn take_buffered(
        self: &Arc<Self>,
        instance: &str,
        name: &str,
        correlation_key: Option<&str>,
        activation: u64,
    ) -> Result<(), EngineError> {
        let found = {
            let _lock = self.correlation.lock().unwrap_or_else(|e| e.into_inner());
            let now = self.clock.now_ms();
            let mut found = None;
            for (key, value) in self.store.scan(
                Table::BufferedMessages,
                &buffered_prefix(name, correlation_key),
            )? {
                let message: BufferedMessage =
                    decode(&value, "buffered message").map_err(EngineError::Decode)?;
                if message.expires_ms >= now {
                    found = Some((key, message));
                    break;
                }
            }
            found
        };
        let Some((key, message)) = found else {
            return Ok(());
        };
        let history = vec![HistoryEntry::MessageCorrelated {
            name: name.to_string(),
            correlation_key: correlation_key.map(str::to_string),
            activation,
        }];
        match self
            .drive(
                instance,
                activation,
                "message wait",
                is_message_wait,
                message.variables,
                history,
                vec![(Table::BufferedMessages, key, None)],
            )
            .await
        {
            Ok(_) | Err(EngineError::NoSuchWait { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Delivers pending outbox entries (thrown messages and signals) and removes them.
    pub(super) async fn deliver_outbox(self: &Arc<Self>) {
        let _delivering = self.delivering.lock().await;
        let entries = match self.store.pending_outbox() {
            Ok(entries) => entries,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the outbox");
                return;
            }
        };
        let owned = self.owned();
        for entry in entries {
            let decoded = decode::<OutboxEntry>(&entry.payload, "outbox entry");
            // The engine that owns the thrower's shard delivers its events, once.
            if let Ok(thrown) = &decoded {
                if !owned.holds(thrown.instance.as_deref().unwrap_or_default()) {
                    continue;
                }
            }
            match decoded {
                Ok(OutboxEntry {
                    instance,
                    node,
                    event,
                    variables,
                }) => {
                    let name = event.name.clone().unwrap_or_default();
                    let result = match event.kind.as_str() {
                        "signal" => self
                            .signal(&name, Map::new(), instance.as_deref())
                            .await
                            .map(|n| format!("signal reached {n} waits")),
                        "message" => self
                            .correlate_or_start(&name, None, Map::new(), Some(variables))
                            .await
                            .map(|c| format!("{c:?}")),
                        other => Ok(format!("{other} `{name}` has no receiver in the engine")),
                    };
                    match result {
                        Ok(outcome) => {
                            tracing::debug!(node = %node, outcome = %outcome, "thrown event delivered")
                        }
                        Err(err) => {
                            tracing::error!(node = %node, error = %err, "delivering a thrown event failed; it stays in the outbox");
                            continue;
                        }
                    }
                }
                Err(err) => tracing::error!(error = %err, "dropping an unreadable outbox entry"),
            }
            if let Err(err) = self.store.ack_outbox(&[entry.seq]) {
                tracing::error!(error = %err, "cannot acknowledge an outbox entry");
            }
        }
    }
}

/// Whether `wait` takes messages.
fn is_message_wait(wait: &Wait) -> bool {
    matches!(wait.kind, WaitKind::Message { .. })
}

/// Whether `wait` takes signals.
fn is_signal_wait(wait: &Wait) -> bool {
    matches!(wait.kind, WaitKind::Signal { .. })
}
