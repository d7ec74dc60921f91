"""The batch runner executes notebooks through papermill, records failures and exits non-zero on them."""

import nbformat

from m4i_utils.core import runner


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'import os\nPROFILE = os.environ.get("M4I_PROFILE", "default")\nOVERRIDES = {}'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_execute_passes_profile_and_overrides(tmp_path):
    src = tmp_path / "01_ok.ipynb"
    _notebook(src, 'assert PROFILE == "smoke" and OVERRIDES == {"seed": "3"}, (PROFILE, OVERRIDES)')
    rec = runner.execute(src, tmp_path / "out" / "01_ok.ipynb", "smoke", {"seed": "3"})
    assert rec.error is None and rec.output.exists()


def test_failure_is_recorded_and_summary_fails(tmp_path, capsys):
    src = tmp_path / "02_bad.ipynb"
    _notebook(src, "raise ValueError('broken on purpose')")
    rec = runner.execute(src, tmp_path / "out" / "02_bad.ipynb", "smoke", {})
    assert rec.error is not None and "broken on purpose" in rec.error
    assert runner._summary([rec]) == 1
    assert "FAILED" in capsys.readouterr().out
