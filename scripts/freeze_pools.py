"""Write the frozen pools of names, companies and prose that worlds are drawn from.

Run once, by hand, when the pools are to change (which changes every world: record the new
hash in tests/test_golden_worlds.py and bump the env ids' version)::

    pip install 'faker==40.63.0'
    python scripts/freeze_pools.py

The pools were drawn from Faker 40.63.0 (en_US) with a fixed seed. Faker's bundled data and
generators change between releases, so drawing at import time made the same seed give
different worlds on installs with different Faker versions; the package now ships the drawn
pools as data (mosaic_gym/world/data/pools.json) and needs no Faker at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from faker import Faker

POOL_SEED = 20260303
POOL_SIZE = 400
OUT = Path(__file__).resolve().parents[1] / "mosaic_gym" / "world" / "data" / "pools.json"


def distinct(make: Callable[[], str], n: int = POOL_SIZE) -> list[str]:
    """The first ``n`` distinct values ``make`` draws, in the order first drawn."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen[make()] = None
    return list(seen)


def main() -> None:
    import faker

    fake = Faker("en_US")
    fake.seed_instance(POOL_SEED)
    # The order of the draws matters: each continues Faker's random stream from the last.
    pools = {
        "first_names": distinct(fake.first_name, 200),
        "last_names": distinct(fake.last_name, 200),
        "companies": distinct(lambda: fake.company().replace(",", ""), 200),
        "domains": distinct(fake.domain_name, 200),
        "sentences": distinct(fake.sentence),
        "words": distinct(lambda: fake.word().lower(), 300),
        "cities": distinct(fake.city, 100),
        "jobs": distinct(fake.job, 100),
    }
    source = {"faker": faker.VERSION, "locale": "en_US", "seed": POOL_SEED}
    OUT.write_text(json.dumps({"source": source, **pools}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({sum(len(p) for p in pools.values())} values, Faker {faker.VERSION})")


if __name__ == "__main__":
    main()
