"""What a worker process is told to run: its broker, model, engine, device and limits (``WorkerConfig``).

A device process (``rerankpool.worker.device.server``) is given its workers' config, so
both load the same model the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rerankpool.models import ResolvedModel
from rerankpool.security.client import ClientSecurity
from rerankpool.sockets import split_addresses
from rerankpool.worker.engines import EngineConfig
from rerankpool.worker.policy import CHUNK_POLICIES, PACKED_POLICY, ChunkPolicy


@dataclass(frozen=True)
class WorkerConfig:
    connect: str = "tcp://127.0.0.1:5556"
    model: str = "ms-marco-MiniLM-L-12-v2"
    engine: str = "torch"
    device: str = "cpu"
    dtype: str = "float32"
    max_length: int = 512
    capacity: int = 2  # batches in flight: >= 2 so the next batch is tokenized while one runs
    threads: int | None = None
    compile: bool = False
    warmup: bool = True
    heartbeat_interval_s: float = 1.0
    liveness: int = 3
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 8.0
    chunk_policy: ChunkPolicy | None = None  # None: chosen from engine and device
    packed: bool | None = None  # torch: packed tokens (None: on CUDA for BERT models)
    cuda_graphs: bool = True  # torch, packed on CUDA: small batches replay CUDA graphs
    fast_tokenizer: bool = True  # flash-tokenizer for BERT vocabularies, where it matches tokenizers
    instruction: str | None = None  # LLM rerankers: the task instruction (None: rerankpool.models.llm's default)
    truncate: bool = True  # cut pairs past the window for requests that do not say; False: refuse them (too_large)
    device_endpoint: str | None = None  # run the model in this host's device process, not in this worker
    name: str = field(default="worker")
    security: ClientSecurity | None = None  # CURVE keys, when the broker requires them

    @property
    def brokers(self) -> list[str]:
        """The brokers it serves: ``connect`` may name several, comma-separated."""
        return split_addresses(self.connect)

    def policy(self, packed: bool = False) -> ChunkPolicy:
        """How batches are cut for the loaded engine (``packed``: it takes packed tokens)."""
        if self.chunk_policy is not None:
            return self.chunk_policy
        if packed:
            return PACKED_POLICY
        kind = "mlx" if self.engine == "mlx" else self.device.split(":")[0]
        return CHUNK_POLICIES.get(kind, ChunkPolicy())

    def engine_config(self, model: ResolvedModel) -> EngineConfig:
        return EngineConfig(
            model_path=model.path,
            engine=self.engine,
            device=self.device,
            dtype=self.dtype,
            max_length=self.max_length,
            threads=self.threads,
            compile=self.compile,
            onnx_path=model.onnx_path,
            packed=self.packed,
            cuda_graphs=self.cuda_graphs,
        )


# Per-model settings ``--model`` may carry after the model's name, and the WorkerConfig field each sets.
MODEL_SPEC_KEYS = {"workers": int, "device": str, "engine": str, "dtype": str, "max-length": int}


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model`` of ``rerankpool up`` or ``worker``: ``NAME[,workers=N][,device=D][,engine=E][,dtype=T]
    [,max-length=L]``. Settings left out take the command's own flags (``-n``, ``--device``, ...)."""

    name: str
    settings: dict[str, int | str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        name, *items = [part.strip() for part in text.split(",")]
        if not name:
            raise ValueError(f"--model {text!r}: the model's name comes first, e.g. 'minilm-l6-standin,workers=2'")
        settings: dict[str, int | str] = {}
        for item in items:
            key, sep, value = item.partition("=")
            kind = MODEL_SPEC_KEYS.get(key)
            if not sep or kind is None or not value:
                raise ValueError(f"--model {text!r}: {item!r} is not KEY=VALUE with KEY one of "
                                 f"{', '.join(MODEL_SPEC_KEYS)}")
            try:
                settings[key] = kind(value)
            except ValueError:
                raise ValueError(f"--model {text!r}: {key} must be an integer, not {value!r}") from None
        if int(settings.get("workers", 1)) < 1:
            raise ValueError(f"--model {text!r}: workers must be >= 1")
        return cls(name, settings)

    def get(self, key: str, default):
        return self.settings.get(key, default)

    @property
    def model(self) -> str:
        """The name its workers register under, which requests name: the built-in's own for an alias."""
        from rerankpool.models.names import ALIASES

        return ALIASES.get(self.name, self.name)
