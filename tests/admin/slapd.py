"""A real OpenLDAP server for the directory tests: Debian's slapd, installed
when missing (as root, with apt-get), started on a free loopback port with a
small seeded directory, stopped after the tests."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import ldap3

from tests.debian import ensure_packages, find_command

ldap: Any = ldap3

SUFFIX = "dc=farm"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
PEOPLE = f"ou=people,{SUFFIX}"
WRANGLERS = f"cn=wranglers,ou=groups,{SUFFIX}"
ARTISTS = f"cn=artists,ou=groups,{SUFFIX}"
# name -> (password, mail)
PEOPLE_ENTRIES = {"dora": ("dora-pw", "dora@farm"), "eli": ("eli-pw", "eli@farm")}

_CONFIG = """
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {folder}/slapd.pid
database mdb
suffix "{suffix}"
rootdn "{admin}"
rootpw {password}
directory {folder}/data
"""


def slapd_unavailable() -> str:
    """Why slapd cannot run here ("" when it can), installing it if possible."""
    return ensure_packages(
        ["slapd"], commands=["slapd"], preseed="slapd slapd/no_configuration boolean true\n"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Slapd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        config = self.folder / "slapd.conf"
        config.write_text(
            _CONFIG.format(
                folder=self.folder, suffix=SUFFIX, admin=ADMIN_DN, password=ADMIN_PASSWORD
            )
        )
        slapd = find_command("slapd") or "/usr/sbin/slapd"
        # -d 0: stay in the foreground (so it dies with its process), log nothing.
        self.process = subprocess.Popen(
            [slapd, "-f", str(config), "-h", f"{self.uri}/", "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("slapd did not start listening")
        self._seed()

    def _seed(self) -> None:
        connection = ldap.Connection(self.uri, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
        connection.add(SUFFIX, ["dcObject", "organization"], {"o": "farm", "dc": "farm"})
        connection.add(PEOPLE, ["organizationalUnit"], {"ou": "people"})
        connection.add(f"ou=groups,{SUFFIX}", ["organizationalUnit"], {"ou": "groups"})
        for name, (password, mail) in PEOPLE_ENTRIES.items():
            connection.add(
                f"uid={name},{PEOPLE}",
                ["inetOrgPerson"],
                {
                    "uid": name,
                    "cn": name.title(),
                    "sn": name,
                    "mail": mail,
                    "userPassword": password,
                },
            )
        connection.add(
            WRANGLERS, ["groupOfNames"], {"cn": "wranglers", "member": [f"uid=dora,{PEOPLE}"]}
        )
        connection.add(
            ARTISTS,
            ["groupOfNames"],
            {"cn": "artists", "member": [f"uid=dora,{PEOPLE}", f"uid=eli,{PEOPLE}"]},
        )
        connection.unbind()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
