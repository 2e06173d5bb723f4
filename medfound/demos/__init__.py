"""End-to-end demos on the synthetic demo data (``medfound demo NAME``).

:data:`DEMOS` maps a demo name to ``"module:function"``; the function takes ``out_dir``
and ``quick``, logs its progress (Python ``logging``) and returns a summary dict.
"""

from __future__ import annotations

#: demo name -> "module:function" (other areas append theirs)
DEMOS: dict[str, str] = {"umedpt": "medfound.demos.umedpt:run_umedpt_demo"}
