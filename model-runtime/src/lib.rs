//! Flowbot model runtime: loads llama-family GGUF models and Hugging Face safetensors model
//! directories, tokenizes, samples and constrains generation. It knows nothing of the engine; the
//! server wires it in.
//!
//! Entry point: [`load_generator`] opens a GGUF file or a model directory, builds its tokenizer and
//! chat template and picks a backend ([`backend::Backend`]); [`generate::Generator`] then generates text, JSON valid
//! for a schema, or one label out of a set; [`batch::BatchGenerator`] decodes concurrent requests
//! together on one model.

pub mod backend;
pub mod batch;
pub mod candle_gemma3;
pub mod candle_lm;
pub mod chat;
pub mod constrain;
mod decode;
pub mod fast;
pub mod fetch;
pub mod finetune;
pub mod generate;
pub mod gguf;
pub mod gguf_export;
pub mod lm;
pub mod model_dir;
pub mod openai;
pub mod requantize;
pub mod safetensors_lm;
pub mod sampling;
pub mod spm;
#[cfg(any(test, feature = "test-support"))]
pub mod tiny_model;
pub mod tokenizer;

pub use backend::{load_adapted, load_generator, model_sha256, Backend, LoadError, LoadedModel};
pub use generate::{GenerateError, GenerateOptions, Generation, Generator, StopReason};
pub use sampling::SamplingOptions;
