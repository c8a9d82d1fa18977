//! Business rules in Rhai: a sandboxed engine with a business standard library (dates, money,
//! text, `notify`/`emit`/`reject`), rule files loaded from a rules folder (compiled once, cached by
//! content hash, imports restricted to the folder), attachment points (guards and event policies)
//! shared by the YAML and BPMN front ends, and hot reload of the folder.
//!
//! Analyst documentation: `docs/rules.md`.

mod check;
mod effects;
mod error;
mod eval;
mod hooks;
mod resolver;
mod ruleset;
mod stdlib;

pub use check::{check_attachments, check_rule_file, check_rule_source, check_rules_path};
pub use effects::Effect;
pub use error::{RuleError, RuleLocation};
pub use eval::{variable_matches, RuleEvent, RuleOutcome, Selection};
pub use hooks::{RuleHooks, SharedRuleHooks};
pub use resolver::{relative_module_path, RulesModuleResolver};
pub use ruleset::{
    rule_name, rules_runtime, CompiledRule, ReloadReport, RuleEngine, RuleSet, RulesConfig,
};
pub use stdlib::{Clock, Rounding, StdlibConfig};

#[cfg(test)]
mod hooks_tests;
#[cfg(test)]
mod tests;
