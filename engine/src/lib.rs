//! Flowbot engine: the process model, the BPMN and YAML front ends, the graph compiler, the
//! executor, business rules and stores. See `ARCHITECTURE.md` at the repository root for the map.
//!
//! The main entry points are re-exported here: read a file with [`parse_yaml`] or
//! [`parse_bpmn`], build an [`Engine`] with [`Engine::builder`] (a [`Store`], [`RuleEngine`]
//! rules, [`Handler`]s), deploy, start, complete; [`InstanceInfo`] is what it reports.

pub mod bpmn;
pub mod clock;
pub mod diagnostics;
pub mod dmn;
pub mod executor;
pub mod feel;
pub mod graph;
pub mod llm;
pub mod model;
pub mod rules;
pub mod runtime;
pub mod script;
pub mod shard;
pub mod store;
#[cfg(test)]
mod testkit;
pub mod timer;
pub mod yaml;

pub use bpmn::parse_bpmn;
pub use diagnostics::Diagnostic;
pub use executor::{InstanceStatus, WaitType};
pub use model::Definitions;
pub use rules::{RuleEngine, RulesConfig, SharedRuleHooks};
pub use runtime::{
    handler, Engine, EngineBuilder, EngineError, EngineOptions, Handler, HandlerError,
    InstanceFilter, InstanceInfo, JobContext, Notification, StartRequest, TaskFilter,
};
pub use store::{Durability, MemoryStore, SledStore, Store};
pub use yaml::parse_yaml;
