"""The main job: model builder, warm start, `mmcourse train` (report, checkpoint, errors)."""

import json
import re
import shutil
import socket
import time
from dataclasses import fields

import pytest
import torch

import mmcourse.cli
import mmcourse.data.integrity
import mmcourse.trimodal
from mmcourse.cli import main as cli_main
from mmcourse.data import collate, load_split
from mmcourse.nn import AudioFrontEnd
from mmcourse.nn.fusion import METHODS
from mmcourse.train import evaluate, load_checkpoint, save_checkpoint
from mmcourse.trimodal import (
    AUDIO_FEATURES,
    MODALITIES,
    REPORT_FORMAT,
    Recipe,
    audio_front_end,
    build_model,
    cache_audio_features,
    load_data,
    load_model,
    reading_cached_features,
    run,
    warm_start,
)

ROW_FIELDS = {"model", "modalities", "val_accuracy", "test_accuracy", "test_macro_f1", "epochs",
              "best_epoch", "parameters", "seconds", "epoch_seconds"}
TINY = Recipe(epochs=1, fusion_epochs=1)


@pytest.fixture(scope="module")
def batch():
    ds = load_split("val")
    return collate([ds[i] for i in range(6)])


@pytest.mark.parametrize("fusion", list(METHODS))
def test_every_fusion_gives_logits(fusion, batch):
    model = build_model(fusion).eval()
    assert set(model.encoders) == set(MODALITIES)
    with torch.no_grad():
        out = model(batch)
    assert out.shape == (6, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("m", MODALITIES)
def test_one_modality_is_a_unimodal_classifier(m, batch):
    model = build_model("concat", [m]).eval()
    assert list(model.encoders) == [m]
    with torch.no_grad():
        assert model(batch).shape == (6, 10)


def test_builder_is_seeded():
    a, b, c = build_model(seed=3), build_model(seed=3), build_model(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_builder_options_are_named():
    with pytest.raises(ValueError, match="unknown fusion 'sum'.*concat.*late.*attention"):
        build_model("sum")
    with pytest.raises(ValueError, match="modalities"):
        build_model("late", ["image", "smell"])
    with pytest.raises(ValueError, match="modalities"):
        build_model("late", [])


def test_warm_started_late_fusion_is_the_product_of_experts(batch):
    """Copied encoders and heads, equal weights: log softmax of the mean expert logits."""
    experts = {m: build_model("concat", [m], seed=i).eval() for i, m in enumerate(MODALITIES)}
    fused = build_model("late", seed=9).eval()
    warm_start(fused, experts)
    with torch.no_grad():
        got = fused(batch)
        logits = torch.stack([experts[m](batch) for m in MODALITIES])  # (M, B, C)
    torch.testing.assert_close(got, torch.log_softmax(logits.mean(0), dim=-1))


def test_warm_start_copies_encoders_for_feature_fusions(batch):
    experts = {m: build_model("concat", [m], seed=i) for i, m in enumerate(MODALITIES)}
    fused = build_model("gated", seed=9)
    warm_start(fused, experts)
    for m in MODALITIES:
        mine, theirs = fused.encoders[m].state_dict(), experts[m].encoders[m].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


# ---------------------------------------------------------------- features computed once


@pytest.fixture(scope="module")
def splits():
    return load_data("digits", torch.device("cpu"))


def test_the_audio_features_are_computed_once_per_split(splits):
    front_end = audio_front_end().eval()
    for name in ("train", "val", "test"):
        whole = load_split(name).tensors()
        split = splits[name]
        assert "audio" not in split and "audio_len" not in split  # replaced by the features
        assert {"image", "tokens", "tokens_len", "label", *AUDIO_FEATURES} == set(split)
        feats, frames = front_end(whole["audio"][:50], whole["audio_len"][:50])
        torch.testing.assert_close(split[AUDIO_FEATURES[0]][:50], feats)
        assert torch.equal(split[AUDIO_FEATURES[1]][:50], frames)


def test_no_cache_when_the_front_end_draws_random_masks():
    split = {"audio": torch.randn(3, 800), "audio_len": torch.tensor([800, 500, 300]),
             "label": torch.tensor([1, 2, 3])}
    assert cache_audio_features({"train": split}, AudioFrontEnd(time_mask=4))["train"] is split


@pytest.mark.parametrize("fusion", ["late", "concat"])
def test_the_model_reads_the_cached_features_only_inside_the_block(splits, fusion):
    model = build_model(fusion, seed=0).eval()
    val = splits["val"]
    raw = load_split("val").tensors()
    with torch.no_grad():
        from_waveforms = model(raw)
        with reading_cached_features(model, val.keys()):
            assert model.inputs["audio"] == AUDIO_FEATURES
            torch.testing.assert_close(model(val), from_waveforms)
        assert model.inputs["audio"] == ("audio", "audio_len")
        with pytest.raises(RuntimeError, match="stop"), reading_cached_features(model, val.keys()):
            raise RuntimeError("stop")
        assert model.inputs["audio"] == ("audio", "audio_len")  # restored after an error too
        with reading_cached_features(model, raw.keys()):  # no features in the data: waveforms
            assert model.inputs["audio"] == ("audio", "audio_len")
    text_only = build_model("concat", ["text"])
    with reading_cached_features(text_only, val.keys()):
        assert "audio" not in text_only.inputs


def test_the_recipe_defaults_are_the_ones_the_cli_states():
    helps = {a.dest: a.help for a in _subparser("train")._actions}
    defaults = {f.name: f.default for f in fields(Recipe)}
    assert f"default {defaults['epochs']}," in helps["epochs"]
    assert f"default {defaults['fusion_epochs']})" in helps["fusion_epochs"]


def _subparser(name):
    parser = mmcourse.cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


@pytest.mark.slow
def test_short_run_report_checkpoint_and_reload(tmp_path):
    report = run("late", recipe=TINY, out=tmp_path, device="cpu", seed=1)
    assert [r.model for r in report.rows] == ["image", "audio", "text", "fused (late)"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["format"] == REPORT_FORMAT and saved["device"] == "cpu"
    assert saved["fusion"] == "late" and saved["data"] == "digits" and saved["seed"] == 1
    assert saved["amp"] == "off" and saved["recipe"]["epochs"] == 1
    assert saved["total_seconds"] > 0 and saved["checkpoint"] == str(tmp_path / "model.pt")
    for row in saved["rows"]:
        assert set(row) == ROW_FIELDS
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["epochs"] == 1 and row["seconds"] > 0
        assert 0 < row["epoch_seconds"] <= row["seconds"]  # one epoch: that epoch
    assert saved["rows"][-1]["modalities"] == list(MODALITIES)
    # the table lists every row with its accuracies
    table = report.table()
    for row in report.rows:
        assert row.model in table and f"{100 * row.test_accuracy:.1f}%" in table
    # the checkpoint is a valid trainer checkpoint and rebuilds the same model
    state = load_checkpoint(tmp_path / "model.pt")
    assert state["epoch"] == 1 and state["config"]["fusion"] == "late"
    fresh = load_model(tmp_path / "model.pt")
    trained = report.models["fused"].eval()
    test = load_split("test").tensors()
    with torch.no_grad():
        torch.testing.assert_close(fresh(test), trained(test), rtol=0, atol=0)
    assert evaluate(fresh, test, inputs=None).accuracy == pytest.approx(report.fused.test_accuracy)


def test_load_model_refuses_a_checkpoint_without_config(tmp_path):
    save_checkpoint(tmp_path / "other.pt", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="holds no model config"):
        load_model(tmp_path / "other.pt")


@pytest.mark.slow
def test_cli_train_json(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli_main(["train", "--epochs", "1", "--fusion-epochs", "0", "--fusion", "concat",
                     "--out", str(out), "--json", "--device", "cpu"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "report.json").read_text())
    assert printed["fusion"] == "concat" and len(printed["rows"]) == 4
    assert printed["rows"][-1]["epochs"] == 0  # fusion epochs 0: the warm-started model
    assert (out / "model.pt").is_file()


def test_cli_unknown_fusion_lists_the_known_ones(capsys, tmp_path):
    assert cli_main(["train", "--fusion", "sum", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown fusion 'sum'" in err and all(m in err for m in METHODS)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown fusion 'sum'; expected one of concat, "):
        run("sum")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amp", "fp16", "--device", "cpu"], "autocast to torch.float16 is not supported"),
        (["--epochs", "0"], "expected epochs >= 1"),
        (["--fusion-epochs", "-1"], "fusion epochs >= 0"),
        (["--seed", "-1"], "seed must be a non-negative int"),
        (["--threads", "0"], "threads must be a positive int"),
        pytest.param(["--device", "cuda"], "torch sees no CUDA GPU", marks=pytest.mark.skipif(
            torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
    ],
)
def test_cli_bad_options_fail_before_training(args, message, capsys, tmp_path):
    start = time.perf_counter()
    assert cli_main(["train", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert time.perf_counter() - start < 5 and not any(tmp_path.iterdir())


def test_cli_avmnist_offline_fails_fast_pointing_to_the_embedded_data(monkeypatch, tmp_path,
                                                                       capsys):
    def refuse(*args, **kwargs):
        raise OSError("Network is unreachable")

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("MMCOURSE_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    code = cli_main(["train", "--data", "avmnist", "--out", str(tmp_path / "run")])
    assert code == 1 and time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "offline" in err and "mmcourse.data.load_split" in err and "--data digits" in err
    assert not (tmp_path / "run").exists()


def test_cli_corrupted_data_prints_the_message_alone(monkeypatch, tmp_path, capsys):
    copy = tmp_path / "files"
    shutil.copytree(mmcourse.data.integrity.FILES, copy)
    data = bytearray((copy / "spoken_digits.flac").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "spoken_digits.flac").write_bytes(bytes(data))
    monkeypatch.setattr(mmcourse.data.integrity, "FILES", copy)  # the real data stays untouched
    code = cli_main(["train", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert re.fullmatch(r"error: corrupted data file \S+spoken_digits.flac \(its SHA-256 differs "
                        r"from the checksum list\); reinstall: pip install \S.*\n", err), err
    assert not (tmp_path / "run").exists()


def test_cli_errors_are_a_message_not_a_traceback(monkeypatch, tmp_path, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(mmcourse.trimodal, "run", broken)
    monkeypatch.delenv("MMCOURSE_DEBUG", raising=False)
    assert cli_main(["train", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: CUDA out of memory\n") and "Traceback" not in err
    assert "MMCOURSE_DEBUG=1" in err
    monkeypatch.setattr(mmcourse.trimodal, "run", lambda *a, **k: {}["bug"])
    assert cli_main(["train", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("error: KeyError: 'bug'")  # the kind of a bug
    monkeypatch.setenv("MMCOURSE_DEBUG", "1")  # the traceback, for whoever debugs
    with pytest.raises(KeyError):
        cli_main(["train", "--out", str(tmp_path)])


def test_help_and_docstring_list_every_command(capsys):
    parser = mmcourse.cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"doctor", "exercises", "bench", "train"} <= set(commands)
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    shown = capsys.readouterr().out
    for name in commands:
        assert f"``{name}``" in mmcourse.cli.__doc__, f"the module docstring omits {name}"
        assert re.search(rf"^\s+{name}\s+\S", shown, re.M), f"--help omits {name}"


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compile", [False, True])
def test_short_run_on_the_gpu(tmp_path, compile):
    """Mixed precision (bf16, or fp16 with a scaler) and torch.compile, end to end."""
    report = run("late", recipe=TINY, out=tmp_path, device="cuda", amp="auto", compile=compile)
    assert report.device.startswith("cuda") and report.amp in ("bfloat16", "float16")
    assert all(0.0 <= r.test_accuracy <= 1.0 for r in report.rows)
    fresh = load_model(tmp_path / "model.pt", device="cuda")
    test = load_split("test").tensors("cuda")
    with torch.no_grad():
        torch.testing.assert_close(fresh(test), report.models["fused"].eval()(test))
