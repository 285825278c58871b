"""ONNX Runtime engine: fp32 exports of a transformers checkpoint, or INT8.

Which file runs:
- ``--dtype int8`` with a shipped ONNX file (``config.onnx_path``, the packaged INT8
  default model): that file, as is.
- ``--dtype int8`` otherwise: the checkpoint exported to fp32 and dynamic-quantized by
  ONNX Runtime, once, into the cache (``onnx_export``).
- ``--dtype float32``: the checkpoint exported to fp32, once, into the cache.

Parity: the fp32 export matches torch fp32 within 1e-4 (checked at export time too;
5e-6 on ms-marco-MiniLM-L-12-v2, whose logits span about -11..+9). INT8 moves logits far
more (dynamic quantization of every MatMul): on 1,000 SQuAD pairs with MiniLM-L12 by
0.02 on average and up to 0.6, for the shipped file and our own quantization alike (up
to 0.9 on random-id inputs), while MRR@10 stays equal to fp32's. Check INT8 by ranking
quality (MRR, see the slow test), not by logits.

All three of ``input_ids``, ``attention_mask`` and ``token_type_ids`` are fed when the
graph declares them: BERT cross-encoders use token types to tell query from document,
and zeroing them changes the scores. Exports of families without token types (XLM-R,
ModernBERT, DeBERTa-v3) declare only the first two. Which families this engine serves
is ``rerankpool.models.families``' table; padding is set to the model's ``pad_token_id``,
as the torch engine does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rerankpool.models.families import UnsupportedModelError, check_engine, find_family, load_config
from rerankpool.worker.engines.base import Chunk, Engine, EngineConfig, EngineLoadError
from rerankpool.worker.engines.torch_engine import pad_with  # numpy only: torch is imported in TorchEngine

logger = logging.getLogger(__name__)

FEEDS = ("input_ids", "attention_mask", "token_type_ids")
ORT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def resolve_providers(device: str) -> tuple[list, str]:
    """ONNX Runtime providers for --device; say what to do when CUDA is not there."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if device.startswith("cuda"):
        index_text = device.split(":", 1)[1] if ":" in device else "0"
        if not index_text.isdigit():
            raise EngineLoadError(f"--device {device}: use cuda or cuda:N")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineLoadError(
                f"--device {device}: this onnxruntime has no CUDAExecutionProvider "
                f"(has {ort.get_available_providers()}); pip install onnxruntime-gpu, or use --device cpu"
            )
        index = int(index_text)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"
    raise EngineLoadError(f"unknown --device {device!r} for --engine onnx: use cpu, cuda or cuda:N")


class OnnxEngine(Engine):
    name = "onnx"

    def __init__(self, config: EngineConfig) -> None:
        import onnxruntime as ort

        if config.dtype not in ("float32", "int8"):
            raise EngineLoadError(
                f"the onnx engine runs float32 or int8, not {config.dtype!r} (half precision is not "
                "supported yet); use --engine torch for float16/bfloat16"
            )
        providers, self.device = resolve_providers(config.device)
        self.dtype = config.dtype
        model_config = self._check_family(config.model_path)
        self.pad_token_id = model_config.get("pad_token_id")
        self._reads_token_types = (model_config.get("type_vocab_size") or 0) > 1
        self.path = self._model_file(config)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # N workers share the cores: each gets `threads` intra-op threads and no inter-op pool.
        options.intra_op_num_threads = config.threads or 0
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EngineLoadError(f"onnxruntime could not load {self.path}: {exc}") from exc
        if self.device != "cpu" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise EngineLoadError(
                f"--device {config.device}: onnxruntime fell back to {self.session.get_providers()}; "
                "check the CUDA/cuDNN libraries onnxruntime-gpu needs, or use --device cpu"
            )
        self._feeds = self._declared_inputs()
        self._output = self._logits_output()
        logger.info("onnx engine: %s on %s (%s, threads=%s)", self.path, self.device, self.dtype, config.threads)

    @staticmethod
    def _check_family(model_path: Path) -> dict:
        """The checkpoint's config.json, if this engine serves its family; one it does not know is tried
        (the export is checked against torch before it is used). None there: a shipped ONNX file alone."""
        if not (Path(model_path) / "config.json").is_file():
            return {}
        try:
            model_config = load_config(model_path)
            if find_family(model_config) is None:
                logger.warning("%s: model_type %r is not a family rerankpool tests; exporting it anyway",
                               model_path, model_config.get("model_type"))
            else:
                check_engine(model_config, "onnx")
        except UnsupportedModelError as exc:
            raise EngineLoadError(str(exc)) from exc
        return model_config

    @staticmethod
    def _model_file(config: EngineConfig) -> Path:
        """The ONNX file to run for this dtype: the shipped one, or a cached export."""
        if config.dtype == "int8" and config.onnx_path is not None:
            if not config.onnx_path.exists():
                raise EngineLoadError(f"the model's ONNX file {config.onnx_path} is missing; reinstall it")
            return config.onnx_path
        try:
            from rerankpool.worker.engines.onnx_export import OnnxExportError, ensure_onnx
        except ImportError as exc:
            raise EngineLoadError(f"cannot import the ONNX exporter ({exc})") from exc
        try:
            return ensure_onnx(config.model_path, int8=config.dtype == "int8").path
        except ImportError as exc:
            raise EngineLoadError(
                f"exporting {config.model_path} to ONNX needs torch and transformers ({exc.name} is "
                "missing): pip install 'rerankpool[torch]'"
            ) from exc
        except OnnxExportError as exc:
            raise EngineLoadError(str(exc)) from exc
        except OSError as exc:
            raise EngineLoadError(
                f"cannot write the ONNX export cache ({exc}); set RERANKPOOL_CACHE to a writable directory"
            ) from exc

    def _declared_inputs(self) -> dict[str, type]:
        """The inputs the graph declares, with their integer type; refuse ones we cannot feed."""
        feeds: dict[str, type] = {}
        for inp in self.session.get_inputs():
            if inp.name not in FEEDS or inp.type not in ORT_TYPES:
                raise EngineLoadError(
                    f"{self.path} wants input {inp.name!r} ({inp.type}); the onnx engine feeds "
                    f"{', '.join(FEEDS)} as integers. Re-export the model with --dtype float32"
                )
            feeds[inp.name] = ORT_TYPES[inp.type]
        if "token_type_ids" not in feeds and self._reads_token_types:
            logger.warning("%s has no token_type_ids input; scores may differ from torch", self.path)
        return feeds

    def _logits_output(self) -> str:
        outputs = self.session.get_outputs()
        out = next((o for o in outputs if o.name == "logits"), outputs[0])
        labels = out.shape[-1] if out.shape else None
        if isinstance(labels, int) and labels != 1:
            raise EngineLoadError(
                f"{self.path} outputs {labels} labels; rerankpool serves single-score cross-encoders"
            )
        return out.name

    def forward(self, chunk: Chunk) -> np.ndarray:
        arrays = {"input_ids": pad_with(chunk, self.pad_token_id), "attention_mask": chunk.attention_mask,
                  "token_type_ids": chunk.token_type_ids}
        feed = {name: arrays[name].astype(dtype, copy=False) for name, dtype in self._feeds.items()}
        (logits,) = self.session.run([self._output], feed)
        return np.asarray(logits, dtype=np.float32).reshape(len(chunk.input_ids), -1)[:, 0]

    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        for rows, length in shapes:
            ids = np.ones((rows, length), dtype=np.int64)
            self.forward(Chunk(np.arange(rows), ids, ids, np.zeros_like(ids)))

    def memory(self) -> dict[str, float]:
        """ONNX Runtime's Python API exposes no allocator statistics; process RSS covers CPU."""
        return {}
