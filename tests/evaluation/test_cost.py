"""Cost per setting (docs/spec.md §7): totals of benchmark records, checked by hand."""

import pytest

from aria.evaluation.cost import row_cost
from aria.io.tables import disk_usage, read_benchmark

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_read_benchmark_and_disk_usage(tmp_path):
    f = tmp_path / "b.tsv"
    f.write_text(
        HEADER
        + "3.50\t0:00:03\t120.5\t300\t100\t110\t0\t1\t50\t2.25\n"
        + "4.50\t0:00:04\t80\t300\t100\t110\t0\t1\t50\t2.75\n"
    )
    b = read_benchmark(f)
    assert (
        b["s"] == pytest.approx(4.0) and b["cpu_time"] == pytest.approx(2.5) and b["max_rss"] == pytest.approx(100.25)
    )
    assert "h:m:s" not in b
    assert read_benchmark(tmp_path / "missing.tsv") is None
    d = tmp_path / "store.zarr"
    (d / "a").mkdir(parents=True)
    (d / "a" / "0.0").write_bytes(b"x" * 1000)
    (d / ".zattrs").write_bytes(b"y" * 24)
    assert disk_usage(d) == 1024 and disk_usage(f) == f.stat().st_size and disk_usage(tmp_path / "none") == 0


def test_row_cost_totals():
    att = [{"s": 10.0, "cpu_time": 9.0, "max_rss": 500.0}, {"s": 2.0, "cpu_time": 1.0, "max_rss": 900.0}, None]
    tr = [{"s": 100.0, "cpu_time": 90.0, "max_rss": 300.0}]
    c = row_cost(att, tr, store_bytes=3_500_000, device="cuda")
    assert c["wall_s"] == 12.0 and c["train_wall_s"] == 100.0
    assert c["cpu_h"] == pytest.approx(100.0 / 3600)
    assert c["device_h"] == pytest.approx(112.0 / 3600) and c["device"] == "cuda"
    assert c["peak_rss_mb"] == 900.0 and c["disk_mb"] == pytest.approx(3.5)
    assert c["n_jobs"] == 3 and c["n_missing"] == 1
