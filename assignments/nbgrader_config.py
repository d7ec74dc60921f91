"""nbgrader configuration of the m4i course folder (this folder): ``source/<id>/<id>.ipynb`` are the
instructor's versions, ``nbgrader generate_assignment <id>`` (or ``make assignments``) writes the student
versions to ``release/<id>/``. See docs/teaching.md."""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "m4i"
c.CourseDirectory.root = __file__.rsplit("/", 1)[0]
# the library's progress bars and training take a while on a laptop CPU: give every cell 10 minutes
c.ExecutePreprocessor.timeout = 600
# student versions: a solution region becomes this stub
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
