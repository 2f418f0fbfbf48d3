"""python -m wlm load: a bounded load test of the demo on loopback."""
from __future__ import annotations

import json

from .common import positive_int

HELP = "load-test the demo on loopback: concurrent generate and measure users"


def add_arguments(ld) -> None:
    ld.add_argument("--url", help="a running demo on this machine (default: launch demo.py on a free port)")
    ld.add_argument("--pid", type=int, help="the server's process id, for its memory (with --url)")
    ld.add_argument("--generate-users", type=int, default=16, help="concurrent /generate requests (0..64)")
    ld.add_argument("--measure-users", type=int, default=2, help="concurrent /measure requests (0..8)")
    ld.add_argument("--words", type=positive_int, default=100)
    ld.add_argument("--slice", default="5,000 tokens", help="test tokens each measure user asks for")
    ld.add_argument("--deadline", type=float, default=600.0, help="seconds before unfinished requests are left")
    ld.add_argument("--full-split-wait", action="store_true",
                    help="then time one Generate sent while a full-split measurement runs")
    ld.add_argument("--loop-seconds", type=float, default=0,
                    help="instead: the generate users call Generate in a loop for this long while one measurement "
                         "(--slice) runs; prints Generate p50/p95 and when the measurement finished")
    ld.add_argument("--json", action="store_true")


def run(args) -> int:
    from ..load import main_load
    out = main_load(args)
    if args.json:
        print(json.dumps(out))
        return 0
    if args.loop_seconds:
        g, m = out["generate"], out["measure"]
        fmt = (lambda v: f"{v:.1f} s" if v is not None else "-")
        print(f"{args.generate_users} users calling Generate ({args.words} words) in a loop for {args.loop_seconds:.0f} s,"
              f" one Measure ({args.slice}) sent at the start")
        print(f"Generate: {g['ok']} answered, {g['errors']} errors, {g['refusals']} refused; p50 {fmt(g['p50_s'])}, "
              f"p95 {fmt(g['p95_s'])}")
        done = out["measure_done_at_s"]
        print(f"Measure: {'finished after ' + fmt(done) if done is not None else 'did not finish'}"
              f"{' (while the Generates still ran)' if out['measure_finished_in_loop'] else ''}; "
              f"{m['errors']} errors")
        for e in g["first_errors"] + m["first_errors"]:
            print(f"  error: {e}")
        if out["rss_mb_before"] is not None:
            print(f"server resident memory: {out['rss_mb_before']:.0f} MB before, {out['rss_mb_after']:.0f} MB after")
        return 0
    print(f"{args.generate_users} generate users ({args.words} words) + {args.measure_users} measure users "
          f"({args.slice}), one request each, at once; wall {out['wall_s']:.1f} s, unfinished {out['unfinished']}")
    print(f"{'endpoint':<10} {'ok':>4} {'errors':>7} {'refused':>8} {'p50 s':>8} {'p95 s':>8}")
    for name in ("generate", "measure"):
        r = out[name]
        fmt = (lambda v: f"{v:8.2f}" if v is not None else f"{'-':>8}")
        print(f"{name:<10} {r['ok']:>4} {r['errors']:>7} {r['refusals']:>8} {fmt(r['p50_s'])} {fmt(r['p95_s'])}")
        for e in r["first_errors"]:
            print(f"  error: {e}")
    if out["rss_mb_before"] is not None:
        print(f"server resident memory: {out['rss_mb_before']:.0f} MB before, {out['rss_mb_after']:.0f} MB after")
    if "generate_wait_during_full_split_s" in out:
        print(f"a Generate sent while a full-split measurement ran was answered in "
              f"{out['generate_wait_during_full_split_s']:.1f} s")
    return 0
