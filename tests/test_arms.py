"""The arms registry (fpt.arms): one table, lazily loaded implementations, and adding an arm
touches nothing but the module that defines it (here: this test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import fpt
from fpt.arms import ARMS, Arm, arm, markdown_table, register
from fpt.arms.base import ArmHooks
from fpt.errors import FptError

ROOT = Path(__file__).resolve().parents[1]


class HeadOnlyWithFrozenInput(ArmHooks):
    """A toy arm: the FPT model with the input layer scaled to zero and only the head trained."""

    def finish(self, model, options) -> None:
        with torch.no_grad():
            model.input.weight.zero_()

    def train_groups(self, groups: list[str]) -> list[str]:
        return ["output"]


@pytest.fixture
def toy_arm():
    entry = register(Arm("toy", "a test's arm", "test", f"{__name__}:HeadOnlyWithFrozenInput"))
    yield entry
    del ARMS["toy"]


def test_a_toy_arm_registered_here_builds_and_trains_through_the_library(toy_arm, tiny_gpt2):
    model = fpt.build_model(str(tiny_gpt2), token_dim=4, n_outputs=3, seq_len=10, method="toy", precision="fp32")
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"head"}
    assert float(model.input.weight.abs().sum()) == 0.0
    assert model.options.method == "toy"


def test_a_toy_arm_runs_through_fpt_train(toy_arm, tiny_gpt2, tmp_path):
    from fpt.run.config import build_config
    from fpt.run.train import train

    result = train(build_config({"task": "bit-xor", "task_options": {"n_bits": 5, "n_val": 8, "n_test": 8}, "model": str(tiny_gpt2),
                                 "method": "toy", "steps": 2, "eval_every": 2, "batch_size": 4,
                                 "out": str(tmp_path / "run"), "progress": False, "precision": "fp32"}))
    assert result["config"]["method"] == "toy"
    assert result["trainable_params"] == result["params_by_group"]["output"]["trainable"] > 0


def test_registering_a_name_twice_is_refused(toy_arm):
    with pytest.raises(ValueError, match="registered twice"):
        register(Arm("toy", "again", "test", f"{__name__}:HeadOnlyWithFrozenInput"))


def test_an_unknown_arm_is_one_line_naming_the_known_ones():
    with pytest.raises(FptError, match=r"--method must be one of fpt, full, .*got 'lorra'"):
        arm("lorra")


def test_the_table_imports_no_implementation_and_no_torch():
    import subprocess
    import sys

    code = ("import sys, fpt.arms; print(any(m.startswith(('torch', 'fpt.arms.')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_every_registered_implementation_loads():
    for entry in ARMS.values():
        assert isinstance(entry.hooks(), ArmHooks), entry.name


def test_docs_arms_table_is_the_registry():
    """docs/ARMS.md holds `fpt arms --markdown`'s table verbatim."""
    text = (ROOT / "docs" / "ARMS.md").read_text()
    assert markdown_table() in text, "docs/ARMS.md's arms table is stale: paste `fpt arms --markdown` into it"


def test_an_explicit_train_is_honoured_and_an_unset_one_is_the_arms_own():
    from fpt.options import FPT_DEFAULT_GROUPS, ModelOptions

    assert ModelOptions(method="lora").validate().train == "input,output"
    assert ModelOptions(method="lora", train=FPT_DEFAULT_GROUPS).validate().train == FPT_DEFAULT_GROUPS
    assert ModelOptions().validate().train == FPT_DEFAULT_GROUPS
    assert ModelOptions(method="no-lm").validate().train == "all"
    assert ModelOptions(model="repeat-last").validate().train == "none"
    assert ModelOptions(model="linear", train="output").validate().train == "output"
