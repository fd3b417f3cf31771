"""Muster's `MClientAPI`: the object classes scripts build and read."""

from gateway.errors import MUSTERERR
from gateway.objects import (
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

__all__ = [
    "MUSTERERR",
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
]
