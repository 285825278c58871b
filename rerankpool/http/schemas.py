"""The request and response bodies of every HTTP shape, declared once.

FastAPI validates requests against these models and generates ``/openapi.json`` from
them, so no schema is written by hand beside the code. The shapes follow their
sources: TEI's ``router/src/http/types.rs``, cohere-python's v1 and v2 ``rerank``, and
Jina's ``/v1/rerank`` (which shares Cohere v1's path: one body serves both clients).
The foreign shapes ignore fields they do not know, as their servers do, so a client
of a newer version still works; the pool's own routes forbid them.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _model_field() -> Any:
    return Field(None, description="which of the pool's models scores (GET /info lists them); none: its default")


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int | None = None


# -- TEI ---------------------------------------------------------------------------------


class TEIRerankRequest(_Lenient):
    """TEI's ``POST /rerank``."""

    query: str
    texts: list[str] = Field(min_length=1, description="the documents to score against the query")
    truncate: bool | None = Field(None, description="cut pairs past the model's window (default: the server's "
                                                    "--truncate); false: such a pair gets 413 naming it and its tokens")
    truncation_direction: Literal["Right", "right", "Left", "left"] = Field(
        "Right", description="Right cuts the end of a pair past the window, Left its start")
    raw_scores: bool | None = Field(False, description="raw logits instead of sigmoid scores")
    return_text: bool | None = False


class InfinityRerankRequest(_Lenient):
    """Infinity's ``POST /rerank``: ``documents`` instead of ``texts``, answered in Infinity's shape."""

    query: str
    documents: list[str] = Field(min_length=1)
    raw_scores: bool | None = False
    return_documents: bool | None = False
    top_n: int | None = Field(None, ge=1, description="return only the best top_n")
    model: str | None = _model_field()


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class InfinityResult(BaseModel):
    index: int
    relevance_score: float
    document: str | None = None


class InfinityRerankResponse(BaseModel):
    object: Literal["rerank"] = "rerank"
    id: str
    created: int
    model: str
    results: list[InfinityResult]
    usage: Usage


class TEIError(BaseModel):
    error: str
    error_type: str


# -- Cohere v2 ---------------------------------------------------------------------------


class CohereV2RerankRequest(_Lenient):
    """Cohere's ``POST /v2/rerank``: documents are strings."""

    model: str | None = _model_field()
    query: str
    documents: list[str] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1, description="return only the best top_n results")
    max_tokens_per_doc: int | None = Field(None, ge=1, le=1 << 20,
                                           description="cut each document to this many tokens; a pair past the "
                                                       "model's window is cut to it too")
    return_documents: bool = False



class ApiVersion(BaseModel):
    version: str
    is_experimental: bool = False


class BilledUnits(BaseModel):
    search_units: int = 1


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits = Field(default_factory=BilledUnits)


class RerankDocument(BaseModel):
    text: str


class CohereV2Result(BaseModel):
    index: int
    relevance_score: float = Field(description="the sigmoid of the model's logit, in (0, 1)")
    document: RerankDocument | None = None


class CohereV2RerankResponse(BaseModel):
    id: str
    results: list[CohereV2Result]
    meta: Meta


class CohereError(BaseModel):
    message: str


# -- Cohere v1 and Jina --------------------------------------------------------------------


class V1RerankRequest(_Lenient):
    """``POST /v1/rerank``: Cohere v1 and Jina. Documents are strings or objects.

    An object is scored on its ``text``; with ``rank_fields``, on those fields as
    ``key: value`` lines in the order given (Cohere v1's behaviour); with neither, on
    all its fields so.
    """

    model: str | None = _model_field()
    query: str
    documents: list[Union[str, dict[str, Any]]] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool | None = Field(None, description="default false, as in Cohere v1 (Jina's default is true: "
                                                            "Jina callers that read the documents send true)")
    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = Field(None, ge=1, le=10_000,
                                           description="Cohere v1: score each document by its best "
                                                                   "chunk (window of the model's length), of at "
                                                                   "most this many")



class V1Result(BaseModel):
    index: int
    relevance_score: float = Field(description="the sigmoid of the model's logit, in (0, 1)")
    document: dict | None = Field(None, description="{text} for a string document; an object document as sent")


class V1RerankResponse(BaseModel):
    id: str
    model: str
    results: list[V1Result]
    usage: Usage
    meta: Meta


class V1Error(BaseModel):
    message: str
    detail: str


# -- the pool's own routes -----------------------------------------------------------------


class ChunkingBody(_Strict):
    """``Chunking``: a document longer than the window is scored by its overlapping windows."""

    aggregate: Literal["max", "mean", "first"] = "max"
    window_tokens: int | None = Field(None, ge=8, le=1 << 20,
                                      description="document tokens a window (default: all that fit)")
    overlap_tokens: int = Field(64, ge=0, le=1 << 20, description="tokens shared by next windows")
    max_windows: int = Field(16, ge=1, le=10_000, description="windows a document at most (its first ones)")


class _PoolOptions(_Strict):
    """What ``Client.rerank`` and ``Client.score`` both take."""

    activation: Literal["raw", "sigmoid"] = "raw"
    model: str | None = _model_field()
    truncate: bool | None = Field(None, description="cut pairs past the model's window (default: the server's "
                                                    "--truncate); false: such a pair gets 413 naming it")
    truncation_direction: Literal["right", "left"] = Field("right", description="cut the end (right) or the start")
    max_tokens_per_doc: int | None = Field(None, ge=1, le=1 << 20,
                                           description="cut each document to this many tokens first")
    chunking: ChunkingBody | None = Field(None, description="score long documents by their windows (default: the "
                                                            "server's --chunking); results give the best window's span")


class PoolRerankRequest(_PoolOptions):
    """``POST /pool/rerank``: the options of ``Client.rerank``."""

    query: str
    documents: list[str] = Field(min_length=1)
    top_k: int | None = Field(None, ge=1)
    return_documents: bool = False


class PoolScoreRequest(_PoolOptions):
    """``POST /pool/score``: (query, document) pairs, scored in input order."""

    pairs: list[tuple[str, str]] = Field(min_length=1)


class PoolUsage(BaseModel):
    tokens: int
    tokenize_ms: float
    queue_ms: float
    inference_ms: float


class PoolHit(BaseModel):
    index: int
    score: float
    document: str | None = None
    span: tuple[int, int] | None = Field(None, description="chunked scoring: the best window's [start, end) characters")


class PoolRerankResponse(BaseModel):
    results: list[PoolHit]
    usage: PoolUsage | None


class PoolScoreResponse(BaseModel):
    scores: list[float]
    usage: PoolUsage | None
    spans: list[tuple[int, int]] | None = None


class PoolErrorDetail(BaseModel):
    code: str
    message: str


class PoolError(BaseModel):
    error: PoolErrorDetail


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    workers: int
    model: str | None = Field(description="the default model: requests that name none go to it")
    models: dict[str, int] = Field(default_factory=dict, description="each served model's live workers")
    message: str | None = None
