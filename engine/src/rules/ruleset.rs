//! Loading the rules folder: the rules engine ([`RuleEngine`]) compiles every `.rhai` file once,
//! caches it by content hash (and the hashes of the modules it imports), and serves the compiled
//! set as an immutable snapshot ([`RuleSet`]). A reload builds a new snapshot and swaps it in
//! atomically; a file that fails to compile keeps its previous version serving and its error is
//! kept for the admin API.

use super::error::{RuleError, RuleLocation};
use super::resolver::{recording_imports, RulesModuleResolver};
use super::stdlib::{self, StdlibConfig};
use crate::model::{RuleSource, Span};
use crate::script::{
    check_source_size, content_hash, sandboxed_engine, ScriptLimits, ScriptRuntime,
};
use rhai::{EvalAltResult, Scope, AST};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Settings of a [`RuleEngine`].
#[derive(Debug, Clone, Default)]
pub struct RulesConfig {
    /// Sandbox limits for every rule run.
    pub limits: ScriptLimits,
    /// Time zone, money rounding and clock of the standard library.
    pub stdlib: StdlibConfig,
}

/// One compiled rule file (or inline rule).
#[derive(Debug)]
pub struct CompiledRule {
    /// The rule's name: its path in the rules folder without `.rhai` (`shipment_window`,
    /// `lib/rates`), or `inline@line:col` for a rule written inside a workflow.
    pub name: String,
    /// The file shown in errors.
    pub file: PathBuf,
    /// Content hash of the source.
    pub hash: u64,
    /// Lines to add to positions inside the source (inline rules start inside another file).
    line_offset: u32,
    /// The compiled script, with its imports resolved into it.
    pub(crate) ast: Arc<AST>,
    /// The modules it imported: relative path and content hash at compile time.
    imports: Vec<(String, u64)>,
}

impl CompiledRule {
    /// Where a position inside this rule's source is, in its file.
    pub(crate) fn location(&self, line: u32, col: u32) -> RuleLocation {
        let line = if line == 0 {
            0
        } else {
            line + self.line_offset
        };
        RuleLocation {
            file: self.file.clone(),
            line,
            col,
        }
    }
}

/// Splits a Rhai error into message and position (Rhai's own " (line L, position P)" suffix is
/// dropped; module errors are put on one line).
pub(crate) fn describe(error: &EvalAltResult) -> (String, u32, u32) {
    let pos = error.position();
    (
        message_of(error),
        pos.line().unwrap_or(0) as u32,
        pos.position().unwrap_or(0) as u32,
    )
}

/// The words of a Rhai error without Rhai's position suffix; errors raised inside a function or an
/// imported module say where inside it.
fn message_of(error: &EvalAltResult) -> String {
    let at = |inner: &EvalAltResult| match (inner.position().line(), inner.position().position()) {
        (Some(line), Some(col)) => format!(" at {line}:{col}"),
        _ => String::new(),
    };
    match error {
        EvalAltResult::ErrorParsing(kind, _) => kind.to_string(),
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        EvalAltResult::ErrorInModule(path, inner, _) => {
            format!("{} (in module `{path}`{})", message_of(inner), at(inner))
        }
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => {
            format!("{} (in function `{name}`{})", message_of(inner), at(inner))
        }
        other => {
            let mut message = other.to_string();
            if let Some(cut) = message.find(" (line ") {
                if message[cut..].contains("position") {
                    let end = message[cut..]
                        .find(')')
                        .map(|e| cut + e + 1)
                        .unwrap_or(message.len());
                    message.replace_range(cut..end, "");
                }
            }
            message.replace('\n', " ")
        }
    }
}

/// Where `import "<path>"` is written in `source`, for import errors Rhai reports without one.
fn import_position(source: &str, message: &str) -> Option<(u32, u32)> {
    for (index, line) in source.lines().enumerate() {
        if let Some(col) = line.find("import") {
            let rest = &line[col..];
            let quoted = rest.split('"').nth(1)?;
            if message.contains(&format!("`{quoted}`")) || message.contains(&format!("'{quoted}'"))
            {
                return Some((index as u32 + 1, col as u32 + 1));
            }
        }
    }
    None
}

/// The compiler shared by every snapshot: one sandboxed engine with the rules standard library
/// and the rules-folder module resolver, plus the cache of inline rules.
pub(crate) struct Compiler {
    runtime: Arc<ScriptRuntime>,
    inline: RwLock<HashMap<u64, Arc<CompiledRule>>>,
}

impl Compiler {
    /// A compiler around `runtime`, with an empty inline-rule cache.
    pub(crate) fn new(runtime: ScriptRuntime) -> Self {
        Self {
            runtime: Arc::new(runtime),
            inline: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn compile(
        &self,
        name: &str,
        file: &Path,
        source: &str,
        line_offset: u32,
    ) -> Result<CompiledRule, RuleError> {
        if let Err(error) = check_source_size(source) {
            let location = RuleLocation {
                file: file.to_path_buf(),
                line: 1 + line_offset,
                col: 1,
            };
            return Err(RuleError::Compile {
                rule: name.to_string(),
                location,
                message: error.to_string(),
            });
        }
        let engine = self.runtime.engine();
        let (result, imports) =
            recording_imports(|| engine.compile_into_self_contained(&Scope::new(), source));
        match result {
            Ok(ast) => Ok(CompiledRule {
                name: name.to_string(),
                file: file.to_path_buf(),
                hash: content_hash(source),
                line_offset,
                ast: Arc::new(ast),
                imports,
            }),
            Err(error) => {
                let (message, mut line, mut col) = describe(&error);
                if line == 0 {
                    (line, col) = import_position(source, &message).unwrap_or((0, 0));
                }
                let location = RuleLocation {
                    file: file.to_path_buf(),
                    line: if line == 0 { 0 } else { line + line_offset },
                    col,
                };
                Err(RuleError::Compile {
                    rule: name.to_string(),
                    location,
                    message,
                })
            }
        }
    }
}

/// An immutable, compiled set of rule files. One evaluation step takes one snapshot
/// ([`RuleEngine::snapshot`]) and uses it throughout, so it sees either the old or the new rules
/// of a reload, never a mix.
pub struct RuleSet {
    compiler: Arc<Compiler>,
    rules: BTreeMap<String, Arc<CompiledRule>>,
    file_hashes: HashMap<String, u64>,
    generation: u64,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.keys().collect::<Vec<_>>())
            .field("generation", &self.generation)
            .finish()
    }
}

/// The name of a rule file: its path in the rules folder with `/` separators and without `.rhai`.
pub fn rule_name(relative: &str) -> String {
    let normalized = relative.replace('\\', "/");
    let trimmed = normalized.trim_start_matches("./");
    trimmed.strip_suffix(".rhai").unwrap_or(trimmed).to_string()
}

impl RuleSet {
    /// Which reload produced this snapshot (0 for the first load, +1 per reload).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The names of the loaded rules, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }

    /// The content hash of the loaded version of rule `name`.
    pub fn hash_of(&self, name: &str) -> Option<u64> {
        self.rules.get(&rule_name(name)).map(|r| r.hash)
    }

    /// The script runtime the rules run on (sandboxed, with the rules standard library).
    pub fn runtime(&self) -> &ScriptRuntime {
        &self.compiler.runtime
    }

    /// Looks up (or, for inline source, compiles and caches) the rule a workflow refers to.
    /// `span` is where the attachment is written, used to place errors of inline rules.
    pub fn resolve(&self, source: &RuleSource, span: Span) -> Result<Arc<CompiledRule>, RuleError> {
        match source {
            RuleSource::File(file) => {
                let name = rule_name(file.strip_prefix("rules/").unwrap_or(file));
                self.rules
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| RuleError::NotFound {
                        rule: name,
                        file: file.clone(),
                    })
            }
            RuleSource::Inline(text) => {
                let key = content_hash(&format!("{}:{}:{text}", span.line, span.col));
                let cached = self
                    .compiler
                    .inline
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .cloned();
                if let Some(rule) = cached.filter(|rule| self.imports_current(rule)) {
                    return Ok(rule);
                }
                let name = format!("inline@{}:{}", span.line, span.col);
                let offset = span.line.saturating_sub(1);
                let rule =
                    Arc::new(
                        self.compiler
                            .compile(&name, Path::new("<inline>"), text, offset)?,
                    );
                self.compiler
                    .inline
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, rule.clone());
                Ok(rule)
            }
        }
    }

    fn imports_current(&self, rule: &CompiledRule) -> bool {
        rule.imports
            .iter()
            .all(|(path, hash)| self.file_hashes.get(path) == Some(hash))
    }
}

/// The rules engine: the compiled rules of one folder, reloadable while instances run.
pub struct RuleEngine {
    root: PathBuf,
    compiler: Arc<Compiler>,
    current: RwLock<Arc<RuleSet>>,
    errors: RwLock<Vec<RuleError>>,
}

impl std::fmt::Debug for RuleEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleEngine")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReloadReport {
    /// Rules compiled anew (new or changed files).
    pub compiled: Vec<String>,
    /// Rules removed because their file is gone.
    pub removed: Vec<String>,
    /// Files that failed to compile (their previous version, if any, keeps serving).
    pub rejected: Vec<RuleError>,
}

/// Builds the sandboxed engine of the rules: limits, standard library, rules-folder imports.
pub fn rules_runtime(root: &Path, config: &RulesConfig) -> ScriptRuntime {
    let mut engine = sandboxed_engine(&config.limits);
    stdlib::register(&mut engine, &config.stdlib);
    engine.set_module_resolver(RulesModuleResolver::new(root));
    ScriptRuntime::with_engine(engine)
}

impl RuleEngine {
    /// Loads every `.rhai` file under `root`. Files that fail to compile are left out and listed
    /// in [`RuleEngine::errors`]; an unreadable folder is an error.
    pub fn load(root: impl Into<PathBuf>, config: &RulesConfig) -> Result<Self, RuleError> {
        let root = root.into();
        let compiler = Arc::new(Compiler::new(rules_runtime(&root, config)));
        let empty = RuleSet {
            compiler: compiler.clone(),
            rules: BTreeMap::new(),
            file_hashes: HashMap::new(),
            generation: 0,
        };
        let engine = Self {
            root,
            compiler,
            current: RwLock::new(Arc::new(empty)),
            errors: RwLock::new(Vec::new()),
        };
        engine.rebuild(0)?;
        Ok(engine)
    }

    /// A rule engine without a rules folder: the inline rules of processes run; a rule that
    /// names a file fails to resolve, naming the missing folder.
    pub fn without_folder(config: &RulesConfig) -> Self {
        Self::load(PathBuf::new(), config).expect("no folder, nothing to read")
    }

    /// The rules folder (empty for [`RuleEngine::without_folder`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The script runtime of the rules (sandboxed, with the rules standard library): pass it to
    /// the graph compiler so conditions and script tasks can use dates and money too.
    pub fn script_runtime(&self) -> Arc<ScriptRuntime> {
        self.compiler.runtime.clone()
    }

    /// The rule set now serving. Take one snapshot per step and use it for the whole step.
    pub fn snapshot(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The compile errors of the files now in the folder (empty when all compile).
    pub fn errors(&self) -> Vec<RuleError> {
        self.errors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the folder, compiles new and changed files and swaps the new set in atomically.
    /// A file that fails to compile keeps its previous version (if any) and is reported.
    pub fn reload(&self) -> Result<ReloadReport, RuleError> {
        let generation = self.snapshot().generation + 1;
        self.rebuild(generation)
    }

    fn rebuild(&self, generation: u64) -> Result<ReloadReport, RuleError> {
        let previous = self.snapshot();
        let files = if self.root.as_os_str().is_empty() {
            Vec::new()
        } else {
            rule_files(&self.root)?
        };
        let mut sources = Vec::with_capacity(files.len());
        for relative in files {
            let path = self.root.join(&relative);
            match crate::script::read_script_file(&path) {
                Ok(text) => sources.push((relative, path, text)),
                Err(e) => {
                    tracing::warn!(target: "flowbot::rules", file = %path.display(), "cannot read rule file: {e}")
                }
            }
        }
        let file_hashes: HashMap<String, u64> = sources
            .iter()
            .map(|(relative, _, text)| (relative.clone(), content_hash(text)))
            .collect();
        let mut report = ReloadReport::default();
        let mut rules = BTreeMap::new();
        for (relative, path, text) in &sources {
            let name = rule_name(relative);
            let hash = file_hashes[relative];
            let old = previous.rules.get(&name);
            let unchanged = old.filter(|r| {
                r.hash == hash && r.imports.iter().all(|(p, h)| file_hashes.get(p) == Some(h))
            });
            if let Some(rule) = unchanged {
                rules.insert(name, rule.clone());
                continue;
            }
            match self.compiler.compile(&name, path, text, 0) {
                Ok(rule) => {
                    report.compiled.push(name.clone());
                    rules.insert(name, Arc::new(rule));
                }
                Err(error) => {
                    tracing::error!(target: "flowbot::rules", "{error}");
                    if let Some(old) = old {
                        rules.insert(name, old.clone());
                    }
                    report.rejected.push(error);
                }
            }
        }
        report.removed = previous
            .rules
            .keys()
            .filter(|name| !rules.contains_key(*name))
            .cloned()
            .collect();
        let set = RuleSet {
            compiler: self.compiler.clone(),
            rules,
            file_hashes,
            generation,
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        *self.errors.write().unwrap_or_else(|e| e.into_inner()) = report.rejected.clone();
        if !report.compiled.is_empty() || !report.removed.is_empty() {
            tracing::info!(target: "flowbot::rules", generation, compiled = ?report.compiled, removed = ?report.removed, "rules reloaded");
        }
        Ok(report)
    }
}

/// The `.rhai` files under `root`, as sorted relative paths with `/` separators.
pub(crate) fn rule_files(root: &Path) -> Result<Vec<String>, RuleError> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), RuleError> {
        let entries = std::fs::read_dir(dir).map_err(|e| RuleError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry.file_type().map_err(|e| RuleError::Io {
                path: entry.path(),
                message: e.to_string(),
            })?;
            if kind.is_dir() {
                walk(&entry.path(), &relative, out)?;
            } else if name.ends_with(".rhai") {
                out.push(relative);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(root, "", &mut files)?;
    files.sort();
    Ok(files)
}
