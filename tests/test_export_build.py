"""`dvoinik export` end to end: a trained micro run from the command line, and a LoRA run merged or kept as an adapter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from exporting import save_tiny_llama
from training_fixtures import make_workspace
from typer.testing import CliRunner

from dvoinik.cli import app
from dvoinik.export import build
from dvoinik.export.build import export_double
from dvoinik.export.options import ExportError, ExportOptions

runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})


def test_cli_exports_both_formats_with_card_and_runners(served_ws, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["-w", str(served_ws.root), "export", "--to", str(out), "--gguf-type", "f16",
                                 "--name", "Цель Тестовая", "--preset", "nucleus"])
    assert result.exit_code == 0, result.output
    assert "Chosen: the run's last checkpoint (the run has not been evaluated)" in result.output
    assert "ollama create tsel-testovaia -f Modelfile" in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["Modelfile", "README.md", "RUNNING.md", "config.json", "export.json", "generation_config.json",
                     "model.safetensors", "tokenizer.json", "tokenizer_config.json", "tsel-testovaia-f16.gguf"]
    record = json.loads((out / "export.json").read_text())
    assert record["checkpoint"] == "checkpoint-24" and record["preset"] == "nucleus" and record["context_length"] == 128
    for name, entry in record["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert "FROM ./tsel-testovaia-f16.gguf" in (out / "Modelfile").read_text()
    assert "PARAMETER temperature 1" in (out / "Modelfile").read_text()  # the nucleus preset
    card = (out / "README.md").read_text()
    assert "general" not in card and "license: other" in card and "pipeline_tag: text-generation" in card
    assert "The originality guard is not in these weights" in card and "Цель" in card
    assert str(served_ws.root) not in card + (out / "RUNNING.md").read_text()  # no path of the writer's computer

    again = runner.invoke(app, ["-w", str(served_ws.root), "export", "--to", str(out), "--format", "hf"])
    assert again.exit_code == 0, again.output  # an earlier export is replaced whole
    assert not list(out.glob("*.gguf")) and json.loads((out / "export.json").read_text())["format"] == "hf"


def test_cli_refuses_in_one_line_and_writes_nothing(served_ws, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    cases = [
        (["--to", str(mine)], "is not a dvoinik export"),
        (["--to", str(tmp_path / "a"), "--checkpoint", "best"], "no recommendation yet"),
        (["--to", str(tmp_path / "b"), "--gguf-type", "q4"], "--gguf-type 'q4'"),
        (["--to", str(tmp_path / "c"), "--adapter"], "this run trained every weight"),
        (["--to", str(tmp_path / "d"), "--preset", "warm"], "unknown preset 'warm'"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, ["-w", str(served_ws.root), "export", *args])
        assert result.exit_code == 2, result.output
        assert expected in result.output and result.output.strip().count("\n") == 0, result.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_failed_export_leaves_nothing_that_looks_complete(served_ws, tmp_path: Path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(build, "write_card", broken)
    with pytest.raises(OSError):
        export_double(served_ws, ExportOptions(to=tmp_path / "out", format="hf"))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- LoRA


@pytest.fixture(scope="module")
def lora_ws(tmp_path_factory: pytest.TempPathFactory):
    """A LoRA run on a tiny local Llama base (4 steps at a high learning rate, so the adapter changes the model)."""
    from dvoinik.training.loop import train

    root = tmp_path_factory.mktemp("lora")
    base = save_tiny_llama(root / "base-llama")
    ws = make_workspace(root, {"base": str(base), "method": "lora", "learning_rate": 0.05, "max_steps": 4,
                               "save_every": 4, "eval_every": 4, "lora_rank": 4})
    train(ws, run="lora")
    return ws, base


def test_merged_lora_equals_peft(lora_ws, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from dvoinik.training.models import load_checkpoint_model

    ws, base = lora_ws
    result = export_double(ws, ExportOptions(to=tmp_path / "merged", format="both", gguf_type="f32"))
    assert (result.folder / "model.safetensors").is_file() and not (result.folder / "adapter_config.json").exists()
    ids = torch.tensor([[5, 40, 77, 120, 9, 33, 250, 18, 61, 2]])
    with torch.no_grad():
        peft = load_checkpoint_model(result.source.checkpoint).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(result.folder).eval()(ids).logits
        original = AutoModelForCausalLM.from_pretrained(base).eval()(ids).logits
    assert torch.allclose(merged, peft, atol=1e-5)
    assert not torch.allclose(merged, original, atol=1e-3)  # the adapter did change the model
    config = json.loads((result.folder / "config.json").read_text())
    assert config["max_position_embeddings"] == 256  # a base's own context is kept
    assert result.gguf is not None and result.gguf.architecture == "llama"


def test_adapter_export_names_its_base_by_hub_id(lora_ws, tmp_path: Path) -> None:
    ws, base = lora_ws
    with pytest.raises(ExportError, match="--base-id"):
        export_double(ws, ExportOptions(to=tmp_path / "a", format="hf", adapter=True))
    result = export_double(ws, ExportOptions(to=tmp_path / "b", format="hf", adapter=True, base_id="someone/tiny-llama"))
    files = sorted(p.name for p in result.folder.iterdir())
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    adapter = json.loads((result.folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "someone/tiny-llama"
    card = (result.folder / "README.md").read_text()
    assert "base_model: someone/tiny-llama" in card and "library_name: peft" in card
    for path in result.folder.iterdir():
        if path.suffix in (".json", ".md"):
            assert str(base) not in path.read_text(), path.name  # no path of the training machine
