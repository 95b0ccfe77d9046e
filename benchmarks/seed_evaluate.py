"""The seed's way to score one batch without Prefect: parse the zip, sample, four metrics.

The reference for `ticketeval evaluate` as a whole process. Uses the seed's own functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import seed_reference as seed  # noqa: E402

if __name__ == "__main__":
    zip_path = Path(sys.argv[1]) if len(sys.argv) > 1 else seed.DEFAULT_ZIP
    df = seed.sample(seed.load_ticket_data(zip_path))
    actuals = (df["closed_at"] - df["sys_updated_at"]) / np.timedelta64(1, "s")
    preds = seed.predict.run(df)
    print({name: metric(actuals, preds) for name, metric in seed.METRICS.items()})
