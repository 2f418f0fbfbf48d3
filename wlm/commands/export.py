"""python -m wlm export: a low-bit recipe as a real packed file (``wlm.packed``), and optionally its
weights dequantized to fp32 under the tutorial's keys."""
from __future__ import annotations

import json

from .common import CLIError, command_line

HELP = "write a low-bit recipe's packed .safetensors file (and its dequantized fp32 checkpoint)"


def add_arguments(c) -> None:
    from ..checkpoint import DEFAULT_CHECKPOINT
    c.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="the wlm checkpoint (.safetensors)")
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("--recipe", help="e.g. 'embedding=int4-g32 lstm=int6-g32 decoder=int5-g32 rounding=gptq'")
    source.add_argument("--variant", help="a variant that follows a low-bit recipe file (lowbit-mixed)")
    c.add_argument("--out", required=True, help="the packed file to write (.safetensors)")
    c.add_argument("--dequantized", help="also write the weights dequantized to fp32 here: a wlm checkpoint under "
                                         "the tutorial's keys (python -m wlm eval --checkpoint reads it)")
    c.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..checkpoint import load_checkpoint
    from ..lowbit import Recipe
    from ..packed import read_packed, save_dequantized, write_packed
    ckpt = load_checkpoint(args.checkpoint)
    if args.variant:
        from ..variants import VARIANTS, LowBitFile, lowbit_recipe
        spec = VARIANTS.get(args.variant)
        if spec is None or not isinstance(spec.recipe_config, LowBitFile):
            low = [n for n, s in VARIANTS.items() if isinstance(s.recipe_config, LowBitFile)]
            raise CLIError(f"--variant must be one of {', '.join(low)} (a low-bit recipe), got {args.variant!r}")
        recipe = lowbit_recipe(spec.recipe_config.path, ckpt.sha256, ckpt.model.config.nlayers)
    else:
        recipe = Recipe.parse(args.recipe, ckpt.model.config.nlayers)
    if not recipe.quantized:
        raise CLIError("the recipe keeps every part in fp32: nothing to pack")
    from ..variants import quantize_lowbit
    model, quantized = quantize_lowbit(ckpt, recipe)
    provenance = {"recipe": recipe.text, "checkpoint_sha256": ckpt.sha256, "command": command_line(args)}
    path = write_packed(args.out, model, ckpt.dictionary.idx2word, recipe.text, quantized, provenance)
    back, *_ = read_packed(path)                        # read it back: the same weights, bit for bit
    same = all(a.equal(b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    if not same:
        raise CLIError(f"{path} does not read back to the weights written")
    out = {"recipe": recipe.text, "packed": str(path), "packed_bytes": path.stat().st_size}
    if args.dequantized:
        d = save_dequantized(args.dequantized, model, ckpt.dictionary, {**provenance, "dequantized_from": recipe.text})
        out.update(dequantized=str(d), dequantized_bytes=d.stat().st_size)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{recipe.text}\npacked: {path} ({out['packed_bytes'] / 1e6:.3f} MB; read back bit for bit)")
    if args.dequantized:
        print(f"dequantized fp32 checkpoint: {out['dequantized']} ({out['dequantized_bytes'] / 1e6:.3f} MB)")
    return 0
