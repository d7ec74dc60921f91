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


def test_audit_report_is_one_self_contained_html_file(tmp_path) -> None:
    import base64

    from m4i_utils.core.runner import AUDIT_REPORTS, list_notebooks, write_report

    assert set(AUDIT_REPORTS) <= {nb.name for nb in list_notebooks()}
    png = base64.b64encode(bytes.fromhex("89504e470d0a1a0a")).decode()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Audit of run abc"),
        nbformat.v4.new_code_cell(
            "secret_code_line = 1",
            outputs=[nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "fig"})],
        ),
    ]
    executed = tmp_path / "10_x.ipynb"
    nbformat.write(nb, executed)
    html = write_report(executed, tmp_path / "report.html").read_text()
    assert "Audit of run abc" in html and f"data:image/png;base64,{png}" in html
    assert "secret_code_line" not in html  # code cells are hidden
