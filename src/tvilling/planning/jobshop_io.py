"""Reading benchmark instances: the standard job-shop text format and Brandimarte's flexible job-shop format.

Job shop: a line ``jobs machines``, then per job one line of ``machine duration`` pairs, one pair per machine.
Flexible job shop: a line ``jobs machines [average machines per operation]``, then per job one line: the number
of operations, then per operation the number of eligible machines followed by that many ``machine duration``
pairs. Machines are numbered from 0. A malformed file raises :class:`~tvilling.core.errors.Invalid` naming the
file and the line.

>>> p = parse_jobshop("2 2\\n0 3 1 2\\n1 4 0 1\\n", "tiny")
>>> [len(j.operations) for j in p.jobs], p.jobs[1].operations[0].options
([2, 2], (Option(machine=1, duration=4),))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from tvilling.core.errors import Invalid
from tvilling.planning.jobshop import Job, Operation, Option, Problem

Format = Literal["jobshop", "flexible"]


class _Lines:
    """The non-blank lines of a text with their line numbers, read as integers."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.rows: list[tuple[int, list[str]]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            tokens = line.split()
            if tokens:
                self.rows.append((number, tokens))

    def error(self, line: int | None, message: str, **fields: object) -> Invalid:
        where = f"{self.source}:{line}" if line is not None else self.source
        return Invalid(f"{where}: {message}", file=self.source, line=line, rule="instance-format", **fields)

    def header(self) -> tuple[int, int, list[str]]:
        if not self.rows:
            raise self.error(None, "empty file; expected a first line 'jobs machines'")
        line, tokens = self.rows[0]
        if len(tokens) < 2:
            raise self.error(line, f"first line has {len(tokens)} number(s); expected 'jobs machines'")
        jobs, machines = self.integer(line, tokens[0], "jobs"), self.integer(line, tokens[1], "machines")
        if jobs < 1 or machines < 1:
            raise self.error(line, f"jobs ({jobs}) and machines ({machines}) must be at least 1")
        return jobs, machines, tokens[2:]

    def integer(self, line: int, token: str, what: str) -> int:
        try:
            return int(token)
        except ValueError:
            raise self.error(line, f"{what} {token!r} is not an integer") from None

    def job_rows(self, jobs: int) -> list[tuple[int, list[str]]]:
        rows = self.rows[1:]
        if len(rows) != jobs:
            last = rows[-1][0] if rows else self.rows[0][0]
            raise self.error(last, f"the header declares {jobs} jobs but {len(rows)} job line(s) follow",
                             declared=jobs, found=len(rows))
        return rows

    def option(self, line: int, machine_token: str, duration_token: str, machines: int, where: str) -> Option:
        machine = self.integer(line, machine_token, f"{where}: machine")
        duration = self.integer(line, duration_token, f"{where}: duration")
        if not 0 <= machine < machines:
            raise self.error(line, f"{where}: machine {machine} is out of range 0..{machines - 1}", machine=machine)
        if duration < 0:
            raise self.error(line, f"{where}: duration {duration} is negative", duration=duration)
        return Option(machine, duration)


def parse_jobshop(text: str, source: str = "<text>", name: str = "") -> Problem:
    """A job-shop instance in the standard format (one ``machine duration`` pair per machine and job)."""
    lines = _Lines(text, source)
    jobs, machines, extra = lines.header()
    if extra:
        raise lines.error(lines.rows[0][0], f"first line has {2 + len(extra)} numbers; the job-shop format has "
                                            "'jobs machines' (is this a flexible instance?)")
    out: list[Job] = []
    for j, (line, tokens) in enumerate(lines.job_rows(jobs)):
        if len(tokens) != 2 * machines:
            raise lines.error(line, f"job {j} has {len(tokens)} numbers; expected {2 * machines} "
                                    f"(a machine and a duration for each of {machines} machines)", job=j)
        ops = tuple(Operation((lines.option(line, tokens[2 * k], tokens[2 * k + 1], machines, f"job {j} op {k}"),))
                    for k in range(machines))
        out.append(Job(ops))
    return Problem(machines=machines, jobs=tuple(out), name=name or Path(source).stem)


def parse_flexible(text: str, source: str = "<text>", name: str = "") -> Problem:
    """A flexible job-shop instance in Brandimarte's format."""
    lines = _Lines(text, source)
    jobs, machines, extra = lines.header()
    if len(extra) > 1:
        raise lines.error(lines.rows[0][0], f"first line has {2 + len(extra)} numbers; expected "
                                            "'jobs machines [average machines per operation]'")
    out: list[Job] = []
    for j, (line, tokens) in enumerate(lines.job_rows(jobs)):
        count = lines.integer(line, tokens[0], f"job {j}: operation count")
        if count < 1:
            raise lines.error(line, f"job {j}: operation count {count} must be at least 1", job=j)
        pos, ops = 1, []
        for k in range(count):
            where = f"job {j} op {k}"
            if pos >= len(tokens):
                raise lines.error(line, f"job {j}: the line ends after {k} of its {count} operations", job=j, op=k)
            alternatives = lines.integer(line, tokens[pos], f"{where}: machine count")
            if alternatives < 1:
                raise lines.error(line, f"{where}: machine count {alternatives}; an operation needs at least one "
                                        "machine", job=j, op=k)
            if pos + 1 + 2 * alternatives > len(tokens):
                raise lines.error(line, f"{where}: declares {alternatives} machines but the line ends first",
                                  job=j, op=k)
            options = [lines.option(line, tokens[pos + 1 + 2 * a], tokens[pos + 2 + 2 * a], machines, where)
                       for a in range(alternatives)]
            if len({o.machine for o in options}) != len(options):
                raise lines.error(line, f"{where}: a machine is listed twice", job=j, op=k)
            ops.append(Operation(tuple(options)))
            pos += 1 + 2 * alternatives
        if pos != len(tokens):
            raise lines.error(line, f"job {j}: {len(tokens) - pos} number(s) left after its {count} operations",
                              job=j)
        out.append(Job(tuple(ops)))
    return Problem(machines=machines, jobs=tuple(out), name=name or Path(source).stem)


def detect_format(text: str, source: str = "<text>") -> Format:
    """``flexible`` when the text reads as Brandimarte's format and not as the standard one, else ``jobshop``.

    A third number on the first line marks a flexible file. Otherwise the text is parsed both ways: the
    standard format wins when both succeed (its lines hold exactly two numbers per machine); when neither
    does, the error of the format whose shape the file has (an even count per line) is raised."""
    lines = _Lines(text, source)
    _, _, extra = lines.header()
    if extra:
        return "flexible"
    try:
        parse_jobshop(text, source)
        return "jobshop"
    except Invalid as plain_error:
        try:
            parse_flexible(text, source)
            return "flexible"
        except Invalid:
            if all(len(tokens) % 2 == 0 for _, tokens in lines.rows[1:]):
                raise plain_error from None
            raise


def read_instance(path: Path, flexible: Literal["auto", "yes", "no"] = "auto") -> Problem:
    """An instance file, in the format ``flexible`` names or the one :func:`detect_format` finds."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"{path}: cannot be read ({exc})", file=str(path), rule="instance-format") from None
    kind: Format = "flexible" if flexible == "yes" else "jobshop" if flexible == "no" else detect_format(
        text, str(path))
    parse = parse_flexible if kind == "flexible" else parse_jobshop
    return parse(text, str(path), name=path.stem)


def read_best_known(path: Path) -> dict[str, dict[str, int | None]]:
    """``best_known.json``: ``{name: {"jobs", "machines", "optimum", "lower", "upper"}}``; each entry needs an
    integer ``upper``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"{path}: cannot be read as JSON ({exc})", file=str(path), rule="best-known") from None
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected an object of instances", file=str(path), rule="best-known")
    out: dict[str, dict[str, int | None]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("upper"), int):
            raise Invalid(f"{path}: entry {name!r} needs an integer 'upper'", file=str(path), instance=name,
                          rule="best-known")
        out[name] = {key: entry.get(key) for key in ("jobs", "machines", "optimum", "lower", "upper")}
    return out
