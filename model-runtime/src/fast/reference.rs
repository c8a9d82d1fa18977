//! The reference generation of the default model (SmolLM2-135M-Instruct Q4_1), produced by
//! llama.cpp with greedy decoding: used by benchmarks and by the tests that check the fast
//! backend's output is unchanged.

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
