"""Trained weights from a file: Lucid's InceptionV1, torchvision models, and our own checkpoints.

Why our own loader: the curve-detector literature indexes units of one specific network (Lucid's
``inception5h``), so its weights must land in :class:`InceptionV1` under our layer names with every
unit in place (``mixed3b:379`` stays the curve detector). Files come from elsewhere, so loading is
strict and safe: ``torch.load(..., weights_only=True)`` never runs pickled code, and a file that does
not fit is refused with one line naming the first missing/unexpected keys and the shapes that differ.

``model.weights`` = Lucid's InceptionV1 (or, for ``model=torchvision``, a torchvision state dict);
``model.init_from`` = a ``harness-train`` checkpoint. This module only reads files; which file fixes
which architecture, and the edits on top, are the build pipeline's (:mod:`harness.models.build`).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.facts.edits import plan_inception
from harness.facts.errors import ConfigError

log = logging.getLogger(__name__)

# The common conversion also stores the two auxiliary training heads; the network we study has none.
LUCID_AUX_PREFIXES: tuple[str, ...] = ("head0_", "head1_", "nn0_", "nn1_", "softmax0_", "softmax1_")
LUCID_HEAD = "softmax2_pre_activation_matmul"
# `git hash-object` of the widely used inception5h.pth (shared/reference/inceptionv1.md).
LUCID_BLOB_ID = "119f77db85c8352960933e025312b507d9a96ed7"


def load_torch_file(path: str | Path, what: str) -> Any:
    """`torch.load(path, weights_only=True)`, or one ConfigError line saying why the file cannot be read.

    Never unpickles code: a file holding Python objects is refused. Shared by every loader of weights
    and checkpoints (`model.weights`, `model.init_from`, `ckpt_path`, `harness-probe ckpt=`).
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what}={path} does not exist")
    if file.stat().st_size == 0:
        raise ConfigError(
            f"{what}={path} is empty (0 bytes): its write was interrupted; use another file "
            f"(for a run: checkpoints/last.ckpt or the best epoch*.ckpt)"
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found:
            raise ConfigError(
                f"{what}={path} holds pickled Python objects ({found.group(1)}); refusing to load it, since "
                f"unpickling can run arbitrary code (harness loads with weights_only=True, never pickled code): "
                f"save a plain state dict, torch.save(model.state_dict(), path)"
            ) from None
        # torch's own message here is a generic weights_only notice; the useful fact is the format
        detail = _first_line(err) if zipfile.is_zipfile(file) else "not a zip archive, as torch.save writes"
        raise ConfigError(f"{what}={path} is not a torch file ({detail})") from None
    except Exception as err:  # zip / pickle / EOF errors of a file torch.save did not write
        raise ConfigError(f"{what}={path} is not a torch file ({type(err).__name__}: {_first_line(err)})") from None


def read_state_dict(path: str | Path, what: str = "model.weights") -> dict[str, torch.Tensor]:
    """Tensors by name from a state-dict file or a checkpoint dict holding one (``state_dict`` / ``model``).

    Read with `load_torch_file` (never unpickles code). Lightning's ``net.`` prefix and DataParallel's
    ``module.`` prefix are removed.
    """
    return state_dict_of(load_torch_file(path, what), path, what)


def state_dict_of(obj: Any, path: str | Path, what: str = "model.weights") -> dict[str, torch.Tensor]:
    """:func:`read_state_dict` of an object already read from ``path`` (a checkpoint read once for all it holds)."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        shown = ", ".join(list(map(str, obj))[:5]) if isinstance(obj, Mapping) else type(obj).__name__
        raise ConfigError(f"{what}={path} is a torch file but not a state dict (names -> tensors); found {shown}")
    state = dict(obj)
    if any(k.startswith("net.") for k in state):
        state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:200] if lines else repr(err)


def check_keys(found: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Raise one ConfigError line naming the first missing/unexpected keys and differing shapes."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or shapes):
        return

    def first(keys: list[str], n: int = 3) -> str:
        return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({first(unexpected)})")
    if shapes:
        shown = "; ".join(f"{k}: expected {list(expected[k])}, found {list(found[k].shape)}" for k in shapes[:3])
        parts.append(f"{len(shapes)} with other shapes ({shown}{'; ...' if len(shapes) > 3 else ''})")
    raise ConfigError(f"{what} does not fit: {', '.join(parts)}")


def lucid_keys() -> dict[str, tuple[str, tuple[int, ...]]]:
    """Lucid state-dict key -> (our state-dict key, shape), for the full-width network and its 1008-class head."""
    plan, out = plan_inception(), {}
    kernels = {"conv2d0": 7, "conv2d1": 1, "conv2d2": 3, "3x3": 3, "5x5": 5}
    for name, cin, cout in plan.stem:
        for p, shape in (("weight", (cout, cin, kernels[name], kernels[name])), ("bias", (cout,))):
            out[f"{name}_pre_relu_conv.{p}"] = (f"features.{name}.conv.{p}", shape)
    for block in plan.blocks:
        w, cin = block.widths, block.in_channels
        inputs = {"3x3": w["3x3_bottleneck"], "5x5": w["5x5_bottleneck"]}
        for branch, width in w.items():
            k, module = kernels.get(branch, 1), "pool_reduce" if branch == "pool_reduce" else f"conv_{branch}"
            for p, shape in (("weight", (width, inputs.get(branch, cin), k, k)), ("bias", (width,))):
                out[f"{block.name}_{branch}_pre_relu_conv.{p}"] = (f"features.{block.name}.{module}.conv.{p}", shape)
    out[f"{LUCID_HEAD}.weight"] = ("fc.weight", (1008, plan.out_channels))
    out[f"{LUCID_HEAD}.bias"] = ("fc.bias", (1008,))
    return out


def git_blob_id(path: str | Path) -> str:
    """What ``git hash-object <path>`` prints: identifies a known conversion of the weights."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def load_lucid(path: str | Path, last_layer: str | None = None, input_transform: str = "lucid") -> nn.Module:
    """Lucid's InceptionV1 (1008 classes) with the weights of ``path`` (the common ``inception5h.pth`` conversion).

    With ``last_layer`` the network is truncated and its head (reading a narrower layer) stays random.
    Usage: ``net = load_lucid("inception5h.pth"); net(images_in_0_1)``
    """
    from harness.models.inception_v1 import InceptionV1

    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(LUCID_AUX_PREFIXES)}
    keys = lucid_keys()
    check_keys(state, {k: shape for k, (_, shape) in keys.items()}, f"model.weights={path} (Lucid's InceptionV1)")
    if git_blob_id(path) != LUCID_BLOB_ID:
        log.info("%s differs from the common inception5h.pth (git blob %s); loading it anyway", path, LUCID_BLOB_ID)
    net = InceptionV1(num_classes=1008, last_layer=last_layer, input_transform=input_transform)
    ours = net.state_dict()
    mapped = {keys[k][0]: v for k, v in state.items() if keys[k][0] in ours and ours[keys[k][0]].shape == v.shape}
    net.load_state_dict(mapped, strict=False)
    return net


def load_torchvision_weights(net: nn.Module, path: str | Path) -> nn.Module:
    """Load a torchvision state dict into ``net`` (built by :func:`harness.models.torchvision_model`), in place.

    Auxiliary heads in the file (``aux1``/``aux2`` of googlenet, ``AuxLogits`` of inception_v3) are dropped
    when ``net`` has none; when ``net``'s classifier (its last Linear) has another number of classes than the
    file's, that layer keeps its fresh init and everything else is loaded.
    """
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    aux = tuple(f"{n}." for n in ("aux1", "aux2", "AuxLogits") if getattr(net, n, None) is None)
    state = {k: v for k, v in read_state_dict(path).items() if not (aux and k.startswith(aux))}
    state = {k: v for k, v in state.items() if not (k.endswith("num_batches_tracked") and k not in own)}
    head = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)][-1:]
    replaced = [k for k in own if head and k.rsplit(".", 1)[0] == head[0] and k in state and state[k].shape != own[k]]
    expected = {k: v for k, v in own.items() if k not in replaced and not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if k not in replaced}
    check_keys({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, expected,
               f"model.weights={path} ({type(net).__name__})")  # fmt: skip
    net.load_state_dict(state, strict=False)
    return net
