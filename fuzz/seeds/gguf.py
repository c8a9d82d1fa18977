"""Writes the GGUF seed of the `gguf` fuzz target: a v3 header with llama metadata, a small
byte-level BPE vocabulary with merges and token types, and one F32 tensor (a real model file is
hundreds of MB; the header paths are what the target reads). usage: gguf.py OUT"""
import struct, sys

def string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b

def kv(key, vtype, payload):
    return string(key) + struct.pack("<I", vtype) + payload

tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "O", "r", "d", "e", "Or", "der", "Order", "Ġ", "S", "1", ","]
merges = ["O r", "d e", "de r", "Or der"]
meta = [
    kv("general.architecture", 8, string("llama")),
    kv("general.alignment", 4, struct.pack("<I", 32)),
    kv("llama.context_length", 4, struct.pack("<I", 64)),
    kv("llama.embedding_length", 4, struct.pack("<I", 8)),
    kv("tokenizer.ggml.model", 8, string("gpt2")),
    kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens)) + b"".join(string(t) for t in tokens)),
    kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(string(m) for m in merges)),
    kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, len(tokens)) + b"".join(struct.pack("<i", 3 if t.startswith("<|") else 1) for t in tokens)),
    kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
]
tensor = string("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 8, 2) + struct.pack("<I", 0) + struct.pack("<Q", 0)
out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(meta)) + b"".join(meta) + tensor
out += b"\0" * (-len(out) % 32) + struct.pack("<16f", *range(16))
open(sys.argv[1], "wb").write(out)
