"""Ids of the built-in templates that code and tests name.

The templates themselves are MTemplateAPI files in muster_services/jobs/library/
(docs/template-library.md): the catalogue loads them (catalog.py) and the
render nodes run their callbacks (muster_agent/template_host.py).
"""

from __future__ import annotations

COMMAND_LINE_TEMPLATE_ID = 1000
BLENDER_TEMPLATE_ID = 1001
FFMPEG_TEMPLATE_ID = 48
