"""The fault family of an anomaly, named online on a twin: a classifier trained on labelled SKAB files
(all but one), then a held-out file replayed through the platform."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from shared_data import datasets_dir
from tvilling.app import build_platform
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.connect import replay as rp
from tvilling.models.builtin import builtin_documents

SKAB = datasets_dir() / "skab"
INPUTS = ["accelerometer1RMS", "accelerometer2RMS", "current", "pressure", "temperature", "thermocouple",
          "voltage", "volumeFlowRateRMS"]

pytestmark = pytest.mark.skipif(not (SKAB / "valve2").is_dir(), reason=f"SKAB not found under {SKAB}")


def test_fault_family_is_named_while_an_anomaly_lasts(tmp_path):
    held_out = sorted((SKAB / "valve2").glob("*.csv"))[0]
    train = tmp_path / "skab"
    for family in ("valve1", "valve2"):
        (train / family).mkdir(parents=True)
        for f in sorted((SKAB / family).glob("*.csv")):
            if f != held_out:
                (train / family / f.name).symlink_to(f)
    out = tmp_path / "family.json"
    r = CliRunner().invoke(main, ["analytics", "family-train", "--skab", str(train), "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["segments"] == 19 and len(doc["scales"]) == 8 and doc["horizon"] == 15

    spec = {"name": "pump-anomaly", "model": "dtmi:tvilling:datasets:SkabTestbed", "method": "mewma",
            "inputs": INPUTS, "train_rows": 400, "params": {"family_classifier": str(out)}}
    with build_platform(Settings(store="memory", analytics=[spec])) as p:
        p.models.add(builtin_documents("datasets"))
        series = rp.load(held_out, "skab")
        for s in series:
            p.twins.put(s.twin, {"model": s.model})
        rp.replay(p.pipeline, series)
        twin = series[0].twin
        flags = [pt.text for pt in p.history.range(twin, "anomaly", 0, 2**62, limit=100_000)]
        assert "true" in flags  # the fault was detected
        named = [json.loads(pt.text) for pt in p.history.range(twin, "fault_family", 0, 2**62, limit=100_000)]
        assert named and set(named) <= {"valve1", "valve2"}  # named once per anomaly, from its first rows
        marker = p.twins.get(twin).reported["analytics"]["pump-anomaly"]
        assert 0.0 <= marker["fault_confidence"] <= 1.0
        assert p.analytics_registry.versions("pump-anomaly")[0].scope == twin


def test_a_bad_classifier_file_is_named_in_the_error(tmp_path):
    from tvilling.core.errors import Invalid

    bad = tmp_path / "family.json"
    bad.write_text("{}")
    spec = {"name": "pump-anomaly", "model": "dtmi:tvilling:datasets:SkabTestbed", "method": "mewma",
            "inputs": INPUTS, "train_rows": 10, "params": {"family_classifier": str(bad)}}
    with build_platform(Settings(store="memory", analytics=[spec])) as p:
        p.models.add(builtin_documents("datasets"))
        p.twins.put("pump", {"model": "dtmi:tvilling:datasets:SkabTestbed;1"})
        from tvilling.analytics.binding.runners import AnomalyRunner

        runner = AnomalyRunner(p.analytics.spec("pump-anomaly"), "pump")
        with pytest.raises(Invalid, match=r"family\.json"):
            runner.fit(np.random.default_rng(0).normal(size=(20, 8)))
