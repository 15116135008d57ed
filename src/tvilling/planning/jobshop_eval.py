"""Score the scheduler on published job-shop instances: makespan, best-known value and gap per instance.

The gap of a makespan ``C`` is ``(C - upper) / upper`` with ``upper`` the best published makespan. Every
schedule is checked by :func:`~tvilling.planning.jobshop_check.check_schedule` before it is counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tvilling.core.errors import Invalid, NotFound
from tvilling.planning.jobshop_check import require_feasible
from tvilling.planning.jobshop_io import read_best_known, read_instance
from tvilling.planning.jobshop_solver import SolveOptions, solve

Flexible = Literal["auto", "yes", "no"]


def list_instances(where: Path, names: list[str] | None = None) -> list[Path]:
    """The instance files (``*.txt``) of a folder, or the one file given; ``names`` picks some by stem."""
    if where.is_file():
        files = [where]
    elif where.is_dir():
        files = sorted(where.glob("*.txt"), key=lambda p: _natural(p.stem))
    else:
        raise NotFound(f"{where}: no such file or folder", path=str(where))
    if names:
        by_name = {p.stem: p for p in files}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise NotFound(f"no instance named {', '.join(missing)} in {where}", missing=missing, path=str(where))
        files = [by_name[n] for n in names]
    if not files:
        raise NotFound(f"{where}: no instance files (*.txt)", path=str(where))
    return files


def _natural(name: str) -> tuple[object, ...]:
    """Sort key: ``la2`` before ``la10``."""
    out: list[object] = []
    digits = ""
    for ch in name + " ":
        if ch.isdigit():
            digits += ch
            continue
        if digits:
            out.append(int(digits))
            digits = ""
        out.append(ch)
    return tuple((0, x) if isinstance(x, int) else (1, x) for x in out)


def run(files: list[Path], time_limit: float, best_known: Path | None = None, schedules: Path | None = None,
        flexible: Flexible = "auto", workers: int = 1, seed: int = 0,
        progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Solve each instance within ``time_limit`` seconds and score it against the best-known values
    (``best_known`` or the ``best_known.json`` beside the first instance)."""
    if time_limit <= 0:
        raise Invalid(f"the time limit must be positive, got {time_limit}", rule="time-limit")
    known_file = best_known if best_known is not None else files[0].parent / "best_known.json"
    if best_known is not None and not known_file.is_file():
        raise NotFound(f"{known_file}: no such best-known file", path=str(known_file))
    known = read_best_known(known_file) if known_file.is_file() else {}
    if schedules is not None:
        schedules.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for n, path in enumerate(files, start=1):
        problem = read_instance(path, flexible)
        result = solve(problem, SolveOptions(time_limit=time_limit, workers=workers, seed=seed))
        require_feasible(problem, result.schedule)
        upper = known.get(path.stem, {}).get("upper")
        row: dict[str, Any] = {
            "instance": path.stem, "makespan": result.makespan, "best_known": upper,
            "gap": (result.makespan - upper) / upper if upper else None, "optimal": result.optimal,
            "seconds": round(result.seconds, 3), "lower_bound": result.lower_bound,
            "jobs": len(problem.jobs), "machines": problem.machines, "flexible": problem.is_flexible,
        }
        rows.append(row)
        if schedules is not None:
            (schedules / f"{path.stem}.json").write_text(json.dumps(result.schedule.to_json(path.stem)) + "\n",
                                                         encoding="utf-8")
        if progress is not None:
            progress(n, len(files), row)
    gaps = [r["gap"] for r in rows if r["gap"] is not None]
    return {"instances": rows, "mean_gap": sum(gaps) / len(gaps) if gaps else None,
            "time_limit": time_limit, "workers": workers}


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The published JSON form: per instance its name, makespan, best known, gap, optimal flag and seconds."""
    keys = ("instance", "makespan", "best_known", "gap", "optimal", "seconds")
    return {"instances": [{k: r[k] for k in keys} for r in result["instances"]], "mean_gap": result["mean_gap"]}


def _pct(gap: float | None) -> str:
    return "-" if gap is None else f"{100 * gap:.2f}%"


def progress_line(n: int, total: int, row: dict[str, Any]) -> str:
    """One line per solved instance, for stderr."""
    best = row["best_known"] if row["best_known"] is not None else "?"
    return (f"[{n}/{total}] {row['instance']}: makespan {row['makespan']} (best known {best}, gap "
            f"{_pct(row['gap'])}{', optimal' if row['optimal'] else ''}) in {row['seconds']:.1f} s")


def table(result: dict[str, Any]) -> str:
    """The run as a text table with the mean gap."""
    head = f"{'instance':<12} {'size':>7} {'makespan':>9} {'best':>7} {'gap':>8} {'bound':>7} {'optimal':>8} {'s':>7}"
    lines = [head, "-" * len(head)]
    for r in result["instances"]:
        size = f"{r['jobs']}x{r['machines']}"
        best = "-" if r["best_known"] is None else str(r["best_known"])
        lines.append(f"{r['instance']:<12} {size:>7} {r['makespan']:>9} {best:>7} {_pct(r['gap']):>8} "
                     f"{r['lower_bound']:>7} {'yes' if r['optimal'] else 'no':>8} {r['seconds']:>7.1f}")
    optimal = sum(1 for r in result["instances"] if r["optimal"])
    lines.append(f"mean gap {_pct(result['mean_gap'])} over {len(result['instances'])} instances; "
                 f"{optimal} proven optimal; {result['time_limit']:g} s each, {result['workers']} worker(s)")
    return "\n".join(lines)
