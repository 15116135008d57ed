"""Every way an FMU or its use can be wrong gets an error that names the FMU and what was wrong."""

from __future__ import annotations

import zipfile
from pathlib import Path

import fmu_build
import numpy as np
import pytest

from tvilling.core.errors import Invalid, NotFound
from tvilling.simulation.fmu import FmuModel
from tvilling.simulation.fmu_description import read_fmu


def test_an_fmu_without_a_binary_for_this_platform_names_the_ones_it_has(fmus: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    windows_only = fmu_build.rewrite(fmus["lag2"], tmp_path / "windows.fmu",
                                     keep=lambda name: not name.startswith("binaries/"),
                                     extra={"binaries/win64/lag2.dll": b"MZ"})
    with pytest.raises(Invalid) as caught:
        read_fmu(windows_only)
    message = caught.value.message
    assert "windows.fmu" in message and "linux64" in message
    assert caught.value.fields["available"] == ["win64", "C sources"]


def test_an_unsupported_fmi_version_is_named(fmus: dict[str, Path], tmp_path: Path) -> None:
    old = fmu_build.rewrite(fmus["lag2"], tmp_path / "old.fmu", keep=lambda name: name != "modelDescription.xml",
                            extra={"modelDescription.xml": fmu_build.LAG2_XML.replace('fmiVersion="2.0"',
                                                                                      'fmiVersion="1.0"')})
    with pytest.raises(Invalid, match=r"old\.fmu is FMI 1\.0, which is not supported \(supported: FMI 2\.0 and 3\.0\)"):
        read_fmu(old)


def test_a_file_that_is_not_an_fmu_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.fmu"
    text.write_text("not a zip")
    with pytest.raises(Invalid, match=r"notes\.fmu is not an FMU: it is not a ZIP archive"):
        read_fmu(text)
    empty = tmp_path / "empty.fmu"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(Invalid, match=r"empty\.fmu is not an FMU: it has no modelDescription.xml"):
        read_fmu(empty)
    garbled = tmp_path / "garbled.fmu"
    with zipfile.ZipFile(garbled, "w") as archive:
        archive.writestr("modelDescription.xml", "<fmiModelDescription")
    with pytest.raises(Invalid, match=r"garbled\.fmu is not an FMU: its modelDescription.xml is not XML"):
        read_fmu(garbled)
    with pytest.raises(NotFound, match="does not exist"):
        read_fmu(tmp_path / "missing.fmu")


def test_an_unknown_parameter_is_named_with_close_matches(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["oscillator3"]) as model, pytest.raises(Invalid) as caught:
        model.start(1, {"kk": np.array([1.0])})
    assert "oscillator3.fmu has no parameter named 'kk'; did you mean k?" in caught.value.message
    assert caught.value.fields["variable"] == "kk" and caught.value.fields["close_matches"] == ["k"]


def test_an_unknown_start_value_or_input_is_named(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["cooling"]) as model:
        with pytest.raises(Invalid, match="has no variable named 'temprature'; did you mean temperature"):
            model.start(1, {}, {"temprature": np.array([50.0])})
        run = model.start(1, {})
        try:
            with pytest.raises(Invalid, match="has no input named 'ambiant'; did you mean ambient"):
                model.step(run, 1.0, {"ambiant": np.array([1.0])})
            with pytest.raises(Invalid, match="has no variable named 'nothing'"):
                model.read(run, ["nothing"])
        finally:
            model.close(run)


def test_a_calculated_variable_cannot_be_given_a_start_value(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["lag2"]) as model, pytest.raises(Invalid, match=r"der\(x\) cannot be given a start value"):
        model.start(1, {}, {"der(x)": np.array([1.0])})


def test_values_must_have_one_entry_per_instance(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["lag2"]) as model:
        with pytest.raises(Invalid, match=r"the value of T has shape \(3,\); expected a scalar or \(2,\)"):
            model.start(2, {"T": np.array([1.0, 2.0, 3.0])})
        with pytest.raises(Invalid, match="at least 1"):
            model.start(0, {})


def test_an_interface_the_fmu_does_not_offer_is_refused(fmus: dict[str, Path]) -> None:
    with pytest.raises(Invalid, match=r"Cooling\.fmu does not offer model-exchange; it offers co-simulation"):
        FmuModel.open(fmus["cooling"], "model-exchange")


def test_an_error_the_fmu_reports_names_the_instance_and_the_call(fmus: dict[str, Path]) -> None:
    with FmuModel.open(fmus["lag2"]) as model, pytest.raises(Invalid) as caught:
        model.start(2, {"T": np.array([1.0, -1.0])})  # the model refuses a non-positive time constant
    assert "lag2.fmu (instance Lag[1]) failed to set T" in caught.value.message
