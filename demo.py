"""Gradio app: fp32 and its quantized copies of the tutorial's LSTM language model, writing side by
side, scoring your text, measured, taken apart. Layout and wiring only: every event calls one
panel method of ``wlm.app.QuantDemo``; texts and CSS live with their panel.

    python demo.py [--host H] [--port P] [--share] [--checkpoint F] [--threads N]
                   [--max-measure-model-tokens N]
"""
from __future__ import annotations

import functools
import html
import inspect
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402

from wlm import inspectview, ladderview, measureview, recipeview, scorecard, sidebyside, yourtext  # noqa: E402
from wlm.app import DEFAULT_VARIANT, QuantDemo, load_app, serve  # noqa: E402
from wlm.generate import MAX_WORDS  # noqa: E402
from wlm.score import MAX_SCORE_CHARS  # noqa: E402
from wlm.text import WORD_CSS  # noqa: E402
from wlm.threads import usable_cpus  # noqa: E402
from wlm.variants import REFERENCE  # noqa: E402

CHART_MIN = 400                   # px: two charts share a row down to 800 px wide; narrower, they stack
GENERATE_CONCURRENCY = 4          # Generates in progress at once; they take the CPU in turns (wlm.turns)
HEAD = f'<meta name="description" content="{html.escape(scorecard.DESCRIPTION)}">'
# Gradio's default theme, with its primary buttons and subdued text (slider bounds, footer) dark
# enough for 4.5:1 against their backgrounds in light and dark
THEME = gr.themes.Default().set(
    button_primary_background_fill="*primary_700", button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover="*primary_800", button_primary_background_fill_hover_dark="*primary_800",
    body_text_color_subdued="*neutral_600", body_text_color_subdued_dark="*neutral_400")


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


def tracked(method, desc: str, download: bool = False, **fixed):
    """``method`` with a progress bar: its ``progress(done, total)`` callback drives gr.Progress
    (and ``download_progress(name)``, where it has one, the fetch of the test split)."""
    def run(*args, progress=gr.Progress()):
        more = {"download_progress": lambda name: lambda d, t: progress((d, t), desc=f"fetching {name}",
                                                                         unit="bytes")} if download else {}
        return method(*args, progress=lambda d, t: progress((d, t), desc=desc, unit="tokens"), **more, **fixed)
    return user_errors(run)


def build_demo(app: QuantDemo) -> gr.Blocks:
    # preprocess=False: the methods get the raw values, so a wrong type through the API gets the same
    # message naming the field as a wrong value (wlm.checks). "generate": Generates and Scores, in CPU
    # turns (app.turns); "measure": one heavy job at a time; "describe": may wait for a build, never
    # holds up a Generate.
    gen = dict(concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY, preprocess=False)
    describe = dict(api_visibility="private", concurrency_id="describe", concurrency_limit=8)
    private = dict(api_visibility="private", concurrency_limit=8)
    with gr.Blocks(title=scorecard.TITLE) as demo:
        gr.Markdown(scorecard.HEADER)
        with gr.Row(equal_height=True):
            variant = gr.Dropdown(app.choices, value=DEFAULT_VARIANT, label="fp32 against (variant)",
                                  elem_id="variant", info=app.variants_note() or None, scale=3, min_width=200)
            gr.DuplicateButton("Duplicate this Space: a CPU of your own", scale=1, min_width=200)
        card = gr.HTML(elem_id="scorecard", css_template=scorecard.CSS, min_height=150)
        shown, ins_shown = gr.State(None), gr.State(None)          # the records on screen, kept on failure
        focus = gr.State(DEFAULT_VARIANT)                           # the scorecard's variant

        with gr.Tabs() as tabs:
            with gr.Tab("Side by side", id="side"):
                with gr.Row():
                    prompt = gr.Textbox(value=sidebyside.DEFAULT_PROMPT, elem_id="prompt", scale=3,
                                        max_length=sidebyside.MAX_PROMPT_CHARS,
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
                gr.Examples([[p] for p in sidebyside.EXAMPLES], [prompt], label="Prompts to try", cache_examples=False)
                with gr.Row(equal_height=True):
                    with gr.Column():
                        gr.Markdown(f"## {REFERENCE} (torch)")
                        left = gr.HTML(elem_id="fp32-text", min_height=160, css_template=WORD_CSS)
                        left_stats = gr.Markdown(elem_id="fp32-stats")
                    with gr.Column():
                        right_title = gr.Markdown(app.side.title(DEFAULT_VARIANT), elem_id="right-title")
                        right = gr.HTML(elem_id="qint8-text", min_height=160, css_template=WORD_CSS)
                        right_stats = gr.Markdown(elem_id="qint8-stats")
                gr.HTML(sidebyside.LEGEND, elem_id="legend", css_template=WORD_CSS)
                notes = gr.Markdown(elem_id="notes")
                parting = gr.HTML(elem_id="parting")
                with gr.Accordion("How the two panes share random numbers", open=False):
                    gr.Markdown(sidebyside.COUPLING)

            with gr.Tab("Your text", id="yourtext"):
                score_text = gr.Textbox(value=yourtext.FIRST, lines=5, max_length=MAX_SCORE_CHARS,
                                        elem_id="score-text", label=f"Paste a paragraph (up to {MAX_SCORE_CHARS:,} "
                                                                    "characters): both models score it word by word")
                score_go = gr.Button("Score", variant="primary", elem_id="score-run")
                gr.Examples([[t] for t in yourtext.EXAMPLES], [score_text], label="Texts to try", cache_examples=False)
                score_html = gr.HTML(elem_id="score-html", css_template=yourtext.CSS)   # the text, then its figures
                score_summary = gr.Markdown(elem_id="score-summary")

            with gr.Tab("Measure", id="measure"):
                with gr.Row():
                    slice_ = gr.Dropdown(list(measureview.SLICES), value=measureview.DEFAULT_SLICE, label="Test tokens",
                                         elem_id="slice")
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
                    with gr.Column(min_width=CHART_MIN):
                        size_plot = gr.HTML(elem_id="size-plot")
                    with gr.Column(min_width=CHART_MIN):
                        speed_plot = gr.HTML(elem_id="speed-plot")
                with gr.Row():
                    with gr.Column(min_width=CHART_MIN):
                        size_trade = gr.HTML(elem_id="size-trade")
                    with gr.Column(min_width=CHART_MIN):
                        speed_trade = gr.HTML(elem_id="speed-trade")
                kl_plot = gr.HTML(elem_id="kl-plot")
                with gr.Accordion("How this was measured, and this server", open=False):
                    details = gr.Markdown(elem_id="details")
                with gr.Accordion("The models' code", open=False):
                    with gr.Row():
                        left_model = gr.Code(label="fp32 model", language=None, max_lines=30, elem_id="left-model")
                        right_model = gr.Code(label="the variant", language=None, elem_id="right-model", max_lines=30)

            with gr.Tab("Where int8 loses", id="inspect"):
                with gr.Row():
                    ins_variant = gr.Dropdown(app.inspect.choices(), value=DEFAULT_VARIANT, label="Variant to take apart",
                                              elem_id="inspect-variant")
                    ins_slice = gr.Dropdown(list(inspectview.INSPECT_SLICES), value=inspectview.DEFAULT_INSPECT_SLICE,
                                            label="Test tokens", elem_id="inspect-slice")
                    with gr.Column():
                        analyse = gr.Button("Analyse", variant="primary", elem_id="analyse")
                        analyse_again = gr.Button("Analyse again (live)", size="sm", elem_id="analyse-again")
                ins_status = gr.Markdown(elem_id="inspect-status")
                ins_table = gr.Dataframe(label="per part: error and sensitivity", elem_id="inspect-table",
                                         interactive=False, wrap=True)
                with gr.Row():
                    with gr.Column(min_width=CHART_MIN):
                        sqnr_plot = gr.HTML(elem_id="sqnr-plot")
                    with gr.Column(min_width=CHART_MIN):
                        sens_plot = gr.HTML(elem_id="sensitivity-plot")
                with gr.Row():
                    with gr.Column(min_width=CHART_MIN):
                        parts_time = gr.HTML(elem_id="parts-time-plot")
                    with gr.Column(min_width=CHART_MIN):
                        hist_part = gr.Dropdown(app.inspect.parts, value="decoder", label="Weights of",
                                                elem_id="hist-part")
                        hist_plot = gr.HTML(elem_id="hist-plot")
                with gr.Accordion("What these measure", open=False):
                    gr.Markdown(inspectview.INSPECT_INTRO + "\n\n" + app.inspect.recipe_note())

            with gr.Tab("How low can it go", id="ladder"):
                gr.Markdown(app.ladder.intro())
                with gr.Row():
                    rounding = gr.Dropdown(list(ladderview.ROUNDING_CHOICES), value=ladderview.DEFAULT_ROUNDING,
                                           label="Rounding", elem_id="ladder-rounding")
                    grouping = gr.Dropdown(list(ladderview.GROUP_CHOICES), value=ladderview.DEFAULT_GROUP,
                                           label="Scales", elem_id="ladder-grouping")
                ladder_summary = gr.Markdown(elem_id="ladder-summary")
                with gr.Row():
                    with gr.Column(min_width=CHART_MIN):
                        cliff = gr.HTML(elem_id="ladder-cliff")
                    with gr.Column(min_width=CHART_MIN):
                        budget = gr.HTML(elem_id="ladder-budget")
                budget_note = gr.Markdown(elem_id="ladder-budget-note")
                ladder_table = gr.Dataframe(label="the ladder: one part at a time, and all parts", elem_id="ladder-table",
                                            interactive=False, wrap=True)

            with gr.Tab("Your recipe", id="recipe"):
                gr.Markdown(recipeview.INTRO)
                preset = gr.Dropdown(app.recipe.presets(), value=recipeview.DEFAULT_PRESET, label="Start from",
                                     elem_id="recipe-preset")
                start = app.recipe.preset(recipeview.DEFAULT_PRESET)
                with gr.Row():
                    part_boxes = [gr.Dropdown(recipeview.PRECISIONS, value=v, label=part, min_width=120,
                                              elem_id=f"recipe-{part.replace('.', '-')}")
                                  for part, v in zip(app.recipe.parts, start)]
                rounding_box = gr.Radio(list(recipeview.ROUNDINGS), value=start[-1], label="Rounding",
                                        elem_id="recipe-rounding")
                with gr.Row():
                    build = gr.Button("Build and measure", variant="primary", elem_id="recipe-build")
                    write = gr.Button("Write with it", elem_id="recipe-write")
                recipe_status = gr.Markdown(elem_id="recipe-status")

        with gr.Accordion("About: the tutorial's figures, and why the size stops at 1.43x", open=False):
            gr.Markdown(scorecard.ABOUT)

        # ---------------------------------------------------------------- wiring
        side_in = [prompt, words, temperature, seed, raw, variant]
        side = [left, right, left_stats, right_stats, notes, parting]
        go.click(user_errors(app.side.generate), side_in, side, api_name="generate", **gen)
        prompt.submit(user_errors(app.side.generate), side_in, side, api_visibility="private", **gen)
        demo.load(app.side.first_view, None, side, api_visibility="private", concurrency_id="generate",
                  concurrency_limit=GENERATE_CONCURRENCY)
        variant.change(lambda v: v, variant, focus, api_visibility="private", queue=False)
        variant.change(user_errors(app.measure.scorecard), [shown, variant], card, **describe)
        variant.change(user_errors(app.side.title), variant, right_title, **describe)
        variant.change(user_errors(app.model_text), variant, right_model, **describe)
        demo.load(user_errors(app.model_text), variant, right_model, **describe)
        demo.load(functools.partial(app.model_text, REFERENCE), None, left_model, **describe)

        score_go.click(user_errors(app.your_text.run), [score_text, variant], [score_html, score_summary],
                       api_name="score", **gen)
        demo.load(app.your_text.first_view, None, [score_html, score_summary], api_visibility="private",
                  concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)

        panel = [card, table, size_plot, speed_plot, kl_plot, size_trade, speed_trade, status, details,
                 slice_, threads, chosen, shown]
        assert len(panel) == len(measureview.OUTPUTS)
        measure_in = [slice_, threads, chosen, shown, focus]
        measure_desc = "all models in lockstep"
        measure.click(tracked(app.measure.measure, measure_desc, download=True), measure_in, panel,
                      api_name="measure", concurrency_id="measure", preprocess=False)
        again.click(tracked(app.measure.measure, measure_desc, download=True, fresh=True), measure_in, panel,
                    api_visibility="private", concurrency_id="measure", preprocess=False)
        demo.load(app.measure.initial, None, panel, **private)

        ins_panel = [ins_status, ins_table, sqnr_plot, sens_plot, parts_time, ins_variant, ins_slice, ins_shown]
        assert len(ins_panel) == len(inspectview.OUTPUTS)
        ins_in, ins_desc = [ins_variant, ins_slice, ins_shown], "error per part, then all models in lockstep"
        analyse.click(tracked(app.inspect.inspect, ins_desc), ins_in, ins_panel, api_name="inspect",
                      concurrency_id="measure", preprocess=False)
        analyse_again.click(tracked(app.inspect.inspect, ins_desc, fresh=True), ins_in, ins_panel,
                            api_visibility="private", concurrency_id="measure", preprocess=False)
        hist_part.change(user_errors(app.inspect.weight_histogram), hist_part, hist_plot, **describe)
        demo.load(app.inspect.initial, None, ins_panel, **private)
        demo.load(user_errors(app.inspect.weight_histogram), hist_part, hist_plot, **describe)

        ladder_out = [ladder_summary, cliff, ladder_table, budget, budget_note]
        assert len(ladder_out) == len(ladderview.OUTPUTS)
        for box in (rounding, grouping):
            box.change(user_errors(app.ladder.view), [rounding, grouping], ladder_out, **private)
        demo.load(app.ladder.initial, None, ladder_out, **private)

        recipe_in = [*part_boxes, rounding_box]
        preset.change(user_errors(app.recipe.preset), preset, recipe_in, **private)

        def built(*values, progress=gr.Progress()):
            """The recipe built and measured; the top dropdown then offers it (and shows it)."""
            status, choices, name = app.recipe.build(*values, progress=lambda d, t: progress(
                (d, t), desc="fp32 and your recipe in lockstep", unit="tokens"))
            return status, gr.Dropdown(choices=choices, value=name)
        build.click(user_errors(built), recipe_in, [recipe_status, variant], api_name="recipe",
                    concurrency_id="measure", preprocess=False)
        write.click(user_errors(built), recipe_in, [recipe_status, variant], api_visibility="private",
                    concurrency_id="measure", preprocess=False).success(
            lambda: gr.Tabs(selected="side"), None, tabs, queue=False, api_visibility="private").then(
            user_errors(app.side.generate), side_in, side, api_visibility="private", **gen)

    # Bounded queue; one measurement at a time. app.turns decides who computes: never a chunk
    # and a Generate at once, a waiting Generate right after the current chunk, and a share of
    # the CPU for the measurement under any stream of Generates.
    return demo.queue(max_size=32, default_concurrency_limit=1)


if __name__ == "__main__":
    sys.exit(serve(build_demo, head=HEAD, theme=THEME))
else:
    app = load_app()
    demo = build_demo(app)
