#!/usr/bin/python3
"""plot.py — PNG plots of the benchmark figures, drawn by gnuplot.

    bench/plot.py [--bench FILE] [--compare DIR] [--out DIR]

--bench FILE (default bench/out/latest.json, what `make bench` wrote):
  throughput-by-concurrency.png  non-streamed jobs/s and streamed chunks/s
                                 (/10) against chatqd --concurrency;
  p99-by-concurrency.png         job latency p99 (start to finish) against it.
  With one concurrency the lines are single points: CHATQ_BENCH_CONCURRENCY
  ="16 64 256" makes the sweep.
--compare DIR (RESULTS_DIR of shared/bench/compare.sh, as bench/compare.sh
  sets it): the medians of its *compare.jsonl per system and workload, and
  the wrk baseline of wrk.jsonl when there is one:
  compare-throughput.png         jobs/s, the peer and chatq side by side (the
                                 medians), labelled with the median of the
                                 rounds' chatq/peer ratios (each round runs
                                 the two one after the other, so the load of
                                 the moment moves both alike), and wrk's
                                 requests/s beside the slow workload;
  compare-memory.png             peak RSS of the workers, MB.
--out DIR: where the PNGs go (default: beside the input).

Needs gnuplot (Debian's gnuplot-nox, which bench/run.sh installs); without
it, says so and exits 1. The data files gnuplot reads are written next to
the PNGs (*.dat), so a plot can be redrawn or checked by hand."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def gnuplot(script, out_dir):
    r = subprocess.run(["gnuplot"], input=script, text=True, cwd=out_dir,
                       capture_output=True)
    if r.returncode != 0:
        sys.exit("plot: gnuplot failed: " + r.stderr.strip()[-500:])


TERMINAL = "set terminal pngcairo size 900,520 font 'DejaVu Sans,10'\n"


def plot_bench(path, out):
    with open(path) as f:
        doc = json.load(f)
    by = doc.get("medians_by_concurrency") or {str(doc["settings"]["concurrency"]): doc["medians"]}
    rows = []
    for c in sorted(by, key=int):
        j, s = by[c].get("json") or {}, by[c].get("sse") or {}
        rows.append((int(c), j.get("jobs_per_s"), (s.get("chunks_per_s") or 0) / 10 or None,
                     s.get("jobs_per_s"), j.get("job_ms_p99"), s.get("job_ms_p99")))
    dat = os.path.join(out, "by-concurrency.dat")
    with open(dat, "w") as f:
        f.write("# concurrency json_jobs_per_s sse_chunks_per_s/10 sse_jobs_per_s "
                "json_p99_ms sse_p99_ms\n")
        for r in rows:
            f.write(" ".join("NaN" if v is None else "%g" % v for v in r) + "\n")
    m = doc.get("machine", {})
    title = "chatq, %s workers, %s (%s CPUs), median of %s runs, %s" % (
        doc["settings"]["workers"], m.get("cpu_model", "?"), m.get("nproc", "?"),
        doc["settings"]["runs"], doc.get("time", ""))
    common = (TERMINAL + "set grid\nset key top left\nset logscale x 2\n"
              "set xlabel 'chatqd --concurrency (jobs in flight per worker)'\n"
              "set xrange [*:*]\nset offsets graph 0.05, graph 0.05, graph 0.1, 0\n")
    gnuplot(common +
            "set output 'throughput-by-concurrency.png'\n"
            "set title \"Throughput by concurrency\\n{/*0.8 %s}\"\n"
            "set ylabel 'per second'\nset yrange [0:*]\n"
            "plot 'by-concurrency.dat' u 1:2 w lp lw 2 pt 7 t 'non-streamed jobs/s', "
            "'' u 1:3 w lp lw 2 pt 5 t 'streamed chunks/s / 10', "
            "'' u 1:4 w lp lw 2 pt 9 t 'streamed jobs/s'\n" % title, out)
    gnuplot(common +
            "set output 'p99-by-concurrency.png'\n"
            "set title \"Job latency p99 (start to finish) by concurrency\\n{/*0.8 %s}\"\n"
            "set ylabel 'ms'\nset yrange [0:*]\n"
            "plot 'by-concurrency.dat' u 1:5 w lp lw 2 pt 7 t 'non-streamed p99', "
            "'' u 1:6 w lp lw 2 pt 5 t 'streamed (20 chunks) p99'\n" % title, out)
    return ["throughput-by-concurrency.png", "p99-by-concurrency.png"]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def compare_medians(d):
    """{(mode, n, w, c): {system: {"jobs_per_s", "rss_mb", "runs"}}} from the
    *compare.jsonl files of d, and the wrk requests/s by mode."""
    runs = {}
    for name in sorted(os.listdir(d)):
        if not name.endswith("compare.jsonl"):
            continue
        with open(os.path.join(d, name)) as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                key = (r["mode"], r["jobs"], r["workers"], r["concurrency"])
                runs.setdefault(key, {}).setdefault(r["system"], []).append(r)
    med = {}
    for key, systems in runs.items():
        med[key] = {s: {"jobs_per_s": median([r.get("jobs_per_s") for r in rs]),
                        "rss_mb": median([r.get("peak_rss_mb_total_workers") for r in rs]),
                        "runs": len(rs)} for s, rs in systems.items()}
        # chatq over the peer in each round (the i-th run of each, which ran
        # one after the other): the machine's load moves both alike
        cq = [r.get("jobs_per_s") for r in systems.get("chatq", [])]
        peer = next(([r.get("jobs_per_s") for r in rs] for s, rs in systems.items() if s != "chatq"),
                    [])
        med[key]["round_ratio"] = median([c / p for c, p in zip(cq, peer) if c and p])
    wrk = {}
    p = os.path.join(d, "wrk.jsonl")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                if line.startswith("{"):
                    r = json.loads(line)
                    wrk.setdefault(r["mode"], []).append(r.get("requests_per_s"))
    return med, {m: median(v) for m, v in wrk.items()}


def plot_compare(d, out):
    med, wrk = compare_medians(d)
    if not med:
        sys.exit("plot: no *compare.jsonl lines in " + d)
    order = {"fast": 0, "sse": 1, "slow": 2}
    keys = sorted(med, key=lambda k: (order.get(k[0], 9), k[3]))
    dat = os.path.join(out, "compare.dat")
    with open(dat, "w") as f:
        f.write("# workload peer_jobs_per_s chatq_jobs_per_s ratio(median of the rounds' ratios) "
                "peer_rss_mb chatq_rss_mb wrk_requests_per_s\n")
        for k in keys:
            cq = med[k].get("chatq", {})
            peer = next((v for s, v in med[k].items() if s not in ("chatq", "round_ratio")),
                        {})  # "bullmq+openai"
            pj, cj = peer.get("jobs_per_s"), cq.get("jobs_per_s")
            ratio = med[k].get("round_ratio")
            w = wrk.get(k[0]) if k[0] == "slow" else None
            vals = [pj, cj, ratio, peer.get("rss_mb"), cq.get("rss_mb"), w]
            f.write('"%s C=%d" ' % (k[0], k[3]) +
                    " ".join("NaN" if v is None else "%g" % v for v in vals) + "\n")
    runs = max(v.get("runs", 0) for m in med.values() for v in m.values() if isinstance(v, dict))
    sub = ("medians of %d runs per bar, round-robin; the label: median of the rounds' "
           "chatq/peer ratios" % runs)
    bars = (TERMINAL + "set grid ytics\nset key top right\nset style data histograms\n"
            "set style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
            "set boxwidth 0.9\nset yrange [0:*]\nset offsets 0, 0, graph 0.12, 0\n")
    # gnuplot refuses a histogram whose first series has no point: the
    # peer's and wrk's series only when they were measured (SKIP_PEER=1)
    has_peer = any(next((v for s, v in med[k].items() if s not in ("chatq", "round_ratio")), None)
                   for k in keys)
    has_wrk = bool(wrk.get("slow"))
    peer_thr = "'' u 2 t 'BullMQ + openai SDK (peer)' lc rgb '#999999', " if has_peer else ""
    peer_mem = "'' u 5 t 'BullMQ + openai SDK (peer)' lc rgb '#999999', " if has_peer else ""
    wrk_thr = "'' u 7 t 'wrk on the upstream alone (slow)' lc rgb '#ff7f0e', " if has_wrk else ""
    labels = ("'' u ($0):($3):(sprintf('%.1fx', $4)) w labels offset 2.2,0.8 notitle"
              if has_peer else "'' u ($0):($3) w labels notitle offset 0,0.8 font ',1'")
    gnuplot(bars +
            "set output 'compare-throughput.png'\n"
            "set title \"chatq and the BullMQ peer: jobs/s per workload\\n{/*0.8 %s}\"\n"
            "set ylabel 'jobs/s'\n"
            "plot 'compare.dat' u (0):xtic(1) notitle lc rgb '#ffffff', %s"
            "'' u 3 t 'chatq' lc rgb '#1f77b4', %s%s\n" % (sub, peer_thr, wrk_thr, labels), out)
    gnuplot(bars +
            "set output 'compare-memory.png'\n"
            "set title \"Peak RSS of the worker processes, MB\\n{/*0.8 %s}\"\n"
            "set ylabel 'MB'\n"
            "plot 'compare.dat' u (0):xtic(1) notitle lc rgb '#ffffff', %s"
            "'' u 6 t 'chatq' lc rgb '#1f77b4'\n" % ("medians of %d runs per bar" % runs, peer_mem),
            out)
    return ["compare-throughput.png", "compare-memory.png"]


def main():
    ap = argparse.ArgumentParser(description="PNG plots of the benchmark figures")
    ap.add_argument("--bench", help="bench JSON (default bench/out/latest.json)")
    ap.add_argument("--compare", help="RESULTS_DIR of compare.sh")
    ap.add_argument("--out", help="directory for the PNGs")
    a = ap.parse_args()
    if not shutil.which("gnuplot"):
        sys.exit("plot: gnuplot is missing (apt-get install gnuplot-nox)")
    made = []
    if a.compare:
        out = a.out or a.compare
        os.makedirs(out, exist_ok=True)
        made += [os.path.join(out, p) for p in plot_compare(a.compare, out)]
    if a.bench or not a.compare:
        path = a.bench or os.path.join(HERE, "out", "latest.json")
        out = a.out or os.path.dirname(os.path.abspath(path))
        os.makedirs(out, exist_ok=True)
        made += [os.path.join(out, p) for p in plot_bench(path, out)]
    for p in made:
        print("plot: " + os.path.relpath(p))


if __name__ == "__main__":
    main()
