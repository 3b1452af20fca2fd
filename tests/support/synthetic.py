"""Synthetic click events with a learnable purchase signal, for training and evaluation tests."""

from __future__ import annotations

import random

T0 = 1_570_000_000_000
CATEGORIES = ["electronics.smartphone", "computers.notebook", "appliances.kitchen.kettle",
              "apparel.shoes"]
BRANDS = ["apple", "lenovo", "bosch", "nike"]


def synthetic_events(users: int = 50, seed: int = 0) -> list[dict]:
    """Users over ~90 minutes; every third one adds to cart and buys a minute or two later."""
    rng = random.Random(seed)
    events = []
    for u in range(users):
        buyer = u % 3 == 0
        t = T0 + rng.randint(0, 90 * 60) * 1000
        k = rng.randrange(len(CATEGORIES))
        n = rng.randint(3, 5)
        for i in range(n):
            kind = "view"
            if buyer and i == n - 2:
                kind = "add_to_cart"
            elif buyer and i == n - 1:
                kind = "purchase"
            events.append({
                "event_id": f"e{u}-{i}", "user_id": f"u{u}", "event_type": kind, "ts": t,
                "session_id": f"s{u}",
                "product": {"id": str(100 + k), "category": CATEGORIES[k], "brand": BRANDS[k],
                            "price": 10.0 + 50 * k},
            })
            t += rng.randint(20, 90) * 1000
    return events
