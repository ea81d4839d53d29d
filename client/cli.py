"""The `gpupipe` command line, built on the SDK (`client.sdk.Client`).

Configuration comes from GPUPIPE_API_URL and GPUPIPE_API_KEY (`--api-url`/`--api-key`
override them); `source .gpupipe/local.env` after `make up` sets both. Every command takes
`--json` for scripts. Exit codes are listed in `client.exit_codes` and in `gpupipe --help`.

`main` is the only place that reads the process environment; it hands it to `run`, which
tests call with their own. The commands are declared in `client.command_parser`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

import httpx

from client.command_parser import build_parser
from client.context import Context, UsageError
from client.errors import GpupipeError
from client.exit_codes import Exit, describe, exit_code_for

if TYPE_CHECKING:
    from core.ports import BlobStore


def main(argv: Sequence[str] | None = None) -> int:
    """The `gpupipe` console script."""
    return run(argv, os.environ)


def run(
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
    storage_transport: httpx.BaseTransport | None = None,
    blobs: BlobStore | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Parse `argv`, run the command and return its exit code. Tests call this with their own
    environment and transports; `main` calls it with the process's."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error and 0 for --help
        return int(exc.code) if isinstance(exc.code, int) else Exit.USAGE
    ctx = Context(
        args=args,
        environ=environ,
        stdout=out,
        stderr=err,
        transport=transport,
        storage_transport=storage_transport,
        blobs=blobs,
        sleep=sleep,
        clock=clock,
    )
    try:
        return int(args.handler(ctx))
    except UsageError as exc:
        err.write(f"gpupipe: error: {exc}\n")
        return Exit.USAGE
    except GpupipeError as exc:
        err.write(f"gpupipe: error: {describe(exc)}\n")
        return exit_code_for(exc)
    except KeyboardInterrupt:
        err.write("gpupipe: interrupted\n")
        return 130
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
