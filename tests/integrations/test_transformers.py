"""MLDashCallback in a real Transformers Trainer on the CPU: what lands in the store."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import ml_dash
from ml_dash import Experiment

from .readme_examples import readme_example, run_example

torch = pytest.importorskip("torch", reason="torch is not installed")
transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'ml-dash[transformers]')")
pytest.importorskip("accelerate", reason="accelerate is not installed (the Trainer needs it with PyTorch)")

from ml_dash.integrations.transformers import MLDashCallback, split_logs  # noqa: E402

TINY = """
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

def tiny_trainer(callback, max_steps=4, output_dir="hf-out"):
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=2)
    data = [{"input_ids": torch.randint(0, 20, (4,)), "labels": i % 2} for i in range(16)]
    args = TrainingArguments(output_dir=output_dir, max_steps=max_steps, per_device_train_batch_size=4,
                             logging_steps=1, learning_rate=0.01, report_to="none", save_strategy="no",
                             use_cpu=True, disable_tqdm=True, seed=3)
    return Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=data,
                   eval_dataset=data[:4], callbacks=[callback])
"""
_helpers: dict[str, Any] = {}
exec(TINY, _helpers)


def _points(run: Any, stream: str) -> list[dict[str, Any]]:
    return [p["data"] for p in run.metrics(stream).read(0, 1000)["data"]]


def test_eval_and_test_keys_go_to_their_own_streams() -> None:
    assert split_logs({"loss": 1.0, "eval_loss": 2.0, "test_acc": 0.5, "eval_": 3}) == {
        "train": {"loss": 1.0, "eval_": 3}, "eval": {"loss": 2.0}, "test": {"acc": 0.5}}


def test_training_stores_args_model_config_logs_with_global_step_and_completes(
        tmp_path: Path, dash_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _helpers["tiny_trainer"](MLDashCallback("alice/nlp/hf-1", dash_root=dash_root)).train()

    with ml_dash.open("alice/nlp/hf-1", root=dash_root) as run:
        assert run.info.status == "COMPLETED"
        params = run.params.get()
        assert params["args.learning_rate"] == 0.01 and params["args.max_steps"] == 4
        assert params["model.hidden_size"] == 8 and params["model.model_type"] == "bert"
        train = _points(run, "train")
        steps = [p["step"] for p in train if "loss" in p]
        assert steps == [1, 2, 3, 4]
        assert all(isinstance(p["learning_rate"], float) and "epoch" in p for p in train if "loss" in p)
        assert train[-1]["step"] == 4 and "train_runtime" in train[-1]  # the summary at the end


def test_evaluate_after_training_resumes_and_closes_the_run(
        tmp_path: Path, dash_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    callback = MLDashCallback("alice/nlp/hf-eval", dash_root=dash_root)
    trainer = _helpers["tiny_trainer"](callback, max_steps=2)
    trainer.train()
    trainer.evaluate()

    assert callback.experiment.status == "COMPLETED"
    with ml_dash.open("alice/nlp/hf-eval", root=dash_root) as run:
        assert run.info.status == "COMPLETED"
        [point] = _points(run, "eval")
        assert point["step"] == 2 and isinstance(point["loss"], float)


def test_a_run_started_by_the_caller_is_left_open_for_the_caller(
        tmp_path: Path, dash_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = Experiment(prefix="alice/nlp/hf-mine", dash_root=dash_root)
    with exp.run:
        _helpers["tiny_trainer"](MLDashCallback(experiment=exp), max_steps=2).train()
        assert exp.status == "RUNNING"
    with ml_dash.open("alice/nlp/hf-mine", root=dash_root) as run:
        assert run.info.status == "COMPLETED"
        assert [p["step"] for p in _points(run, "train") if "loss" in p] == [1, 2]


def test_an_exception_that_ends_the_process_marks_the_run_failed(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TINY + textwrap.dedent("""
        from ml_dash.integrations.transformers import MLDashCallback

        class Boom(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == 2:
                    raise RuntimeError("CUDA out of memory (pretend)")

        trainer = tiny_trainer(MLDashCallback("alice/nlp/hf-crash", dash_root=".dash"))
        trainer.add_callback(Boom())
        trainer.train()
    """))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**_env(), "ML_DASH_ECHO": "0"})
    assert result.returncode == 1 and "CUDA out of memory (pretend)" in result.stderr  # the traceback still shows

    with ml_dash.open("alice/nlp/hf-crash", root=tmp_path / ".dash") as run:
        assert run.info.status == "FAILED"
        assert run.info.metadata["error"] == "RuntimeError: CUDA out of memory (pretend)"
        assert [p["step"] for p in _points(run, "train")] == [1]  # the step logged before the crash


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}


def test_readme_transformers_example_runs_and_stores_what_it_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_example(readme_example("from ml_dash.integrations.transformers import"))

    with ml_dash.open("alice/nlp/bert-tiny-1", root=tmp_path / ".dash") as run:
        assert run.info.status == "COMPLETED"
        assert run.params.get()["args.logging_steps"] == 2
        assert [p["step"] for p in _points(run, "train") if "loss" in p] == [2, 4, 6]
        assert [(p["step"], p["epoch"]) for p in _points(run, "eval")] == [(6, 1.5)]
