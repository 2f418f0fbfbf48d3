"""wlm.report: the measured tables come from the stored records, and the README's and
docs/results.md's copies still say what the records say."""
import subprocess
import sys

from tests.conftest import ROOT, SHIPPED_CHECKPOINT
import pytest

from wlm.report import short_table

shipped = pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint in data/")


def command(*args) -> str:
    return subprocess.run([sys.executable, "-m", "wlm", "results", "--markdown", *args], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


@shipped
def test_the_readme_table_is_the_commands():
    table = command("--short").strip()
    assert table.count("\n") >= 3 and table in (ROOT / "README.md").read_text()


@shipped
def test_docs_results_is_the_commands():
    assert (ROOT / "docs" / "results.md").read_text() == command(), \
        "docs/results.md is not what `python -m wlm results --markdown` prints: run it again"


def test_a_variant_without_a_speed_claim_says_so():
    agreement = {"top1": 0.95, "kl_mean": 0.004, "kl_median": 0.0, "kl_p99": 0.0, "overlap": 0.97,
                 "words_before_parting": 30.0, "dp_mean": 0.0, "dp_rms": 0.0, "kl_mean_se": 0.0001, "top1_se": 0.001}
    row = dict(size_mb=100.0, modules_mb={}, loss=5.0, ppl=148.4, seconds=10.0, tokens_per_s=1000.0, tokens=10_000,
               speedup=1.0, loss_change=0.0)
    record = {"rows": [{**row, "model": "fp32"},
                       {**row, "model": "lowbit-mixed", "size_mb": 17.5, "loss_change": 0.004, "loss_change_se": 0.001,
                        "speedup": 0.98, "speedup_ci": [0.95, 1.01], "agreement": agreement}],
              "no_speed": ["lowbit-mixed"]}
    table = short_table(record)
    assert "| lowbit-mixed | 17.5 | +0.0040 ± 0.0010 | 0.00400 ± 0.00010 | 0.950 ± 0.001 | no speed claimed |" in table
