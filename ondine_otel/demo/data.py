"""The bundled sample dataset: ~300 short product reviews, shipped inside the package.

Bundling it (rather than generating rows at runtime) keeps the demo's spans and costs identical
across runs and machines, and needs no network.
"""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

REVIEWS_RESOURCE = "reviews.csv"


def load_reviews(n: int | None = None) -> pd.DataFrame:
    """Return the reviews (``id``, ``review``); the first ``n`` rows, or all when ``n`` is None.

    For ``n`` beyond the bundled size the rows repeat (ids stay unique), so benchmarks can
    ask for any row count.
    """
    with (files(__package__) / REVIEWS_RESOURCE).open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype={"id": "int64", "review": "string"})
    if n is None:
        return df
    if n < 0:
        raise ValueError("n must be >= 0")
    if n > len(df):
        df = pd.concat([df] * -(-n // len(df)), ignore_index=True)
        df["id"] = range(1, len(df) + 1)
    return df.head(n).reset_index(drop=True)
