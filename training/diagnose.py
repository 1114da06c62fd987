"""`sparsegate-diagnose`: run every estimator on problems with known exact gradients.

Example:
    sparsegate-diagnose --out runs/diagnose --replicates 2000 --budget 4
writes diagnostics.json, estimators.md and estimators.png into --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.estimators import ESTIMATORS

from .diagnostics_report import write_json, write_markdown, write_plot
from .estimator_diagnostics import diagnose
from .estimator_problems import builtin_problems


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sparsegate-diagnose",
        description="Measure bias, variance, MSE and cosine of every gradient estimator against "
        "exact gradients on built-in problems.")
    parser.add_argument("--out", type=Path, default=Path("runs/diagnose"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--replicates", type=int, default=2000,
                        help="estimates per estimator and problem (default: %(default)s)")
    parser.add_argument("--budget", type=int, default=4,
                        help="loss evaluations per estimate, equal for all (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimators", default="all",
                        help="comma-separated names, or 'all' (default). Known: "
                        + ", ".join(ESTIMATORS))
    parser.add_argument("--problems", default="all",
                        help="comma-separated problem names, or 'all' (default)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def _select(spec: str, known: list[str], what: str) -> list[str]:
    if spec == "all":
        return known
    chosen = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in known]
    if unknown or not chosen:
        raise SystemExit(f"sparsegate-diagnose: unknown {what} {', '.join(unknown) or spec!r}; "
                         f"valid: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replicates < 2 or args.budget < 1:
        raise SystemExit("sparsegate-diagnose: --replicates must be >= 2 and --budget >= 1")
    problems_by_name = {p.name: p for p in builtin_problems()}
    estimators = _select(args.estimators, list(ESTIMATORS), "estimator")
    problems = [problems_by_name[n] for n in _select(args.problems, list(problems_by_name),
                                                       "problem")]
    from tqdm import tqdm

    jobs = [(p, e) for p in problems for e in estimators]
    reports = []
    with tqdm(jobs, desc="diagnose", unit="run", disable=args.no_progress,
              file=sys.stderr) as bar:
        for problem, estimator in bar:
            bar.set_postfix_str(f"{problem.name} / {estimator}")
            try:
                reports.append(diagnose(estimator, problem, args.replicates, args.budget,
                                        args.seed))
            except ValueError as err:
                raise SystemExit(f"sparsegate-diagnose: {err}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"replicates": args.replicates, "budget": args.budget, "seed": args.seed,
                "command": "sparsegate-diagnose " + " ".join(sys.argv[1:] if argv is None
                                                             else argv)}
    write_json(reports, settings, args.out / "diagnostics.json")
    write_markdown(reports, settings, args.out / "estimators.md")
    write_plot(reports, args.out / "estimators.png")
    print(f"wrote {args.out / 'diagnostics.json'}, estimators.md and estimators.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
