"""The memory check of the CPU stages: estimate from input sizes, compare with the container's limit."""

import logging

import pyarrow as pa
import pytest

from lead_core import resources
from lead_core.data.schema import RUN, write_table
from lead_core.errors import UserError
from lead_core.resources import GIB, MemoryEstimateError, PeakModel, check_memory, estimate_peak_bytes


@pytest.fixture
def model(monkeypatch):
    """A hand-checkable model: 1 GiB + 1 KiB per passage + 1 MiB per query + 100 B per run row."""
    monkeypatch.setitem(
        resources.PEAK_MODELS, "bm25", PeakModel(base=GIB, per_passage=1024, per_query=2**20, per_run_row=100)
    )
    monkeypatch.delenv("LEAD_MEMORY_CHECK", raising=False)
    monkeypatch.delenv("LEAD_MEMORY_REQUEST", raising=False)


def _limit(tmp_path, text: str) -> tuple[str]:
    path = tmp_path / "memory.max"
    path.write_text(text + "\n")
    return (str(path),)


def test_estimate_is_the_linear_model(model):
    assert estimate_peak_bytes("bm25", passages=2**20, queries=1024, run_rows=10) == GIB + GIB + GIB + 1000
    with pytest.raises(ValueError, match="no memory model for stage 'train'"):
        estimate_peak_bytes("train")


def test_over_the_hard_limit_is_an_error_naming_sizes_and_the_fix(model, tmp_path):
    limit = _limit(tmp_path, str(2 * GIB))
    # 1 GiB + 1M passages x 1 KiB = 2 GiB: fits exactly
    assert check_memory("bm25", passages=2**20, limit_files=limit) == 2 * GIB
    with pytest.raises(MemoryEstimateError) as err:
        check_memory("bm25", passages=2**20, queries=1, limit_files=limit)
    message = str(err.value)
    assert isinstance(err.value, UserError)
    assert "bm25: estimated peak memory 2.0 GiB for 1,048,576 passages and 1 queries" in message
    assert "memory limit is 2.0 GiB" in message
    assert "components/placement.py" in message and "LEAD_MEMORY_CHECK=warn" in message


def test_warn_mode_and_off_mode_start_anyway(model, tmp_path, monkeypatch, caplog):
    limit = _limit(tmp_path, str(GIB))
    monkeypatch.setenv("LEAD_MEMORY_CHECK", "warn")
    with caplog.at_level(logging.WARNING, logger="lead_core.resources"):
        assert check_memory("bm25", queries=10, limit_files=limit) == GIB + 10 * 2**20
    assert "memory limit is 1.0 GiB" in caplog.text
    monkeypatch.setenv("LEAD_MEMORY_CHECK", "off")
    assert check_memory("bm25", queries=10**9, limit_files=limit) == 0


def test_no_limit_and_a_small_request_only_warns(model, tmp_path, monkeypatch, caplog):
    no_limit = _limit(tmp_path, "max")
    monkeypatch.setenv("LEAD_MEMORY_REQUEST", "1536Mi")
    with caplog.at_level(logging.WARNING, logger="lead_core.resources"):
        assert check_memory("bm25", queries=512, limit_files=no_limit) == int(1.5 * GIB)  # = the request
        assert caplog.text == ""
        check_memory("bm25", queries=513, limit_files=no_limit)
    assert "more than the task's memory request 1536Mi" in caplog.text


def test_missing_cgroup_files_mean_no_limit(tmp_path):
    assert resources.hard_limit_bytes((str(tmp_path / "absent"),)) is None
    assert resources.hard_limit_bytes(_limit(tmp_path, "9223372036854771712")) is None  # cgroup v1 "none"
    assert resources.hard_limit_bytes(_limit(tmp_path, "17179869184")) == 16 * GIB


@pytest.mark.parametrize(
    "text, expected", [("16Gi", 16 * GIB), ("512Mi", 512 * 2**20), ("8G", 8 * 10**9), ("1000", 1000)]
)
def test_parse_quantity(text, expected):
    assert resources.parse_quantity(text) == expected


def test_parse_quantity_refuses_garbage():
    with pytest.raises(UserError, match="'lots'"):
        resources.parse_quantity("lots")


def test_run_rows_of_parquet_and_trec(tmp_path):
    table = pa.table(
        {
            "query_id": ["q1", "q1", "q2"],
            "doc_id": ["d1", "d2", "d1"],
            "rank": pa.array([1, 2, 1], pa.int32()),
            "score": pa.array([3.0, 2.0, 1.0], pa.float32()),
        }
    )
    write_table(table, tmp_path / "run.parquet", RUN)
    assert resources.run_rows(tmp_path / "run.parquet") == 3
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 3.0 bm25\n" * 10)  # 20 bytes a line
    assert resources.run_rows(tmp_path / "run.trec") == 200 // resources.TREC_RUN_BYTES_PER_LINE


def test_a_stage_over_the_limit_stops_before_it_writes(tmp_path, monkeypatch):
    """mine on a 3-row run under a fake 1 MiB cgroup limit: refused up front, no output written."""
    from lead_core import mine
    from lead_core.data.schema import QRELS

    monkeypatch.delenv("LEAD_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(resources, "CGROUP_LIMIT_FILES", _limit(tmp_path, str(2**20)))
    run = pa.table(
        {
            "query_id": ["q1", "q1", "q1"],
            "doc_id": ["d1", "d2", "d3"],
            "rank": pa.array([1, 2, 3], pa.int32()),
            "score": pa.array([3.0, 2.0, 1.0], pa.float32()),
        }
    )
    write_table(run, tmp_path / "run.parquet", RUN)
    qrels = pa.table({"query_id": ["q1"], "doc_id": ["d1"], "relevance": pa.array([1], pa.int32())})
    write_table(qrels, tmp_path / "qrels.parquet", QRELS)
    config = mine.Config(
        run=str(tmp_path / "run.parquet"),
        qrels=str(tmp_path / "qrels.parquet"),
        out_groups=str(tmp_path / "groups.parquet"),
        depth=3,
        num_negatives=1,
    )
    with pytest.raises(MemoryEstimateError, match=r"mine: estimated peak memory .* for 3 run rows"):
        mine.run(config)
    assert not (tmp_path / "groups.parquet").exists()
    monkeypatch.setattr(resources, "CGROUP_LIMIT_FILES", _limit(tmp_path, "max"))
    assert mine.run(config)["groups"] == 1
