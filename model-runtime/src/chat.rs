//! Chat prompts: the model's chat template (ChatML, read from `tokenizer.chat_template`) rendered
//! straight to token ids, so that control tokens come only from the template and every piece of
//! text is encoded with special-token matching off.

use crate::tokenizer::{TextTokenizer, TokenizerError};

/// How a model wants its conversation laid out.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n` turns, then `<|im_start|>assistant\n`.
    ChatMl {
        /// `<|im_start|>` id.
        im_start: u32,
        /// `<|im_end|>` id.
        im_end: u32,
        /// The system prompt the template inserts when none is given.
        default_system: Option<String>,
    },
    /// No chat template: system and user text joined by a blank line, after the BOS token.
    Plain {
        /// The BOS id, if the model declares one.
        bos: Option<u32>,
    },
}

/// A rendered prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPrompt {
    /// The prompt ids.
    pub ids: Vec<u32>,
    /// Length of the part that depends only on the system prompt (reusable across calls).
    pub stable_prefix_len: usize,
    /// Where the user text's ids lie (the part cut when the prompt is too long).
    pub user_range: std::ops::Range<usize>,
}

/// Finds the default system prompt a ChatML Jinja template inserts, e.g.
/// `'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n'`.
fn default_system_from_template(template: &str) -> Option<String> {
    // The newline after the role is a real newline in some files and `\n` in others.
    let start = ["<|im_start|>system\n", "<|im_start|>system\\n"]
        .iter()
        .find_map(|marker| template.find(marker).map(|i| i + marker.len()))?;
    let rest = &template[start..];
    let end = rest.find("<|im_end|>")?;
    let text = &rest[..end];
    // Only a literal: a Jinja expression (`{{ ... }}`) or a closing quote means no default here.
    if text.contains("{{") || text.contains('\'') || text.contains('"') || text.is_empty() {
        return None;
    }
    Some(text.replace("\\n", "\n"))
}

impl ChatTemplate {
    /// Chooses the template from the model's metadata template text and its special tokens.
    pub fn detect(template_text: Option<&str>, tokenizer: &TextTokenizer) -> Self {
        let ids = (
            tokenizer.special_id("<|im_start|>"),
            tokenizer.special_id("<|im_end|>"),
        );
        match (template_text, ids) {
            (Some(text), (Some(im_start), Some(im_end))) if text.contains("<|im_start|>") => {
                Self::ChatMl {
                    im_start,
                    im_end,
                    default_system: default_system_from_template(text),
                }
            }
            (None, (Some(im_start), Some(im_end))) => Self::ChatMl {
                im_start,
                im_end,
                default_system: None,
            },
            _ => Self::Plain {
                bos: tokenizer.bos_id(),
            },
        }
    }

    /// Renders a system + user exchange ready for the assistant's answer.
    pub fn render(
        &self,
        tokenizer: &TextTokenizer,
        system: Option<&str>,
        user: &str,
    ) -> Result<ChatPrompt, TokenizerError> {
        match self {
            Self::ChatMl {
                im_start,
                im_end,
                default_system,
            } => {
                let mut ids = Vec::new();
                if let Some(system) = system.or(default_system.as_deref()) {
                    ids.push(*im_start);
                    ids.extend(tokenizer.encode(&format!("system\n{system}"))?);
                    ids.push(*im_end);
                    ids.extend(tokenizer.encode("\n")?);
                }
                ids.push(*im_start);
                let stable_prefix_len = ids.len();
                ids.extend(tokenizer.encode("user\n")?);
                let user_start = ids.len();
                ids.extend(tokenizer.encode(user)?);
                let user_end = ids.len();
                ids.push(*im_end);
                ids.extend(tokenizer.encode("\n")?);
                ids.push(*im_start);
                ids.extend(tokenizer.encode("assistant\n")?);
                Ok(ChatPrompt {
                    ids,
                    stable_prefix_len,
                    user_range: user_start..user_end,
                })
            }
            Self::Plain { bos } => {
                let mut ids: Vec<u32> = bos.iter().copied().collect();
                if let Some(system) = system {
                    ids.extend(tokenizer.encode(&format!("{system}\n\n"))?);
                }
                let stable_prefix_len = ids.len();
                ids.extend(tokenizer.encode(user)?);
                let user_end = ids.len();
                ids.extend(tokenizer.encode("\n")?);
                Ok(ChatPrompt {
                    ids,
                    stable_prefix_len,
                    user_range: stable_prefix_len..user_end,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_system_prompt_is_read_from_a_chatml_template() {
        let template = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        assert_eq!(
            default_system_from_template(template).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
    }

    #[test]
    fn a_template_with_real_newlines_is_read_too() {
        let template = "{{ '<|im_start|>system\nBe kind.<|im_end|>\n' }}";
        assert_eq!(
            default_system_from_template(template).as_deref(),
            Some("Be kind.")
        );
    }

    #[test]
    fn a_template_without_a_literal_system_prompt_has_no_default() {
        let template = "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}";
        assert_eq!(default_system_from_template(template), None);
    }
}
