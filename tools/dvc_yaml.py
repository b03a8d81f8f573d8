"""Write dvc.yaml and l4s/dvc.yaml from tools/pipelines.yaml, the one description of both pipelines.

    python tools/dvc_yaml.py           # write both files
    python tools/dvc_yaml.py --check   # exit 1, naming the file, if a committed file is not what this writes

The description lists each stage once, with the pipelines it belongs to and what differs between
them. This script adds what follows from the code and the params: `cmd` from the stage script and
its arguments; the deps every stage has (its script, requirements.lock, src/landslide_dvc/__init__.py)
and every package module the script imports, followed through the imports (module level and inside
functions) minus the plumbing modules; fit_head's foreach from core/heads.py's registry; and one
entry per fold id of the pipeline's params file wherever the description writes ``{fold}``.
Paths to the code are relative to each dvc.yaml's folder (``../`` for l4s/). The module scan reads
the source (ast); only the head registry is imported.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "landslide_dvc"
DESCRIPTION = ROOT / "tools" / "pipelines.yaml"
# Modules that only shape error messages and file handling: a reworded message must not retrain.
PLUMBING = {"core/errors", "core/io", "core/params", "pipeline/paths", "pipeline/stage"}
EVERY_STAGE = ["requirements.lock", "src/landslide_dvc/__init__.py"]  # the exact versions, the CPU pins
FIELDS = ("deps", "params", "outs", "metrics", "plots")


# ----------------------------------------------------------------------------------------------
# The import closure of a stage script


def module_file(dotted: str) -> Path | None:
    """The source file of a package module (``landslide_dvc.core.model`` -> .../core/model.py)."""
    path = SRC.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def module_key(path: Path) -> str:
    """``core/model`` for src/landslide_dvc/core/model.py."""
    return path.relative_to(PACKAGE).with_suffix("").as_posix()


def landslide_imports(path: Path) -> set[str]:
    """Package modules that a file imports, at module level or inside functions (as ``core/model``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "landslide_dvc":
            for alias in node.names:  # `from landslide_dvc.pipeline import paths` names a module
                if (sub := module_file(f"{node.module}.{alias.name}")) is not None:
                    found.add(module_key(sub))
            if (file := module_file(node.module)) is not None and file.name != "__init__.py":
                found.add(module_key(file))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("landslide_dvc.") and (file := module_file(alias.name)) is not None:
                    found.add(module_key(file))
    return {m for m in found if not m.endswith("__init__")}


def module_closure(modules: set[str]) -> set[str]:
    """``modules`` and everything they import, transitively."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += landslide_imports(PACKAGE / f"{module}.py")
    return seen


def stage_modules(script: str) -> list[str]:
    """The package modules (as src/... paths) whose code a stage script runs, plumbing left out."""
    used = module_closure(landslide_imports(ROOT / "stages" / f"{script}.py")) - PLUMBING
    return sorted(f"src/landslide_dvc/{m}.py" for m in used)


# ----------------------------------------------------------------------------------------------
# From the description to one pipeline's stages


def head_entries() -> dict[str, dict[str, str]]:
    """fit_head's foreach: per head of the registry, its head.* keys as p1..pN (the last repeated)."""
    sys.path.insert(0, str(SRC))  # the checkout's registry, installed or not
    from landslide_dvc.core.heads import HEAD_KINDS

    width = max(len(kind.params) for kind in HEAD_KINDS.values())
    return {name: {f"p{k + 1}": kind.params[min(k, len(kind.params) - 1)] for k in range(width)}
            for name, kind in HEAD_KINDS.items()}


def pick(value: Any, pipeline: str, pipelines: dict[str, Any]) -> Any:
    """A field's value for ``pipeline``: per-pipeline mappings are keyed by pipeline names."""
    if isinstance(value, dict) and value and set(value) <= set(pipelines):
        return value.get(pipeline)
    return value


def expand_folds(value: Any, folds: list[int]) -> Any:
    """``{fold}`` in list items and mapping keys -> one per fold id, in place of the one."""
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, str) and "{fold}" in item:
                out += [item.replace("{fold}", str(f)) for f in folds]
            else:
                out.append(expand_folds(item, folds))
        return out
    if isinstance(value, dict):
        out_map: dict[Any, Any] = {}
        for key, item in value.items():
            keys = [key.replace("{fold}", str(f)) for f in folds] if isinstance(key, str) and "{fold}" in key else [key]
            for k in keys:
                out_map[k] = expand_folds(item, folds)
        return out_map
    return value


def build_stage(name: str, spec: dict[str, Any], pipeline: str, pipelines: dict[str, Any], root: str, folds: list[int]) -> dict[str, Any]:
    """One stage of ``pipeline`` as dvc.yaml holds it (with ``foreach``/``do`` where it loops)."""
    script = spec.get("script", name)
    args = pick(spec.get("args", ""), pipeline, pipelines)
    body: dict[str, Any] = {"cmd": f"python {root}stages/{script}.py" + (f" {args}" if args else "")}
    code = [f"{root}stages/{script}.py", *(root + d for d in EVERY_STAGE[:1])]
    modules = [root + m for m in sorted({EVERY_STAGE[1], *stage_modules(script)})]
    data = expand_folds(pick(spec.get("deps", []), pipeline, pipelines) or [], folds)
    body["deps"] = code + modules + data
    foreach = spec.get("foreach")
    params = list(pick(spec.get("params", []), pipeline, pipelines) or [])
    if foreach == "heads":
        entries = head_entries()
        params += [f"${{item.{p}}}" for p in next(iter(entries.values()))]
    if params:
        body["params"] = params
    for field in FIELDS[2:]:
        value = expand_folds(pick(spec.get(field), pipeline, pipelines), folds)
        if value:
            body[field] = value
    if foreach is None:
        return body
    loop = {"heads": head_entries, "folds": lambda: "${folds.ids}"}[foreach]()
    return {"foreach": loop, "do": body}


def pipeline_folds(config: dict[str, Any]) -> list[int]:
    """The fold ids of the pipeline's params file (folds.ids), where ``{fold}`` expands."""
    return list(yaml.safe_load((ROOT / config["params"]).read_text())["folds"]["ids"])


def pipeline_stages(description: dict[str, Any], pipeline: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The stages of ``pipeline`` (as dvc.yaml holds them) and their comments."""
    pipelines = description["pipelines"]
    config = pipelines[pipeline]
    root = "../" * (len(Path(config["file"]).parts) - 1)
    folds = pipeline_folds(config)
    stages, comments = {}, {}
    for name, spec in description["stages"].items():
        if pipeline in spec["in"]:
            stages[name] = build_stage(name, spec, pipeline, pipelines, root, folds)
            comments[name] = (pick(spec.get("comment", ""), pipeline, pipelines) or "").strip()
    return stages, comments


# ----------------------------------------------------------------------------------------------
# Writing


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as the rest of the repository's YAML is."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:  # noqa: D102
        super().increase_indent(flow, False)


def _block(value: Any, indent: int) -> str:
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=200, allow_unicode=True)
    return "".join(" " * indent + line + "\n" for line in text.splitlines())


def _comment(text: str, indent: int) -> str:
    return "".join(" " * indent + ("# " + line if line else "#") + "\n" for line in text.splitlines())


def render(description: dict[str, Any], pipeline: str) -> str:
    """The text of ``pipeline``'s dvc.yaml."""
    config = description["pipelines"][pipeline]
    stages, comments = pipeline_stages(description, pipeline)
    out = [_comment(config["header"].strip(), 0), "stages:\n"]
    for k, (name, stage) in enumerate(stages.items()):
        out.append(("\n" if k else "") + f"  {name}:\n" + _comment(comments[name], 4))
        if "foreach" in stage:
            loop = stage["foreach"]
            if isinstance(loop, dict):  # one line per head: `svm: {p1: head.kernel, ...}`
                out.append("    foreach:\n" + "".join(
                    f"      {key}: {yaml.dump(value, Dumper=_Dumper, default_flow_style=True, sort_keys=False).strip()}\n"
                    for key, value in loop.items()))
            else:
                out.append(f"    foreach: {loop}\n")
            out.append("    do:\n" + _block(stage["do"], 6))
        else:
            out.append(_block(stage, 4))
    plots = expand_folds(pick(description.get("plots", {}), pipeline, description["pipelines"]), pipeline_folds(config))
    if plots:
        out.append("\n" + _block({"plots": plots}, 0))
    return "".join(out)


def load_description(path: Path = DESCRIPTION) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed files")
    args = parser.parse_args(argv)
    description = load_description()
    stale = []
    for pipeline, config in description["pipelines"].items():
        path = ROOT / config["file"]
        text = render(description, pipeline)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(config["file"])
        else:
            path.write_text(text)
            print(f"wrote {config['file']} ({len(text.splitlines())} lines)")
    if stale:
        print(f"{', '.join(stale)} differ from tools/pipelines.yaml; run `python tools/dvc_yaml.py` and commit", file=sys.stderr)
        return 1
    return 0


__all__ = ["EVERY_STAGE", "PLUMBING", "expand_folds", "landslide_imports", "load_description", "module_closure", "pipeline_stages", "render"]


if __name__ == "__main__":
    sys.exit(main())
