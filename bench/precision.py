"""fp32 against int8 in `make bench`: the real network of `make weights` and its int8 version, measured in the
same run as the rest: the engine on the job's layout, the job end to end at the two largest sizes, and the
job's featurize stage on ~3 MB phone photos."""

from __future__ import annotations


def _pair(fp32: float | None, int8: float | None, fmt: str = "{:.1f}") -> str:
    if fp32 is None or int8 is None:
        return "| | |"
    return f"| {fmt.format(fp32)} | {fmt.format(int8)} | {int8 / fp32:.2f} |"


def _end_to_end(results: dict) -> dict[int, dict[str, dict]]:
    """images -> {"fp32": run, "int8": run} for the sizes measured with both."""
    runtime, by_size = results["args"]["runtime"], {}
    for run in results["pipeline"]:
        if run["runtime"] != runtime or run.get("variant") not in ("", "int8"):
            continue
        by_size.setdefault(run["counts"]["listed"], {})["int8" if run.get("variant") == "int8" else "fp32"] = run
    return {n: pair for n, pair in sorted(by_size.items()) if len(pair) == 2}


def precision_table(results: dict) -> list[str]:
    """The int8 section of the generated block in docs/benchmarks.md (empty when the run has no int8)."""
    workers = results["raw"].get("precision_workers")
    if not workers:
        return []
    lines = ["fp32 against int8 (`model.precision`; the real network and the int8 model `make weights` builds, "
             "static QDQ quantization), measured in this run:", "",
             "| measurement | fp32 | int8 | int8 / fp32 |", "| --- | ---: | ---: | ---: |",
             f"| raw ONNX Runtime, {results['raw']['threads']} single-thread processes (the job's layout), best batch, "
             f"img/s {_pair(workers['fp32']['img_s'], workers['int8']['img_s'])}"]
    for n, pair in _end_to_end(results).items():
        fp32, int8 = pair["fp32"], pair["int8"]
        lines.append(f"| end to end, {n:,} images, img/s {_pair(fp32['img_s_end_to_end'], int8['img_s_end_to_end'])}")
        lines.append(f"| featurize stage, {n:,} images, img/s "
                     + _pair(n / fp32["stage_seconds"]["featurize"], n / int8["stage_seconds"]["featurize"]))
        lines.append(f"| worker peak MiB, {n:,} images "
                     + _pair(fp32["memory"]["worker_peak_mib"], int8["memory"]["worker_peak_mib"], "{:.0f}"))
    phone = {r.get("precision", "fp32"): r for r in (results.get("phone") or {}).get("runs", [])
             if r["jpeg_draft"] and r["set"].startswith("12 MP, 3")}
    if len(phone) == 2:
        lines.append(f"| featurize stage, 12 MP photos of ~3 MB (draft), img/s "
                     + _pair(phone["fp32"]["featurize_img_s"], phone["int8"]["featurize_img_s"]))
    by_batch = ", ".join(f"{b}: {workers['fp32']['by_batch_img_s'][b]:.0f} / {v:.0f}"
                         for b, v in workers["int8"]["by_batch_img_s"].items())
    return lines + ["", f"Job's layout by inference batch (fp32 / int8 img/s): {by_batch}."]
