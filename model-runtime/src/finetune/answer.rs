//! Training examples for JSON extraction, written as inference sees them: the prompt rendered
//! with the model's chat template, and the answer as the constrained decoder writes it (compact
//! JSON with a space after `:` and `,`, fields in schema order, copied numbers in the form the
//! input text gives them), checked against the same constraint the decoder applies.

use std::ops::Range;
use std::path::Path;

use serde_json::Value;

use super::{AnswerPart, FinetuneError, TrainExample};
use crate::chat::ChatTemplate;
use crate::constrain::{Constraint, CopySource, FieldKind, JsonSchemaMachine, ObjectSchema};
use crate::gguf::GgufFile;
use crate::tokenizer::TextTokenizer;

/// Turns labelled inputs into [`TrainExample`]s for one model's tokenizer and chat template.
pub struct ExampleWriter {
    tokenizer: TextTokenizer,
    template: ChatTemplate,
}

/// An answer as the decoder writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonAnswer {
    /// The JSON text.
    pub text: String,
    /// Each field written, with the byte range of its value in `text`.
    pub fields: Vec<(String, Range<usize>)>,
}

/// The answer text of `expected` for `schema` and the byte range of each field's value in it.
/// Copied numbers take the form the input writes them in (`4.905,00` gives `4905.00`).
pub fn json_answer(
    schema: &ObjectSchema,
    expected: &Value,
    source: &str,
) -> Result<JsonAnswer, String> {
    let object = expected
        .as_object()
        .ok_or("the expected output is not a JSON object")?;
    let numbers = CopySource::new(source);
    let mut text = String::from("{");
    let mut ranges = Vec::new();
    for field in &schema.fields {
        let Some(value) = object.get(&field.name).filter(|v| !v.is_null()) else {
            if field.required {
                return Err(format!("the expected output has no `{}`", field.name));
            }
            continue;
        };
        if text.len() > 1 {
            text.push_str(", ");
        }
        text.push_str(&serde_json::to_string(&field.name).map_err(|e| e.to_string())?);
        text.push_str(": ");
        let written = match (&field.kind, value) {
            (FieldKind::Number | FieldKind::Integer, Value::Number(n)) if field.copy => {
                let wanted = n.as_f64().unwrap_or(f64::NAN);
                numbers
                    .numbers()
                    .iter()
                    .find(|written| {
                        written
                            .parse::<f64>()
                            .is_ok_and(|w| (w - wanted).abs() < 0.005)
                    })
                    .cloned()
                    .ok_or_else(|| {
                        format!("`{}`: the input does not write the number {n}", field.name)
                    })?
            }
            _ => serde_json::to_string(value).map_err(|e| e.to_string())?,
        };
        let start = text.len();
        text.push_str(&written);
        ranges.push((field.name.clone(), start..text.len()));
    }
    text.push('}');
    Ok(JsonAnswer {
        text,
        fields: ranges,
    })
}

impl ExampleWriter {
    /// The tokenizer and chat template of the GGUF model at `path`.
    pub fn for_gguf(path: &Path) -> Result<ExampleWriter, FinetuneError> {
        let file = GgufFile::open(path)
            .map_err(|e| FinetuneError::Data(format!("{}: {e}", path.display())))?;
        let tokenizer = TextTokenizer::for_model(&file)
            .map_err(|e| FinetuneError::Data(format!("{}: {e}", path.display())))?;
        let template = ChatTemplate::detect(
            file.metadata().opt_string("tokenizer.chat_template"),
            &tokenizer,
        );
        Ok(ExampleWriter {
            tokenizer,
            template,
        })
    }

    /// The example of a JSON extraction: `system` and `user` rendered as a chat prompt, and
    /// `expected` written as the answer, with one [`AnswerPart`] per field (the tokens of its
    /// value and the one that ends it). Keys and punctuation are the decoder's to force, so the
    /// loss is taken on the parts only. Fails when the
    /// constrained decoder could not write that answer for this input (a copied value that is not
    /// in `user`, a value of the wrong type, a missing required field).
    pub fn json_example(
        &self,
        system: Option<&str>,
        user: &str,
        schema: &ObjectSchema,
        expected: &Value,
    ) -> Result<TrainExample, String> {
        let JsonAnswer {
            text: answer,
            fields,
        } = json_answer(schema, expected, user)?;
        let mut machine = JsonSchemaMachine::new(schema.clone()).with_source(user);
        for (at, byte) in answer.bytes().enumerate() {
            if !machine.accepts(&[byte]) {
                let field = fields
                    .iter()
                    .find(|(_, range)| range.contains(&at))
                    .map(|(name, _)| format!(" (in `{name}`)"))
                    .unwrap_or_default();
                return Err(format!(
                    "the decoder cannot write {answer} for this input: byte {at}{field} is refused"
                ));
            }
            machine.advance(&[byte]);
        }
        if !machine.is_complete() {
            return Err(format!("{answer} is not a complete answer for the schema"));
        }
        let prompt = self
            .template
            .render(&self.tokenizer, system, user)
            .map_err(|e| e.to_string())?;
        let ids = self.tokenizer.encode(&answer).map_err(|e| e.to_string())?;
        // Where each token's bytes start in the answer.
        let mut starts = Vec::with_capacity(ids.len() + 1);
        let mut at = 0usize;
        for &id in &ids {
            starts.push(at);
            at += self.tokenizer.token_bytes(id).len();
        }
        if at != answer.len() {
            return Err(format!(
                "the tokenizer's pieces of {answer} do not add up to its {} bytes",
                answer.len()
            ));
        }
        starts.push(at);
        // A field's tokens: every token that holds a byte of its value, and the token that ends
        // it (the byte after the value: the decoder cannot know the value is complete before).
        let parts = fields
            .into_iter()
            .map(|(name, bytes)| {
                let first = starts.partition_point(|&s| s <= bytes.start) - 1;
                let end = starts.partition_point(|&s| s <= bytes.end).min(ids.len());
                AnswerPart {
                    name,
                    tokens: first..end,
                }
            })
            .collect();
        Ok(TrainExample {
            prompt: prompt.ids,
            answer: ids,
            parts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> ObjectSchema {
        ObjectSchema::from_json_schema(&json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "x-copy": true},
                "total": {"type": "number", "x-copy": true},
                "currency": {"enum": ["EUR", "USD"]},
                "note": {"type": "string"}
            },
            "required": ["order_id", "total", "currency"]
        }))
        .unwrap()
    }

    #[test]
    fn answers_are_written_as_the_decoder_writes_them() {
        let source = "Order 2718-K, total 4.905,00 € for 60 pallets";
        let expected = json!({"currency": "EUR", "total": 4905.0, "order_id": "2718-K"});
        let JsonAnswer {
            text,
            fields: ranges,
        } = json_answer(&order_schema(), &expected, source).unwrap();
        assert_eq!(
            text,
            r#"{"order_id": "2718-K", "total": 4905.00, "currency": "EUR"}"#
        );
        let values: Vec<&str> = ranges.iter().map(|(_, r)| &text[r.clone()]).collect();
        assert_eq!(values, [r#""2718-K""#, "4905.00", r#""EUR""#]);
    }

    #[test]
    fn answers_the_input_does_not_support_are_refused() {
        let schema = order_schema();
        let missing = json!({"order_id": "2718-K", "total": 4905.0});
        assert!(json_answer(&schema, &missing, "2718-K 4905")
            .unwrap_err()
            .contains("no `currency`"));
        let not_written = json!({"order_id": "2718-K", "total": 12.5, "currency": "EUR"});
        assert!(json_answer(&schema, &not_written, "2718-K 4905")
            .unwrap_err()
            .contains("does not write the number 12.5"));
    }
}
