//! The sandboxed Rhai runtime behind every condition, script task and business rule.
//!
//! Invariants:
//! - No script can reach files, the network or the process: the engine is built from Rhai's raw
//!   core plus pure packages, `import` resolves nothing unless the rules module installs its own
//!   resolver (restricted to `rules/`), and `eval` is disabled.
//! - Every run is bounded: operations, call depth, expression depth, string, array and map sizes
//!   ([`ScriptLimits`]). A runaway script ends with [`ScriptError::Runtime`], never a hang.
//! - Scripts are compiled once and cached by content hash ([`ScriptRuntime::compile`]).
//! - Instance variables are JSON values; they enter a script as Rhai values and leave it as JSON.
//! - A script task's assignment to a name it never declared (`total = 1`, as script tasks written
//!   for Python or Groovy engines do) creates that process variable instead of failing: the names
//!   are found once, when the script compiles ([`Script::undeclared_assignments`]).

use rhai::packages::{Package, StandardPackage};
use rhai::{ASTNode, Dynamic, Engine, Expr, ImmutableString, Scope, Stmt, AST};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

/// The longest script, condition or rule file compiled, in bytes (64 KiB; the order rules are
/// under 1 KiB each). Longer source is refused before Rhai parses it.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;

/// How deep `import`s may nest while a rule compiles (module A imports B imports C ...); an import
/// cycle ends here instead of recursing until the stack overflows.
pub const MAX_IMPORT_DEPTH: usize = 8;

/// Refuses `source` when it is longer than [`MAX_SCRIPT_BYTES`].
pub fn check_source_size(source: &str) -> Result<(), ScriptError> {
    if source.len() <= MAX_SCRIPT_BYTES {
        return Ok(());
    }
    let message = format!(
        "the script is {} bytes; scripts are limited to {MAX_SCRIPT_BYTES} bytes (64 KiB)",
        source.len()
    );
    Err(ScriptError::Compile {
        message,
        line: 1,
        col: 1,
    })
}

/// Reads a script file of at most [`MAX_SCRIPT_BYTES`] (never more is read from it).
pub fn read_script_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_SCRIPT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_SCRIPT_BYTES {
        return Err(format!(
            "the file is larger than {MAX_SCRIPT_BYTES} bytes (64 KiB), the limit for scripts"
        ));
    }
    String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())
}

/// Limits applied to every script run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Maximum number of Rhai operations per run.
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum expression nesting depth (global and in functions).
    pub max_expr_depth: usize,
    /// Maximum string length in bytes.
    pub max_string_size: usize,
    /// Maximum array length.
    pub max_array_size: usize,
    /// Maximum number of map entries.
    pub max_map_size: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_operations: 100_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
        }
    }
}

/// Why a script could not be compiled or run. Positions are relative to the script text
/// (1-based); callers add the script's own position in its file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    /// The text is not valid Rhai.
    #[error("script does not compile at {line}:{col}: {message}")]
    Compile {
        /// What is wrong.
        message: String,
        /// 1-based line inside the script (0 when unknown).
        line: u32,
        /// 1-based column inside the script (0 when unknown).
        col: u32,
    },
    /// The script failed while running (including a limit being hit).
    #[error("script failed at {line}:{col}: {message}")]
    Runtime {
        /// What went wrong.
        message: String,
        /// 1-based line inside the script (0 when unknown).
        line: u32,
        /// 1-based column inside the script (0 when unknown).
        col: u32,
    },
    /// A condition returned something other than a boolean.
    #[error("condition returned {found}, expected a boolean")]
    NotBoolean {
        /// The Rhai type name that was returned.
        found: String,
    },
    /// A value could not be converted between Rhai and JSON.
    #[error("value conversion failed: {0}")]
    Conversion(String),
}

impl ScriptError {
    /// The 1-based line and column inside the script, when known.
    pub fn position(&self) -> Option<(u32, u32)> {
        match self {
            ScriptError::Compile { line, col, .. } | ScriptError::Runtime { line, col, .. }
                if *line > 0 =>
            {
                Some((*line, *col))
            }
            _ => None,
        }
    }
}

fn position_of(pos: rhai::Position) -> (u32, u32) {
    (
        pos.line().unwrap_or(0) as u32,
        pos.position().unwrap_or(0) as u32,
    )
}

impl From<rhai::ParseError> for ScriptError {
    fn from(e: rhai::ParseError) -> Self {
        let (line, col) = position_of(e.position());
        ScriptError::Compile {
            message: e.err_type().to_string(),
            line,
            col,
        }
    }
}

impl From<Box<rhai::EvalAltResult>> for ScriptError {
    fn from(e: Box<rhai::EvalAltResult>) -> Self {
        let (line, col) = position_of(e.position());
        let mut message = e.to_string();
        // Rhai appends " (line L, position P)"; the position is reported separately.
        if let Some(cut) = message.rfind(" (line ") {
            message.truncate(cut);
        }
        ScriptError::Runtime { message, line, col }
    }
}

/// Builds a Rhai engine with the sandbox settings and `limits` applied: pure standard library,
/// no module resolution, no `eval`, output of `print`/`debug` routed to `tracing`.
pub fn sandboxed_engine(limits: &ScriptLimits) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(16);
    engine.on_print(|text| tracing::info!(target: "flowbot::script", "{text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "flowbot::script", source = source.unwrap_or(""), %pos, "{text}")
    });
    engine
}

/// A compiled script, shared through the cache.
pub type CompiledScript = Arc<Script>;

/// A compiled script or expression (it dereferences to its Rhai AST), with what running it as a
/// script task needs to know.
#[derive(Debug)]
pub struct Script {
    ast: AST,
    undeclared_assignments: Box<[ImmutableString]>,
}

impl Script {
    fn new(ast: AST) -> Self {
        let undeclared_assignments = undeclared_assignments(&ast);
        Self {
            ast,
            undeclared_assignments,
        }
    }

    /// Names the script's main body assigns with a plain `=` (not `+=`, not inside a function):
    /// those not yet instance variables start as `()` in the run's scope, so the assignment
    /// creates them. A `let` of the same name shadows that binding and changes nothing.
    pub fn undeclared_assignments(&self) -> &[ImmutableString] {
        &self.undeclared_assignments
    }
}

impl std::ops::Deref for Script {
    type Target = AST;

    fn deref(&self) -> &AST {
        &self.ast
    }
}

/// The targets of plain assignments to simple variables in `ast`'s main body, each once.
fn undeclared_assignments(ast: &AST) -> Box<[ImmutableString]> {
    let main_body = ast.clone_statements_only();
    let mut names: Vec<ImmutableString> = Vec::new();
    main_body.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Assignment(assignment))) = path.last() {
            let (operator, sides) = &**assignment;
            if let (false, Expr::Variable(variable, ..)) = (operator.is_op_assignment(), &sides.lhs)
            {
                if !names.contains(&variable.1) {
                    names.push(variable.1.clone());
                }
            }
        }
        true
    });
    names.into_boxed_slice()
}

/// The variables a script run changed or created, as JSON.
pub type VariableUpdates = Map<String, Value>;

/// A sandboxed Rhai engine with a compile cache keyed by content hash.
pub struct ScriptRuntime {
    engine: Engine,
    cache: RwLock<HashMap<u64, CompiledScript>>,
}

impl std::fmt::Debug for ScriptRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptRuntime").finish_non_exhaustive()
    }
}

impl Default for ScriptRuntime {
    fn default() -> Self {
        Self::new(&ScriptLimits::default())
    }
}

impl ScriptRuntime {
    /// A runtime with the given limits.
    pub fn new(limits: &ScriptLimits) -> Self {
        Self::with_engine(sandboxed_engine(limits))
    }

    /// A runtime around an engine built by [`sandboxed_engine`] and extended by the caller (the
    /// rules module registers its standard library this way).
    pub fn with_engine(engine: Engine) -> Self {
        Self {
            engine,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The underlying Rhai engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `source` (cached by content hash).
    pub fn compile(&self, source: &str) -> Result<CompiledScript, ScriptError> {
        let key = content_hash(source);
        if let Some(ast) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(ast.clone());
        }
        check_source_size(source)?;
        let ast = Arc::new(Script::new(self.engine.compile(source)?));
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, ast.clone());
        Ok(ast)
    }

    /// Evaluates a condition over `variables`; it must return a boolean.
    pub fn eval_condition(
        &self,
        ast: &AST,
        variables: &Map<String, Value>,
    ) -> Result<bool, ScriptError> {
        let mut scope = scope_from(variables)?;
        let value: Dynamic = self.engine.eval_ast_with_scope(&mut scope, ast)?;
        value.as_bool().map_err(|found| ScriptError::NotBoolean {
            found: found.to_string(),
        })
    }

    /// Evaluates an expression over `variables` and returns its value as JSON.
    pub fn eval_value(
        &self,
        ast: &AST,
        variables: &Map<String, Value>,
    ) -> Result<Value, ScriptError> {
        let mut scope = scope_from(variables)?;
        let value: Dynamic = self.engine.eval_ast_with_scope(&mut scope, ast)?;
        to_json(&value)
    }

    /// Runs a script with `variables` in scope. Top-level `let` bindings, assignments to
    /// existing variables and assignments to undeclared names become the returned updates (only
    /// values that changed or are new).
    pub fn run_script(
        &self,
        script: &Script,
        variables: &Map<String, Value>,
    ) -> Result<VariableUpdates, ScriptError> {
        let mut scope = scope_from(variables)?;
        for name in script.undeclared_assignments() {
            if !variables.contains_key(name.as_str()) {
                scope.push_dynamic(name.clone(), Dynamic::UNIT);
            }
        }
        self.engine.run_ast_with_scope(&mut scope, &script.ast)?;
        let mut updates = Map::new();
        for (name, _constant, value) in scope.iter() {
            if value.is_unit() && !variables.contains_key(name) {
                continue;
            }
            let json = to_json(&value)?;
            if variables.get(name) != Some(&json) {
                updates.insert(name.to_string(), json);
            }
        }
        Ok(updates)
    }
}

/// The first construct in `ast` written for another engine's language rather than Rhai, with
/// what to write instead and its 1-based position inside the text. Each parses as Rhai and would
/// only fail when run: Python's `True`, `False` or `None` read as a name, a string multiplied by a
/// number (Python's repetition), or a read of bpmn-engine's JavaScript context (`variables.x`,
/// `environment.variables.x`, `content.output`) where Flowbot names the process variable itself.
pub fn foreign_idiom(ast: &AST) -> Option<(String, (u32, u32))> {
    let mut found = None;
    ast.walk(&mut |path: &[ASTNode]| {
        found = match path.last() {
            Some(ASTNode::Expr(Expr::Variable(variable, _, at))) => {
                let rhai = match variable.1.as_str() {
                    "True" => "true",
                    "False" => "false",
                    "None" => "()",
                    _ => return true,
                };
                Some((
                    format!("`{}` is Python; Rhai writes `{rhai}`", variable.1),
                    position_of(*at),
                ))
            }
            Some(ASTNode::Expr(Expr::FnCall(call, at)))
                if call.name == "*"
                    && call
                        .args
                        .iter()
                        .any(|arg| matches!(arg, Expr::StringConstant(..))) =>
            {
                Some((
                    "a string times a number repeats it in Python; Rhai has no such operator"
                        .to_string(),
                    position_of(*at),
                ))
            }
            Some(ASTNode::Expr(Expr::Dot(chain, _, at))) => {
                javascript_context(chain).map(|message| (message, position_of(*at)))
            }
            _ => None,
        };
        found.is_none()
    });
    found
}

/// What to write instead of a property chain that starts at one of bpmn-engine's JavaScript
/// context objects (`variables`, `environment`, `content.output`), when it does. Only names the
/// script does not declare itself count.
fn javascript_context(chain: &rhai::BinaryExpr) -> Option<String> {
    let Expr::Variable(variable, None, _) = &chain.lhs else {
        return None;
    };
    if variable.0.is_some() {
        return None;
    }
    let properties = property_names(&chain.rhs);
    let root = variable.1.as_str();
    let variable_name = match (root, properties.as_slice()) {
        ("variables", [name, ..]) | ("environment", ["variables", name, ..]) => Some(*name),
        ("environment", _) => None,
        ("content", ["output", ..]) => None,
        _ => return None,
    };
    let instead = match variable_name {
        Some(name) => format!("write `{name}`"),
        None => "Flowbot expressions name the process variables themselves".to_string(),
    };
    Some(format!(
        "`{root}.{}` reads bpmn-engine's JavaScript context; {instead}",
        properties.join(".")
    ))
}

/// The property names of a dot chain's right-hand side, in order, up to the first that is not a
/// plain property.
fn property_names(expr: &Expr) -> Vec<&str> {
    let mut names = Vec::new();
    let mut next = Some(expr);
    while let Some(expr) = next.take() {
        match expr {
            Expr::Property(property, _) => names.push(property.2.as_str()),
            Expr::Dot(chain, _, _) => {
                if let Expr::Property(property, _) = &chain.lhs {
                    names.push(property.2.as_str());
                    next = Some(&chain.rhs);
                }
            }
            _ => {}
        }
    }
    names
}

/// A stable 64-bit hash of a script's text.
pub fn content_hash(source: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    source.hash(&mut hasher);
    hasher.finish()
}

/// Builds a Rhai scope holding `variables`.
pub fn scope_from(variables: &Map<String, Value>) -> Result<Scope<'static>, ScriptError> {
    let mut scope = Scope::new();
    for (name, value) in variables {
        scope.push_dynamic(name.clone(), to_dynamic(value)?);
    }
    Ok(scope)
}

/// Converts a JSON value into a Rhai value.
pub fn to_dynamic(value: &Value) -> Result<Dynamic, ScriptError> {
    rhai::serde::to_dynamic(value).map_err(|e| ScriptError::Conversion(e.to_string()))
}

/// Converts a Rhai value into JSON. Integers stay integers; unit becomes `null`.
pub fn to_json(value: &Dynamic) -> Result<Value, ScriptError> {
    rhai::serde::from_dynamic(value).map_err(|e| ScriptError::Conversion(e.to_string()))
}

/// Strips the wrappers modelers put around expressions: `${...}`, `#{...}` and a leading `=`
/// (Camunda 7, JUEL, Zeebe FEEL), and surrounding whitespace.
pub fn strip_expression_wrappers(text: &str) -> &str {
    let trimmed = text.trim();
    for open in ["${", "#{"] {
        if let Some(inner) = trimmed.strip_prefix(open).and_then(|t| t.strip_suffix('}')) {
            return inner.trim();
        }
    }
    match trimmed.strip_prefix('=') {
        Some(rest) if !rest.starts_with('=') => rest.trim(),
        _ => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn condition_sees_instance_variables() {
        let rt = ScriptRuntime::default();
        let ast = rt.compile("amount > 1000 && customer == \"ACME\"").unwrap();
        assert!(rt
            .eval_condition(&ast, &vars(json!({"amount": 1500, "customer": "ACME"})))
            .unwrap());
        assert!(!rt
            .eval_condition(&ast, &vars(json!({"amount": 500, "customer": "ACME"})))
            .unwrap());
    }

    #[test]
    fn condition_must_be_boolean() {
        let rt = ScriptRuntime::default();
        let ast = rt.compile("amount + 1").unwrap();
        let err = rt
            .eval_condition(&ast, &vars(json!({"amount": 1})))
            .unwrap_err();
        assert!(matches!(err, ScriptError::NotBoolean { .. }), "{err}");
    }

    #[test]
    fn script_returns_new_and_changed_variables_only() {
        let rt = ScriptRuntime::default();
        let ast = rt
            .compile("let status = \"confirmed\"; amount += 1; let same = kept;")
            .unwrap();
        let updates = rt
            .run_script(&ast, &vars(json!({"amount": 1, "kept": [1, 2]})))
            .unwrap();
        assert_eq!(
            Value::Object(updates),
            json!({"status": "confirmed", "amount": 2, "same": [1, 2]})
        );
    }

    #[test]
    fn assigning_an_undeclared_name_creates_that_variable() {
        let rt = ScriptRuntime::default();
        let script = rt
            .compile(
                "v = 1; if v > 0 { label = \"positive\" } amount = amount * 2; \
                 let kept = 2; fn helper() { inner = 3 } count += 0;",
            )
            .unwrap();
        let names: Vec<&str> = script
            .undeclared_assignments()
            .iter()
            .map(|n| n.as_str())
            .collect();
        // `amount = amount * 2` is compiled as `amount *= 2`: it needs `amount` to exist anyway.
        assert_eq!(names, ["v", "label"]);
        let updates = rt
            .run_script(&script, &vars(json!({"amount": 3, "count": 1})))
            .unwrap();
        assert_eq!(
            Value::Object(updates),
            json!({"v": 1, "label": "positive", "amount": 6, "kept": 2})
        );
        // An increment of a name that does not exist still fails: there is nothing to add to.
        let increment = rt.compile("missing += 1").unwrap();
        assert!(rt.run_script(&increment, &Map::new()).is_err());
    }

    #[test]
    fn python_literals_and_string_repetition_are_named_with_their_position() {
        let rt = ScriptRuntime::default();
        let idiom = |source: &str| foreign_idiom(&rt.compile(source).unwrap());
        assert_eq!(
            idiom("x = 1;\nhey = False"),
            Some(("`False` is Python; Rhai writes `false`".to_string(), (2, 7)))
        );
        assert_eq!(idiom("a = \"a\" * 512").unwrap().1, (1, 9));
        assert_eq!(
            idiom("flag = true; total = amount * 2; name = \"a\" + b"),
            None
        );
    }

    #[test]
    fn reads_of_bpmn_engine_javascript_context_are_named_with_what_to_write() {
        let rt = ScriptRuntime::default();
        let idiom = |source: &str| foreign_idiom(&rt.compile(source).unwrap());
        assert_eq!(
            idiom("variables.user"),
            Some((
                "`variables.user` reads bpmn-engine's JavaScript context; write `user`".to_string(),
                (1, 10)
            ))
        );
        assert_eq!(
            idiom("a && environment.variables.catchDate > 3").unwrap().0,
            "`environment.variables.catchDate` reads bpmn-engine's JavaScript context; write `catchDate`"
        );
        assert_eq!(
            idiom("content.output.form.newPrice").unwrap().0,
            "`content.output.form.newPrice` reads bpmn-engine's JavaScript context; Flowbot expressions name the process variables themselves"
        );
        // A variable named `content` with other properties, a property of that name, a local
        // the script declares, and text in a string are all plain Rhai.
        assert_eq!(
            idiom("content.subject + order.variables.x + \"variables.x\""),
            None
        );
        assert_eq!(idiom("let variables = #{x: 1}; variables.x"), None);
    }

    #[test]
    fn infinite_loop_hits_operation_limit() {
        let rt = ScriptRuntime::default();
        let ast = rt.compile("loop { }").unwrap();
        let err = rt.run_script(&ast, &Map::new()).unwrap_err();
        assert!(matches!(err, ScriptError::Runtime { .. }), "{err}");
        assert!(err.to_string().contains("operations"), "{err}");
    }

    #[test]
    fn deep_recursion_hits_call_limit() {
        let rt = ScriptRuntime::default();
        let ast = rt.compile("fn f(n) { f(n + 1) } f(0)").unwrap();
        let err = rt.run_script(&ast, &Map::new()).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("stack"), "{err}");
    }

    #[test]
    fn huge_string_hits_size_limit() {
        let rt = ScriptRuntime::default();
        let ast = rt.compile("let s = \"x\"; loop { s += s; }").unwrap();
        let err = rt.run_script(&ast, &Map::new()).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("length"), "{err}");
    }

    #[test]
    fn import_and_eval_are_unavailable() {
        let rt = ScriptRuntime::default();
        let err = rt
            .compile("import \"/etc/passwd\" as p; p::x")
            .map(|ast| rt.run_script(&ast, &Map::new()));
        assert!(matches!(err, Ok(Err(_)) | Err(_)));
        assert!(rt.compile("eval(\"1\")").is_err());
    }

    #[test]
    fn compile_is_bounded_by_source_size_and_nesting() {
        let rt = ScriptRuntime::default();
        let long = format!("1 // {}", "x".repeat(MAX_SCRIPT_BYTES));
        let err = rt.compile(&long).unwrap_err();
        assert_eq!(err.position(), Some((1, 1)));
        assert!(err.to_string().contains("limited to 65536 bytes"), "{err}");
        for (open, close) in [
            ("(", ")"),
            ("[", "]"),
            ("{", "}"),
            ("if true { ", " }"),
            ("-", ""),
        ] {
            let deep = format!("{}1{}", open.repeat(5_000), close.repeat(5_000));
            let err = rt.compile(&deep).unwrap_err();
            assert!(matches!(err, ScriptError::Compile { .. }), "{open}: {err}");
        }
    }

    #[test]
    fn compile_error_has_position() {
        let rt = ScriptRuntime::default();
        let err = rt.compile("let x = ;\n").unwrap_err();
        assert_eq!(err.position(), Some((1, 9)));
    }

    #[test]
    fn compiled_scripts_are_cached_by_content() {
        let rt = ScriptRuntime::default();
        let a = rt.compile("1 + 1").unwrap();
        let b = rt.compile("1 + 1").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn strips_modeler_wrappers() {
        assert_eq!(
            strip_expression_wrappers("${amount > 1000}"),
            "amount > 1000"
        );
        assert_eq!(
            strip_expression_wrappers("= amount > 1000"),
            "amount > 1000"
        );
        assert_eq!(strip_expression_wrappers(" x == 1 "), "x == 1");
        assert_eq!(strip_expression_wrappers("==1"), "==1");
    }
}
