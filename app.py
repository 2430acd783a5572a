"""LIFT Studio: `python app.py` serves the web app (also the Hugging Face Space entry point)."""

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LIFT Studio web app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--runs-dir", default=os.environ.get("LIFT_RUNS_DIR", "runs"))
    parser.add_argument("--model", default=None, help="the model preselected in the Train tab")
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    parser.add_argument("--auth", help="USER:PASS required to open the app")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    auth = None
    if args.auth:
        user, separator, password = args.auth.partition(":")
        if not separator or not user or not password:
            raise SystemExit("error: --auth takes USER:PASS")
        auth = (user, password)

    from lift_core import models
    from lift_ui import build_app

    default_model = args.model or models.DEFAULT_MODEL
    default_quant = "auto"
    if not models.has_cuda():
        default_quant = "none"
        print(f"No CUDA GPU found: defaulting to '{default_model}' in full precision on the CPU.")
    app = build_app(args.runs_dir, default_model, default_quant)
    app.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port, share=args.share,
                                                  auth=auth)


if __name__ == "__main__":
    main()
