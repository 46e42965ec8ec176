"""A session: the source and target models, the aligned layers and the data, held by the worker
between RPCs. The target starts as a copy of the source with a new head."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.backbones import build_backbone, default_layers, head_module, replace_head
from afa_worker.data import DataBundle, DataContext, load_data
from afa_worker.errors import SpecError
from afa_worker.cancel import check_cancelled, interruptible
from afa_worker.phases import phase
from afa_worker.features import FeatureTap
from afa_worker.limits import LIMITS, check_chars, check_max, max_threads
from afa_worker.layout import Layout, ModelRecipe, choose_layout
from afa_worker.paths import check_path_text
from afa_worker.precision import PrecisionPlan, resolve_precision
from afa_worker.weight_store import WeightStore, file_sha256
from afa_worker.weights import load_into, read_state_dict

__all__ = ["Session", "Provenance", "create_session", "resolve_device", "recalibrate_bn", "recalibration_batches",
           "RECALIBRATION_BATCHES", "RECALIBRATION_IMAGES"]

# Batches of target images the source's BN statistics are recalibrated on (all of a few-label set),
# and images at most: a bounded sample of a large set (at 224 px on ResNet-101 every image costs a
# forward; a few thousand images estimate a channel's mean and variance to well under a per cent).
RECALIBRATION_BATCHES = 200
RECALIBRATION_IMAGES = 4096


def recalibration_batches(images: int, batch_size: int) -> int:
    """Batches the batch norms are recalibrated on: all of a few-label set of ``images``, at most
    RECALIBRATION_IMAGES images (and RECALIBRATION_BATCHES batches) of a larger one."""
    return min(RECALIBRATION_BATCHES, max(1, RECALIBRATION_IMAGES // batch_size), -(-images // batch_size))


def resolve_device(name: str) -> torch.device:
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                       if torch.cuda.is_available() else [])
    if name not in valid:
        raise SpecError("device", f"{name!r} is not available on this worker", valid)
    return torch.device(name)


@dataclass(frozen=True)
class Provenance:
    """What produced a session, written beside its checkpoints."""

    backbone: str
    width: int
    depth: int
    source_weights: str
    #: The experiment spec the client sent (opaque to the worker), or None.
    spec: dict | None


@dataclass
class Session:
    id: str
    provenance: Provenance
    #: Random crop and flip on training batches (so the source's maps cannot be cached).
    augment: bool
    device: torch.device
    data: DataBundle
    target: nn.Module
    source: nn.Module | None
    layers: list[str]
    layer_shapes: dict[str, tuple[int, int, int]]
    precision: PrecisionPlan
    #: sha256 of the source weights file ("" without one).
    source_sha256: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    running_stage: str | None = None
    #: Set to cancel the running stage (CloseSession does).
    stage_cancel: threading.Event | None = None
    #: The source file's backbone tensors as loaded (CPU), the fixed point drift is measured from
    #: (None without a source). AFA's promote replaces `source`, never this.
    origin_state: dict[str, torch.Tensor] | None = None
    #: What creating it took, phase by phase; the packed data set's sha256; images skipped.
    phases: list = field(default_factory=list)
    data_sha256: str = ""
    bad_files_skipped: int = 0
    #: The memory layout its models train in, and why (afa_worker.layout).
    layout: Layout | None = None
    #: Why no call can use it any more (weights that are not finite after a divergence), or "".
    unusable: str = ""

    @property
    def head_name(self) -> str:
        return self.target.head_name  # type: ignore[return-value]

    @property
    def backbone(self) -> str:
        """The backbone as built, e.g. "small_resnet width 8 depth 1"."""
        p = self.provenance
        return " ".join([p.backbone, *([f"width {p.width}"] if p.width else []), *([f"depth {p.depth}"] if p.depth else [])])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model's input: channels, height, width (the crop's side where training crops)."""
        c, h, w = self.data.train.x.shape[1:]
        return (int(c), self.data.crop or int(h), self.data.crop or int(w))

    def describe(self) -> str:
        """One line for logs and crash reports: backbone, input, layout, precision, device."""
        c, h, w = self.input_shape
        layout = self.layout.name if self.layout else "channels_last"
        return f"{self.backbone}, input {c}x{h}x{w}, {layout}, {self.precision.describe()} on {self.device}"

    def parameter_counts(self) -> tuple[int, int]:
        head = sum(p.numel() for p in head_module(self.target).parameters())
        return sum(p.numel() for p in self.target.parameters()) - head, head

    def promote_target_to_source(self) -> int:
        """AFA stage II: the frozen source becomes the current target (backbone weights and BN
        statistics); the source keeps no head, since only its feature maps are used."""
        if self.source is None:
            self.source = copy.deepcopy(self.target)
            _freeze(self.source)
            return len(self.source.state_dict())
        state = {k: v for k, v in self.target.state_dict().items() if not k.startswith(self.head_name + ".")}
        self.source.load_state_dict(state, strict=False)
        return len(state)


def _freeze(model: nn.Module) -> None:
    """Frozen source: eval mode, no gradients. Its batch-norm statistics are recalibrated on the
    target data at the start of each aligning stage (see ``recalibrate_bn``)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterator[torch.Tensor], total: int = 0) -> int:
    """Sets every batch-norm layer's running statistics to those of the given inputs (the target
    training images), then returns the model to eval mode. Returns the images seen.

    This departs from running the source with its own (source-data) statistics: those normalise
    the target data wrongly, so even at the first step, when target and source weights are equal,
    the maps differ (Omega was ~3000 on Fashion-MNIST -> MNIST at width 16) and the alignment term
    pulls towards an artefact of the domain gap. With target statistics Omega starts near 0, as the
    method assumes, and the source stays deterministic per image, so its maps can be cached."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    seen = 0
    try:
        with phase("bn_recalibration", total, "images") as tracker, interruptible("recalibrating the source's batch norms", model):
            for x in batches:
                check_cancelled("recalibrating the source's batch norms")
                model(x)
                seen += len(x)
                tracker.advance(len(x))
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.eval()
    return seen


def _layer_shapes(model: nn.Module, layers: list[str], sample: torch.Tensor) -> dict[str, tuple[int, int, int]]:
    was_training = model.training
    model.eval()
    with FeatureTap(model, layers) as tap, torch.no_grad():
        model(sample)
        maps = tap.take()
    model.train(was_training)
    shapes = {}
    for name in layers:
        out = maps.get(name)
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise SpecError("layers", f"{name!r} does not output a (B, C, H, W) feature map "
                                      f"(got {None if out is None else tuple(out.shape)})")
        shapes[name] = tuple(int(s) for s in out.shape[1:])
    return shapes


#: Bytes of the provenance spec a session keeps (a spec is a few KB; names and paths are bounded).
MAX_SPEC_JSON_BYTES = 1 << 20


def _spec_of(spec_json: str) -> dict | None:
    """The provenance spec, refused here rather than when a checkpoint is written."""
    if not spec_json:
        return None
    if len(spec_json) > MAX_SPEC_JSON_BYTES:
        raise SpecError("spec_json", f"holds {len(spec_json)} characters; at most {MAX_SPEC_JSON_BYTES}")
    try:
        spec = json.loads(spec_json)
    except ValueError as exc:
        raise SpecError("spec_json", f"is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise SpecError("spec_json", f"must be a JSON object, got {type(spec).__name__}")
    return spec


def _check_sizes(request: pb.CreateSessionRequest) -> None:
    """Every count of the request within its bound, before anything is loaded or built."""
    b, d = request.backbone, request.data
    check_max(b.width, "backbone.width", "width")
    check_max(b.depth, "backbone.depth", "depth")
    check_max(b.in_channels, "backbone.in_channels", "in_channels")
    check_max(d.image_size, "data.image_size", "image_size")
    if len(d.classes) > LIMITS["classes"]:
        raise SpecError("data.classes", f"must list at most {LIMITS['classes']} classes, got {len(d.classes)}")
    if len(request.layers) > LIMITS["layers"]:
        raise SpecError("layers", f"must list at most {LIMITS['layers']} layers, got {len(request.layers)}")
    check_chars(b.name, "backbone.name", "name_chars")
    for i, layer in enumerate(request.layers):
        check_chars(layer, f"layers[{i}]", "name_chars")
    check_chars(request.source_weights, "source_weights", "path_chars")
    check_chars(request.device, "device", "name_chars")
    for name in ("fashion_mnist", "mnist"):
        if d.HasField(name):
            check_chars(getattr(d, name).directory, f"data.{name}.directory", "path_chars")
    if d.HasField("image_folder"):
        check_chars(d.image_folder.root, "data.image_folder.root", "path_chars")
    if request.num_threads > max_threads():
        raise SpecError("num_threads", f"must be at most the {max_threads()} cores this worker may use, "
                                       f"got {request.num_threads}")
    if d.color not in pb.ColorMode.values():
        raise SpecError("data.color", f"unknown color mode {d.color}", [pb.ColorMode.Name(v) for v in pb.ColorMode.values()])


def _set_threads(requested: int, others_active: bool) -> None:
    """torch's thread count is one per process: a session may set it only while it is the only one."""
    if not requested or requested == torch.get_num_threads():
        return
    if others_active:
        raise SpecError("num_threads", f"other sessions are running on this worker's {torch.get_num_threads()} torch "
                                       "threads; a session may change the count only while it is the only one "
                                       "(leave it 0, or start the worker with --threads)")
    torch.set_num_threads(requested)


def _source_file(request: pb.CreateSessionRequest, store: WeightStore | None) -> tuple[str, str]:
    """The source weights' path on this machine and their sha256 (("", "") for none)."""
    if request.source_weights and request.source_weights_sha256:
        raise SpecError("source_weights_sha256", "give the source as a path (source_weights) or by hash, not both")
    if request.source_weights_sha256:
        store = store or WeightStore()
        return str(store.require(request.source_weights_sha256, "source_weights_sha256")), request.source_weights_sha256
    if request.source_weights:
        path = Path(check_path_text(request.source_weights, "source_weights"))
        if not path.is_file():
            raise SpecError("source_weights", f"weights file {request.source_weights} does not exist on {socket.gethostname()}"
                                              " (a worker on another machine gets the source by hash: PutWeights)")
        return request.source_weights, file_sha256(path)
    return "", ""


def create_session(request: pb.CreateSessionRequest, others_active: bool = False, store: WeightStore | None = None,
                   data_context: DataContext | None = None) -> Session:
    """The session a request describes; ``data_context`` carries the data set store, decode threads and progress."""
    ctx = data_context or DataContext(threads=torch.get_num_threads())
    _check_sizes(request)
    source_path, source_sha256 = _source_file(request, store)
    spec = _spec_of(request.spec_json)
    device = resolve_device(request.device)
    precision = resolve_precision(request.precision, device)
    _set_threads(request.num_threads, others_active)
    if not request.backbone.name:
        raise SpecError("backbone.name", "a backbone is required")
    data = load_data(request.data, ctx)
    in_channels = request.backbone.in_channels or data.in_channels
    if in_channels != data.in_channels:
        raise SpecError("backbone.in_channels", f"{in_channels} does not match the data's {data.in_channels} "
                                                "channels; set data.color to convert")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(request.seed)
    try:
        model = build_backbone(request.backbone.name, data.num_classes, in_channels,
                               request.backbone.width, request.backbone.depth)
    finally:
        torch.random.set_rng_state(gen_state)
    source = None
    origin_state = None
    if source_path:
        loading = time.perf_counter()
        size = Path(source_path).stat().st_size
        # Its start and end as progress (a 170 MB ResNet-101 takes seconds to read and check), in bytes.
        ctx.progress(pb.Progress(phase="source_load", done=0, total=size, unit="bytes", detail=Path(source_path).name))
        load_into(model, read_state_dict(source_path), model.head_name, source_path)
        seconds = time.perf_counter() - loading
        ctx.progress(pb.Progress(phase="source_load", done=size, total=size, unit="bytes", rate=size / max(seconds, 1e-9),
                                 seconds=seconds, finished=True, detail=Path(source_path).name))
        ctx.phases.append(pb.PhaseTiming(phase="source_load", seconds=seconds, detail=Path(source_path).name))
        origin_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()
                        if not k.startswith(model.head_name + ".")}
        if not request.no_source:
            source = copy.deepcopy(model)
            _freeze(source)
    replace_head(model, data.num_classes, request.seed)
    layers = list(request.layers) or default_layers(request.backbone.name, request.backbone.depth)
    sample = data.normalise(data.train.x[:2])
    layer_shapes = _layer_shapes(model, layers, sample) if layers else {}
    # Channels-last where it is safe (it is faster), else contiguous: see afa_worker.layout.
    recipe = ModelRecipe(request.backbone.name, data.num_classes, in_channels, request.backbone.width, request.backbone.depth)
    layout = choose_layout(model, recipe, tuple(sample.shape[1:]), device, precision.train == torch.bfloat16)
    if layout.probe_seconds:
        ctx.phases.append(pb.PhaseTiming(phase="layout_probe", seconds=layout.probe_seconds, detail=layout.reason))
    model = model.to(device, memory_format=layout.memory_format)
    source = source.to(device, memory_format=layout.memory_format) if source is not None else None
    data.memory_format = layout.memory_format
    provenance = Provenance(request.backbone.name, request.backbone.width, request.backbone.depth, source_path, spec)
    return Session(uuid.uuid4().hex, provenance, bool(request.data.augment or data.crop), device, data.to(device), model, source, layers,
                   layer_shapes, precision, source_sha256, origin_state=origin_state, phases=list(ctx.phases),
                   data_sha256=ctx.sha256, bad_files_skipped=ctx.skipped, layout=layout)
