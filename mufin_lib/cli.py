"""`mufin`: the kit's command line.

    mufin run ...              execute the notebooks (see mufin_lib.run)
    mufin data verify NAME     check a dataset's files against data_manifest/NAME.yaml
    mufin data list            list the datasets of the manifest
    mufin predict ...          recommend for new products (--run runs/<id> or --model DIR)
    mufin export RUN DIR       write a run's trained model as one folder that predicts alone
"""
from __future__ import annotations

import argparse
import sys

from . import run as run_mod


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {value}")
    return value


def _model_command(args) -> int:
    """`mufin export` and `mufin predict`: a missing or unusable run or model folder is one line, exit 2."""
    try:
        if args.cmd == "export":
            from .artifacts import open_run
            from .stages.evaluate import export
            out = export(open_run(args.run), args.folder)
            print(f"model folder written: {out} (load it with mufin_lib.predictor.Predictor.load, or mufin predict --model)")
            return 0
        from .predict import predict_file
        res = predict_file(args.input, args.output, args.top_k, run=args.run, model=args.model, grid=args.grid)
    except (FileNotFoundError, ValueError) as e:
        print(f"mufin {args.cmd}: error: {e}")
        return 2
    print(f"{res['recommended']} products recommended, {res['problems']} reported without recommendations -> {res['output']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mufin", description="mufin-kit: reproduce MUFIN (CVPR 2022)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("run", help="execute the notebooks with papermill under runs/<run-id>/")
    run_mod.add_run_arguments(rp)
    dp = sub.add_parser("data", help="dataset registry (data_manifest/)")
    dsub = dp.add_subparsers(dest="data_cmd", required=True)
    vp = dsub.add_parser("verify", help="check a dataset's files (existence, size, SHA-256)")
    vp.add_argument("dataset")
    vp.add_argument("--path", help="where the dataset lies (default: the manifest's location)")
    dsub.add_parser("list", help="list the datasets")
    ip = dsub.add_parser("images", help="build images/{train,test,label}.img.bin of an XC dataset from its img.urls.txt")
    ip.add_argument("path")
    ip.add_argument("--timeout", type=float, default=10.0)
    ip.add_argument("--retries", type=int, default=2)
    ip.add_argument("--workers", type=int, default=8)
    ip.add_argument("--keep-top-k", type=int, default=15)
    pp = sub.add_parser("predict", help="recommend products for new products (JSONL in, JSONL out)")
    src = pp.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a finished run directory (runs/<id>, stages 01-06)")
    src.add_argument("--model", help="a model folder (written by mufin export)")
    pp.add_argument("--input", required=True, help='JSON lines: {"id", "title", "images": [paths or URLs]}')
    pp.add_argument("--output", help="default: INPUT.recommendations.jsonl")
    pp.add_argument("--top-k", type=positive_int, default=10, help="recommendations per product (1 or more)")
    pp.add_argument("--grid", help="also draw the products and their top-5 recommendations as a PNG (Fig. 8's layout; "
                                   "label photos come from the run's dataset: with --model, titles on placeholders)")
    ep = sub.add_parser("export", help="write a run's trained model (stages 02-06) as one folder that predicts alone")
    ep.add_argument("run", help="a finished run directory (runs/<id>)")
    ep.add_argument("folder", help="the model folder to write")
    args = ap.parse_args(argv)
    if args.cmd in ("export", "predict"):
        return _model_command(args)
    if args.cmd == "run":
        return run_mod.run_command(args)
    from .data import manifest
    if args.data_cmd == "list":
        for name, desc in manifest.list_datasets():
            print(f"{name:28s} {desc}")
        return 0
    if args.data_cmd == "images":
        from .data.images import Downloader, build_img_bin
        from .paths import resolve
        rep = build_img_bin(resolve(args.path), Downloader(timeout=args.timeout, retries=args.retries,
                                                                     workers=args.workers), args.keep_top_k)
        print(f"references {rep['references']}: {rep['outcomes']}; written {rep['written']}; failed {rep['failed']} "
              f"(details in {args.path}/images/build_report.json)")
        return 0
    return manifest.verify_command(args.dataset, args.path)


if __name__ == "__main__":
    sys.exit(main())
