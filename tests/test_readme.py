"""The README, pasted: its shell blocks run in order against a real ``tvilling serve`` on a fresh data directory.

Which blocks: every ```` ```bash ```` block between the comment "tests/test_readme.py runs every bash
block from here" and "## Measured results", except a block right after a comment
``<!-- not run by tests/test_readme.py: REASON -->``. The blocks before (installing, the
test suite) and after (benchmarks, evaluations) are not on the "try it against a server" path.

How they run, in order, each command in ``bash -c`` in one fresh working directory (so
``./tvilling-data`` is new), with nothing but these substitutions:

* port 8000 (``localhost:8000``, ``127.0.0.1:8000``) → a free port;
* ``mqtt://127.0.0.1:1883`` → a Mosquitto the test starts on a free port;
* ``../shared/datasets`` → the data sets (``TVILLING_DATASETS``, or ``../shared/datasets`` beside the checkout);
* ``<id>`` → the first ``id`` in the answer before.

A command continues on the next line while a quote is open or the line ends with ``\\``.
``tvilling serve …`` and ``tvilling plant …`` run in the background, as "in another shell"
(a new ``tvilling serve`` replaces the running one); ``export NAME=VALUE`` sets the
environment of the commands after it (``export NAME=$(command)``: what the command prints).

Answers: a ``# → …`` line after a command is what it answers, and must match:

* JSON: every value shown is in the answer (objects have exactly the keys shown, or more where
  a bare ``…`` stands among them; ``…`` inside a string matches any text);
* ``error: …``: the command fails, and prints that line on stderr;
* other text: the command succeeds, and a line of its output reads so (``…``: any text).

A plain ``curl -s URL`` whose answer does not match yet is asked again for up to 15 s: it
watches something happen (a command's progress, an alarm being raised).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from serve_util import MOSQUITTO, free_port, mosquitto, wait_healthy
from shared_data import datasets_dir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START = "tests/test_readme.py runs every bash block from here"
END = "## Measured results"
NOT_RUN = "<!-- not run by tests/test_readme.py:"
ANSWER = "# →"
MORE = "\x00more"  # what a bare … becomes in a JSON answer pattern

pytestmark = pytest.mark.slow


@dataclass
class Command:
    text: str
    line: int  # in README.md
    answers: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    commands: list[Command]


def blocks(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The bash blocks in scope, and (line, reason) of those marked not run."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if START in line)
    end = next(i for i, line in enumerate(lines) if line.startswith(END) and i > start)
    out: list[Block] = []
    skipped: list[tuple[int, str]] = []
    i = start
    while i < end:
        if lines[i].strip() == "```bash":
            close = next(j for j in range(i + 1, end) if lines[j].strip() == "```")
            before = next((lines[j].strip() for j in range(i - 1, start, -1) if lines[j].strip()), "")
            if before.startswith(NOT_RUN):
                skipped.append((i + 1, before[len(NOT_RUN):].removesuffix("-->").strip()))
            else:
                out.append(Block(i + 1, split_commands(lines[i + 1:close], i + 2)))
            i = close
        i += 1
    return out, skipped


def split_commands(lines: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    current: list[str] = []
    for n, line in enumerate(lines, first_line):
        stripped = line.strip()
        if not current:
            if stripped.startswith(ANSWER):
                commands[-1].answers.append(stripped[len(ANSWER):].strip())
                continue
            if not stripped or stripped.startswith("#"):
                continue
            commands.append(Command("", n))
        current.append(line)
        text = "\n".join(current)
        if not _open_quote(text) and not text.endswith("\\"):
            commands[-1].text = text
            current = []
    assert not current, f"README.md:{commands[-1].line}: a command never ends (an open quote?)"
    return commands


def _open_quote(text: str) -> bool:
    """Whether a quote is still open at the end (a ``#`` comment outside quotes runs to the end of its line)."""
    quote = None
    escaped = comment = False
    prev = "\n"
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote is None and ch == "#" and prev.isspace():
            comment = True
        elif quote is None and ch in "'\"":
            quote = ch
        elif ch == quote:
            quote = None
        prev = ch
    return quote is not None


# -- answers ---------------------------------------------------------------------------------------
def json_pattern(text: str) -> Any:
    """A JSON answer as the README shows it: a bare … becomes a marker (more keys, or more items)."""
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]":
            stack.pop()
        elif ch == "…":
            out.append(json.dumps(MORE) + (": true" if stack and stack[-1] == "{" else ""))
            continue
        out.append(ch)
    return json.loads("".join(out))


def matches(pattern: Any, actual: Any) -> bool:
    if isinstance(pattern, dict):
        keys = [k for k in pattern if k != MORE]
        if not isinstance(actual, dict) or any(k not in actual for k in keys):
            return False
        if MORE not in pattern and set(keys) != set(actual):
            return False
        return all(matches(pattern[k], actual[k]) for k in keys)
    if isinstance(pattern, list):
        items = [p for p in pattern if p != MORE]
        if not isinstance(actual, list) or len(actual) < len(items):
            return False
        if MORE not in pattern and len(actual) != len(items):
            return False
        return all(matches(p, a) for p, a in zip(items, actual, strict=False))
    if isinstance(pattern, str) and "…" in pattern:
        return isinstance(actual, str) and text_matches(pattern, actual)
    if isinstance(pattern, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return abs(pattern - actual) <= 1e-9 * max(1.0, abs(pattern))
    return type(pattern) is type(actual) and pattern == actual


def text_matches(pattern: str, line: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("…"))
    return re.fullmatch(regex, line.strip(), flags=re.DOTALL) is not None


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        try:
            return json.loads(self.out)
        except json.JSONDecodeError:
            return None


def check(answer: str, r: Result) -> str | None:
    """None when the result is the answer the README shows; else what differs."""
    if answer.startswith("error:"):
        if r.rc == 0:
            return f"expected it to fail; it answered {r.out[-500:]!r}"
        if not any(text_matches(answer, line) for line in r.err.splitlines()):
            return f"expected the error {answer!r}; stderr was {r.err[-1500:]!r}"
        return None
    if r.rc != 0:
        return f"exit status {r.rc}; stderr {r.err[-1500:]!r}"
    if answer[:1] in "{[":
        actual = r.json()
        if actual is None or not matches(json_pattern(answer), actual):
            return f"expected {answer}; it answered {r.out[-1500:]!r}"
        return None
    if not any(text_matches(answer, line) for line in r.out.splitlines()):
        return f"expected a line {answer!r}; it printed {r.out[-1500:]!r}"
    return None


def first_id(value: Any) -> str | None:
    if isinstance(value, dict):
        if isinstance(value.get("id"), str):
            return value["id"]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = first_id(item)
            if found is not None:
                return found
    return None


# -- running ---------------------------------------------------------------------------------------
class Session:
    """The shells of a README reader: one working directory, background servers, the environment."""

    def __init__(self, work: Path, port: int, broker: str, datasets: Path) -> None:
        self.work = work
        self.port = port
        self.broker = broker
        self.datasets = datasets
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TVILLING_")}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["PYTHONUNBUFFERED"] = "1"
        self.server: subprocess.Popen[bytes] | None = None
        self.background: list[subprocess.Popen[bytes]] = []
        self.last_answer: Any = None
        self.logs = 0

    def substitute(self, text: str) -> str:
        text = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", rf"\g<1>:{self.port}", text)
        text = text.replace("mqtt://127.0.0.1:1883", self.broker)
        text = text.replace("../shared/datasets", str(self.datasets))
        if "<id>" in text:
            found = first_id(self.last_answer)
            assert found is not None, f"no id in the answer before: {self.last_answer!r}"
            text = text.replace("<id>", found)
        return text

    def run(self, cmd: Command) -> None:
        text = self.substitute(cmd.text)
        words = text.split()
        where = f"README.md:{cmd.line}: {cmd.text.splitlines()[0]}"
        if words[:1] == ["export"]:
            name, _, value = text.split(None, 1)[1].split("#")[0].strip().partition("=")
            if value.startswith("$(") and value.endswith(")"):  # NAME=$(command): what the command prints
                made = subprocess.run(["bash", "-c", value[2:-1]], cwd=self.work, env=self.env, capture_output=True,
                                      text=True, timeout=600)
                assert made.returncode == 0, f"{where}\nexit status {made.returncode}; stderr {made.stderr[-1500:]!r}"
                value = made.stdout.strip()
            self.env[name] = value
            return
        if words[:2] in (["tvilling", "serve"], ["tvilling", "plant"]):
            self.start(text, serve=words[1] == "serve", where=where)
            return
        deadline = time.monotonic() + (15 if _watches(text) else 0)
        while True:
            proc = subprocess.run(["bash", "-c", text], cwd=self.work, env=self.env, capture_output=True,
                                  text=True, timeout=600)
            result = Result(proc.returncode, proc.stdout, proc.stderr)
            problem = next((p for a in cmd.answers if (p := check(a, result)) is not None), None)
            if not cmd.answers and result.rc != 0:
                problem = f"exit status {result.rc}; stderr {result.err[-1500:]!r}"
            if problem is None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert problem is None, f"{where}\n{problem}\n{self.tail()}"
        self.last_answer = result.json()

    def start(self, text: str, *, serve: bool, where: str) -> None:
        if serve:
            self.stop_server()
        self.logs += 1
        log = (self.work / f"background-{self.logs}.log").open("wb")
        env = dict(self.env)
        if serve:
            env["TVILLING_PORT"] = str(self.port)  # `tvilling serve` listens on 8000 unless told
        proc = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=self.work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if serve:
            self.server = proc
            try:
                wait_healthy(f"http://127.0.0.1:{self.port}", timeout=60)
            except AssertionError:
                raise AssertionError(f"{where}: the server did not start\n{self.tail()}") from None
        else:
            self.background.append(proc)
            path = self.work / f"background-{self.logs}.log"
            deadline = time.monotonic() + 30
            while "Ctrl+C stops" not in path.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < deadline, f"{where}: did not start\n{self.tail()}"
                time.sleep(0.2)

    def stop_server(self) -> None:
        if self.server is not None:
            _stop(self.server)
            self.server = None

    def close(self) -> None:
        for proc in self.background:
            _stop(proc)
        self.stop_server()

    def tail(self) -> str:
        parts = []
        for path in sorted(self.work.glob("background-*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _watches(text: str) -> bool:
    """A plain GET with curl: safe to ask again."""
    return text.startswith("curl -s ") and not re.search(r"\s-(X|d|H)\b|\s-XPOST|\s-XPUT", text)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # Ctrl+C, as the reader stops it
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def session(tmp: Path) -> Iterator[Session]:
    data = datasets_dir()
    missing = [p for p in ("skab", "nab/data/realKnownCause", "cmapss/train_FD001.txt", "cmapss/test_FD001.txt")
               if not (data / p).exists()]
    if missing:
        pytest.skip(f"the README replays data sets not found under {data}: {', '.join(missing)} "
                    "(set TVILLING_DATASETS)")
    if not (shutil.which("mosquitto") or Path(MOSQUITTO).exists()):
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is not installed")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    work = tmp / "work"
    work.mkdir()
    (tmp / "broker").mkdir()
    with mosquitto(tmp / "broker") as broker:
        s = Session(work, free_port(), broker, data)
        try:
            yield s
        finally:
            s.close()


# -- tests -----------------------------------------------------------------------------------------
def test_the_scope_is_the_server_path_and_every_skip_says_why():
    found, skipped = blocks(README.read_text(encoding="utf-8"))
    assert len(found) >= 10 and all(b.commands for b in found)
    assert all(reason for _, reason in skipped)
    first = found[0].commands[0].text
    assert first.startswith("tvilling serve --example plant"), first
    answers = [a for b in found for c in b.commands for a in c.answers]
    assert len(answers) >= 12


def test_answer_patterns():
    assert matches(json_pattern('{"a": 1, "b": "x…z", …}'), {"a": 1, "b": "xyyz", "c": 3})
    assert not matches(json_pattern('{"a": 1}'), {"a": 1, "c": 3})
    assert not matches(json_pattern('{"a": 1, …}'), {"a": 2})
    assert matches(json_pattern('{"items": [{"id": "…", …}], …}'), {"items": [{"id": "7", "x": 1}], "next": None})
    assert not matches(json_pattern('{"items": [{"id": "…", …}]}'), {"items": []})
    assert not matches(json_pattern('{"n": 0}'), {"n": False})
    assert text_matches("accepted 5, rejected 0, …", "accepted 5, rejected 0, duplicates 0 in 0.1 s")
    assert not text_matches("accepted 5, rejected 0, …", "accepted 4, rejected 1, duplicates 0")
    assert check("error: held by …", Result(1, "", "replay\nerror: held by PID 7\n")) is None
    assert check("error: held by …", Result(0, "fine", "")) is not None


def test_the_readme_pasted_in_order_against_a_real_server(tmp_path):
    found, _ = blocks(README.read_text(encoding="utf-8"))
    with session(tmp_path) as s:
        for block in found:
            for cmd in block.commands:
                s.run(cmd)
