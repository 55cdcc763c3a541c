"""The daily-run and precision tables of docs/sizing.md (called by sizing.py, from the same benchmark result).

Daily runs: the photos grow by GROWTH a day from START_IMAGES. A full run featurizes all of them every
day; an incremental run featurizes the day's new photos and carries the rest (listing, the store's
join, PCA over all images, the published table), at the per-image carry cost the benchmark's
incremental run measured.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: The daily-run table: photos on day 0, growth per day, the days shown, the cluster.
START_IMAGES = 1_000_000
GROWTH = 0.01
DAYS = (1, 30, 365)
DAILY_CORE_NODES = 4


def _job_s(run: dict) -> float:
    return run["seconds"] - run["stage_seconds"].get("session", 0.0)


def carry_s_per_image_core(results: dict, fixed_s: float, per_core_img_s: float) -> float | None:
    """CPU seconds per stored image per core an incremental run spends on what it does not featurize."""
    inc = results.get("incremental")
    if not inc:
        return None
    cores, run = int(results["args"]["cores"]), inc["incremental"]
    images, new = run["counts"]["listed"], run["store"]["featurized"]
    rest = _job_s(run) - fixed_s - new / (per_core_img_s * cores)
    return max(rest, 0.0) * cores / images


def images_on(day: int) -> float:
    return START_IMAGES * (1 + GROWTH) ** day


def daily_table(work, carry: float, estimate: Callable, duration: Callable, money: Callable, label: str) -> list[str]:
    """Full against incremental runs on days of growth, on one cluster, for the workload ``work``."""
    lines = [f"| day | photos | new that day | full run: wall time | full: cost (USD) | incremental: wall time "
             f"| incremental: cost (USD) |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for day in DAYS:
        total, new = images_on(day), images_on(day) - images_on(day - 1)
        full = estimate(work, int(total), DAILY_CORE_NODES)
        featurized = estimate(work, int(new), DAILY_CORE_NODES)
        carry_h = total * carry / featurized.slots / 3600
        wall_h = featurized.wall_h + carry_h
        usd = featurized.usd * wall_h / featurized.wall_h  # the cluster is billed for the longer run
        lines.append(f"| {day} | {total:,.0f} | {new:,.0f} | {duration(full.wall_h)} | {money(full.usd)} | "
                     f"{duration(wall_h)} | {money(usd)} |")
    year_full = sum(estimate(work, int(images_on(d)), DAILY_CORE_NODES).usd for d in range(1, 366))
    year_inc = 0.0
    for d in range(1, 366):
        part = estimate(work, int(images_on(d) - images_on(d - 1)), DAILY_CORE_NODES)
        year_inc += part.usd * (part.wall_h + images_on(d) * carry / part.slots / 3600) / part.wall_h
    lines += ["", f"Over the year ({label}): full runs {money(year_full)} USD, incremental runs {money(year_inc)} USD."]
    return lines


def daily_section(results: dict, rate, work, phone, estimate, duration, money) -> str:
    carry = carry_s_per_image_core(results, rate.fixed_s, rate.per_core_img_s)
    if carry is None:
        return ""
    inc = results["incremental"]
    lines = [
        "**Daily runs on growing data**",
        "",
        (f"{START_IMAGES:,} photos on day 0, {GROWTH:.0%} more every day, one run a day on {DAILY_CORE_NODES} core "
         f"nodes. A full run featurizes every photo; an incremental run (`store.incremental: true`) featurizes the "
         f"day's new photos and spends {carry * 1000:.2f} ms per stored photo per core on the rest (listing, the "
         f"store's join, PCA over all photos, the published table): the benchmark's incremental run on "
         f"{inc['incremental']['counts']['listed']:,} images with {inc['added']} new, less its fixed seconds and "
         f"the new images at the end-to-end rate. Both pay the cluster's start-up every day."),
    ]
    if phone:
        lines += ["", f"Phone photos (~{phone.work.megabytes:.1f} MB):", "",
                  *daily_table(phone.work, carry, estimate, duration, money, "phone photos")]
    return "\n".join(lines)


def _fitted_per_core(runs: list[dict], cores: int) -> float:
    slope, _ = np.polyfit(np.array([r["counts"]["listed"] for r in runs], dtype=float),
                          np.array([_job_s(r) for r in runs]), 1)
    return 1.0 / slope / cores


def precision_section(results: dict, rate, estimate, money, workload, phone_rate) -> str:
    """Cost per million photos with fp32 and with int8, from the benchmark's runs of both."""
    runs = [r for r in results["pipeline"] if r["runtime"] == "onnxruntime"]
    int8 = [r for r in runs if r.get("variant") == "int8"]
    if len(int8) < 2:
        return ""
    sizes = sorted({r["counts"]["listed"] for r in int8})
    fp32 = [r for r in runs if not r.get("variant") and r["counts"]["listed"] in sizes]
    cores, rows = int(results["args"]["cores"]), []
    for name, chosen in (("fp32", fp32), ("int8", int8)):
        thumbs = estimate(workload(_fitted_per_core(chosen, cores), rate.fixed_s), 1_000_000, 4)
        phone = phone_rate(results, rate, name)
        phone_cells = "| |"
        if phone:
            e = estimate(phone.work, 1_000_000, 4)
            phone_cells = f"| {phone.work.per_core_img_s:.1f} | {money(e.usd)} |"
        rows.append(f"| {name} | {_fitted_per_core(chosen, cores):.0f} | {thumbs.cpu_h * 60:.0f} min | "
                    f"{thumbs.read_h * 60:.0f} min | {money(thumbs.usd)} {phone_cells}")
    return "\n".join([
        "**fp32 and int8** (`model.precision`), 1,000,000 photos per run on 4 core nodes. 100x100: the per-core "
        f"rate fitted over each precision's runs at {', '.join(f'{n:,}' for n in sizes)} images in the same "
        "benchmark; phone photos: each precision's featurize stage on the phone set, as in the table above.", "",
        "| precision | 100x100: img/s per core | 100x100: featurize CPU | 100x100: S3 reads | 100x100: cost per "
        "million (USD) | phone: img/s per core | phone: cost per million (USD) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |", *rows, "",
        "On 100x100 photos the assumed S3 read time per file, not the CPU, bounds both precisions: int8 halves "
        "the CPU and the cost stays the same until reads are faster than assumed (docs/emr.md: measure it on "
        "the first run). On phone photos decoding dominates the CPU and int8 saves what its share of it is."])
