from __future__ import annotations

import pytest

from muster_services.core.errors import InvalidArgument
from muster_services.core.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page_request


def test_first_page_uses_the_default_size_and_no_key() -> None:
    page = page_request(0, "")
    assert page.size == DEFAULT_PAGE_SIZE
    assert page.after is None


def test_size_above_the_maximum_is_capped_and_negative_is_refused() -> None:
    assert page_request(10**9, "").size == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument, match="page_size"):
        page_request(-1, "")


def test_token_round_trips_its_key_for_the_same_filters() -> None:
    first = page_request(10, "", {"parent": 3})
    token = first.next_token([5, 1234])
    assert page_request(10, token, {"parent": 3}).after == [5, 1234]


def test_token_for_other_filters_or_garbage_is_refused() -> None:
    token = page_request(10, "", {"parent": 3}).next_token(7)
    with pytest.raises(InvalidArgument, match="other filters"):
        page_request(10, token, {"parent": 4})
    for garbage in ("zzz", "not base64!", "eyJ4IjoxfQ"):
        with pytest.raises(InvalidArgument, match="page_token"):
            page_request(10, garbage)
