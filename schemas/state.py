"""Per-customer state kept in the ``customer-state`` table, and its Redis projection."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.outputs import CustomerTags


class CustomerState(BaseModel):
    """One customer's behavioural state. Immutable: updates return a new value.

    ``monetary_cents`` is an integer so that sums are exact to the cent.
    ``seen_event_ids`` is a compact, bounded record of recent event ids (see
    ``stream.core.dedup``) used to drop redeliveries.
    ``version`` counts the events applied; ``revision`` every change of the projection
    (Redis writes are guarded by it). Unknown stored fields are ignored and new fields have
    defaults, so state written by an older release still loads after an upgrade.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    customer_id: str
    version: int = 0
    revision: int = 0  # bumps on every change of the Redis projection (events and time-driven tags)
    events: int = 0
    orders: int = 0
    monetary_cents: int = 0
    first_purchase_at: AwareDatetime | None = None
    last_purchase_at: AwareDatetime | None = None
    first_seen_at: AwareDatetime | None = None
    last_event_at: AwareDatetime | None = None
    previous_purchase_at: AwareDatetime | None = None
    # distinct UTC days with a purchase (the purchase model's repeat purchases are days - 1), and
    # the purchase days a late purchase could still share (within the lateness of the newest event)
    purchase_days: int = 0
    recent_purchase_days: list[int] = Field(default_factory=list)
    # distinct UTC days with any event (the churn heuristic's pace of activity), kept the same way
    active_days: int = 0
    recent_active_days: list[int] = Field(default_factory=list)
    # inter-purchase gaps in days (Welford's running mean and sum of squared deviations)
    interval_count: int = 0
    interval_mean_days: float = 0.0
    interval_m2: float = 0.0
    # rolling windows: [index, orders, spend_cents, sessions, clicks] (see stream.core.windows)
    daily: tuple[tuple[int, int, int, int, int], ...] = ()
    weekly: tuple[tuple[int, int, int, int, int], ...] = ()
    sessions: int = 0
    clicks: int = 0
    last_session_id: str | None = None
    recent_sessions: list[str] = Field(default_factory=list)  # digests of the last 4 sessions' ids (dedup.session_key)
    funnel_stage: str | None = None
    category_interest: dict[str, tuple[float, float]] = {}
    # cross-sell affinity (stream/core/affinity.py): the categories bought (the first 8), and the
    # baskets of the last 30 days + lateness, (epoch seconds, categories), for exact follow counts
    categories_bought: list[str] = Field(default_factory=list)
    recent_baskets: list[tuple[int, tuple[str, ...]]] = Field(default_factory=list)
    channel_counts: dict[str, int] = {}
    # events by time of day (UTC), in 3-hour buckets from 00:00 (empty: a state from before they were counted)
    hour_counts: tuple[int, ...] = ()
    session_events: int = 0  # events of the current session (last_session_id) so far
    session_carted: bool = False  # whether the current session has added to a cart (fold.starts_cart)
    complaints: int = 0
    last_complaint_at: AwareDatetime | None = None
    refunds: int = 0
    refund_cents: int = 0
    # purchase amounts: count, mean and sum of squared deviations of log(total) (stream/core/anomaly.py)
    amount_stats: tuple[int, float, float] = (0, 0.0, 0.0)
    # marketing consent as the newest event stating it says (event time; a tie goes to "no")
    marketing_consent: bool | None = None
    marketing_consent_at: AwareDatetime | None = None
    tags: CustomerTags = CustomerTags()
    # churn: the latest score, when it was computed (event time), and the last alert per kind
    churn_probability: float | None = None
    churn_model: str | None = None
    churn_reasons: str | None = None
    churn_as_of: AwareDatetime | None = None
    churn_threshold: float | None = None  # the alert threshold of the scorer behind churn_probability
    alerted: dict[str, AwareDatetime] = {}
    # Page-Hinkley on the log gap between active days: count, mean, cumulative excess, its minimum
    activity_detector: tuple[int, float, float, float] = (0, 0.0, 0.0, 0.0)
    # open churn predictions awaiting their label: (predicted at, score, features), oldest first
    pending: tuple[tuple[AwareDatetime, float | None, dict[str, float]], ...] = ()
    # alerts awaiting their outcome (a purchase within the horizon or none): (alert id, raised at,
    # held out), oldest first
    open_alerts: tuple[tuple[str, AwareDatetime, bool], ...] = ()
    next_boundary_at: AwareDatetime | None = None
    # anonymous ids whose activity is merged in (stream/core/identity.py), in the order they were linked
    aliases: list[str] = Field(default_factory=list)
    duplicates: int = 0
    too_late: int = 0
    dedup_evicted: int = 0
    seen_event_ids: str = ""


class Identity(BaseModel):
    """An anonymous id's record in the ``identities`` table (``stream/core/identity.py``): its own
    activity (a state folded from its events, ``customer_id`` being the anonymous id), the customer
    it is linked to, and every customer it was ever linked to (the merge-storm limit counts them)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    anonymous_id: str
    activity: CustomerState
    linked_to: str | None = None
    links: list[str] = Field(default_factory=list)


class Profile(BaseModel):
    """What personalization services read: the ``pulse:cust:{customer_id}`` hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str
    version: int  # the state revision (every change of the profile, events and time-driven ones)
    events: int
    # The events applied to the state (its ``version``): never decreases, and a redo after a lost
    # batch reaches the same count. Writes are ordered by (event_version, version): an older or
    # equal pair than Redis's is ignored.
    event_version: int = 0
    orders: int
    purchase_days: int | None = None  # distinct days with a purchase
    monetary: str
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    r: int | None = None
    f: int | None = None
    m: int | None = None
    segment: str | None = None
    value_tier: str | None = None
    lifecycle: str | None = None
    behaviour: str | None = None
    top_categories: str | None = None
    channel: str | None = None
    as_of_event_time: datetime | None
    computed_at: datetime
    rules_version: str
    model_version: str
    churn_probability: float | None = None
    churn_risk: str | None = None
    churn_reasons: str | None = None
    churn_as_of: datetime | None = None  # the event time the churn score is for (readers: as of now)
    churn_inputs: str | None = None  # JSON: the features behind it, for readers to score as of now
    # The population-fitted purchase model (BG/NBD + Gamma-Gamma), as of ``scores_as_of``;
    # readers recompute them as of the model's now (docs/churn-model.md).
    p_alive: float | None = None
    purchase_churn_probability: float | None = None  # P(no purchase within the churn horizon H)
    expected_orders: float | None = None  # within H days
    predicted_value: float | None = None  # expected spend within H days
    potential: str | None = None  # high (low value today, predicted well above the mean), medium, low
    # cross-sell: categories not bought yet, by the lift of the best population rule from one bought
    # ("music:3.41,toys:1.52"; stream/core/affinity.py), as of the rules when the profile was written
    next_best_categories: str | None = None
    # behavioural cluster (stream/core/clusters.py): the nearest centroid's id, the distance to it in
    # population standard deviations, and the clusters' version, as of the clusters when written
    cluster: int | None = None
    cluster_distance: float | None = None
    cluster_model: str | None = None
    purchase_model: str | None = None  # the fitted model's version
    scores_as_of: datetime | None = None
    # in the control group (PULSE_HOLDOUT_SHARE): personalization that acts on alerts or scores skips it
    holdout: bool = False
    # anonymous ids (devices, cookies) whose activity is merged into this profile, comma-separated
    aliases: str | None = None
