"""Data analysis in a sandbox: upload a CSV, run pandas on it there, download a chart.

    SANDBOX_IDE_URL=... SANDBOX_IDE_TOKEN=... python data_analysis.py [sales.csv] --out chart.png

Without a CSV it writes a small sample one first.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
from pathlib import Path

from sandbox_ide import Sandbox

ANALYSIS = """
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

df = pd.read_csv("data/sales.csv", parse_dates=["date"])
by_region = df.groupby("region")["amount"].agg(["count", "sum", "mean"]).round(2)
print(by_region.to_string())
monthly = df.set_index("date").groupby("region")["amount"].resample("MS").sum().unstack(0)
ax = monthly.plot(figsize=(6, 4), marker="o", title="Monthly sales by region")
ax.set_ylabel("amount")
plt.tight_layout()
plt.savefig("out/chart.png", dpi=100)
print("rows:", len(df))
"""


def sample_csv(path: Path, rows: int = 400) -> None:
    rng = random.Random(7)  # noqa: S311 - sample data
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "region", "amount"])
        for _ in range(rows):
            month, day = rng.randint(1, 6), rng.randint(1, 28)
            region = rng.choice(["north", "south", "east", "west"])
            writer.writerow([f"2024-{month:02d}-{day:02d}", region, round(rng.uniform(5, 500), 2)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path)
    parser.add_argument("--sandbox", default="data-analysis-example")
    parser.add_argument("--out", type=Path, default=Path("chart.png"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        source = args.csv
        if source is None:
            source = Path(tmp) / "sales.csv"
            sample_csv(source)
        with Sandbox.get_or_create(args.sandbox) as sandbox:
            sandbox.files.mkdir("out")
            with source.open("rb") as handle:
                sandbox.files.write("data/sales.csv", handle)
            sandbox.files.write("analysis.py", ANALYSIS)
            result = sandbox.exec(
                ["python3", "analysis.py"], on_stdout=sys.stdout.write, on_stderr=sys.stderr.write
            )
            if not result.success:
                print(f"analysis failed with exit code {result.exit_code}", file=sys.stderr)
                return 1
            sandbox.files.download("out/chart.png", args.out)
    print(f"chart: {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
