"""Population insight commands: the cross-sell rules and the behavioural clusters the workers
publish to Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from stream.cli.base import load_or_exit, main
from stream.settings import Settings


def _published(settings: Settings, key: str, missing: str) -> dict[str, Any]:
    """A JSON document the workers publish to Redis; a clear error when it is not there yet."""
    import redis

    try:
        stored = redis.Redis.from_url(settings.redis_url, decode_responses=True).get(key)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read {key} from {settings.redis_display}: {exc}") from None
    if not stored:
        raise click.ClickException(f"no {missing} in {key} yet: a worker with population scoring publishes them "
                                   "every PULSE_PURCHASE_FIT_SECONDS once events arrive")
    document: dict[str, Any] = json.loads(str(stored))
    return document


@main.command(help="Print the population's cross-sell rules (a purchase of A followed by one of B within 30 days), "
                    "as the workers last published them.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many rules, by lift.")
@click.option("--json", "as_json", is_flag=True, help="The published document as JSON.")
def affinity(top: int, as_json: bool) -> None:
    from stream.sinks.redis import AFFINITY_KEY

    document = _published(load_or_exit(redis=True), AFFINITY_KEY, "cross-sell rules")
    document["rules"] = document["rules"][:top]
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"{document['purchases']:,} purchases; a rule needs {document['min_purchases']} purchases of A "
               f"followed by B within {document['window_days']} days")
    click.echo(f"  {'if':<14} {'then':<14} {'lift':>6} {'confidence':>11} {'support':>8} {'purchases':>10}")
    for rule in document["rules"]:
        click.echo(f"  {rule['if']:<14} {rule['then']:<14} {rule['lift']:>6.2f} {rule['confidence']:>11.3f} "
                   f"{rule['support']:>8.4f} {rule['purchases']:>10,}")




@main.command(help="Print the behavioural clusters (k-means over the customers' behaviour) as the workers last "
                    "published them; with --truth, score the customers' clusters against planted groups.")
@click.option("--json", "as_json", is_flag=True, help="The published document as JSON.")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A `pulse generate --behaviour-groups --truth` file: the adjusted Rand index of the customers' "
                   "cluster fields in Redis against the planted groups.")
def clusters(as_json: bool, truth: Path | None) -> None:

    from stream.sinks.redis import CLUSTERS_KEY

    settings = load_or_exit(redis=True)
    document = _published(settings, CLUSTERS_KEY, "behavioural clusters")
    if truth is not None:
        document["against_truth"] = _against_truth(settings, truth)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"{document['k']} clusters ({document['version']}) over a sample of {document['sample']} customers, "
               f"fitted at {document.get('fitted_at', '?')}")
    for cluster in document["clusters"]:
        click.echo(f"  {cluster['id']:>2}  {cluster['size']:>5} sampled  {cluster['description']}")
    scored = document.get("against_truth")
    if scored:
        click.echo(f"against the planted groups: adjusted Rand index {scored['adjusted_rand']:.3f} over "
                   f"{scored['customers']} customers with a cluster ({scored['without_cluster']} without)")


def _against_truth(settings: Settings, truth: Path) -> dict[str, Any]:
    """The adjusted Rand index of the customers' ``cluster`` hash fields against the truth's groups."""
    import redis
    from river.metrics import AdjustedRand

    from stream.sinks.redis import customer_key

    groups = {}
    for line in truth.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("group"):
            groups[row["customer_id"]] = row["group"]
    if not groups:
        raise click.BadParameter("no customer in it has a group: generate it with --behaviour-groups",
                                 param_hint="--truth")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    ids = sorted(groups)
    with client.pipeline(transaction=False) as pipe:
        for customer_id in ids:  # (stored under their pseudonyms with PULSE_PSEUDONYM_KEY)
            pipe.hget(customer_key(settings.stored_id(customer_id)), "cluster")
        found = pipe.execute()
    metric, missing = AdjustedRand(), 0
    for customer_id, cluster in zip(ids, found, strict=True):
        if cluster is None:
            missing += 1
        else:
            metric.update(groups[customer_id], int(cluster))
    return {"adjusted_rand": round(metric.get(), 4), "customers": len(ids) - missing, "without_cluster": missing}
