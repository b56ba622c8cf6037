"""Write fundiff's judges (src/fundiff/assets/judges/): the classifiers that `fundiff evaluate`, `evaluate-parta` and
the report measure samples with, for the data sets fundiff ships models of. Shipping them makes every machine
measure with the same instrument, and a first evaluation or report does not spend minutes training one.

    python tools/ship_judges.py [mnist|fashion ...]     # all four: about 10 minutes on 2 CPU cores

Each is `fundiff judge train --data DATA [--far] --epochs E --out ...` (seed 0), on the training split that every run
of that data uses: 8 epochs of the 4,450 offline digits (the command's default), 4 of Fashion-MNIST's 59,500 (the
command's default, 1 epoch, reads 0.900 of the held-out clothes; 4 epochs were affordable once, for every
user); the held-out accuracy, the data, the epochs and the versions are in each file's metadata
(`fundiff.evaluate.judge.judge_record`). A judge is used only for exactly the data it was trained on.
"""

from __future__ import annotations

import sys

from fundiff.evaluate.runs import SHIPPED_JUDGES, run_judge_train

EPOCHS = {"mnist": 8, "fashion": 4}


def main(data_sets: list[str]) -> None:
    SHIPPED_JUDGES.mkdir(exist_ok=True)
    for data in data_sets or EPOCHS:
        for far in (False, True):
            out = SHIPPED_JUDGES / f"judge-{data}{'-far' if far else ''}.safetensors"
            run_judge_train(data, None, EPOCHS[data], out, force=True, far=far)


if __name__ == "__main__":
    main(sys.argv[1:])
