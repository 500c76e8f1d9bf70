"""The lookup API's declared types agree with the models they stand for."""

from __future__ import annotations

from typing import get_args

from schemas import Alert
from stream.api.lookup import PROFILE_FIELDS, requested_fields
from stream.api.server import AlertKind


def test_the_alert_kind_filter_accepts_exactly_the_alert_kinds() -> None:
    assert set(get_args(AlertKind)) == set(get_args(Alert.model_fields["kind"].annotation))


def test_every_profile_field_can_be_asked_for() -> None:
    assert requested_fields(PROFILE_FIELDS) == PROFILE_FIELDS
    assert requested_fields([]) == ()
