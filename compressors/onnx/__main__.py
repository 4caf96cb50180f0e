"""python -m compressors.onnx RUN_DIR [--out FILE] [--input-shape 1,1,28,28] [--quantize-bits 8]."""
import argparse
import sys


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return shape


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m compressors.onnx",
                                     description="Export a finished run folder (or checkpoint) to ONNX, "
                                                 "keeping its compressed structure; prints the export report.")
    parser.add_argument("run", help="run folder, train.py checkpoint or save_model file")
    parser.add_argument("--out", default=None, help="output .onnx file (default RUN/model.onnx)")
    parser.add_argument("--input-shape", type=_shape, default=None,
                        help="example input shape, batch first (default: guessed from the model)")
    parser.add_argument("--quantize-bits", type=int, choices=range(1, 9), default=None, metavar="BITS",
                        help="store every parameter as BITS-bit codes with DequantizeLinear")
    args = parser.parse_args(argv)
    from .run_folder import export_run
    try:
        report = export_run(args.run, args.out, args.input_shape, args.quantize_bits)
    except (ImportError, ValueError, KeyError, OSError) as e:
        print(f"python -m compressors.onnx: {args.run}: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
