"""Copied from the design notes' tools/shape_model.py (kept in the project: nothing reads
../shared at run time).

Write a GGUF with the exact tensor shapes of Llama-3.2-3B-Instruct and random weights.

Speed of llama.cpp depends on tensor shapes and types, not on the weights' values, so a
shape-equivalent model measures what the real one would (tok/s, TTFT, memory), while the
text it produces is noise. Quantize the F16 output with llama-quantize to Q4_K_M.

The vocabulary has Llama 3's size (128,256) but made-up entries: byte tokens, printable
characters, filler words, and with --words-file the words of that text as whole tokens (and
their prefixes, the merge path of llama.cpp's SentencePiece tokenizer). The benches' English
prompts then tokenize at about one token per word, near Llama 3's own ~1.3, instead of one
token per character: a "~400-token history" stays ~400 tokens.

usage: python3 shape_model.py OUT.gguf [--layers 28] [--gguf-py DIR] [--words-file TEXT]
"""

import argparse
import re
import sys

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--layers", type=int, default=28)
ap.add_argument("--gguf-py", default=None)
ap.add_argument("--words-file", default=None, help="text whose words become whole tokens")
a = ap.parse_args()
if a.gguf_py:
    sys.path.insert(0, a.gguf_py)
import gguf  # noqa: E402

HID, FFN, HEADS, KV_HEADS, VOCAB, HEAD_DIM = 3072, 8192, 24, 8, 128256, 128

rng = np.random.default_rng(0)
POOL = (rng.standard_normal(1 << 24) * 0.02).astype(np.float16)


def rand(*shape):
    n = int(np.prod(shape))
    reps = -(-n // POOL.size)
    return np.tile(POOL, reps)[:n].reshape(shape)


w = gguf.GGUFWriter(a.out, "llama")
w.add_name("shape-equivalent Llama-3.2-3B (random weights)")
w.add_block_count(a.layers)
w.add_context_length(131072)
w.add_embedding_length(HID)
w.add_feed_forward_length(FFN)
w.add_head_count(HEADS)
w.add_head_count_kv(KV_HEADS)
w.add_rope_dimension_count(HEAD_DIM)
w.add_rope_freq_base(500000.0)
w.add_layer_norm_rms_eps(1e-5)
w.add_vocab_size(VOCAB)
w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

# SentencePiece-style vocab: specials, 256 byte tokens, then unique filler tokens.
entries = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
# the chat template's markers are single control tokens, as in Llama 3
entries += [(t, 0.0, 3) for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")]
entries += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
entries += [(chr(c), -1.0, 1) for c in range(33, 127)]
entries.append(("\u2581", -1.0, 1))
if a.words_file:
    known = {e[0] for e in entries}
    with open(a.words_file, encoding="utf-8") as f:
        words = re.findall(r"[A-Za-z0-9']+", f.read())
    for word in dict.fromkeys(words):
        for k in range(1, len(word) + 1):
            piece = "\u2581" + word[:k]
            if piece not in known:
                known.add(piece)
                entries.append((piece, -0.5 + k * 1e-3, 1))
entries += [(f"\u2581w{i}", -2.0 - i * 1e-6, 1) for i in range(VOCAB - len(entries))]
toks = [e[0] for e in entries]
scores = [e[1] for e in entries]
types = [e[2] for e in entries]
w.add_tokenizer_model("llama")
w.add_token_list(toks)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_chat_template(
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

w.add_tensor("token_embd.weight", rand(VOCAB, HID))
w.add_tensor("rope_freqs.weight", np.ones(HEAD_DIM // 2, dtype=np.float32))
for L in range(a.layers):
    p = f"blk.{L}."
    w.add_tensor(p + "attn_norm.weight", np.ones(HID, dtype=np.float32))
    w.add_tensor(p + "attn_q.weight", rand(HID, HID))
    w.add_tensor(p + "attn_k.weight", rand(KV_HEADS * HEAD_DIM, HID))
    w.add_tensor(p + "attn_v.weight", rand(KV_HEADS * HEAD_DIM, HID))
    w.add_tensor(p + "attn_output.weight", rand(HID, HID))
    w.add_tensor(p + "ffn_norm.weight", np.ones(HID, dtype=np.float32))
    w.add_tensor(p + "ffn_gate.weight", rand(FFN, HID))
    w.add_tensor(p + "ffn_up.weight", rand(FFN, HID))
    w.add_tensor(p + "ffn_down.weight", rand(HID, FFN))
w.add_tensor("output_norm.weight", np.ones(HID, dtype=np.float32))

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", a.out)
