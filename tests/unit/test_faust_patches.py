"""The Faust patches refuse a faust-streaming they were not verified on."""

from __future__ import annotations

import pytest

from agents import faust_patches


def test_the_pinned_faust_streaming_passes_and_the_fix_is_installed_once() -> None:
    assert faust_patches.problems() == []
    faust_patches.apply()
    faust_patches.apply()
    from faust.tables.recovery import Recovery

    assert Recovery.on_recovery_completed is faust_patches._on_recovery_completed
    assert faust_patches.problems() == []  # checked against the original, not the replacement


def test_another_version_or_a_changed_method_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_patches, "VERIFIED_VERSIONS", ("0.99.0",))
    monkeypatch.setattr(faust_patches, "REPLACED_SOURCE", "0000000000000000")
    monkeypatch.setattr(faust_patches, "FOLLOWED_SOURCE", "0000000000000000")
    found = faust_patches.problems()
    assert any("verified on 0.99.0" in problem for problem in found)
    assert any("Recovery.on_recovery_completed has changed" in problem for problem in found)
    assert any("Stream.take_events has changed" in problem for problem in found)
    with pytest.raises(faust_patches.FaustPatchError, match="was not written for this faust-streaming"):
        faust_patches.apply()
