"""Greedy reference ids from llama.cpp (llama-cpp-python) for the runtime's parity tests.

Usage: python bench/llamacpp_reference.py MODEL.gguf chatml|plain [N]
Prints the prompt ids and the first N (default 20) greedy ids (argmax of the last logits after
`eval`) as JSON. `chatml`: the SmolLM2 reference chat; `plain`: the runtime's template for a
model without chat template (BOS, then system, a blank line, the user text and a newline).
The prompt runs one token at a time (`n_batch=1`): the batched path of the llama.cpp build made
here (`GGML_NATIVE=ON` on a CPU with AMX) crashes in this virtual machine; the fast backend's
batched prompt equals its token-by-token one.
"""
import json
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama

SYSTEM = "You write short, polite order confirmations."
USER = ("Order SO-1001 from ACME Ltd, total 1234.50 CNY. "
        "Write a one-sentence confirmation for the customer.")

path, mode = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 20
llm = Llama(model_path=path, n_ctx=512, n_batch=1, n_ubatch=1, n_threads=2, verbose=True)
if mode == "chatml":
    text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER}<|im_end|>\n"
            "<|im_start|>assistant\n")
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
else:
    ids = llm.tokenize(f"{SYSTEM}\n\n{USER}\n".encode(), add_bos=True, special=False)
n_vocab = llm.n_vocab()
llm.eval(ids)
generated = []
while len(generated) < count:
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    generated.append(int(logits.argmax()))
    llm.eval([generated[-1]])
print(json.dumps({"prompt_ids": ids, "greedy_ids": generated,
                  "text": llm.detokenize(generated).decode("utf-8", "replace")}))
