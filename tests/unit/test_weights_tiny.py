import hashlib
import subprocess
import sys

import gguf
import pytest

from flagrelease.weights_tiny import CHAT_TEMPLATE, make_tiny_llama

N_LAYER = 2
BLOCK = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
EXPECTED_TENSORS = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
    f"blk.{i}.{n}.weight" for i in range(N_LAYER) for n in BLOCK
}


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("a") / "nested")


def _str(reader, key):
    return reader.fields[key].contents()


def test_deterministic_in_process_and_across_processes(model, tmp_path):
    again = make_tiny_llama(tmp_path / "b")
    assert again.name == "tiny-llama.gguf"
    assert model.read_bytes() == again.read_bytes()
    # A fresh interpreter gets fresh Rust hash seeds, which would expose order-dependent BPE training.
    code = f"from flagrelease.weights_tiny import make_tiny_llama; make_tiny_llama({str(tmp_path / 'c')!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _sha(tmp_path / "c" / "tiny-llama.gguf") == _sha(model)


def test_seed_changes_weights(model, tmp_path):
    assert _sha(make_tiny_llama(tmp_path, seed=1)) != _sha(model)


def test_file_size(model):
    assert 300_000 < model.stat().st_size < 1_000_000


def test_metadata_and_tensors(model):
    r = gguf.GGUFReader(model)
    assert _str(r, "general.architecture") == "llama"
    assert _str(r, "tokenizer.ggml.model") == "gpt2"
    assert _str(r, "tokenizer.ggml.pre") == "gpt-2"  # "gpt2" is rejected by llama.cpp
    template = _str(r, "tokenizer.chat_template")
    assert template == CHAT_TEMPLATE and "<|im_start|>" in template and "add_generation_prompt" in template

    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    assert 300 <= len(tokens) <= 600
    assert tokens[_str(r, "tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert tokens[_str(r, "tokenizer.ggml.padding_token_id")] == "<|endoftext|>"
    types = r.fields["tokenizer.ggml.token_type"].contents()
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert types[tokens.index(special)] == gguf.TokenType.CONTROL
    assert {"A", "B", "C", "D", *"0123456789"} <= set(tokens)  # answer letters are single tokens
    assert len(r.fields["tokenizer.ggml.merges"].contents()) > 0

    tensors = {t.name: t for t in r.tensors}
    assert set(tensors) == EXPECTED_TENSORS
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in tensors.values())
    assert tuple(tensors["token_embd.weight"].shape) == (64, len(tokens))  # GGUF order: (n_embd, n_vocab)
