//! Flowbot engine: the process model, the BPMN and YAML front ends, the graph compiler, the
//! executor, business rules and stores. See `ARCHITECTURE.md` at the repository root for the map.

pub mod diagnostics;
pub mod llm;
pub mod model;
pub mod script;
