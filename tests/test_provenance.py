"""unetlib.provenance: hardware description, the command line, and atomic JSON result files."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unetlib import provenance
from unetlib.provenance import (
    ISA_LIMIT_VARIABLES,
    command_line,
    cpu_bf16,
    cpu_name,
    hardware,
    replacing,
    write_atomic,
    write_json_atomic,
)

# ----------------------------------------------------------------------------------------------
# write_json_atomic


def test_writes_valid_json_and_returns_the_path(tmp_path):
    data = {"a": 1, "b": [1.5, None, "x"], "c": {"d": True}}
    got = write_json_atomic(str(tmp_path / "r.json"), data)
    assert isinstance(got, Path) and got == tmp_path / "r.json"
    text = got.read_text()
    assert json.loads(text) == data
    assert text.endswith("}\n")
    assert '\n  "a": 1' in text  # indented, keys in the given order
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')


def test_leaves_no_temporary_file_behind(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"x": 1})
    write_json_atomic(tmp_path / "r.json", {"x": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": 2}


@pytest.mark.parametrize("bad", [
    object(),                          # fails before anything is written
    {"first": list(range(2000)), "then": object()},  # fails half-way through the dump
    {"s": {1, 2}},
])
def test_failed_serialisation_keeps_the_old_file(tmp_path, bad):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"old": True})
    before = path.read_text()
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json_atomic(path, bad)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_failed_serialisation_creates_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "new.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_creates_missing_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "r.json"
    write_json_atomic(path, [1, 2])
    assert json.loads(path.read_text()) == [1, 2]


@pytest.mark.parametrize("value, expected", [
    (np.float32(1.5), 1.5),
    (np.int64(7), 7),
    (np.bool_(True), True),
    (np.array(2.5), 2.5),
    (torch.tensor(3), 3),
    (Path("runs") / "x", str(Path("runs") / "x")),
])
def test_numpy_torch_and_paths_are_converted(tmp_path, value, expected):
    write_json_atomic(tmp_path / "r.json", {"v": value})
    got = json.loads((tmp_path / "r.json").read_text())["v"]
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value", [np.arange(3), torch.arange(3)], ids=["numpy", "torch"])
def test_arrays_are_written_as_lists(tmp_path, value):
    write_json_atomic(tmp_path / "r.json", {"v": value})
    assert json.loads((tmp_path / "r.json").read_text()) == {"v": [0, 1, 2]}


def test_file_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "r.json", {"x": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------------------------
# write_atomic and replacing: the one atomic write of the package (results, checkpoints, book)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_write_atomic_replaces_the_file_whole(tmp_path, umask_022):
    path = tmp_path / "a" / "ckpt.pt"
    seen = []

    def write(f):
        seen.append(sorted(p.name for p in path.parent.iterdir()))
        f.write(b"new")

    assert write_atomic(str(path), write, fsync=True) == path
    assert path.read_bytes() == b"new"
    assert re.fullmatch(rf"\.ckpt\.pt\.{os.getpid()}\.\w+\.tmp", seen[0][0]), seen
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_write_that_fails_half_way_keeps_the_old_file_and_no_temp(tmp_path, error):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"half of the new")
        f.flush()
        raise error

    with pytest.raises(type(error)):
        write_atomic(path, write)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_write_that_fails_creates_no_file(tmp_path):
    with pytest.raises(ValueError):
        write_atomic(tmp_path / "new.pt", lambda f: (f.write(b"x"), int("no")))
    assert list(tmp_path.iterdir()) == []


def test_replacing_keeps_the_suffix_for_tools_that_want_one(tmp_path):
    with replacing(tmp_path / "02_train.ipynb", keep_suffix=True) as tmp:
        assert tmp.parent == tmp_path and tmp.is_file() and tmp.stat().st_size == 0
        parts = tmp.name.split(".")  # .STEM.PID.XXXX.ipynb, as book._remove_dead_partials reads
        assert parts[:3] == ["", "02_train", str(os.getpid())] and parts[-1] == "ipynb"
        assert len(parts) == 5
        tmp.write_text("{}")
    assert (tmp_path / "02_train.ipynb").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["02_train.ipynb"]


@pytest.mark.parametrize("directory", [False, True])
def test_an_interrupt_before_the_temporary_is_handed_over_removes_it(tmp_path, monkeypatch,
                                                                      directory):
    """SIGTERM (as KeyboardInterrupt) between creating the temporary and the ``with`` body."""
    def interrupted(*args):
        raise KeyboardInterrupt("signal 15")

    # the first call after the temporary exists: closing its descriptor / setting its mode
    monkeypatch.setattr(provenance.os, "chmod" if directory else "close", interrupted)
    with pytest.raises(KeyboardInterrupt), replacing(tmp_path / "page.ipynb",
                                                     directory=directory, keep_suffix=True):
        pytest.fail("the body must not run")
    assert list(tmp_path.iterdir()) == []


def test_replacing_a_folder(tmp_path, umask_022):
    with replacing(tmp_path / "vendor", directory=True) as tmp:
        assert tmp.is_dir() and tmp.stat().st_mode & 0o777 == 0o755
        (tmp / "a.js").write_text("x")
    assert (tmp_path / "vendor" / "a.js").read_text() == "x"
    with pytest.raises(RuntimeError), replacing(tmp_path / "other", directory=True) as tmp:
        (tmp / "b.js").write_text("y")
        raise RuntimeError("copy failed")
    assert [p.name for p in tmp_path.iterdir()] == ["vendor"]


def test_a_mode_copied_onto_the_temporary_is_kept(tmp_path, umask_022):
    src = tmp_path / "src.sh"
    src.write_text("#!/bin/sh\n")
    src.chmod(0o750)
    with replacing(tmp_path / "dst.sh") as tmp:
        shutil.copy2(src, tmp)
    assert (tmp_path / "dst.sh").stat().st_mode & 0o777 == 0o750

# ----------------------------------------------------------------------------------------------
# hardware, cpu_name, command_line


def test_hardware_keys_and_values():
    info = hardware()
    for key in ("platform", "machine", "cpu", "cpu_count", "python", "torch", "torch_threads"):
        assert key in info, key
    assert info["cpu_count"] == os.cpu_count()
    assert info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads() >= 1
    assert info["python"].count(".") == 2
    assert "device" not in info
    # which vector instructions, and whether bf16 is native: "AMD EPYC" alone names CPUs whose
    # bf16 training steps differ tenfold
    assert info["cpu_isa"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_bf16"] is cpu_bf16() and isinstance(info["cpu_bf16"], bool)
    json.dumps(info)  # serialisable as is


def test_cpu_bf16_is_what_onednn_says_and_false_without_it(monkeypatch):
    assert cpu_bf16() is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())

    def missing():
        raise RuntimeError("no oneDNN in this build")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", missing)
    assert cpu_bf16() is False


def test_kernels_held_below_the_cpu_are_recorded_and_retyped(monkeypatch):
    for name in ISA_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["bench.py", "--n", "3"])
    assert "cpu_isa_limits" not in hardware() and command_line() == "python bench.py --n 3"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert hardware()["cpu_isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2",
                                            "ATEN_CPU_CAPABILITY": "avx2"}
    # the command reruns the measurement as it was made: the variables first
    assert command_line() == ("ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 "
                              "python bench.py --n 3")


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_hardware_records_the_device_as_text(device):
    assert hardware(device)["device"] == "cpu"


def test_hardware_names_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU 80GB")
    info = hardware("cuda")
    assert info["gpu"] == "Fake GPU 80GB"
    assert "cuda" in info and info["device"] == "cuda"


def test_hardware_has_no_gpu_key_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = hardware()
    assert "gpu" not in info and "cuda" not in info


def test_cpu_name_is_text():
    name = cpu_name()
    assert isinstance(name, str) and name and name == name.strip()


def test_cpu_name_falls_back_without_proc_cpuinfo(monkeypatch):
    class Unreadable:
        def __init__(self, *args):
            pass

        def read_text(self):
            raise OSError("no /proc here")

    monkeypatch.setattr(provenance, "Path", Unreadable)
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    assert cpu_name() == "unknown"
    monkeypatch.setattr(provenance.platform, "processor", lambda: "arm64")
    assert cpu_name() == "arm64"


def test_command_line_of_a_script_is_relative_and_quoted(tmp_path, monkeypatch):
    script = tmp_path / "bench" / "run me.py"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "--out", "a b.json", "--n", "3"])
    cmd = command_line()
    assert cmd == "python 'bench/run me.py' --out 'a b.json' --n 3"
    assert shlex.split(cmd) == ["python", os.path.join("bench", "run me.py"), "--out",
                                "a b.json", "--n", "3"]


def test_command_line_names_no_path_of_the_machine(monkeypatch):
    from unetlib.paths import PROJECT_ROOT

    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.setattr(sys, "argv", [str(PROJECT_ROOT / "benchmarks" / "bench_x.py"), "--out",
                                      str(PROJECT_ROOT / "benchmarks" / "results" / "x.json"),
                                      "--data", str(PROJECT_ROOT.parent / "shared" / "data")])
    cmd = command_line()
    assert cmd == ("python benchmarks/bench_x.py --out benchmarks/results/x.json "
                   "--data ../shared/data")
    assert str(PROJECT_ROOT) not in cmd


def test_command_line_keeps_other_first_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["-c", "x=1"])
    assert command_line() == "python -c x=1"
    monkeypatch.setattr(sys, "argv", [])
    assert command_line() == "python"


def test_pid_alive_tells_a_killed_runs_leftover_from_a_live_one():
    import subprocess

    from unetlib.provenance import pid_alive

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert pid_alive(os.getpid()) and not pid_alive(done.pid)
    assert pid_alive(0) and pid_alive(-1)  # process groups: never treated as a dead run
