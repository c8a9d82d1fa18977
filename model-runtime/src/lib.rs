//! Flowbot model runtime: loads llama-family GGUF models, tokenizes, samples and constrains
//! generation. It knows nothing of the engine; the server wires it in.

pub mod baseline;
pub mod fast;
pub mod lm;
