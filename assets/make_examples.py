"""Regenerates the example tables in assets/examples (MIT-licensed with the project, fully synthetic).

Run from the repository root: python -m assets.make_examples
"""

from pathlib import Path

import numpy as np
import pandas as pd

from lift_core.synthetic import make_classification

HERE = Path(__file__).resolve().parent / "examples"


def fruit_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A small mixed table: numeric and categorical features, a text label."""
    rng = np.random.default_rng(seed)
    fruit = rng.choice(["apple", "banana", "cherry"], size=n)
    weight = np.select([fruit == "apple", fruit == "banana"], [150, 120], 8) + rng.normal(0, 12, n)
    length = np.select([fruit == "apple", fruit == "banana"], [7.5, 18.0], 2.0) + rng.normal(0, 1.0, n)
    colour = np.where(rng.random(n) < 0.8,
                      np.select([fruit == "apple", fruit == "banana"], ["red", "yellow"], "dark red"),
                      rng.choice(["green", "red", "yellow"], size=n))
    return pd.DataFrame({"weight g": weight.round(1), "length cm": length.round(2), "colour": colour,
                         "fruit": fruit})


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    make_classification("moons", n=400, noise=0.15, seed=0).to_csv(HERE / "moons.csv", index=False)
    fruit_table().to_csv(HERE / "fruit.csv", index=False)
