//! Flowbot's own CPU backend for llama-family GGUF models: quantized weights kept in a kernel
//! layout of our own, hand-written SIMD dot products chosen at run time, a preallocated
//! rewindable KV cache and batched prompt processing.

mod attention;
pub mod kernels;
pub mod llama;
pub mod lora;
pub mod reference;

pub use kernels::Isa;
pub use llama::{Arch, FastLlama, FastOptions, Hyper};
pub use lora::LoraAdapter;
