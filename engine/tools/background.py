"""Background removal with rembg, from local model files only.

Where the model files go
------------------------
The remover looks for exactly one file::

    <models_dir>/rembg/<model_name>.onnx      e.g. models/rembg/u2net.onnx

Nothing is ever downloaded. On a machine with internet access, fetch the file
from rembg's release page and copy it there under that name:

    u2net              https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx  (~176 MB, default)
    u2netp             https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx  (~4.7 MB, fast)
    isnet-general-use  https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-general-use.onnx

(see ``MODEL_URLS`` for every supported name). The model runs through rembg's
own session class and ``rembg.remove``, so results are the same as with the
rembg CLI.

How downloads are prevented
---------------------------
rembg sessions resolve their file in ``download_models``, which falls back to
``pooch.retrieve`` when the file is not in rembg's home folder (``U2NET_HOME``
/ ``REMBG_HOME`` / ``~/.u2net``). Pointing those environment variables at our
folder would work only while nobody else touches the process-wide environment
and only while rembg keeps its folder layout. Instead each session class is
subclassed with a ``download_models`` that just returns our file's path, so
pooch is never reached, whatever the environment says. The file's existence
is checked first, and a missing file is a ``ModelUnavailable`` error.

The tiny test model
-------------------
``build_tiny_rembg_model`` writes a few-hundred-byte ONNX graph with u2net's
interface (float32 [1,3,320,320] in, [1,1,320,320] mask out) and fixed
weights: a pixel is foreground when it is far from white (saturated or dark),
so a coloured object on a white background is cut out. It lets tests and
demos run the whole rembg path without the real 176 MB model.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from PIL import Image, ImageChops

from engine.errors import InvalidRequest, ModelUnavailable
from engine.generation import png

log = logging.getLogger(__name__)

_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"

# Single-file, local rembg models whose session returns one mask. The value is
# the upstream download; save it as ``<models_dir>/rembg/<name>.onnx``.
MODEL_URLS: dict[str, str] = {
    "u2net": f"{_RELEASES}/u2net.onnx",
    "u2netp": f"{_RELEASES}/u2netp.onnx",
    "u2net_human_seg": f"{_RELEASES}/u2net_human_seg.onnx",
    "silueta": f"{_RELEASES}/silueta.onnx",
    "isnet-general-use": f"{_RELEASES}/isnet-general-use.onnx",
    "isnet-anime": f"{_RELEASES}/isnet-anime.onnx",
    "birefnet-general": f"{_RELEASES}/BiRefNet-general-epoch_244.onnx",
    "birefnet-general-lite": f"{_RELEASES}/BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
}

DEFAULT_MODEL = "u2net"
_FIELD = "input_image"


class BackgroundRemover:
    """Cuts the subject out of an image with a local rembg model.

    Construction is cheap and never touches the model; the onnxruntime session
    is created on first use, once, and shared by all threads (onnxruntime
    sessions are safe to run concurrently).
    """

    def __init__(self, models_dir: Path, model_name: str = DEFAULT_MODEL):
        if model_name not in MODEL_URLS:
            raise InvalidRequest(
                f"unknown background removal model {model_name!r}; "
                f"choose one of: {', '.join(MODEL_URLS)}",
                field="model",
            )
        self.model_name = model_name
        self._model_path = Path(models_dir) / "rembg" / f"{model_name}.onnx"
        self._session = None
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        """Where the model file must be: ``<models_dir>/rembg/<model_name>.onnx``."""
        return self._model_path

    def available(self) -> bool:
        return self._model_path.is_file()

    def remove(self, image: Image.Image) -> Image.Image:
        """Return an RGBA copy of ``image`` (same size) with a transparent background."""
        from rembg import remove as rembg_remove

        model_input, original_alpha = _prepare_input(image)
        cutout = rembg_remove(model_input, session=self._get_session())
        if cutout.mode != "RGBA":
            cutout = cutout.convert("RGBA")
        if original_alpha is not None:
            # Pixels that were already transparent stay transparent.
            cutout.putalpha(ImageChops.multiply(cutout.getchannel("A"), original_alpha))
        return cutout

    def remove_png(self, image: Image.Image) -> bytes:
        """Same as ``remove``, encoded as PNG bytes."""
        return png.encode(self.remove(image))

    def load(self) -> None:
        """Create the session now, so a missing or broken model file is reported before work is queued."""
        self._get_session()

    def _get_session(self):
        if self._session is None:
            with self._lock:
                # Checked again under the lock: another thread may have built it meanwhile.
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    def _create_session(self):
        if not self.available():
            # Where the file goes is for the server's admin (the log, the admin page), not for every caller.
            log.warning("background removal model file not found: %s. Download %s on a machine with internet "
                        "access and save it as %s (nothing is downloaded automatically).", self._model_path,
                        MODEL_URLS[self.model_name], self._model_path)
            raise ModelUnavailable(f"background removal is not set up on this server: its model file "
                                   f"({self.model_name}) is missing; the server log says where it goes")
        from rembg.sessions import sessions as rembg_sessions

        session_class = _local_session_class(rembg_sessions[self.model_name], self._model_path)
        try:
            return session_class(self.model_name, _session_options(), providers=_providers())
        except Exception as exc:  # a truncated or wrong file: not usable, like a missing one (logged in full)
            log.warning("could not load background removal model %s: %s", self._model_path, exc)
            raise ModelUnavailable(f"background removal is not set up on this server: its model file "
                                   f"({self.model_name}) can't be loaded; the server log says why") from exc


def _local_session_class(base: type, model_path: Path) -> type:
    """rembg's session class for the model, reading ``model_path`` and never downloading.

    rembg's ``BaseSession.__init__`` opens ``cls.download_models(...)``; this
    override returns the local path, so pooch's download code is never reached.
    Everything else (pre-processing, ``predict``) is rembg's own.
    """

    def download_models(cls, *args, **kwargs) -> str:
        return str(model_path)

    return type(f"Local{base.__name__}", (base,), {"download_models": classmethod(download_models)})


def _providers() -> list[str]:
    # CUDA when this onnxruntime build has it, else CPU. rembg's own default
    # would also pick OpenVINO/ROCm, which we do not test.
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session_options():
    # Same thread settings rembg's new_session applies: honour OMP_NUM_THREADS.
    import onnxruntime as ort

    options = ort.SessionOptions()
    # onnxruntime's pool threads spin between ops by default: on a box that also runs the diffusion pipelines
    # and the API they take the cores those need, and under that load a cut-out waits on them in turn.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        options.inter_op_num_threads = int(threads)
        options.intra_op_num_threads = int(threads)
    return options


def _prepare_input(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """An RGB image for the model and the input's own alpha channel (None if opaque).

    Transparent areas are flattened onto white: their hidden colour is often
    black, which a model would read as subject. The RGB image is a fresh one
    without EXIF, so rembg does not rotate it and the output keeps the input's
    size (callers apply EXIF orientation when decoding, see engine.inputs).
    """
    if not isinstance(image, Image.Image):
        raise InvalidRequest("the input must be an image", field=_FIELD)
    if image.width < 1 or image.height < 1:
        raise InvalidRequest("the input image is empty", field=_FIELD)
    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    try:
        source = image.convert("RGBA" if has_alpha else "RGB")
    except (ValueError, OSError) as exc:
        raise InvalidRequest(f"unsupported image mode {image.mode!r}", field=_FIELD) from exc
    canvas = Image.new("RGB", image.size, (255, 255, 255))
    if has_alpha:
        alpha = source.getchannel("A")
        canvas.paste(source, mask=alpha)
        return canvas, alpha
    canvas.paste(source)
    return canvas, None


# --- tiny offline model ------------------------------------------------------

# rembg's U2netSession feeds (pixel / image max - mean) / std per channel, at 320x320.
_U2NET_MEAN = (0.485, 0.456, 0.406)
_U2NET_STD = (0.229, 0.224, 0.225)
_TINY_SIZE = 320
# A pixel whose darkest channel is below this is foreground; GAIN sets how sharp the edge is.
_TINY_THRESHOLD = 0.75
_TINY_GAIN = 16.0
_TINY_OPSET = 13  # ReduceMin still takes ``axes`` as an attribute; any onnxruntime >= 1.8 runs it
_TINY_IR_VERSION = 7


def build_tiny_rembg_model(path: Path) -> Path:
    """Write a tiny u2net-compatible ONNX model to ``path`` and return the path.

    Graph: undo rembg's normalisation (grouped 1x1 conv: x * std + mean), take
    the darkest channel (1 for white, ~0 for any saturated or dark colour),
    then ``sigmoid(gain * (threshold - darkest))``. Input ``input.1`` float32
    [1,3,320,320], output ``d0`` [1,1,320,320], like u2net's first output.
    A uniformly coloured image has no subject: rembg's min-max scaling of the
    mask then divides by zero and the result is fully transparent.
    The weights are fixed, so every build is byte-identical. The file is
    written under a temporary name and renamed, so readers never see half a model.
    """
    import onnx
    from onnx import TensorProto, helper

    size = _TINY_SIZE
    initializers = [
        helper.make_tensor("denorm_w", TensorProto.FLOAT, [3, 1, 1, 1], list(_U2NET_STD)),
        helper.make_tensor("denorm_b", TensorProto.FLOAT, [3], list(_U2NET_MEAN)),
        helper.make_tensor("score_w", TensorProto.FLOAT, [1, 1, 1, 1], [-_TINY_GAIN]),
        helper.make_tensor("score_b", TensorProto.FLOAT, [1], [_TINY_GAIN * _TINY_THRESHOLD]),
    ]
    nodes = [
        helper.make_node("Conv", ["input.1", "denorm_w", "denorm_b"], ["rgb"], name="denormalize",
                         group=3, kernel_shape=[1, 1]),
        helper.make_node("ReduceMin", ["rgb"], ["darkest"], name="darkest_channel", axes=[1], keepdims=1),
        helper.make_node("Conv", ["darkest", "score_w", "score_b"], ["logit"], name="score",
                         kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["logit"], ["d0"], name="mask"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_rembg",
        inputs=[helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        outputs=[helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, size, size])],
        initializer=initializers,
    )
    model = helper.make_model(graph, producer_name="imagestudio-tiny-rembg",
                              opset_imports=[helper.make_opsetid("", _TINY_OPSET)])
    model.ir_version = _TINY_IR_VERSION
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name in the same folder: concurrent builders never share it,
    # and the rename is atomic on one filesystem.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; a model file is meant to be shared
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
