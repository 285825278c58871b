"""``rerankpool top``: the pool live in a terminal, for a shell on the GPU box.

Once a second it asks the broker for its stats with their history and redraws the screen:
the same figures as the browser dashboard (``rerankpool.http.dashboard``), as text and
sparklines. A broker that does not answer is said to be so, on the screen, until it does.
``render`` is pure (stats in, text out), so the screen can be tested without a broker.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence

BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 60) -> str:
    """The last ``width`` values as block characters, scaled to their maximum (gaps as spaces)."""
    values = list(values)[-width:]
    top = max((v for v in values if v is not None), default=0.0)
    if top <= 0:
        return "".join(" " if v is None else BARS[1] for v in values)
    return "".join(" " if v is None else BARS[max(1, round(v / top * (len(BARS) - 1)))] for v in values)


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(stats: dict[str, Any], address: str) -> str:
    """One screen of ``top``."""
    history, recent = stats.get("history", {}), stats["recent"]
    rows = history.get("rows", [])
    last = rows[-1] if rows else {"workers": {}}
    state = "serving" if stats["workers"] else "NO WORKERS"
    m = stats["metrics"]
    padding = 100 * (m["padded_tokens"] - m["real_tokens"]) / m["padded_tokens"] if m["padded_tokens"] else None
    lines = [
        f"rerankpool top  {address}  {stats['host']}  up {stats['uptime_s'] / 60:.1f} min  v{stats['version']}  "
        f"default model: {stats.get('default_model') or '-'}  [{state}]",
        f"pairs/s {_f(recent['pairs_per_s'])}  requests/s {_f(recent['requests_per_s'])}  latency p50/p95/p99 "
        f"{_f(recent['latency_p50_ms'])}/{_f(recent['latency_p95_ms'])}/{_f(recent['latency_p99_ms'])} ms  "
        f"queued {stats['queue_pairs']}  in flight {stats['requests_in_flight']}  scored {stats['pairs_scored']}",
        f"a batch (mean ms, last {recent['window_s']:.0f} s): queue {_f(recent['queue_ms'])}  tokenize "
        f"{_f(recent['tokenize_ms'])}  inference {_f(recent['inference_ms'])}   padding {_f(padding)} %   "
        f"workers lost {stats['workers_lost']}",
        f"pairs/s     {sparkline([r['pairs_per_s'] for r in rows])}",
        f"latency p95 {sparkline([r['latency_p95_ms'] for r in rows])}",
        f"queued      {sparkline([r['queued_pairs'] for r in rows])}",
        "",
        f"{'HOST':24s} {'CPU %':>6s} {'STEAL %':>8s} {'MEM MiB':>16s}  GPUS (util %, MiB)",
    ]
    for name, h in history.get("hosts", {}).items():
        gpus = [f"{k.split('.')[1]}: {h[k]:.0f} %, {h.get(k.replace('util_pct', 'mem_used_mb'), 0):.0f}"
                for k in sorted(h) if k.startswith("gpu.") and k.endswith(".util_pct")]
        lines.append(f"{name[:24]:24s} {_f(h.get('system.cpu_pct')):>6s} {_f(h.get('system.cpu_steal_pct')):>8s} "
                     f"{_f(h.get('system.mem_used_mb'), 0) + '/' + _f(h.get('system.mem_total_mb'), 0):>16s}  "
                     f"{'; '.join(gpus) or 'none'}")
    lines += ["", f"{'WORKER':22s} {'MODEL':24s} {'STATE':7s} {'INFL':>4s} {'PAIRS/S':>9s} {'BATCHES':>7s} "
                  f"{'P95 MS':>8s} {'ERR':>4s} {'HB AGE':>6s}"]
    for name, w in last["workers"].items():
        lines.append(f"{name[:22]:22s} {w['model'][:24]:24s} {w['state']:7s} {w['in_flight']:>4d} "
                     f"{w['pairs_per_s']:>9.1f} {w['batches']:>7d} {_f(w['batch_p95_ms']):>8s} {w['errors']:>4d} "
                     f"{w['heartbeat_age_s']:>6.1f}")
    lines += ["", f"{'MODEL':40s} {'DEFAULT':7s} {'WORKERS':>7s} {'QUEUED':>7s} {'SCORED':>10s}"]
    for model in stats["models"]:
        lines.append(f"{model['name'][:40]:40s} {'yes' if model['default'] else '':7s} {model['workers']:>7d} "
                     f"{model['queued_pairs']:>7d} {model['pairs_scored']:>10d}")
    errors = history.get("errors", [])[-5:]
    if errors:
        lines += ["", "RECENT ERRORS"]
        lines += [f"{time.strftime('%H:%M:%S', time.localtime(e['t']))} {e['code']}: {e['message'][:100]}"
                  for e in reversed(errors)]
    return "\n".join(lines)


def run_top(address: str, interval_s: float = 1.0, security=None, frames: int | None = None) -> int:
    """Redraw every ``interval_s`` until Ctrl-C (or ``frames`` screens)."""
    from rerankpool.client import Client
    from rerankpool.errors import RerankPoolError

    shown = 0
    with Client(address, timeout=max(1.0, interval_s), retries=0, security=security) as client:
        try:
            while frames is None or shown < frames:
                start = time.monotonic()
                try:
                    screen = render(client.stats(timeout=max(1.0, interval_s), history=True), address)
                except RerankPoolError as exc:
                    screen = (f"rerankpool top  {address}\n\nthe broker does not answer ({exc}); "
                              f"trying again every {interval_s:.0f} s (Ctrl-C to quit)")
                sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
                sys.stdout.flush()
                shown += 1
                time.sleep(max(0.0, interval_s - (time.monotonic() - start)))
        except KeyboardInterrupt:
            pass
    return 0
