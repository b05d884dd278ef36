"""The driver reads a checkpoint's header without importing torch (its memory stays small)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import stam_core.model
from stam_core.checkpoint_header import read_checkpoint_header, read_info


def test_header_read_does_not_import_torch(tiny_weights):
    code = textwrap.dedent(f"""
        import sys
        from stam_core.checkpoint_header import read_info
        info = read_info({str(tiny_weights)!r})
        assert "torch" not in sys.modules, "torch was imported"
        print(info.num_frames, info.num_classes, info.embed_dim, info.name)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    full = stam_core.model.read_checkpoint_info(tiny_weights)  # the torch path agrees
    assert done.stdout.split() == [str(full.num_frames), str(full.num_classes), str(full.embed_dim), full.name]


def test_header_equals_the_full_read(tiny_weights):
    assert read_checkpoint_header(tiny_weights) == stam_core.model.read_checkpoint_info(tiny_weights)


def test_official_layout_without_config(tmp_path):
    """An official checkpoint is a torch.save'd {"model": state_dict} with nothing else."""
    import torch

    model = stam_core.model.create_model("stam_8")
    state = {stam_core.model.module_to_official(k): v for k, v in model.state_dict().items()}
    path = tmp_path / "official.pth"
    torch.save({"model": state}, path)
    info = read_checkpoint_header(path)
    assert (info.num_frames, info.num_classes, info.embed_dim, info.name) == (8, 400, 768, "official")
    assert info == stam_core.model.read_checkpoint_info(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04broken"])
def test_unreadable_files_go_to_the_torch_path(tmp_path, content):
    from stam_core.errors import CheckpointError

    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    assert read_checkpoint_header(path) is None
    with pytest.raises(CheckpointError):
        read_info(path)


def test_official_key_patterns_are_the_models_keys():
    import re

    from stam_core.checkpoint_header import OFFICIAL_KEY_PATTERNS

    model = stam_core.model.create_model("stam_tiny")
    official = {stam_core.model.module_to_official(k) for k in model.state_dict()}
    assert {re.sub(r"\.\d+\.", ".N.", k, count=1) for k in official} == OFFICIAL_KEY_PATTERNS


@pytest.mark.parametrize("damage", ["drop block key", "drop a whole block", "unlike block"])
def test_a_damaged_checkpoint_fails_on_the_driver_naming_what_is_wrong(tmp_path, tiny_weights, damage):
    """Not only the header's few keys: a checkpoint the workers could not load fails before any work."""
    import torch

    from stam_core.errors import CheckpointError

    checkpoint = torch.load(tiny_weights, weights_only=False)
    state = checkpoint["model"]
    if damage == "drop block key":
        del state["blocks.1.norm1.weight"]
    elif damage == "drop a whole block":
        for key in [k for k in state if k.startswith("blocks.1.")]:
            del state[key]
    else:
        state["blocks.1.norm1.weight"] = torch.zeros(3)
    path = tmp_path / "damaged.pth"
    torch.save(checkpoint, path)
    assert read_checkpoint_header(path) is None  # the torch path decides, and names the problem
    with pytest.raises(CheckpointError, match="damaged.pth"):
        read_info(path)


def test_a_file_the_header_declines_is_hashed_once(tmp_path, tiny_weights, monkeypatch):
    """The torch path reuses the header's hash: a multi-GB checkpoint is not read twice."""
    import torch

    import stam_core.weights

    path = tmp_path / "legacy.pth"  # torch's pre-1.6 format: not a zip, declined, yet a good checkpoint
    torch.save(torch.load(tiny_weights, weights_only=False), path, _use_new_zipfile_serialization=False)
    hashed = []
    real = stam_core.weights.file_sha256
    monkeypatch.setattr(stam_core.weights, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert read_checkpoint_header(path) is None
    hashed.clear()
    info = read_info(path)
    assert info.num_frames == 8 and len(hashed) == 1, hashed
