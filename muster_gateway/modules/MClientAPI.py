"""Muster's `MClientAPI`: the object classes scripts build and read, the
client library's session calls (muster_gateway/client_library.py) and the platform
and template-logic constants."""

from muster_gateway.client_library import (
    ActionSendJob,
    Authenticate,
    Connect,
    Disconnect,
    InitializeLibrary,
    InitializeSession,
)
from muster_gateway.errors import MUSTERERR
from muster_gateway.mtemplate import (
    kTemplateBroadcast,
    kTemplateImageSlicing,
    kTemplateMultiframe,
    kTemplateSingleHost,
)
from muster_gateway.objects import (
    MBackupJob,
    MBackupQuery,
    MBackupQueryBoundaries,
    MChunk,
    MClient,
    MDispatcherConfiguration,
    MGroup,
    MHistoryChunk,
    MJob,
    MLDAPConfiguration,
    MNClient,
    MNode,
    MPool,
    MRepository,
    MStringRef,
    MTemplate,
    MUser,
)

MError = MUSTERERR

# The platform constants of GetPlatform() and of a template's onBuildCommandLine
# (farm.common.v1.Platform's numbers).
kPlatformWindows = 1
kPlatformLinux = 2
kPlatformMac = 3
kPlatformMacOS = kPlatformMac


def GetPlatform() -> int:
    """The operating system this code runs on, as a kPlatform constant."""
    import sys

    if sys.platform.startswith("win"):
        return kPlatformWindows
    if sys.platform == "darwin":
        return kPlatformMac
    return kPlatformLinux


__all__ = [
    "MUSTERERR",
    "ActionSendJob",
    "Authenticate",
    "Connect",
    "Disconnect",
    "GetPlatform",
    "InitializeLibrary",
    "InitializeSession",
    "MBackupJob",
    "MBackupQuery",
    "MBackupQueryBoundaries",
    "MChunk",
    "MClient",
    "MDispatcherConfiguration",
    "MError",
    "MGroup",
    "MHistoryChunk",
    "MJob",
    "MLDAPConfiguration",
    "MNClient",
    "MNode",
    "MPool",
    "MRepository",
    "MStringRef",
    "MTemplate",
    "MUser",
    "kPlatformLinux",
    "kPlatformMac",
    "kPlatformMacOS",
    "kPlatformWindows",
    "kTemplateBroadcast",
    "kTemplateImageSlicing",
    "kTemplateMultiframe",
    "kTemplateSingleHost",
]
