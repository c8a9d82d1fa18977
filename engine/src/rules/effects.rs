//! Effects a rule asks for (`notify`, `emit`, `set`).
//!
//! Rules do no I/O: `notify` and `emit` append an [`Effect`] (and `set` a variable update) to the
//! buffer of the evaluation that is running on the current thread; the caller gets the effects
//! back with the rule's outcome, and the engine writes them to the notification log in the same
//! commit as the step. `reject` marks the evaluation as refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;

/// Something a rule asked the engine to do once the step commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// `notify(receiver, message)`: a message to a person or system.
    Notify {
        /// Who receives it (an e-mail address, `"warehouse"`, ...).
        receiver: String,
        /// The text.
        message: String,
        /// The rule that asked for it.
        rule: String,
    },
    /// `emit(event, payload)`: a business event for other systems.
    Emit {
        /// Event name.
        event: String,
        /// Event payload (JSON).
        payload: Value,
        /// The rule that asked for it.
        rule: String,
    },
}

/// What one rule evaluation collected.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub effects: Vec<Effect>,
    pub updates: serde_json::Map<String, Value>,
    pub rejection: Option<String>,
}

struct Frame {
    rule: String,
    collected: Collected,
}

thread_local! {
    static CURRENT: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Runs `evaluate` with an effect buffer for rule `rule` on this thread, and returns its result
/// together with what the rule collected.
pub(crate) fn collecting<T>(rule: &str, evaluate: impl FnOnce() -> T) -> (T, Collected) {
    CURRENT.with(|frames| {
        frames.borrow_mut().push(Frame {
            rule: rule.to_string(),
            collected: Collected::default(),
        })
    });
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            CURRENT.with(|frames| {
                frames.borrow_mut().pop();
            });
        }
    }
    let pop = Pop;
    let result = evaluate();
    let collected = CURRENT.with(|frames| {
        frames
            .borrow_mut()
            .last_mut()
            .map(|f| std::mem::take(&mut f.collected))
            .unwrap_or_default()
    });
    drop(pop);
    (result, collected)
}

/// Error text when an effect function runs outside a rule evaluation (e.g. in a module's
/// top-level code while it is being loaded).
const OUTSIDE_RULE: &str = "can only be called while a rule runs";

fn with_frame<T>(function: &str, f: impl FnOnce(&mut Frame) -> T) -> Result<T, String> {
    CURRENT.with(|frames| match frames.borrow_mut().last_mut() {
        Some(frame) => Ok(f(frame)),
        None => Err(format!("`{function}` {OUTSIDE_RULE}")),
    })
}

/// Records a `notify` effect for the running rule.
pub(crate) fn push_notify(receiver: String, message: String) -> Result<(), String> {
    with_frame("notify", |frame| {
        let rule = frame.rule.clone();
        frame.collected.effects.push(Effect::Notify {
            receiver,
            message,
            rule,
        });
    })
}

/// Records an `emit` effect for the running rule.
pub(crate) fn push_emit(event: String, payload: Value) -> Result<(), String> {
    with_frame("emit", |frame| {
        let rule = frame.rule.clone();
        frame.collected.effects.push(Effect::Emit {
            event,
            payload,
            rule,
        });
    })
}

/// Records a `set(name, value)` variable update for the running rule.
pub(crate) fn push_update(name: String, value: Value) -> Result<(), String> {
    with_frame("set", |frame| {
        frame.collected.updates.insert(name, value);
    })
}

/// Marks the running rule as having rejected its action (the first message wins).
pub(crate) fn push_rejection(message: String) -> Result<(), String> {
    with_frame("reject", |frame| {
        frame.collected.rejection.get_or_insert(message);
    })
}
