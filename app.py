"""LIFT Studio: `python app.py` serves the web app (also the Hugging Face Space entry point)."""

import argparse
import os
from dataclasses import asdict

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lift_core.access import VisitorLimits  # noqa: E402  (torch-free)


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Hugging Face Spaces sets it in every Space's environment.
ON_SPACE = bool(os.environ.get("SPACE_ID"))
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
    parser.add_argument("--multi-user", action=argparse.BooleanOptionalAction,
                        default=ON_SPACE or bool(os.environ.get("LIFT_MULTI_USER")),
                        help="each browser sees the example runs and its own runs only, and may stop, resume and "
                             "delete only its own; trainings queue for the one training slot (default: on when "
                             "served by Hugging Face Spaces, i.e. SPACE_ID is set, or LIFT_MULTI_USER)")
    for name, default in asdict(VisitorLimits()).items():
        flag = name.replace("_", "-")
        parser.add_argument(f"--{flag}", type=type(default), default=type(default)(os.environ.get(
            f"LIFT_{name.upper()}", default)), help=f"with --multi-user: {VisitorLimits.HELP[name]} "
                                                    f"(default: %(default)s, or $LIFT_{name.upper()})")
    parser.add_argument("--examples", action=argparse.BooleanOptionalAction, default=True,
                        help="list the shipped example runs (read-only) in every run picker")
    return parser.parse_args(argv)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, separator, password = text.partition(":")
    if not separator or not user or not password:
        raise SystemExit("error: --auth (or LIFT_AUTH) takes USER:PASS")
    return user, password


def exposure_warning(host: str, share: bool, auth, limits: VisitorLimits | None = None) -> str | None:
    """What to tell the operator when anyone who can reach the server may train, stop and delete runs (or, with
    visitors kept apart, what anyone may still do)."""
    if auth or (host in LOCAL_HOSTS and not share):
        return None
    where = "a public gradio.live link" if share else f"host {host}"
    if limits is not None:
        return (f"This server is open on {where} without a password, to visitors kept apart: each sees the example "
                "runs and their own, and can stop, resume and delete only their own. Anyone who reaches it can "
                f"train ({_limits_text(limits)}, one training at a time, queued in turn) and ask any listed model "
                "for predictions. Set LIFT_AUTH=USER:PASS (or --auth) to require a login.")
    return (f"This server is open on {where} without a password: anyone who reaches it can start, stop and delete "
            "runs. Set LIFT_AUTH=USER:PASS (or --auth) to require a login, or --multi-user to keep visitors apart.")


def _limits_text(limits: VisitorLimits) -> str:
    runs = f"at most {limits.max_runs} runs each" if limits.max_runs else "any number of runs"
    rows = f"tables of at most {limits.max_rows:,} rows" if limits.max_rows else "tables of any size"
    kept = f"runs deleted after {limits.max_age_hours:g} h" if limits.max_age_hours else "runs kept"
    return f"{runs}, {rows}, {kept}"


def visitor_limits(args: argparse.Namespace) -> VisitorLimits | None:
    if not args.multi_user:
        return None
    return VisitorLimits(**{name: getattr(args, name) for name in asdict(VisitorLimits())})


def main(argv=None) -> None:
    args = parse_args(argv)
    auth = parse_auth(args.auth)
    limits = visitor_limits(args)
    warning = exposure_warning(args.host, args.share, auth, limits)
    if warning:
        print(f"warning: {warning}")

    from lift_core import models
    from lift_core.config import split_list
    from lift_core.examples import EXAMPLE_RUNS_DIR
    from lift_ui import build_app

    default_model = args.model or models.DEFAULT_MODEL
    default_quant = "auto"
    if not models.has_cuda():
        default_quant = "none"
        print(f"No CUDA GPU found: defaulting to '{default_model}' in full precision on the CPU.")
    allowed_models = split_list(args.models) if args.models else None
    if allowed_models is None and ON_SPACE:  # a visitor's hub id would be a download on the Space's disk
        allowed_models = [default_model]
    app = build_app(args.runs_dir, default_model, default_quant, notice=warning, delete_cache=DELETE_CACHE,
                    allowed_models=allowed_models, examples_dir=EXAMPLE_RUNS_DIR if args.examples else None,
                    limits=limits, on_space=ON_SPACE)
    app.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port, share=args.share,
                                                  auth=auth, max_file_size=args.max_file_size)


if __name__ == "__main__":
    main()
