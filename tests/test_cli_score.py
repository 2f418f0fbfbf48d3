"""python -m wlm score (wlm.commands.score): the page's "Your text" on the command line."""
import argparse
import json

import pytest

from wlm.cli import build_parser
from wlm.commands.score import run as cli_main


def namespace(checkpoint, **kw):
    return argparse.Namespace(**{"variant": "qint8", "text": None, "file": None, "json": False,
                                 "checkpoint": str(checkpoint), "cache": None, "threads": 1, **kw})


def test_cli_text_and_file(tiny_checkpoint, tmp_path, capsys):
    text = "w1 w2 , w3 zebra w4 ."
    assert cli_main(namespace(tiny_checkpoint, text=text, json=True)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] == ["w1", "w2", ",", "w3", "<unk>", "w4", "."] and out["unknown"] == ["zebra"]
    assert out["variant"] == "qint8"
    f = tmp_path / "text.txt"
    f.write_text(text + "\n", encoding="utf8")
    assert cli_main(namespace(tiny_checkpoint, file=str(f), json=True)) == 0
    assert json.loads(capsys.readouterr().out)["models"] == out["models"]
    assert cli_main(namespace(tiny_checkpoint, file=str(f))) == 0
    report = capsys.readouterr().out
    assert "qint8" in report and f"{out['models']['fp32']['ppl']:.1f}" in report


def test_cli_needs_exactly_one_source(tiny_checkpoint, tmp_path):
    for kw in ({}, {"text": "w1", "file": str(tmp_path / "x")}):
        with pytest.raises(ValueError, match="exactly one of --text and --file"):
            cli_main(namespace(tiny_checkpoint, **kw))
    with pytest.raises(ValueError, match="text is empty"):
        cli_main(namespace(tiny_checkpoint, text=" "))


def test_the_command_line_parses_and_runs_it(tiny_checkpoint, capsys):
    parser = build_parser()
    args = parser.parse_args(["score", "--checkpoint", str(tiny_checkpoint), "--text", "w1 w2", "--json"])
    args.argv = []
    assert (args.variant, args.threads, args.cache) == ("qint8", 1, None)
    assert args.func(args) == 0 and json.loads(capsys.readouterr().out)["tokens"] == ["w1", "w2"]
    args = parser.parse_args(["score", "--file", "f.txt", "--variant", "fp16", "--threads", "2"])
    assert (args.file, args.variant, args.threads, args.json) == ("f.txt", "fp16", 2, False)
    for argv in (["score"], ["score", "--text", "a", "--file", "f.txt"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
