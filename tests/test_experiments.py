"""Experiment tables: row files, queue dry runs, presets, and reports from `dvc exp show --json`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from landslide_dvc.core.errors import ParamError
from landslide_dvc.experiments import (
    build_report,
    check_keys,
    known_keys,
    load_preset,
    load_table,
    main,
    parse_exp_show,
    queue,
)

TABLES = {"table2": 8, "table3": 6, "fig5": 8, "weights": 7}


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)


@pytest.mark.parametrize(("name", "n_rows"), sorted(TABLES.items()))
def test_row_files_parse_and_name_real_params(name: str, n_rows: int) -> None:
    table = load_table(name)
    assert len(table.rows) == n_rows
    for row in table.rows:
        known = known_keys(pipeline=row.pipeline)  # an l4s row names l4s/params.yaml's keys
        check_keys(row.overrides, known, row.name)
        check_keys(row.demo, known, row.name)
        for column in table.columns:
            if table.row_head(row) in column.get("heads", (table.row_head(row),)):
                assert table.column_key(column, table.row_head(row)) in known


def test_paper_preset_names_real_params() -> None:
    preset = load_preset("paper")
    check_keys(preset, known_keys(), "paper")
    assert preset["model.backbone"] == "tf_efficientnetv2_l" and preset["model.dim"] == 256
    assert preset["train.batch_size"] == 36 and preset["train.lr"] == 0.0003


def _dry_run(capsys, *argv: str) -> list[list[str]]:
    assert main(["queue", *argv, "--dry-run"]) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.strip().splitlines()]


def _sets(cmd: list[str]) -> dict[str, str]:
    return dict(cmd[i + 1].split("=", 1) for i, part in enumerate(cmd) if part == "-S")


def test_dry_run_table2_demo(capsys) -> None:
    commands = _dry_run(capsys, "table2")
    assert [c[c.index("-n") + 1] for c in commands] == [r.name for r in load_table("table2").rows]
    assert all(c[:4] == ["dvc", "exp", "run", "--queue"] for c in commands)
    base = _sets(commands[0])
    assert base == {
        "model.dim": "64", "normalize.channels": "12", "augment.mixup": "false", "augment.cutmix": "false",
        "train.schedule": "none", "normalize.method": "standard", "smote.enabled": "false",
    }
    assert _sets(commands[1])["model.dim"] == "96"  # demo input size replaces the paper's 384


def test_dry_run_with_paper_preset_merges(capsys) -> None:
    commands = _dry_run(capsys, "table2", "--preset", "paper", "--set", "data.dir=data/zindi")
    row = _sets(commands[1])
    assert row["model.backbone"] == "tf_efficientnetv2_l" and row["train.batch_size"] == "36"
    assert row["model.dim"] == "384"  # the row's own override wins over the preset's 256
    assert row["data.dir"] == "data/zindi"
    assert row["smote.enabled"] == "false" and _sets(commands[-1])["smote.enabled"] == "true"


def test_dry_run_table3_and_fig5(capsys) -> None:
    commands = _dry_run(capsys, "table3")
    assert [_sets(c).get("head.C") for c in commands] == [None, None, "1.0", "0.75", "0.5", "0.1"]
    assert main(["queue", "fig5", "--dry-run"]) == 1
    assert "--preset paper" in capsys.readouterr().err
    commands = _dry_run(capsys, "fig5", "--preset", "paper")
    vit = _sets(commands[4])
    assert vit["model.backbone"] == "vit_base_patch16_224" and vit["model.dim"] == "224"


def test_unknown_override_fails_at_queue_time(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    table = {"title": "t", "baseline": "a", "rows": [{"name": "a", "overrides": {"train.epoch": 3}}]}
    (tmp_path / "experiments" / "bad.yaml").write_text(yaml.safe_dump(table))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamError, match="override 'train.epoch' is not a key of params.yaml"):
        queue("bad", None, dry_run=True, sets=[], only=None)


def _exp(name: str, state: str, metrics: dict | None, params: dict) -> dict:
    entry = {
        "rev": name * 4,
        "name": name,
        "data": {
            "params": {"params.yaml": {"data": params}},
            "metrics": {f"metrics/heads/{h}.json": {"data": m} for h, m in (metrics or {}).items()},
        },
        "error": None if state == "success" else {"msg": "Experiment run failed", "type": ""},
    }
    return {"revs": [entry], "executor": {"state": state}, "name": name}


def test_report_from_exp_show_fixture() -> None:
    def heads(test_f1: float) -> dict:
        return {h: {"train": {"f1": 0.99}, "cv": {"f1": test_f1 - 0.01}, "test": {"f1": test_f1}} for h in ("fc", "svm", "lgbm")}

    data = [
        {"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
        {
            "rev": "abc",
            "name": "main",
            "data": {"params": {}, "metrics": {}},
            "error": None,
            "experiments": [
                _exp("t3-fc", "success", heads(0.80), {"head": {"C": 0.1}}),
                _exp("t3-svm-c1", "success", heads(0.85), {"head": {"C": 1.0}}),
                _exp("t3-svm-c0.75", "failed", heads(0.99), {"head": {"C": 0.75}}),  # stale metrics must not show
                _exp("t3-lgbm", "success", heads(0.70), {"head": {"C": 0.1}}),
                _exp("t3-svm-c0.5", "queued", None, {"head": {"C": 0.5}}),
            ],
        },
    ]
    records = parse_exp_show(data)
    assert records["t3-svm-c0.75"].state == "failed"
    header, body = build_report(load_table("table3"), records)
    rows = {r[0]: dict(zip(header, r)) for r in body}
    assert rows["t3-fc"]["Test F1"] == "0.8000" and rows["t3-fc"]["Δ vs baseline"] == "+0.0000"
    assert rows["t3-svm-c1"]["Test F1"] == "0.8500" and rows["t3-svm-c1"]["Δ vs baseline"] == "+0.0500"
    assert rows["t3-svm-c1"]["C"] == "1.0" and rows["t3-svm-c1"]["Paper Test F1"] == "0.8840"
    assert rows["t3-svm-c1"]["Paper Δ"] == "-0.0075"
    assert rows["t3-lgbm"]["Test F1"] == "0.7000"  # the lgbm row reads metrics/heads/lgbm.json
    assert rows["t3-lgbm"]["C"] == rows["t3-fc"]["C"] == "-"  # C is an SVM-only column
    assert rows["t3-svm-c0.75"]["Status"] == "failed" and rows["t3-svm-c0.75"]["Test F1"] == "-"
    assert rows["t3-svm-c0.5"]["Status"] == "queued"
    assert rows["t3-svm-c0.1"]["Status"] == "missing" and rows["t3-svm-c0.1"]["Paper Test F1"] == "0.8938"
    assert len(body) == 6  # nothing silently dropped


def test_report_cli_prints_markdown_and_csv(tmp_path: Path, capsys) -> None:
    fixture = tmp_path / "show.json"
    fixture.write_text(json.dumps([{"rev": "abc", "name": "main", "data": {}, "error": None, "experiments": []}]))
    assert main(["report", "table2", "--json", str(fixture), "--csv", str(tmp_path / "t2.csv")]) == 0
    out = capsys.readouterr().out
    assert "| t2-baseline | Baseline | 256 | 12 | No | No | none | standard | No |" in out
    assert (tmp_path / "t2.csv").read_text().splitlines()[0].startswith("Experiment,Paper row,Dim,#Ch")


def test_flags_prints_the_preset(capsys) -> None:
    assert main(["flags", "paper"]) == 0
    out = capsys.readouterr().out
    assert "-S model.backbone=tf_efficientnetv2_l" in out and "-S train.epochs=50" in out


def test_weights_table_queues_l4s_rows_in_their_pipeline(capsys) -> None:
    commands = _dry_run(capsys, "weights")
    by_name = {c[c.index("-n") + 1]: c for c in commands}
    zindi, unet = by_name["w-ssl4eo-s2-s1"], by_name["w-unet-ssl4eo-s2"]
    assert "l4s/dvc.yaml" not in zindi and _sets(zindi)["model.checkpoint_s1"] == "weights/ssl4eo_s1_moco_resnet50.pth"
    assert _sets(zindi)["normalize.method"] == "ssl4eo" and _sets(zindi)["model.dim"] == "64"  # the demo's size
    assert unet[unet.index("-n") + 2] == "l4s/dvc.yaml"
    assert _sets(unet)["l4s/params.yaml:seg.checkpoint_bands"] == "s2_l1c_13"
    assert _sets(unet)["l4s/params.yaml:seg.checkpoint"] == "'../weights/ssl4eo_s2_moco_resnet50.pth'"


def test_weights_report_shows_missing_rows_and_the_unet_pixel_f1() -> None:
    table = load_table("weights")
    scratch = _exp("w-unet-scratch", "success", None, {})
    scratch["revs"][0]["data"]["metrics"] = {"l4s/metrics/seg.json": {"data": {"pixel_f1": 0.40}}}
    scratch["revs"][0]["data"]["params"]["l4s/params.yaml"] = {"data": {"seg": {"encoder": "resnet50"}}}
    ssl = _exp("w-unet-ssl4eo-s2", "success", None, {})
    ssl["revs"][0]["data"]["metrics"] = {"l4s/metrics/seg.json": {"data": {"pixel_f1": 0.45}}}
    data = [{"rev": "abc", "name": "main", "data": {}, "error": None, "experiments": [scratch, ssl]}]
    header, body = build_report(table, parse_exp_show(data))
    rows = {r[0]: dict(zip(header, r)) for r in body}
    assert rows["w-scratch"]["Status"] == "missing" and rows["w-ssl4eo-s2-s1"]["Test F1"] == "-"
    assert rows["w-unet-ssl4eo-s2"]["Test F1"] == "0.4500" and rows["w-unet-ssl4eo-s2"]["Δ vs baseline"] == "+0.0500"
    assert rows["w-unet-ssl4eo-s2"]["Bands"] == "s2_l1c_13" and rows["w-unet-scratch"]["Network"] == "resnet50"
    assert rows["w-unet-scratch"]["Pretrained"] == "-" and rows["w-imagenet"]["Checkpoint"] == "-"
