"""Muster's `MTemplateAPI`: what a template file imports (muster_gateway/mtemplate.py).

A name Muster has and this dispatcher lacks fails with an AttributeError
naming it, never silently (docs/templates.md lists every name).
"""

from typing import Any

from muster_gateway import mtemplate as _impl
from muster_gateway.mtemplate import (
    MEnvironment,
    MManager,
    MStringRef,
    MTemplate,
    MTemplateError,
    MTemplateItem,
    MTemplateItemBool,
    MTemplateItemCombo,
    MTemplateItemDouble,
    MTemplateItemFile,
    MTemplateItemFloat,
    MTemplateItemFolder,
    MTemplateItemInteger,
    MTemplateItemString,
    MTemplateItemYesNo,
    MTemplatePlatform,
    applicationPath,
    checkLogPatterns,
    chunkFrames,
    enableApplication,
    exitCodeError,
    expandArguments,
    expandTokens,
    formatFrame,
    framePath,
    hasFramePattern,
    kProcessChildren,
    kProcessDirect,
    kTemplateBroadcast,
    kTemplateImageSlicing,
    kTemplateMultiframe,
    kTemplateSingleHost,
    singleFrame,
    splitArguments,
)

__all__ = [
    "MEnvironment",
    "MManager",
    "MStringRef",
    "MTemplate",
    "MTemplateError",
    "MTemplateItem",
    "MTemplateItemBool",
    "MTemplateItemCombo",
    "MTemplateItemDouble",
    "MTemplateItemFile",
    "MTemplateItemFloat",
    "MTemplateItemFolder",
    "MTemplateItemInteger",
    "MTemplateItemString",
    "MTemplateItemYesNo",
    "MTemplatePlatform",
    "applicationPath",
    "checkLogPatterns",
    "chunkFrames",
    "enableApplication",
    "exitCodeError",
    "expandArguments",
    "expandTokens",
    "formatFrame",
    "framePath",
    "hasFramePattern",
    "kProcessChildren",
    "kProcessDirect",
    "kTemplateBroadcast",
    "kTemplateImageSlicing",
    "kTemplateMultiframe",
    "kTemplateSingleHost",
    "singleFrame",
    "splitArguments",
]


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"MTemplateAPI has no {name!r}: this dispatcher implements "
        f"{', '.join(__all__)} (docs/templates.md)"
    )


del _impl
