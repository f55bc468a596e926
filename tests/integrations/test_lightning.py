"""MLDashLogger in a real Lightning Trainer on the CPU: what lands in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ml_dash
from ml_dash import Experiment

from .readme_examples import readme_example, run_example

L = pytest.importorskip("lightning", reason="lightning is not installed (pip install 'ml-dash[lightning]')")
torch = pytest.importorskip("torch", reason="torch is not installed")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ml_dash.integrations.lightning import MLDashLogger  # noqa: E402


class Tiny(L.LightningModule):  # type: ignore[misc, name-defined]
    def __init__(self, lr: float = 0.05, width: int = 4, fail_at: int | None = None,
                 interrupt: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(3, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.hparams.fail_at is not None and self.global_step >= self.hparams.fail_at:
            if self.hparams.interrupt:
                raise KeyboardInterrupt
            raise ValueError("loss went NaN")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        self.log("lr_seen", self.hparams.lr)
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _fit(logger: Any, model: Any, epochs: int = 2, trainer_module: Any = None) -> None:
    data = DataLoader(TensorDataset(torch.randn(16, 3), torch.randn(16, 1)), batch_size=4)
    trainer = (trainer_module or L).Trainer(
        max_epochs=epochs, logger=logger, log_every_n_steps=1, accelerator="cpu", enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)


def _points(run: Any, stream: str) -> list[dict[str, Any]]:
    return [p["data"] for p in run.metrics(stream).read(0, 1000)["data"]]


def test_fit_stores_hyperparameters_metrics_with_steps_and_completes(dash_root: Path) -> None:
    _fit(MLDashLogger("alice/tiny/pl-1", dash_root=dash_root), Tiny())

    with ml_dash.open("alice/tiny/pl-1", root=dash_root) as run:
        assert run.info.status == "COMPLETED"
        assert run.params.get() == {"lr": 0.05, "width": 4, "fail_at": None, "interrupt": False}
        train = _points(run, "train")  # "train/loss" -> stream train, field loss
        assert [p["step"] for p in train] == list(range(8))  # 2 epochs x 4 batches
        assert [p["epoch"] for p in train] == [0] * 4 + [1] * 4
        assert all(isinstance(p["loss"], float) for p in train)
        assert [p["lr_seen"] for p in _points(run, "metrics")] == pytest.approx([0.05] * 8)  # no "/": default stream


def test_exception_in_training_marks_the_run_failed_with_the_reason(dash_root: Path) -> None:
    with pytest.raises(ValueError, match="loss went NaN"):
        _fit(MLDashLogger("alice/tiny/pl-fail", dash_root=dash_root), Tiny(fail_at=3))

    with ml_dash.open("alice/tiny/pl-fail", root=dash_root) as run:
        assert run.info.status == "FAILED"
        assert run.info.metadata["error"] == "ValueError: loss went NaN"
        assert [p["step"] for p in _points(run, "train")] == [0, 1, 2]  # what came before is kept


def test_ctrl_c_marks_the_run_cancelled(dash_root: Path) -> None:
    with pytest.raises(SystemExit):  # Lightning turns KeyboardInterrupt into sys.exit(1)
        _fit(MLDashLogger("alice/tiny/pl-ctrl-c", dash_root=dash_root), Tiny(fail_at=1, interrupt=True))

    with ml_dash.open("alice/tiny/pl-ctrl-c", root=dash_root) as run:
        assert run.info.status == "CANCELLED"


def test_a_run_started_by_the_caller_is_left_open_for_the_caller(dash_root: Path) -> None:
    exp = Experiment(prefix="alice/tiny/pl-mine", dash_root=dash_root)
    with exp.run:
        _fit(MLDashLogger(experiment=exp), Tiny(), epochs=1)
        assert exp.status == "RUNNING"
        exp.metrics("eval").log(score=1.0)

    with ml_dash.open("alice/tiny/pl-mine", root=dash_root) as run:
        assert run.info.status == "COMPLETED"
        assert len(_points(run, "train")) == 4 and len(_points(run, "eval")) == 1


def test_fitting_again_resumes_the_run_and_steps_continue(dash_root: Path) -> None:
    logger = MLDashLogger("alice/tiny/pl-again", dash_root=dash_root)
    _fit(logger, Tiny(), epochs=1)
    assert logger.experiment.status == "COMPLETED"  # reading it does not reopen the run
    _fit(logger, Tiny(), epochs=1)

    with ml_dash.open("alice/tiny/pl-again", root=dash_root) as run:
        assert run.info.status == "COMPLETED"
        assert len(run.info.resumes) == 1
        assert [p["step"] for p in _points(run, "train")] == [0, 1, 2, 3] * 2


def test_the_pytorch_lightning_package_name_works_too(dash_root: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning", reason="pytorch_lightning is not installed")
    from ml_dash.integrations.pytorch_lightning import MLDashLogger as PLLogger

    class PLTiny(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"lr": 0.1})
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    _fit(PLLogger("alice/tiny/pl-old-name", dash_root=dash_root), PLTiny(), epochs=1, trainer_module=pl)

    with ml_dash.open("alice/tiny/pl-old-name", root=dash_root) as run:
        assert run.info.status == "COMPLETED"
        assert run.params.get() == {"lr": 0.1}
        assert [p["step"] for p in _points(run, "train")] == [0, 1, 2, 3]


def test_readme_lightning_example_runs_and_stores_what_it_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_example(readme_example("from ml_dash.integrations.lightning import"))

    with ml_dash.open("alice/regression/lightning-1", root=tmp_path / ".dash") as run:
        assert run.info.status == "COMPLETED"
        assert run.params.get() == {"lr": 0.1, "hidden": 8}
        assert [p["step"] for p in _points(run, "train")] == [1, 3, 5, 7, 9, 11, 13, 15]
        assert [(p["step"], p["epoch"]) for p in _points(run, "val")] == [(7, 0), (15, 1)]
