"""Pure rules of the admin domain: path mapping, validation, configuration,
the last-administrator rule, log names, event-to-log-line translation."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from muster_services.admin import domain
from muster_services.admin.domain import (
    DispatcherConfig,
    LdapConfig,
    LdapGroupMapping,
    RepositorySpec,
    UserSpec,
)
from muster_services.admin.paths import RepositoryPaths, map_path
from muster_services.core.errors import FailedPrecondition, InvalidArgument, NotFound

PROJ = RepositoryPaths("P:\\proj", "/mnt/proj", "/Volumes/proj")
PROJECTS = RepositoryPaths("P:\\projects", "/mnt/projects", "/Volumes/projects")
SHOTS = RepositoryPaths("P:\\proj\\shots", "/srv/shots", "")


# --- path mapping ----------------------------------------------------------------------------


def test_a_prefix_matches_only_on_a_separator_boundary() -> None:
    assert map_path("P:\\projects\\a.ma", [PROJ], "linux") == "P:\\projects\\a.ma"
    assert map_path("P:\\projects\\a.ma", [PROJ, PROJECTS], "linux") == "/mnt/projects/a.ma"


def test_the_longest_matching_prefix_wins() -> None:
    assert map_path("P:\\proj\\shots\\s1.ma", [PROJ, SHOTS], "linux") == "/srv/shots/s1.ma"
    assert map_path("P:\\proj\\assets\\a.ma", [SHOTS, PROJ], "linux") == "/mnt/proj/assets/a.ma"


def test_trailing_separators_of_prefixes_do_not_count_and_the_paths_own_are_kept() -> None:
    repository = RepositoryPaths("P:\\proj\\", "/mnt/proj/", "")
    assert map_path("P:\\proj\\x\\", [repository], "linux") == "/mnt/proj/x/"
    assert map_path("/mnt/proj", [repository], "windows") == "P:\\proj"


def test_matching_ignores_case_unless_asked_and_keeps_the_rest_as_written() -> None:
    assert map_path("p:\\PROJ\\Shot.MA", [PROJ], "macos") == "/Volumes/proj/Shot.MA"
    assert map_path("p:\\PROJ\\Shot.MA", [PROJ], "macos", case_sensitive=True) == (
        "p:\\PROJ\\Shot.MA"
    )


def test_slashes_and_backslashes_are_converted_to_the_target_platforms() -> None:
    assert map_path("/mnt/proj/a/b.exr", [PROJ], "windows") == "P:\\proj\\a\\b.exr"
    assert map_path("P:/proj/a\\b.exr", [PROJ], "linux") == "/mnt/proj/a/b.exr"


def test_unc_paths_map_both_ways() -> None:
    unc = RepositoryPaths("\\\\server\\projects", "/mnt/projects", "")
    assert map_path("\\\\server\\projects\\a.ma", [unc], "linux") == "/mnt/projects/a.ma"
    assert map_path("/mnt/projects/a.ma", [unc], "windows") == "\\\\server\\projects\\a.ma"


def test_no_match_or_no_target_path_leaves_the_path_unchanged() -> None:
    assert map_path("Q:\\other\\a.ma", [PROJ, PROJECTS], "linux") == "Q:\\other\\a.ma"
    assert map_path("P:\\proj\\shots\\a", [SHOTS], "macos") == "P:\\proj\\shots\\a"
    assert map_path("", [PROJ], "linux") == ""
    assert map_path("relative/proj/a", [PROJ], "windows") == "relative/proj/a"


def test_an_unknown_target_platform_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="target_platform"):
        map_path("/mnt/proj", [PROJ], "amiga")


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (UserSpec(name="", role="user"), "user.name"),
        (UserSpec(name="a b", role="user"), "user.name"),
        (UserSpec(name="@directory@bob", role="user"), "user.name"),
        (UserSpec(name="bob", role="root"), "user.role"),
        (UserSpec(name="bob", role="user", max_job_priority=70000), "user.max_job_priority"),
        (UserSpec(name="bob", role="user", email="nope"), "user.email"),
        (UserSpec(name="bob", role="user", groups=("a", "a")), "user.groups[1]"),
        (
            UserSpec(name="bob", role="user", notification_preferences={"spam": True}),
            "user.notification_preferences",
        ),
    ],
)
def test_an_invalid_user_is_refused_naming_the_field(spec: UserSpec, field: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^{field.replace('[', '.').replace(']', '.')}"):
        domain.check_user(spec)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (RepositorySpec("r"), "repository"),
        (RepositorySpec("r", linux_path="mnt/x"), "repository.linux_path"),
        (RepositorySpec("r", macos_path="Volumes"), "repository.macos_path"),
        (RepositorySpec("r", windows_path="proj\\x"), "repository.windows_path"),
        (RepositorySpec(" r", linux_path="/x"), "repository.name"),
    ],
)
def test_an_invalid_repository_is_refused_naming_the_field(
    spec: RepositorySpec, field: str
) -> None:
    with pytest.raises(InvalidArgument, match=f"^{field}"):
        domain.check_repository(spec)


def test_the_last_enabled_administrator_can_be_neither_removed_demoted_nor_disabled() -> None:
    for role, enabled in ((None, None), ("user", True), ("administrator", False)):
        with pytest.raises(FailedPrecondition, match="last enabled administrator"):
            domain.ensure_an_administrator_remains(["root"], "root", role, enabled)
    domain.ensure_an_administrator_remains(["root", "ann"], "root", None, None)
    domain.ensure_an_administrator_remains(["root"], "bob", None, None)
    domain.ensure_an_administrator_remains(["root"], "root", "administrator", True)


# --- configuration ------------------------------------------------------------------------------


def test_the_default_configuration_is_valid_and_round_trips_through_json() -> None:
    config = domain.check_configuration(DispatcherConfig())
    assert domain.configuration_from_json(domain.configuration_to_json(config)) == config


def test_stored_json_from_another_version_keeps_defaults_and_drops_unknown_fields() -> None:
    config = domain.configuration_from_json({"max_task_threads": 4, "gone": 1, "email": {}})
    assert config.max_task_threads == 4
    assert config.heartbeat_interval_seconds == DispatcherConfig().heartbeat_interval_seconds


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"heartbeat_interval_seconds": 0}, "configuration.heartbeat_interval_seconds"),
        ({"max_chunk_requeues": -1}, "configuration.max_chunk_requeues"),
        ({"statistics_sample_interval_seconds": 1}, "statistics_sample_interval_seconds"),
        ({"instance_identity": "mac"}, "configuration.instance_identity"),
        ({"node_lost_timeout_seconds": 15}, "configuration.node_lost_timeout_seconds"),
        ({"network_scan_ranges": ("10.0.0.0/8",)}, r"configuration.network_scan_ranges\[0\]"),
        ({"network_scan_ranges": ("nonsense",)}, r"configuration.network_scan_ranges\[0\]"),
        ({"email.enabled": True}, "configuration.email.smtp_host"),
        ({"email.smtp_port": 0}, "configuration.email.smtp_port"),
    ],
)
def test_an_out_of_range_option_is_refused_naming_it(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument, match=field):
        domain.check_configuration(
            domain.apply_changes(DispatcherConfig(), changes, domain.CONFIG_FIELDS, "configuration")
        )


def test_changes_apply_to_nested_fields_and_unknown_fields_are_refused() -> None:
    config = domain.apply_changes(
        DispatcherConfig(), {"email.smtp_host": "mail"}, domain.CONFIG_FIELDS, "configuration"
    )
    assert config.email.smtp_host == "mail"
    with pytest.raises(InvalidArgument, match="update_mask"):
        domain.apply_changes(DispatcherConfig(), {"colour": 1}, domain.CONFIG_FIELDS, "c")
    with pytest.raises(InvalidArgument, match="update_mask"):
        domain.apply_changes(DispatcherConfig(), {"email.colour": 1}, domain.CONFIG_FIELDS, "c")


def test_ldap_configuration_needs_a_uri_and_a_filter_with_the_user() -> None:
    with pytest.raises(InvalidArgument, match=r"ldap_configuration.server_uri"):
        domain.check_ldap_configuration(LdapConfig(server_uri="http://x"))
    with pytest.raises(InvalidArgument, match="user_search_filter"):
        domain.check_ldap_configuration(LdapConfig(user_search_filter="(uid=bob)"))
    with pytest.raises(InvalidArgument, match="user_search_filter"):
        domain.check_ldap_configuration(LdapConfig(user_search_filter="(uid={user}"))
    with pytest.raises(InvalidArgument, match=r"ldap_configuration.user_search_base"):
        domain.check_ldap_configuration(LdapConfig(enabled=True, server_uri="ldap://h:389"))


def test_a_directory_user_gets_the_highest_role_of_their_mapped_groups() -> None:
    config = LdapConfig(
        group_mappings=(
            LdapGroupMapping("cn=artists,dc=x", "artists", "user"),
            LdapGroupMapping("cn=wranglers,dc=x", "wranglers", "administrator"),
        )
    )
    assert domain.directory_role(config, ["CN=Wranglers,dc=x", "cn=artists,dc=x"]) == (
        "administrator",
        ["artists", "wranglers"],
    )
    assert domain.directory_role(config, []) == ("user", [])


# --- logs --------------------------------------------------------------------------------------


def test_log_names_are_per_day_and_anything_path_like_is_invalid() -> None:
    assert domain.log_file_name("action", date(2026, 11, 29)) == "actions-2026-11-29.log"
    assert domain.log_file_day("activity", "activity-2026-11-29.log") == date(2026, 11, 29)
    for hostile in ("../actions-2026-11-29.log", "/etc/passwd", "a\x00b", "..", "x\\y"):
        with pytest.raises(InvalidArgument, match=r"^name"):
            domain.log_file_day("action", hostile)
    for unknown in ("activity-2026-11-29.log", "actions-2026-02-30.log", "actions.log"):
        with pytest.raises(NotFound, match=r"^name"):
            domain.log_file_day("action", unknown)


def test_an_event_by_a_caller_is_an_action_and_a_scheduler_event_only_activity() -> None:
    entry = domain.action_entry("job.deleted", {"job_id": 7, "actor": "ann", "peer": "ipv4:x"})
    assert entry is not None
    assert (entry.user_name, entry.action, entry.target, entry.detail) == (
        "ann",
        "job.deleted",
        "job:7",
        {"job_id": 7},
    )
    assert domain.action_entry("chunk.assigned", {"job_id": 7, "actor": "scheduler"}) is None
    render_output = {"node_id": 3, "lines": [{"text": "frame 1"}], "actor": "dispatcher"}
    assert domain.action_entry("log.chunk", render_output) is None
    activity = domain.activity_entry("chunk.assigned", {"job_id": 7, "node_id": 3})
    assert activity is not None and (activity.job_id, activity.node_id) == (7, 3)
    assert domain.activity_entry("user.created", {"user": "ann"}) is None


def test_the_render_loops_own_reports_are_activity_only() -> None:
    """A chunk's end relayed by the nodes service and the node idle again after
    it are the machinery's, two per chunk: activity lines, not actions. A node
    joining and a hook script's call stay actions."""
    agent = {"node_id": 3, "actor": "agent:host#0", "peer": "ipv4:10.0.0.3:5000"}
    finished = {"job_id": 7, "chunk_id": 1, "node_id": 3, "actor": "service:nodes"}
    assert domain.action_entry("chunk.finished", finished) is None
    assert domain.action_entry("node.idle", agent) is None
    assert domain.activity_entry("chunk.finished", finished) is not None
    assert domain.activity_entry("node.idle", agent) is not None
    joined = domain.action_entry("node.registered", agent)
    assert joined is not None and joined.user_name == "agent:host#0"
    hook = domain.action_entry("job.deleted", {"job_id": 8, "actor": "service:dispatcher"})
    assert hook is not None and hook.target == "job:8"


def test_an_inverted_time_range_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="time_range"):
        domain.check_time_range(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    domain.check_time_range(None, datetime(2026, 1, 1, tzinfo=UTC))


def test_statistics_counters_sum_nodes_and_keep_every_status() -> None:
    counters = domain.statistics_counters(
        {"idle": 2, "rendering": 3, "offline": 1},
        {"queued": 1, "waiting_dependencies": 1, "completed": 4},
        {"queued": 10, "assigned": 1, "running": 2},
        {"dispatched": 5},
    )
    assert counters["nodes_total"] == 6
    assert counters["jobs_queued"] == 2
    assert counters["chunks_running"] == 3
    assert counters["jobs_completed"] == 4
    assert counters["since_reset_dispatched"] == 5
