"""Recompute the back-test's leave-one-source-out residuals and store them beside the table.

Every estimate's range is built from these residuals; they belong to one version of the model,
named by a fingerprint of the files a prediction depends on. After changing the model or the
table, run this (about 20 s) and commit the file it writes; `tests/test_estimate_backtest.py`
fails while the stored residuals are stale.

    python scripts/refresh_backtest_residuals.py
"""

import json

from gpubench.estimate.backtest import RESIDUALS, cross_validated_residuals, model_fingerprint


def main() -> None:
    families = cross_validated_residuals()
    doc = {"kind": "leave-one-source-out", "model_fingerprint": model_fingerprint(),
           "note": "log(predicted / published time) per back-test family; "
                   "written by scripts/refresh_backtest_residuals.py",
           "families": {k: [round(x, 6) for x in v] for k, v in sorted(families.items())}}
    RESIDUALS.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {RESIDUALS} ({sum(len(v) for v in families.values())} residuals)")


if __name__ == "__main__":
    main()
