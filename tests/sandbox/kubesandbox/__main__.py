"""Command line: ``python -m kubesandbox up|down|serve``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kubesandbox", description="local stand-in for kube-apiserver + CSR "
                                                                     "controllers (tests and demo only)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start N clusters and one etcd in the background")
    up.add_argument("--state", required=True)
    up.add_argument("--clusters", type=int, default=2)
    up.add_argument("--timeout", type=float, default=30.0)
    for flag in ("signing-duration", "signing-delay", "cleaner-interval", "approved-ttl", "denied-ttl",
                 "failed-ttl", "pending-ttl", "approver-max-backoff", "bookmark-interval", "watch-timeout",
                 "network-delay"):
        up.add_argument("--" + flag)
    up.add_argument("--watch-history", type=int)
    down = sub.add_parser("down", help="stop the processes of a state directory")
    down.add_argument("--state", required=True)
    serve = sub.add_parser("serve", help="(internal) run one cluster")
    serve.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from .server import serve as serve_cluster  # pylint: disable=import-outside-toplevel
        serve_cluster(args.dir)
        return 0
    from . import launcher  # pylint: disable=import-outside-toplevel
    if args.command == "up":
        options = {k: v for k, v in vars(args).items() if k not in ("command", "state", "clusters", "timeout")}
        try:
            names = launcher.up(args.state, args.clusters, timeout=args.timeout, **options)
        except RuntimeError as exc:
            sys.stderr.write("kubesandbox up failed: %s\n" % exc)
            return 1
        sys.stdout.write("sandbox ready: %s (state %s)\n" % (", ".join(names), args.state))
        return 0
    stopped = launcher.down(args.state)
    sys.stdout.write("stopped %d process(es)\n" % len(stopped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
