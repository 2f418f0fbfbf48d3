"""The command line as a user runs it: a subprocess, real files."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*args, env=None):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "wlm", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=e)


def test_help_for_every_command():
    for cmd in ("download", "train", "eval", "generate"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and "usage: python -m wlm " + cmd in r.stdout


def test_eval_json(tiny_checkpoint, tiny_dir):
    r = run("eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "200", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"model", "size_mb", "loss", "ppl", "seconds", "tokens_per_s", "tokens"} <= set(out)
    assert out["model"] == "fp32" and out["tokens"] == 199 and out["loss"] > 0
    q = json.loads(run("eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "200",
                       "--quantize", "--json").stdout)
    assert q["model"] == "qint8" and q["size_mb"] < out["size_mb"]
    assert abs(q["loss"] - out["loss"]) < 0.05


def test_eval_reads_wlm_data(tiny_checkpoint, tiny_dir):
    r = run("eval", "--checkpoint", str(tiny_checkpoint), "--max-tokens", "50", "--json", env={"WLM_DATA": str(tiny_dir)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tokens"] == 49


def test_generate_text_and_json(tiny_checkpoint):
    a = run("generate", "--checkpoint", str(tiny_checkpoint), "--words", "12", "--seed", "5", "--prompt", "w1 zebra")
    b = run("generate", "--checkpoint", str(tiny_checkpoint), "--words", "12", "--seed", "5", "--prompt", "w1 zebra",
            "--json")
    assert a.returncode == 0 and b.returncode == 0
    out = json.loads(b.stdout)
    assert len(out["words"]) == 12 and out["unknown"] == ["zebra"]
    assert a.stdout.split() == [w for w in out["words"] if w != "<eos>"]
    assert "zebra" in a.stderr


@pytest.mark.parametrize("args,message", [
    (("generate", "--words", "0"), "expected a positive integer"),
    (("generate", "--seed", "-1"), "expected a whole number from 0 to 2**63-1"),
    (("generate", "--seed", str(2**63)), "expected a whole number from 0 to 2**63-1"),
    (("generate", "--variant", "qint9"), "invalid choice"),
    (("generate", "--words", "5000"), "words must be an integer from 1 to 1000"),
    (("generate", "--temperature", "-2"), "expected a finite number >= 0"),
    (("eval", "--split", "dev"), "invalid choice"),
    (("eval", "--checkpoint", "/no/such.safetensors"), "checkpoint not found"),
    (("eval", "--data", "/no/such/dir"), "WikiText-2 not found"),
    (("train", "--data", "/no/such/dir", "--dry-run"), "WikiText-2 not found"),
])
def test_bad_arguments_give_one_line_and_nonzero_exit(args, message, tiny_checkpoint):
    args = list(args)
    if args[0] in ("generate", "eval") and "--checkpoint" not in args:
        args += ["--checkpoint", str(tiny_checkpoint)]
    r = run(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert message in r.stderr.strip().splitlines()[-1]


def test_bench_json(tiny_checkpoint, tiny_dir):
    r = run("bench", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "100",
            "--words", "10", "--json", "--block-chunks", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [row["model"] for row in out["rows"]] == ["fp32", "qint8"]
    assert set(out["generation"]) == {"fp32", "qint8"} and out["machine"]["threads"] == 1
    t = out["timing"]                              # the measurement's wall time next to the models' own
    assert len(t["wall_s"]) == len(t["models_s"]) == 1 and t["wall_s"][0] >= t["models_s"][0] > 0
    assert t["ratio"]["median"] == pytest.approx(t["wall_s"][0] / t["models_s"][0])
    fp, q = out["rows"]                            # every figure with its error or interval
    assert {"loss_se", "loss_change_se", "speedup_ci"} <= set(q) and q["loss_se"] > 0 and q["loss_change_se"] > 0
    assert q["speedup_ci"][0] <= q["speedup"] <= q["speedup_ci"][1] and fp["loss_change_se"] == 0
    assert all(q["agreement"][k] >= 0 for k in ("kl_mean_se", "top1_se", "overlap_se", "dp_rms_se"))
    assert len(t["ratio_ci"]) == 2


def test_bench_save_then_results(tiny_checkpoint, tiny_dir, tmp_path):
    r = run("bench", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "200",
            "--words", "0", "--variants", "qint8,qint8-per-channel", "--save", "--cache", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "| qint8-per-channel | torch |" in r.stdout and "W1 tokens/s" in r.stdout
    stored = list((tmp_path / "results").glob("measure-*.json"))
    assert len(stored) == 1
    out = run("results", "--cache", str(tmp_path))
    assert out.returncode == 0 and "200 tokens, 1 thread(s)" in out.stdout and "qint8-per-channel" in out.stdout
    assert "no stored measurements" in run("results", "--cache", str(tmp_path / "none")).stdout
    assert " ± " in r.stdout and "batch means over blocks of" in r.stdout
    bad = run("bench", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--variants", "qint9")
    assert bad.returncode == 2 and "unknown variant(s) qint9" in bad.stderr


def test_bench_alone_prints_a_model_alone_and_in_company(tiny_checkpoint, tiny_dir):
    r = run("bench", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "150",
            "--words", "0", "--variants", "qint8,fp16", "--alone", "qint8", "--repeats", "2")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("qint8: "))
    assert "tokens/s in company" in line and "alone; in company / alone" in line and "of 2 interleaved" in line
    bad = run("bench", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--alone", "fp16")
    assert bad.returncode == 2 and "--alone must name measured models" in bad.stderr


def test_eval_prints_the_intervals(tiny_checkpoint, tiny_dir):
    r = run("eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--quantize")
    assert r.returncode == 0, r.stderr
    assert "loss change vs fp32 on the same tokens: " in r.stdout and r.stdout.count(" ± ") >= 8
    q = json.loads(run("eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--quantize",
                       "--json").stdout)
    assert q["loss_se"] > 0 and q["loss_change_se"] > 0 and q["agreement"]["kl_mean_se"] > 0


def test_inspect_json_text_and_a_derived_recipe(tiny_checkpoint, tiny_dir, tmp_path):
    r = run("inspect", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "200",
            "--variant", "qint8-per-channel", "--cache", str(tmp_path), "--json", "--derive-recipe",
            "--budget-mb", "1000", "--recipe-out", str(tmp_path / "recipe.json"), "--save-to", str(tmp_path / "res"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    keys = {"module", "weight_sqnr_db", "shadow_sqnr_db", "running_sqnr_db", "alone_dloss", "alone_kl", "alone_top1"}
    assert [m["module"] for m in out["modules"]][0] == "embedding" and all(keys <= set(m) for m in out["modules"])
    assert set(out["time"]) == {"fp32", "qint8-per-channel"} and out["tokens"] == 199
    assert json.loads((tmp_path / "recipe.json").read_text())["plan"] == out["recipe"]["plan"]
    assert len(list((tmp_path / "res").glob("inspect-*.json"))) == 1
    text = run("inspect", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "100",
               "--cache", str(tmp_path))
    assert text.returncode == 0 and "sensitivity (one part quantized" in text.stdout and "lstm.0" in text.stdout
    bad = run("inspect", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--variant", "fp32")
    assert bad.returncode == 2 and "--variant must be one of" in bad.stderr
    assert all("alone_dloss_se" in m and "alone_kl_se" in m for m in out["modules"])
    assert "largest first" in text.stdout


def test_a_derived_recipe_goes_to_a_new_file_unless_told_to_replace_the_shipped_one(tiny_checkpoint, tiny_dir,
                                                                                    tmp_path):
    from wlm.recipe import RECIPE_FILE, plan_sha256
    shipped = RECIPE_FILE.read_bytes()
    common = ("inspect", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--max-tokens", "100",
              "--cache", str(tmp_path), "--derive-recipe", "--budget-mb", "1000")
    refused = run(*common, "--recipe-out", str(RECIPE_FILE))
    assert refused.returncode == 2 and "add --replace-recipe" in refused.stderr
    r = run(*common, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    written = out["recipe_file"]
    try:
        assert written != str(RECIPE_FILE) and RECIPE_FILE.read_bytes() == shipped
        assert written.endswith(f"qint8-mixed-{plan_sha256(out['recipe']['plan'])[:12]}.json")
        assert json.loads(open(written).read())["checkpoint_sha256"] == out["recipe"]["checkpoint_sha256"]
    finally:
        os.unlink(written)
    assert RECIPE_FILE.read_bytes() == shipped
    bad = run("inspect", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dir), "--replace-recipe")
    assert bad.returncode == 2 and "add --derive-recipe" in bad.stderr
