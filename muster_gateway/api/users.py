"""Muster's Users and groups APIs (farm.admin.v1.AdminService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_message, as_str
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MGroup, MUser
from muster_proto.admin.v1 import admin_pb2

# Muster lists directory (LDAP) users with this prefix.
DIRECTORY_PREFIX = "@directory@"

# --- Users ----------


def userGetList() -> tuple[MUSTERERR, list[MUser]]:
    err, replies = pages("userGetList", lambda s: s.admin.ListUsers, admin_pb2.ListUsersRequest)
    users = [MUser(user) for reply in replies for user in reply.users]
    for user in users:
        if user.message.directory_user and not user.message.name.startswith(DIRECTORY_PREFIX):
            user.message.name = DIRECTORY_PREFIX + user.message.name
    return err, users


def userGet(name: Any) -> tuple[MUSTERERR, MUser | None]:
    err, reply = call(
        "userGet",
        lambda s: s.admin.GetUser,
        lambda: admin_pb2.GetUserRequest(name=as_str(name, "name")),
    )
    return err, MUser(reply.user) if reply else None


def userAdd(user: Any) -> MUSTERERR:
    return call(
        "userAdd",
        lambda s: s.admin.CreateUser,
        lambda: admin_pb2.CreateUserRequest(user=as_message(user, MUser, "user")),
    )[0]


def userRemove(name: Any) -> MUSTERERR:
    return call(
        "userRemove",
        lambda s: s.admin.DeleteUser,
        lambda: admin_pb2.DeleteUserRequest(name=as_str(name, "name")),
    )[0]


def userConfigure(user: Any) -> MUSTERERR:
    return call(
        "userConfigure",
        lambda s: s.admin.UpdateUser,
        lambda: admin_pb2.UpdateUserRequest(user=as_message(user, MUser, "user")),
    )[0]


# --- Groups ----------


def groupGetList() -> tuple[MUSTERERR, list[MGroup]]:
    err, replies = pages("groupGetList", lambda s: s.admin.ListGroups, admin_pb2.ListGroupsRequest)
    return err, [MGroup(group) for reply in replies for group in reply.groups]


def groupGet(groupName: Any) -> tuple[MUSTERERR, MGroup | None]:
    err, reply = call(
        "groupGet",
        lambda s: s.admin.GetGroup,
        lambda: admin_pb2.GetGroupRequest(name=as_str(groupName, "groupName")),
    )
    return err, MGroup(reply.group) if reply else None


def groupAdd(group: Any) -> MUSTERERR:
    return call(
        "groupAdd",
        lambda s: s.admin.CreateGroup,
        lambda: admin_pb2.CreateGroupRequest(group=as_message(group, MGroup, "group")),
    )[0]


def groupRemove(groupName: Any) -> MUSTERERR:
    return call(
        "groupRemove",
        lambda s: s.admin.DeleteGroup,
        lambda: admin_pb2.DeleteGroupRequest(name=as_str(groupName, "groupName")),
    )[0]


def groupConfigure(group: Any) -> MUSTERERR:
    return call(
        "groupConfigure",
        lambda s: s.admin.UpdateGroup,
        lambda: admin_pb2.UpdateGroupRequest(group=as_message(group, MGroup, "group")),
    )[0]
