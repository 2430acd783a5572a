"""The example tables and example runs that ship with LIFT Studio (assets/), named once for the Data tab's
one-click examples, the shipped runs and the script that makes both (`python -m assets.make_examples`)."""

from dataclasses import dataclass
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
EXAMPLE_TABLES_DIR = ASSETS_DIR / "examples"
# Trained run folders, opened read-only in the app (see access.RunAccess).
EXAMPLE_RUNS_DIR = ASSETS_DIR / "example_runs"
EXAMPLE_RUN_PREFIX = "example-"


@dataclass(frozen=True)
class ExampleTable:
    file: str  # in EXAMPLE_TABLES_DIR
    target: str
    template: str  # a prompts.TEMPLATE_KINDS kind
    description: str

    @property
    def path(self) -> Path:
        return EXAMPLE_TABLES_DIR / self.file

    @property
    def run_name(self) -> str:
        """The shipped run trained on this table, with the default settings."""
        return EXAMPLE_RUN_PREFIX + Path(self.file).stem


EXAMPLE_TABLES = {
    "moons": ExampleTable("moons.csv", "y", "lift", "two interleaved half-moons, 2 numeric features, 2 classes "
                                                    "(the LIFT paper's 2-D set)"),
    "circles": ExampleTable("circles.csv", "y", "lift", "a disc inside a ring, 2 numeric features, 2 classes"),
    "fruit": ExampleTable("fruit.csv", "fruit", "lift", "weight, length and colour of fruit, 3 classes: numbers "
                                                        "and text in one table"),
    "quadratic": ExampleTable("quadratic.csv", "y", "lift", "a noisy parabola, 1 numeric feature: regression, "
                                                            "drawn as a line reaching past the data"),
}
