"""Two real tables from scikit-learn's bundled data sets, written as CSV files for `fpt compare`.

    python examples/sklearn_tables.py --out data/
    fpt compare --task data/breast_cancer.csv --task-opt target=diagnosis
    fpt compare --task data/diabetes.csv --task-opt target=progression

breast_cancer.csv  569 tumours, 30 numeric measurements; target `diagnosis` (malignant / benign)
diabetes.csv       442 patients, 9 numeric measurements and `sex` as a category (its two codes,
                   1 and 2, as the words sex-1 and sex-2: the data set does not say which is
                   which); target `progression`, a disease measure one year later (regression)
Both come inside scikit-learn (no download); values as sklearn gives them, unscaled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sklearn.datasets import load_breast_cancer, load_diabetes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data", help="directory for the two CSV files")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    cancer = load_breast_cancer(as_frame=True)
    frame = cancer.frame.drop(columns="target")
    frame["diagnosis"] = [cancer.target_names[t] for t in cancer.target]
    frame.to_csv(out / "breast_cancer.csv", index=False)

    diabetes = load_diabetes(as_frame=True, scaled=False)
    frame = diabetes.frame.rename(columns={"target": "progression"})
    frame["sex"] = [f"sex-{int(v)}" for v in frame["sex"]]
    frame.to_csv(out / "diabetes.csv", index=False)
    print(f"wrote {out / 'breast_cancer.csv'} ({len(cancer.frame)} rows) and {out / 'diabetes.csv'} "
          f"({len(diabetes.frame)} rows)")


if __name__ == "__main__":
    main()
