"""The benchmark's report: the overhead table and each issue-2 target, met or missed, from a result dict."""

from __future__ import annotations

from typing import Any


def _us(value: int | None) -> str:
    return f"{value:>7} us" if value is not None else "      n/a "


def label(latency: float, jitter: float) -> str:
    ms = f"{round(latency * 1000)}"
    return f"{ms}±{round(jitter * 1000)}" if jitter else ms


def cell_line(label: str, cell: dict[str, Any]) -> str:
    d, g = cell["direct"], cell["gateway"]
    return (
        f"  upstream {label:>7} ms  {cell['kind']:<6} c={cell['concurrency']:<3}  "
        f"direct {d['rps']:>8.0f} rps  gateway {g['rps']:>7.0f} rps  "
        f"p50 {d['p50_ms']:.2f}/{g['p50_ms']:.2f} ms  p99 {d['p99_ms']:.2f}/{g['p99_ms']:.2f} ms  "
        f"gateway CPU {_us(g['cpu_us_per_request']).strip()}/request"
    )


def table(results: dict[str, Any]) -> str:
    rows = [
        "upstream    kind    conc |  direct rps  gateway rps  ratio |  p50 direct  p50 gw  added "
        "|  p99 direct  p99 gw   added | gw CPU/req | ttfb p50 dir/gw  added",
        "-" * 147,
    ]
    for ph in results["phases"]:
        for cell in ph["cells"]:
            d, g = cell["direct"], cell["gateway"]
            ttfb = ""
            if "ttfb" in d and d["ttfb"]["ttfb_p50_ms"] is not None and g["ttfb"]["ttfb_p50_ms"] is not None:
                td, tg = d["ttfb"]["ttfb_p50_ms"], g["ttfb"]["ttfb_p50_ms"]
                ttfb = f"{td:7.2f}/{tg:7.2f}  {tg - td:+6.2f}"
            errs = "" if not (d["errors"] or g["errors"]) else f"  errors {d['errors']}/{g['errors']}"
            pace = label(ph["upstream_latency_s"], ph["upstream_jitter_s"])
            rows.append(
                f"{pace:>7} ms  {cell['kind']:<6} {cell['concurrency']:>4} | "
                f"{d['rps']:>10.0f}  {g['rps']:>11.0f}  {g['rps'] / d['rps']:5.2f} | "
                f"{d['p50_ms']:>10.2f}  {g['p50_ms']:>6.2f}  {g['p50_ms'] - d['p50_ms']:+5.2f} | "
                f"{d['p99_ms']:>10.2f}  {g['p99_ms']:>6.2f}  {g['p99_ms'] - d['p99_ms']:+6.2f} | "
                f"{_us(g['cpu_us_per_request'])} | {ttfb}{errs}"
            )
    rows.append("")
    for ph in results["phases"]:
        rows.append(
            f"gateway RSS with the {label(ph['upstream_latency_s'], ph['upstream_jitter_s'])} ms upstream: "
            f"{ph['rss_idle_mb']} MB idle, {ph['rss_after_load_mb']} MB after load"
        )
    return "\n".join(rows)


def targets_report(results: dict[str, Any]) -> list[str]:
    """Each target from issue 2, met or not, with the figure it was judged on."""
    by = {
        (ph["upstream_latency_s"], c["kind"], c["concurrency"]): c
        for ph in results["phases"]
        if not ph["upstream_jitter_s"]
        for c in ph["cells"]
    }
    lines = []

    def check(label: str, ok: bool, figure: str) -> None:
        lines.append(f"  [{'met' if ok else 'MISSED'}] {label}: {figure}")

    c1 = by.get((0.0, "json", 1))
    if c1:
        added = c1["gateway"]["p50_ms"] - c1["direct"]["p50_ms"]
        check("added p50 at concurrency 1 (JSON, instant upstream) <= 1 ms", added <= 1.0, f"{added:+.2f} ms")
    s1 = by.get((0.0, "stream", 1))
    if s1:
        added = s1["gateway"]["p50_ms"] - s1["direct"]["p50_ms"]
        check(
            "added p50 at concurrency 1 (stream, instant upstream) <= 1 ms", added <= 1.0, f"{added:+.2f} ms"
        )
    for kind, goal in (("json", 1500), ("stream", 800)):
        rates = [c["gateway"]["rps"] for (lat, k, _), c in by.items() if lat == 0.0 and k == kind]
        if not rates:
            continue
        best = max(rates)
        check(f"{kind} requests/s at saturation >= {goal}", best >= goal, f"{best:.0f} rps")
    for kind in ("json", "stream"):
        slow = by.get((0.2, kind, 100))
        if slow:
            ratio = slow["gateway"]["rps"] / slow["direct"]["rps"]
            added = slow["gateway"]["p99_ms"] - slow["direct"]["p99_ms"]
            check(
                f"200 ms upstream, c=100, {kind}: >= 95% of direct throughput", ratio >= 0.95, f"{ratio:.1%}"
            )
            check(f"200 ms upstream, c=100, {kind}: <= 10 ms added at p99", added <= 10, f"{added:+.2f} ms")
    for kind in ("json", "stream"):
        cpus = [
            c["gateway"]["cpu_us_per_request"]
            for (lat, k, n), c in by.items()
            if lat == 0.0 and k == kind and n >= 10 and c["gateway"]["cpu_us_per_request"]
        ]
        if cpus:
            lines.append(
                f"  [info] {kind}: one core's capacity from CPU per request (instant upstream, c>=10): "
                f"{1e6 / min(cpus):.0f} rps at best ({min(cpus)} us/request), {1e6 / max(cpus):.0f} at worst"
            )
    rss = max(max(ph["rss_idle_mb"], ph["rss_after_load_mb"]) for ph in results["phases"])
    check("gateway resident memory < 250 MB", rss < 250, f"{rss} MB (max seen)")
    return lines
