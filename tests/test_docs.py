"""The README and the docs site stay complete and in step with the code.

- the README stays short (at most 300 lines) and keeps the Quick start's two commands as they are;
- docs/development.md's module map names every module of src/landslide_dvc/, and nothing else;
- every page under docs/ is in mkdocs.yml's nav, the README's docs map links to each, and the site
  builds with `mkdocs build --strict`;
- the generated result tables have their marked blocks, and `experiments report --docs` writes them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from landslide_dvc.core.errors import LandslideError
from landslide_dvc.experiments import load_table, report_markers, update_docs

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "landslide_dvc"
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# The Quick start, exactly: CI runs the same install, and a fresh clone must pass both lines.
QUICK_START = [
    "pip install -U pip && pip install -r requirements.lock && pip install --no-deps -e . && dvc repro    # the whole pipeline on the synthetic data (~10 min on 2 CPU cores)",
    "pip install -U pip && pip install -r requirements.lock && pip install --no-deps -e . && pytest       # the tests (real `dvc repro` runs included; the paper-shape ones take longest)",
]


def section(text: str, heading: str) -> str:
    """The text under a Markdown ``## heading`` up to the next heading of the same level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def package_modules() -> set[str]:
    """Every module file of the package, relative to src/landslide_dvc/ (e.g. core/loop.py)."""
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def module_map() -> dict[str, str]:
    """docs/development.md's module map: module path -> its one-line job."""
    rows = re.findall(r"^\| `([^`]+\.py)` \| (.*?) \|$", section((DOCS / "development.md").read_text(), "Module map"), re.M)
    listed = [path for path, _ in rows]
    assert len(listed) == len(set(listed)), f"listed twice: {sorted(p for p in listed if listed.count(p) > 1)}"
    return dict(rows)


def nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_module_map_names_every_module_and_only_those() -> None:
    mapped, modules = module_map(), package_modules()
    assert {"core/loop.py", "serve/predict.py", "pipeline/train_seg.py", "__init__.py"} <= modules  # the scan sees the tree
    assert sorted(modules - set(mapped)) == [], "add these modules to the module map in docs/development.md"
    assert sorted(set(mapped) - modules) == [], "the module map in docs/development.md names modules that do not exist"
    assert [path for path, job in mapped.items() if len(job.strip()) < 10] == [], "each module needs its job"


def test_the_readme_is_short_and_keeps_the_quick_start() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300, "README.md is the short entry point: move detail into docs/"
    blocks = re.findall(r"```bash\n(.*?)```", section(text, "Quick start"), re.S)
    assert blocks and blocks[0].splitlines() == QUICK_START
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements.lock && pip install --no-deps -e .\npytest\n" in ci


def test_every_docs_page_is_in_the_nav_and_in_the_readme_map() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"
    pages = nav_pages(config["nav"])
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk, "mkdocs.yml's nav and the pages under docs/ differ"
    readme_map = section(README.read_text(), "Documentation")
    assert [page for page in on_disk if page != "index.md" and f"](docs/{page})" not in readme_map] == []
    site_dir = config["site_dir"]
    assert f"/{site_dir}/" in (ROOT / ".gitignore").read_text().splitlines(), "the built site must stay out of git"


def test_no_reference_to_the_notes_outside_the_repository() -> None:
    """The data-format notes live in docs/data-formats.md; nothing points at the old notes file."""
    old = "DATA-" + "FORMATS.md"
    places = [PACKAGE, *(ROOT / d for d in ("stages", "tests", "bench", "docs", "presets", "experiments")),
              *ROOT.glob("*.yaml"), *ROOT.glob("*.toml"), *(ROOT / "l4s").rglob("*.yaml"), README,
              ROOT / "Makefile", ROOT / ".ci" / "run"]
    files = [f for p in places for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    texts = [f for f in files if f.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ""}]
    stale = [str(f.relative_to(ROOT)) for f in texts if old in f.read_text(errors="ignore")]
    assert stale == []


def test_the_result_tables_have_their_blocks_and_the_readme_copy_matches() -> None:
    results = (DOCS / "results.md").read_text()
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        start, end = report_markers(path.stem)
        assert results.count(start) == 1 and results.count(end) == 1, f"docs/results.md: block of {path.stem}"
        load_table(path.stem)  # each block belongs to a table the report command knows
    start, end = report_markers("table3")
    readme = README.read_text()
    assert readme.split(start)[1].split(end)[0] == results.split(start)[1].split(end)[0]


def test_report_docs_writes_the_page_and_the_copies_that_carry_the_markers(tmp_path: Path) -> None:
    start, end = report_markers("table3")
    page, copy, other = tmp_path / "results.md", tmp_path / "README.md", tmp_path / "other.md"
    page.write_text(f"# Results\n\n{start}\nold\n{end}\n\nafter\n")
    copy.write_text(f"intro\n{start}\nold\n{end}\n")
    other.write_text("no markers here\n")
    update_docs("table3", "| new |\n", page=page, copies=(copy, other))
    assert page.read_text() == f"# Results\n\n{start}\n| new |\n{end}\n\nafter\n"
    assert copy.read_text() == f"intro\n{start}\n| new |\n{end}\n"
    assert other.read_text() == "no markers here\n"
    with pytest.raises(LandslideError, match="no <!-- report:table2 -->"):
        update_docs("table2", "| new |\n", page=page, copies=())


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "development" / "index.html").is_file()


def test_the_readmes_exp_show_line_keeps_every_params_section() -> None:
    # the line drops every column but the params of params.yaml's sections: a new section must join it
    line = next(line for line in README.read_text().splitlines() if line.startswith("dvc exp show --only-changed"))
    sections = re.search(r"\(synthesize\|[a-z_|]+\)", line).group(0).strip("()").split("|")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert sorted(sections) == sorted(params), "README's dvc exp show line: list params.yaml's sections in its --drop"
