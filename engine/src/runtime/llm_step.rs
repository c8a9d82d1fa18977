//! LLM steps on the engine: an [`LlmTask`] plus the instance variables make an [`LlmRequest`];
//! the generator's [`LlmResponse`] becomes the variables written back and the history record.

use crate::llm::{
    LlmMode as RequestMode, LlmOptions, LlmOutput, LlmRequest, LlmResponse, PromptTemplate,
    INVALID_OUTPUT_VARIABLE,
};
use crate::model::{LlmMode, LlmTask};
use serde_json::{Map, Value};

/// The variable that receives the result when the task names none.
pub const DEFAULT_OUTPUT_VARIABLE: &str = "output";

/// Renders the task's prompt over `variables` and reads its options; the error says what is wrong
/// with the task (it cannot succeed by retrying).
pub fn build_request(task: &LlmTask, variables: &Map<String, Value>) -> Result<LlmRequest, String> {
    let template =
        PromptTemplate::parse(&task.prompt).map_err(|e| format!("prompt template: {e}"))?;
    let prompt = template
        .render(variables)
        .map_err(|e| format!("prompt template: {e}"))?;
    let options: LlmOptions = serde_json::from_value(Value::Object(task.options.clone()))
        .map_err(|e| format!("LLM options: {e}"))?;
    let mode = match task.mode {
        LlmMode::Generate => RequestMode::Generate,
        LlmMode::Extract => RequestMode::Extract,
        LlmMode::Classify => RequestMode::Classify,
    };
    Ok(LlmRequest {
        mode,
        system: task.system.clone(),
        prompt,
        schema: task.schema.clone(),
        labels: task.labels.clone(),
        options,
    })
}

/// The variables an answer writes: text and labels go to the task's output variable; an
/// extracted object goes under the output variable when the task names one, else its fields are
/// merged into the instance variables.
pub fn output_variables(task: &LlmTask, response: &LlmResponse) -> Map<String, Value> {
    let name = task
        .output
        .clone()
        .unwrap_or_else(|| DEFAULT_OUTPUT_VARIABLE.to_string());
    let mut out = Map::new();
    match &response.output {
        LlmOutput::Text(text) | LlmOutput::Label(text) => {
            out.insert(name, Value::String(text.clone()));
        }
        LlmOutput::Json(Value::Object(fields)) if task.output.is_none() => {
            out.extend(fields.clone())
        }
        LlmOutput::Json(value) => {
            out.insert(name, value.clone());
        }
    }
    out
}

/// The variables an extract step's invalid output writes when it is thrown as an error: the
/// fields the model completed before the output broke off (where the answer would have put
/// them, see [`output_variables`]), and [`INVALID_OUTPUT_VARIABLE`] with the node, the reason
/// and the text, so the path that catches the error (a review task) starts from what was read.
pub fn invalid_output_variables(
    task: &LlmTask,
    node: &str,
    reason: &str,
    output: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    if task.mode == LlmMode::Extract {
        let fields = complete_fields(output);
        match &task.output {
            Some(name) => {
                out.insert(name.clone(), Value::Object(fields));
            }
            None => out.extend(fields),
        }
    }
    out.insert(
        INVALID_OUTPUT_VARIABLE.to_string(),
        serde_json::json!({"node": node, "reason": reason, "output": output}),
    );
    out
}

/// The members of the JSON object `text` begins with that were written completely: all of them
/// when the text parses, else those before the last top-level comma (a value cut off by the
/// token budget is left out). Text that is no object gives none.
pub fn complete_fields(text: &str) -> Map<String, Value> {
    let text = text.trim_start();
    if !text.starts_with('{') {
        return Map::new();
    }
    if let Ok(Value::Object(fields)) = serde_json::from_str(text) {
        return fields;
    }
    // Byte offsets of the commas that end a top-level member.
    let mut ends = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => ends.push(at),
            _ => {}
        }
    }
    ends.iter()
        .rev()
        .find_map(
            |&end| match serde_json::from_str(&format!("{}}}", &text[..end])) {
                Ok(Value::Object(fields)) => Some(fields),
                _ => None,
            },
        )
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn task(mode: LlmMode, output: Option<&str>) -> LlmTask {
        LlmTask {
            mode,
            prompt: "order {id}".into(),
            system: None,
            output: output.map(str::to_string),
            schema: None,
            labels: Vec::new(),
            options: json!({"max_tokens": 8}).as_object().cloned().unwrap(),
        }
    }

    fn response(output: LlmOutput) -> LlmResponse {
        LlmResponse {
            output,
            model_id: "m".into(),
            model_sha256: None,
            prompt_tokens: 1,
            completion_tokens: 1,
            elapsed: Duration::ZERO,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn requests_render_the_prompt_and_read_the_options() {
        let vars = json!({"id": "SO-1"}).as_object().cloned().unwrap();
        let request = build_request(&task(LlmMode::Generate, None), &vars).unwrap();
        assert_eq!(request.prompt, "order SO-1");
        assert_eq!(request.options.max_tokens, Some(8));
        let err = build_request(&task(LlmMode::Generate, None), &Map::new()).unwrap_err();
        assert!(err.contains("`id` is not set"), "{err}");
        let mut bad = task(LlmMode::Generate, None);
        bad.options.insert("max_tokenz".into(), json!(3));
        assert!(build_request(&bad, &vars)
            .unwrap_err()
            .contains("max_tokenz"));
    }

    #[test]
    fn extracted_objects_merge_unless_an_output_variable_is_named() {
        let extracted = response(LlmOutput::Json(json!({"a": 1, "b": "x"})));
        let merged = output_variables(&task(LlmMode::Extract, None), &extracted);
        assert_eq!(Value::Object(merged), json!({"a": 1, "b": "x"}));
        let nested = output_variables(&task(LlmMode::Extract, Some("fields")), &extracted);
        assert_eq!(Value::Object(nested), json!({"fields": {"a": 1, "b": "x"}}));
        let label = output_variables(
            &task(LlmMode::Classify, None),
            &response(LlmOutput::Label("urgent".into())),
        );
        assert_eq!(Value::Object(label), json!({"output": "urgent"}));
    }

    #[test]
    fn complete_fields_of_a_cut_off_object_are_kept() {
        let cut = r#"{"order_id": "SO-1", "customer": "A, \"B\" {x}", "total": 12"#;
        assert_eq!(
            Value::Object(complete_fields(cut)),
            json!({"order_id": "SO-1", "customer": "A, \"B\" {x}"})
        );
        let whole = r#"{"order_id": "SO-1", "total": 12.5}"#;
        assert_eq!(
            Value::Object(complete_fields(whole)),
            json!({"order_id": "SO-1", "total": 12.5})
        );
        assert!(complete_fields(r#"{"order_id": "SO"#).is_empty());
        assert!(complete_fields("sorry, no JSON").is_empty());
        assert!(complete_fields(r#"{"a": [1, {"b": 2,"#).is_empty());
    }

    #[test]
    fn invalid_output_variables_name_the_node_reason_and_text() {
        let text = r#"{"city": "Lyon", "street": "1 ru"#;
        let vars = invalid_output_variables(&task(LlmMode::Extract, None), "ext", "EOF", text);
        assert_eq!(
            Value::Object(vars),
            json!({"city": "Lyon", "llm_error": {"node": "ext", "reason": "EOF", "output": text}})
        );
        let nested =
            invalid_output_variables(&task(LlmMode::Extract, Some("address")), "ext", "EOF", text);
        assert_eq!(nested["address"], json!({"city": "Lyon"}));
        let label = invalid_output_variables(&task(LlmMode::Classify, None), "c", "no label", "x");
        assert_eq!(
            Value::Object(label),
            json!({"llm_error": {"node": "c", "reason": "no label", "output": "x"}})
        );
    }
}
