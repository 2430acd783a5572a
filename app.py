"""LIFT Studio: `python app.py` serves the web app (also the Hugging Face Space entry point)."""

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Gradio's own copies of uploads and downloads: swept hourly of files older than a day, and all at shutdown.
DELETE_CACHE = (3600, 86400)


def parse_args(argv=None) -> argparse.Namespace:
    from lift_core.data import MAX_FILE_BYTES

    # By default no upload larger than the largest table the engine reads (it would be refused); gradio's mb is 2**20.
    upload_limit = f"{MAX_FILE_BYTES // 2**20}mb"

    parser = argparse.ArgumentParser(description="LIFT Studio web app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--runs-dir", default=os.environ.get("LIFT_RUNS_DIR", "runs"))
    parser.add_argument("--model", default=None, help="the model preselected in the Train tab")
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    parser.add_argument("--auth", default=os.environ.get("LIFT_AUTH"),
                        help="USER:PASS required to open the app; better in $LIFT_AUTH, which `ps` does not show")
    parser.add_argument("--models", default=os.environ.get("LIFT_MODELS"),
                        help="comma-separated models this server may load (for a public Space); default: any")
    parser.add_argument("--max-file-size", default=os.environ.get("LIFT_MAX_FILE_SIZE", upload_limit),
                        help="largest upload accepted, e.g. 100mb or 1gb (default: %(default)s)")
    return parser.parse_args(argv)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, separator, password = text.partition(":")
    if not separator or not user or not password:
        raise SystemExit("error: --auth (or LIFT_AUTH) takes USER:PASS")
    return user, password


def exposure_warning(host: str, share: bool, auth) -> str | None:
    """What to tell the operator when anyone who can reach the server may train, stop and delete runs."""
    if auth or (host in LOCAL_HOSTS and not share):
        return None
    where = "a public gradio.live link" if share else f"host {host}"
    return (f"This server is open on {where} without a password: anyone who reaches it can start, stop and delete "
            "runs. Set LIFT_AUTH=USER:PASS (or --auth) to require a login.")


def main(argv=None) -> None:
    args = parse_args(argv)
    auth = parse_auth(args.auth)
    warning = exposure_warning(args.host, args.share, auth)
    if warning:
        print(f"warning: {warning}")

    from lift_core import models
    from lift_core.config import split_list
    from lift_ui import build_app

    default_model = args.model or models.DEFAULT_MODEL
    default_quant = "auto"
    if not models.has_cuda():
        default_quant = "none"
        print(f"No CUDA GPU found: defaulting to '{default_model}' in full precision on the CPU.")
    allowed_models = split_list(args.models) if args.models else None
    app = build_app(args.runs_dir, default_model, default_quant, notice=warning, delete_cache=DELETE_CACHE,
                    allowed_models=allowed_models)
    app.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port, share=args.share,
                                                  auth=auth, max_file_size=args.max_file_size)


if __name__ == "__main__":
    main()
