"""The STAM model: parity with the official implementation, checkpoint loading, input checks.

The ViT-B checkpoint is generated once per module by the recipe in
fixtures/reference_checkpoint.py; its fp32 outputs are computed once and shared (a ViT-B
forward pass takes seconds on a CPU). Everything else uses the small stam_tiny configuration.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import stam_core.model
from stam_core import CheckpointError
from stam_core import model as model_mod
from stam_core.model import precision

FIXTURES = Path(__file__).parent / "fixtures"


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.fixture(scope="module")
def ref():
    """fixtures/reference_checkpoint.py, imported by path (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("reference_checkpoint", FIXTURES / "reference_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def expected():
    data = json.loads((FIXTURES / "stam16_seed0.json").read_text())
    return SimpleNamespace(logits=torch.tensor(data["logits"]), features=torch.tensor(data["features"]),
                           frames=data["frames"], seed=data["seed"], batch=data["batch"])


@pytest.fixture(scope="module")
def stam16(ref, expected, tmp_path_factory):
    """The reference 16-frame checkpoint, its model (fp32) and its fp32 outputs on the reference clip.

    Logits for the whole reference batch, features for its first clip only (each ViT-B
    forward pass costs seconds here; clips in a batch are independent).
    """
    state = ref.state_dict(expected.frames, expected.seed)
    path = tmp_path_factory.mktemp("stam16") / "stam16_seed0.pth"
    torch.save({"model": state}, path)
    model = stam_core.model.load_model(path, precision="fp32")
    clips = torch.from_numpy(ref.clip(expected.frames, expected.seed, expected.batch))
    clips = clips.reshape(expected.batch, expected.frames, 3, 224, 224)  # official order: frame b*T + t
    return SimpleNamespace(path=path, state=state, model=model, clips=clips,
                           logits=model(clips), features=model.forward_features(clips[:1]))


@pytest.fixture()
def tiny_model():
    torch.manual_seed(0)
    return stam_core.model.create_model("stam_tiny")


def tiny_clips(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 8, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def official_state(model: stam_core.model.STAM) -> dict[str, torch.Tensor]:
    return {model_mod.module_to_official(k): v.clone() for k, v in model.state_dict().items()}


# --- parity with the official implementation --------------------------------------------

def test_fp32_logits_and_features_match_official(stam16, expected):
    assert stam16.logits.dtype == torch.float32 and stam16.features.dtype == torch.float32
    assert stam16.logits.shape == (2, 400) and stam16.features.shape == (1, 768)
    assert rel_err(stam16.logits, expected.logits) <= 1e-5
    assert rel_err(stam16.features, expected.features[:1]) <= 1e-5


def test_auto_precision_within_2_percent_and_same_top1(stam16, expected):
    model = stam16.model
    try:
        resolved = model.set_precision("auto")
        if resolved == "fp32":
            # No fast bf16 on this machine (auto resolves to fp32): the outputs are the fp32 ones.
            logits = stam16.logits
        else:
            logits = model(stam16.clips)
    finally:
        model.set_precision("fp32")
    assert resolved in ("fp32", "bf16")
    assert logits.dtype == torch.float32
    assert rel_err(logits, expected.logits) <= 0.02
    assert torch.equal(logits.argmax(1), expected.logits.argmax(1))


@pytest.mark.skipif(not model_mod.cpu_bf16_features(),
                    reason="no AVX512-BF16/AMX: bf16 is emulated here, ~8x slower than fp32 (a 1-minute test)")
def test_bf16_stam16_within_2_percent_and_same_top1(stam16, expected):
    model = stam16.model
    try:
        model.set_precision("bf16")
        logits = model(stam16.clips)
    finally:
        model.set_precision("fp32")
    assert rel_err(logits, expected.logits) <= 0.02
    assert torch.equal(logits.argmax(1), expected.logits.argmax(1))


def test_loaded_model_attributes(stam16):
    model = stam16.model
    assert not model.training
    assert (model.num_frames, model.num_classes, model.embed_dim) == (16, 400, 768)
    assert model.config == stam_core.model.MODEL_CONFIGS["stam_16"]
    assert model.device == torch.device("cpu")
    assert model.precision == "fp32"
    assert model.weights_sha256 == stam_core.file_sha256(stam16.path)
    assert model.weights_source == str(stam16.path)
    assert model.unexpected_keys == ()
    # LayerNorm eps of the official model everywhere (timm's default would be 1e-6).
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}


def test_state_dict_maps_onto_every_official_key(stam16):
    official = json.loads((FIXTURES / "official_keys_stam16.json").read_text())
    ours = {model_mod.module_to_official(k): list(v.shape) for k, v in stam16.model.state_dict().items()}
    assert ours == {k: list(v) for k, v in official.items()}


@pytest.mark.parametrize("frames", [8, 32, 64])
def test_every_variant_loads(stam16, ref, frames, tmp_path):
    state = dict(stam16.state)  # only aggregate.pos_embed changes shape between variants
    state["aggregate.pos_embed"] = 0.02 * torch.randn(1, frames + 1, 768, generator=torch.Generator().manual_seed(1))
    assert {k: list(v.shape) for k, v in state.items()} == ref.official_shapes(frames)
    path = tmp_path / f"stam_{frames}.pth"
    torch.save({"model": state}, path)
    model = stam_core.model.load_model(path, precision="fp32")
    path.unlink()  # 350 MB each
    assert model.num_frames == frames
    assert model.config == stam_core.model.MODEL_CONFIGS[f"stam_{frames}"]
    assert torch.equal(model.temporal.pos_embed, state["aggregate.pos_embed"])
    if frames == 8:
        logits = model(torch.rand(1, 8, 3, 224, 224))
        assert logits.shape == (1, 400) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match=rf"\[B, {frames}, 3, 224, 224\]"):
        model.forward_features(torch.rand(1, frames // 2, 3, 224, 224))


# --- the small configuration, precision, inputs -----------------------------------------

def test_create_model_names_and_overrides():
    for name, config in stam_core.model.MODEL_CONFIGS.items():
        assert config.num_frames == {"stam_8": 8, "stam_16": 16, "stam_32": 32, "stam_64": 64, "stam_tiny": 8}[name]
    tiny = stam_core.model.create_model("stam_tiny", num_classes=7)
    assert tiny.num_classes == 7 and tiny.num_frames == 8 and not tiny.training
    assert tiny.weights_sha256 is None and tiny.weights_source is None and tiny.precision == "fp32"
    config = stam_core.model.STAMConfig(num_frames=4, patch_size=32, embed_dim=64, depth=1, num_heads=2,
                                        temporal_layers=1, temporal_heads=2, temporal_ff=32)
    assert stam_core.model.create_model(config).num_frames == 4
    with pytest.raises(ValueError, match="stam_16"):
        stam_core.model.create_model("stam_17")
    with pytest.raises(ValueError, match="divisible"):
        stam_core.model.STAMConfig(num_frames=8, embed_dim=100, num_heads=3)


def test_tiny_forward_shapes(tiny_model):
    clips = tiny_clips(4)
    logits = tiny_model(clips)
    features = tiny_model.forward_features(clips)
    assert logits.shape == (4, 400) and logits.dtype == torch.float32
    assert features.shape == (4, 96) and features.dtype == torch.float32
    with torch.inference_mode():  # the outputs are inference tensors
        assert torch.allclose(tiny_model.head(features), logits, atol=1e-5)
    # Each clip is independent of the others in its batch.
    assert torch.allclose(tiny_model(clips[1:2]), logits[1:2], atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_predict_is_softmax_of_forward_and_the_features(tiny_model, precision):
    clips = tiny_clips(3)
    tiny_model.set_precision(precision)
    probs, embeddings = tiny_model.predict(clips)
    assert probs.shape == (3, 400) and embeddings.shape == (3, 96)
    assert probs.dtype == embeddings.dtype == torch.float32 and probs.device == tiny_model.device
    assert probs.is_inference() and not probs.requires_grad
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)
    # One pass under the same autocast as forward and forward_features: the same numbers.
    assert torch.allclose(probs, tiny_model(clips).softmax(1), rtol=1e-4, atol=1e-6)
    assert torch.allclose(embeddings, tiny_model.forward_features(clips), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, 8, 3, 224, 224\]"):
        tiny_model.predict(torch.zeros(2, 16, 3, 224, 224))


def test_predict_takes_the_decoders_uint8_frames(tiny_model):
    """What the Labeler passes: uint8 [B, T, H, W, 3], read-only (a view of an Arrow batch)."""
    frames = np.random.default_rng(3).integers(0, 256, (2, 8, 224, 224, 3), dtype=np.uint8)
    frames.flags.writeable = False
    tiny_model.set_precision("fp32")
    probs, embeddings = tiny_model.predict(frames)
    expected_probs, expected_embeddings = tiny_model.predict(precision.clips_to_tensor(frames, tiny_model.device))
    assert torch.equal(probs, expected_probs) and torch.equal(embeddings, expected_embeddings)
    with pytest.raises(ValueError, match="uint8"):
        tiny_model.predict(frames.astype(np.float32))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_is_close_to_fp32_and_returns_float32(tiny_model, precision):
    clips = tiny_clips(4)
    reference = tiny_model(clips)
    assert tiny_model.set_precision(precision) == precision
    logits = tiny_model(clips)
    assert logits.dtype == torch.float32 and tiny_model.forward_features(clips).dtype == torch.float32
    assert rel_err(logits, reference) <= 0.02
    assert torch.equal(logits.argmax(1), reference.argmax(1))


def test_auto_precision_policy(monkeypatch, caplog, tiny_model):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("avx512_bf16",))
    assert precision.resolve_precision("auto", cpu)[0] == "bf16"
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ())
    assert precision.resolve_precision("auto", cpu)[0] == "fp32"
    assert precision.resolve_precision("bf16", cpu)[0] == "bf16"  # an explicit choice is honoured
    with caplog.at_level(logging.INFO, logger="stam_core.model"):
        assert tiny_model.set_precision("auto") == "fp32"
    assert "fp32" in caplog.text and "auto" in caplog.text
    with pytest.raises(ValueError, match="precision"):
        tiny_model.set_precision("int8")


def test_cpu_bf16_features_reads_proc_cpuinfo():
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    assert set(model_mod.cpu_bf16_features()) == {f for f in ("avx512_bf16", "amx_bf16") if f in flags}


@pytest.mark.parametrize("shape", [
    (8, 3, 224, 224),        # no batch dimension
    (2, 16, 3, 224, 224),    # wrong frame count
    (2, 8, 1, 224, 224),     # wrong channels
    (2, 8, 224, 224, 3),     # channels last
    (2, 8, 3, 256, 256),     # wrong size
    (0, 8, 3, 224, 224),     # empty batch
])
def test_wrong_input_shape_names_expected_shape(tiny_model, shape):
    with pytest.raises(ValueError, match=r"\[B, 8, 3, 224, 224\]"):
        tiny_model(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"\[B, 8, 3, 224, 224\]"):
        tiny_model.forward_features(torch.zeros(shape))


def test_wrong_input_type(tiny_model):
    with pytest.raises(ValueError, match="clips_to_tensor"):
        tiny_model(torch.zeros(1, 8, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(TypeError, match="clips_to_tensor"):
        tiny_model(np.zeros((1, 8, 3, 224, 224), dtype=np.float32))


def test_forward_runs_in_inference_mode(tiny_model):
    clips = tiny_clips(1).requires_grad_()
    out = tiny_model(clips)
    assert out.is_inference() and not out.requires_grad


def test_clips_to_tensor_matches_to_tensor():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7, 3), dtype=np.uint8)
    clips = stam_core.model.clips_to_tensor(frames, "cpu")
    assert clips.shape == (2, 3, 3, 5, 7) and clips.dtype == torch.float32 and clips.is_contiguous()
    expected = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255  # torchvision ToTensor
    assert torch.equal(clips, expected)
    assert clips.min() >= 0 and clips.max() <= 1
    # A non-contiguous view (e.g. a slice of the decoder's buffer) works too.
    assert torch.equal(stam_core.model.clips_to_tensor(frames[:, ::2], "cpu"), expected[:, ::2])
    for bad in (frames.astype(np.float32), frames[0], frames[..., :1], torch.from_numpy(frames)):
        with pytest.raises(ValueError, match=r"uint8 array \[B, T, H, W, 3\]"):
            stam_core.model.clips_to_tensor(bad, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_clips_to_tensor_on_cuda():
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 224, 224, 3), dtype=np.uint8)
    clips = stam_core.model.clips_to_tensor(frames, "cuda")
    assert clips.device.type == "cuda" and clips.dtype == torch.float32
    assert torch.equal(clips.cpu(), stam_core.model.clips_to_tensor(frames, "cpu"))


def test_end_to_end_from_uint8_frames(tiny_weights):
    model = stam_core.model.load_model(tiny_weights, precision="fp32")
    frames = np.random.default_rng(0).integers(0, 256, (3, model.num_frames, 224, 224, 3), dtype=np.uint8)
    logits = model(stam_core.model.clips_to_tensor(frames, model.device))
    assert logits.shape == (3, 400)


# --- checkpoints ------------------------------------------------------------------------

def test_save_and_load_round_trip(tiny_model, tmp_path):
    path = stam_core.model.save_checkpoint(tiny_model, tmp_path / "tiny.pth")
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"model", "config", "name"}
    assert saved["config"] == dataclasses.asdict(tiny_model.config)
    assert saved["name"] == getattr(tiny_model, "name", None)  # provenance: the run's `model` column
    info = stam_core.model.read_checkpoint_info(path)  # the driver's view: no model is built
    assert (info.num_frames, info.num_classes, info.embed_dim) == (tiny_model.num_frames, 400, tiny_model.embed_dim)
    assert info.weights_sha256 == stam_core.file_sha256(path)
    assert "aggregate.transformer_enc.layers.1.linear1.weight" in saved["model"]  # official names
    loaded = stam_core.model.load_model(path, precision="fp32")
    assert loaded.config == tiny_model.config
    clips = tiny_clips(2)
    assert torch.equal(loaded(clips), tiny_model(clips))
    assert loaded.weights_sha256 == stam_core.file_sha256(path)
    assert not list(tmp_path.glob(".tiny.pth.*"))  # atomic_output left no temporary file


def test_load_model_sha256_pin(tiny_weights):
    digest = stam_core.file_sha256(tiny_weights)
    assert stam_core.model.load_model(tiny_weights, sha256=digest.upper()).weights_sha256 == digest
    with pytest.raises(CheckpointError, match="sha256 mismatch") as info:
        stam_core.model.load_model(tiny_weights, sha256="0" * 64)
    assert str(tiny_weights) in str(info.value)


def test_module_prefix_is_stripped(tiny_model, tmp_path):
    state = {f"module.{k}": v for k, v in official_state(tiny_model).items()}
    path = tmp_path / "ddp.pth"
    torch.save({"model": state, "config": dataclasses.asdict(tiny_model.config)}, path)
    loaded = stam_core.model.load_model(path, precision="fp32")
    assert loaded.unexpected_keys == ()
    clips = tiny_clips(1)
    assert torch.equal(loaded(clips), tiny_model(clips))


def test_bare_state_dict_of_official_size_needs_no_config(stam16, tmp_path):
    # Heads are inferred for embed_dim 768; a bare state dict (no "model" wrapper) loads too.
    path = tmp_path / "bare.pth"
    torch.save(stam16.state, path)
    model = stam_core.model.load_model(path, precision="fp32")
    path.unlink()
    assert model.config == stam_core.model.MODEL_CONFIGS["stam_16"]


def test_missing_and_mis_shaped_keys_are_all_named(tiny_model, tmp_path):
    state = official_state(tiny_model)
    del state["blocks.1.mlp.fc1.weight"]
    del state["head.bias"]
    state["aggregate.transformer_enc.layers.0.norm2.bias"] = torch.zeros(5)
    state["norm.weight"] = torch.zeros(96, dtype=torch.int64)
    path = tmp_path / "broken.pth"
    torch.save({"model": state, "config": dataclasses.asdict(tiny_model.config)}, path)
    with pytest.raises(CheckpointError) as info:
        stam_core.model.load_model(path)
    message = str(info.value)
    assert str(path) in message
    for key in ("blocks.1.mlp.fc1.weight", "head.bias", "aggregate.transformer_enc.layers.0.norm2.bias",
                "norm.weight"):
        assert key in message
    assert "missing keys (2)" in message and "wrong shape or dtype (2)" in message


def test_a_missing_layer_is_named(tiny_model, tmp_path):
    state = {k: v for k, v in official_state(tiny_model).items() if not k.startswith("blocks.0.")}
    path = tmp_path / "gap.pth"
    torch.save({"model": state, "config": dataclasses.asdict(tiny_model.config)}, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(12\).*blocks\.0\.attn\.qkv\.weight"):
        stam_core.model.load_model(path)


def test_unexpected_keys_are_reported(tiny_model, tmp_path, caplog):
    state = official_state(tiny_model)
    state["pre_logits.fc.weight"] = torch.zeros(3)
    state["aggregate.extra_token"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save({"model": state, "config": dataclasses.asdict(tiny_model.config)}, path)
    with caplog.at_level(logging.WARNING, logger="stam_core.model"):
        loaded = stam_core.model.load_model(path)
    assert sorted(loaded.unexpected_keys) == ["aggregate.extra_token", "pre_logits.fc.weight"]
    assert "pre_logits.fc.weight" in caplog.text and "aggregate.extra_token" in caplog.text


def test_non_official_size_without_config_is_refused(tiny_model, tmp_path):
    path = tmp_path / "noconfig.pth"
    torch.save({"model": official_state(tiny_model)}, path)
    with pytest.raises(CheckpointError, match="head counts"):
        stam_core.model.load_model(path)


def test_config_that_contradicts_the_weights_is_refused(tiny_model, tmp_path):
    path = tmp_path / "lying.pth"
    config = dict(dataclasses.asdict(tiny_model.config), num_frames=16)
    torch.save({"model": official_state(tiny_model), "config": config}, path)
    with pytest.raises(CheckpointError, match="num_frames=16 but the weights have 8"):
        stam_core.model.load_model(path)


def _write(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("make", [
    pytest.param(lambda p, w: p.write_bytes(b""), id="empty"),
    pytest.param(lambda p, w: p.write_bytes(b"hello, not a checkpoint\n"), id="text"),
    pytest.param(lambda p, w: p.write_bytes(np.random.default_rng(0).bytes(4096)), id="random"),
    pytest.param(lambda p, w: p.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2]), id="truncated-half"),
    pytest.param(lambda p, w: p.write_bytes(w.read_bytes()[:-100]), id="truncated-tail"),
    pytest.param(lambda p, w: p.write_bytes(w.read_bytes()[:1000]), id="truncated-head"),
    pytest.param(lambda p, w: _write(p, [1, 2, 3]), id="list"),
    pytest.param(lambda p, w: _write(p, torch.zeros(3)), id="tensor"),
    pytest.param(lambda p, w: _write(p, {"epoch": 3, "optimizer": {}}), id="no-model"),
    pytest.param(lambda p, w: _write(p, {"model": [torch.zeros(1)]}), id="model-not-dict"),
    pytest.param(lambda p, w: _write(p, {"model": {"a": 1}}), id="non-tensor-entry"),
    pytest.param(lambda p, w: _write(p, {"model": {"conv1.weight": torch.zeros(64, 3, 7, 7),
                                                   "fc.weight": torch.zeros(1000, 2048)}}), id="foreign"),
])
def test_bad_files_raise_checkpoint_error_naming_the_file(make, tiny_weights, tmp_path):
    path = tmp_path / "bad.pth"
    make(path, tiny_weights)
    with pytest.raises(CheckpointError) as info:
        stam_core.model.load_model(path)
    assert str(path) in str(info.value)


def test_missing_file():
    with pytest.raises(CheckpointError, match="no such file"):
        stam_core.model.load_model("/nonexistent/stam.pth")


class _Payload:
    """Unpickling this would create a file: proof that code from a checkpoint ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the plain pickle
def test_pickled_objects_are_never_run(tmp_path):
    marker = tmp_path / "pwned"
    zipped = _write(tmp_path / "evil.pth", {"model": _Payload(str(marker))})
    with pytest.raises(CheckpointError, match="refused") as info:
        stam_core.model.load_model(zipped)
    assert str(zipped) in str(info.value)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps({"model": _Payload(str(marker))}))
    with pytest.raises(CheckpointError, match=str(plain)):
        stam_core.model.load_model(plain)
    assert not marker.exists()
    # The payload is real: a plain unpickle would have run it.
    pickle.loads(plain.read_bytes())
    assert marker.exists()
