//! Flowbot engine: the process model, the BPMN and YAML front ends, the graph compiler, the
//! executor, business rules and stores. See `ARCHITECTURE.md` at the repository root for the map.

pub mod bpmn;
pub mod clock;
pub mod diagnostics;
pub mod executor;
pub mod graph;
pub mod llm;
pub mod model;
pub mod rules;
pub mod runtime;
pub mod script;
pub mod store;
#[cfg(test)]
mod testkit;
pub mod timer;
pub mod yaml;
