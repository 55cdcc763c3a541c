"""Phone photos in `make bench`: the files the app sends (12 MP JPEGs of ~3 MB, and ~30 MB ones).

Measured next to the 100x100 runs of bench/run_bench.py, in the same run: the job's featurize stage
with JPEG draft decoding (the default) and with full-size decoding (`featurize.jpeg_draft: false`),
the same two decoders without Spark (one single-thread process per core reading, decoding and
inferring: the job's ceiling), and the peak memory of the Python workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

#: name -> generate_phone_photos arguments: 12 MP JPEGs of ~3 MB and of ~1.3 MB (less sensor noise: a
#: well-lit scene), and ~30 MB files (48 MP, quality 98) for memory.
PHONE_SETS = {
    "12 MP, 3 MB": {"megapixels": 12.0, "quality": 90, "noise": 5.0},
    "12 MP, 1.3 MB": {"megapixels": 12.0, "quality": 90, "noise": 1.0},
    "30 MB": {"megapixels": 48.0, "quality": 98, "noise": 8.0},
}
#: The sets the decoders are compared on (with and without Spark).
TWELVE_MP = ("12 MP, 3 MB", "12 MP, 1.3 MB")


def _generate(task: tuple[str, int, str, dict]) -> list[str]:
    """One class's photos in a pool process (generating the same class alone gives the same files)."""
    from fruitfeat.phone_photos import generate_phone_photos
    from fruitfeat.sample_data import phone_subject

    name, count, root, options = task
    files = generate_phone_photos(Path(root), [phone_subject(name)], per_split={"Training": count, "Test": 0}, **options)
    return [str(f) for f in files]


def _link_copies(directory: Path, copies: int) -> None:
    """Each photo again ``copies - 1`` times under other names (hard links): a run long enough that the
    featurize stage's fixed seconds (a fresh JVM's first job, the workers' start) do not hide its rate,
    without drawing more photos (~1 s each). Decoding costs the same whichever photo a file holds."""
    for path in sorted(directory.rglob("*.jpg")):
        for copy in range(1, copies):
            os.link(path, path.with_name(f"c{copy}_{path.name}"))


def make_phone_sets(root: Path, counts: dict[str, int], cores: int, copies: int) -> dict[str, Path]:
    """``counts[name]`` distinct photos of each set in PHONE_SETS, spread over the sample classes; the
    12 MP sets hold each ``copies`` times."""
    from multiprocessing import get_context

    from fruitfeat.sample_data import KNOWN_CLASSES

    sets = {}
    for name, total in counts.items():
        if not total:
            continue
        target = root / name.replace(" ", "")
        per_class = [total // len(KNOWN_CLASSES) + (i < total % len(KNOWN_CLASSES)) for i in range(len(KNOWN_CLASSES))]
        tasks = [(cls, n, str(target), PHONE_SETS[name]) for cls, n in zip(KNOWN_CLASSES, per_class) if n]
        start = time.perf_counter()
        with get_context("fork").Pool(max(1, cores)) as pool:
            files = [f for chunk in pool.imap_unordered(_generate, tasks) for f in chunk]
        megabytes = sum(Path(f).stat().st_size for f in files) / 1e6
        print(f"[bench]   {len(files)} photos of {name} ({megabytes / len(files):.1f} MB each), "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        if name in TWELVE_MP:
            _link_copies(target, copies)
        sets[name] = target
    return sets


def _megabytes(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*.jpg")) / 1e6


def run_phone(sets: dict[str, Path], output: Path, args, log: Path, run_child: Callable, job_config: Callable) -> dict:
    """Per 12 MP set the decoders without Spark (on its distinct photos), then the job with each decoder;
    the job once on the ~30 MB set."""
    results: dict = {"engine": {}, "runs": []}
    for name in TWELVE_MP:
        print(f"[bench] {name} photos: read + decode + infer without Spark, draft and full decoding ...", flush=True)
        results["engine"][name] = run_child("decode_engine", {"images": str(sets[name]), "n": args.phone,
                                                              "image_size": args.image_size, "distinct": True}, log)
    plan = [(name, draft, "fp32") for name in TWELVE_MP for draft in (True, False)] + [("30 MB", True, "fp32")]
    if args.int8:
        plan.append((TWELVE_MP[0], True, "int8"))
    for name, draft, precision in (step for step in plan if step[0] in sets):
        print(f"[bench] fruitfeat end to end, {name} photos, jpeg_draft {draft}, {precision} ...", flush=True)
        config = job_config(sets[name], output, args, jpeg_draft=draft, precision=precision)
        config["pca"]["k"] = min(50, len(list(sets[name].rglob("*.jpg"))))  # a small set has fewer images than 50
        run = run_child("pipeline", {"config": config}, log)
        seconds = run["stage_seconds"]["featurize"]
        run.update({"set": name, "jpeg_draft": draft, "precision": precision, "megabytes": _megabytes(sets[name]),
                    "featurize_img_s": run["counts"]["listed"] / seconds})
        run["featurize_mb_s"] = run["megabytes"] / seconds
        print(f"[bench]   featurize {run['featurize_img_s']:.1f} img/s, {run['featurize_mb_s']:.0f} MB/s, "
              f"worker peak {run['memory']['worker_peak_mib']:.0f} MiB", flush=True)
        results["runs"].append(run)
    return results


def phone_table(results: dict) -> list[str]:
    """The phone-photo section of the generated block in docs/benchmarks.md."""
    phone = results.get("phone")
    if not phone:
        return []
    engine = phone["engine"]
    thumbs = [r for r in results["pipeline"] if r["runtime"] == results["args"]["runtime"] and not r.get("variant")]
    thumb = max(thumbs, key=lambda r: r["counts"]["listed"])
    thumb_fis = thumb["counts"]["listed"] / thumb["stage_seconds"]["featurize"]
    lines = [f"Phone photos (`fruitfeat.phone_photos`: 4:3 landscape and portrait, one in three stored sideways with "
             f"an EXIF orientation), featurize stage of the job against the same decoder without Spark "
             f"({results['args']['cores']} single-thread processes reading, decoding and inferring at batch 2):", "",
             "| images | decoder | photos | MB each | featurize img/s | featurize MB/s | without Spark img/s "
             "| job / without Spark | Arrow rows | worker peak MiB | vs 100x100 run |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| 100x100 | (either) | {thumb['counts']['listed']} | | {thumb_fis:.1f} | | | | "
             f"{thumb.get('featurize', {}).get('arrow_batch_rows', '')} | {thumb['memory']['worker_peak_mib']:.0f} | 1.00 |"]
    for run in (r for r in phone["runs"] if r.get("precision", "fp32") == "fp32"):
        decoder = "draft" if run["jpeg_draft"] else "full"
        n = run["counts"]["listed"]
        ceiling = engine[run["set"]].get(f"{decoder}_img_s") if run["set"] in engine else None
        versus = f"{run['featurize_img_s'] / ceiling:.2f}" if ceiling else ""
        lines.append(f"| {run['set']} | {decoder} | {n} | {run['megabytes'] / n:.1f} | {run['featurize_img_s']:.1f} | "
                     f"{run['featurize_mb_s']:.0f} | {f'{ceiling:.1f}' if ceiling else ''} | {versus} | "
                     f"{run['featurize']['arrow_batch_rows']} | {run['memory']['worker_peak_mib']:.0f} | "
                     f"{run['memory']['worker_peak_mib'] / thumb['memory']['worker_peak_mib']:.2f} |")
    lines.append("")
    for name, e in engine.items():
        lines.append(f"Without Spark, {name} ({e['images']} distinct photos): draft {e['draft_img_s']:.1f} img/s "
                     f"({e['draft_mb_s']:.0f} MB/s), full decoding {e['full_img_s']:.1f} img/s ({e['full_mb_s']:.0f} MB/s): "
                     f"draft decoding is {e['draft_img_s'] / e['full_img_s']:.1f}x.")
    return lines
