"""What a benchmark target provides: our store and the same raw SDK calls it makes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudsessions.record import Changes, EncodedRecord
from cloudsessions.store import Store


@dataclass
class Target:
    """`store` and, for each operation, the raw SDK call the store makes for it.

    The raw calls take what the store's own primitives take (record id, encoded fields),
    so the ratio measures exactly what cloudsessions adds: id checks and hashing, value
    encoding, the size check, error mapping, and decoding.
    """

    store: Store
    raw_load: Callable[[str], object]
    raw_create: Callable[[str, EncodedRecord], object]
    raw_save: Callable[[str, Changes, float, str | None, float], object]
    raw_delete: Callable[[str], object]


RESULTS = Path(__file__).resolve().parent / "results"


def publish(name: str, header: Sequence[str], align: str, rows: list[str], note: str) -> str:
    """Print the markdown table of `rows` and save it as results/<name>.md under `note`."""
    lines = ["| " + " | ".join(header) + " |", align, *rows]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(f"{note}\n\n{table}\n")
    return table


def save_figure(fig: Any, path: Path, title: str | None = None) -> None:
    """Lay out `fig` under `title`, save it as `path` and free it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
