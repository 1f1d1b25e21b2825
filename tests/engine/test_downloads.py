"""Pulls against a loopback stand-in for the hub serving a tiny model's real files."""

import shutil
import threading
from collections import namedtuple
from dataclasses import replace

import pytest
import torch

from engine.errors import DiskFull, DownloadFailed, ModelUnavailable, PullCancelled
from engine.generation import downloads
from engine.generation.catalog import BUILTIN_MODELS
from engine.generation.downloads import pull_model, wanted_files
from engine.generation.pipelines import PipelineManager
from tests.hub_stand_in import HubServer

pytestmark = pytest.mark.sqlite_pass_only  # no database: once is enough

UNET = "unet/diffusion_pytorch_model.safetensors"
TINY_SD = next(spec for spec in BUILTIN_MODELS if spec.slug == "tiny-sd")
# The tiny model as if it were a hub model: same files, fetched from "test/tiny-sd".
HUB_SD = replace(TINY_SD, slug="hub-sd", repo_id="test/tiny-sd", tiny=False, inpaint_model=None)


class StubCatalog:
    def __init__(self, *specs):
        self.specs = {spec.slug: spec for spec in specs}

    def get(self, slug):
        return self.specs[slug]


@pytest.fixture
def hub(models_dir):
    with HubServer({"test/tiny-sd": models_dir / "tiny-sd"}) as stand_in:
        yield stand_in


def wanted_bytes(hub, repo="test/tiny-sd"):
    listed = dict(hub.files(repo))
    return sum(listed[path] for path in wanted_files(list(listed)))


def test_pull_reports_progress_and_the_folder_loads_and_generates(hub, tmp_path):
    events = []
    pipes = PipelineManager(StubCatalog(HUB_SD), tmp_path / "models", "cpu", torch.float32, 10**12,
                            allow_downloads=False)
    assert pipes.local_folder(HUB_SD) is None
    folder = pipes.pull("hub-sd", events=events.append, hub_url=hub.url)
    assert folder == tmp_path / "models" / "hub-sd" and pipes.local_folder(HUB_SD) == folder
    total = wanted_bytes(hub)
    assert events[-1].done == events[-1].total == total
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert {UNET, "model_index.json"} <= {e.file for e in events}
    assert all(e.rate >= 0 for e in events) and events[-1].seconds_left == 0
    assert not list(folder.rglob("*.part"))
    image = pipes.get("hub-sd").pipe("a fox", num_inference_steps=1, width=64, height=64,
                                     guidance_scale=5.0).images[0]
    assert image.size == (64, 64)


def test_the_old_progress_callback_still_gets_done_and_total(hub, tmp_path):
    calls = []
    pipes = PipelineManager(StubCatalog(HUB_SD), tmp_path, "cpu", torch.float32, 10**12)
    pipes.pull("hub-sd", lambda done, total: calls.append((done, total)), hub_url=hub.url)
    assert calls[-1] == (wanted_bytes(hub),) * 2


def test_a_dropped_connection_is_resumed_from_where_it_broke(hub, tmp_path):
    size = (hub.repos["test/tiny-sd"] / UNET).stat().st_size
    hub.drops[UNET] = 300_000
    pull_model(HUB_SD, tmp_path, hub_url=hub.url)
    unet = [s for s in hub.served if s.path == UNET]
    assert [(s.status, s.range, s.sent) for s in unet] == [(200, None, 300_000),
                                                           (206, "bytes=300000-", size - 300_000)]
    assert (tmp_path / "hub-sd" / UNET).read_bytes() == (hub.repos["test/tiny-sd"] / UNET).read_bytes()


def test_an_interrupted_pull_keeps_its_part_and_the_next_fetches_only_the_rest(hub, tmp_path):
    size = (hub.repos["test/tiny-sd"] / UNET).stat().st_size
    hub.drops[UNET] = 400_000
    with pytest.raises(DownloadFailed, match="models pull hub-sd` resumes it"):
        pull_model(HUB_SD, tmp_path, hub_url=hub.url, retries=0)
    part = tmp_path / "hub-sd" / (UNET + ".part")
    assert part.stat().st_size == 400_000 and not (tmp_path / "hub-sd" / "model_index.json").exists()
    before = {s.path for s in hub.served}
    hub.served.clear()
    pull_model(HUB_SD, tmp_path, hub_url=hub.url)
    assert [(s.range, s.sent) for s in hub.served if s.path == UNET] == [("bytes=400000-", size - 400_000)]
    assert not ({s.path for s in hub.served} & (before - {UNET}))  # finished files are not fetched again
    assert (tmp_path / "hub-sd" / UNET).stat().st_size == size and not part.exists()


def test_cancel_stops_between_chunks_and_a_later_pull_resumes(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "PROGRESS_EVERY_S", 0.0)
    cancel = threading.Event()

    def events(event):
        if event.file == UNET and event.done > 0:
            cancel.set()

    with pytest.raises(PullCancelled, match="resumes it"):
        pull_model(HUB_SD, tmp_path, hub_url=hub.url, events=events, cancel=cancel)
    part = tmp_path / "hub-sd" / (UNET + ".part")
    kept = part.stat().st_size
    assert 0 < kept < (hub.repos["test/tiny-sd"] / UNET).stat().st_size
    assert not (tmp_path / "hub-sd" / "model_index.json").exists()  # not taken for a pulled model
    hub.served.clear()
    seen = []
    pull_model(HUB_SD, tmp_path, hub_url=hub.url, events=seen.append)
    assert [s.range for s in hub.served if s.path == UNET] == [f"bytes={kept}-"]
    assert seen[0].done >= kept and seen[-1].done == wanted_bytes(hub)


def test_too_little_disk_is_a_clear_error_before_any_download(hub, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFull, match=r"pulling hub-sd needs 1\.\d MB more .* only 1.0 KB is free"):
        pull_model(HUB_SD, tmp_path, hub_url=hub.url)
    assert not [s for s in hub.served]  # the file list only: no file was fetched


def test_a_replacement_unet_lands_where_the_loader_swaps_it_in(models_dir, tmp_path):
    unet_repo = tmp_path / "lightning"
    unet_repo.mkdir()
    shutil.copy(models_dir / "tiny-sd" / UNET, unet_repo / "fast_unet.safetensors")
    spec = replace(HUB_SD, slug="hub-fast", unet_weights=("test/fast-unet", "fast_unet.safetensors"))
    with HubServer({"test/tiny-sd": models_dir / "tiny-sd", "test/fast-unet": unet_repo}) as hub:
        pipes = PipelineManager(StubCatalog(spec), tmp_path / "models", "cpu", torch.float32, 10**12,
                                allow_downloads=False)
        pipes.pull("hub-fast", hub_url=hub.url)
    assert (tmp_path / "models" / "hub-fast-unet" / "fast_unet.safetensors").is_file()
    assert pipes.get("hub-fast").pipe.unet is not None  # loaded offline, the UNet swapped from the pulled file


def test_offline_refuses_the_real_hub_and_unknown_repos_are_clear(hub, tmp_path):
    with pytest.raises(ModelUnavailable, match="offline"):
        pull_model(HUB_SD, tmp_path, hub_url="https://huggingface.co")
    with pytest.raises(ModelUnavailable, match="has no test/nothing"):
        pull_model(replace(HUB_SD, repo_id="test/nothing"), tmp_path, hub_url=hub.url)
    assert downloads.is_loopback("http://localhost:56100") and not downloads.is_loopback("https://huggingface.co")


def test_wanted_files_skip_variants_top_level_checkpoints_and_other_formats():
    listing = ["model_index.json", "flux1-schnell.safetensors", "ae.safetensors", "README.md",
               "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
               "text_encoder/model.fp16-00001-of-00002.safetensors", "text_encoder/model-00001-of-00002.safetensors",
               "text_encoder/model.safetensors.index.json", "vae_decoder/model.onnx", "tokenizer/vocab.json",
               "only_fp16/diffusion_pytorch_model.fp16.safetensors", "tokenizer/chat_template.jinja"]
    assert wanted_files(listing) == [
        "model_index.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model.safetensors.index.json", "tokenizer/vocab.json",
        "only_fp16/diffusion_pytorch_model.fp16.safetensors", "tokenizer/chat_template.jinja"]


def test_a_file_list_that_would_write_outside_the_folder_is_refused(hub, tmp_path):
    hub.files = lambda repo: [("model_index.json", 2), ("../../outside.json", 2)]
    with pytest.raises(DownloadFailed, match="unsafe file names"):
        pull_model(HUB_SD, tmp_path / "models", hub_url=hub.url)
    assert not hub.served and not (tmp_path / "outside.json").exists()
