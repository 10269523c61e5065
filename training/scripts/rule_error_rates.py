"""The decision rule's error rates (docs/results.md, "The decision rule"), from its normal
approximation (service.paired_intervals.refusal_probability): how often a candidate is called
worse, for a true difference, a margin and a standard error, at 95 % intervals.

    python training/scripts/rule_error_rates.py --se 0.0145 --margin 0.005
"""

from __future__ import annotations

import argparse

from service.paired_intervals import refusal_probability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--se", type=float, nargs="+", default=[0.005, 0.01, 0.015])
    parser.add_argument("--margin", type=float, default=0.005)
    args = parser.parse_args()
    truths = [0.0, -args.margin, -0.01, -0.02, -0.03, -0.05]
    print("P(called worse) by true difference; margin", args.margin)
    print("| SE | " + " | ".join(f"{t:+.3f}" for t in truths) + " |")
    print("|---|" + "---|" * len(truths))
    for se in args.se:
        row = [refusal_probability(t, args.margin, se) for t in truths]
        print(f"| {se:.4f} | " + " | ".join(f"{p:.1%}" for p in row) + " |")


if __name__ == "__main__":
    main()
