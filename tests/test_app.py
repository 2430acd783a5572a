"""app.py: the server's command line, and the warning when anyone who reaches it could use it."""

import pytest

import app


def test_auth_comes_from_the_flag_or_the_environment_where_ps_does_not_show_it(monkeypatch):
    monkeypatch.delenv("LIFT_AUTH", raising=False)
    assert app.parse_auth(app.parse_args([]).auth) is None
    assert app.parse_auth(app.parse_args(["--auth", "ann:secret"]).auth) == ("ann", "secret")
    monkeypatch.setenv("LIFT_AUTH", "bob:pa:ss")
    assert app.parse_auth(app.parse_args([]).auth) == ("bob", "pa:ss")
    for bad in ("nopassword", ":secret", "ann:"):
        with pytest.raises(SystemExit, match="USER:PASS"):
            app.parse_auth(bad)


def test_uploads_are_capped_at_100_mb_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("LIFT_MAX_FILE_SIZE", raising=False)
    assert app.parse_args([]).max_file_size == "100mb"
    assert app.parse_args(["--max-file-size", "1gb"]).max_file_size == "1gb"


@pytest.mark.parametrize("host, share, auth, warned", [
    ("127.0.0.1", False, None, False),
    ("localhost", False, None, False),
    ("0.0.0.0", False, None, True),
    ("127.0.0.1", True, None, True),
    ("0.0.0.0", True, ("ann", "secret"), False),
])
def test_an_exposed_server_without_a_password_is_warned_about(host, share, auth, warned):
    warning = app.exposure_warning(host, share, auth)
    assert (warning is not None) == warned
    if warned:
        assert "without a password" in warning and "LIFT_AUTH" in warning
        assert ("gradio.live" in warning) == share


def test_the_page_shows_the_warning_under_its_title(tmp_path):
    from lift_ui import build_app

    notice = app.exposure_warning("0.0.0.0", False, None)
    page = build_app(tmp_path / "runs", default_model="tiny", default_quant="none", notice=notice)
    assert any(notice in str(getattr(block, "value", "")) for block in page.blocks.values())
    quiet = build_app(tmp_path / "runs", default_model="tiny", default_quant="none")
    assert not any("without a password" in str(getattr(block, "value", "")) for block in quiet.blocks.values())


def test_a_server_with_an_allow_list_offers_and_loads_only_those_models(tmp_path, monkeypatch):
    from lift_core.config import TrainConfig
    from lift_core.errors import LiftError
    from lift_core.launcher import TrainingLauncher
    from lift_ui import build_app

    monkeypatch.delenv("LIFT_MODELS", raising=False)
    assert app.parse_args([]).models is None
    assert app.parse_args(["--models", "tiny, smollm2-135m"]).models == "tiny, smollm2-135m"
    page = build_app(tmp_path / "runs", default_model="smollm2-135m", default_quant="none", allowed_models=["tiny"])
    dropdown = next(block for block in page.blocks.values()
                    if getattr(block, "label", "") == "Model (from the list, a hub id or a local folder)")
    assert [choice[0] for choice in dropdown.choices] == ["tiny"] and dropdown.value == "tiny"
    assert not dropdown.allow_custom_value
    # The page's list is only a convenience: the launcher refuses any other model, whatever the request says.
    launcher = TrainingLauncher(tmp_path / "public-runs", allowed_models=["tiny"])
    with pytest.raises(LiftError, match="only offers the models tiny; 'some-org/huge-model' is not one of them"):
        launcher.start(TrainConfig(data="unused.csv", target="y", model="some-org/huge-model"))
    assert list((tmp_path / "public-runs").iterdir()) == []  # refused before any run folder
