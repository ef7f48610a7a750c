"""Where a throughput run's time went, read from the coordinator's database afterwards.

    python3 attempt_timeline.py STATE_DIR/vitscale.db START_EPOCH_SECONDS

An attempt's row holds when the scheduler leased it (started_at) and when its exit report
arrived (ended_at), so its length is launch + mpirun + reap + report. Prints the attempt
lengths, how many ran at once, and how long a freed slot waited for its next lease.
"""
import sqlite3
import sys


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    db_path, start = sys.argv[1], float(sys.argv[2])
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT started_at, ended_at FROM attempts WHERE ended_at IS NOT NULL "
        "ORDER BY started_at").fetchall()
    attempts = db.execute("SELECT count(*) FROM attempts").fetchone()[0]
    jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    if not rows:
        print("    no finished attempts")
        return
    lengths = [end - begin for begin, end in rows]
    events = sorted([(b, 1) for b, _ in rows] + [(e, -1) for _, e in rows])
    running = peak = 0
    busy_time = 0.0
    last = events[0][0]
    for t, delta in events:
        busy_time += running * (t - last)
        last = t
        running += delta
        peak = max(peak, running)
    span = rows[-1][1] - rows[0][0] if rows else 0.0
    ends = sorted(e for _, e in rows)
    starts = sorted(b for b, _ in rows)
    # Slot hand-over: the n-th lease after the first `peak` waits for the (n - peak)-th exit.
    waits = [starts[i] - ends[i - peak] for i in range(peak, len(starts))]
    print(f"    {jobs} jobs, {attempts} attempts; first lease {rows[0][0] - start:.3f} s after "
          f"submission, last exit report {ends[-1] - start:.3f} s")
    print(f"    attempt lease->exit report: p50 {percentile(lengths, 0.5) * 1000:.0f} ms, "
          f"p90 {percentile(lengths, 0.9) * 1000:.0f} ms, max {max(lengths) * 1000:.0f} ms")
    print(f"    running at once: peak {peak}, mean {busy_time / span if span else 0:.1f}")
    if waits:
        print(f"    freed slot -> next lease: p50 {percentile(waits, 0.5) * 1000:.0f} ms, "
              f"p90 {percentile(waits, 0.9) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
