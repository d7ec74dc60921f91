"""Course assignments with nbgrader: generate the student versions and autograde a notebook.

The assignments live in the nbgrader course folder ``assignments/`` (``assignments/source/<id>/<id>.ipynb``:
solution regions between ``### BEGIN SOLUTION`` / ``### END SOLUTION`` and autograded test cells, some of
them hidden between ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``). ``nbgrader generate_assignment``
turns a source into the version handed out (``assignments/release/<id>/``): solutions replaced by
``raise NotImplementedError()``, hidden tests removed. :func:`autograde` grades any notebook of an
assignment exactly as nbgrader grades a student's submission (hidden tests restored, every test cell
executed), in a scratch course folder, and returns the score.

    python -m m4i_utils.teaching generate            # every assignment -> assignments/release/
    python -m m4i_utils.teaching grade a1_splits_blind_baseline path/to/notebook.ipynb

The notebooks read the profile from ``M4I_PROFILE`` (``classroom`` when unset; see ``docs/teaching.md``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from m4i_utils.core.config import REPO_ROOT

COURSE = REPO_ROOT / "assignments"


def assignments(course: Path = COURSE) -> list[str]:
    """The assignment ids: the folders of ``<course>/source`` that hold ``<id>.ipynb``."""
    return sorted(p.name for p in (course / "source").iterdir() if (p / f"{p.name}.ipynb").is_file())


def _nbgrader(args: list[str], course: Path, env: dict | None = None) -> None:
    """Run ``nbgrader <args>`` on the course folder ``course``; a failure raises with nbgrader's output."""
    bindir = Path(sys.executable).parent
    cmd = [
        str(bindir / "nbgrader"),
        *args,
        f"--CourseDirectory.root={course}",
        "--CourseDirectory.course_id=m4i",
    ]
    env = dict(os.environ if env is None else env)
    # nbgrader runs the environment's ``alembic`` (gradebook migrations) and the kernel by PATH
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(cmd, cwd=course, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def generate(assignment: str, course: Path = COURSE) -> Path:
    """``nbgrader generate_assignment``: the student version of ``assignment`` (returned path)."""
    if assignment not in assignments(course):
        raise ValueError(f"unknown assignment {assignment!r}; choose from {', '.join(assignments(course))}")
    _nbgrader(["generate_assignment", assignment, "--force"], course)
    return course / "release" / assignment / f"{assignment}.ipynb"


@dataclass(frozen=True)
class Grade:
    """The autograded score of one notebook, and per test cell its score out of its points."""

    score: float
    max_score: float
    cells: dict[str, tuple[float, float]]


def autograde(assignment: str, notebook: Path, profile: str = "classroom", timeout: int = 600,
              course: Path = COURSE) -> Grade:  # fmt: skip
    """Grade ``notebook`` as a submission of ``assignment``: in a scratch copy of the course folder,
    ``generate_assignment`` (which records the graded cells), then ``autograde`` the notebook submitted by a
    student ``grader`` with ``M4I_PROFILE=profile`` and a per-cell timeout of ``timeout`` seconds.
    """
    from nbgrader.api import Gradebook

    if not Path(notebook).is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    with tempfile.TemporaryDirectory(prefix="m4i-grade-") as tmp:
        scratch = Path(tmp) / "course"
        shutil.copytree(course / "source" / assignment, scratch / "source" / assignment)
        shutil.copy(course / "nbgrader_config.py", scratch / "nbgrader_config.py")
        generate(assignment, scratch)
        sub = scratch / "submitted" / "grader" / assignment
        sub.mkdir(parents=True)
        shutil.copy(notebook, sub / f"{assignment}.ipynb")
        env = {**os.environ, "M4I_PROFILE": profile}
        _nbgrader(
            ["autograde", assignment, "--force", f"--ExecutePreprocessor.timeout={timeout}"], scratch, env
        )
        with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
            nb = gb.find_submission_notebook(
                assignment, assignment, "grader"
            )  # notebook, assignment, student
            cells = {g.name: (float(g.score), float(g.max_score)) for g in nb.grades}
            return Grade(float(nb.score), float(nb.max_score), cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m m4i_utils.teaching", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    gen = sub.add_parser("generate", help="generate the student versions into assignments/release/")
    gen.add_argument("ids", nargs="*", help="assignment ids (default: all)")
    grade = sub.add_parser("grade", help="autograde one notebook of an assignment")
    grade.add_argument("assignment")
    grade.add_argument("notebook", type=Path)
    grade.add_argument("--profile", default="classroom")
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        for aid in args.ids or assignments():
            print(f"{aid}: {generate(aid).relative_to(REPO_ROOT)}")
        return 0
    g = autograde(args.assignment, args.notebook.resolve(), args.profile)
    for name, (score, points) in g.cells.items():
        print(f"  {name:<32} {score:g} / {points:g}")
    print(f"{args.assignment}: {g.score:g} / {g.max_score:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
