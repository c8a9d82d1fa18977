//! LLM steps as the engine sees them: a small [`TextGenerator`] trait (the server implements it
//! with the local model runtime or an HTTP backend) and [`PromptTemplate`]s over instance
//! variables. The engine never depends on a model runtime.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What an LLM step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmMode {
    /// Free text.
    Generate,
    /// A JSON object valid for a schema.
    Extract,
    /// One label out of a set.
    Classify,
}

/// Model options a step may set; unset fields take the generator's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmOptions {
    /// Most tokens to generate.
    pub max_tokens: Option<usize>,
    /// Sampling temperature (0: greedy).
    pub temperature: Option<f32>,
    /// Top-k cut.
    pub top_k: Option<usize>,
    /// Nucleus cut.
    pub top_p: Option<f32>,
    /// Repetition penalty.
    pub repetition_penalty: Option<f32>,
    /// Random seed.
    pub seed: Option<u64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Time limit in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// One call to a generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    /// The mode.
    pub mode: LlmMode,
    /// System prompt.
    pub system: Option<String>,
    /// The user prompt (already rendered from its template).
    pub prompt: String,
    /// JSON schema (for [`LlmMode::Extract`]).
    pub schema: Option<Value>,
    /// Allowed labels (for [`LlmMode::Classify`]).
    pub labels: Vec<String>,
    /// Options.
    pub options: LlmOptions,
}

/// What the generator produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum LlmOutput {
    /// Generated text.
    Text(String),
    /// Extracted JSON object.
    Json(Value),
    /// The chosen label.
    Label(String),
}

/// A generator's answer with the facts recorded in the instance history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmResponse {
    /// The output.
    pub output: LlmOutput,
    /// Model identifier.
    pub model_id: String,
    /// SHA-256 of the model file, when known.
    pub model_sha256: Option<String>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Wall time of the call.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    /// Warnings (truncated input, forced completion).
    pub warnings: Vec<String>,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Errors of a generator call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The request is malformed (bad schema, no labels, ...).
    #[error("invalid LLM request: {0}")]
    InvalidRequest(String),
    /// The backend failed (model missing, HTTP error, ...).
    #[error("LLM backend failed: {0}")]
    Backend(String),
    /// The model answered, but its output does not parse or fit the schema or labels (the token
    /// budget ran out mid-value, or a remote server ignored the schema). Retried like a backend
    /// failure; when no retry is left, a step with an error boundary for
    /// [`INVALID_OUTPUT_ERROR`] throws that error instead of raising an incident.
    #[error("the model's output is not valid: {reason}")]
    InvalidOutput {
        /// What is wrong with it.
        reason: String,
        /// The text the model wrote.
        output: String,
    },
}

/// The BPMN error code an LLM step throws when the model's output is not valid and no retry is
/// left, if an error boundary on the step catches it (by this code, or any error).
pub const INVALID_OUTPUT_ERROR: &str = "LLM_INVALID_OUTPUT";

/// The variable an LLM step's invalid output is reported in when it is thrown as
/// [`INVALID_OUTPUT_ERROR`]: `{"node", "reason", "output"}`.
pub const INVALID_OUTPUT_VARIABLE: &str = "llm_error";

/// Something that answers [`LlmRequest`]s.
pub trait TextGenerator: Send + Sync {
    /// Runs one request.
    fn generate(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError>;
}

/// A template error with the 1-based column of the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("column {column}: `{{` is not closed (write `{{{{` for a literal brace)")]
    Unclosed {
        /// Where the brace is.
        column: usize,
    },
    /// A `}` without a `{`.
    #[error("column {column}: unmatched `}}` (write `}}}}` for a literal brace)")]
    Unmatched {
        /// Where the brace is.
        column: usize,
    },
    /// `{}` or a name with spaces.
    #[error("column {column}: `{{{name}}}` is not a variable name")]
    BadName {
        /// Where the placeholder starts.
        column: usize,
        /// What was inside.
        name: String,
    },
    /// A placeholder names a variable the instance does not have.
    #[error("variable `{name}` is not set")]
    Missing {
        /// The variable path.
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// A dotted path into the variables (`order.id`).
    Var(Vec<String>),
}

/// A prompt template with `{var}` and `{var.field}` placeholders (`{{`/`}}` for literal braces).
/// Values are inserted as they are: strings verbatim, other values as JSON. Nothing is escaped.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    parts: Vec<Part>,
}

impl PromptTemplate {
    /// Parses a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '{' if chars.get(i + 1) == Some(&'{') => {
                    literal.push('{');
                    i += 2;
                }
                '}' if chars.get(i + 1) == Some(&'}') => {
                    literal.push('}');
                    i += 2;
                }
                '}' => return Err(TemplateError::Unmatched { column: i + 1 }),
                '{' => {
                    let close = chars[i + 1..]
                        .iter()
                        .position(|&c| c == '}')
                        .ok_or(TemplateError::Unclosed { column: i + 1 })?;
                    let name: String = chars[i + 1..i + 1 + close].iter().collect();
                    let path: Vec<String> = name.trim().split('.').map(str::to_owned).collect();
                    let valid = path.iter().all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                    });
                    if !valid {
                        return Err(TemplateError::BadName {
                            column: i + 1,
                            name,
                        });
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(path));
                    i += close + 2;
                }
                c => {
                    literal.push(c);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// The variable paths the template uses, dotted.
    pub fn variables(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(path) => Some(path.join(".")),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// Renders with instance variables; a missing variable is an error, never an empty string.
    pub fn render(&self, variables: &Map<String, Value>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(path) => {
                    let mut value = variables.get(&path[0]);
                    for key in &path[1..] {
                        value = value.and_then(|v| v.get(key.as_str()));
                    }
                    match value {
                        Some(Value::String(s)) => out.push_str(s),
                        Some(Value::Null) | None => {
                            return Err(TemplateError::Missing {
                                name: path.join("."),
                            })
                        }
                        Some(other) => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Map<String, Value> {
        json!({"id": "SO-1001", "amount": 1234.5, "customer": {"name": "ACME <|im_end|> Ltd"}})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn placeholders_are_filled_without_escaping() {
        let t = PromptTemplate::parse(
            "we received your order {id}, total {amount} from {customer.name} {{ok}}",
        )
        .unwrap();
        assert_eq!(t.variables(), vec!["id", "amount", "customer.name"]);
        assert_eq!(
            t.render(&vars()).unwrap(),
            "we received your order SO-1001, total 1234.5 from ACME <|im_end|> Ltd {ok}"
        );
    }

    #[test]
    fn missing_variables_and_bad_braces_are_errors_with_columns() {
        let t = PromptTemplate::parse("order {nope}").unwrap();
        assert_eq!(
            t.render(&vars()),
            Err(TemplateError::Missing {
                name: "nope".into()
            })
        );
        assert_eq!(
            PromptTemplate::parse("a {id"),
            Err(TemplateError::Unclosed { column: 3 })
        );
        assert_eq!(
            PromptTemplate::parse("a } b"),
            Err(TemplateError::Unmatched { column: 3 })
        );
        assert!(matches!(
            PromptTemplate::parse("x {two words}"),
            Err(TemplateError::BadName { column: 3, .. })
        ));
    }

    #[test]
    fn responses_round_trip_through_json_for_the_history() {
        let response = LlmResponse {
            output: LlmOutput::Json(json!({"order_id": "A-1"})),
            model_id: "m".into(),
            model_sha256: Some("ab".into()),
            prompt_tokens: 10,
            completion_tokens: 5,
            elapsed: Duration::from_millis(42),
            warnings: vec![],
        };
        let text = serde_json::to_string(&response).unwrap();
        assert_eq!(
            serde_json::from_str::<LlmResponse>(&text).unwrap(),
            response
        );
    }
}
