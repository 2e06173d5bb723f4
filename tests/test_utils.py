"""medfound.utils: atomic writes, seeding, devices, config files, option checks (known answers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from medfound.errors import ConfigError
from medfound.utils import (
    atomic_path,
    atomic_torch_save,
    atomic_write_json,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_mapping,
    check_pair,
    derive_seed,
    make_rng,
    read_config_file,
    remove_stale_temporaries,
    resolve_device,
    resolve_inside,
    safe_filename,
    seed_entropy,
    torch_generator,
)


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.pt"
    atomic_torch_save({"w": torch.ones(2)}, target)
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert torch.load(target, weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_path_keeps_suffix_for_format_sniffing_writers(tmp_path):
    import nibabel as nib

    target = tmp_path / "vol.nii.gz"
    with atomic_path(target, keep_suffix=True) as tmp:
        assert tmp.name.endswith(".tmp.nii.gz")
        nib.save(nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4)), tmp)
    assert np.asarray(nib.load(target).dataobj).ravel().tolist() == list(range(8))


def test_killed_write_leaves_a_temporary_that_the_next_start_removes(tmp_path):
    # a real SIGKILL between writing the temporary and the rename
    code = (
        "import os, signal; from medfound.utils import atomic_path\n"
        f"with atomic_path({str(tmp_path / 'last.pt')!r}) as t:\n"
        "    t.write_bytes(b'x' * 100); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".last.pt.") and left[0].endswith(".tmp")
    (tmp_path / "keep.tmp").write_text("not ours")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp"]


def test_atomic_write_json_round_trip(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "b.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert p.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


@pytest.mark.parametrize(
    "value, expected",
    [("Domain1", "Domain1"), ("x/../../../../elsewhere/ESCAPED", "x_.._.._.._.._elsewhere_ESCAPED"),
     ("..", "_"), ("", "_"), (".hidden", "hidden"), ("a b\\c", "a_b_c")],
)
def test_safe_filename(value, expected):
    assert safe_filename(value) == expected
    assert "/" not in safe_filename(value) and safe_filename(value) not in (".", "..")


def test_resolve_inside(tmp_path):
    assert resolve_inside(tmp_path, "a", "b.json") == (tmp_path / "a" / "b.json").resolve()
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ConfigError, match="leaves the output folder"):
            resolve_inside(tmp_path, bad)


def test_seeding_scheme_known_answers():
    # the scheme: SeedSequence([seed & 0xFFFFFFFF, crc32(str(key)), ...]); ints and their text are one key
    assert seed_entropy(5, "fundus", 3) == [5, zlib.crc32(b"fundus"), zlib.crc32(b"3")]
    assert derive_seed(0, 3) == derive_seed(0, "3")
    assert derive_seed(0, "a") == int(np.random.SeedSequence([0, zlib.crc32(b"a")]).generate_state(1)[0])
    assert make_rng(2**32 + 7, "x").random() == make_rng(7, "x").random()  # low 32 bits of the seed
    # the same stream as np.random.default_rng with the same entropy list
    assert make_rng(1, "Domain2").random() == np.random.default_rng([1, zlib.crc32(b"Domain2")]).random()
    a = torch.rand(3, generator=torch_generator(4, "t", 1))
    b = torch.rand(3, generator=torch_generator(4, "t", 1))
    c = torch.rand(3, generator=torch_generator(4, "t", 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="train.device 'tpu:7'"):
        resolve_device("tpu:7", what="train.device")
    with pytest.raises(ConfigError, match="device name"):
        resolve_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            resolve_device("cuda")


def test_read_config_file(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"a": 1}))
    (tmp_path / "b.yaml").write_text("a: 2\nb: [1, 2]\n")
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "list.json").write_text("[1]")
    assert read_config_file(tmp_path / "a.json") == {"a": 1}
    assert read_config_file(tmp_path / "b.yaml") == {"a": 2, "b": [1, 2]}
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        read_config_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match=r"list\.json must hold a dict"):
        read_config_file(tmp_path / "list.json", expect=dict)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / os.path.join("missing.json"))


def test_option_checks():
    assert check_int(3.0, "n") == 3 and isinstance(check_int(3.0, "n"), int)
    assert check_int(None, "n", allow_none=True) is None
    for bad in ("two", True, 2.5, float("nan"), 0):
        with pytest.raises(ConfigError, match=r"^n must be an integer >= 1, got"):
            check_int(bad, "n", low=1)
    assert check_float(1, "lr", low=0, low_open=True) == 1.0
    for bad in ("0.01", -0.1, 0, float("inf"), None):
        with pytest.raises(ConfigError, match=r"^lr must be a number > 0, got"):
            check_float(bad, "lr", low=0, low_open=True)
    assert check_choice("mse", ("cosine", "mse"), "loss") == "mse"
    with pytest.raises(ConfigError, match=r"loss must be one of \['cosine', 'mse'\], got 'l1'"):
        check_choice("l1", ("cosine", "mse"), "loss")
    with pytest.raises(ConfigError, match="got \\[1\\]"):
        check_choice([1], {"a"}, "x")
    assert check_bool(False, "b") is False
    with pytest.raises(ConfigError, match="true or false"):
        check_bool("true", "b")
    assert check_pair([1, 2], "r", integer=True) == (1, 2)
    with pytest.raises(ConfigError, match=r"min <= max"):
        check_pair([0.5, 0.25], "r")
    with pytest.raises(ConfigError, match=r"r\[1\] must be a number >= 0 and <= 1, got 2"):
        check_pair([0.5, 2], "r", low=0, high=1)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['bach_size'\] in trainer"):
        check_mapping({"bach_size": 4}, "trainer", known=("batch_size",))
