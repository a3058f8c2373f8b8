from pathlib import Path

import pytest

from appliance.settings import Settings, load_settings


def test_defaults_are_usable_without_any_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APPLIANCE_CONFIG", str(tmp_path / "absent.toml"))
    s = load_settings()
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("appliance.db")
    assert s.ocr.lang == "vie"


def test_toml_file_then_environment_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(
        'commune_code = "19855"\ndata_dir = "/srv/appliance"\n'
        '[ocr]\nworkers = 3\n[scanner]\ndevice = "fujitsu:fi-7160"\n'
    )
    monkeypatch.setenv("APPLIANCE_CONFIG", str(cfg))
    s = load_settings()
    assert s.commune_code == "19855"  # a string: leading zeros of unit codes survive
    assert s.ocr.workers == 3
    assert s.scanner.device == "fujitsu:fi-7160"
    assert s.data_dir == Path("/srv/appliance")

    monkeypatch.setenv("APPLIANCE_OCR__WORKERS", "1")
    monkeypatch.setenv("APPLIANCE_COMMUNE_CODE", "01234")
    s = load_settings()
    assert s.ocr.workers == 1
    assert s.commune_code == "01234"
    assert s.scanner.device == "fujitsu:fi-7160"  # untouched by the environment


def test_invalid_value_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APPLIANCE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("APPLIANCE_OCR__WORKERS", "0")
    with pytest.raises(ValueError):
        Settings()


def test_settings_never_hold_a_pin() -> None:
    names = set(Settings.model_fields)
    for group in ("scanner", "camera", "ocr", "encode", "web"):
        names |= set(type(getattr(Settings(), group)).model_fields)
    assert not [n for n in names if "pin" in n.lower()]
