"""Background removal: local rembg models only, run through rembg itself on the tiny model."""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import numpy as np
import onnxruntime
import pooch
import pytest
from PIL import Image

from engine.errors import InvalidRequest, ModelUnavailable
from engine.tools.background import MODEL_URLS, BackgroundRemover, build_tiny_rembg_model

SIZE = (200, 150)
SQUARE = (60, 40, 140, 110)  # left, top, right, bottom
RED = (220, 30, 30)


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Any download attempt (pooch or a raw socket) fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("background removal tried to download or connect")

    monkeypatch.setattr(pooch, "retrieve", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    # rembg's own model folders point at an empty place, so nothing is found there by accident.
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "rembg-home"))
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "rembg-home"))


@pytest.fixture(scope="module")
def tiny_models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bg-models")
    build_tiny_rembg_model(folder / "rembg" / "u2net.onnx")
    return folder


@pytest.fixture
def remover(tiny_models_dir) -> BackgroundRemover:
    return BackgroundRemover(tiny_models_dir)


def red_square_on_white(mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", SIZE, "white")
    image.paste(RED, SQUARE)
    return image if mode == "RGB" else image.convert(mode)


def alpha_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.getchannel("A"), dtype=np.float32)


def assert_square_kept(cutout: Image.Image) -> None:
    assert cutout.mode == "RGBA"
    assert cutout.size == SIZE
    alpha = alpha_of(cutout)
    left, top, right, bottom = SQUARE
    inside = alpha[top + 5:bottom - 5, left + 5:right - 5]
    background = alpha.copy()
    background[top - 5:bottom + 5, left - 5:right + 5] = np.nan  # skip the resampled edge
    assert inside.min() > 200
    assert np.nanmean(background) < 10
    assert np.nanmax(background) < 60


def test_missing_model_names_path_and_download_in_the_log_only(tmp_path, caplog):
    """The admin learns where the file goes and where to get it (the log); a caller only that it's missing,
    without the server's paths."""
    remover = BackgroundRemover(tmp_path)
    assert not remover.available()
    assert remover.model_path == tmp_path / "rembg" / "u2net.onnx"
    with pytest.raises(ModelUnavailable) as caught:
        remover.remove(red_square_on_white())
    assert "not set up" in caught.value.message and str(tmp_path) not in caught.value.message
    assert str(remover.model_path) in caplog.text and MODEL_URLS["u2net"] in caplog.text


def test_missing_model_is_not_taken_from_rembg_home(tmp_path, monkeypatch):
    """A model in rembg's own home folder is ignored: only models_dir/rembg counts."""
    home = tmp_path / "u2net-home"
    build_tiny_rembg_model(home / "u2net.onnx")
    monkeypatch.setenv("U2NET_HOME", str(home))
    with pytest.raises(ModelUnavailable):
        BackgroundRemover(tmp_path / "models").remove(red_square_on_white())


def test_unknown_model_name_is_rejected(tmp_path):
    with pytest.raises(InvalidRequest):
        BackgroundRemover(tmp_path, model_name="sam")


def test_corrupt_model_file_is_unavailable(tmp_path):
    path = tmp_path / "rembg" / "u2netp.onnx"
    path.parent.mkdir()
    path.write_bytes(b"not an onnx model")
    remover = BackgroundRemover(tmp_path, model_name="u2netp")
    assert remover.available()
    with pytest.raises(ModelUnavailable, match="can't be loaded") as caught:
        remover.remove(red_square_on_white())
    assert str(tmp_path) not in caught.value.message


def test_tiny_model_cuts_out_red_square(remover):
    assert remover.available()
    cutout = remover.remove(red_square_on_white())
    assert_square_kept(cutout)
    left, top, right, bottom = SQUARE
    # The kept pixels keep their colour (rembg blends by alpha, so allow a step or two).
    kept = cutout.getpixel(((left + right) // 2, (top + bottom) // 2))[:3]
    assert all(abs(got - want) <= 3 for got, want in zip(kept, RED))


def test_remove_png_decodes_as_rgba(remover):
    data = remover.remove_png(red_square_on_white())
    assert data.startswith(b"\x89PNG")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG"
    assert decoded.mode == "RGBA"
    assert decoded.size == SIZE
    assert_square_kept(decoded)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK"])
def test_other_input_modes_are_converted(remover, mode):
    image = red_square_on_white(mode)
    cutout = remover.remove(image)
    if mode == "L":
        # In grey the red square is mid-grey: still far from white, so still the subject.
        assert cutout.mode == "RGBA" and cutout.size == SIZE
        left, top, right, bottom = SQUARE
        alpha = alpha_of(cutout)
        assert alpha[top + 5:bottom - 5, left + 5:right - 5].min() > 200
        assert alpha[:top - 5].mean() < 10
    else:
        assert_square_kept(cutout)


def test_transparent_input_stays_transparent(remover):
    """Hidden colour under transparency (often black) is not read as subject."""
    image = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    image.paste(RED + (255,), SQUARE)
    cutout = remover.remove(image)
    assert_square_kept(cutout)


def test_bad_input_is_invalid_request(remover):
    with pytest.raises(InvalidRequest):
        remover.remove(b"not an image")  # type: ignore[arg-type]


def test_session_created_once_and_reused(tiny_models_dir, monkeypatch):
    created = []
    real_session = onnxruntime.InferenceSession

    def counting_session(*args, **kwargs):
        created.append(args[0])
        return real_session(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counting_session)
    remover = BackgroundRemover(tiny_models_dir)
    image = red_square_on_white()
    threads = [threading.Thread(target=remover.remove, args=(image,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    remover.remove(image)
    assert created == [str(remover.model_path)]


def test_session_reads_local_file_and_runs_on_cpu(remover):
    remover.remove(red_square_on_white())
    session = remover._get_session()
    assert type(session).download_models() == str(remover.model_path)
    assert "CPUExecutionProvider" in session.inner_session.get_providers()


def test_tiny_model_build_is_deterministic(tmp_path):
    first = build_tiny_rembg_model(tmp_path / "a" / "u2net.onnx")
    second = build_tiny_rembg_model(tmp_path / "b" / "u2net.onnx")
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size < 4096
    # Rebuilding in place is atomic and leaves no temporary files behind.
    build_tiny_rembg_model(first)
    assert sorted(p.name for p in first.parent.iterdir()) == ["u2net.onnx"]


def test_tiny_model_has_u2net_interface(tmp_path):
    path = build_tiny_rembg_model(tmp_path / "u2net.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.shape == [1, 3, 320, 320]
    assert model_input.type == "tensor(float)"
    assert session.get_outputs()[0].shape == [1, 1, 320, 320]
