"""The library functions the ``tvilling`` commands call for what is more than parsing and printing
(model files, twin JSON Lines, data-set twins, examples, twin choice, shelving, forecasts), tested on a real
in-memory platform."""

from __future__ import annotations

import doctest
import importlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid, NotFound

DOCTESTED = ["tvilling.models.files", "tvilling.twins.jsonl", "tvilling.examples",
             "tvilling.analytics.binding.choose"]


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


@pytest.fixture
def platform():
    with build_platform(Settings(store="memory")) as p:
        yield p


def _nab_csv(path: Path, rows: int) -> Path:
    t0 = datetime(2020, 1, 1)
    lines = ["timestamp,value"] + [f"{t0 + timedelta(seconds=i)},{20.0 + i / 10}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- models/files -----------------------------------------------------------------------------------
def test_model_files_name_the_file_of_a_bad_document(tmp_path, platform) -> None:
    from tvilling.models import files as mf

    (tmp_path / "a.json").write_text(json.dumps({"@id": "dtmi:t:A;1", "@type": "Interface",
                                                 "@context": "dtmi:dtdl:context;3"}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps([
        {"@id": "dtmi:t:B;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"},
        {"@id": "dtmi:t:C;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
         "contents": [{"@type": "Nope", "name": "x"}]}]))
    docs = mf.read_documents(mf.json_files(mf.model_source(str(tmp_path))))
    assert docs.origins == [str(tmp_path / "a.json"), f"{tmp_path / 'sub' / 'b.json'}[0]",
                            f"{tmp_path / 'sub' / 'b.json'}[1]"]
    with pytest.raises(Invalid) as caught:
        mf.add_documents(platform.models, docs)
    assert caught.value.message.startswith(f"{tmp_path / 'sub' / 'b.json'}[1]: $")
    assert platform.models.list() == []  # nothing of a bad import is stored
    docs.documents.pop()
    assert mf.add_documents(platform.models, docs, validate_only=True) == ["dtmi:t:A;1", "dtmi:t:B;1"]
    assert platform.models.list() == []
    assert mf.add_documents(platform.models, docs) == ["dtmi:t:A;1", "dtmi:t:B;1"]


def test_model_sources_that_are_not_there_or_not_json_are_named(tmp_path) -> None:
    from tvilling.models import files as mf

    with pytest.raises(NotFound, match=r"'nope' is neither a file or folder nor a built-in model set \(datasets"):
        mf.model_source("nope")
    assert mf.model_source("plant").name == "plant"
    with pytest.raises(Invalid, match=r"no \.json files under"):
        mf.json_files(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(Invalid, match=re.escape(f"{bad}: not valid JSON")):
        mf.read_documents([bad])


# -- twins/jsonl ------------------------------------------------------------------------------------
def test_a_jsonl_line_that_is_not_json_is_named_by_its_number(tmp_path) -> None:
    from tvilling.twins.jsonl import count_items, read_items

    f = tmp_path / "t.jsonl"
    f.write_text('{"id": "a"}\n\n  \n{"id": "b"}\n{broken\n')
    assert count_items(f) == 3
    items = read_items(f)
    assert [next(items)["id"], next(items)["id"]] == ["a", "b"]
    with pytest.raises(Invalid, match=re.escape(f"{f}:5: not valid JSON")) as caught:
        next(items)
    assert caught.value.fields["line"] == 5


# -- ingest/datasets, analytics forecasts -------------------------------------------------------------
def test_replayed_series_get_their_twins_once_and_can_be_forecast(tmp_path, platform) -> None:
    from tvilling.analytics.binding.forecasts import forecast_series
    from tvilling.connect import replay as rp
    from tvilling.ingest.datasets import ensure_series_twins

    series = rp.load(_nab_csv(tmp_path / "cpu.csv", 50), "nab")
    assert ensure_series_twins(platform.models, platform.twins, series) == 1
    assert ensure_series_twins(platform.models, platform.twins, series) == 0
    twin = platform.twins.get(series[0].twin)
    assert (twin.model, twin.attributes["origin"]) == (series[0].model, series[0].origin)
    assert rp.replay(platform.pipeline, series).accepted == 50
    prop = next(iter(series[0].columns))
    fc = forecast_series(platform.history, twin.id, prop, horizon=3, points=20)
    assert (fc["twin"], fc["property"], fc["points_used"], len(fc["mean"])) == (twin.id, prop, 20, 3)
    assert fc["mean"][0] == pytest.approx(20.0 + 50 / 10, abs=0.05)  # the line goes on rising by 0.1 a step
    assert all(lo <= m <= hi for lo, m, hi in zip(fc["lower"], fc["mean"], fc["upper"], strict=True))


# -- examples ---------------------------------------------------------------------------------------
def test_the_plant_example_adds_to_the_configured_settings_and_seeds_once(platform) -> None:
    from tvilling.examples import ENGINE_RUL, example_settings, seed_example

    mine = {"name": "engine-rul", "model": "dtmi:x;1", "method": "zscore", "inputs": ["a"]}
    settings = example_settings(Settings(store="memory", analytics=[mine]), "plant")
    engine = [a for a in settings.analytics if a["name"] == "engine-rul"]
    assert engine == [mine] and engine != [ENGINE_RUL]  # a configured analytic of the same name is kept
    assert {"bearing-anomaly", "bearing-rul"} <= {a["name"] for a in settings.analytics}
    assert settings.alarm_rules
    with pytest.raises(NotFound, match="no example named 'pond'"):
        example_settings(settings, "pond")
    created = seed_example(platform, "plant")
    assert created > 4 and platform.twins.get("line-1-m01").model
    assert seed_example(platform, "plant") == 0


# -- analytics/binding/choose and remote ---------------------------------------------------------------
def test_twins_are_chosen_by_id_prefix_and_exclusion(platform) -> None:
    from tvilling.analytics.binding.choose import choose_twins, find_spec, model_twin_pages
    from tvilling.examples import seed_example

    seed_example(platform, "plant")
    bearing = platform.twins.get("line-1-m01-de").model
    pages = list(model_twin_pages(platform.twins, bearing))
    ids = [t for page in pages for t in page]
    assert "line-1-m01-de" in ids and all(platform.twins.get(t).model == bearing for t in ids)
    chosen = choose_twins(("extra",), "line-1-m0", ("line-1-m02",), lambda: model_twin_pages(platform.twins, bearing))
    assert chosen[0] == "extra" and "line-1-m01-de" in chosen
    assert not any(t.startswith("line-1-m02") for t in chosen)
    with pytest.raises(Invalid, match=r"name the twins.*\(--exclude left none\)"):
        choose_twins((), "line-1", ("line",), lambda: model_twin_pages(platform.twins, bearing))
    with pytest.raises(Invalid, match=r"name the twins: --twin ID \(repeatable\) and/or --prefix PREFIX$"):
        choose_twins((), None, (), lambda: iter([]))
    with pytest.raises(NotFound, match="no analytic named 'x' is configured; there are none"):
        find_spec(platform.analytics, "x")


def test_a_backtest_report_lists_its_figures_before_the_per_twin_detail() -> None:
    from tvilling.analytics.binding.remote import figures_first

    assert list(figures_first({"per_twin": [], "mae": 1.0, "n": 2})) == ["mae", "n", "per_twin"]
    assert figures_first([1, 2]) == [1, 2]
    assert figures_first({"version": 3}) == {"version": 3}


# -- decisions/alarms/shelving ----------------------------------------------------------------------------
def test_shelving_a_twin_covers_its_subtree_unless_told_not_to(platform) -> None:
    from tvilling.decisions.alarms import AlarmService
    from tvilling.decisions.alarms.shelving import covered_twins, shelve_twin
    from tvilling.examples import seed_example

    seed_example(platform, "plant")
    svc = AlarmService(platform.alarm_store)
    below = covered_twins(platform.twins, "line-1-m01")
    assert below[0] == "line-1-m01" and "line-1-m01-de" in below and "line-1-m02" not in below
    assert covered_twins(platform.twins, "line-1-m01", subtree=False) == ["line-1-m01"]
    with pytest.raises(NotFound):
        covered_twins(platform.twins, "nope")
    shelf = shelve_twin(svc, platform.twins, "line-1-m01", duration_s=60, reason="planned stop", actor="t")
    assert (shelf["twin"], shelf["twins"], shelf["reason"], shelf["actor"], shelf["active"], shelf["shelved"]) == \
        ("line-1-m01", below, "planned stop", "t", True, 0)
    assert [s.id for s in svc.shelves(active=True)] == [shelf["id"]]
