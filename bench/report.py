"""BENCHMARKS.md sections that the benchmarks rewrite themselves, between `<!-- NAME:start -->` and `<!-- NAME:end -->`."""

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(name: str, table: str, path: Path = BENCHMARKS) -> None:
    """Replace what stands between the section's two markers with `table`."""
    text = path.read_text()
    start_mark, end_mark = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    start, end = text.index(start_mark) + len(start_mark), text.index(end_mark)
    path.write_text(text[:start] + "\n" + table + "\n" + text[end:])


def publish(name: str, table: str, write: bool) -> None:
    """Print a benchmark's table and, when asked, put it into its BENCHMARKS.md section."""
    print(table)
    if write:
        write_section(name, table)
