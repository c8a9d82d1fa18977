//! Reference generations produced by llama.cpp with greedy decoding: the default model
//! (SmolLM2-135M-Instruct Q4_1), the same model re-quantized to Q4_K_M by
//! [`crate::requantize`], and Gemma 3 270M Q4_K_M. Used by benchmarks and by the tests that
//! check the fast backend's output. The Q4_K_M and Gemma ids come from
//! `bench/llamacpp_reference.py` (llama-cpp-python 0.3.36, prompt run one token at a time).

/// System message of the reference chat.
pub const REFERENCE_SYSTEM: &str = "You write short, polite order confirmations.";

/// User message of the reference chat.
pub const REFERENCE_USER: &str =
    "Order SO-1001 from ACME Ltd, total 1234.50 CNY. Write a one-sentence confirmation for the customer.";

/// The reference chat rendered with the model's ChatML template and tokenized (57 tokens).
pub const REFERENCE_PROMPT_IDS: [u32; 57] = [
    1, 9690, 198, 2683, 2965, 1890, 28, 26310, 1686, 5143, 491, 30, 2, 198, 1, 4093, 198, 22977,
    12354, 29, 33, 32, 32, 33, 429, 12121, 3945, 16137, 28, 2719, 216, 33, 34, 35, 36, 30, 37, 32,
    12046, 73, 30, 9517, 253, 582, 29, 28205, 20049, 327, 260, 7742, 30, 2, 198, 1, 520, 9531, 198,
];

/// The first 20 greedy tokens llama.cpp generates after [`REFERENCE_PROMPT_IDS`].
pub const REFERENCE_GREEDY_IDS: [u32; 20] = [
    504, 7742, 553, 8885, 260, 216, 33, 34, 35, 36, 30, 37, 32, 3214, 67, 29, 33, 32, 32, 33,
];

/// The first 20 greedy tokens llama.cpp generates after [`REFERENCE_PROMPT_IDS`] on the default
/// model re-quantized to Q4_K_M by [`crate::requantize::requantize_q4_k_m`]. Its choices are near ties
/// (leads of 0.0016 to 0.22 logits at steps 1-4 and 15), so only prefixes are compared.
pub const REFERENCE_Q4_K_M_GREEDY_IDS: [u32; 20] = [
    504, 7742, 8885, 216, 33, 34, 35, 36, 30, 37, 32, 12046, 73, 429, 12121, 3945, 16137, 28, 284,
    357,
];

/// The reference chat as Gemma 3 270M's prompt (no chat template: BOS, system, a blank line, the
/// user text, a newline), tokenized by llama.cpp.
pub const GEMMA3_PROMPT_IDS: [u32; 44] = [
    2, 3048, 4903, 2822, 236764, 54651, 1900, 233278, 236761, 108, 9067, 12583, 236772, 236770,
    236771, 236771, 236770, 699, 11659, 7273, 11220, 236764, 2558, 236743, 236770, 236778, 236800,
    236812, 236761, 236810, 236771, 235807, 236761, 15642, 496, 886, 236772, 54554, 26093, 573,
    506, 5602, 236761, 107,
];

/// The first 20 greedy tokens llama.cpp generates after [`GEMMA3_PROMPT_IDS`] on
/// `gemma-3-270m-q4_k_m.gguf` (SHA-256 a5fd3b62…6818).
pub const GEMMA3_GREEDY_IDS: [u32; 20] = [
    3048, 4903, 496, 886, 236772, 54554, 26093, 573, 506, 5602, 236761, 108, 9067, 12583, 236772,
    236770, 236771, 236771, 236770, 699,
];
