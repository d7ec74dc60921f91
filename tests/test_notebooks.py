"""Notebook hygiene: naming pattern, exactly one parameters cell, no stored outputs, profile from the env."""

import json
from pathlib import Path

import pytest

from m4i_utils.core.runner import NOTEBOOK_PATTERN, list_notebooks, parse_overrides

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist_and_are_all_listed():
    assert NOTEBOOKS, "no notebooks found"
    assert [p.name for p in list_notebooks()] == [p.name for p in NOTEBOOKS]
    assert NOTEBOOKS[0].name == "00_overview.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_hygiene(path):
    assert NOTEBOOK_PATTERN.match(path.name), f"{path.name} is not NN_snake_case.ipynb"
    nb = json.loads(path.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path.name}: expected exactly one parameters cell, found {len(params)}"
    src = "".join(params[0]["source"])
    assert 'os.environ.get("M4I_PROFILE"' in src and "OVERRIDES" in src
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name} has outputs"


def test_parse_overrides():
    assert parse_overrides(["seed=1", "datasets=a,b"]) == {"seed": "1", "datasets": "a,b"}
    with pytest.raises(SystemExit):
        parse_overrides(["seed"])
