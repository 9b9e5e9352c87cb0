"""Offline, deterministic tiny random-weight llama GGUF for exercising llama-server.

The model is noise (random weights) but structurally a real llama + byte-level BPE
(gpt2-style) + ChatML model, so llama-server loads it and every endpoint works.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

FILE_NAME = "tiny-llama.gguf"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
VOCAB_SIZE = 512  # upper bound; this corpus with min_frequency=2 yields 352 tokens
# llama.cpp name for the GPT-2 split regex, which is what tokenizers' ByteLevel uses.
PRE_TOKENIZER = "gpt-2"
# Qwen2-Instruct's ChatML template, so /v1/chat/completions renders prompts like Qwen.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Dims: tiny but with head_dim 16 (n_embd / n_head), which the CPU kernels handle.
N_EMBD, N_LAYER, N_HEAD, N_HEAD_KV, N_FF, N_CTX = 64, 2, 4, 4, 128, 4096

CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model can still answer a
question, even when the answer is only a single letter such as A, B, C or D.
Release pipelines build container images, run tests on every chip and publish
the images that pass. Each test starts a server, sends a request and checks the
response. The server reads the model file, loads the weights into memory and
waits for requests on a local port.
When you ask a question, the assistant thinks about the question and then writes
an answer. Good answers are short, clear and correct. If the question has four
options, the answer is one of them: A, B, C, or D.
Numbers matter too: 0 1 2 3 4 5 6 7 8 9, 10, 42, 100, 2048 and 4096 are common
in configuration files. The context length, the batch size and the number of
threads are set when the server starts.
"""


def _train_tokenizer() -> Tokenizer:
    # Byte-level BPE = llama.cpp's tokenizer model "gpt2" (GPT-2 regex + byte map). The trainer
    # breaks count ties by pair id, so merges are identical across runs and processes.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes -> no <unk>
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    return tok


def _vocab(tok: Tokenizer) -> tuple[list[str], list[int], list[str]]:
    """tokens (by id), token types, merges ("a b" strings) as GGUF stores them."""
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "vocab ids not dense"
    types = [gguf.TokenType.CONTROL if t in SPECIAL_TOKENS else gguf.TokenType.NORMAL for t in tokens]
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return tokens, [int(t) for t in types], merges


def _banned(tok: Tokenizer, tokens: list[str]) -> np.ndarray:
    """1.0 for tokens the model should never sample: control bytes, partial UTF-8, specials but EOS."""

    def ok(i: int, t: str) -> bool:
        s = tok.decode([i])  # specials decode to "", lone UTF-8 continuation bytes to U+FFFD
        return t == "<|im_end|>" or (s != "" and all(c == "\n" or " " <= c <= "~" for c in s))

    return np.array([0.0 if ok(i, t) else 1.0 for i, t in enumerate(tokens)], dtype=np.float32)


def _tensors(banned: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Standard llama tensor names; numpy shape is (out, in), GGUF stores it reversed."""
    rng = np.random.default_rng(seed)
    n_vocab = len(banned)

    def w(*shape: int, std: float = 0.02) -> np.ndarray:
        # Small std for the blocks keeps activations finite and the residual stream
        # dominated by the embedding, so the model is a stable random "bigram" model.
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    ones = lambda: np.ones(N_EMBD, dtype=np.float32)  # noqa: E731 - RMSNorm gains
    head_dim = N_EMBD // N_HEAD
    # Llama has no output bias, so fake one: embedding channel 0 is a large constant that
    # survives the weak blocks and RMSNorm (~ +6 after norm); output column 0 then acts as a
    # per-token logit bias (~ -12 for banned tokens) vs ~1.0 std of the random logits.
    emb = w(n_vocab, N_EMBD, std=0.1)
    emb[:, 0] = 1.0
    t = {"token_embd.weight": emb}
    for i in range(N_LAYER):
        b = f"blk.{i}."
        t[b + "attn_norm.weight"] = ones()
        t[b + "attn_q.weight"] = w(N_EMBD, N_EMBD)
        t[b + "attn_k.weight"] = w(N_HEAD_KV * head_dim, N_EMBD)
        t[b + "attn_v.weight"] = w(N_HEAD_KV * head_dim, N_EMBD)
        t[b + "attn_output.weight"] = w(N_EMBD, N_EMBD)
        t[b + "ffn_norm.weight"] = ones()
        t[b + "ffn_gate.weight"] = w(N_FF, N_EMBD)
        t[b + "ffn_up.weight"] = w(N_FF, N_EMBD)
        t[b + "ffn_down.weight"] = w(N_EMBD, N_FF)
    t["output_norm.weight"] = ones()
    out = w(n_vocab, N_EMBD, std=0.2)
    out[:, 0] = -2.0 * banned
    t["output.weight"] = out
    return t


def make_tiny_llama(out_dir: Path, *, seed: int = 0) -> Path:
    """Write <out_dir>/tiny-llama.gguf (creating out_dir) and return its path. Same seed -> byte-identical file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    tok = _train_tokenizer()
    tokens, types, merges = _vocab(tok)
    ids = {t: i for i, t in enumerate(tokens)}

    # Write to a temp name and rename, so a reader never sees a half-written model.
    tmp = path.with_suffix(".gguf.tmp")
    wr = gguf.GGUFWriter(tmp, "llama")
    wr.add_name("tiny-llama")
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_vocab_size(len(tokens))
    wr.add_context_length(N_CTX)
    wr.add_embedding_length(N_EMBD)
    wr.add_block_count(N_LAYER)
    wr.add_feed_forward_length(N_FF)
    wr.add_head_count(N_HEAD)
    wr.add_head_count_kv(N_HEAD_KV)
    wr.add_rope_dimension_count(N_EMBD // N_HEAD)
    wr.add_rope_freq_base(10000.0)
    wr.add_layer_norm_rms_eps(1e-6)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(PRE_TOKENIZER)
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(ids["<|endoftext|>"])
    wr.add_eos_token_id(ids["<|im_end|>"])
    wr.add_pad_token_id(ids["<|endoftext|>"])
    wr.add_add_bos_token(False)  # ChatML models (Qwen) do not prepend BOS
    wr.add_chat_template(CHAT_TEMPLATE)
    for name, arr in _tensors(_banned(tok, tokens), seed).items():
        wr.add_tensor(name, arr)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    tmp.replace(path)
    return path
