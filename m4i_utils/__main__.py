"""Command line: ``python -m m4i_utils run|grid|list`` (see :mod:`m4i_utils.core.runner`)."""

from m4i_utils.core.runner import main

raise SystemExit(main())
