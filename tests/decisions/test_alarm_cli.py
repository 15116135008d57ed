"""``tvilling alarms list|ack|clear|rules`` on the embedded store."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tvilling.cli import main
from tvilling.config import CONFIG_ENV, Settings
from tvilling.decisions.alarms import build_driver

from .test_alarm_engine import RULES, make_plant, report


def test_list_ack_clear_from_the_command_line(tmp_path) -> None:
    data = tmp_path / "data"
    p = make_plant(Settings(data_dir=data, alarm_rules=RULES))
    report(p, "B1", 0, temperature=96.0)
    build_driver(p).catch_up()
    p.close()
    cli = CliRunner()
    out = cli.invoke(main, ["alarms", "list", "--data-dir", str(data), "--twin", "B1", "--json"])
    assert out.exit_code == 0, out.output
    [alarm] = json.loads(out.output)
    assert (alarm["severity"], alarm["state"]) == ("critical", "active")
    text = cli.invoke(main, ["alarms", "list", "--data-dir", str(data), "--state", "active"])
    assert text.exit_code == 0 and text.output.count("active") == 1 and "affects M1, L1" in text.output
    copies = cli.invoke(main, ["alarms", "list", "--data-dir", str(data), "--state", "active", "--copies"])
    assert copies.exit_code == 0 and copies.output.count("active") == 3 and "(from B1)" in copies.output
    acked = cli.invoke(main, ["alarms", "ack", alarm["id"], "--data-dir", str(data), "--note", "on my way"])
    assert acked.exit_code == 0, acked.output
    assert json.loads(acked.output)["state"] == "acknowledged" and json.loads(acked.output)["actor"] == "cli"
    again = cli.invoke(main, ["alarms", "ack", alarm["id"], "--data-dir", str(data)])
    assert again.exit_code == 1 and "cannot be acknowledged" in again.output
    cleared = cli.invoke(main, ["alarms", "clear", alarm["id"], "--data-dir", str(data), "--actor", "ann"])
    assert cleared.exit_code == 0 and json.loads(cleared.output)["cleared_by"] == "ann"
    assert cli.invoke(main, ["alarms", "clear", "nope", "--data-dir", str(data)]).exit_code == 1
    none = cli.invoke(main, ["alarms", "list", "--data-dir", str(data), "--state", "active"])
    assert none.exit_code == 0 and "no alarms" in none.output


def test_shelve_a_twin_and_its_subtree_then_end_it_from_the_command_line(tmp_path) -> None:
    data = tmp_path / "data"
    p = make_plant(Settings(data_dir=data, alarm_rules=RULES))
    report(p, "B1", 0, temperature=96.0)
    build_driver(p).catch_up()
    p.close()
    cli = CliRunner()
    bad = cli.invoke(main, ["alarms", "shelve", "M1", "--data-dir", str(data), "--for", "forever",
                            "--reason", "planned stop"])
    assert bad.exit_code == 1 and "--for must be a duration" in bad.output
    missing = cli.invoke(main, ["alarms", "shelve", "M1", "--data-dir", str(data), "--for", "30m"])
    assert missing.exit_code == 2 and "--reason" in missing.output
    out = cli.invoke(main, ["alarms", "shelve", "M1", "--data-dir", str(data), "--for", "30m",
                            "--reason", "planned stop", "--actor", "eva"])
    assert out.exit_code == 0, out.output
    shelf = json.loads(out.output)
    assert (shelf["twin"], shelf["twins"], shelf["reason"], shelf["actor"], shelf["shelved"], shelf["active"]) == \
        ("M1", ["M1", "B1", "B2"], "planned stop", "eva", 1, True)
    listed = cli.invoke(main, ["alarms", "list", "--data-dir", str(data), "--json"])
    [alarm] = json.loads(listed.output)
    assert (alarm["twin"], alarm["shelved"], alarm["shelf"]) == ("B1", True, shelf["id"])
    assert [s["id"] for s in json.loads(cli.invoke(main, ["alarms", "shelves", "--data-dir", str(data),
                                                          "--active"]).output)] == [shelf["id"]]
    ended = cli.invoke(main, ["alarms", "unshelve", shelf["id"], "--data-dir", str(data)])
    assert ended.exit_code == 0 and json.loads(ended.output)["ended_by"] == "cli"
    [alarm] = json.loads(cli.invoke(main, ["alarms", "list", "--data-dir", str(data), "--json"]).output)
    assert (alarm["shelved"], alarm["shelf"]) == (False, None)
    again = cli.invoke(main, ["alarms", "unshelve", shelf["id"], "--data-dir", str(data)])
    assert again.exit_code == 1 and "over already" in again.output


def test_rules_are_checked_from_the_config_file(tmp_path, monkeypatch) -> None:
    good = tmp_path / "good.toml"
    monkeypatch.setenv(CONFIG_ENV, str(good))  # the CLI sets it from --config; restored afterwards
    good.write_text('[[alarm_rules]]\nname = "hot"\nmodel = "dtmi:tvilling:example:Bearing;1"\n'
                    'property = "temperature"\nkind = "threshold"\nseverity = "major"\nabove = 90\n')
    out = CliRunner().invoke(main, ["alarms", "rules", "--config", str(good)])
    assert out.exit_code == 0, out.output
    assert '"group": "hot"' in out.output and "1 alarm rule(s) OK" in out.output
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("above = 90", "above = 90\nclear = 99"))
    out = CliRunner().invoke(main, ["alarms", "rules", "--config", str(bad)])
    assert out.exit_code == 1 and "alarm rule 'hot'" in out.output and "clear" in out.output
