"""m4i_utils: the thin library behind the m4i notebooks (M4I, Hu et al., NeurIPS 2022).

Modules are imported explicitly (``from m4i_utils import config``); nothing runs at import time.
"""

__version__ = "0.1.0"
