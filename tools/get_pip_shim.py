"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test fetches get-pip from a host this network cannot reach. This script is seeded into its cache
under the expected name instead: it bootstraps pip from the interpreter's own ``ensurepip`` and then installs
the requested packages from the package index, which is reachable.
"""

import os
import subprocess
import sys

# Options only get-pip understands; pip install would reject them.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    env = dict(os.environ)
    env.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null
    return subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env)


if __name__ == "__main__":
    sys.exit(main())
