import pytest

from engine.generation.catalog import Catalog
from engine.generation.hardware import GIB, Machine, detect, recommend

pytestmark = pytest.mark.sqlite_pass_only  # no database: once is enough

CATALOG = Catalog(None)  # the built-in models need no database


def gpu(gib: float, disk_gb: float = 500) -> Machine:
    return Machine(accelerator="cuda", gpu_name="NVIDIA Test", gpu_memory_bytes=int(gib * GIB), cpu_count=16,
                   ram_bytes=64 * GIB, free_disk_bytes=int(disk_gb * 10**9))


def cpu(ram_gib: float = 32, disk_gb: float = 500) -> Machine:
    return Machine(accelerator="cpu", gpu_name=None, gpu_memory_bytes=0, cpu_count=8, ram_bytes=int(ram_gib * GIB),
                   free_disk_bytes=int(disk_gb * 10**9))


def test_a_24_gb_gpu_gets_flux_schnell():
    choice = recommend(gpu(23.6), CATALOG)  # what torch reports for an RTX 4090
    assert choice.spec.slug == "flux-schnell"
    assert choice.download_bytes == CATALOG.get("flux-schnell").download_bytes > 30 * 10**9
    assert "24 GB GPU" in choice.reason and "33.7 GB" in choice.reason


def test_a_12_gb_gpu_gets_sdxl_lightning():
    choice = recommend(gpu(11.7), CATALOG)
    assert choice.spec.slug == "sdxl-lightning" and "8-16 GB GPU" in choice.reason
    assert "NVIDIA Test with 12.6 GB" in choice.reason  # the machine summary, in decimal GB like the disk


def test_a_cpu_gets_dreamshaper_and_a_tiny_machine_nothing():
    choice = recommend(cpu(), CATALOG)
    assert choice.spec.slug == "dreamshaper-8-lcm" and "CPU" in choice.reason and "4.3 GB" in choice.reason
    assert "no GPU; 8 CPU cores" in cpu().summary()
    nothing = recommend(cpu(ram_gib=2), CATALOG)
    assert nothing.spec is None and "tiny offline models" in nothing.reason and nothing.download_bytes == 0


def test_little_disk_takes_the_largest_that_fits_or_none():
    smaller = recommend(gpu(24, disk_gb=20), CATALOG)
    assert smaller.spec.slug == "sdxl-lightning"
    assert "FLUX.1 [schnell] would suit this machine better but needs 33.7 GB" in smaller.reason
    assert "20.0 GB is free" in smaller.reason
    assert recommend(gpu(24, disk_gb=5), CATALOG).spec.slug == "dreamshaper-8-lcm"
    none = recommend(gpu(24, disk_gb=1), CATALOG)
    assert none.spec is None and "needs 4.3 GB and 1.0 GB is free" in none.reason


def test_every_recommendable_model_has_open_weights_and_a_size():
    from engine.generation.hardware import TIERS

    for slug, *_ in TIERS:
        spec = CATALOG.get(slug)
        assert spec.open_weights and spec.text_to_image and spec.download_bytes > 10**9


def test_detect_looks_at_this_machine(tmp_path):
    machine = detect(tmp_path / "not-yet" / "models")  # a models folder that doesn't exist yet
    assert machine.cpu_count >= 1 and machine.ram_bytes > 0 and machine.free_disk_bytes > 0
    assert machine.accelerator in ("cuda", "mps", "cpu") and machine.summary()
