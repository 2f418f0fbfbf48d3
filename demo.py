"""Gradio app: fp32 and qint8 LSTM language models writing side by side, and a live
size / speed / loss panel. Layout and wiring only; the work is in wlm.app.

    python demo.py [--host H] [--port P] [--share] [--checkpoint F] [--threads N]
                   [--max-measure-model-tokens N]
"""
from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402

from wlm.app import (DEFAULT_INSPECT_SLICE, DEFAULT_SLICE, DEFAULT_VARIANT, INSPECT_SLICES, SLICES,  # noqa: E402
                     AppConfig, QuantDemo)
from wlm.inspectview import INSPECT_INTRO  # noqa: E402
from wlm.inspectview import OUTPUTS as INSPECT_OUTPUTS  # noqa: E402
from wlm.measureview import OUTPUTS as MEASURE_OUTPUTS  # noqa: E402
from wlm.scorecard import CSS as SCORECARD_CSS  # noqa: E402
from wlm.sidebyside import DEFAULT_PROMPT, EXAMPLES, LEGEND, MAX_PROMPT_CHARS  # noqa: E402
from wlm.score import MAX_SCORE_CHARS  # noqa: E402
from wlm.text import WORD_CSS  # noqa: E402
from wlm.yourtext import CSS as SCORE_CSS  # noqa: E402
from wlm.yourtext import EXAMPLES as SCORE_EXAMPLES  # noqa: E402
from wlm.threads import usable_cpus  # noqa: E402
from wlm.variants import REFERENCE  # noqa: E402
from wlm.checkpoint import CheckpointError  # noqa: E402
from wlm.generate import MAX_WORDS  # noqa: E402
from wlm.quantize import QuantizationError  # noqa: E402
from wlm.storage import app_paths  # noqa: E402

HERE = Path(__file__).resolve().parent
SPACES_LIVE_CAP = 40_000          # model-tokens (test tokens x models): ~20 s of a shared CPU per click at most
GENERATE_CONCURRENCY = 4          # Generates in progress at once; they take the CPU in turns (wlm.turns)
HEADER = """# fp32 vs int8: an LSTM language model
The PyTorch tutorial's LSTM word language model (WikiText-2, 33,278 words) against its int8 copies: what int8
buys and what it costs, measured. Pick a variant: the scorecard and the right-hand pane follow it."""
COUPLING = """Each model samples exactly from its own distribution, but both use the same random numbers
(Gumbel-max with one shared noise vector per word), so they write the same word whenever their distributions
allow: the texts stay together while the models agree, part where int8 really changed the choice, and can meet
again later. The right pane is the variant chosen at the top: by default the tutorial's
`torch.ao.quantization.quantize_dynamic` model (LSTM and decoder weights int8), or another recipe, or the ONNX
Runtime engine."""
ABOUT = """**The tutorial's own figures** (PyTorch, "Dynamic Quantization on an LSTM Word Language Model", its model
and machine, not measured here): 113.9 MB → 79.7 MB, test loss 5.167 → 5.168, evaluation 1.76x faster.
The scorecard above is this project's model, measured as the line under it says.

**Why the size stops at 1.43x for qint8:** the tutorial quantizes the LSTM and the decoder; the 68 MB embedding
stays fp32. `qint8-embedding-8bit` and `ort-int8` store it in 8 bits too.

Command line, tests and the measured tables: the README of this Space."""


def user_errors(fn):
    """Show ValueError (bad input) as a gr.Error message; the app keeps serving."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                raise gr.Error(str(e)) from None
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise gr.Error(str(e)) from None
    return call


def build_demo(app: QuantDemo) -> gr.Blocks:
    with gr.Blocks(title="wlm: fp32 vs int8 LSTM") as demo:
        gr.Markdown(HEADER)
        with gr.Row(equal_height=True):
            variant = gr.Dropdown(app.choices, value=DEFAULT_VARIANT, label="fp32 against (variant)",
                                  elem_id="variant", info=app.variants_note() or None, scale=3, min_width=200)
            gr.DuplicateButton("Duplicate this Space: a CPU of your own", scale=1, min_width=200)
        scorecard = gr.HTML(elem_id="scorecard", css_template=SCORECARD_CSS, min_height=150)
        shown, ins_shown = gr.State(None), gr.State(None)          # the records on screen, kept on failure
        focus = gr.State(DEFAULT_VARIANT)                           # the scorecard's variant

        with gr.Tabs():
            with gr.Tab("Side by side", id="side"):
                with gr.Row():
                    prompt = gr.Textbox(value=DEFAULT_PROMPT, elem_id="prompt", scale=3, max_length=MAX_PROMPT_CHARS,
                                        label="Prompt (optional; empty = one random start word)")
                    with gr.Column(scale=2):
                        words = gr.Slider(1, MAX_WORDS, value=100, step=1, label="Words", elem_id="words")
                        temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="Temperature (0 = greedy)")
                with gr.Row():
                    # text, not a number: a browser's numbers hold integers exactly only up to 2**53
                    seed = gr.Textbox(value="0", label="Seed (0 to 2**63-1)", elem_id="seed", max_lines=1,
                                      max_length=25)
                    raw = gr.Checkbox(label="Show raw WikiText-2 tokens (<eos>, @-@)", value=False)
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                gr.Examples([[p] for p in EXAMPLES], [prompt], label="Prompts to try", cache_examples=False)
                with gr.Row(equal_height=True):
                    with gr.Column():
                        gr.Markdown("### fp32 (torch)")
                        left = gr.HTML(elem_id="fp32-text", min_height=160, css_template=WORD_CSS)
                        left_stats = gr.Markdown(elem_id="fp32-stats")
                    with gr.Column():
                        right_title = gr.Markdown(app.side.title(DEFAULT_VARIANT), elem_id="right-title")
                        right = gr.HTML(elem_id="qint8-text", min_height=160, css_template=WORD_CSS)
                        right_stats = gr.Markdown(elem_id="qint8-stats")
                gr.HTML(LEGEND, elem_id="legend", css_template=WORD_CSS)
                notes = gr.Markdown(elem_id="notes")
                parting = gr.HTML(elem_id="parting")
                with gr.Accordion("How the two panes share random numbers", open=False):
                    gr.Markdown(COUPLING)

            with gr.Tab("Your text", id="yourtext"):
                score_text = gr.Textbox(lines=5, max_length=MAX_SCORE_CHARS, elem_id="score-text",
                                        label=f"Paste a paragraph (up to {MAX_SCORE_CHARS:,} characters): both models "
                                              "score it word by word")
                score_go = gr.Button("Score", variant="primary", elem_id="score-run")
                gr.Examples([[t] for t in SCORE_EXAMPLES], [score_text], label="Texts to try", cache_examples=False)
                score_html = gr.HTML(elem_id="score-html", css_template=SCORE_CSS)   # the text, then its figures
                score_summary = gr.Markdown(elem_id="score-summary")

            with gr.Tab("Measure", id="measure"):
                with gr.Row():
                    slice_ = gr.Dropdown(list(SLICES), value=DEFAULT_SLICE, label="Test tokens", elem_id="slice")
                    threads = gr.Radio(list(app.thread_choices), value=app.cfg.threads, elem_id="threads",
                                       label=f"Threads (tutorial: 1; at most the {usable_cpus()} CPUs here)")
                    with gr.Column():
                        measure = gr.Button("Measure", variant="primary", elem_id="measure")
                        again = gr.Button("Measure again (live)", size="sm", elem_id="measure-again")
                chosen = gr.CheckboxGroup(app.choices, value=[DEFAULT_VARIANT], label="Variants measured against fp32",
                                          elem_id="measure-variants")
                status = gr.Markdown(elem_id="status")
                table = gr.Dataframe(label="fp32 and every variant measured (click a column to sort)",
                                     elem_id="table", interactive=False, wrap=True)
                with gr.Row():
                    size_plot = gr.HTML(elem_id="size-plot")
                    speed_plot = gr.HTML(elem_id="speed-plot")
                with gr.Row():
                    size_trade = gr.HTML(elem_id="size-trade")
                    speed_trade = gr.HTML(elem_id="speed-trade")
                kl_plot = gr.HTML(elem_id="kl-plot")
                with gr.Accordion("How this was measured, and this server", open=False):
                    details = gr.Markdown(elem_id="details")
                with gr.Accordion("The models' code", open=False):
                    with gr.Row():
                        gr.Code(app.model_text(REFERENCE), label="fp32 model", language=None, max_lines=30)
                        right_model = gr.Code(app.model_text(DEFAULT_VARIANT), label="the variant", language=None,
                                              elem_id="right-model", max_lines=30)

            with gr.Tab("Where int8 loses", id="inspect"):
                with gr.Row():
                    ins_variant = gr.Dropdown(app.choices, value=DEFAULT_VARIANT, label="Variant to take apart",
                                              elem_id="inspect-variant")
                    ins_slice = gr.Dropdown(list(INSPECT_SLICES), value=DEFAULT_INSPECT_SLICE, label="Test tokens",
                                            elem_id="inspect-slice")
                    with gr.Column():
                        analyse = gr.Button("Analyse", variant="primary", elem_id="analyse")
                        analyse_again = gr.Button("Analyse again (live)", size="sm", elem_id="analyse-again")
                ins_status = gr.Markdown(elem_id="inspect-status")
                ins_table = gr.Dataframe(label="per part: error and sensitivity", elem_id="inspect-table",
                                         interactive=False, wrap=True)
                with gr.Row():
                    sqnr_plot = gr.HTML(elem_id="sqnr-plot")
                    sens_plot = gr.HTML(elem_id="sensitivity-plot")
                with gr.Row():
                    parts_time = gr.HTML(elem_id="parts-time-plot")
                    with gr.Column():
                        hist_part = gr.Dropdown(app.inspect.parts, value="decoder", label="Weights of",
                                                elem_id="hist-part")
                        hist_plot = gr.HTML(elem_id="hist-plot")
                with gr.Accordion("What these measure", open=False):
                    gr.Markdown(INSPECT_INTRO + "\n\n" + app.inspect.recipe_note())

        with gr.Accordion("About: the tutorial's figures, and why the size stops at 1.43x", open=False):
            gr.Markdown(ABOUT)

        # ---------------------------------------------------------------- wiring
        inputs = [prompt, words, temperature, seed, raw, variant]
        side = [left, right, left_stats, right_stats, notes, parting]
        # preprocess=False: the functions get the raw values, so a wrong type through the API gets
        # the same message naming the field as a wrong value (wlm.app checks every argument)
        # Generates run GENERATE_CONCURRENCY at a time and take the CPU in turns (app.turns), so a
        # long one cannot stall the others; describing a variant may wait for its build, so it has
        # a group of its own and never holds up a Generate
        go.click(user_errors(app.side.generate), inputs, side, api_name="generate", concurrency_id="generate",
                 concurrency_limit=GENERATE_CONCURRENCY, preprocess=False)
        prompt.submit(user_errors(app.side.generate), inputs, side, api_visibility="private",
                      concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY, preprocess=False)
        demo.load(app.side.first_view, None, side, api_visibility="private", concurrency_id="generate",
                  concurrency_limit=GENERATE_CONCURRENCY)
        variant.change(lambda v: v, variant, focus, api_visibility="private", queue=False)
        variant.change(user_errors(app.measure.scorecard), [shown, variant], scorecard, api_visibility="private",
                       concurrency_id="describe", concurrency_limit=8)
        variant.change(user_errors(app.side.title), variant, right_title, api_visibility="private",
                       concurrency_id="describe", concurrency_limit=8)
        variant.change(user_errors(app.model_text), variant, right_model, api_visibility="private",
                       concurrency_id="describe", concurrency_limit=8)

        score_go.click(user_errors(app.your_text.run), [score_text, variant], [score_html, score_summary],
                       api_name="score", concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY,
                       preprocess=False)

        def run_measure(slice_label, n_threads, names, shown_record=None, focus_name=None, fresh=False,
                        progress=gr.Progress()):
            return app.measure.measure(slice_label, n_threads, names, shown_record, focus_name, fresh=fresh,
                                       progress=lambda d, t: progress((d, t), desc="all models in lockstep",
                                                                      unit="tokens"),
                                       download_progress=lambda name: lambda d, t: progress(
                                           (d, t), desc=f"fetching {name}", unit="bytes"))

        panel = [scorecard, table, size_plot, speed_plot, kl_plot, size_trade, speed_trade, status, details,
                 slice_, threads, chosen, shown]
        assert len(panel) == len(MEASURE_OUTPUTS)
        measure_in = [slice_, threads, chosen, shown, focus]
        measure.click(user_errors(run_measure), measure_in, panel, api_name="measure", concurrency_id="measure",
                      preprocess=False)
        again.click(user_errors(functools.partial(run_measure, fresh=True)), measure_in, panel,
                    api_visibility="private", concurrency_id="measure", preprocess=False)
        demo.load(app.measure.initial, None, panel, api_visibility="private", concurrency_limit=8)

        def run_inspect(name, slice_label, shown_record=None, fresh=False, progress=gr.Progress()):
            return app.inspect.inspect(name, slice_label, shown_record, fresh=fresh,
                                       progress=lambda d, t: progress(
                                           (d, t), desc="error per part, then all models in lockstep", unit="tokens"))

        ins_panel = [ins_status, ins_table, sqnr_plot, sens_plot, parts_time, ins_variant, ins_slice, ins_shown]
        assert len(ins_panel) == len(INSPECT_OUTPUTS)
        # one heavy job at a time: an analysis queues with the measurements
        analyse.click(user_errors(run_inspect), [ins_variant, ins_slice, ins_shown], ins_panel, api_name="inspect",
                      concurrency_id="measure", preprocess=False)
        analyse_again.click(user_errors(functools.partial(run_inspect, fresh=True)), [ins_variant, ins_slice, ins_shown],
                            ins_panel, api_visibility="private", concurrency_id="measure", preprocess=False)
        hist_part.change(user_errors(app.inspect.weight_histogram), hist_part, hist_plot, api_visibility="private",
                         concurrency_id="describe", concurrency_limit=8)
        demo.load(app.inspect.initial, None, ins_panel, api_visibility="private", concurrency_limit=8)
        demo.load(functools.partial(app.inspect.weight_histogram, "decoder"), None, hist_plot,
                  api_visibility="private", concurrency_id="describe", concurrency_limit=8)

    # Bounded queue; one measurement at a time. app.turns decides who computes: never a chunk
    # and a Generate at once, a waiting Generate right after the current chunk, and a share of
    # the CPU for the measurement under any stream of Generates.
    return demo.queue(max_size=32, default_concurrency_limit=1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fp32 vs qint8 LSTM language model demo")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--checkpoint", default=None, help="default: $WLM_CHECKPOINT or data/wlm-lstm.safetensors")
    p.add_argument("--threads", type=int, default=1, choices=[1, 2, 4],
                   help="torch threads of Generate and Measure's default (tutorial: 1; at most the CPUs here)")
    p.add_argument("--max-measure-model-tokens", type=int, default=default_live_cap(),
                   help="largest measurement run live, in test tokens x models (larger ones come from stored "
                        f"results); default: {SPACES_LIVE_CAP:,} on Hugging Face Spaces (SPACE_ID set), else no "
                        "limit (0); or $WLM_MAX_MEASURE_MODEL_TOKENS")
    return p.parse_args(argv)


def default_live_cap() -> int:
    """On a Hugging Face Space (which sets SPACE_ID) a shared CPU: cap live measurements."""
    env = os.environ.get("WLM_MAX_MEASURE_MODEL_TOKENS")
    if env:
        return int(env)
    return SPACES_LIVE_CAP if os.environ.get("SPACE_ID") else 0


def prebuild_wanted() -> bool:
    return os.environ.get("WLM_PREBUILD", "1") != "0"      # 0: build each variant on first use


def load_app(checkpoint: str | None = None, threads: int = 1, live_cap: int | None = None,
             prebuild: bool | None = None) -> QuantDemo:
    """The app on the shipped checkpoint (or ``$WLM_CHECKPOINT``), its files where
    ``wlm.storage.app_paths`` puts them (persistent storage on a Space that has it).
    ``prebuild``: build the other variants in the background now (None: unless $WLM_PREBUILD=0)."""
    ckpt = checkpoint or os.environ.get("WLM_CHECKPOINT") or str(HERE / "data" / "wlm-lstm.safetensors")
    paths = app_paths(HERE)
    cap = default_live_cap() if live_cap is None else live_cap
    prebuild = prebuild_wanted() if prebuild is None else prebuild
    return QuantDemo(AppConfig(checkpoint=ckpt, data=str(paths.data), threads=threads, cache=str(paths.cache),
                               shipped_results=str(paths.shipped), max_live_model_tokens=cap or None,
                               prebuild=prebuild))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        app = load_app(args.checkpoint, args.threads, args.max_measure_model_tokens, prebuild=False)
    except ValueError as e:                      # e.g. more threads than this machine's CPUs
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, QuantizationError) as e:
        print(f"error: {e}. Pass --checkpoint FILE (a wlm .safetensors checkpoint), or train one with "
              f"`python -m wlm train`.", file=sys.stderr)
        return 2
    print(f"models ready in {app.load_seconds:.1f} s", flush=True)
    demo = build_demo(app)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                    enable_monitoring=False, max_file_size="1mb", footer_links=["api"], prevent_thread_lock=True)
    except Exception as e:  # e.g. port already in use
        print(f"error: could not start the server: {e}", file=sys.stderr)
        return 1
    if prebuild_wanted():
        app.prebuild()          # once the page is served: the builds do not slow the start
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
else:
    app = load_app()
    demo = build_demo(app)
