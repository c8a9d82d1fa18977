//! The module resolver of the rules engine: `import "name"` loads `name.rhai` from the rules
//! folder and nowhere else. Absolute paths, `..`, drive prefixes and links that lead out of the
//! folder are refused.

use crate::script::{content_hash, read_script_file, MAX_IMPORT_DEPTH};
use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared};
use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};

/// Resolves `import` paths inside one rules folder.
#[derive(Debug, Clone)]
pub struct RulesModuleResolver {
    root: PathBuf,
}

thread_local! {
    /// The modules resolved while the current compilation runs: `(relative path, content hash)`.
    static RESOLVED: RefCell<Option<Vec<(String, u64)>>> = const { RefCell::new(None) };
    /// How many module resolutions are under way on this thread (a module's own imports resolve
    /// while it is evaluated).
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `compile` and returns its result with the modules it resolved (relative path and content
/// hash), so a cached compilation can be reused only while its imports are unchanged.
pub(crate) fn recording_imports<T>(compile: impl FnOnce() -> T) -> (T, Vec<(String, u64)>) {
    let previous = RESOLVED.with(|r| r.borrow_mut().replace(Vec::new()));
    let result = compile();
    let resolved = RESOLVED
        .with(|r| std::mem::replace(&mut *r.borrow_mut(), previous))
        .unwrap_or_default();
    (result, resolved)
}

/// Checks an import path and turns it into a path relative to the rules folder, with `.rhai`
/// added when it has no extension.
pub fn relative_module_path(path: &str) -> Result<PathBuf, String> {
    if path.trim().is_empty() {
        return Err("import path is empty".into());
    }
    if path.contains('\\') {
        return Err(format!("import `{path}`: use `/` to separate folders"));
    }
    let mut relative = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "import `{path}` leaves the rules folder (`..` is not allowed)"
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "import `{path}` is absolute; imports are relative to the rules folder"
                ))
            }
        }
    }
    if relative.extension().is_none() {
        relative.set_extension("rhai");
    }
    Ok(relative)
}

impl RulesModuleResolver {
    /// A resolver for the folder `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The rules folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds the file for `path` and reads it, refusing anything outside the folder.
    fn read(&self, path: &str) -> Result<(PathBuf, String), String> {
        let relative = relative_module_path(path)?;
        let file = self.root.join(&relative);
        let root = self
            .root
            .canonicalize()
            .map_err(|e| format!("rules folder {}: {e}", self.root.display()))?;
        let real = file
            .canonicalize()
            .map_err(|_| format!("module `{path}` not found in the rules folder"))?;
        if !real.starts_with(&root) {
            return Err(format!("import `{path}` leads outside the rules folder"));
        }
        let text = read_script_file(&real).map_err(|e| format!("module `{path}`: {e}"))?;
        Ok((relative, text))
    }
}

impl rhai::ModuleResolver for RulesModuleResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let depth = DEPTH.with(|d| d.get());
        if depth >= MAX_IMPORT_DEPTH {
            let message = format!("imports nest more than {MAX_IMPORT_DEPTH} deep at `{path}` (do modules import each other?)");
            return Err(EvalAltResult::ErrorRuntime(message.into(), pos).into());
        }
        let (relative, text) = self
            .read(path)
            .map_err(|message| EvalAltResult::ErrorRuntime(message.into(), pos))?;
        let in_module = |err: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(path.to_string(), err, pos))
        };
        let mut ast = engine.compile(&text).map_err(|e| in_module(e.into()))?;
        ast.set_source(relative.to_string_lossy().as_ref());
        DEPTH.with(|d| d.set(depth + 1));
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        DEPTH.with(|d| d.set(depth));
        let module = module.map_err(in_module)?;
        RESOLVED.with(|r| {
            if let Some(list) = r.borrow_mut().as_mut() {
                list.push((relative.to_string_lossy().into_owned(), content_hash(&text)));
            }
        });
        Ok(module.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_absolute_and_parent_paths() {
        assert!(relative_module_path("/etc/passwd")
            .unwrap_err()
            .contains("absolute"));
        assert!(relative_module_path("../secrets")
            .unwrap_err()
            .contains(".."));
        assert!(relative_module_path("lib/../../x")
            .unwrap_err()
            .contains(".."));
        assert!(relative_module_path("lib\\x").is_err());
        assert!(relative_module_path("").is_err());
    }

    #[test]
    fn adds_the_rhai_extension() {
        assert_eq!(
            relative_module_path("lib/rates").unwrap(),
            PathBuf::from("lib/rates.rhai")
        );
        assert_eq!(
            relative_module_path("./rates.rhai").unwrap(),
            PathBuf::from("rates.rhai")
        );
    }
}
