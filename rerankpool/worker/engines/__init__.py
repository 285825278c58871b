"""Model runtimes behind one interface (see ``base.Engine``), loaded by name.

``--engine torch`` runs an LLM reranker (a causal LM checkpoint, ``rerankpool.models.llm``)
with ``LlmEngine``, and any other checkpoint with ``TorchEngine``.
"""

from __future__ import annotations

import importlib

from rerankpool.models.llm import is_llm_reranker, read_config
from rerankpool.worker.engines.base import AsyncEngine, Engine, EngineConfig, EngineLoadError

# name -> (module, class); modules are imported only when chosen, so a worker
# never pays for (or needs) runtimes it does not use.
ENGINES: dict[str, tuple[str, str]] = {
    "torch": ("rerankpool.worker.engines.torch_engine", "TorchEngine"),
    "null": ("rerankpool.worker.engines.null_engine", "NullEngine"),
    "mlx": ("rerankpool.worker.engines.mlx_engine", "MlxEngine"),
    "onnx": ("rerankpool.worker.engines.onnx_engine", "OnnxEngine"),
}
# What --engine torch loads for an LLM reranker; the other built-in model engines serve cross-encoders only.
LLM_ENGINE = ("rerankpool.worker.engines.llm_engine", "LlmEngine")


def load_engine(config: EngineConfig) -> Engine:
    """Load a built-in engine by name, or your own as ``--engine package.module:ClassName``."""
    if config.engine in ENGINES:
        module_name, class_name = ENGINES[config.engine]
        if config.engine != "null" and is_llm_reranker(read_config(config.model_path)):
            if config.engine != "torch":
                raise EngineLoadError(f"{config.model_path} is an LLM reranker (a causal LM), which runs on "
                                      f"--engine torch only, not {config.engine}")
            module_name, class_name = LLM_ENGINE
    elif ":" in config.engine:
        module_name, class_name = config.engine.split(":", 1)
    else:
        raise EngineLoadError(
            f"unknown --engine {config.engine!r}; choose one of: {', '.join(sorted(ENGINES))}, "
            "or name your own class as package.module:ClassName"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineLoadError(
            f"the {config.engine} engine needs a package that is not installed ({exc.name}); "
            f"install it with: pip install 'rerankpool[{config.engine}]'"
        ) from exc
    engine_class = getattr(module, class_name)
    if not (isinstance(engine_class, type) and issubclass(engine_class, Engine)):
        raise EngineLoadError(
            f"--engine {config.engine}: {class_name} is not an engine; subclass "
            "rerankpool.worker.engines.base.Engine (or AsyncEngine)"
        )
    return engine_class(config)


__all__ = ["ENGINES", "AsyncEngine", "Engine", "EngineConfig", "EngineLoadError", "load_engine"]
