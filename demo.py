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
from wlm.threads import usable_cpus  # noqa: E402
from wlm.variants import REFERENCE  # noqa: E402
from wlm.checkpoint import CheckpointError  # noqa: E402
from wlm.generate import MAX_WORDS  # noqa: E402
from wlm.quantize import QuantizationError  # noqa: E402
from wlm.storage import app_paths  # noqa: E402

HERE = Path(__file__).resolve().parent
SPACES_LIVE_CAP = 40_000          # model-tokens (test tokens x models): ~20 s of a shared CPU per click at most
GENERATE_CONCURRENCY = 4          # Generates in progress at once; they take the CPU in turns (wlm.turns)
INTRO = """# fp32 vs int8: an LSTM language model, quantized
An LSTM word language model trained on WikiText-2 (the PyTorch tutorial's model: embedding 512,
5 LSTM layers of 256, 33,278 words) writes on the left; on the right, a variant: by default the same model
after `torch.ao.quantization.quantize_dynamic` stored its LSTM and decoder weights as int8, or another
recipe, or the ONNX Runtime engine. Each model samples
exactly from its own distribution, but both use the same random numbers (Gumbel-max with one shared noise
vector per word), so they write the same word whenever their distributions allow: the texts stay
together while the models agree, and part where int8 really changed the choice."""


INSPECT_INTRO = """## Where int8 loses, and why it is faster
The variant taken apart against fp32, part by part (the embedding, each of the five LSTM layers, the
decoder), on the first test tokens. **SQNR** (signal to quantization noise, dB: higher is closer) of each
part's weights, of its output when fed the fp32 model's input (the part alone), and of its output inside the
variant (the error accumulated up to there). **Sensitivity**: the KL(fp32 ‖ model) when only that part is
quantized. **Time**: where each model's seconds go, on the same chunks. **Weights on the int8 grid**: the
levels a part's weights get; a narrow hump means few of the 256 levels are used, so rounding costs more of
each weight (the decoder per tensor against per channel). The analysis also chooses a recipe:
`qint8-mixed`, offered with the variants."""


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
        gr.Markdown(INTRO)
        with gr.Row():
            prompt = gr.Textbox(value="The game was released in", elem_id="prompt", scale=3, max_length=2000,
                                label="Prompt (optional; empty = one random start word)")
            with gr.Column(scale=2):
                words = gr.Slider(1, MAX_WORDS, value=100, step=1, label="Words", elem_id="words")
                temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="Temperature (0 = greedy)")
        with gr.Row():
            # text, not a number: a browser's numbers hold integers exactly only up to 2**53
            seed = gr.Textbox(value="0", label="Seed (0 to 2**63-1)", elem_id="seed", max_lines=1, max_length=25)
            variant = gr.Dropdown(app.choices, value=DEFAULT_VARIANT, label="Right pane: variant (engine, recipe)",
                                  elem_id="variant", info=app.variants_note() or None)
            raw = gr.Checkbox(label="Show raw WikiText-2 tokens (<eos>, @-@)", value=False)
            go = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Row(equal_height=True):
            with gr.Column():
                gr.Markdown("### fp32 (torch)")
                left = gr.HTML(elem_id="fp32-text", min_height=160)
                left_stats = gr.Markdown(elem_id="fp32-stats")
            with gr.Column():
                right_title = gr.Markdown(app.pane_title(DEFAULT_VARIANT), elem_id="right-title")
                right = gr.HTML(elem_id="qint8-text", min_height=160)
                right_stats = gr.Markdown(elem_id="qint8-stats")
        notes = gr.Markdown(elem_id="notes")
        parting = gr.HTML(elem_id="parting")

        gr.Markdown("## What int8 buys and costs\nfp32 and the chosen variants evaluate the first N tokens of the "
                    "WikiText-2 test split by the tutorial's protocol (bptt 25, batch 1) on this machine's CPU, in "
                    "lockstep: each chunk of 25 tokens goes through every model before the next, and each model's "
                    "time counts only its own calls. On the same tokens the panel also measures how closely each "
                    "variant follows fp32: top-1 agreement, KL(fp32 ‖ variant), the overlap of the two distributions "
                    "(1 - total variation) and the change in probability of the true next word. A Generate clicked "
                    "meanwhile runs between two chunks. Results are stored and shown at once to later visitors; "
                    "**Measure again** re-runs them live."
                    + (f" This shared server measures at most {app.cfg.max_live_model_tokens:,} model-tokens live "
                       f"(test tokens x models, fp32 included: e.g. {app.cfg.max_live_model_tokens // 2:,} tokens for "
                       "fp32 and one variant); larger measurements come from stored results."
                       if app.cfg.max_live_model_tokens else ""))
        with gr.Row():
            slice_ = gr.Dropdown(list(SLICES), value=DEFAULT_SLICE, label="Test tokens", elem_id="slice")
            threads = gr.Radio(list(app.thread_choices), value=app.cfg.threads, elem_id="threads",
                               label=f"Threads (tutorial: 1; at most the {usable_cpus()} CPUs here)")
            with gr.Column():
                measure = gr.Button("Measure", variant="primary", elem_id="measure")
                again = gr.Button("Measure again (live)", size="sm", elem_id="measure-again")
        chosen = gr.CheckboxGroup(app.choices, value=[DEFAULT_VARIANT], label="Variants to measure against fp32",
                                  elem_id="measure-variants")
        status = gr.Markdown("No measurement yet: click **Measure**.", elem_id="status")
        table = gr.Dataframe(app.view.empty_table(), label="fp32 vs variants (run Measure to fill)", elem_id="table",
                             interactive=False)
        with gr.Row():
            size_plot = gr.BarPlot(app.view.size_frame(), x="model", y="MB", color="part", y_lim=[0, None],
                                   title="Size (MB), per module", elem_id="size-plot")
            time_plot = gr.BarPlot(app.view.time_frame([]), x="model", y="seconds", y_lim=[0, None],
                                   title="Evaluation time (s)", elem_id="time-plot")
        with gr.Row():
            empty_size, empty_speed = app.view.tradeoff_plots([])
            size_trade = gr.HTML(empty_size, elem_id="size-trade")
            speed_trade = gr.HTML(empty_speed, elem_id="speed-trade")
        kl_plot = gr.HTML(app.view.kl_svg([]), elem_id="kl-plot")
        with gr.Row():
            gr.Code(app.model_text(REFERENCE), label="fp32 model", language=None)
            right_model = gr.Code(app.model_text(DEFAULT_VARIANT), label="right-pane model", language=None,
                                  elem_id="right-model")
        machine = gr.Markdown(app.view.machine_markdown())

        gr.Markdown(INSPECT_INTRO + (f" On this shared server an analysis runs live up to "
                                     f"{app.cfg.max_live_model_tokens:,} model-tokens (2,000 tokens); larger ones "
                                     "come from stored results." if app.cfg.max_live_model_tokens else ""))
        with gr.Row():
            ins_variant = gr.Dropdown(app.choices, value=DEFAULT_VARIANT, label="Variant to take apart",
                                      elem_id="inspect-variant")
            ins_slice = gr.Dropdown(list(INSPECT_SLICES), value=DEFAULT_INSPECT_SLICE, label="Test tokens",
                                    elem_id="inspect-slice")
            with gr.Column():
                analyse = gr.Button("Analyse", variant="primary", elem_id="analyse")
                analyse_again = gr.Button("Analyse again (live)", size="sm", elem_id="analyse-again")
        ins_status = gr.Markdown("No analysis yet: click **Analyse**.", elem_id="inspect-status")
        ins_empty = app.inspect_view.empty("")
        ins_table = gr.Dataframe(ins_empty[1], label="per part: error and sensitivity",
                                 elem_id="inspect-table", interactive=False)
        with gr.Row():
            sqnr_plot = gr.HTML(ins_empty[2], elem_id="sqnr-plot")
            sens_plot = gr.HTML(ins_empty[3], elem_id="sensitivity-plot")
        with gr.Row():
            parts_time = gr.HTML(ins_empty[4], elem_id="parts-time-plot")
            with gr.Column():
                hist_part = gr.Dropdown(app.parts, value="decoder", label="Weights of", elem_id="hist-part")
                hist_plot = gr.HTML(app.weight_histogram("decoder"), elem_id="hist-plot")

        inputs = [prompt, words, temperature, seed, raw, variant]
        outputs = [left, right, left_stats, right_stats, notes, parting]
        # preprocess=False: the functions get the raw values, so a wrong type through the API gets
        # the same message naming the field as a wrong value (wlm.app checks every argument)
        # Generates run GENERATE_CONCURRENCY at a time and take the CPU in turns (app.turns), so a
        # long one cannot stall the others; describing a variant may wait for its build, so it has
        # a group of its own and never holds up a Generate
        go.click(user_errors(app.generate), inputs, outputs, api_name="generate", concurrency_id="generate",
                 concurrency_limit=GENERATE_CONCURRENCY, preprocess=False)
        prompt.submit(user_errors(app.generate), inputs, outputs, api_visibility="private", concurrency_id="generate",
                      concurrency_limit=GENERATE_CONCURRENCY, preprocess=False)
        variant.change(user_errors(app.pane_title), variant, right_title, api_visibility="private",
                       concurrency_id="describe", concurrency_limit=8)
        variant.change(user_errors(app.model_text), variant, right_model, api_visibility="private",
                       concurrency_id="describe", concurrency_limit=8)

        def run_measure(slice_label, n_threads, names, fresh=False, progress=gr.Progress()):
            return app.measure(slice_label, n_threads, names, fresh=fresh,
                               progress=lambda d, t: progress((d, t), desc="all models in lockstep", unit="tokens"),
                               download_progress=lambda name: lambda d, t: progress(
                                   (d, t), desc=f"fetching {name}", unit="bytes"))

        panel = [table, size_plot, time_plot, kl_plot, size_trade, speed_trade, status, machine]
        measure.click(user_errors(run_measure), [slice_, threads, chosen], panel, api_name="measure",
                      concurrency_id="measure", preprocess=False)
        again.click(user_errors(functools.partial(run_measure, fresh=True)), [slice_, threads, chosen], panel,
                    api_visibility="private", concurrency_id="measure", preprocess=False)
        demo.load(user_errors(app.initial_view), None, panel, api_visibility="private", concurrency_limit=8)

        def run_inspect(name, slice_label, fresh=False, progress=gr.Progress()):
            return app.inspect(name, slice_label, fresh=fresh,
                               progress=lambda d, t: progress((d, t), desc="error per part, then all models in lockstep",
                                                              unit="tokens"))

        ins_panel = [ins_status, ins_table, sqnr_plot, sens_plot, parts_time]
        # one heavy job at a time: an analysis queues with the measurements
        analyse.click(user_errors(run_inspect), [ins_variant, ins_slice], ins_panel, api_name="inspect",
                      concurrency_id="measure", preprocess=False)
        analyse_again.click(user_errors(functools.partial(run_inspect, fresh=True)), [ins_variant, ins_slice],
                            ins_panel, api_visibility="private", concurrency_id="measure", preprocess=False)
        hist_part.change(user_errors(app.weight_histogram), hist_part, hist_plot, api_visibility="private",
                         concurrency_id="describe", concurrency_limit=8)
        demo.load(user_errors(app.initial_inspection), None, ins_panel, api_visibility="private", concurrency_limit=8)

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


def load_app(checkpoint: str | None = None, threads: int = 1, live_cap: int | None = None) -> QuantDemo:
    """The app on the shipped checkpoint (or ``$WLM_CHECKPOINT``), its files where
    ``wlm.storage.app_paths`` puts them (persistent storage on a Space that has it)."""
    ckpt = checkpoint or os.environ.get("WLM_CHECKPOINT") or str(HERE / "data" / "wlm-lstm.safetensors")
    paths = app_paths(HERE)
    cap = default_live_cap() if live_cap is None else live_cap
    return QuantDemo(AppConfig(checkpoint=ckpt, data=str(paths.data), threads=threads, cache=str(paths.cache),
                               shipped_results=str(paths.shipped), max_live_model_tokens=cap or None, prebuild=True))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        app = load_app(args.checkpoint, args.threads, args.max_measure_model_tokens)
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
                    enable_monitoring=False, max_file_size="1mb", footer_links=["api"])
    except Exception as e:  # e.g. port already in use
        print(f"error: could not start the server: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
else:
    app = load_app()
    demo = build_demo(app)
