"""Course assignments (assignments/, nbgrader): every source notebook gets full marks from nbgrader's
autograder, and the student version generated from it, run as handed out, does not (the tests are real).

The notebooks run in the classroom profile (each assignment at most 5 minutes on 2 cores from a cold cache,
docs/teaching.md); the first run of an assignment trains its models, the second reads them from the cache.
"""

import shutil
from pathlib import Path

import pytest

from m4i_utils import teaching

IDS = teaching.assignments()


def test_every_assignment_has_solutions_and_hidden_tests():
    import json

    assert {
        "a1_splits_blind_baseline",
        "a2_metric_attack",
        "a3_offline_lira",
        "a4_dp_sgd",
        "a5_identity_inference",
    } <= set(IDS)
    for aid in IDS:
        nb = json.loads((teaching.COURSE / "source" / aid / f"{aid}.ipynb").read_text())
        meta = [c["metadata"].get("nbgrader", {}) for c in nb["cells"]]
        sources = ["".join(c["source"]) for c in nb["cells"]]
        assert any(m.get("solution") for m in meta), aid
        graded = [s for s, m in zip(sources, meta, strict=True) if m.get("grade")]
        assert graded and all("### BEGIN HIDDEN TESTS" in s for s in graded), (
            f"{aid}: a test cell without hidden tests"
        )
        assert all(c["outputs"] == [] for c in nb["cells"] if c["cell_type"] == "code"), (
            f"{aid} is not stripped"
        )


@pytest.mark.parametrize("aid", IDS)
def test_source_gets_full_marks_and_the_student_version_fails(aid, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(teaching.COURSE / "source", course / "source")
    shutil.copy(teaching.COURSE / "nbgrader_config.py", course)
    student = teaching.generate(aid, course)
    text = student.read_text()
    assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert "raise NotImplementedError()" in text
    solved = teaching.autograde(aid, course / "source" / aid / f"{aid}.ipynb")
    assert solved.max_score > 0 and solved.score == solved.max_score, solved.cells
    handed_out = teaching.autograde(aid, Path(student))
    assert handed_out.max_score == solved.max_score
    assert handed_out.score == 0, f"the unsolved student version scored {handed_out.cells}"


def test_unknown_assignment_and_missing_notebook_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown assignment 'a9'; choose from a1_splits_blind_baseline"):
        teaching.generate("a9")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        teaching.autograde(IDS[0], tmp_path / "missing.ipynb")
