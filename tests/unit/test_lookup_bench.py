"""`pulse bench --lookups` measures the production read path: its profiles and published models
make every answer be scored as of now (no I/O here)."""

from __future__ import annotations

from datetime import UTC, datetime

from stream.api.lookup import read_models
from stream.cli.lookup_bench import published_models, synthetic_profiles
from stream.sinks.base import as_of_now, profile_fields
from stream.sinks.redis import CHURN_MODEL_KEY, PURCHASE_MODEL_KEY


def test_the_bench_profiles_are_scored_as_of_the_published_models_now() -> None:
    now = datetime.now(UTC)
    models = published_models(now)
    read = read_models(models[PURCHASE_MODEL_KEY], models[CHURN_MODEL_KEY])
    assert read.purchase is not None and read.churn is not None and read.churn.ready
    today = now.replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    profiles = synthetic_profiles(50)
    for profile in profiles:
        stored = profile_fields(profile)  # the hash as the sink writes it
        answer = as_of_now(stored, read)
        assert answer["model_version"].startswith("logreg")
        assert profile.last_purchase_at is not None
        if profile.last_purchase_at.isoformat() < today:  # silent since before the model's now: moved on to it
            assert answer["scores_as_of"] == answer["churn_as_of"] == today
            assert answer["churn_probability"] != stored["churn_probability"]
    assert len({p.churn_inputs for p in profiles}) > 40  # varied customers, not one copied
