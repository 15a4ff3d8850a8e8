"""The public API: `import fpt` as a user's own code would, and the README's example verbatim."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import fpt
from fpt.errors import FptError
from fpt.run.config import build_config
from fpt.run.setup import setup

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README's Python section has no ```python block"
    return blocks[0]


def test_readme_python_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_example(), "README.md#python", "exec"), {})
    out = capsys.readouterr().out
    assert "trainable params:" in out and "|| trainable%:" in out
    saved = tmp_path / "my-fpt" / "model.safetensors"
    assert saved.is_file() and saved.stat().st_size < 5 * 2**20  # only the trained tensors


def test_every_public_name_exists_and_is_documented():
    for name in fpt.__all__:
        value = getattr(fpt, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"fpt.{name} has no docstring"
    with pytest.raises(AttributeError):
        fpt.no_such_name  # noqa: B018


def test_build_model_gives_what_fpt_train_builds(tiny_bert):
    """One place decides the defaults: same groups trained, same counts, same initial outputs."""
    built = setup(build_config({"task": "bit-xor", "model": str(tiny_bert), "precision": "fp32"}))
    spec = built.task.spec
    model = fpt.build_model(str(tiny_bert), token_dim=spec.token_dim, n_outputs=spec.n_outputs,
                            objective=spec.objective, seq_len=spec.seq_len, readout_tokens=spec.readout_tokens,
                            precision="fp32", name=spec.name)
    assert model.counts == built.counts
    assert [n for n, p in model.named_parameters() if p.requires_grad] == built.trainable_names
    x = torch.randn(3, spec.seq_len, spec.token_dim)
    model.eval(), built.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), built.model(x, torch.ones(3, spec.seq_len, dtype=torch.bool)))


def test_a_plain_loop_trains_and_round_trips(tiny_gpt2, tmp_path):
    model = fpt.build_model(str(tiny_gpt2), vocab_size=7, n_outputs=2, seq_len=6, precision="fp32")
    x = torch.randint(0, 7, (16, 6))
    y = (x[:, -1] > 3).long()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    mask = torch.ones(16, 6, dtype=torch.bool)
    mask[:4, 4:] = False
    model.eval()
    path = model.save_pretrained(tmp_path / "m")
    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    again = fpt.FPTModel.from_pretrained(tmp_path / "m")
    assert not again.training and again.options == model.options
    with torch.no_grad():
        assert torch.equal(model(x, mask), again(x, mask))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["fpt_model"]["backbone"]["hash"]


def test_from_pretrained_opens_an_fpt_train_run(tmp_path, tiny_bert):
    fpt.train({"task": "bit-xor", "model": str(tiny_bert), "steps": 4, "eval_every": 2, "out": str(tmp_path / "r"),
               "progress": False})
    model = fpt.FPTModel.from_pretrained(tmp_path / "r")
    x = torch.bernoulli(torch.full((5, 10, 1), 0.5))
    with torch.no_grad():
        ids = (model(x) > 0).to(torch.uint8).numpy()
    assert np.array_equal(ids, fpt.predict(str(tmp_path / "r"), x.numpy(), device="cpu"))


def test_from_pretrained_refuses_another_backbone(tmp_path, tiny_bert):
    local = tmp_path / "bert"
    shutil.copytree(tiny_bert, local)
    model = fpt.build_model(str(local), token_dim=2, n_outputs=2, seq_len=8)
    model.save_pretrained(tmp_path / "m")
    with torch.no_grad():  # the same architecture at the same path, with other frozen weights
        backbone = fpt.load_backbone(str(local), "pretrained", "auto", 0)[0]
        next(backbone.parameters()).add_(1.0)
        backbone.save_pretrained(local)
    with pytest.raises(FptError, match="different model or version"):
        fpt.FPTModel.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("drop", ["config", "backbone", "task"])
def test_a_header_missing_a_part_is_one_clear_error(tmp_path, tiny_bert, drop):
    model = fpt.build_model(str(tiny_bert), token_dim=2, n_outputs=2, seq_len=8)
    header = model.identity()
    del header[drop]
    path = tmp_path / "model.safetensors"
    save_file(model.trained_state(), str(path), metadata={"fpt": json.dumps({"format": 1, **header})})
    with pytest.raises(FptError, match="without|predates"):
        fpt.FPTModel.from_pretrained(path)
    (tmp_path / "run").mkdir()
    path.rename(tmp_path / "run" / "model.safetensors")
    with pytest.raises(FptError):
        fpt.predict(str(tmp_path / "run"), np.zeros((1, 8, 2), np.float32), device="cpu")


@pytest.mark.parametrize("kwargs,message", [
    ({}, "exactly one of token_dim"),
    ({"token_dim": 2, "vocab_size": 3}, "exactly one of token_dim"),
    ({"token_dim": 0}, "token_dim must be a positive integer"),
    ({"token_dim": 2, "objective": "ranking"}, "objective must be one of"),
    ({"token_dim": 2, "readout_tokens": 3}, "bits objective"),
    ({"token_dim": 2, "train": "input,heads"}, "unknown group"),
    ({"token_dim": 2, "backbone_dropout": 1.5}, "--backbone-dropout"),
    ({"token_dim": 2, "seq_len": 10_000}, "positions"),
    ({"token_dim": 2, "lora_rnak": 4}, "unknown option 'lora_rnak'; did you mean 'lora_rank'"),
    ({"token_dim": 2, "objective": "forecast"}, "forecasts series windows"),
])
def test_build_model_refuses_what_fpt_train_refuses(tiny_bert, kwargs, message):
    with pytest.raises(FptError, match=message):
        fpt.build_model(str(tiny_bert), n_outputs=2, **kwargs)


def test_print_trainable_parameters_ends_in_peft_wording(tiny_bert, capsys):
    fpt.build_model(str(tiny_bert), token_dim=2, n_outputs=2, seq_len=8).print_trainable_parameters()
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["group", "trainable", "total"]
    assert re.fullmatch(r"trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}", lines[-1])
